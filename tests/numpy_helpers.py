"""Plain NumPy references shared by the tests of the steering kernels' callers."""

from __future__ import annotations

import numpy as np

NEG_INF = -np.inf


def np_log_softmax(z: np.ndarray) -> np.ndarray:
    """log_softmax over the finite entries of z (float64); the others, and an all-masked z,
    give -inf."""
    z = np.asarray(z, dtype=np.float64)
    finite = np.isfinite(z)
    out = np.full_like(z, NEG_INF)
    if finite.any():
        m = z[finite].max()
        out[finite] = z[finite] - m - np.log(np.exp(z[finite] - m).sum())
    return out
