"""Streaming text into a ``Markdown`` widget, then showing exactly the final text."""

from __future__ import annotations

from textual.widgets import Markdown
from textual.widgets._markdown import MarkdownStream


class MarkdownFeed:
    """The text of one streamed answer and the stream that writes it into its widget.

    Used by a chat message and by a comparison pane alike: pieces are appended as they come
    (already batched per frame by the worker), and ``finish`` stops the stream and replaces
    what was rendered with the saved text if they differ.
    """

    def __init__(self, text: str = "") -> None:
        self.text = text
        self._stream: MarkdownStream | None = None

    def start(self, markdown: Markdown) -> None:
        """Open the stream (once) before the first piece arrives."""
        if self._stream is None:
            self._stream = Markdown.get_stream(markdown)

    async def append(self, markdown: Markdown, delta: str) -> None:
        """Add a piece of streamed text."""
        if not delta:
            return
        self.text += delta
        self.start(markdown)
        assert self._stream is not None
        await self._stream.write(delta)

    async def finish(self, markdown: Markdown, text: str) -> None:
        """The answer ended: show exactly ``text``."""
        if self._stream is not None:
            await self._stream.stop()
            self._stream = None
        if markdown.source != text:
            await markdown.update(text)
        self.text = text
