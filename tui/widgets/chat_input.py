"""The message box: Enter sends, Shift+Enter or Ctrl+J adds a line, Up and Down recall history.

Every key typed here lands in the order it was typed, however fast and however busy the app
is. Textual runs a priority binding when the key reaches the app, before the characters typed
just ahead of it have reached this box (an Enter then sent "Why is the" of "Why is the sky
blue?"), and a widget's other bindings only once the key has bubbled back up to the app,
after the characters typed just behind it (a Backspace then erased the next character). So
the box looks its own bindings up itself, in ``_on_key``, in the order of its queue
(``typing_order``); and Enter empties it at once, so what is typed next starts a new message.
"""

from __future__ import annotations

from textual import events
from textual.message import Message
from textual.widgets import TextArea

from tui.keys import INPUT_ACTIONS, bindings
from tui.text import printable, typed_text
from tui.widgets.typing_order import ran_own_binding


class ChatInput(TextArea):
    """A multi-line message box that sends on Enter and remembers what was sent."""

    BINDINGS = bindings(INPUT_ACTIONS)

    class Submitted(Message):
        """The user pressed Enter on a message that is not blank (the box is empty again)."""

        def __init__(self, chat_input: ChatInput, text: str) -> None:
            super().__init__()
            self.chat_input = chat_input
            self.text = text

    def __init__(self, sent: list[str] | None = None, **kwargs: object) -> None:
        super().__init__(
            soft_wrap=True, tab_behavior="focus", show_line_numbers=False,
            highlight_cursor_line=False,
            placeholder="Message (Enter sends, Ctrl+J new line, Up recalls, F1 keys)",
            **kwargs,  # type: ignore[arg-type]
        )
        #: Messages sent since the app opened, oldest first.
        self._sent_here: list[str] = list(sent or [])
        #: The open conversation's messages from before (``remember_earlier``).
        self._earlier: list[str] = []
        self._history_index: int | None = None
        self._draft = ""

    async def _on_key(self, event: events.Key) -> None:
        """Run this box's own bindings here, in typing order, then type the rest (with the
        text characters Textual would drop, ``text.typed_text``)."""
        if await ran_own_binding(self, event, self._bindings.key_to_bindings):
            return
        character = typed_text(event.character)
        if character is None:
            await super()._on_key(event)
            return
        event.stop()
        event.prevent_default()
        start, end = self.selection
        self.replace(character, start, end)

    async def _on_paste(self, event: events.Paste) -> None:
        """Insert the pasted text without the control characters a terminal would act on
        (``text.printable``): a pasted bell or backspace went to the screen raw and broke
        the box's border, and into the message and its title."""
        await super()._on_paste(events.Paste(printable(event.text)))
        event.prevent_default()  # Textual would run TextArea's own handler on it next

    def action_submit(self) -> None:
        """Send the message: empty the box now and hand the text to the app."""
        text = self.text
        if text.strip():
            self.remember(text)
            self.post_message(self.Submitted(self, text))

    def action_newline(self) -> None:
        start, end = self.selection
        self.replace("\n", start, end)

    def remember(self, text: str) -> None:
        """Add a sent message to the history and empty the box."""
        if not self._sent_here or self._sent_here[-1] != text:
            self._sent_here.append(text)
        self._history_index = None
        self.clear()

    @property
    def sent(self) -> list[str]:
        """Messages Up walks back through, oldest first: the open conversation's from before
        the app opened, then those sent since (one sent since stays where it is)."""
        here = set(self._sent_here)
        return [text for text in self._earlier if text not in here] + self._sent_here

    def remember_earlier(self, texts: list[str]) -> None:
        """The messages of the conversation just opened (oldest first), in place of the last
        conversation's, go ahead of those sent since the app opened."""
        self._earlier = list(dict.fromkeys(texts))
        self._history_index = None

    def restore(self, text: str) -> None:
        """Put back a message the app could not send, in front of anything typed since."""
        typed = self.text
        self.load_text(text if not typed.strip() else f"{text}\n{typed}")
        self.move_cursor(self.document.end)

    def action_cursor_up(self, select: bool = False) -> None:
        if not select and self.cursor_location[0] == 0 and self.sent:
            self._recall(-1)
            return
        super().action_cursor_up(select)

    def action_cursor_down(self, select: bool = False) -> None:
        last_row = self.document.line_count - 1
        if not select and self._history_index is not None and self.cursor_location[0] == last_row:
            self._recall(+1)
            return
        super().action_cursor_down(select)

    def _recall(self, step: int) -> None:
        """Show the previous (-1) or next (+1) sent message; past the newest, the draft."""
        if self._history_index is None:
            if step > 0:
                return
            self._draft = self.text
            index = len(self.sent) - 1
        else:
            index = self._history_index + step
        if index < 0:
            return
        if index >= len(self.sent):
            self._history_index = None
            self.load_text(self._draft)
        else:
            self._history_index = index
            self.load_text(self.sent[index])
        self.move_cursor(self.document.end)
