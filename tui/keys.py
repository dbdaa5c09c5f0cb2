"""Every action of the app, declared once with its key and description.

The app's ``BINDINGS``, the message box's keys, the help screen and the command palette are all
built from these tables, so a key is changed in one place and the help never goes stale.
"""

from __future__ import annotations

from dataclasses import dataclass

from textual.binding import Binding


@dataclass(frozen=True)
class KeyAction:
    """An action, the key that runs it, and how the footer, help and palette describe it."""

    action: str
    key: str
    description: str
    help: str
    footer: bool = False
    priority: bool = False
    palette: bool = True
    bound: bool = True
    """False for keys a widget handles itself (listed in the help, not bound here)."""

    @property
    def key_display(self) -> str:
        """The key(s) as a person reads them: ``Ctrl+Q``, ``Shift+Enter or Ctrl+J``."""
        return " or ".join(
            "+".join(part.capitalize() if len(part) > 1 else part.upper()
                     for part in key.split("+"))
            for key in self.key.split(",")
        )

    def binding(self) -> Binding:
        return Binding(self.key, self.action, self.description, show=self.footer,
                       priority=self.priority)


#: Actions of the whole app (run from anywhere unless a focused widget uses the key itself).
APP_ACTIONS: tuple[KeyAction, ...] = (
    KeyAction("quit", "ctrl+q", "Quit", "Quit; an answer being written is saved as partial.",
              footer=True, priority=True),
    KeyAction("stop", "escape", "Stop",
              "Stop the answer being written and keep what it wrote; otherwise go back to the "
              "message box.", footer=True),
    KeyAction("help", "f1", "Help", "Show this list of keys.", footer=True),
    KeyAction("toggle_preferences", "f3", "Steering",
              "Show or hide the preference panel (preferences, method, settings, profiles).",
              footer=True),
    KeyAction("compare", "f4", "Compare",
              "Compare two to four methods side by side on one prompt.", footer=True),
    KeyAction("pick_model", "f9", "Pick model",
              "Pick another model: the bundled one, the catalog, the downloaded ones, a path "
              "or ORG/NAME[:PATTERN] (downloaded with a progress bar).", footer=True),
    KeyAction("regenerate", "ctrl+r", "Regenerate",
              "Answer the last message again with the current settings.", footer=True),
    KeyAction("toggle_highlight", "ctrl+t", "Changes",
              "Highlight the tokens steering changed in every answer of the open chat (shown "
              "as plain text while on, since Markdown cannot style them), or show Markdown "
              "again.", footer=True),
    KeyAction("more_like_this", "ctrl+o", "More like this",
              "Add the last answer to the examples (and to the open profile): the next "
              "answers are steered toward its style; the steering panel (F3) lists the "
              "examples and removes them."),
    KeyAction("copy_message", "f5", "Copy",
              "Copy the selected message (click or Tab to it), else the last answer."),
    KeyAction("new_conversation", "ctrl+n", "New chat", "Start a new conversation.",
              footer=True),
    KeyAction("rename_conversation", "f2", "Rename", "Rename the current conversation."),
    KeyAction("delete_conversation", "f8", "Delete", "Delete the current conversation."),
    KeyAction("toggle_conversations", "ctrl+l", "Chats",
              "Show or hide the conversation list."),
)

#: Keys of the message box (they act only while it has the focus). None is a priority binding:
#: the box runs its keys itself, in the order they were typed (``ChatInput._on_key``).
INPUT_ACTIONS: tuple[KeyAction, ...] = (
    KeyAction("submit", "enter", "Send",
              "Send the message (while the model loads or an answer is written, it waits and "
              "goes next).", palette=False),
    KeyAction("newline", "shift+enter,ctrl+j", "New line",
              "Add a new line to the message (Shift+Enter where the terminal reports it).",
              palette=False),
    KeyAction("history_previous", "up", "Previous message",
              "On the first line: recall the previous message you sent.", palette=False,
              bound=False),
    KeyAction("history_next", "down", "Next message",
              "On the last line: go forward through the messages you sent.", palette=False,
              bound=False),
)



def bindings(actions: tuple[KeyAction, ...]) -> list[Binding]:
    """The ``BINDINGS`` of a widget from its actions."""
    return [action.binding() for action in actions if action.bound]


#: Keys of dialogs and the help screen.
DIALOG_ACTIONS: tuple[KeyAction, ...] = (
    KeyAction("close", "escape", "Close", "Close the dialog without a change.", footer=True,
              palette=False),
)

#: Keys of the comparison screen.
COMPARE_ACTIONS: tuple[KeyAction, ...] = (
    KeyAction("run", "ctrl+r", "Run", "Run the comparison (again).", footer=True,
              palette=False),
    KeyAction("toggle_highlight", "ctrl+t", "Changes",
              "Highlight the tokens steering changed in each pane, or show Markdown again.",
              footer=True, palette=False),
    KeyAction("stop_or_close", "escape", "Stop / close",
              "Stop the comparison; when nothing runs, go back to the chat.", footer=True,
              palette=False),
)

#: Keys of the steering panel (F3) while it has focus.
PANEL_ACTIONS: tuple[KeyAction, ...] = (
    KeyAction("paper_settings", "f7", "Paper settings",
              "Fill the form with the papers' exact settings for the chosen method (Apply "
              "takes them).", footer=True, palette=False),
)

#: Keys of a slider (the strength, a preference's weight) while it has focus.
SLIDER_ACTIONS: tuple[KeyAction, ...] = (
    KeyAction("step(-1)", "left", "Weaker", "Move the slider one stop down.", palette=False),
    KeyAction("step(1)", "right", "Stronger", "Move the slider one stop up.", palette=False),
    KeyAction("end(0)", "home", "Weakest", "Move the slider to its lowest stop.",
              palette=False),
    KeyAction("end(1)", "end", "Strongest", "Move the slider to its highest stop.",
              palette=False),
)

#: Keys of the model picker.
MODEL_PICKER_ACTIONS: tuple[KeyAction, ...] = (
    KeyAction("cancel_or_close", "escape", "Cancel / close",
              "Cancel the download (nothing half-written is kept); when nothing downloads, go "
              "back to the chat.", footer=True, palette=False),
)

#: Keys Textual provides, listed in the help for completeness.
BUILTIN_KEYS: tuple[tuple[str, str], ...] = (
    ("Ctrl+P", "Command palette: every action, method and preference by name."),
    ("Tab / Shift+Tab", "Move between the message box, messages and panels."),
)
