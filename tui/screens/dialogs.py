"""Small dialogs: a line of text, a yes/no question, and a model that failed to load."""

from __future__ import annotations

from pathlib import Path

from textual import on
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, OptionList, Static

from tui.keys import DIALOG_ACTIONS, bindings
from tui.widgets.typing_order import OrderedInput


class TextDialog(ModalScreen[str | None]):
    """Asks for one line of text (a conversation's new title); None if cancelled."""

    BINDINGS = bindings(DIALOG_ACTIONS)

    def __init__(self, title: str, value: str = "") -> None:
        super().__init__()
        self.title_text = title
        self.value = value

    def compose(self):  # noqa: ANN201 - Textual's ComposeResult
        with Vertical(classes="dialog"):
            yield Label(self.title_text, classes="dialog-title", markup=False)
            yield OrderedInput(self.value, id="dialog-input")
            with Horizontal(classes="buttons"):
                yield Button("OK", id="ok", variant="primary", compact=True)
                yield Button("Cancel", id="cancel", compact=True)

    @on(Button.Pressed, "#ok")
    @on(Input.Submitted)
    def _ok(self) -> None:
        text = self.query_one(Input).value.strip()
        if not text:  # OK on an empty line: not a cancel, which Esc and Cancel are
            self.notify("The name is empty; type one, or press Esc to keep the old one.",
                        severity="warning")
            return
        self.dismiss(text)

    @on(Button.Pressed, "#cancel")
    def action_close(self) -> None:
        self.dismiss(None)


class ConfirmDialog(ModalScreen[bool]):
    """A yes/no question (deleting a conversation)."""

    BINDINGS = bindings(DIALOG_ACTIONS)

    def __init__(self, question: str, yes: str = "Delete") -> None:
        super().__init__()
        self.question = question
        self.yes = yes

    def compose(self):  # noqa: ANN201 - Textual's ComposeResult
        with Vertical(classes="dialog"):
            yield Label(self.question, classes="dialog-title", markup=False)
            with Horizontal(classes="buttons"):
                yield Button(self.yes, id="yes", variant="error", compact=True)
                yield Button("Cancel", id="no", compact=True)

    def on_mount(self) -> None:
        self.query_one("#no", Button).focus()

    @on(Button.Pressed)
    def _answer(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "yes")

    def action_close(self) -> None:
        self.dismiss(False)


class ModelErrorDialog(ModalScreen[str | None]):
    """Says why the model failed to load and lets the user pick another file.

    Dismissed with the path or name to load next, or None to quit.
    """

    BINDINGS = bindings(DIALOG_ACTIONS)

    def __init__(self, reason: str, spec: str | None, candidates: list[Path]) -> None:
        super().__init__()
        self.reason = reason
        self.spec = spec
        self.candidates = candidates

    def compose(self):  # noqa: ANN201 - Textual's ComposeResult
        with Vertical(classes="dialog", id="model-error"):
            yield Label("The model could not be loaded", classes="dialog-title")
            yield Static(self.reason, id="model-error-reason", markup=False)
            yield Label("Load another GGUF file (a path, a catalog name or ORG/REPO):")
            yield OrderedInput(self.spec or "", placeholder="/path/to/model.gguf", id="model-path")
            if self.candidates:
                yield Label("Or pick one found on this machine:")
                yield OptionList(*(str(path) for path in self.candidates), id="model-choices")
            with Horizontal(classes="buttons"):
                yield Button("Load", id="load", variant="primary", compact=True)
                yield Button("Quit", id="quit", compact=True)

    @on(OptionList.OptionSelected)
    def _picked(self, event: OptionList.OptionSelected) -> None:
        self.query_one("#model-path", Input).value = str(event.option.prompt)

    @on(Button.Pressed, "#load")
    @on(Input.Submitted)
    def _load(self) -> None:
        text = self.query_one("#model-path", Input).value.strip()
        if text:
            self.dismiss(text)

    @on(Button.Pressed, "#quit")
    def action_close(self) -> None:
        self.dismiss(None)
