"""The decoding methods: which lanes each needs, and how it turns their logits into a token.

Every method is a frozen dataclass of its settings, validated when it is made. ``lanes`` names
the lanes it reads, in order: ``"pref"`` (the conversation with the preference), ``"base"``
(without it) or ``"reward"`` (PAD's reward model, on its own context). ``selector`` gives the
per-generation object that owns the scratch buffer and the seeded generator. Every two-lane
method is a ``ContrastFamily``: it owns the strength knob and the controls (plausibility, KL
budget, end-token rule) with their one step. Each class says what the front ends show
(``title``, ``lanes``, its strength's field, name and symbol), and ``METHODS`` registers it:
the app's form, the command line's flags and the sweep are derived from these.

Formulas (docs/design.md, "The methods"); ``z_pref``, ``z_base`` raw logits of the two lanes:

- Base / Pref: sample from one lane.
- Contrastive (Amulet paper's "LA" baseline): ``z_pref + r (z_pref - z_base)``.
- Amulet (Zhang et al., ICLR 2025): T closed-form updates per token; exactly
  ``log_softmax(z_pref + k (z_pref - z_base))`` with the scalar k of ``kernels.amulet_contrast``.
- PAD (Chen et al., ICLR 2025): over the policy's top-K, ``z_policy + w r`` with the token-level
  reward ``r = log_softmax_K(z_reward) - log_softmax_K(z_policy)``.
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import math
import numbers
import os
import typing
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from localpref import kernels
from localpref.errors import SettingsError, UnknownMethodError
from localpref.interrupt_hold import interrupt_held
from localpref.kernels import controls

#: Bounds far past any use that keep a value inside what the kernels take (a C integer): the
#: penalty window beyond any context, Amulet's loop beyond the paper's 60 by a thousand times.
MAX_REPEAT_LAST_N = 1 << 20
MAX_ITERATIONS = 100_000
#: The largest strength (Contrastive's ratio, Amulet's contrast, PAD's weight): far past any
#: use (past a few dozen a step's scores are the lanes' difference alone), and far below what
#: overflows the scores (1e300 turned every token's score infinite: an empty answer).
MAX_STRENGTH = 1e6


def _strength_ok(value: float) -> bool:
    return math.isfinite(value) and 0 <= value <= MAX_STRENGTH


#: The largest top-k (llama.cpp's own is a 32-bit int; one beyond 64 bits crashed the sampler).
MAX_TOP_K = 2**31 - 1
#: the highest temperature: there every token is about as likely as any other already, and a
#: temperature near the largest float overflowed the scores scaled back after the end rule
#: (``Selector.draw_ending_like_pref``): no token could be chosen
MAX_TEMPERATURE = 100.0


@dataclass(frozen=True)
class Sampling:
    """How a token is drawn from the method's scores (temperature 0 is greedy)."""

    temperature: float = 0.0
    top_p: float = 1.0
    top_k: int = 0
    min_p: float = 0.0
    repeat_penalty: float = 1.0
    repeat_last_n: int = 64

    def __post_init__(self) -> None:
        check_number_fields(self)
        _require(math.isfinite(self.repeat_penalty) and self.repeat_penalty > 0,
                 f"the repeat penalty must be greater than 0 (got {self.repeat_penalty}).",
                 "repeat_penalty", self.repeat_penalty)
        _require(1 <= self.repeat_last_n <= MAX_REPEAT_LAST_N,
                 f"repeat_last_n must be from 1 to {MAX_REPEAT_LAST_N} "
                 f"(got {self.repeat_last_n}).", "repeat_last_n")
        _require(math.isfinite(self.temperature) and self.temperature >= 0,
                 f"temperature must be 0 or more (got {self.temperature}).", "temperature",
                 self.temperature)
        _require(self.temperature <= MAX_TEMPERATURE,
                 f"temperature must be {MAX_TEMPERATURE:g} or less (got {self.temperature:g}).",
                 "temperature")
        # 0 keeps only the most likely token (greedy), as OpenAI's API and llama.cpp read it
        _require(0 <= self.top_p <= 1, f"top-p must be in [0, 1] (got {self.top_p}).", "top_p")
        _require(0 <= self.top_k <= MAX_TOP_K, f"top-k must be from 1 to {MAX_TOP_K:,}, or 0 "
                 f"for off (got {self.top_k}).", "top_k")
        _require(0 <= self.min_p < 1, f"min-p must be in [0, 1) (got {self.min_p}).", "min_p")


