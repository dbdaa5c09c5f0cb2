"""The model picker: the bundled model, the catalog, the downloaded files, or any path or Hub repo.

Choosing an entry (or typing a path, a catalog name or ``ORG/NAME[:PATTERN]``) resolves it to a
checked local GGUF in a thread worker with ``localpref.models.resolve_model``: a cached file at
once and without the network, a Hub file by downloading it, with a progress bar fed by the
download's progress hook. Esc cancels a download: the hook raises ``DownloadCancelled``, and
huggingface_hub deletes its temporary file, so nothing half-written is left in the cache. The
screen is dismissed with the chosen file; the app loads it once no answer is being written.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path

from rich.text import Text
from textual import events, on, work
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, OptionList, ProgressBar, Static
from textual.widgets.option_list import Option
from textual.worker import get_current_worker

from localpref import LocalprefError
from localpref.models import (
    BUNDLED_MODEL_NAME,
    DownloadCancelled,
    bundled_model_path,
    cached_models,
    catalog_with_status,
    format_size,
    resolve_model,
    stored_models,
)
from tui.keys import MODEL_PICKER_ACTIONS, bindings
from tui.widgets.typing_order import OrderedInput

#: Progress-bar updates per second while a file downloads (the last one is always shown).
PROGRESS_HZ = 10.0


@dataclass(frozen=True)
class ModelRow:
    """One model the picker offers: what ``resolve_model`` takes, and how it is shown."""

    spec: str
    label: str
    detail: str
    loaded: bool = False

    def prompt(self) -> Text:
        """The option's text: name, where it comes from and its size, and a mark if loaded."""
        text = Text(self.label, style="bold")
        text.append(f"  {self.detail}", style="dim")
        if self.loaded:
            text.append("  ● loaded", style="bold green")
        return text


@dataclass(frozen=True)
class PickedModel:
    """The picker's result: what the user chose and the checked local file it resolved to."""

    spec: str
    path: Path


def _same_file(a: str | Path | None, b: str | Path | None) -> bool:
    """Whether two paths name one file (symlinks followed, as the Hub cache uses them)."""
    if a is None or b is None:
        return False
    try:
        return Path(a).resolve() == Path(b).resolve()
    except OSError:
        return False


def model_rows(current: Path | None) -> tuple[list[ModelRow], list[str]]:
    """The models on offer, and the problems met while listing them (one sentence each).

    The bundled model first, then the catalog (downloaded or not), then every GGUF in the
    Hugging Face cache, then the models ollama and LM Studio keep; a loaded file that is none of
    these (a local path) comes first. Only the disk is read, never the network.
    """
    rows: list[ModelRow] = []
    problems: list[str] = []
    try:
        bundled = bundled_model_path()
        rows.append(ModelRow(BUNDLED_MODEL_NAME, BUNDLED_MODEL_NAME,
                             f"bundled · {format_size(bundled.stat().st_size)}",
                             _same_file(bundled, current)))
    except (LocalprefError, OSError) as error:
        problems.append(str(error))
    try:
        for entry in catalog_with_status():
            if entry["bundled"]:
                continue
            where = f"{entry['repo']}:{entry['file']}"
            if entry["downloaded"]:
                detail = f"catalog · {where} · {format_size(entry['size'])}"
            else:
                detail = f"catalog · {where} · about {entry['size_mb']} MB to download"
            rows.append(ModelRow(entry["name"], entry["name"], detail,
                                 _same_file(entry["downloaded"], current)))
    except (LocalprefError, OSError) as error:
        problems.append(str(error))
    try:  # (a folder that cannot be read leaves its models out, with a sentence in problems)
        for item in cached_models(problems=problems):
            rows.append(ModelRow(item.spec, item.spec,
                                 f"downloaded · {format_size(item.size)}",
                                 _same_file(item.path, current)))
    except (LocalprefError, OSError) as error:
        problems.append(str(error))
    try:
        for stored in stored_models(problems=problems):
            tool = "ollama" if stored.store == "ollama" else "LM Studio"
            rows.append(ModelRow(stored.spec, stored.spec,
                                 f"{tool} · used in place · {format_size(stored.size)}",
                                 _same_file(stored.path, current)))
    except (LocalprefError, OSError) as error:
        problems.append(str(error))
    if current is not None and not any(row.loaded for row in rows):
        try:
            size = format_size(current.stat().st_size)
        except OSError:
            size = "size unknown"
        rows.insert(0, ModelRow(str(current), current.name, f"local file · {size}", True))
    return rows, problems


