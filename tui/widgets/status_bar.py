"""One line under the chat: model, method, preference, speed, steering cost, context used."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.widgets import Static


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
        self.update(self.status_text())

    def status_text(self) -> Text:
        f = self.facts
        parts: list[tuple[str, str]] = [(f["model"], "bold")]
        parts.append((f"method {f['method']}", ""))
        parts.append((f"preference {f['preference']}", ""))
        if f["tokens_per_s"] is not None:
            parts.append((f"{f['tokens_per_s']:.1f} tok/s", ""))
        if f["steer_ms_per_token"] is not None:
            parts.append((f"steer {f['steer_ms_per_token']:.2f} ms/tok", ""))
        if f["context_size"]:
            used = f["context_used"] or 0
            parts.append((f"ctx {used}/{f['context_size']}", ""))
        parts.append((f["state"], "italic"))
        if f["history"]:
            parts.append((f["history"], "bold red"))
        text = Text(" ")
        for i, (part, style) in enumerate(parts):
            if i:
                text.append(" │ ", style="dim")
            text.append(part, style=style)
        return text

    @property
    def plain(self) -> str:
        return self.status_text().plain