class Selector:
    """Picks one token per step for one generation; owns its buffer and generator."""

    def __init__(self, method: Method, vocab_size: int, sampling: Sampling, seed: int | None,
                 end_ids: Iterable[int] = ()):
        self.method = method
        #: the vocabulary's end-of-generation tokens (for ``end_tokens="pref"``)
        self.end_ids = np.array(sorted(end_ids), dtype=np.int64)
        self.sampling = sampling
        self.scores = np.empty(vocab_size, dtype=np.float64)
        self.rng = np.random.default_rng(seed)
        self.strength_total = 0.0
        self.strength_steps = 0
        self.recent: collections.deque[int] = collections.deque(maxlen=sampling.repeat_last_n)
        #: what this step's steered distribution was, for the trace (``localpref.trace``):
        #: (z_pref, z_other, k, threshold) when it is the contrast family on those lanes ...
        self.steered_family: tuple[np.ndarray, np.ndarray, float, float] | None = None
        #: ... with, under the end rule's greedy fast path, the end tokens it applied to ...
        self.steered_ends: np.ndarray | None = None
        #: ... and the scores the token was drawn from (after the penalty), with PAD's ids
        self.drawn: tuple[np.ndarray, np.ndarray | None] | None = None
        #: the recent token ids the repetition penalty applied to at this step (or None)
        self.step_penalty_ids: np.ndarray | None = None
        #: a greedy pick straight from one lane's logits: (those logits, m, s) of
        #: ``controls.lane_normaliser``, which the trace reads instead of a pass of its own
        self.normaliser: tuple[np.ndarray, float, float] | None = None
        #: a last mask on the scores before sampling, ``mask(scores, candidate_ids)`` in place
        #: (an answer's grammar, ``localpref.grammar``); None: none
        self.mask: Callable[[np.ndarray, np.ndarray | None], None] | None = None
        #: every step writes its whole steered scores (``drawn``): no one-pass fast path
        #: (a grammar's mask, or the trace's top alternatives need them)
        self.full_scores = False
        #: a lane's logits with the step's penalty (``lane_pick``), allocated when first needed
        self._lane_buffer: np.ndarray | None = None

    @property
    def fast_greedy(self) -> bool:
        """Whether this step may pick greedily in one pass without writing the scores."""
        return (self.sampling.temperature == 0 and not self.penalising
                and not self.full_scores)

    @property
    def penalising(self) -> bool:
        """Whether this step applies a repetition penalty (llama.cpp / CTRL semantics)."""
        return self.sampling.repeat_penalty != 1.0 and bool(self.recent)

    def note_strength(self, strength: float) -> None:
        """Record the strength used at this step (it varies under a KL budget)."""
        self.strength_total += strength
        self.strength_steps += 1

    @property
    def mean_strength(self) -> float | None:
        """The mean strength used per token so far (None before the first step)."""
        return self.strength_total / self.strength_steps if self.strength_steps else None

    def uniform(self) -> float:
        """The random number for this step (drawn only when sampling)."""
        return float(self.rng.random()) if self.sampling.temperature > 0 else 0.0

    def pick(self, lane_logits: Sequence[np.ndarray]) -> int:
        """The next token from the lanes' logits (in the order of ``method.lanes``)."""
        self.steered_family = None
        self.steered_ends = None
        self.drawn = None
        self.normaliser = None
        self.step_penalty_ids = (np.fromiter(self.recent, np.int64) if self.penalising
                                 else None)
        token = self.method.pick(self, lane_logits)
        self.recent.append(token)
        return token

    def lane_pick(self, z: np.ndarray) -> int:
        """A lane's greedy pick at this step: its argmax after the step's repetition penalty
        when one applies (``step_penalty_ids``), the lane's logits left as they are."""
        if self.step_penalty_ids is None:
            return int(kernels.greedy(z))
        if self._lane_buffer is None:
            self._lane_buffer = np.empty(z.shape[0], dtype=np.float64)
        self._lane_buffer[:] = z
        kernels.apply_repetition_penalty(self._lane_buffer, self.step_penalty_ids,
                                         self.sampling.repeat_penalty)
        return int(kernels.greedy(self._lane_buffer))

    def draw(self, scores: np.ndarray, candidate_ids: np.ndarray | None = None) -> int:
        """Index drawn from ``scores`` (over the vocabulary, or over ``candidate_ids``) with
        this generation's sampling settings, after the repetition penalty if any."""
        scores = self._penalised_and_recorded(scores, candidate_ids)
        if self.sampling.temperature == 0:
            return int(kernels.greedy(scores))
        return self._sample(scores)

    def draw_lane(self, z: np.ndarray) -> int:
        """``draw`` from one lane's logits (a one-lane method). A greedy pick on them as they
        came (no penalty, no mask) is the argmax of ``controls.lane_normaliser``, whose
        normaliser the trace then reads (``normaliser``) instead of passing over the lane
        again."""
        if not self.fast_greedy:
            return self.draw(z)
        self.drawn = (z, None)
        top, m, s = controls.lane_normaliser(z)
        self.normaliser = (z, m, s)
        return int(top)

    def draw_ending_like_pref(self, scores: np.ndarray, z_pref: np.ndarray,
                              end_positions: np.ndarray,
                              candidate_ids: np.ndarray | None = None) -> int:
        """``draw`` with the end rule (``end_tokens="pref"``) at this generation's temperature.

        ``scores`` is the steered distribution, ``z_pref`` the preference lane over the same
        tokens and ``end_positions`` (ascending) the end tokens' places in them. The rule
        (``controls.pref_ends_into``) is applied at temperature 1 in place, which is what the
        trace reads; the token is drawn from the rule applied to the *tempered* lanes, so the
        answer ends as often as the preference lane would at this temperature: under greedy
        its zero-temperature limit (``controls.pref_ends_greedy``, the preference lane's top
        token decides whether to end), otherwise the rule on ``scores / T`` and
        ``z_pref / T``, scaled back by T for the sampler (which divides by T).
        """
        controls.pref_ends_into(scores, z_pref, end_positions)
        scores = self._penalised_and_recorded(scores, candidate_ids)
        temperature = self.sampling.temperature
        if temperature == 0:
            return int(controls.pref_ends_greedy(scores, z_pref, end_positions))
        if temperature != 1.0:
            scores = scores / temperature
            controls.pref_ends_into(scores, np.asarray(z_pref, np.float64) / temperature,
                                    end_positions)
            scores *= temperature
        return self._sample(scores)

    def _penalised_and_recorded(self, scores: np.ndarray,
                                candidate_ids: np.ndarray | None) -> np.ndarray:
        """The scores after the repetition penalty if any and the last ``mask``, kept as
        ``drawn`` for the trace."""
        if self.penalising:
            scores = self._penalised(scores, candidate_ids)
        if self.mask is not None:
            if candidate_ids is not None:
                scores = scores.copy()
            elif scores is not self.scores:  # never modify a lane's logits: copy them first
                self.scores[:] = scores
                scores = self.scores
            self.mask(scores, candidate_ids)
        self.drawn = (scores, candidate_ids)
        return scores

    def _sample(self, scores: np.ndarray) -> int:
        s = self.sampling
        return int(kernels.sample(scores, s.temperature, s.top_k, s.top_p, s.min_p,
                                  self.uniform()))

    def _penalised(self, scores: np.ndarray, candidate_ids: np.ndarray | None) -> np.ndarray:
        penalty = self.sampling.repeat_penalty
        if candidate_ids is not None:  # PAD: a few candidates, mapped by id
            recent = set(self.recent)
            scores = scores.copy()
            for j, token in enumerate(candidate_ids):
                if int(token) in recent and np.isfinite(scores[j]):
                    scores[j] = scores[j] / penalty if scores[j] > 0 else scores[j] * penalty
            return scores
        if scores is not self.scores:  # never modify a lane's logits: copy them first
            self.scores[:] = scores
        kernels.apply_repetition_penalty(self.scores, self.step_penalty_ids, penalty)
        return self.scores


