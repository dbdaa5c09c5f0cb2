"""The comparison: one prompt, two to four methods answering side by side at once.

Every method's lanes decode in one batched step (``Model.compare``), so the panes fill together
and each shows its own tokens/s and steering cost. The session (``ChatSession.compare``,
``write_comparison``, ``stop``) starts, decodes and stops it; the screen shows it. The user can
keep one answer: the prompt and that answer join the conversation.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from textual import events, on, work
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.message import Message
from textual.screen import Screen
from textual.widgets import Button, Footer, Label, Markdown, SelectionList, Static, TextArea
from textual.widgets.selection_list import Selection

from localpref import LocalprefError
from localpref.commands.showing import steering_label
from localpref.errors import TooManyLanesError
from localpref.methods import METHODS
from tui.highlight import changed_fact, changed_spans, highlighted_text
from tui.keys import COMPARE_ACTIONS, bindings
from tui.session import ChatSession
from tui.steering import method_title
from tui.text import shortened
from tui.widgets.chat_log import STOP_REASONS, limit_met
from tui.widgets.markdown_feed import MarkdownFeed, message_markdown

MIN_METHODS, MAX_METHODS = 2, 4
#: Columns under which the screen is laid out narrow (its ``narrow`` class).
NARROW = 80
#: Rows under which the prompt's row shrinks so that each answer keeps its figures and its
#: Keep button in view (the ``short`` class).
SHORT = 30


@dataclass(frozen=True)
class KeptAnswer:
    """The answer the user kept, with the prompt it answers."""

    prompt: str
    text: str
    method: str
    preference: str | None
    stats: dict[str, Any]
    partial: bool
    changed_spans: list[tuple[int, int]] | None = None


def stats_line(stats: dict[str, Any]) -> str:
    """``61.2 tok/s · steer 0.52 ms/tok · 24 tokens · cut at max tokens`` (the stop reason,
    and which limit cut a long answer, as the chat's header says it)."""
    parts = [f"{stats.get('tokens_per_s') or 0:.1f} tok/s",
             f"steer {stats.get('steer_ms_per_token') or 0:.2f} ms/tok",
             f"{stats.get('n_tokens', 0)} tokens"]
    changed = changed_fact(stats) if stats.get("stop_reason") not in (None, "running") else None
    if changed:
        parts.append(changed)
    reason = limit_met(stats)
    if reason and reason != "running":
        parts.append(STOP_REASONS[reason] if reason in ("length", "window") else reason)
    return " · ".join(parts)


class ComparePane(Vertical):
    """One method's answer, its figures, and a button to keep it; once it ended, the tokens
    steering changed are highlighted (as plain text) until Ctrl+T shows Markdown again."""

    def __init__(self, index: int, label: str) -> None:
        super().__init__(classes="compare-pane", id=f"pane-{index}")
        self.index = index
        self.label = label
        self.stats: dict[str, Any] = {}
        self._feed = MarkdownFeed()
        self.changed_spans: list[tuple[int, int]] | None = None
        self.highlighted = False

    def compose(self):  # noqa: ANN201 - Textual's ComposeResult
        yield Label(self.label, classes="pane-title")
        with VerticalScroll(classes="pane-body"):
            yield message_markdown()
            plain = Static("", classes="pane-highlighted")
            plain.display = False
            yield plain
        yield Static("waiting…", classes="pane-stats", markup=False)
        yield Button("Keep this answer", id=f"keep-{self.index}", classes="keep", disabled=True,
                     compact=True)

    @property
    def text(self) -> str:
        """The answer so far (the whole answer once it ended)."""
        return self._feed.text

    async def append(self, delta: str) -> None:
        await self._feed.append(self.query_one(Markdown), delta)

    def show_stats(self, stats: dict[str, Any]) -> None:
        self.stats = stats
        self.query_one(".pane-stats", Static).update(stats_line(stats))

    async def finish(self, text: str, stats: dict[str, Any],
                     spans: list[tuple[int, int]] | None = None, highlight: bool = True) -> None:
        await self._feed.finish(self.query_one(Markdown), text)
        self.changed_spans = spans
        self.show_stats(stats)
        self.show_highlight(highlight)
        # stopped (or failed) before its first word: nothing to keep; an answer that ended
        # empty by itself (its end token, a stop string) is kept as the chat keeps it
        self.query_one(Button).disabled = not text and stats.get("stop_reason") in (
            "cancelled", "error")

    def show_highlight(self, on: bool) -> None:
        """The answer with its changed tokens highlighted (``on``, when known) or Markdown."""
        self.highlighted = on and self.changed_spans is not None
        plain = self.query_one(".pane-highlighted", Static)
        if self.highlighted:
            plain.update(highlighted_text(self.text, self.changed_spans))
        plain.display = self.highlighted
        self.query_one(Markdown).display = not self.highlighted


class CompareProgress(Message):
    def __init__(self, deltas: list[str], stats: list[dict[str, Any]]) -> None:
        super().__init__()
        self.deltas = deltas
        self.stats = stats


class CompareDone(Message):
    def __init__(self, texts: list[str], stats: list[dict[str, Any]], error: str | None,
                 spans: list[list[tuple[int, int]] | None] | None = None) -> None:
        super().__init__()
        self.texts = texts
        self.stats = stats
        self.error = error
        self.spans = spans or [None] * len(texts)


class CompareScreen(Screen[KeptAnswer | None]):
    """Runs a comparison on the conversation so far plus a new prompt."""

    BINDINGS = bindings(COMPARE_ACTIONS)

    def __init__(self, session: ChatSession, prompt: str) -> None:
        """Compare on ``session``'s conversation and settings; ``prompt`` to start with."""
        super().__init__()
        self.session = session
        self.steering = session.steering
        self.prompt = prompt
        self.running = False
        self.runs_done = 0  # comparisons finished on this screen (tests wait on it)
        self.panes: list[ComparePane] = []
        #: Whether finished panes show their changed tokens highlighted (Ctrl+T toggles).
        self.highlight = True
        self._prompt_used = ""
        chosen = self.steering.method if self.steering.method != "base" else "pref"
        self._default_methods = ["base", chosen]

    def compose(self):  # noqa: ANN201 - Textual's ComposeResult
        yield Label("Compare methods: one prompt, every method in one batched decode",
                    classes="screen-title")
        with Horizontal(id="compare-top"):
            yield TextArea(self.prompt, id="compare-prompt", soft_wrap=True,
                           tab_behavior="focus", placeholder="The prompt to compare on")
            yield SelectionList[str](
                *(Selection(method_title(name), name, name in self._default_methods)
                  for name in METHODS),
                id="compare-methods",
            )
            with Vertical(id="compare-buttons"):
                yield Button("Run", id="run", variant="primary", compact=True)
                yield Button("Back", id="back", compact=True)
        yield Static(self._note(), id="compare-note", markup=False)
        yield Horizontal(id="compare-panes")
        yield Footer()

    def on_resize(self, event: events.Resize) -> None:
        """Under :data:`NARROW` columns the method list gives the prompt room; under
        :data:`SHORT` rows the prompt's row gives the answers room (app.tcss)."""
        self.set_class(event.size.width < NARROW, "narrow")
        self.set_class(event.size.height < SHORT, "short")

    def _note(self) -> str:
        """What the methods steer by (docs/steering.md: in a comparison Base and Pref stay
        plain references: neither reads an avoid text, Pref reads no weights)."""
        steering = self.steering
        if steering.steers_nothing:
            return "No preference chosen: every method decodes plainly (base)."
        said = [f"Preference: {steering.preference_label}" if steering.preference is not None
                else "No preference"]
        if steering.avoid_label:
            said.append(f"avoid: {shortened(steering.avoid_label, 60)} (Base and Pref do not "
                        "read it)")
        if steering.examples:
            count = len(steering.examples)
            said.append(f"{count} example{'s' if count > 1 else ''}")
        return (f"{'; '.join(said)}. Choose {MIN_METHODS} to {MAX_METHODS} methods; settings "
                "and sampling come from the preference panel.")

    def on_mount(self) -> None:
        self.query_one("#compare-prompt", TextArea).focus()

    def on_unmount(self) -> None:
        if self.running:
            self.session.stop()

    # -- running -------------------------------------------------------------------------------

    @on(Button.Pressed, "#run")
    async def action_run(self) -> None:
        if self.running:
            self.notify("The comparison is running; Esc stops it.", severity="warning")
            return
        prompt = self.query_one("#compare-prompt", TextArea).text.strip()
        names = list(self.query_one("#compare-methods", SelectionList).selected)
        if not prompt:
            self.notify("Write a prompt to compare on.", severity="warning")
            return
        if not MIN_METHODS <= len(names) <= MAX_METHODS:
            self.notify(f"Choose {MIN_METHODS} to {MAX_METHODS} methods (now {len(names)}).",
                        severity="warning")
            return
        try:
            multi = self.session.compare(prompt, names)
        except TooManyLanesError as error:  # the library's advice (max_lanes) is not the app's
            weighed, sliders = ((" with the preferences as weighed", ", or set the sliders "
                                 "back to 1 (one lane for every preference)")
                                if self.steering.weighed else ("", ""))
            self.notify(f"These {len(names)} methods need {error.needed} lanes at once"
                        f"{weighed} and the app decodes {error.available}: tick fewer "
                        f"methods{sliders}.", severity="error", title="Cannot compare")
            return
        except LocalprefError as error:
            self.notify(str(error), severity="error", title="Cannot compare")
            return
        container = self.query_one("#compare-panes", Horizontal)
        await container.remove_children()
        self.panes = [ComparePane(i, steering_label(stats, sampling=False))
                      for i, stats in enumerate(multi.track_stats)]
        await container.mount_all(self.panes)
        self._prompt_used = prompt
        self.running = True
        self._compare_worker(multi, len(names))

    @work(thread=True, exclusive=True, group="compare")
    def _compare_worker(self, multi: Any, n_tracks: int) -> None:
        """Decode every method at once; never touches a widget."""
        compared = self.session.write_comparison(
            multi, n_tracks,
            progress=lambda deltas, stats: self.post_message(CompareProgress(deltas, stats)))
        results = compared.results
        texts = [result.text for result in results]
        stats = [dict(result.stats) for result in results]
        spans = [changed_spans(getattr(result, "trace", None)) for result in results]
        self.post_message(CompareDone(texts, stats, compared.error, spans))

    @on(CompareProgress)
    async def _progress(self, event: CompareProgress) -> None:
        for pane, delta, stats in zip(self.panes, event.deltas, event.stats, strict=False):
            await pane.append(delta)
            pane.show_stats(stats)

    @on(CompareDone)
    async def _done(self, event: CompareDone) -> None:
        self.running = False
        for pane, text, stats, spans in zip(self.panes, event.texts, event.stats, event.spans,
                                            strict=False):
            await pane.finish(text, stats, spans, self.highlight)
        self.runs_done += 1
        if event.error:
            self.notify(event.error, severity="error", title="Comparison failed")

    def action_toggle_highlight(self) -> None:
        """Ctrl+T: highlight the changed tokens in every finished pane, or show Markdown."""
        self.highlight = not self.highlight
        for pane in self.panes:
            if not self.running:
                pane.show_highlight(self.highlight)

    def action_stop_or_close(self) -> None:
        if self.running:
            self.session.stop()  # also stops a prefill under way
        else:
            self.dismiss(None)

    @on(Button.Pressed, "#back")
    def _back(self) -> None:
        if self.running:
            self.session.stop()
        self.dismiss(None)

    @on(Button.Pressed, ".keep")
    def _keep(self, event: Button.Pressed) -> None:
        pane = next(p for p in self.panes if p.query_one(Button) is event.button)
        if self.running:
            self.notify("Wait for the answers to end (or press Esc) before keeping one.")
            return
        self.dismiss(KeptAnswer(
            prompt=self._prompt_used, text=pane.text, method=pane.stats.get("method", pane.label),
            preference=pane.stats.get("preference"), stats=pane.stats,
            partial=pane.stats.get("stop_reason") in ("cancelled", "error"),
            changed_spans=pane.changed_spans,
        ))
