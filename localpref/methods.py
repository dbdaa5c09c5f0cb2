"""The decoding methods: which lanes each needs, and how it turns their logits into a token.

Every method is a frozen dataclass of its settings, validated when it is made. ``lanes`` names
the lanes it reads, in order: ``"pref"`` (the conversation with the preference), ``"base"``
(without it) or ``"reward"`` (PAD's reward model, on its own context). ``selector`` gives the
per-generation object that owns the scratch buffer and the seeded generator.

Formulas (DESIGN.md, "The methods"); ``z_pref``, ``z_base`` raw logits of the two lanes:

- Base / Pref: sample from one lane.
- Contrastive (Amulet paper's "LA" baseline): ``z_pref + r (z_pref - z_base)``.
- Amulet (Zhang et al., ICLR 2025): T closed-form updates per token; exactly
  ``log_softmax(z_pref + k (z_pref - z_base))`` with the scalar k of ``kernels.amulet_contrast``.
- PAD (Chen et al., ICLR 2025): over the policy's top-K, ``z_policy + w r`` with the token-level
  reward ``r = log_softmax_K(z_reward) - log_softmax_K(z_policy)``.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from localpref import kernels
from localpref.errors import SettingsError


@dataclass(frozen=True)
class Sampling:
    """How a token is drawn from the method's scores (temperature 0 is greedy)."""

    temperature: float = 0.0
    top_p: float = 1.0
    top_k: int = 0
    min_p: float = 0.0

    def __post_init__(self) -> None:
        _require(math.isfinite(self.temperature) and self.temperature >= 0,
                 f"temperature must be 0 or more (got {self.temperature}).")
        _require(0 < self.top_p <= 1, f"top-p must be in (0, 1] (got {self.top_p}).")
        _require(self.top_k >= 0, f"top-k must be 1 or more, or 0 for off (got {self.top_k}).")
        _require(0 <= self.min_p < 1, f"min-p must be in [0, 1) (got {self.min_p}).")


class Selector:
    """Picks one token per step for one generation; owns its buffer and generator."""

    def __init__(self, method: Method, vocab_size: int, sampling: Sampling, seed: int | None):
        self.method = method
        self.sampling = sampling
        self.scores = np.empty(vocab_size, dtype=np.float64)
        self.rng = np.random.default_rng(seed)

    def uniform(self) -> float:
        """The random number for this step (drawn only when sampling)."""
        return float(self.rng.random()) if self.sampling.temperature > 0 else 0.0

    def pick(self, lane_logits: Sequence[np.ndarray]) -> int:
        """The next token from the lanes' logits (in the order of ``method.lanes``)."""
        return self.method.pick(self, lane_logits)

    def draw(self, scores: np.ndarray) -> int:
        """Index drawn from ``scores`` with this generation's sampling settings."""
        s = self.sampling
        if s.temperature == 0:
            return int(kernels.greedy(scores))
        return int(kernels.sample(scores, s.temperature, s.top_k, s.top_p, s.min_p,
                                  self.uniform()))


