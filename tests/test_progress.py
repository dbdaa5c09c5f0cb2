"""The progress bar's estimate of the time left: held back until a few units are done."""

from __future__ import annotations

import io

from localpref.evaluation.progress import ESTIMATE_AFTER, Progress


def test_the_time_left_waits_for_a_few_units_of_work() -> None:
    """A calibration's first estimate (one unit of 112, carrying the start's costs) said 39
    minutes for a run that took 12: the bar says "ETA --" until ESTIMATE_AFTER units."""
    stream = io.StringIO()
    progress = Progress(112, label="calibrate", stream=stream)
    for _ in range(ESTIMATE_AFTER - 1):
        progress.advance()
        assert progress.seconds_left() is None and "ETA --" in progress.line()
    progress.advance()
    left = progress.seconds_left()
    assert left is not None and left >= 0 and "ETA --" not in progress.line()


def test_a_short_or_resumed_run_estimates_once_its_own_units_are_done() -> None:
    short = Progress(2, stream=io.StringIO())
    short.advance()
    assert short.seconds_left() is None
    short.advance()
    assert short.seconds_left() == 0.0  # nothing left
    resumed = Progress(10, stream=io.StringIO())
    resumed.skip(8)  # found done: not timed
    resumed.advance()
    assert resumed.seconds_left() is None
    resumed.advance()
    assert resumed.seconds_left() == 0.0 and resumed.done == 10
