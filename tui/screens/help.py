"""The help screen: every key, read from the one table that binds them (``tui.keys``)."""

from __future__ import annotations

from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, DataTable, Label

from tui.keys import (
    APP_ACTIONS,
    BUILTIN_KEYS,
    COMPARE_ACTIONS,
    DIALOG_ACTIONS,
    INPUT_ACTIONS,
    MODEL_PICKER_ACTIONS,
    bindings,
)


class HelpScreen(ModalScreen[None]):
    """Lists the keys of the app and of the message box."""

    BINDINGS = bindings(DIALOG_ACTIONS)

    def compose(self):  # noqa: ANN201 - Textual's ComposeResult
        with Vertical(id="help-box", classes="dialog"):
            yield Label("Keys", classes="dialog-title")
            table: DataTable[str] = DataTable(id="help-keys", cursor_type="row",
                                              zebra_stripes=True)
            yield table
            yield Button("Close", id="close", compact=True)

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        table.add_columns("Key", "Where", "What it does")
        for action in APP_ACTIONS:
            table.add_row(action.key_display, "anywhere", action.help)
        for action in INPUT_ACTIONS:
            table.add_row(action.key_display, "message box", action.help)
        for action in COMPARE_ACTIONS:
            table.add_row(action.key_display, "compare view", action.help)
        for action in MODEL_PICKER_ACTIONS:
            table.add_row(action.key_display, "model picker", action.help)
        for key, text in BUILTIN_KEYS:
            table.add_row(key, "anywhere", text)
        table.focus()

    def action_close(self) -> None:
        self.dismiss(None)

    def on_button_pressed(self) -> None:
        self.dismiss(None)
