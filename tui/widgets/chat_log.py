"""The conversation: one ``MessageView`` per message, answers streamed as Markdown.

With highlighting on (``ChatLog.set_highlight``), an answer whose changed tokens are known is
shown as styled plain text instead (``tui.highlight``), and back as Markdown when it is off.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from textual.containers import Vertical, VerticalScroll
from textual.widgets import Label, Markdown, Static

from tui.highlight import changed_fact, highlighted_text
from tui.widgets.markdown_feed import MarkdownFeed, message_markdown

STOP_REASONS = {
    "cancelled": "stopped",
    "error": "failed",
    "length": "cut at max tokens",
    # (an answer's stats say which limit its length met: ``length_limit``)
    "window": "cut at the context window",
}


def limit_met(stats: dict[str, Any]) -> str | None:
    """An answer's ``stop_reason``, ``"window"`` for a length cut by the context window (its
    ``length_limit``) rather than by max tokens."""
    reason = stats.get("stop_reason")
    return "window" if reason == "length" and stats.get("length_limit") == "window" else reason


class MessageView(Vertical, can_focus=True):
    """A message: a header (who, and for an answer, what steered it) and its Markdown text."""

    def __init__(
        self,
        role: str,
        text: str = "",
        *,
        message_id: int | None = None,
        partial: bool = False,
        method: str | None = None,
        preference: str | None = None,
        stats: dict[str, Any] | None = None,
        waiting: bool = False,
        avoid: str | None = None,
        changed_spans: Sequence[Sequence[int]] | None = None,
    ) -> None:
        super().__init__(classes=f"message {role}")
        self.role = role
        self._feed = MarkdownFeed(text)
        self.message_id = message_id
        self.partial = partial
        self.method = method
        self.preference = preference
        self.stats = stats or {}
        self.avoid = avoid
        #: ``(start, end)`` character spans of the tokens steering changed (None: unknown).
        self.changed_spans = [tuple(span) for span in changed_spans] if changed_spans else (
            [] if changed_spans is not None else None)
        self.streaming = False
        #: A message sent while the model loads or an answer is written: it goes next.
        self.waiting = waiting
        #: Whether the changed tokens are shown highlighted (as plain text) right now.
        self.highlighted = False

    @property
    def text(self) -> str:
        """The whole text shown (what the store holds once the answer ends)."""
        return self._feed.text

    def compose(self):  # noqa: ANN201 - Textual's ComposeResult
        yield Label(self.header(), classes="message-header", markup=False)
        yield message_markdown(self.text, classes="message-body")
        plain = Static("", classes="message-highlighted")
        plain.display = False
        yield plain

    def header(self) -> str:
        if self.role == "user":
            return "You · waiting" if self.waiting else "You"
        parts = ["Assistant"]
        if self.method:
            parts.append(self.method)
        if self.preference:
            parts.append(self.preference)
        if self.avoid:
            parts.append(f"avoid {self.avoid}")
        if self.streaming:
            parts.append("writing…")
        tokens_per_s = self.stats.get("tokens_per_s")
        if tokens_per_s and not self.streaming:
            parts.append(f"{tokens_per_s:.0f} tok/s")
        changed = changed_fact(self.stats)
        if changed and not self.streaming:
            parts.append(changed)
        reason = limit_met(self.stats)
        if self.partial:
            parts.append(STOP_REASONS.get(reason or "", "partial"))
        elif reason in ("length", "window"):
            parts.append(STOP_REASONS[reason])
        return " · ".join(parts)

    def _refresh_header(self) -> None:
        self.query_one(".message-header", Label).update(self.header())

    def stop_waiting(self) -> None:
        """The message has been sent to the model."""
        self.waiting = False
        self._refresh_header()

    def start_streaming(self) -> None:
        self.streaming = True
        self._feed.start(self.query_one(Markdown))
        self._refresh_header()

    async def append(self, delta: str) -> None:
        """Add streamed text (already batched by the worker)."""
        if delta and not self.streaming:
            self.start_streaming()
        await self._feed.append(self.query_one(Markdown), delta)

    async def finish(self, text: str, *, partial: bool, stats: dict[str, Any],
                     changed_spans: Sequence[Sequence[int]] | None = None) -> None:
        """The answer ended: show exactly the saved text, and its figures in the header."""
        await self._feed.finish(self.query_one(Markdown), text)
        self.streaming = False
        self.partial = partial
        self.stats = stats
        if changed_spans is not None:
            self.changed_spans = [tuple(span) for span in changed_spans]
        self._refresh_header()
        self.show_highlight(self.highlighted)

    def on_mount(self) -> None:
        self.show_highlight(self.highlighted)

    @property
    def can_highlight(self) -> bool:
        """An answer whose changed tokens are known (not while it is being written)."""
        return self.role == "assistant" and self.changed_spans is not None and not self.streaming

    def show_highlight(self, on: bool) -> None:
        """Show the answer highlighted as plain text (``on``) or as Markdown."""
        self.highlighted = on
        if not self.is_mounted:
            return
        shown = on and self.can_highlight
        plain = self.query_one(".message-highlighted", Static)
        if shown:
            plain.update(highlighted_text(self.text, self.changed_spans))
        plain.display = shown
        self.query_one(Markdown).display = not shown

    @property
    def highlighted_plain(self) -> Any:
        """The styled text shown while highlighted (a ``rich.text.Text``; for tests)."""
        return highlighted_text(self.text, self.changed_spans)


class ChatLog(VerticalScroll):
    """The messages of the open conversation, kept scrolled to the newest."""

    def on_mount(self) -> None:
        self.anchor()

    @property
    def views(self) -> list[MessageView]:
        return list(self.query(MessageView))

    #: Whether answers show their changed tokens highlighted (the app's toggle).
    highlight = False

    async def add(self, view: MessageView, after: MessageView | None = None) -> MessageView:
        """Show a message at the end, or right after ``after`` (an answer after its message
        when more messages wait below it)."""
        view.highlighted = self.highlight
        await self.mount(view, after=after)
        self.anchor()
        return view

    def set_highlight(self, on: bool) -> int:
        """Highlight the changed tokens of every answer (or stop); how many can be."""
        self.highlight = on
        for view in self.views:
            view.show_highlight(on)
        # (not an answer a regeneration hides while it writes)
        return sum(view.can_highlight for view in self.views if view.display)
