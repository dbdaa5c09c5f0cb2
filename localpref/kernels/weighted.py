"""Weighted preferences: several preference lanes, each pushing with its own weight.

With ``z_all`` the lane that carries every preference (the anchor), ``z_base`` the base lane,
``z_i`` the lane of preference i alone and ``w_i >= 0`` its weight, the steered logits are

    z = z_all + k * sum_i w_i (z_i - z_base)

(model arithmetic over prompted lanes: Dekoninck et al., "Controlled Text Generation via
Language Model Arithmetic", ICLR 2024, with the contrast family's anchor and strength k).
That is the contrast family ``z_all + k (z_all - o)`` against one *equivalent other lane*

    o = z_all - sum_i w_i (z_i - z_base),

so the family's kernels, controls (plausibility mask, KL budget, end rule) and trace apply
unchanged once ``o`` is written: ``weighted_other_into`` writes it, one pass over the vocabulary
per lane. A token that is not finite in any lane is ``-inf`` in ``o`` (and so in ``z``), as
everywhere in ``localpref.kernels``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numba import njit

from localpref.kernels.contrast import contrast_logits_into
from localpref.kernels.primitives import NEG_INF


@njit(cache=True)
def weighted_start_into(z_all, z_base, out):
    """out = z_all in float64, or -inf where z_all or z_base is not finite."""
    if z_all.shape[0] != z_base.shape[0] or out.shape[0] != z_all.shape[0]:
        raise ValueError("the lanes and out must have the same length")
    for i in range(z_all.shape[0]):
        a = np.float64(z_all[i])
        b = np.float64(z_base[i])
        out[i] = a if (a - a == 0.0) & (b - b == 0.0) else NEG_INF


@njit(cache=True)
def weighted_push_into(z_lane, z_base, weight, out):
    """out -= weight (z_lane - z_base) in float64, or -inf where z_lane is not finite (z_base's
    non-finite tokens are -inf in out already, from ``weighted_start_into``)."""
    if z_lane.shape[0] != z_base.shape[0] or out.shape[0] != z_lane.shape[0]:
        raise ValueError("the lanes and out must have the same length")
    for i in range(z_lane.shape[0]):
        x = np.float64(z_lane[i])
        v = out[i] - weight * (x - np.float64(z_base[i]))
        out[i] = v if (x - x == 0.0) & (v - v == 0.0) else NEG_INF


def weighted_other_into(z_all: np.ndarray, z_base: np.ndarray, lanes: Sequence[np.ndarray],
                        weights: Sequence[float], out: np.ndarray) -> np.ndarray:
    """out = o = z_all - sum_i w_i (z_i - z_base), the equivalent other lane (module docstring).

    ``z_all + k (z_all - o)`` is then ``z_all + k sum_i w_i (z_i - z_base)``. Float64; a token
    not finite in ``z_all``, ``z_base`` or any ``lanes[i]`` is ``-inf``. Returns ``out``.
    """
    if len(lanes) != len(weights):
        raise ValueError("one weight per lane")
    weighted_start_into(z_all, z_base, out)
    for lane, weight in zip(lanes, weights, strict=True):
        weighted_push_into(lane, z_base, float(weight), out)
    return out


def weighted_logits(z_all: np.ndarray, z_base: np.ndarray, lanes: Sequence[np.ndarray],
                    weights: Sequence[float], k: float) -> np.ndarray:
    """z = z_all + k sum_i w_i (z_i - z_base) (unnormalised, float64; masked tokens -inf),
    through the equivalent other lane and the contrast family's kernel (allocates). Model
    arithmetic over prompted lanes (Dekoninck et al., ICLR 2024; see the module)."""
    other = weighted_other_into(z_all, z_base, lanes, weights, np.empty(len(z_all)))
    out = np.empty(len(z_all))
    contrast_logits_into(z_all, other, float(k), out)
    return out
