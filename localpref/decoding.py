"""The decoding loop: prefill, then per step combine, sample, stop, stream, and one decode.

A ``Generation`` is a Python generator of text pieces (close it to cancel) that also carries
its ``result`` and live ``stats``. Timing follows one definition everywhere:

- ``prefill_ms``: bringing every lane's cache to the prompt (first logits included);
- ``decode_ms``: the generation steps after prefill; ``tokens_per_s = n_tokens / decode_ms``;
- ``steer_ms_per_token``: everything in a step except ``llama_decode`` (combining the lanes,
  sampling, detokenizing, stop checks), divided by the tokens generated.
"""

from __future__ import annotations

import codecs
import contextlib
import time
from collections.abc import Callable, Generator, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from localpref.engine import Context, LaneState, Vocabulary
from localpref.methods import Selector


@dataclass
class Result:
    """A finished (or cancelled) generation: its text, its tokens and plain-dict stats."""

    text: str
    tokens: list[int]
    stats: dict[str, Any] = field(default_factory=dict)


@dataclass
class LaneGroup:
    """The lanes a generation decodes on one context, in the method's lane order."""

    context: Context
    lanes: list[LaneState]
    targets: list[list[int]]
    #: position of each lane of this group in the method's lane order
    method_indices: list[int]


class LaneSet:
    """All lanes of one generation, possibly over several contexts (PAD's reward model)."""

    def __init__(self, groups: Sequence[LaneGroup]) -> None:
        self.groups = list(groups)
        self.lane_count = sum(len(group.lanes) for group in self.groups)

    def prefill(self) -> None:
        for group in self.groups:
            group.context.prefill(group.lanes, group.targets)

    def logits(self) -> list[np.ndarray]:
        """Zero-copy logits of every lane, in the method's lane order."""
        views: list[np.ndarray] = [None] * self.lane_count  # type: ignore[list-item]
        for group in self.groups:
            for output_index, method_index in enumerate(group.method_indices):
                views[method_index] = group.context.logits(output_index)
        return views

    def step(self, token: int) -> None:
        """Append ``token`` to every lane: one ``llama_decode`` per context."""
        for group in self.groups:
            group.context.step(group.lanes, [token] * len(group.lanes))


