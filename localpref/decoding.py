"""The decoding loop: prefill, then per step combine, sample, stop, stream, and one decode.

A *track* is one answer being written by one method from its lanes. A plain generation has
one track; a comparison has one per method, all decoded together: every step puts the new
token of every lane of every unfinished track into ONE batch per context.

Timing follows one definition everywhere:

- ``prefill_ms``: bringing every lane's cache to the prompt (first logits included);
- ``decode_ms``: the generation steps after prefill, minus the time the consumer held the
  generator between pieces; ``tokens_per_s = n_tokens / decode_ms``;
- ``steer_ms_per_token``: everything in a step except ``llama_decode`` (combining the lanes,
  sampling, fluency, detokenizing, stop checks), divided by the tokens generated.

Fluency comes for free from lanes decoded anyway: ``fluency_base`` / ``fluency_pref`` are the
mean log-probability (nats per token) that the base / preference lane gives the tokens chosen.
"""

from __future__ import annotations

import codecs
import contextlib
import threading
import time
from collections.abc import Callable, Generator, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from localpref.engine import Context, LaneState, PrefillStopped, Vocabulary
from localpref.methods import Selector
from localpref.trace import StepRecorder


@dataclass
class Result:
    """A finished (or cancelled) generation: its text, its tokens and plain-dict stats.

    ``trace`` is the per-token trace (``localpref.trace``) when asked for, else None.
    """

    text: str
    tokens: list[int]
    stats: dict[str, Any] = field(default_factory=dict)
    trace: list[dict[str, Any]] | None = None


@dataclass
class LaneGroup:
    """The lanes decoded on one context, with the global index of each."""

    context: Context
    lanes: list[LaneState] = field(default_factory=list)
    targets: list[list[int]] = field(default_factory=list)
    lane_indices: list[int] = field(default_factory=list)


class LaneSet:
    """Every lane of a generation, possibly over several contexts (PAD's reward model).

    Lanes are numbered globally; ``logits()`` returns the views of the lanes decoded last.
    """

    def __init__(self, groups: Sequence[LaneGroup]) -> None:
        self.groups = list(groups)
        self.lane_count = sum(len(group.lanes) for group in self.groups)
        self._views: list[np.ndarray | None] = [None] * self.lane_count

    def prefill(self, should_stop: Callable[[], bool] | None = None) -> int:
        """Evaluate every lane's prompt (shared prefixes once); logits of all lanes ready.

        Returns the number of tokens evaluated (a chat's history is not evaluated again).
        Raises ``PrefillStopped`` when ``should_stop`` answers True between chunks.
        """
        evaluated = 0
        for group in self.groups:
            evaluated += group.context.prefill(group.lanes, group.targets,
                                               should_stop=should_stop)
            for output_index, lane_index in enumerate(group.lane_indices):
                self._views[lane_index] = group.context.logits(output_index)
        return evaluated

    def logits(self, lane_indices: Sequence[int]) -> list[np.ndarray]:
        """Zero-copy logits of the given lanes (valid until the next decode)."""
        return [self._views[i] for i in lane_indices]  # type: ignore[misc]

    def step(self, tokens_by_lane: dict[int, int]) -> None:
        """Append a token to each listed lane: one ``llama_decode`` per context."""
        for group in self.groups:
            members = [
                (position, lane_index)
                for position, lane_index in enumerate(group.lane_indices)
                if lane_index in tokens_by_lane
            ]
            if not members:
                continue
            lanes = [group.lanes[position] for position, _ in members]
            group.context.step(lanes, [tokens_by_lane[i] for _, i in members])
            for output_index, (_, lane_index) in enumerate(members):
                self._views[lane_index] = group.context.logits(output_index)


