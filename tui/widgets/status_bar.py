"""One line under the chat: model, method, preference, speed, steering cost, context used.

The line fits its width: when the facts are longer, the model's name, the method's label and
the preference are shortened (each to no less than a few characters, the longest first), then
the steering cost and the speed left out, then the preference, the method and the model's name
(the preference panel and the title say them), so that the context used and the state stay in
view."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.widgets import Static

SEPARATOR = " │ "
#: The facts that give way to a narrow line, and the characters each keeps at least.
SHORTENED = {"model": 10, "method": 12, "preference": 12}
#: The facts left out, in this order, when the shortened ones are not enough.
LEFT_OUT = ("steer", "speed", "preference", "method", "model")


class StatusBar(Static):
    """Shows what steers the next answer and what the last one cost."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__("", **kwargs)
        self.facts: dict[str, Any] = {
            "model": "loading model…", "method": "", "preference": "", "tokens_per_s": None,
            "steer_ms_per_token": None, "context_used": None, "context_size": None,
            "state": "starting", "history": "",
        }

    def show(self, **facts: Any) -> None:
        """Update some facts and redraw."""
        self.facts.update(facts)
        self.refresh()

    def parts(self) -> list[tuple[str, str, str]]:
        """Each fact shown: (name, text, style)."""
        f = self.facts
        parts = [("model", f["model"], "bold"), ("method", f"method {f['method']}", ""),
                 ("preference", f"preference {f['preference']}", "")]
        if f["tokens_per_s"] is not None:
            parts.append(("speed", f"{f['tokens_per_s']:.1f} tok/s", ""))
        if f["steer_ms_per_token"] is not None:
            parts.append(("steer", f"steer {f['steer_ms_per_token']:.2f} ms/tok", ""))
        if f["context_size"]:
            parts.append(("context", f"ctx {f['context_used'] or 0}/{f['context_size']}", ""))
        parts.append(("state", f["state"], "italic"))
        if f["history"]:
            parts.append(("history", f["history"], "bold red"))
        return parts

    def status_text(self, width: int | None = None) -> Text:
        """The line; with ``width``, shortened to fit it where the facts allow."""
        parts = self.parts()
        texts = fitted([(name, text) for name, text, _ in parts], width)
        line = Text(" ")
        shown = [(text, style) for (_, _, style), text in zip(parts, texts, strict=True)
                 if text is not None]
        for i, (text, style) in enumerate(shown):
            if i:
                line.append(SEPARATOR, style="dim")
            line.append(text, style=style)
        return line

    def render(self) -> Text:
        return self.status_text(self.size.width or None)

    @property
    def plain(self) -> str:
        """The whole line, however narrow the bar."""
        return self.status_text().plain


def fitted(parts: list[tuple[str, str]], width: int | None) -> list[str | None]:
    """The texts of ``parts`` ((name, text)), the :data:`SHORTENED` ones cut with an ellipsis,
    the longest over its floor first, until the line (a space, then the parts joined by
    :data:`SEPARATOR`) is ``width`` long; then the :data:`LEFT_OUT` ones None, in turn, while
    it is longer."""
    texts: list[str | None] = [text for _, text in parts]
    if width is None:
        return texts
    excess = 1 + sum(map(len, texts)) + len(SEPARATOR) * (len(texts) - 1) - width
    excess = _shorten(parts, texts, excess)
    for name in LEFT_OUT:
        for i, (part, _) in enumerate(parts):
            if excess > 0 and part == name and texts[i] is not None:
                excess -= len(texts[i]) + len(SEPARATOR)
                texts[i] = None
    return texts


def _shorten(parts: list[tuple[str, str]], texts: list[str | None], excess: int) -> int:
    """Cut the :data:`SHORTENED` texts (in place) by up to ``excess`` characters in all, a
    character at a time from the one furthest over its floor (ties: the first); the excess
    left."""
    while excess > 0:
        room = {i: len(text) - SHORTENED[name]
                for i, ((name, _), text) in enumerate(zip(parts, texts, strict=True))
                if name in SHORTENED and text is not None and len(text) > SHORTENED[name]}
        if not room:
            break
        i = max(room, key=lambda k: (room[k], -k))
        text = texts[i]
        assert text is not None  # ``room`` holds only texts shown
        texts[i] = text[:-2] + "…"  # one shorter, its end an ellipsis
        excess -= 1
    return excess
