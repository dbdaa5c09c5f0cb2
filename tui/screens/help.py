"""The help screen: every key, read from the one table that binds them (``tui.keys``)."""

from __future__ import annotations

from rich.text import Text
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
    PANEL_ACTIONS,
    SLIDER_ACTIONS,
    bindings,
)

#: Columns the table takes beside its cells' text (each cell's padding, the scroll bar).
TABLE_FRAME = 8
#: The help box's width on a wide terminal (app.tcss, ``#help-box``).
HELP_BOX_WIDTH = 130
#: The descriptions are never narrower than this (the box scrolls sideways under it).
MIN_TEXT_WIDTH = 20
#: On a narrow terminal the key and place columns wrap, down to this width.
MIN_KEY_WIDTH = 6


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
        rows = [*((a.key_display, "anywhere", a.help) for a in APP_ACTIONS),
                *((a.key_display, "message box", a.help) for a in INPUT_ACTIONS),
                *((a.key_display, "steering panel", a.help) for a in PANEL_ACTIONS),
                *((a.key_display, "a slider", a.help) for a in SLIDER_ACTIONS),
                *((a.key_display, "compare view", a.help) for a in COMPARE_ACTIONS),
                *((a.key_display, "model picker", a.help) for a in MODEL_PICKER_ACTIONS),
                *((key, "anywhere", text) for key, text in BUILTIN_KEYS)]
        key_width = max(len(key) for key, _, _ in rows)
        where_width = max(len(where) for _, where, _ in rows)
        available = self._box_width() - TABLE_FRAME
        if available - key_width - where_width < MIN_TEXT_WIDTH:
            # a narrow terminal: the keys and places wrap too, so that the descriptions keep
            # MIN_TEXT_WIDTH columns inside the box
            spare = max(2 * MIN_KEY_WIDTH, available - MIN_TEXT_WIDTH)
            key_width = max(MIN_KEY_WIDTH, spare * key_width // (key_width + where_width))
            where_width = max(MIN_KEY_WIDTH, spare - key_width)
        table = self.query_one(DataTable)
        table.add_column("Key", width=key_width)
        table.add_column("Where", width=where_width)
        table.add_column("What it does", width=max(
            MIN_TEXT_WIDTH, available - key_width - where_width))
        for key, where, text in rows:  # each cell wrapped within its column
            table.add_row(Text(key), Text(where), Text(text), height=None)
        table.focus()

    def _box_width(self) -> int:
        """The help box's width inside its border and padding on this terminal (app.tcss:
        ``#help-box`` 130 columns, a dialog at most 95 % of the screen, border 1 and padding
        2 a side)."""
        return min(HELP_BOX_WIDTH, int(self.app.size.width * 0.95)) - 6

    def action_close(self) -> None:
        self.dismiss(None)

    def on_button_pressed(self) -> None:
        self.dismiss(None)
