"""Conversations: the list, opening one, and new / rename / delete (a part of the app class).

Each conversation lives in the store; the open one also has a library ``Chat`` (built from
the saved messages when first needed) that keeps the model's cache between turns.
"""

from __future__ import annotations

from typing import Any

from textual.widgets import ListView

import localpref
from localpref.store import Store, StoredMessage, StoreError
from tui.events import WaitingMessage
from tui.screens import ConfirmDialog, TextDialog
from tui.widgets import ChatInput, ChatLog, ConversationList, MessageView, PreferencePanel
from tui.widgets.conversation_list import ConversationItem


def title_from(text: str, limit: int = 48) -> str:
    """A conversation title from its first message: the first line, shortened."""
    line = next((line.strip() for line in text.splitlines() if line.strip()), "New chat")
    line = " ".join(line.split())
    return line if len(line) <= limit else line[: limit - 1].rstrip() + "…"


class ConversationsMixin:
    """Conversation actions of ``LocalprefApp`` (methods only; the app holds the state)."""

    store: Store
    model: localpref.Model | None
    chat: localpref.Chat | None
    conversation_id: int | None
    busy: bool
    _context_used: int
    _waiting: list[WaitingMessage]

    def _history(self) -> list[dict[str, str]]:
        """The conversation the model has answered so far (waiting messages are not in it
        yet: each joins when it is sent)."""
        if self.chat is not None:
            return list(self.chat.messages)
        waiting = {entry.message_id for entry in self._waiting}
        return [m.as_chat_message() for m in self._stored_messages() if m.id not in waiting]

    def _stored_messages(self) -> list[StoredMessage]:
        if self.conversation_id is None:
            return []
        return self.store.messages(self.conversation_id)

    def _can_change(self, doing: str) -> bool:
        """False (with a notice) while an answer is being written or a message waits."""
        if self.busy:
            self.notify(f"An answer is being written; press Esc to stop it before you {doing}.",
                        severity="warning")
        elif self._waiting:
            self.notify(f"A message is waiting to be sent; wait until it is answered to {doing}.",
                        severity="warning")
        return not self.busy and not self._waiting

    async def _refresh_conversations(self) -> None:
        await self.query_one(ConversationList).show(self.store.list_conversations(),
                                                    self.conversation_id)

    async def _open_conversation(self, conversation_id: int | None) -> None:
        """Show a saved conversation (None: a new, not yet saved one)."""
        if self.chat is not None:
            self.chat.close()
            self.chat = None
        self.conversation_id = conversation_id
        log = self.query_one(ChatLog)
        await log.remove_children()
        stored = self._stored_messages()
        await log.mount_all([
            MessageView(m.role, m.content, message_id=m.id, partial=m.partial,
                        method=m.method, preference=m.preference, stats=m.stats,
                        avoid=m.avoid, changed_spans=m.changed_spans)
            for m in stored
        ])
        log.set_highlight(log.highlight)
        log.anchor()
        self._save_setting("last_conversation", conversation_id)
        await self._refresh_conversations()
        if self.model is not None:
            history = [m.as_chat_message() for m in stored]
            self._context_used = self.model.count_tokens(history) if history else 0
            self._show_status(state="ready")

    def _ensure_conversation(self, first_text: str) -> int | None:
        if self.conversation_id is None:
            try:
                self.conversation_id = self.store.create_conversation(
                    title_from(first_text), model=self.model.name if self.model else None)
            except StoreError as error:
                self.notify(str(error), severity="error")
                return None
            self._save_setting("last_conversation", self.conversation_id)
            self.call_later(self._refresh_conversations)
        return self.conversation_id

    def _save_setting(self, key: str, value: Any) -> None:
        try:
            self.store.set_setting(key, value)
        except StoreError as error:
            self.notify(str(error), severity="error")

    async def on_list_view_selected(self, event: ListView.Selected) -> None:
        """A conversation chosen in the list opens (not while an answer is written)."""
        item = event.item
        if isinstance(item, ConversationItem) and item.conversation_id != self.conversation_id:
            if self._can_change("open another conversation"):
                await self._open_conversation(item.conversation_id)
                self.query_one(ChatInput).focus()
            else:
                await self._refresh_conversations()

    async def action_new_conversation(self) -> None:
        if self._can_change("start a new conversation"):
            await self._open_conversation(None)
            self.query_one(ChatInput).focus()

    def action_rename_conversation(self) -> None:
        current = (self.store.get_conversation(self.conversation_id).title
                   if self.conversation_id is not None else "")
        self.push_screen(TextDialog("Rename the conversation", current),
                         callback=self._renamed)

    async def _renamed(self, title: str | None) -> None:
        if not title:
            return
        try:
            if self.conversation_id is None:
                self.conversation_id = self.store.create_conversation(title)
            else:
                self.store.rename_conversation(self.conversation_id, title)
        except StoreError as error:
            self.notify(str(error), severity="error")
        await self._refresh_conversations()

    def action_delete_conversation(self) -> None:
        if self.conversation_id is None:
            self.notify("This conversation is not saved yet; there is nothing to delete.")
            return
        if not self._can_change("delete the conversation"):
            return
        title = self.store.get_conversation(self.conversation_id).title
        count = len(self._stored_messages())
        self.push_screen(ConfirmDialog(f"Delete “{title}” and its {count} messages?"),
                         callback=self._delete_confirmed)

    async def _delete_confirmed(self, yes: bool | None) -> None:
        if not yes or self.conversation_id is None:
            return
        try:
            self.store.delete_conversation(self.conversation_id)
        except StoreError as error:
            self.notify(str(error), severity="error")
            return
        remaining = self.store.list_conversations()
        await self._open_conversation(remaining[0].id if remaining else None)
        self.notify("Conversation deleted.")

    def action_toggle_conversations(self) -> None:
        widget = self.query_one("#conversations")
        widget.display = not widget.display

    def action_toggle_preferences(self) -> None:
        panel = self.query_one(PreferencePanel)
        panel.display = not panel.display
        if panel.display:
            panel.query_one("#presets").focus()
        else:
            self.query_one(ChatInput).focus()
