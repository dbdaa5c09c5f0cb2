"""References the steering tests check against: log-softmax in plain NumPy, and the lanes'
logits replayed through llama.cpp."""

from __future__ import annotations

import numpy as np

from localpref.api import Model

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


def replay_lanes(model: Model, prompt: str, tokens: list[int], *, preference: str | None,
                 avoid: str | None = None,
                 after_last: bool = False) -> list[tuple[np.ndarray, np.ndarray]]:
    """(z_pref, z_base) as float64 copies at every step of ``tokens``, decoded here (and, with
    ``after_last``, the step after the last token too)."""
    texts = model.lane_prompts(prompt, preference=preference, avoid=avoid)
    vocabulary = model.vocabulary
    targets = [vocabulary.tokenize(texts[kind], add_special=vocabulary.adds_bos,
                                   parse_special=True) for kind in ("pref", "base")]
    context = model.context
    lanes = [context.open_lane() for _ in targets]
    steps = []
    try:
        context.prefill(lanes, targets)
        for token in [*tokens, None] if after_last else tokens:
            steps.append((np.array(context.logits(0), np.float64),
                          np.array(context.logits(1), np.float64)))
            if token is None:
                break
            context.step(lanes, [token, token])
    finally:
        for lane in lanes:
            context.close_lane(lane)
    return steps