@dataclass(frozen=True)
class Method:
    """A decoding method: subclasses set ``name``, ``title`` and ``lanes`` and implement ``pick``.

    Its settings are its dataclass fields; the front ends derive their forms and flags from
    them (``setting_fields``), and a field's ``metadata["help"]`` says what it does.
    """

    name: ClassVar[str] = ""
    #: what the app shows for the method (a subclass that names itself anew and gives no title
    #: is titled by its name, not by its parent's title)
    title: ClassVar[str] = ""
    lanes: ClassVar[tuple[str, ...]] = ()

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        if "name" in cls.__dict__ and "title" not in cls.__dict__:
            cls.title = cls.name

    @property
    def label(self) -> str:
        """The method's name in results and help."""
        return self.name

    def selector(self, vocab_size: int, sampling: Sampling, seed: int | None,
                 end_ids: Iterable[int] = ()) -> Selector:
        """The per-generation picker (``end_ids``: the end-of-generation tokens)."""
        return Selector(self, vocab_size, sampling, seed, end_ids)

    def pick(self, selector: Selector, lane_logits: Sequence[np.ndarray]) -> int:
        raise NotImplementedError

    @property
    def ends_like_pref(self) -> bool:
        """Whether its answers end where its first lane's (the preference lane's) would: the
        end rule, ``end_tokens="pref"``."""
        return False

    def settings(self) -> dict[str, object]:
        """The method's settings as a plain dict (for results and files)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}


@dataclass(frozen=True)
class Base(Method):
    """Plain decoding of the conversation without the preference."""

    name: ClassVar[str] = "base"
    title: ClassVar[str] = "Base (no preference)"
    lanes: ClassVar[tuple[str, ...]] = ("base",)

    def pick(self, selector: Selector, lane_logits: Sequence[np.ndarray]) -> int:
        return selector.draw_lane(lane_logits[0])


@dataclass(frozen=True)
class Pref(Method):
    """Plain decoding with the preference in the system prompt."""

    name: ClassVar[str] = "pref"
    title: ClassVar[str] = "Pref (preference in prompt)"
    lanes: ClassVar[tuple[str, ...]] = ("pref",)

    def pick(self, selector: Selector, lane_logits: Sequence[np.ndarray]) -> int:
        return selector.draw_lane(lane_logits[0])


@dataclass(frozen=True)
class ContrastFamily(Method):
    """A two-lane method: it steers inside ``softmax(z_pref + k (z_pref - z_other))``.

    Contrastive and Amulet over the whole vocabulary; PAD over its K candidates, where its
    score is that contrast with ``k = -w`` to its reward lane (or ``k = w`` to the base lane
    for the prompt-contrast reward). Every two-lane method is one of these, and this class owns
    what they share:

    - one strength knob: ``strength`` reads the field named by ``strength_field`` (what the
      app's slider, ``--strength`` and ``--sweep strength=`` set, through ``with_strength``),
      ``strength_name`` is what it is called in words, ``strength_symbol`` in tables;
    - the controls, and their one step: ``tau`` (plausibility, 0 = off) drops tokens the
      preference lane finds implausible before combining (``threshold``), ``kl_budget``
      (None = off) lowers the strength per token so that KL(steered || preference lane)
      stays within the budget (``budget_scale``), and ``end_tokens="pref"`` gives the
      end-of-generation tokens the preference lane's probability instead of the contrast's,
      at the generation's temperature, so that under greedy decoding the answer ends when
      the preference lane's top token is an end token (``pref_ends``;
      ``Selector.draw_ending_like_pref``; ``"contrast"``, the papers', steers them like any
      token). All deviate from the papers and are off by default, so the defaults
      are the papers'.
    """

    #: the dataclass field the strength knob sets, what it is called, and its symbol
    strength_field: ClassVar[str] = ""
    strength_name: ClassVar[str] = ""
    strength_symbol: ClassVar[str] = ""

    tau: float = field(default=0.0, kw_only=True, metadata={
        "help": "drop tokens whose preference-lane probability is below tau x the top "
                "token's (plausibility; default 0, off)"})
    kl_budget: float | None = field(default=None, kw_only=True, metadata={
        "help": "per-token KL(steered || preference lane) budget in nats (default: none)"})
    end_tokens: str = field(default="contrast", kw_only=True, metadata={
        "help": "'contrast' steers the end tokens like any other (the papers'); 'pref' gives "
                "them the preference lane's probability (default contrast)"})

    def __post_init__(self) -> None:
        check_number_fields(self)
        _require(self.end_tokens in (CONTRAST_ENDS, PREF_ENDS),
                 f"The end-token rule (end_tokens) must be {CONTRAST_ENDS!r} or {PREF_ENDS!r} "
                 f"(got {self.end_tokens!r}).", "end_tokens")
        _require(math.isfinite(self.tau) and 0 <= self.tau < 1,
                 f"tau must be in [0, 1) (got {self.tau}).", "tau", self.tau)
        _require(self.kl_budget is None or (math.isfinite(self.kl_budget) and self.kl_budget > 0),
                 f"the KL budget must be greater than 0 (got {self.kl_budget}).", "kl_budget",
                 self.kl_budget)

    @property
    def strength(self) -> float:
        """The method's one strength knob (what the strength slider sets)."""
        return getattr(self, self.strength_field)

    def with_strength(self, strength: float) -> ContrastFamily:
        """The same method at another strength."""
        return dataclasses.replace(self, **{self.strength_field: strength})

    def with_strength_set_by(self, strength: float, setter: str) -> ContrastFamily:
        """``with_strength``, a strength it refuses said as ``setter`` (the flag or field the
        user gave) setting this method's knob: the refusal names the method's own field."""
        try:
            return self.with_strength(strength)
        except SettingsError as error:
            raise SettingsError(f"{setter} sets {self.title}'s {self.strength_name} here: "
                                f"{error}", param=setter) from None

    # -- the controls' step, the same for every two-lane method ------------------------------

    def threshold(self, z_pref: np.ndarray) -> float:
        """The plausibility threshold of a step: tokens whose preference-lane logit is below
        it are dropped (``max(z_pref) + log(tau)``; ``-inf`` when tau is 0, off)."""
        return controls.plausibility_threshold(z_pref, self.tau)

    def budget_scale(self, z_pref: np.ndarray, z_other: np.ndarray, k: float,
                     threshold: float) -> float:
        """The factor in [0, 1] that keeps the step's contrast ``k`` within the KL budget
        (``controls.kl_budget_scale``); 1.0 without a budget."""
        if self.kl_budget is None:
            return 1.0
        return controls.kl_budget_scale(z_pref, z_other, k, self.kl_budget, threshold)

    @property
    def pref_ends(self) -> bool:
        """Whether end tokens take the preference lane's probability (``end_tokens="pref"``)."""
        return self.end_tokens == PREF_ENDS

    @property
    def ends_like_pref(self) -> bool:
        return self.pref_ends

    def _steers_plainly(self) -> bool:
        return self.tau == 0 and self.kl_budget is None and self.end_tokens == CONTRAST_ENDS

    def pick_contrast(self, selector: Selector, z_pref: np.ndarray, z_other: np.ndarray,
                      k: float) -> int:
        """Token from ``softmax(z_pref + k (z_pref - z_other))`` with the controls (the
        ``pick`` of a method that is that contrast over the whole vocabulary at some k)."""
        if self._steers_plainly():
            selector.note_strength(k)
            selector.steered_family = (z_pref, z_other, k, -math.inf)
            if selector.fast_greedy:
                return int(kernels.contrast_argmax(z_pref, z_other, k))
            # Unnormalised scores: the sampler's softmax normalises them anyway.
            kernels.contrast_logits_into(z_pref, z_other, k, selector.scores)
            return selector.draw(selector.scores)
        threshold = self.threshold(z_pref)
        k *= self.budget_scale(z_pref, z_other, k, threshold)
        selector.note_strength(k)
        if self.pref_ends and selector.fast_greedy:
            # Greedy fast path: one pass, no scores written; the trace derives the token's
            # log-probability under the rule from the family (controls.pref_ends_logprob).
            selector.steered_family = (z_pref, z_other, k, threshold)
            selector.steered_ends = selector.end_ids
            return int(controls.contrast_pref_ends_greedy(z_pref, z_other, k, threshold,
                                                          selector.end_ids))
        controls.contrast_plausible_into(z_pref, z_other, k, threshold, selector.scores)
        if self.pref_ends:
            return selector.draw_ending_like_pref(selector.scores, z_pref, selector.end_ids)
        selector.steered_family = (z_pref, z_other, k, threshold)
        return selector.draw(selector.scores)