class Track:
    """One answer: its method's selector, the lanes it reads, and what it has written."""

    def __init__(
        self,
        selector: Selector,
        lane_indices: Sequence[int],
        fluency_lanes: dict[str, int] | None = None,
        *,
        keep_trace: bool = False,
    ) -> None:
        self.selector = selector
        self.lane_indices = list(lane_indices)
        #: lanes ("base", "pref") whose log-probability of each chosen token is recorded
        self.fluency_lanes = dict(fluency_lanes or {})
        #: every lane the track decodes: the method's, then any decoded only to be scored
        self.all_lane_indices = list(dict.fromkeys([*lane_indices, *self.fluency_lanes.values()]))
        #: per-token statistics: fluency, changed tokens, mean shift, and the trace if kept
        self.recorder = StepRecorder(selector, self.fluency_lanes, keep_trace=keep_trace,
                                     two_lane_method=len(self.lane_indices) == 2)
        self.stats: dict[str, Any] = {}
        self.tokens: list[int] = []
        self.text = ""
        self.emitted_chars = 0
        self.stop_reason: str | None = None
        self.decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self.result: Result | None = None

    def finish(self, reason: str) -> None:
        self.stop_reason = reason
        if reason not in ("stop", "cancelled", "error"):
            self.text += self.decoder.decode(b"", final=True)


@dataclass
class Plan:
    """What ``prepare`` returns: the lanes, opened and ready to prefill, and the tracks."""

    lanes: LaneSet
    tracks: list[Track]


class MultiGeneration(Generator[tuple[int, str], None, None]):
    """Several tracks decoded together; yields ``(track index, text piece)``.

    ``prepare`` opens the lanes when the first piece is asked for, so an unused generation
    holds nothing; ``on_finish`` runs whatever happened, errors included. ``results`` holds
    one ``Result`` per track once the generation ends; each track's ``stats`` are updated
    every step, so a user interface can show tokens/s while it streams. ``cancel()`` may be
    called from any thread: the generation ends at the next step, or between prefill chunks.
    """

    def __init__(
        self,
        prepare: Callable[[], Plan],
        vocabulary: Vocabulary,
        *,
        max_tokens: int,
        stop: Sequence[str] = (),
        ignore_eos: bool = False,
        track_stats: Sequence[dict[str, Any]],
        on_finish: Callable[[list[Result]], None] | None = None,
    ) -> None:
        self.track_stats = [dict(stats) for stats in track_stats]
        self.results: list[Result] = []
        self._prepare = prepare
        self._vocabulary = vocabulary
        self._max_tokens = max_tokens
        self._stop = [s for s in stop if s]
        self._ignore_eos = ignore_eos
        self._on_finish = on_finish
        self._cancelled = threading.Event()
        self._inner = self._run()

    def cancel(self) -> None:
        """Ask the generation to end (from any thread); what was written is kept."""
        self._cancelled.set()

    def send(self, value: None) -> tuple[int, str]:
        return self._inner.send(value)

    def throw(self, *args: Any) -> tuple[int, str]:  # type: ignore[override]
        return self._inner.throw(*args)

    def close(self) -> None:
        self._inner.close()

    def __del__(self) -> None:
        self._inner.close()

    def run(self) -> list[Result]:
        """Consume the whole generation and return one result per track."""
        for _ in self:
            pass
        return self.results

    def _run(self) -> Iterator[tuple[int, str]]:
        clock = _StepClock()
        tracks: list[Track] = []
        for stats in self.track_stats:
            stats.update(n_tokens=0, prefill_ms=0.0, stop_reason="running")
        outcome = "cancelled"
        try:
            plan = self._prepare()
            tracks = plan.tracks
            for track, stats in zip(tracks, self.track_stats, strict=True):
                track.stats = stats
            try:
                prefill_tokens = plan.lanes.prefill(should_stop=self._cancelled.is_set)
            except PrefillStopped:
                return
            prefill_ms = clock.lap_ms()
            for track in tracks:
                track.stats["prefill_ms"] = prefill_ms
                track.stats["prefill_tokens"] = prefill_tokens
            active = list(tracks)
            while active and not self._cancelled.is_set():
                tokens_by_lane: dict[int, int] = {}
                for track in active:
                    token = track.selector.pick(plan.lanes.logits(track.lane_indices))
                    written = len(track.tokens)
                    keep_going = self._advance(track, token)
                    if len(track.tokens) > written:
                        _add_fluency(track, plan.lanes, token)
                    if keep_going:
                        for lane_index in track.all_lane_indices:
                            tokens_by_lane[lane_index] = token
                if tokens_by_lane:
                    with clock.decoding():
                        plan.lanes.step(tokens_by_lane)
                for index, track in enumerate(tracks):
                    if track in active:
                        _update_stats(track, clock)
                        visible = len(track.text) - _held_back(track.text, self._stop)
                        if track.stop_reason is not None:
                            visible = len(track.text)
                        if visible > track.emitted_chars:
                            piece = track.text[track.emitted_chars : visible]
                            track.emitted_chars = visible
                            with clock.paused():
                                yield index, piece
                active = [track for track in active if track.stop_reason is None]
            outcome = "done"
        except BaseException as error:
            if not isinstance(error, (GeneratorExit, KeyboardInterrupt)):
                outcome = "error"
            raise
        finally:
            for track in tracks:
                if track.stop_reason is None:
                    track.finish(outcome if outcome != "done" else "cancelled")
                    track.text = track.text[: track.emitted_chars]
                _update_stats(track, clock)
                track.stats["stop_reason"] = track.stop_reason
                track.result = Result(text=track.text, tokens=track.tokens, stats=track.stats,
                                      trace=track.recorder.finish(track.text))
            self.results = [track.result for track in tracks if track.result is not None]
            if self._on_finish is not None:
                self._on_finish(self.results)

    def _advance(self, track: Track, token: int) -> bool:
        """Add ``token`` to ``track``; True when its lanes must decode it (not finished)."""
        if not self._ignore_eos and self._vocabulary.is_end_of_generation(token):
            track.finish("eos")
            return False
        track.tokens.append(token)
        track.text += track.decoder.decode(self._vocabulary.piece(token))
        stop_at = _find_stop(track.text, self._stop)
        if stop_at is not None:
            track.text = track.text[:stop_at]
            track.finish("stop")
            return False
        if len(track.tokens) >= self._max_tokens:
            track.finish("length")
            return False
        return True