class Generation(Generator[str, None, None]):
    """A running generation: iterate for text pieces, ``close()`` to cancel.

    ``prepare`` opens the lanes when the first piece is asked for (so an unused generation
    holds nothing). ``result`` is set once the generation ends (finished, stopped or
    cancelled); ``stats`` is updated every step, so a user interface can show tokens/s while
    it streams. ``on_finish`` runs whatever happened, errors included.
    """

    def __init__(
        self,
        prepare: Callable[[], LaneSet],
        selector: Selector,
        vocabulary: Vocabulary,
        *,
        max_tokens: int,
        stop: Sequence[str] = (),
        ignore_eos: bool = False,
        base_stats: dict[str, Any] | None = None,
        on_finish: Callable[[Result], None] | None = None,
    ) -> None:
        self.stats: dict[str, Any] = dict(base_stats or {})
        self.result: Result | None = None
        self._prepare = prepare
        self._lanes: LaneSet | None = None
        self._selector = selector
        self._vocabulary = vocabulary
        self._max_tokens = max_tokens
        self._stop = [s for s in stop if s]
        self._ignore_eos = ignore_eos
        self._on_finish = on_finish
        self._inner = self._run()

    # -- generator protocol ---------------------------------------------------------------

    def send(self, value: None) -> str:
        return self._inner.send(value)

    def throw(self, *args: Any) -> str:  # type: ignore[override]
        return self._inner.throw(*args)

    def close(self) -> None:
        self._inner.close()

    def __del__(self) -> None:
        self._inner.close()

    def run(self) -> Result:
        """Consume the whole generation and return its result."""
        for _ in self:
            pass
        assert self.result is not None
        return self.result

    # -- the loop ---------------------------------------------------------------------------

    def _run(self) -> Iterator[str]:
        tokens: list[int] = []
        text = ""
        emitted_chars = 0
        stop_reason = "cancelled"
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        clock = _StepClock()
        self.stats.update(n_tokens=0, prefill_ms=0.0, stop_reason="running")
        try:
            self._lanes = lanes = self._prepare()
            lanes.prefill()
            self.stats["prefill_ms"] = clock.lap_ms()
            while True:
                token = self._selector.pick(lanes.logits())
                if not self._ignore_eos and self._vocabulary.is_end_of_generation(token):
                    stop_reason = "eos"
                    break
                tokens.append(token)
                text += decoder.decode(self._vocabulary.piece(token))
                stop_at = _find_stop(text, self._stop)
                if stop_at is not None:
                    text, stop_reason = text[:stop_at], "stop"
                    break
                if len(tokens) >= self._max_tokens:
                    stop_reason = "length"
                    break
                with clock.decoding():
                    lanes.step(token)
                self._update_stats(len(tokens), clock)
                visible = len(text) - _held_back(text, self._stop)
                if visible > emitted_chars:
                    piece, emitted_chars = text[emitted_chars:visible], visible
                    with clock.paused():
                        yield piece
            if stop_reason != "stop":
                text += decoder.decode(b"", final=True)
            self._update_stats(len(tokens), clock)
            if len(text) > emitted_chars:
                yield text[emitted_chars:]
                emitted_chars = len(text)
        except BaseException as error:
            if not isinstance(error, (GeneratorExit, KeyboardInterrupt)):
                stop_reason = "error"
            raise
        finally:
            if stop_reason in ("cancelled", "error"):
                text = text[:emitted_chars]
                self._update_stats(len(tokens), clock)
            self.stats["stop_reason"] = stop_reason
            self.result = Result(text=text, tokens=tokens, stats=self.stats)
            if self._on_finish is not None:
                self._on_finish(self.result)

    def _update_stats(self, n_tokens: int, clock: _StepClock) -> None:
        loop_seconds = clock.working_seconds()
        stats = self.stats
        stats["n_tokens"] = n_tokens
        stats["decode_ms"] = loop_seconds * 1000
        stats["tokens_per_s"] = n_tokens / loop_seconds if loop_seconds > 0 else 0.0
        steer_seconds = max(loop_seconds - clock.decode_seconds, 0.0)
        stats["steer_ms_per_token"] = steer_seconds * 1000 / n_tokens if n_tokens else 0.0
        stats["llama_decode_ms"] = clock.decode_seconds * 1000


class _StepClock:
    """Time spent in the loop, minus time suspended at ``yield`` (the consumer's time)."""

    def __init__(self) -> None:
        self.started = time.perf_counter()
        self.paused_seconds = 0.0
        self.decode_seconds = 0.0

    def lap_ms(self) -> float:
        """Milliseconds since the start, then restart (used once, after prefill)."""
        now = time.perf_counter()
        elapsed, self.started = now - self.started, now
        return elapsed * 1000

    def working_seconds(self) -> float:
        return time.perf_counter() - self.started - self.paused_seconds

    @contextlib.contextmanager
    def decoding(self) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self.decode_seconds += time.perf_counter() - started

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self.paused_seconds += time.perf_counter() - started


def _find_stop(text: str, stops: Sequence[str]) -> int | None:
    """Index where the earliest stop string starts in ``text``, or None."""
    found = [index for index in (text.find(stop) for stop in stops) if index >= 0]
    return min(found) if found else None


def _held_back(text: str, stops: Sequence[str]) -> int:
    """How many trailing characters could still begin a stop string (not shown yet)."""
    longest = 0
    for stop in stops:
        for length in range(min(len(stop) - 1, len(text)), longest, -1):
            if text.endswith(stop[:length]):
                longest = length
                break
    return longest
