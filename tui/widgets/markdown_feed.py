"""Streaming text into a ``Markdown`` widget, then showing exactly the final text."""

from __future__ import annotations

from typing import Any

from markdown_it import MarkdownIt
from markdown_it.rules_core import StateCore
from textual.widgets import Markdown
from textual.widgets.markdown import MarkdownStream


def line_breaking_parser() -> MarkdownIt:
    """Textual's "gfm-like" Markdown with every line break kept: a haiku's three lines, or a
    message typed on two (Ctrl+J), stay on their lines instead of joining into one line
    (Textual draws a soft break as a space, a hard one as a new line). HTML is text: Textual
    draws no HTML, so ``<b>``, ``List<T>`` or ``<my-key>`` would vanish from what was typed
    or written."""
    parser = MarkdownIt("gfm-like", {"html": False})
    parser.core.ruler.push("hard_breaks", _hard_breaks)
    return parser


def _hard_breaks(state: StateCore) -> None:
    for token in state.tokens:
        for child in token.children or ():
            if child.type == "softbreak":
                child.type = "hardbreak"


def message_markdown(text: str = "", **options: Any) -> Markdown:
    """The Markdown widget of a message or an answer (``options``: Textual's, e.g.
    ``classes``)."""
    return Markdown(text, parser_factory=line_breaking_parser, **options)


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