@dataclass(frozen=True)
class Contrastive(ContrastFamily):
    """Classifier-free guidance between the lanes: ``z_pref + ratio (z_pref - z_base)``."""

    name: ClassVar[str] = "contrastive"
    title: ClassVar[str] = "Contrastive"
    lanes: ClassVar[tuple[str, ...]] = ("pref", "base")
    strength_field: ClassVar[str] = "ratio"
    strength_name: ClassVar[str] = "ratio"
    strength_symbol: ClassVar[str] = "ratio"
    ratio: float = field(default=2.0, metadata={"help": "guidance ratio r (default 2.0)"})

    def __post_init__(self) -> None:
        super().__post_init__()
        _require(_strength_ok(self.ratio),
                 f"ratio must be from 0 to {MAX_STRENGTH:,.0f} (got {self.ratio}).", "ratio",
                 self.ratio)

    def pick(self, selector: Selector, lane_logits: Sequence[np.ndarray]) -> int:
        return self.pick_contrast(selector, lane_logits[0], lane_logits[1], self.ratio)


@dataclass(frozen=True)
class Amulet(ContrastFamily):
    """Amulet: per-token online optimisation toward the preference lane (the authors' defaults).

    ``exact=True`` uses the exact closed form (one pass over the vocabulary); ``exact=False``
    runs the paper's T-iteration loop, the reference. ``contrast`` sets the effective
    contrast k directly (the strength knob); ``alpha`` is then the one giving that k.
    """

    name: ClassVar[str] = "amulet"
    title: ClassVar[str] = "Amulet"
    lanes: ClassVar[tuple[str, ...]] = ("pref", "base")
    strength_field: ClassVar[str] = "contrast"
    strength_name: ClassVar[str] = "contrast k"
    strength_symbol: ClassVar[str] = "k"
    alpha: float = field(default=2.0, metadata={"help": "step size of the update (default 2.0)"})
    lam: float = field(default=2.0, metadata={
        "help": "weight of the proximity term lambda (default 2.0)"})
    eta: float = field(default=10.0, metadata={"help": "learning rate eta, > 0 (default 10.0)"})
    iterations: int = field(default=60, metadata={
        "help": "updates per token T, >= 1 (default 60)"})
    exact: bool = field(default=True, metadata={
        "help": "the exact closed form, one pass over the vocabulary (default); --no-exact runs "
                "the paper's T-iteration loop, the reference"})
    contrast: float | None = field(default=None, metadata={
        "help": "the effective contrast k directly (replaces --alpha; 4.65 at the paper's "
                "defaults)"})

    def __post_init__(self) -> None:
        super().__post_init__()
        _require(math.isfinite(self.alpha) and self.alpha >= 0,
                 f"alpha must be 0 or more (got {self.alpha}).", "alpha", self.alpha)
        # without the proximity term (lambda 0) each update multiplies k: 3e80 at the defaults
        _require(math.isfinite(self.lam) and self.lam > 0,
                 f"lambda must be greater than 0 (got {self.lam}).", "lam", self.lam)
        _require(math.isfinite(self.eta) and self.eta > 0,
                 f"eta must be greater than 0 (got {self.eta}).", "eta", self.eta)
        _require(int(self.iterations) == self.iterations
                 and 1 <= self.iterations <= MAX_ITERATIONS,
                 f"iterations must be a whole number from 1 to {MAX_ITERATIONS} "
                 f"(got {self.iterations}).", "iterations")
        _require(self.contrast is None or _strength_ok(self.contrast),
                 f"the contrast must be from 0 to {MAX_STRENGTH:,.0f} (got {self.contrast}).",
                 "contrast", self.contrast)
        if self.contrast is not None:  # the alpha shown beside it, and the loop's
            most = _amulet_contrast(MAX_SEARCHED_ALPHA, self.lam, self.eta, int(self.iterations))
            _require(alpha_reaches(self.contrast, self.lam, self.eta, int(self.iterations)),
                     f"no alpha gives a contrast of {self.contrast:g} with lambda {self.lam:g}, "
                     f"eta {self.eta:g} and {int(self.iterations)} iteration(s) (at most "
                     f"{most:.4g}); give a smaller contrast, lambda, or a larger eta or more "
                     "iterations.", "contrast", self.contrast)
        if self.contrast is None:  # alpha, lambda, eta and T so extreme that k overflows
            _require(_strength_ok(self.effective_contrast), "these alpha, lambda, eta and "
                     f"iterations give an effective contrast above {MAX_STRENGTH:,.0f} (or "
                     "too large to compute); give a smaller alpha or eta, or fewer "
                     "iterations.", "alpha", self.alpha)

    @property
    def effective_alpha(self) -> float:
        """The alpha that gives ``effective_contrast`` with these lambda, eta, iterations."""
        if self.contrast is None:
            return self.alpha
        return amulet_alpha_for_contrast(self.contrast, self.lam, self.eta, int(self.iterations))

    @property
    def effective_contrast(self) -> float:
        """The k of the exact form ``log_softmax(z_pref + k (z_pref - z_base))``."""
        if self.contrast is not None:
            return self.contrast
        return _amulet_contrast(self.alpha, self.lam, self.eta, int(self.iterations))

    @property
    def strength(self) -> float:
        """The effective contrast k (``contrast`` when set, else the one alpha gives)."""
        return self.effective_contrast

    def settings(self) -> dict[str, object]:
        return {**super().settings(), "effective_contrast": self.effective_contrast,
                "effective_alpha": self.effective_alpha}

    @property
    def label(self) -> str:
        return "amulet" if self.exact else "amulet (loop)"

    def pick(self, selector: Selector, lane_logits: Sequence[np.ndarray]) -> int:
        z_pref, z_base = lane_logits[0], lane_logits[1]
        if self.exact:
            return self.pick_contrast(selector, z_pref, z_base, self.effective_contrast)
        if self.tau > 0:
            implausible = z_pref < self.threshold(z_pref)
            z_pref = np.where(implausible, -np.inf, z_pref)
            z_base = np.where(implausible, -np.inf, z_base)
        alpha = self.effective_alpha
        if self.kl_budget is not None:
            # The lanes are masked already: the budget is measured without a threshold.
            k = self.effective_contrast
            scale = self.budget_scale(z_pref, z_base, k, -math.inf)
            alpha = amulet_alpha_for_contrast(scale * k, self.lam, self.eta, int(self.iterations))
        selector.note_strength(_amulet_contrast(alpha, self.lam, self.eta, int(self.iterations)))
        logprobs = kernels.amulet_loop_logprobs(
            z_pref, z_base, alpha, self.lam, self.eta, int(self.iterations)
        )
        if self.pref_ends:
            return selector.draw_ending_like_pref(logprobs, z_pref, selector.end_ids)
        return selector.draw(logprobs)


