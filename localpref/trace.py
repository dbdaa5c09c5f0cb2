"""What steering did to each token: the per-token trace and the statistics every answer gets.

For every generated token the recorder reads the lanes' logits once more (before they are
decoded over) and the steered scores the method left on its selector
(``Selector.steered_family`` / ``Selector.drawn``), and keeps:

- ``logprob``: the chosen token's log-probability under the steered distribution (after the
  repetition penalty, before temperature, top-k, top-p and min-p; for PAD over its K
  candidates; for Base and Pref, the lane's own);
- ``logprob_base`` / ``logprob_pref``: its log-probability under each lane (None for a lane
  that is not decoded);
- ``top_base`` / ``top_pref``: each lane's greedy pick (after the repetition penalty);
- ``changed``: the steered distribution's greedy pick differs from the preference lane's
  greedy pick (both after the repetition penalty); always False for one-lane methods;
- ``top_logprobs`` (only when asked for, ``top_n``): the steered distribution's likeliest
  tokens as ``[token, logprob]`` (the selector then writes its whole scores every step).

With a grammar's mask (``Selector.mask``) the steered distribution is the one after the mask,
so ``logprob`` is read from the scores drawn from.

Whenever two lanes are decoded, ``stats`` gets ``changed_tokens`` (how many ``changed``) and
``mean_shift`` (the mean of ``logprob - logprob_pref``, nats per token); with one lane they
are None. The fluency statistics (``fluency_base`` / ``fluency_pref``, docs/steering.md) come
from the same pass. With ``keep_trace`` the per-token records are kept too; their ``piece``
texts are cut to the final answer (stop strings, cancelling) so that they join to it.

Cost: one fused pass over the vocabulary per step (``controls.step_statistics``) replaces the
two per-lane log-sum-exps the fluency statistics needed before (docs/steering.md, "Trace").
A one-lane method's greedy pick is that pass itself (``Selector.draw_lane``): the recorder
reads the lane's normaliser from the selector instead of passing over the lane again.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from localpref import kernels
from localpref.kernels import controls
from localpref.methods import Selector

NEG_INF = -math.inf


class StepRecorder:
    """Per-token statistics (and optionally the trace) of one answer."""

    def __init__(self, selector: Selector, lanes: dict[str, int], *, keep_trace: bool,
                 two_lane_method: bool) -> None:
        self.selector = selector
        #: global lane index of the "base" and "pref" lanes that are decoded
        self.lanes = {kind: index for kind, index in lanes.items() if kind in ("base", "pref")}
        self.keep_trace = keep_trace
        self.two_lane_method = two_lane_method
        self.fluency_totals = dict.fromkeys(self.lanes, 0.0)
        self.changed_tokens = 0
        self.shift_total = 0.0
        self.n_tokens = 0
        self.records: list[dict[str, Any]] = []
        self.text_ends: list[int] = []
        #: alternatives kept per token in the trace (``top_logprobs``); 0: none
        self.top_n = 0

    @property
    def measures_shift(self) -> bool:
        """Whether two lanes are decoded (then changed_tokens and mean_shift are reported)."""
        return len(self.lanes) == 2 or (self.two_lane_method and "pref" in self.lanes)

    def record(self, views: Sequence[np.ndarray], token: int, text_end: int) -> None:
        """Record the step that chose ``token`` from the lanes' logits ``views`` (still those
        of this step); ``text_end`` is the answer's length in characters with the token."""
        selector = self.selector
        z_pref = views[self.lanes["pref"]] if "pref" in self.lanes else None
        z_base = views[self.lanes["base"]] if "base" in self.lanes else None
        family = selector.steered_family
        lp_pref = lp_base = lp_family = None
        top_pref = top_base = top_family = None
        if z_pref is not None and z_base is not None:
            # the family's other lane: the base lane, or for weighted preferences the
            # equivalent other lane derived from several (``localpref.weights``)
            z_other = z_base
            if family is not None and family[0] is z_pref and family[1] is not None:
                k, threshold, z_other = family[2], family[3], family[1]
            else:
                family, k, threshold = None, 0.0, NEG_INF
            lp_pref, lp_base, lp_family, top_pref, top_base, top_family = (
                controls.step_statistics(z_pref, z_other, k, threshold, token))
            if z_other is not z_base:
                lp_base, top_base = controls.lane_statistics(z_base, token)
            if family is not None and selector.steered_ends is not None:  # the end rule
                lp_family = controls.pref_ends_logprob(z_pref, z_other, k, threshold,
                                                       selector.steered_ends, token, lp_pref,
                                                       lp_family)
        elif z_pref is not None:
            lp_pref, top_pref = self._lane_statistics(z_pref, token)
        elif z_base is not None:
            lp_base, top_base = self._lane_statistics(z_base, token)
        if lp_pref is not None:
            self.fluency_totals["pref"] += lp_pref
        if lp_base is not None:
            self.fluency_totals["base"] += lp_base

        if selector.step_penalty_ids is not None:  # the lanes' greedy picks after the penalty
            if z_pref is not None:
                top_pref = selector.lane_pick(z_pref)
            if z_base is not None:
                top_base = selector.lane_pick(z_base)
        logprob, top_steered = self._steered(token, family, lp_family, top_family,
                                             lp_pref, lp_base)
        changed = bool(self.two_lane_method and top_pref is not None
                       and top_steered != top_pref)
        self.n_tokens += 1
        self.changed_tokens += changed
        if lp_pref is not None:
            self.shift_total += logprob - lp_pref
        if self.keep_trace:
            self.records.append({
                "token": int(token),
                "piece": "",
                "logprob": float(logprob),
                "logprob_base": None if lp_base is None else float(lp_base),
                "logprob_pref": None if lp_pref is None else float(lp_pref),
                "top_base": None if top_base is None else int(top_base),
                "top_pref": None if top_pref is None else int(top_pref),
                "changed": changed,
            })
            if self.top_n:
                self.records[-1]["top_logprobs"] = self._top(self.top_n)
            self.text_ends.append(text_end)

    def _steered(self, token: int, family: tuple | None, lp_family: float | None,
                 top_family: int | None, lp_pref: float | None,
                 lp_base: float | None) -> tuple[float, int]:
        """(log-probability of the token, greedy pick) under the steered distribution."""
        selector = self.selector
        greedy = selector.sampling.temperature == 0
        if selector.step_penalty_ids is None and selector.mask is None:
            if not self.two_lane_method:  # the steered distribution is the lane itself
                on_pref = selector.method.lanes[0] == "pref"
                lane_lp = lp_pref if on_pref else lp_base
                return float(lane_lp), token  # (never "changed": one lane)
            if family is not None:
                return float(lp_family), (token if greedy else int(top_family))
        scores, ids = selector.drawn
        index = token if ids is None else int(np.flatnonzero(ids == token)[0])
        top = int(kernels.greedy(scores))
        top = top if ids is None else int(ids[top])
        return float(controls.token_logprob(scores, index)), (token if greedy else top)

    def _top(self, count: int) -> list[list[float]]:
        """The ``count`` likeliest tokens of this step's steered distribution (the scores it
        drew from, ``Selector.drawn``, at temperature 1: ``log_softmax`` over its finite
        entries) as ``[token, logprob]``, likeliest first, lowest id on ties."""
        drawn = self.selector.drawn
        if drawn is None:
            return []
        scores, ids = drawn
        finite = np.flatnonzero(np.isfinite(scores))
        if finite.size == 0:
            return []
        values = np.asarray(scores, dtype=np.float64)[finite]
        top = values.max()
        logprobs = values - top - math.log(float(np.exp(values - top).sum()))
        tokens = finite if ids is None else np.asarray(ids)[finite]
        order = np.lexsort((tokens, -logprobs))[:count]
        return [[int(tokens[i]), float(logprobs[i])] for i in order]

    def _lane_statistics(self, z: np.ndarray, token: int) -> tuple[float, int]:
        """(log_softmax(z)[token], argmax z) of a one-lane step: from the greedy pick's pass
        when the token was picked straight from ``z`` (``Selector.normaliser``: the argmax
        is the token), else a pass of its own."""
        normaliser = self.selector.normaliser
        if normaliser is not None and normaliser[0] is z:
            _, m, s = normaliser
            return controls.logprob_from_normaliser(z, token, m, s), token
        return controls.lane_statistics(z, token)

    def summary(self) -> dict[str, Any]:
        """The statistics so far: fluency per lane, and changed_tokens / mean_shift."""
        n = self.n_tokens
        stats: dict[str, Any] = {}
        for kind in ("base", "pref"):
            total = self.fluency_totals.get(kind)
            stats[f"fluency_{kind}"] = total / n if total is not None and n else None
        if self.measures_shift:
            stats["changed_tokens"] = self.changed_tokens
            stats["mean_shift"] = self.shift_total / n if n else 0.0
        else:
            stats["changed_tokens"] = None
            stats["mean_shift"] = None
        return stats

    def finish(self, text: str) -> list[dict[str, Any]] | None:
        """The trace with each token's piece of ``text`` (the final answer), or None."""
        if not self.keep_trace:
            return None
        start = 0
        final = len(text)
        for record, end in zip(self.records, self.text_ends, strict=True):
            end = min(end, final)
            record["piece"] = text[start:end] if end > start else ""
            start = max(start, end)
        if self.records and start < final:  # the decoder's last flush
            self.records[-1]["piece"] += text[start:]
        return self.records


def cut_trace(records: list[dict[str, Any]], text: str) -> list[dict[str, Any]]:
    """The trace with its pieces cut so that they join to ``text`` (a shorter answer: what
    the caller was shown of a cancelled one)."""
    start = 0
    for record in records:
        piece = text[start : start + len(record["piece"])]
        record["piece"] = piece
        start += len(piece)
    if records and start < len(text):
        records[-1]["piece"] += text[start:]
    return records
