"""The list of saved conversations, newest first; choosing one opens it."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Label, ListItem, ListView

from localpref.store import Conversation


class ConversationItem(ListItem):
    """One conversation in the list (its id is the one ``localpref chat --export`` takes)."""

    def __init__(self, conversation: Conversation) -> None:
        label = Text.assemble((f"#{conversation.id} ", "dim"), conversation.title)
        super().__init__(Label(label), id=f"conversation-{conversation.id}")
        self.conversation_id = conversation.id


class ConversationList(ListView):
    """Saved conversations; the open one is highlighted."""

    async def show(self, conversations: list[Conversation], current: int | None) -> None:
        await self.clear()
        await self.extend(ConversationItem(c) for c in conversations)
        ids = [c.id for c in conversations]
        with self.prevent(ListView.Highlighted):
            self.index = ids.index(current) if current in ids else None
