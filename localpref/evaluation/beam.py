"""Beam search on the preference lane: the Amulet paper's fifth baseline (``beam16``).

The authors ran ``transformers``' ``generate(num_beams=16, early_stopping=True)`` on the
preference prompt; this follows that scorer, deterministically:

- running beams are ranked by their cumulative log-probability; each step takes the best
  ``2 * width`` continuations of all beams;
- a continuation that ends the answer (an end-of-generation token) among the best ``width``
  becomes a finished hypothesis scored ``sum_logprob / length ** length_penalty`` (length =
  answer tokens before the end token, at least 1; ``length_penalty`` 1.0, the transformers
  default the authors kept; 0 gives the plain cumulative log-probability); the others refill
  the ``width`` running beams;
- with ``early_stopping`` the search ends once ``width`` hypotheses are finished; at
  ``max_tokens`` the running beams become hypotheses too; the answer is the best hypothesis.

The authors also passed ``do_sample=True`` (beam *sampling*); here the search is greedy, so a
run is reproducible like the other methods' greedy runs.

All beams are lanes of ONE llama.cpp context, decoded in ONE batch per step. Reordering beams
copies a beam's KV stream to another sequence (``llama_memory_seq_cp``: each lane has a stream
of its own, so the copy moves data, at the next decode), so a beam that survives keeps its
sequence and only new branches copy.

Cells of dead beams are given up with ``Context.empty_lane``. Each beam's cells stay in the
order of its positions in its own stream (see ``Context``), so every beam's log-probabilities
stay equal to decoding its tokens alone.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from localpref.decoding import Result
from localpref.engine import MAX_LANES, Context, LaneState, Vocabulary
from localpref.errors import SettingsError
from localpref.kernels import log_softmax
from localpref.llama_library import llama_cpp


@dataclass(frozen=True)
class BeamSettings:
    """How the beam baseline searches: beams, length penalty, early stopping."""

    width: int = 16
    length_penalty: float = 1.0
    early_stopping: bool = True

    def __post_init__(self) -> None:
        if int(self.width) != self.width or not 1 <= self.width <= MAX_LANES:
            raise SettingsError(f"A beam search takes 1 to {MAX_LANES} beams, a lane each "
                                f"(got {self.width}).")

    @property
    def name(self) -> str:
        return f"beam{self.width}"

    def settings(self) -> dict[str, Any]:
        return {"beams": self.width, "length_penalty": self.length_penalty,
                "early_stopping": self.early_stopping}


@dataclass
class _Hypothesis:
    score: float
    logprob: float
    tokens: list[int]
    ended: bool


class BeamSearch:
    """Beam search over the lanes of one context (``context.max_lanes >= width``)."""

    def __init__(self, context: Context, vocabulary: Vocabulary, settings: BeamSettings) -> None:
        if context.max_lanes < settings.width:
            raise SettingsError(
                f"{settings.name} needs {settings.width} lanes; the context has "
                f"{context.max_lanes}."
            )
        self.context = context
        self.vocabulary = vocabulary
        self.settings = settings
        #: Lanes decoded by each ``context.step`` of the last run (for tests and stats).
        self.step_sizes: list[int] = []

    def _add(self, hypotheses: list[_Hypothesis], tokens: list[int], logprob: float,
             ended: bool) -> None:
        """Keep the ``width`` best finished hypotheses (transformers' BeamHypotheses.add)."""
        length = max(len(tokens), 1)
        score = logprob / (length ** self.settings.length_penalty)
        if len(hypotheses) < self.settings.width or score > hypotheses[-1].score:
            hypotheses.append(_Hypothesis(score, logprob, tokens, ended))
            hypotheses.sort(key=lambda h: -h.score)
            del hypotheses[self.settings.width :]

    def run(self, prompt_tokens: Sequence[int], max_tokens: int) -> Result:
        """The best hypothesis for a prompt: text, tokens and stats like a generation's."""
        width = self.settings.width
        context = self.context
        size = self.vocabulary.size
        started = time.perf_counter()
        decode_seconds = 0.0
        self.step_sizes = []
        lanes: list[LaneState] = []
        hypotheses: list[_Hypothesis] = []
        try:
            lanes = context.open_lanes([None] * width)  # all or none
            context.prefill(lanes[:1], [list(prompt_tokens)])
            prefill_ms = (time.perf_counter() - started) * 1000
            loop_started = time.perf_counter()
            scores = {0: 0.0}  # slot -> cumulative log-prob of the running beam there
            histories: dict[int, list[int]] = {0: []}
            outputs = {0: 0}  # slot -> output index of the last decode
            for step in range(max_tokens):
                slots = sorted(scores)
                total = np.empty((len(slots), size), dtype=np.float64)
                for row, slot in enumerate(slots):
                    total[row] = log_softmax(context.logits(outputs[slot])) + scores[slot]
                flat = total.ravel()
                count = min(2 * width, flat.size)
                best = np.argpartition(-flat, count - 1)[:count]
                best = best[np.argsort(-flat[best], kind="stable")]
                chosen: list[tuple[int, int, float]] = []  # (parent slot, token, log-prob)
                for rank, index in enumerate(best):
                    value = float(flat[index])
                    if not np.isfinite(value):
                        break
                    row, token = divmod(int(index), size)
                    parent = slots[row]
                    if self.vocabulary.is_end_of_generation(token):
                        if rank < width:
                            self._add(hypotheses, list(histories[parent]), value, True)
                        continue
                    chosen.append((parent, token, value))
                    if len(chosen) == width:
                        break
                if (self.settings.early_stopping and len(hypotheses) >= width) or not chosen:
                    break
                if step == max_tokens - 1:
                    for parent, token, value in chosen:
                        self._add(hypotheses, [*histories[parent], token], value, False)
                    break
                assigned = self._reorder(lanes, chosen)
                histories = {slot: [*histories[parent], token]
                             for slot, (parent, token, _) in zip(assigned, chosen, strict=True)}
                scores = {slot: value
                          for slot, (_, _, value) in zip(assigned, chosen, strict=True)}
                decode_started = time.perf_counter()
                context.step([lanes[slot] for slot in assigned], [t for _, t, _ in chosen])
                decode_seconds += time.perf_counter() - decode_started
                self.step_sizes.append(len(assigned))
                outputs = {slot: i for i, slot in enumerate(assigned)}
            loop_seconds = time.perf_counter() - loop_started
        finally:
            for lane in lanes:
                context.close_lane(lane)
        if not hypotheses:
            hypotheses.append(_Hypothesis(0.0, 0.0, [], True))
        winner = hypotheses[0]
        n_tokens = len(winner.tokens)
        lane_tokens = sum(self.step_sizes)
        stats: dict[str, Any] = {
            "method": self.settings.name,
            "n_lanes": width,
            "n_prompt_tokens": len(prompt_tokens),
            "n_threads": context.n_threads,
            "settings": self.settings.settings(),
            "n_tokens": n_tokens,
            "prefill_ms": prefill_ms,
            "decode_ms": loop_seconds * 1000,
            "llama_decode_ms": decode_seconds * 1000,
            "tokens_per_s": n_tokens / loop_seconds if loop_seconds > 0 else 0.0,
            "lane_tokens_per_s": lane_tokens / loop_seconds if loop_seconds > 0 else 0.0,
            "steer_ms_per_token": max(loop_seconds - decode_seconds, 0.0) * 1000
            / max(n_tokens, 1),
            "stop_reason": "eos" if winner.ended else "length",
            "beam_score": winner.score,
            "beam_logprob": winner.logprob,
        }
        return Result(self.vocabulary.detokenize(winner.tokens), list(winner.tokens), stats)

    def _reorder(self, lanes: list[LaneState], chosen: list[tuple[int, int, float]]) -> list[int]:
        """Give each chosen continuation a lane holding its parent's cache; return the slots.

        A parent's first continuation keeps the parent's lane; further ones take lanes whose
        beam died, after emptying them and copying the parent's cells there. Sources are never
        targets, so the copies do not depend on their order.
        """
        width = len(lanes)
        assigned: list[int | None] = [None] * len(chosen)
        kept: set[int] = set()
        for i, (parent, _, _) in enumerate(chosen):
            if parent not in kept:
                assigned[i] = parent
                kept.add(parent)
        free = [slot for slot in range(width) if slot not in kept]
        context = self.context
        for i, (parent, _, _) in enumerate(chosen):
            if assigned[i] is None:
                target = free.pop(0)
                assigned[i] = target
                source_lane, target_lane = lanes[parent], lanes[target]
                context.empty_lane(target_lane)
                llama_cpp.llama_memory_seq_cp(
                    context.memory, source_lane.seq_id, target_lane.seq_id, -1, -1)
                target_lane.tokens = list(source_lane.tokens)
        for slot in free:  # beams that died and were not reused
            context.empty_lane(lanes[slot])
        return [slot for slot in assigned if slot is not None]