class ModelPickerScreen(ModalScreen[PickedModel | None]):
    """Lists the models on this machine and the catalog; resolves (downloads) the one chosen."""

    BINDINGS = bindings(MODEL_PICKER_ACTIONS)
    DEFAULT_CSS = """
    #model-picker { width: 110; }
    #model-options { height: auto; max-height: 16; margin-bottom: 1; }
    #model-progress { display: none; margin-top: 1; }
    #model-progress.-downloading { display: block; }
    #model-picker-status { color: $text-muted; margin-top: 1; }
    #model-picker-status.-error { color: $error; }
    """

    class Progress(Message):
        """Bytes of the file downloaded so far (``total`` 0: unknown)."""

        def __init__(self, done: int, total: int) -> None:
            super().__init__()
            self.done = done
            self.total = total

    class Resolved(Message):
        """The choice is a checked local file."""

        def __init__(self, spec: str, path: Path) -> None:
            super().__init__()
            self.spec = spec
            self.path = path

    class Failed(Message):
        """The choice failed (``reason`` is one sentence) or its download was cancelled."""

        def __init__(self, reason: str, cancelled: bool) -> None:
            super().__init__()
            self.reason = reason
            self.cancelled = cancelled

    def __init__(self, current: Path | None, current_name: str) -> None:
        super().__init__()
        self.current_name = current_name
        self.rows, self.problems = model_rows(current)
        self.cancel = threading.Event()
        #: The spec being resolved (None when nothing runs).
        self.running: str | None = None
        self.downloading = False

    def compose(self):  # noqa: ANN201 - Textual's ComposeResult
        with Vertical(classes="dialog", id="model-picker"):
            yield Label("Pick a model", classes="dialog-title")
            yield Static(f"Loaded now: {self.current_name}", id="model-current", markup=False)
            yield OptionList(*(Option(row.prompt(), id=f"model-{index}")
                               for index, row in enumerate(self.rows)), id="model-options")
            yield Label("Or type a path, a catalog name, or a Hugging Face repo "
                        "ORG/NAME[:PATTERN]:")
            yield OrderedInput(placeholder="bartowski/Llama-3.2-1B-Instruct-GGUF:*Q4_K_M.gguf",
                               id="model-spec",
                               select_on_focus=False)  # typing on the list goes on
            yield ProgressBar(total=None, show_eta=True, id="model-progress")
            yield Static(" ".join(self.problems), id="model-picker-status", markup=False)
            with Horizontal(classes="buttons"):
                yield Button("Load", id="model-load", variant="primary", compact=True)
                yield Button("Close", id="model-close", compact=True)

    def on_mount(self) -> None:
        self.query_one("#model-options" if self.rows else "#model-spec").focus()

    def on_key(self, event: events.Key) -> None:
        """Typing on the list goes to the path field: the list takes only arrows and Enter,
        and a path typed there was dropped while Enter loaded the highlighted model."""
        options = self.query_one("#model-options", OptionList)
        if event.is_printable and event.character and self.focused is options:
            spec = self.query_one("#model-spec", Input)
            spec.focus()
            spec.insert_text_at_cursor(event.character)
            event.stop()

    def on_unmount(self) -> None:
        """A download still running when the screen goes (the app quits) stops too."""
        self.cancel.set()

    def _say(self, text: str, *, error: bool = False) -> None:
        status = self.query_one("#model-picker-status", Static)
        status.update(text)
        status.set_class(error, "-error")

    # -- choosing ----------------------------------------------------------------------------

    @on(OptionList.OptionSelected, "#model-options")
    def _option_chosen(self, event: OptionList.OptionSelected) -> None:
        row = self.rows[event.option_index]
        self.query_one("#model-spec", Input).value = row.spec
        self.choose(row.spec)

    @on(Input.Submitted, "#model-spec")
    @on(Button.Pressed, "#model-load")
    def _typed_chosen(self) -> None:
        self.choose(self.query_one("#model-spec", Input).value)

    def choose(self, spec: str) -> None:
        """Resolve ``spec`` in the background (a download shows its progress here)."""
        spec = spec.strip()
        if self.running is not None:
            self._say(f"Still fetching {self.running}; Esc cancels it.")
            return
        if not spec:
            self._say("Pick a model in the list or type one.", error=True)
            return
        self.running = spec
        self.cancel.clear()
        self.query_one("#model-load", Button).disabled = True
        self._say(f"Looking for {spec}…")
        self._resolve(spec)

    @work(thread=True, exclusive=True, group="model-pick")
    def _resolve(self, spec: str) -> None:
        """Find (or download) the file; post progress, then the file or the reason it failed."""
        worker = get_current_worker()
        last_post = 0.0

        def hook(done: int, total: int) -> None:
            nonlocal last_post
            if self.cancel.is_set() or worker.is_cancelled:
                raise DownloadCancelled("cancelled")
            now = time.monotonic()
            if now - last_post >= 1.0 / PROGRESS_HZ or (total and done >= total):
                last_post = now
                self.post_message(self.Progress(done, total))

        try:
            path = resolve_model(spec, progress=hook)
        except DownloadCancelled as error:
            self.post_message(self.Failed(str(error), cancelled=True))
        except LocalprefError as error:
            self.post_message(self.Failed(str(error), cancelled=False))
        except Exception as error:  # noqa: BLE001 - a user's file can fail in many ways: say it
            self.post_message(self.Failed(f"{type(error).__name__}: {error}", cancelled=False))
        else:
            self.post_message(self.Resolved(spec, path))

    # -- what the worker reports -------------------------------------------------------------------

    @on(Progress)
    def _progress(self, event: Progress) -> None:
        bar = self.query_one("#model-progress", ProgressBar)
        if not self.downloading:
            self.downloading = True
            bar.add_class("-downloading")
        bar.update(total=event.total or None, progress=event.done)
        sizes = format_size(event.done)
        if event.total:
            sizes += f" of {format_size(event.total)}"
        self._say(f"Downloading {self.running} ({sizes}); Esc cancels it.")

    def _finished(self) -> None:
        self.running = None
        self.downloading = False
        self.query_one("#model-progress", ProgressBar).remove_class("-downloading")
        self.query_one("#model-load", Button).disabled = False

    @on(Resolved)
    def _resolved(self, event: Resolved) -> None:
        self._finished()
        if self.cancel.is_set():
            self.app.notify(f"{event.spec} was ready before it could be cancelled; it was not "
                            "loaded.")
            self.dismiss(None)
            return
        self.dismiss(PickedModel(event.spec, event.path))

    @on(Failed)
    def _failed(self, event: Failed) -> None:
        self._finished()
        if event.cancelled:
            self.app.notify(event.reason, severity="warning")
            self.dismiss(None)
            return
        self.app.notify(event.reason, severity="error")
        self._say(event.reason, error=True)
        self.query_one("#model-spec", Input).focus()

    # -- leaving ---------------------------------------------------------------------------------

    @on(Button.Pressed, "#model-close")
    def action_cancel_or_close(self) -> None:
        """Esc: cancel what runs (the screen closes when it has stopped), else close."""
        if self.running is None:
            self.dismiss(None)
            return
        self.cancel.set()
        self._say(f"Cancelling {self.running}…")