@dataclass(frozen=True)
class PAD(ContrastFamily):
    """PAD: the policy's top-K candidates rescored by a token-level personalised reward.

    With ``reward_model`` (a GGUF file with the same vocabulary, as a text or a ``Path``, or
    any name ``load`` takes) the reward lane is that model reading the conversation with the
    preference. Without one, the reward is the prompt
    contrast ``log_softmax_K(z_pref) - log_softmax_K(z_base)``: not the paper's trained reward
    model, and the method's label says so. ``tau`` and ``kl_budget`` work as for the other
    two-lane methods (on the K candidates; the strength is the weight w), and so does
    ``end_tokens`` (an end token among the candidates takes the preference lane's
    probability over K).
    """

    name: ClassVar[str] = "pad"
    title: ClassVar[str] = "PAD"
    strength_field: ClassVar[str] = "weight"
    strength_name: ClassVar[str] = "weight"
    strength_symbol: ClassVar[str] = "w"
    weight: float = field(default=1.0, metadata={"help": "reward weight w (default 1.0)"})
    candidates: int = field(default=10, metadata={"help": "top-k candidates, >= 1 (default 10)"})
    reward_model: str | None = field(default=None, metadata={
        "help": "a GGUF with the same vocabulary as reward model (default: the prompt-contrast "
                "reward)"})

    def __post_init__(self) -> None:
        if isinstance(self.reward_model, os.PathLike):  # a Path, as load() takes one
            object.__setattr__(self, "reward_model", os.fspath(self.reward_model))
        super().__post_init__()
        _require(_strength_ok(self.weight),
                 f"weight must be from 0 to {MAX_STRENGTH:,.0f} (got {self.weight}).", "weight",
                 self.weight)
        _require(int(self.candidates) == self.candidates and self.candidates >= 1,
                 f"candidates must be a whole number, 1 or more (got {self.candidates}).",
                 "candidates")
        # an empty path (a script's unset variable) would silently be the prompt-contrast reward
        _require(self.reward_model is None or bool(str(self.reward_model).strip()),
                 "The reward model must be a GGUF path, or left out for the prompt-contrast "
                 f"reward (got {self.reward_model!r}).", "reward_model")

    @property
    def lanes(self) -> tuple[str, ...]:  # type: ignore[override]
        return ("pref", "reward") if self.reward_model else ("pref", "base")

    @property
    def label(self) -> str:
        return "pad" if self.reward_model else "pad (prompt-contrast reward)"

    def settings(self) -> dict[str, object]:
        """PAD's own settings, then the shared controls (the order its results always had)."""
        values = super().settings()
        shared = [f.name for f in dataclasses.fields(ContrastFamily)]
        return {**{k: v for k, v in values.items() if k not in shared},
                **{k: values[k] for k in shared}}

    def pick(self, selector: Selector, lane_logits: Sequence[np.ndarray]) -> int:
        z_policy, z_other = lane_logits[0], lane_logits[1]
        # pad_scores computes z_policy + w (lsK(z_other) - lsK(z_policy)). With a reward
        # model that is PAD's r; without one the reward is lsK(z_pref) - lsK(z_base), i.e.
        # the same kernel with the base lane and the weight negated.
        sign = 1.0 if self.reward_model else -1.0
        weight = self.weight
        if self.kl_budget is not None and weight > 0:
            ids, _ = kernels.pad_scores(z_policy, z_other, 0.0, int(self.candidates))
            policy, other = controls.gather(z_policy, ids), controls.gather(z_other, ids)
            # Over K the score is z_policy + k (z_policy - z_other) with k = -sign w.
            weight *= self.budget_scale(policy, other, -sign * weight, self.threshold(policy))
        selector.note_strength(weight)
        candidate_ids, scores = kernels.pad_scores(z_policy, z_other, sign * weight,
                                                   int(self.candidates))
        if self.tau > 0:
            controls.restrict_to_plausible(z_policy, self.threshold(z_policy), candidate_ids,
                                           scores)
        if self.pref_ends:
            ends = np.flatnonzero(np.isin(candidate_ids, selector.end_ids))
            if ends.size:
                policy = controls.gather(z_policy, candidate_ids)
                return int(candidate_ids[selector.draw_ending_like_pref(scores, policy, ends,
                                                                        candidate_ids)])
        return int(candidate_ids[selector.draw(scores, candidate_ids)])


