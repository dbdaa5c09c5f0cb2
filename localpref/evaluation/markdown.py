"""How evaluation results are written: metric names and number formats, arrows, Markdown tables.

Shared by the summary (``report.py``) and its sweep section (``pareto.py``), so that a number
reads the same wherever it stands.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

#: Metrics in the order the tables show them, with their number format and a readable name.
METRICS: dict[str, tuple[str, str]] = {
    "words": ("{:.1f}", "words"),
    "content_words": ("{:.1f}", "words of distinct sentences"),
    "tokens": ("{:.1f}", "tokens"),
    "vader": ("{:.3f}", "VADER compound"),
    "distinct1": ("{:.3f}", "distinct-1"),
    "distinct2": ("{:.3f}", "distinct-2"),
    "mtld": ("{:.1f}", "MTLD"),
    "fluency_base": ("{:.2f}", "fluency under the base lane (nats/token)"),
    "fluency_pref": ("{:.2f}", "fluency under the preference lane (nats/token)"),
    "changed_fraction": ("{:.3f}", "tokens changed by steering (fraction of the answer)"),
}


def metric_name(metric: str) -> str:
    """A metric's readable name (``"VADER compound"``); an unknown metric keeps its key."""
    return METRICS.get(metric, ("", metric))[1]


def format_value(metric: str, value: float) -> str:
    """A value in its metric's number format (3 decimals if unknown); ``n/a`` if not finite."""
    if not math.isfinite(value):
        return "n/a"
    return METRICS.get(metric, ("{:.3f}", metric))[0].format(value)


def direction_arrow(direction: int) -> str:
    """``↑`` where higher is better (direction > 0), ``↓`` where lower is."""
    return "↑" if direction > 0 else "↓"


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    """The lines of a Markdown table: the header, the rule, one line per row."""
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines
