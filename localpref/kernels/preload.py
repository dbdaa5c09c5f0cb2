"""Load (or compile) the decoding kernels of ``localpref.kernels`` for the types decoding passes
them; ``localpref.warmup`` runs this (and ``controls.warmup``) when a model loads."""

from __future__ import annotations

import numpy as np

from localpref.kernels.contrast import (
    amulet_contrast,
    amulet_loop_into,
    contrast_argmax,
    contrast_logits_into,
    contrast_logprobs_into,
)
from localpref.kernels.logprobs import kl_divergence, log_softmax_into
from localpref.kernels.pad import pad_scores_into
from localpref.kernels.sampling import apply_repetition_penalty, greedy, sample
from localpref.kernels.weighted import weighted_other_into


def warmup() -> None:
    """Compile (or load from Numba's cache) every kernel for float32 lanes and float64 scores,
    so that the first generated token does not pay for compilation (``localpref.warmup``
    runs this and ``controls.warmup`` when a model loads)."""
    z32 = np.array([0.5, -1.0, 2.0, -np.inf], dtype=np.float32)
    out = np.empty(4, dtype=np.float64)
    log_softmax_into(z32, out)
    log_softmax_into(out, out.copy())
    k = amulet_contrast(2.0, 2.0, 10.0, 60)
    contrast_logprobs_into(z32, z32, k, out)
    contrast_logits_into(z32, z32, k, out)
    contrast_argmax(z32, z32, k)
    amulet_loop_into(z32, z32, 2.0, 2.0, 10.0, 1, out)
    ids = np.empty(2, dtype=np.int64)
    sc = np.empty(2, dtype=np.float64)
    pad_scores_into(z32, z32, 1.0, ids, sc)
    weighted_other_into(z32, z32, [z32], [0.5], out)  # weighted preferences' other lane
    for scores in (out, sc, z32):  # z32: Base and Pref draw from a lane's raw logits
        greedy(scores)
        sample(scores, 1.0, 0, 1.0, 0.0, 0.5)
        sample(scores, 0.7, 2, 0.9, 0.05, 0.5)
        sample(scores, 0.7, 0, 0.9, 0.0, 0.5)
    apply_repetition_penalty(out, np.array([0], dtype=np.int64), 1.1)
    kl_divergence(out, out)