class Generation(Generator[str, None, None]):
    """One answer as a generator of text pieces; ``close()`` it to cancel.

    ``result`` is set once it ends (finished, stopped or cancelled, the partial text kept);
    ``stats`` is updated every step.
    """

    def __init__(self, multi: MultiGeneration) -> None:
        self._multi = multi
        self.stats: dict[str, Any] = multi.track_stats[0]
        self._pieces = (piece for _, piece in multi)

    @property
    def result(self) -> Result | None:
        return self._multi.results[0] if self._multi.results else None

    def send(self, value: None) -> str:
        return self._pieces.send(value)

    def throw(self, *args: Any) -> str:  # type: ignore[override]
        return self._pieces.throw(*args)

    def close(self) -> None:
        self._pieces.close()
        self._multi.close()

    def cancel(self) -> None:
        """End the answer at the next step or prefill chunk; safe from any thread."""
        self._multi.cancel()

    def run(self) -> Result:
        """Consume the whole generation and return its result."""
        self._multi.run()
        assert self.result is not None
        return self.result


def _add_fluency(track: Track, lanes: LaneSet, token: int) -> None:
    """Record the chosen token's statistics (fluency, trace) from the lanes, before decoding."""
    track.recorder.record(lanes.logits, token, len(track.text))


def _update_stats(track: Track, clock: _StepClock) -> None:
    """Refresh a track's timing figures (shared loop time, its own token count)."""
    stats = track.stats
    if track.stop_reason is not None and stats.get("stop_reason") not in (None, "running"):
        return  # frozen when the track ended
    loop_seconds = clock.working_seconds()
    n_tokens = len(track.tokens)
    stats["n_tokens"] = n_tokens
    stats["decode_ms"] = loop_seconds * 1000
    stats["tokens_per_s"] = n_tokens / loop_seconds if loop_seconds > 0 else 0.0
    steer_seconds = max(loop_seconds - clock.decode_seconds, 0.0)
    stats["steer_ms_per_token"] = steer_seconds * 1000 / n_tokens if n_tokens else 0.0
    stats["llama_decode_ms"] = clock.decode_seconds * 1000
    stats.update(track.recorder.summary())
    stats["mean_strength"] = track.selector.mean_strength
    if track.stop_reason is not None:
        stats["stop_reason"] = track.stop_reason


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