@dataclass(frozen=True)
class Method:
    """A decoding method: subclasses set ``name`` and ``lanes`` and implement ``pick``."""

    name: ClassVar[str] = ""
    lanes: ClassVar[tuple[str, ...]] = ()

    @property
    def label(self) -> str:
        """The method's name in results and help."""
        return self.name

    def selector(self, vocab_size: int, sampling: Sampling, seed: int | None) -> Selector:
        """The per-generation picker."""
        return Selector(self, vocab_size, sampling, seed)

    def pick(self, selector: Selector, lane_logits: Sequence[np.ndarray]) -> int:
        raise NotImplementedError

    def settings(self) -> dict[str, object]:
        """The method's settings as a plain dict (for results and files)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}


@dataclass(frozen=True)
class Base(Method):
    """Plain decoding of the conversation without the preference."""

    name: ClassVar[str] = "base"
    lanes: ClassVar[tuple[str, ...]] = ("base",)

    def pick(self, selector: Selector, lane_logits: Sequence[np.ndarray]) -> int:
        return selector.draw(lane_logits[0])


@dataclass(frozen=True)
class Pref(Method):
    """Plain decoding with the preference in the system prompt."""

    name: ClassVar[str] = "pref"
    lanes: ClassVar[tuple[str, ...]] = ("pref",)

    def pick(self, selector: Selector, lane_logits: Sequence[np.ndarray]) -> int:
        return selector.draw(lane_logits[0])


@dataclass(frozen=True)
class Contrastive(Method):
    """Classifier-free guidance between the lanes: ``z_pref + ratio (z_pref - z_base)``."""

    name: ClassVar[str] = "contrastive"
    lanes: ClassVar[tuple[str, ...]] = ("pref", "base")
    ratio: float = 2.0

    def __post_init__(self) -> None:
        _require(math.isfinite(self.ratio) and self.ratio >= 0,
                 f"ratio must be 0 or more (got {self.ratio}).")

    def pick(self, selector: Selector, lane_logits: Sequence[np.ndarray]) -> int:
        kernels.contrast_logprobs_into(lane_logits[0], lane_logits[1], self.ratio, selector.scores)
        return selector.draw(selector.scores)


@dataclass(frozen=True)
class Amulet(Method):
    """Amulet: per-token online optimisation toward the preference lane (the authors' defaults).

    ``exact=True`` uses the exact closed form (one pass over the vocabulary); ``exact=False``
    runs the paper's T-iteration loop, the reference.
    """

    name: ClassVar[str] = "amulet"
    lanes: ClassVar[tuple[str, ...]] = ("pref", "base")
    alpha: float = 2.0
    lam: float = 2.0
    eta: float = 10.0
    iterations: int = 60
    exact: bool = True

    def __post_init__(self) -> None:
        _require(math.isfinite(self.alpha) and self.alpha >= 0,
                 f"alpha must be 0 or more (got {self.alpha}).")
        _require(math.isfinite(self.lam) and self.lam >= 0,
                 f"lambda must be 0 or more (got {self.lam}).")
        _require(math.isfinite(self.eta) and self.eta > 0,
                 f"eta must be greater than 0 (got {self.eta}).")
        _require(int(self.iterations) == self.iterations and self.iterations >= 1,
                 f"iterations must be a whole number, 1 or more (got {self.iterations}).")

    @property
    def effective_contrast(self) -> float:
        """The k of the exact form ``log_softmax(z_pref + k (z_pref - z_base))``."""
        return _amulet_contrast(self.alpha, self.lam, self.eta, int(self.iterations))

    def settings(self) -> dict[str, object]:
        return {**super().settings(), "effective_contrast": self.effective_contrast}

    @property
    def label(self) -> str:
        return "amulet" if self.exact else "amulet (loop)"

    def pick(self, selector: Selector, lane_logits: Sequence[np.ndarray]) -> int:
        if self.exact:
            kernels.contrast_logprobs_into(
                lane_logits[0], lane_logits[1], self.effective_contrast, selector.scores
            )
            return selector.draw(selector.scores)
        logprobs = kernels.amulet_loop_logprobs(
            lane_logits[0], lane_logits[1], self.alpha, self.lam, self.eta, int(self.iterations)
        )
        return selector.draw(logprobs)


@dataclass(frozen=True)
class PAD(Method):
    """PAD: the policy's top-K candidates rescored by a token-level personalised reward.

    With ``reward_model`` (a GGUF path with the same vocabulary) the reward lane is that model
    reading the conversation with the preference. Without one, the reward is the prompt
    contrast ``log_softmax_K(z_pref) - log_softmax_K(z_base)``: not the paper's trained reward
    model, and the method's label says so.
    """

    name: ClassVar[str] = "pad"
    weight: float = 1.0
    candidates: int = 10
    reward_model: str | None = None

    def __post_init__(self) -> None:
        _require(math.isfinite(self.weight) and self.weight >= 0,
                 f"weight must be 0 or more (got {self.weight}).")
        _require(int(self.candidates) == self.candidates and self.candidates >= 1,
                 f"candidates must be a whole number, 1 or more (got {self.candidates}).")

    @property
    def lanes(self) -> tuple[str, ...]:  # type: ignore[override]
        return ("pref", "reward") if self.reward_model else ("pref", "base")

    @property
    def label(self) -> str:
        return "pad" if self.reward_model else "pad (prompt-contrast reward)"

    def pick(self, selector: Selector, lane_logits: Sequence[np.ndarray]) -> int:
        candidate_ids, scores = kernels.pad_scores(
            lane_logits[0], lane_logits[1], self.weight, int(self.candidates)
        )
        return int(candidate_ids[selector.draw(scores)])


#: Method names (and aliases) accepted wherever a method can be given as a string.
METHODS: dict[str, type[Method]] = {
    "base": Base,
    "pref": Pref,
    "contrastive": Contrastive,
    "amulet": Amulet,
    "pad": PAD,
}
_ALIASES = {"la": "contrastive", "cfg": "contrastive", "preference": "pref", "plain": "base"}


def resolve_method(method: Method | str, **settings: object) -> Method:
    """A method object from an object or a name, with optional settings for a name."""
    if isinstance(method, Method):
        return method
    if not isinstance(method, str):
        raise SettingsError(f"A method must be a name or a method object, not {method!r}.")
    key = method.strip().lower()
    key = _ALIASES.get(key, key)
    if key not in METHODS:
        known = ", ".join(METHODS)
        raise SettingsError(f"Unknown method {method!r}; choose one of {known}.")
    cls = METHODS[key]
    accepted = {f.name for f in dataclasses.fields(cls) if f.init}
    usable = {name: value for name, value in settings.items()
              if name in accepted and value is not None}
    return cls(**usable)  # type: ignore[arg-type]


@functools.lru_cache(maxsize=64)
def _amulet_contrast(alpha: float, lam: float, eta: float, iterations: int) -> float:
    return float(kernels.amulet_contrast(alpha, lam, eta, iterations))


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise SettingsError(message[0].upper() + message[1:])
