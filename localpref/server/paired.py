"""Per-round paired ratios of ``localpref bench --server``, with a bootstrap interval.

The bench interleaves its servers within every round, so a round's two figures (localpref's
and a baseline's, same clients) met the same state of the machine. A shared machine drifts by
more than the gaps measured (single rounds of one server vary by up to a quarter), so the
ratio of two medians over all rounds mixes that drift in. Here every round gives one ratio
``r_i = mine_i / theirs_i`` and the figure is their geometric mean,

    ratio = exp(mean_i log r_i),

with a 95 % percentile bootstrap interval of that mean over rounds (resampling rounds with
replacement; :func:`localpref.evaluation.tables.bootstrap_interval`), exponentiated. The log
makes a ratio and its inverse symmetric. An interval that holds 1.0 says that the rounds do
not tell the two servers apart.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from typing import Any

from localpref.evaluation.tables import bootstrap_interval

#: A round's figures for one configuration: (wall seconds, first-token seconds, tokens).
Run = tuple[float, list[float], int]


def paired_ratio(mine: Sequence[float], theirs: Sequence[float]) -> dict[str, Any] | None:
    """The geometric mean of ``mine[i] / theirs[i]`` over the rounds where both are positive
    and finite, with its interval and each such round's ratio (``each``, in round order, to
    show a round that stands out); None without such a round."""
    logs = [math.log(a / b) for a, b in zip(mine, theirs, strict=False)
            if a > 0 and b > 0 and math.isfinite(a) and math.isfinite(b)]
    if not logs:
        return None
    low, high = bootstrap_interval(logs)
    return {"ratio": round(math.exp(sum(logs) / len(logs)), 3),
            "low": round(math.exp(low), 3), "high": round(math.exp(high), 3),
            "rounds": len(logs), "each": [round(math.exp(log), 3) for log in logs]}


def round_rates(runs: Sequence[Run]) -> list[float]:
    """Tokens/s of each round (0 for a round without time)."""
    return [tokens / wall if wall > 0 else 0.0 for wall, _, tokens in runs]


def round_ttft_medians(runs: Sequence[Run]) -> list[float]:
    """The median first-token time of each round's requests (NaN for a round without one)."""
    return [statistics.median(values) if values else math.nan for _, values, _ in runs]


def paired_ratios(samples: dict[tuple[str, int], list[Run]], mine: str, theirs: str
                  ) -> dict[str, dict[str, dict[str, Any]]]:
    """``{"tokens_per_s": {clients: ratio}, "ttft_p50": {clients: ratio}}``: ``mine`` over
    ``theirs`` round by round, for every client count both were measured with."""
    ratios: dict[str, dict[str, dict[str, Any]]] = {"tokens_per_s": {}, "ttft_p50": {}}
    for (label, clients), runs in sorted(samples.items(), key=lambda item: item[0][1]):
        other = samples.get((theirs, clients))
        if label != mine or other is None:
            continue
        for key, per_round in (("tokens_per_s", round_rates), ("ttft_p50", round_ttft_medians)):
            ratio = paired_ratio(per_round(runs), per_round(other))
            if ratio is not None:
                ratios[key][str(clients)] = ratio
    return ratios


def paired_two_lane_limit(samples: dict[tuple[str, int], list[Run]], steered: str,
                          plain: str) -> dict[str, dict[str, Any]]:
    """Steered tokens/s with N clients over half the plain server's with 2N, round by round."""
    limits: dict[str, dict[str, Any]] = {}
    for (label, clients), runs in sorted(samples.items(), key=lambda item: item[0][1]):
        other = samples.get((plain, 2 * clients))
        if label != steered or other is None:
            continue
        ratio = paired_ratio(round_rates(runs), [rate / 2 for rate in round_rates(other)])
        if ratio is not None:
            limits[str(clients)] = ratio
    return limits


def format_paired(ratio: dict[str, Any]) -> str:
    """``0.98x [0.95, 1.01]``."""
    return f"{ratio['ratio']:.2f}x [{ratio['low']:.2f}, {ratio['high']:.2f}]"