#: The largest alpha the search for a contrast's alpha goes to (k grows with alpha; a lambda
#: above about 1e12 keeps every k below 1 at the defaults' eta and iterations).
MAX_SEARCHED_ALPHA = 2.0 ** 39


def alpha_reaches(contrast: float, lam: float, eta: float, iterations: int) -> bool:
    """Whether some alpha up to ``MAX_SEARCHED_ALPHA`` gives the effective contrast
    ``contrast`` with these lambda, eta and iterations."""
    return contrast <= 0 or not _amulet_contrast(MAX_SEARCHED_ALPHA, lam, eta,
                                                 iterations) < contrast


def amulet_alpha_for_contrast(contrast: float, lam: float, eta: float, iterations: int) -> float:
    """The alpha whose Amulet recurrence gives effective contrast ``contrast``.

    k(alpha) is increasing in alpha (every term of the recurrence is), so bisection on
    [0, alpha_hi] finds it to float precision.
    """
    if contrast <= 0:
        return 0.0
    if not alpha_reaches(contrast, lam, eta, iterations):
        raise SettingsError(f"No alpha reaches a contrast of {contrast}.")
    high = 1.0
    while _amulet_contrast(high, lam, eta, iterations) < contrast:
        high *= 2.0
    low = 0.0
    for _ in range(200):
        middle = 0.5 * (low + high)
        if _amulet_contrast(middle, lam, eta, iterations) < contrast:
            low = middle
        else:
            high = middle
        if high - low <= 1e-15 * high:
            break
    return 0.5 * (low + high)


