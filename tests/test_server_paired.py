"""The bench's per-round paired ratios (``localpref.server.paired``): geometric means of
round-by-round ratios with a bootstrap interval, against a NumPy reference."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from localpref.server.paired import (
    format_paired,
    paired_ratio,
    paired_ratios,
    paired_two_lane_limit,
    round_rates,
    round_ttft_medians,
)

positive = st.floats(min_value=1.0, max_value=1000.0, allow_nan=False, allow_infinity=False)


def _reference(mine: list[float], theirs: list[float]) -> tuple[float, float, float]:
    """The geometric mean and a 95 % percentile bootstrap of the mean log ratio (seed 0)."""
    logs = np.log(np.asarray(mine) / np.asarray(theirs))
    draws = np.random.default_rng(0).integers(0, logs.size, size=(2000, logs.size))
    low, high = np.percentile(logs[draws].mean(axis=1), [2.5, 97.5])
    return math.exp(logs.mean()), math.exp(low), math.exp(high)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(positive, positive), min_size=2, max_size=12))
def test_prop_paired_ratio_is_the_geometric_mean_with_its_bootstrap(pairs) -> None:
    mine, theirs = [a for a, _ in pairs], [b for _, b in pairs]
    ratio = paired_ratio(mine, theirs)
    expected, low, high = _reference(mine, theirs)
    assert ratio is not None and ratio["rounds"] == len(pairs)
    assert ratio["ratio"] == pytest.approx(expected, rel=1e-3, abs=1e-3)
    assert ratio["low"] == pytest.approx(low, rel=1e-3, abs=1e-3)
    assert ratio["high"] == pytest.approx(high, rel=1e-3, abs=1e-3)
    assert ratio["low"] <= ratio["ratio"] <= ratio["high"]
    assert ratio["each"] == pytest.approx([a / b for a, b in pairs], rel=2e-3, abs=1e-3)
    # the other way round: the inverse ratio, the interval's ends swapped and inverted
    inverse = paired_ratio(theirs, mine)
    assert inverse["ratio"] == pytest.approx(1 / expected, rel=2e-3, abs=1e-3)
    assert inverse["low"] == pytest.approx(1 / high, rel=2e-3, abs=1e-3)


def test_paired_ratio_skips_rounds_without_a_figure() -> None:
    assert paired_ratio([2.0, 0.0, math.nan, 3.0], [1.0, 5.0, 1.0, 0.0]) == {
        "ratio": 2.0, "low": 2.0, "high": 2.0, "rounds": 1, "each": [2.0]}
    assert paired_ratio([0.0], [1.0]) is None and paired_ratio([], []) is None
    assert paired_ratio([2.0, 1.0], [1.0, 2.0])["ratio"] == 1.0  # 2x and 0.5x cancel


def test_pairing_removes_the_drift_that_a_ratio_of_medians_keeps() -> None:
    """Three rounds on a drifting machine: localpref is slower in every round, the ratio of
    the medians says faster (150 / 140), the paired ratio says slower."""
    samples = {
        ("localpref base", 2): [(1.0, [0.10, 0.12], 100), (0.5, [0.05], 100),
                                (1.0, [0.2], 150)],
        ("llama-server base", 2): [(1.0, [0.08, 0.10], 110), (0.5, [0.04], 105),
                                   (1.0, [0.1], 140)],
        ("llama-server base", 1): [(1.0, [0.1], 50)] * 3,
    }
    assert round_rates(samples[("localpref base", 2)]) == [100.0, 200.0, 150.0]
    assert round_ttft_medians(samples[("localpref base", 2)]) == pytest.approx([0.11, 0.05, 0.2])
    ratios = paired_ratios(samples, "localpref base", "llama-server base")
    assert set(ratios["tokens_per_s"]) == {"2"}  # localpref has no 1-client row
    tokens = ratios["tokens_per_s"]["2"]
    assert tokens["ratio"] == pytest.approx((100 / 110 * 200 / 210 * 150 / 140) ** (1 / 3),
                                            abs=1e-3)
    assert tokens["ratio"] < 1 < 150 / 140
    ttft = ratios["ttft_p50"]["2"]
    assert ttft["ratio"] == pytest.approx((0.11 / 0.09 * 0.05 / 0.04 * 2.0) ** (1 / 3), abs=1e-3)
    assert format_paired(tokens).startswith(f"{tokens['ratio']:.2f}x [")


def test_steered_rounds_are_paired_with_half_the_plain_rate_at_twice_the_clients() -> None:
    samples = {
        ("localpref steered", 2): [(1.0, [0.1], 60), (1.0, [0.1], 80)],
        ("llama-server base", 4): [(1.0, [0.1], 150), (1.0, [0.1], 160)],
        ("localpref steered", 4): [(1.0, [0.1], 70)],  # no 8-client row to pair with
    }
    limits = paired_two_lane_limit(samples, "localpref steered", "llama-server base")
    assert set(limits) == {"2"}
    assert limits["2"]["ratio"] == pytest.approx(math.sqrt(60 / 75 * 80 / 80), abs=1e-3)
    assert limits["2"]["rounds"] == 2
