"""Log-softmax of one lane, and the KL divergence between two distributions given as
log-probabilities (a diagnostic)."""

from __future__ import annotations

import numpy as np
from numba import njit
from numpy.typing import ArrayLike

from localpref.kernels.arguments import AllMaskedError, as_lane
from localpref.kernels.primitives import (
    FASTMATH,
    NEG_INF,
    exp_nonpos,
    finite_or_neg_inf,
    max_of,
    normalise_inplace,
)

# --------------------------------------------------------------------------------------------
# log-softmax
# --------------------------------------------------------------------------------------------


@njit(cache=True)
def log_softmax_into(z, out):
    """out = log_softmax(z) in float64; returns the number of unmasked (finite) tokens.

    log_softmax(z)_i = z_i - m - log(sum_j exp(z_j - m)), m = max_j z_j, over finite z_j only;
    a non-finite z_i gives out_i = -inf. Passes: mask + copy, max, sum of exponentials,
    subtraction (each vectorised or eight-way). If no token is finite, out is all -inf and the
    result is 0.
    """
    n = z.shape[0]
    if out.shape[0] != n:
        raise ValueError("out must have the same length as z")
    for i in range(n):
        out[i] = finite_or_neg_inf(z[i])
    m = max_of(out)
    if m == NEG_INF:
        return 0
    return normalise_inplace(out, m)


def log_softmax(z: ArrayLike) -> np.ndarray:
    """Numerically stable log-softmax of a 1-D array, as a new float64 array.

    Non-finite entries are masked (-inf in the result). Raises AllMaskedError if none is finite.
    """
    a = as_lane(z, "z")
    out = np.empty(a.shape[0], dtype=np.float64)
    if log_softmax_into(a, out) == 0:
        raise AllMaskedError()
    return out

# --------------------------------------------------------------------------------------------
# Diagnostics
# --------------------------------------------------------------------------------------------


@njit(cache=True, fastmath=False)
def _kl_term(lp, lq):
    """p (log p - log q) for one token: 0 if p is masked or underflows, +inf if q is masked."""
    a = np.float64(lp)
    b = np.float64(lq)
    ok = a - a == 0.0
    p = exp_nonpos(min(a, 0.0) if ok else NEG_INF)
    b = b if b - b == 0.0 else NEG_INF
    return p * (a - b) if ok & (p > 0.0) else 0.0


@njit(cache=True, fastmath=FASTMATH)
def kl_divergence(logp, logq):
    """KL(p || q) = sum_i p_i (log p_i - log q_i) in float64, from log-probabilities.

    Tokens where p is masked (non-finite log p, or p underflowing to 0) contribute nothing;
    if q is masked where p > 0 the divergence is +inf. One vectorised pass. (Kullback and
    Leibler, 1951; the evaluation's and the KL budget's measure of how far steering moved.)
    """
    if logp.shape[0] != logq.shape[0]:
        raise ValueError("the two distributions have different lengths")
    s = 0.0
    for i in range(logp.shape[0]):
        s += _kl_term(logp[i], logq[i])
    return s
