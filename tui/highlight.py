"""Which parts of an answer steering changed, and how they are shown.

An answer's trace (``Result.trace``: one dict per token whose ``piece`` texts join to the
answer, with ``changed`` when the steered pick differs from the preference lane's) becomes a
list of ``(start, end)`` character spans, saved with the answer (``Store.update_message``) so a
reopened conversation highlights too. A highlighted answer is shown as styled plain text: the
Markdown widget cannot style spans of its source.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rich.text import Text

#: The style of a changed token (reverse video reads on every theme, dark or light).
CHANGED_STYLE = "bold reverse"

Span = tuple[int, int]


def changed_spans(trace: Sequence[dict[str, Any]] | None) -> list[Span] | None:
    """The character spans of the changed tokens, adjacent ones merged; None without a trace."""
    if trace is None:
        return None
    spans: list[Span] = []
    position = 0
    for step in trace:
        piece = str(step.get("piece", ""))
        end = position + len(piece)
        if step.get("changed") and end > position:
            if spans and spans[-1][1] == position:
                spans[-1] = (spans[-1][0], end)
            else:
                spans.append((position, end))
        position = end
    return spans


def highlighted_text(text: str, spans: Sequence[Sequence[int]] | None) -> Text:
    """``text`` with every span in ``CHANGED_STYLE`` (spans past the end are clipped)."""
    shown = Text(text)
    for start, end in spans or ():
        start, end = max(0, int(start)), min(len(text), int(end))
        if start < end:
            shown.stylize(CHANGED_STYLE, start, end)
    return shown


def changed_fact(stats: dict[str, Any]) -> str | None:
    """``changed 17/96`` for an answer whose two lanes were decoded, else None."""
    changed = stats.get("changed_tokens")
    if changed is None:
        return None
    return f"changed {int(changed)}/{int(stats.get('n_tokens') or 0)}"
