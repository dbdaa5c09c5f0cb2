"""A request's ``logit_bias`` and presence and frequency penalties: numbers added to tokens'
logits before the method reads them.

OpenAI's ``logit_bias`` (https://platform.openai.com/docs/api-reference/chat/create, field
``logit_bias``): a map from token id to a bias from -100 to 100 added to that token's logit
before sampling, ``z'_t = z_t + b_t``; -100 in effect bans a token, 100 in effect forces it.
Here the bias is added to the logits of every lane a method reads, before the method reads
them: a steering then steers the biased model (a contrast ``(1 + a) z_pref - a z_base`` gets
``b_t`` once, the plausibility mask and PAD's candidates are taken from biased lanes, so a
banned token is not plausible and a forced one is), and the one-lane methods draw from
``z + b`` as OpenAI does. The answer's figures (fluency, trace, logprobs) are the biased
model's too. The lanes' own logits are left as they are: the biased copies are the track's
own, so that tracks reading the same lanes (``compare``) do not bias one another.

OpenAI's presence and frequency penalties (the same reference, ``presence_penalty`` and
``frequency_penalty``, -2 to 2; the API guide's formula) lower each token by how often the
answer has written it so far: ``z'_t = z_t - c_t * frequency - [c_t > 0] * presence``, with
``c_t`` the count of ``t`` in the answer's tokens (not the prompt's: llama.cpp's penalties
also read the last 64 tokens of the prompt). They are added as the bias is, so a steering
steers the penalised model.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping, Sequence

import numpy as np

from localpref.errors import SettingsError

#: OpenAI's bounds of one bias, and of a presence or frequency penalty.
MOST_BIAS = 100.0
MOST_PENALTY = 2.0

#: What a caller may give: token id (or its decimal text) -> bias; or the checked pairs.
LogitBiasInput = Mapping[int, float] | Mapping[str, float] | tuple[tuple[int, float], ...] | None


def checked_logit_bias(bias: object) -> tuple[tuple[int, float], ...]:
    """``bias`` as (token id, bias) pairs in ascending id order, zero biases left out; raises
    ``SettingsError`` (``param="logit_bias"``) for a key that is not a token id (a whole
    number, 0 or more, or its decimal text, as JSON sends it) or a bias that is not a finite
    number from -100 to 100."""
    if bias is None:
        return ()
    if isinstance(bias, tuple) and all(isinstance(pair, tuple) and len(pair) == 2
                                       for pair in bias):
        bias = dict(bias)  # the checked form, as a replaced Request holds it
    if not isinstance(bias, Mapping):
        raise SettingsError("logit_bias must map token ids to biases ({\"50256\": -100}).",
                            param="logit_bias")
    pairs: dict[int, float] = {}
    for key, value in bias.items():
        token = _token_id(key)
        if not _number_within(value, MOST_BIAS):
            raise SettingsError(f"A logit_bias must be a number from -100 to 100 (got {value!r} "
                                f"for token {token}).", param="logit_bias")
        if value:
            pairs[token] = float(value)
    return tuple(sorted(pairs.items()))


def checked_penalty(value: object, name: str) -> float:
    """A presence or frequency penalty (``name``) as a float; raises ``SettingsError`` unless
    it is a finite number from -2 to 2 (OpenAI's range)."""
    if not _number_within(value, MOST_PENALTY):
        raise SettingsError(f"{name} must be a number from -2 to 2 (got {value!r}).",
                            param=name)
    return float(value)


def _number_within(value: object, most: float) -> bool:
    """Whether ``value`` is a finite number (NumPy's too, not a bool) from ``-most`` to
    ``most``."""
    return (isinstance(value, numbers.Real) and not isinstance(value, bool)
            and math.isfinite(value) and -most <= value <= most)


#: The longest token id text read (no vocabulary comes near 18 digits; Python refuses to
#: convert texts of over 4,300).
MOST_ID_DIGITS = 18


def _token_id(key: object) -> int:
    text = key.strip() if isinstance(key, str) else None
    if text is not None and text.isascii() and text.isdigit() and len(text) <= MOST_ID_DIGITS:
        return int(text)  # (str.isdigit alone takes "²" and "١", which int() reads otherwise)
    if isinstance(key, numbers.Integral) and not isinstance(key, bool) and key >= 0:
        return int(key)
    shown = repr(key) if len(repr(key)) <= 40 else repr(key)[:37] + "..."
    raise SettingsError(f"logit_bias keys must be token ids, whole numbers 0 or more (got "
                        f"{shown}).", param="logit_bias")


class TokenBias:
    """The biases and penalties of one answer over a vocabulary of ``vocabulary_size``
    tokens; ``note`` counts each token the answer writes (for the penalties)."""

    def __init__(self, pairs: tuple[tuple[int, float], ...], vocabulary_size: int, *,
                 presence: float = 0.0, frequency: float = 0.0) -> None:
        outside = [token for token, _ in pairs if token >= vocabulary_size]
        if outside:
            raise SettingsError(f"logit_bias names token {outside[0]}, which this model's "
                                f"vocabulary ({vocabulary_size:,} tokens) does not have.",
                                param="logit_bias")
        self.ids = np.array([token for token, _ in pairs], dtype=np.int64)
        self.values = np.array([value for _, value in pairs], dtype=np.float64)
        self.presence = presence
        self.frequency = frequency
        #: how often the answer wrote each token so far (only while a penalty applies)
        self.counts: dict[int, int] = {}
        self._buffers: list[np.ndarray] = []

    def note(self, token: int) -> None:
        """Count a token the answer wrote."""
        if self.presence or self.frequency:
            self.counts[token] = self.counts.get(token, 0) + 1

    def penalties(self) -> tuple[np.ndarray, np.ndarray]:
        """(token ids, amounts) to subtract at this step: ``c_t * frequency + presence`` for
        every token written ``c_t > 0`` times."""
        ids = np.fromiter(self.counts, dtype=np.int64, count=len(self.counts))
        counts = np.fromiter(self.counts.values(), dtype=np.float64, count=len(self.counts))
        return ids, counts * self.frequency + self.presence

    def biased(self, views: Sequence[np.ndarray], positions: Sequence[int]
               ) -> list[np.ndarray]:
        """``views`` (a request's lanes' logits at this step) with the lanes at ``positions``
        (the ones a track reads) replaced by copies with ``z[t] += b[t]`` for every biased
        token ``t``, then the penalties subtracted, in buffers kept for the next step."""
        penalised, amounts = self.penalties()
        out = list(views)
        for index, position in enumerate(positions):
            lane = views[position]
            if index == len(self._buffers):
                self._buffers.append(np.empty_like(lane))
            buffer = self._buffers[index]
            if buffer.shape != lane.shape or buffer.dtype != lane.dtype:
                buffer = self._buffers[index] = np.empty_like(lane)
            np.copyto(buffer, lane)
            buffer[self.ids] += self.values.astype(buffer.dtype)
            buffer[penalised] -= amounts.astype(buffer.dtype)
            out[position] = buffer
        return out