#: Method names (and aliases) accepted wherever a method can be given as a string.
METHODS: dict[str, type[Method]] = {
    "base": Base,
    "pref": Pref,
    "contrastive": Contrastive,
    "amulet": Amulet,
    "pad": PAD,
}
_ALIASES = {"la": "contrastive", "cfg": "contrastive", "preference": "pref", "plain": "base"}


def method_named(text: str) -> str | None:
    """The method ``text`` names by its own name (``METHODS``' keys and ``"recommended"``),
    else None: what tells a model id's lone method from a preference. Aliases are left out: a
    preference may be the word ``plain``."""
    key = text.strip().lower()
    return key if key in METHODS or key == RECOMMENDED else None


def two_lane_method_names() -> list[str]:
    """The names of the two-lane methods (``ContrastFamily``) in ``METHODS``, in its order."""
    return [name for name, method_class in METHODS.items()
            if issubclass(method_class, ContrastFamily)]


def setting_fields(method_class: type[Method]) -> list[dataclasses.Field]:
    """The settings a method takes (its ``__init__`` fields), its own first, then the shared
    controls (the keyword-only fields of ``ContrastFamily``): the order of the app's form and
    the command line's flags. ``metadata["help"]`` says what a field does."""
    return sorted((f for f in dataclasses.fields(method_class) if f.init),
                  key=lambda f: f.kw_only is True)


def setting_kind(annotation: object) -> tuple[type, bool]:
    """The value type of a setting from its type hint: int, float, bool or str (any other type
    is read as text), and whether it may be None (``float | None``: off, or derived)."""
    args = typing.get_args(annotation)
    optional = type(None) in args
    kind = next((a for a in args if a is not type(None)), annotation) if args else annotation
    return (kind if kind in (int, float, bool, str) else str), optional  # type: ignore[return-value]


#: The name that stands for the model's recommended steering wherever a method is named.
RECOMMENDED = "recommended"


class CalibratedModel(typing.Protocol):
    """What ``recommended_method`` asks of a model (``api.Model``)."""

    def calibrated_method(self) -> ContrastFamily | None: ...


def recommended_method(model: CalibratedModel | None = None) -> ContrastFamily:
    """The steering used when no method is named: the same in the API, CLI, app and server.

    Amulet's exact form at effective contrast k = 0.5 with the plausibility mask tau = 0.2,
    the setting the strength sweep chose for the bundled model, and end tokens at the
    preference lane's probability (docs/steering.md, "Ending"): the uncalibrated default.
    With a loaded ``model`` whose file has a stored calibration (``localpref calibrate``),
    that model's calibrated setting instead. A method named without settings stays the
    papers' exact method.

    The object returned is marked as the recommended steering (``is_recommended``): a model
    answering a request with it (unchanged) uses its own calibrated setting. Any change to it
    (another strength, tau, ...) drops the mark, so settings given by the user are kept as
    given.
    """
    if model is not None:
        if not callable(getattr(model, "calibrated_method", None)):
            raise SettingsError("recommended_method takes a loaded model (localpref.load) or "
                                f"None, not {type(model).__name__}.")
        calibrated = model.calibrated_method()
        if calibrated is not None:
            return calibrated
    return as_recommended(Amulet(contrast=0.5, tau=0.2, end_tokens=PREF_ENDS))


def as_recommended(method: ContrastFamily) -> ContrastFamily:
    """``method``, marked as the recommended steering (``is_recommended``); returns it."""
    object.__setattr__(method, "_recommended", True)
    return method


def is_recommended(method: object) -> bool:
    """Whether ``method`` is the recommended steering as ``recommended_method`` gave it (the
    mark survives copies and pickling, not ``dataclasses.replace``; equality ignores it)."""
    return bool(getattr(method, "_recommended", False))


def paper_method(name: str | None = None) -> Method:
    """A method at the papers' settings (what ``--paper`` gives), named as ``resolve_method``.

    Base and Pref; Contrastive with ratio 2 (the Amulet paper's "LA" baseline); Amulet with
    alpha 2, lambda 2, eta 10 and 60 iterations (k = 4.65); PAD with weight 1 over the top 10
    (the prompt-contrast reward unless a reward model is given to ``PAD`` itself). No
    plausibility mask, KL budget or end-token rule. ``None`` or ``"recommended"`` is the
    papers' Amulet (the method the recommended steering is built on). The papers decoded
    greedily (Amulet: argmax after a top-p 0.95 mask, which is the argmax), so ``--paper``
    is greedy unless a temperature is given.
    """
    if name is not None and not isinstance(name, str):
        raise SettingsError(f"A method for paper_method must be a name, not {name!r}.")
    if name is None or name.strip().lower() == RECOMMENDED:
        return Amulet()
    key = name.strip().lower()
    key = _ALIASES.get(key, key)
    if key not in METHODS:
        known = ", ".join([*METHODS, RECOMMENDED])
        raise UnknownMethodError(f"Unknown method {name!r}; choose one of {known}.")
    return METHODS[key]()


