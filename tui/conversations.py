"""Conversation handlers of the app: the list, opening one, and new / rename / delete.

Each conversation lives in the store; the session (``tui.session.ChatSession``) opens,
renames and deletes them and holds the open one's library ``Chat``. These handlers ask it and
show the result.
"""

from __future__ import annotations

from textual import events
from textual.css.query import NoMatches
from textual.widget import Widget
from textual.widgets import ListView

from localpref.store import StoredMessage
from tui.screens import ConfirmDialog, TextDialog
from tui.session import ChatSession
from tui.widgets import ChatInput, ChatLog, MessageView, PreferencePanel
from tui.widgets.conversation_list import ConversationItem

#: Terminals narrower than this show one side panel at a time (the app opens both from this
#: width on, ``tui.app``).
BOTH_PANELS_MIN_WIDTH = 120
#: A window narrowed so far that an open side panel leaves the chat fewer columns than this
#: closes that panel too (unless the focus is in it): the chat read a word fragment a line.
MIN_CHAT_WIDTH = 30

__all__ = ["ConversationHandlers"]


class ConversationHandlers:
    """The conversation handlers of ``LocalprefApp``, mixed into it (``query_one``,
    ``notify``, ``_show_ready`` and ``_refresh_conversations`` are the app's). No state of
    their own: it is the session's."""

    session: ChatSession

    def _allowed(self, doing: str) -> bool:
        """True if the session lets the user ``doing`` now; else False, with its reason."""
        reason = self.session.refusal(doing)
        if reason is not None:
            self.notify(reason, severity="warning")
        return reason is None

    async def _open_conversation(self, conversation_id: int | None, *,
                                 resume: bool = False) -> None:
        """Show a saved conversation (None: a new, not yet saved one); ``resume``: the one
        open when the app last quit, whose waiting messages go again (``ChatSession.open``)."""
        await self._show_conversation(self.session.open(conversation_id, resume=resume))

    async def _show_conversation(self, stored: list[StoredMessage]) -> None:
        """Show the open conversation's saved messages (``stored``); those still waiting
        (the app closed before they went) are shown waiting, and go once the model is free."""
        log = self.query_one(ChatLog)
        await log.remove_children()
        waiting = {entry.message_id for entry in self.session.waiting}
        await log.mount_all([
            MessageView(m.role, m.content, message_id=m.id, partial=m.partial,
                        method=m.method, preference=m.preference, stats=m.stats,
                        avoid=m.avoid, changed_spans=m.changed_spans,
                        waiting=m.id in waiting)
            for m in stored
        ])
        log.set_highlight(log.highlight)
        log.anchor()
        # Up recalls what was sent in this conversation before the app last opened too
        self.query_one(ChatInput).remember_earlier(
            [m.content for m in stored if m.role == "user"])
        await self._refresh_conversations()
        if waiting:
            self.notify(f"{len(waiting)} message had not been answered when the app closed; "
                        "it goes as soon as the model is ready." if len(waiting) == 1 else
                        f"{len(waiting)} messages had not been answered when the app closed; "
                        "they go as soon as the model is ready.")
        if self.session.model is not None:
            self._show_ready()
            if waiting:
                self.call_later(self._send_waiting)

    async def on_list_view_selected(self, event: ListView.Selected) -> None:
        """A conversation chosen in the list opens (not while an answer is written)."""
        item = event.item
        if (isinstance(item, ConversationItem)
                and item.conversation_id != self.session.conversation_id):
            if self._allowed("open another conversation"):
                await self._open_conversation(item.conversation_id)
                self.query_one(ChatInput).focus()
            else:
                await self._refresh_conversations()

    async def action_new_conversation(self) -> None:
        if self._allowed("start a new conversation"):
            await self._open_conversation(None)
            self.query_one(ChatInput).focus()

    def action_rename_conversation(self) -> None:
        self.push_screen(TextDialog("Rename the conversation", self.session.title()),
                         callback=self._renamed)

    async def _renamed(self, title: str | None) -> None:
        if not title:
            return
        self.session.rename(title)
        await self._refresh_conversations()

    def action_delete_conversation(self) -> None:
        if self.session.conversation_id is None:
            self.notify("This conversation is not saved yet; there is nothing to delete.")
            return
        if not self._allowed("delete the conversation"):
            return
        count = len(self.session.stored_messages())
        self.push_screen(ConfirmDialog(f"Delete “{self.session.title()}” and its {count} "
                                       "messages?"), callback=self._delete_confirmed)

    async def _delete_confirmed(self, yes: bool | None) -> None:
        if not yes or self.session.conversation_id is None:
            return
        if self.session.delete():
            await self._show_conversation(self.session.stored_messages())
            self.notify("Conversation deleted.")

    def _make_room(self, other: Widget) -> None:
        """A panel opened on a terminal under :data:`BOTH_PANELS_MIN_WIDTH` columns closes the
        other one: side by side they left the chat a few columns, the message box unreadable.
        A focus left in the closed one goes to the message box (what was typed next went into
        the hidden panel's fields)."""
        if self.size.width < BOTH_PANELS_MIN_WIDTH:
            other.display = False
            focused = self.focused
            if focused is not None and other in focused.ancestors_with_self:
                self.query_one(ChatInput).focus()

    def on_resize(self, event: events.Resize) -> None:
        """A window narrowed under :data:`BOTH_PANELS_MIN_WIDTH` with both side panels open:
        one closes, as opening one there closes the other. The preference panel closes
        unless the chat screen's focus is in it (then the conversation list does). A panel
        still open that leaves the chat under :data:`MIN_CHAT_WIDTH` columns closes too,
        unless the focus is in it. A focus left in a closed panel goes to the message box."""
        if event.size.width >= BOTH_PANELS_MIN_WIDTH or not self.screen_stack:
            return
        chat_screen = self.screen_stack[0]  # a dialog or the compare screen may be in front
        try:
            panel = chat_screen.query_one(PreferencePanel)
            chats = chat_screen.query_one("#conversations")
        except NoMatches:  # not composed yet: on_mount sets the panels by the width
            return
        focused = chat_screen.focused  # not the dialog's, if one is in front

        def holds_focus(widget: Widget) -> bool:
            return focused is not None and widget in focused.ancestors_with_self

        closing = []
        if panel.display and chats.display:
            closing.append(chats if holds_focus(panel) else panel)
        for widget in (panel, chats):
            if (widget.display and widget not in closing and not holds_focus(widget)
                    and event.size.width - widget.outer_size.width < MIN_CHAT_WIDTH):
                closing.append(widget)
        for widget in closing:
            widget.display = False
            if holds_focus(widget):
                chat_screen.set_focus(chat_screen.query_one(ChatInput))

    def action_toggle_conversations(self) -> None:
        widget = self.query_one("#conversations")
        widget.display = not widget.display
        if widget.display:
            self._make_room(self.query_one(PreferencePanel))

    def action_toggle_preferences(self) -> None:
        panel = self.query_one(PreferencePanel)
        panel.display = not panel.display
        if panel.display:
            self._make_room(self.query_one("#conversations"))
            panel.query_one("#presets").focus()
        else:
            self.query_one(ChatInput).focus()
