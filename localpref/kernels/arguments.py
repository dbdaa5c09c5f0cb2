"""Python-side argument handling of the allocating wrappers (``log_softmax``,
``amulet_logprobs``, ``amulet_loop_logprobs``, ``contrastive_logprobs``, ``pad_scores``): lanes
as contiguous 1-D float arrays, integer checks, and the error raised when every token is masked.
"""

from __future__ import annotations

import numpy as np


class AllMaskedError(ValueError):
    """Every token is masked (-inf, NaN or +inf in a lane): there is nothing to choose."""

    def __init__(self, message: str = "every token is masked, so no token can be chosen") -> None:
        super().__init__(message)


def as_lane(z, name: str) -> np.ndarray:
    a = np.asarray(z)
    if a.ndim != 1:
        raise ValueError(f"{name} must be a 1-D array of logits")
    if a.dtype != np.float32 and a.dtype != np.float64:
        a = a.astype(np.float64)
    return np.ascontiguousarray(a)


def as_pair(z_a, z_b) -> tuple[np.ndarray, np.ndarray]:
    a = as_lane(z_a, "the first lane")
    b = as_lane(z_b, "the second lane")
    if a.shape[0] != b.shape[0]:
        raise ValueError(f"the two lanes have different lengths ({a.shape[0]} and {b.shape[0]})")
    return a, b


def as_int(x, name: str) -> int:
    if isinstance(x, (bool, np.bool_)) or int(x) != x:
        raise ValueError(f"{name} must be an integer")
    return int(x)