def avoid_error(method: Method, what: str = "Avoid", does: str = "steer away") -> str | None:
    """Why ``method`` cannot steer away from an avoid sentence (one sentence), or None; with
    ``what``/``does``, the same for another thing the base lane reads (the opposite).

    Avoid works through the base lane (docs/design.md, "Avoid"): one-lane methods have nothing to
    contrast, and PAD with a reward model reads a reward lane instead of the base lane.
    """
    if len(method.lanes) < 2:
        *others, last = two_lane_method_names()
        listed = f"{', '.join(others)} or {last}" if others else last
        return (f"{what} needs a two-lane method ({listed}) to {does}; "
                f"{method.label} reads one lane.")
    if "base" not in method.lanes:
        return (f"{what} steers through the base lane, which PAD with a reward model does not "
                "read; use PAD without a reward model, amulet or contrastive.")
    return None


def opposite_error(method: Method) -> str | None:
    """Why ``method`` cannot contrast with the preferences' opposites, or None (``avoid_error``:
    the opposites, too, are the base lane's)."""
    return avoid_error(method, "Opposite", "contrast with the opposite")


def resolve_method(method: Method | str | None, **settings: object) -> Method:
    """A method object from an object or a name, with optional settings for a name.

    ``None`` or ``"recommended"`` is ``recommended_method()`` (with ``settings`` applied).
    """
    if isinstance(method, Method):
        return method
    if method is None or (isinstance(method, str) and method.strip().lower() == RECOMMENDED):
        base = recommended_method()
        usable = {f.name: settings[f.name] for f in dataclasses.fields(base)
                  if f.init and settings.get(f.name) is not None}
        return dataclasses.replace(base, **usable) if usable else base
    if not isinstance(method, str):
        raise SettingsError(f"A method must be a name or a method object, not {method!r}.")
    key = method.strip().lower()
    key = _ALIASES.get(key, key)
    if key not in METHODS:
        known = ", ".join([*METHODS, RECOMMENDED])
        raise UnknownMethodError(f"Unknown method {method!r}; choose one of {known}.")
    cls = METHODS[key]
    accepted = {f.name for f in dataclasses.fields(cls) if f.init}
    usable = {name: value for name, value in settings.items()
              if name in accepted and value is not None}
    return cls(**usable)  # type: ignore[arg-type]


@functools.lru_cache(maxsize=4096)
def _amulet_contrast(alpha: float, lam: float, eta: float, iterations: int) -> float:
    # (its first call compiles or loads the kernel through llvmlite's callbacks, where a
    # Ctrl-C was dropped: every command builds an Amulet for its help, in its first second)
    with interrupt_held():
        return float(kernels.amulet_contrast(alpha, lam, eta, iterations))


#: ``end_tokens`` values: end tokens steered like any other (the papers'), or given the
#: preference lane's probability (docs/steering.md, "Ending").
CONTRAST_ENDS = "contrast"
PREF_ENDS = "pref"


#: A settings field's annotation -> the numbers it takes and what they are called.
#: What each annotated field type must hold, and how a sentence calls it (a flag is a bool
#: only: "no" would read as true; a number is never a bool).
_FIELD_KINDS: dict[str, tuple[Callable[[object], bool], str]] = {
    "float": (lambda v: isinstance(v, numbers.Real) and not isinstance(v, bool), "a number"),
    "int": (lambda v: isinstance(v, numbers.Integral) and not isinstance(v, bool),
            "a whole number"),
    "bool": (lambda v: isinstance(v, bool), "true or false"),
    "str": (lambda v: isinstance(v, str), "a text"),
}


def check_number_fields(settings: Any) -> None:
    """Every ``float`` / ``int`` / ``bool`` / ``str`` field of a settings dataclass holds such
    a value (``None`` too where the annotation allows it), checked before any range: a text
    where a number belongs, or ``"no"`` for a flag, is one sentence, not a ``TypeError`` or a
    silent true, whose ``param`` is the field."""
    for spec in dataclasses.fields(settings):
        annotation = str(spec.type).replace(" ", "")
        optional = annotation.endswith("|None")
        kind = _FIELD_KINDS.get(annotation.removesuffix("|None"))
        value = getattr(settings, spec.name)
        if kind is None or (optional and value is None):
            continue
        holds, called = kind
        _require(holds(value), f"The setting {spec.name} must be {called} (got {value!r}).",
                 spec.name)


def _require(condition: bool, message: str, param: str | None = None,
             value: object = None) -> None:
    """``message`` (its first letter raised) as a SettingsError unless ``condition``; for a
    ``value`` that is infinite or NaN, the sentence says a finite number is needed (``inf``
    is 0 or more: the bound's own sentence would mislead)."""
    if condition:
        return
    if (isinstance(value, numbers.Real) and not isinstance(value, bool)
            and not math.isfinite(value)):  # (a NumPy float32 NaN too)
        message = f"{message.split(' must ', 1)[0]} must be a finite number (got {value})."
    raise SettingsError(message[0].upper() + message[1:], param=param)
