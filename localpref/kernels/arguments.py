"""Python-side argument handling of the allocating wrappers (``log_softmax``,
``amulet_logprobs``, ``amulet_loop_logprobs``, ``contrastive_logprobs``, ``pad_scores``): lanes
as contiguous 1-D float arrays, integer checks, and the error raised when every token is masked.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike


class AllMaskedError(ValueError):
    """Every token is masked (-inf, NaN or +inf in a lane): there is nothing to choose."""

    def __init__(self, message: str = "every token is masked, so no token can be chosen") -> None:
        super().__init__(message)


def as_lane(z: ArrayLike, name: str) -> np.ndarray:
    """``z`` as a contiguous 1-D float32 or float64 array (other dtypes become float64);
    ValueError naming ``name`` if it is not 1-D."""
    a = np.asarray(z)
    if a.ndim != 1:
        raise ValueError(f"{name} must be a 1-D array of logits")
    if a.dtype != np.float32 and a.dtype != np.float64:
        a = a.astype(np.float64)
    return np.ascontiguousarray(a)


def as_pair(z_a: ArrayLike, z_b: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Both lanes through ``as_lane``; ValueError if their lengths differ."""
    a = as_lane(z_a, "the first lane")
    b = as_lane(z_b, "the second lane")
    if a.shape[0] != b.shape[0]:
        raise ValueError(f"the two lanes have different lengths ({a.shape[0]} and {b.shape[0]})")
    return a, b


def as_int(x: float, name: str) -> int:
    """``x`` as an int; ValueError naming ``name`` for a bool or a number with a fraction."""
    if isinstance(x, (bool, np.bool_)) or int(x) != x:
        raise ValueError(f"{name} must be an integer")
    return int(x)
