"""Eight tracks of different methods and settings decoded in the same scheduler steps on the
bundled model: each one's tokens, text and trace equal the same request run alone."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from localpref import PAD, Amulet, Base, Contrastive, Pref
from localpref.api import Model
from localpref.methods import PREF_ENDS, recommended_method

TOKENS = 32  # past the staggered prefills (one decode a round): all eight step together

#: (prompt, preference, method, sampling settings) of eight different tracks: 13 lanes.
TRACKS: list[tuple[str, str | None, Any, dict[str, Any]]] = [
    ("Why is the sky blue?", None, Base(), {}),
    ("How do I keep basil alive?", "concise", Pref(), {"temperature": 0.8, "seed": 3}),
    ("Name three rivers in Europe.", "verbose", Contrastive(), {}),
    ("What is a good name for a cat?", "uplifting", Amulet(), {}),  # the papers' exact form
    ("How do I keep basil alive?", "concise", recommended_method(), {}),  # tau 0.2, end rule
    ("Describe a sunrise.", "formal", Amulet(contrast=1.0, tau=0.1, end_tokens=PREF_ENDS),
     {"temperature": 0.7, "top_p": 0.9, "seed": 11}),
    ("Name three rivers in Europe.", "concise", PAD(), {"repeat_penalty": 1.1}),
    ("Why is the sky blue?", None, Base(), {"temperature": 1.0, "top_k": 40, "seed": 5}),
]


@pytest.fixture(scope="module")
def wide(bundled_path: Path) -> Model:
    """The bundled model with a lane for every lane of the eight tracks."""
    lanes = sum(len(method.lanes) for _, _, method, _ in TRACKS)
    with Model(bundled_path, max_lanes=lanes, n_ctx=256, n_threads=1) as loaded:
        yield loaded


def _request(model: Model, index: int):  # noqa: ANN202 - a Generation
    prompt, preference, method, sampling = TRACKS[index]
    return model.stream(prompt, preference=preference, method=method, max_tokens=TOKENS,
                        ignore_eos=True, trace=True, **sampling)


def test_eight_mixed_tracks_in_one_step_equal_each_alone(wide: Model) -> None:
    alone = [_request(wide, i).run() for i in range(len(TRACKS))]
    with wide.exclusive():  # the scheduler waits: all eight are admitted in one round
        generations = [_request(wide, i).start() for i in range(len(TRACKS))]
    together = [generation.run() for generation in generations]
    events = list(wide.scheduler.events)
    ids = {job for event in events for job in event.jobs}
    full = [e for e in events if e.kind == "step" and len(e.jobs) == len(TRACKS)]
    assert len(ids) >= len(TRACKS) and full  # steps held all eight tracks at once
    assert max(e.tokens for e in full) == sum(len(m.lanes) for _, _, m, _ in TRACKS)
    for index, (mixed, single) in enumerate(zip(together, alone, strict=True)):
        assert mixed.tokens == single.tokens, index
        assert mixed.text == single.text
        assert len(mixed.tokens) == TOKENS
        assert mixed.stats["method"] == single.stats["method"]
        assert mixed.stats["batch_lanes_mean"] > single.stats["batch_lanes_mean"]
        assert mixed.trace == single.trace, index  # every field, bit for bit
    # The tracks really differ: sampled and greedy answers of one prompt part ways.
    assert together[0].tokens != together[7].tokens
