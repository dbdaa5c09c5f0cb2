"""Weighted preferences: each preference with its own strength, in a lane of its own.

``preference={"concise": 1.0, "uplifting": 0.4}`` (a mapping is always weights; a text or a
list keeps its meaning: one lane with the sentences joined) steers with

    z = z_all + k * sum_i w_i (z_i - z_base)

where ``z_all`` is the lane with every preference (the anchor: plausibility mask and end rule
read it as the preference lane), ``z_i`` the lane of preference i alone, ``z_base`` the base
lane and k the method's strength (``kernels.weighted``). n weighted preferences decode n + 2
lanes; with one, the anchor is that preference's lane, so the method is the same contrast at
strength ``k w`` (2 lanes), and at weight 1 it is read as the unweighted preference
(``unweighted_if_plain``). Weight 0 keeps the preference in the anchor and removes its push.
"""

from __future__ import annotations

import math
import numbers
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from localpref.errors import SettingsError
from localpref.kernels.weighted import weighted_other_into
from localpref.methods import MAX_STRENGTH, ContrastFamily, Method, Sampling, Selector
from localpref.numbers import DECIMAL
from localpref.presets import PRESETS


class Weights(Mapping[str, float]):
    """Preferences (built-in names or free text) with their weights: ordered, immutable,
    hashable, validated when made (one sentence for an empty text, a preference given twice,
    a weight that is not a number, or a weight below 0)."""

    __slots__ = ("_items",)

    def __init__(self, weights: Mapping[str, Any] | Iterable[tuple[str, Any]]) -> None:
        pairs = list(weights.items() if isinstance(weights, Mapping) else weights)
        if not pairs:
            raise SettingsError("The weighted preferences are empty; give at least one "
                                "preference with its weight, e.g. {'concise': 1.0}.",
                                param="preference")
        items: dict[str, float] = {}
        for text, weight in pairs:
            if not isinstance(text, str) or not text.strip():
                raise SettingsError("A weighted preference must be a non-empty text, "
                                    "e.g. 'concise'.", param="preference")
            if text.strip().casefold() in {known.casefold() for known in items}:
                # the last weight would silently win ("Concise" is the built-in "concise" too)
                raise SettingsError(f"The preference {text.strip()!r} is given twice; give "
                                    "each preference once, with one weight.", param="preference")
            items[text.strip()] = checked_weight(text.strip(), weight)
        self._items = tuple(items.items())

    def __getitem__(self, key: str) -> float:
        for text, weight in self._items:
            if text == key:
                return weight
        raise KeyError(key)

    def __iter__(self) -> Iterator[str]:
        return (text for text, _ in self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __hash__(self) -> int:
        return hash(self._items)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Weights):
            return self._items == other._items
        return isinstance(other, Mapping) and dict(self._items) == dict(other)

    def __repr__(self) -> str:
        return f"Weights({dict(self._items)!r})"

    def sentences(self) -> list[tuple[str, float]]:
        """Each preference's sentence (built-in names expanded) with its weight, in order."""
        return [(PRESETS.get(text.lower(), text), weight) for text, weight in self._items]

    def label(self) -> str:
        """A short label for results: ``concise=1 + uplifting=0.4``."""
        return " + ".join(f"{text}={weight:g}" for text, weight in self._items)


#: The largest weight: far past it the contrast alone picks every token, and the combined
#: logits leave the range the kernels compute in (1e308 overflows to inf - inf).
MAX_WEIGHT = 1000.0


def checked_weight(text: str, weight: Any) -> float:
    """``weight`` as a float: a real number from 0 to :data:`MAX_WEIGHT`; else one
    sentence."""
    if isinstance(weight, bool) or not isinstance(weight, numbers.Real):
        raise SettingsError(f"The weight of {text!r} must be a number (got {weight!r}).",
                            param="preference")
    try:
        value = float(weight)
    except OverflowError:  # an int too large for a float
        value, shown = math.inf, "a number too large for a float"
    else:
        shown = repr(weight) if math.isfinite(value) and abs(value) < 1e15 else f"{value:g}"
    if not math.isfinite(value) or not 0 <= value <= MAX_WEIGHT:
        raise SettingsError(f"The weight of {text!r} must be a number from 0 to "
                            f"{MAX_WEIGHT:g} (got {shown}).", param="preference")
    return value


#: ``TEXT=NUMBER`` on the command line: the text ends in ``=`` and a number
_WEIGHTED_ITEM = re.compile(rf"^(?P<text>.*?)\s*=\s*(?P<weight>{DECIMAL})\s*$", re.DOTALL)


def parse_preference_items(items: Sequence[str] | None) -> str | list[str] | Weights | None:
    """The ``--preference`` values of the command line as a preference: ``TEXT=NUMBER`` (any
    preference text ending in ``=`` and a number) is a weight, and when any item has one the
    preference is ``Weights`` (an item without one weighs 1); else the list as given."""
    if not items:
        return None
    parsed = [split_weight(item) for item in items]
    if all(weight is None for _, weight in parsed):
        return list(items)
    return unweighted_if_plain(
        Weights([(text, 1.0 if weight is None else weight) for text, weight in parsed]))


def unweighted_if_plain(weights: Weights) -> str | Weights:
    """One preference at weight 1 as the preference itself: it means exactly that, and
    read as weights it was refused by Base and Pref, and with examples (``like``) it took
    lanes of its own where ``-p concise`` puts them into the preference's lane."""
    if len(weights) == 1:
        (text,) = weights
        if weights[text] == 1.0:
            return text
    return weights


def split_weight(item: str) -> tuple[str, float | None]:
    """An item's text and its weight (``concise=0.5``), or the item and None; a built-in
    preference's weight that is not a number is one sentence."""
    match = _WEIGHTED_ITEM.match(item)
    if "=" in item and not item.replace("=", "").strip():  # neither a text nor a weight
        raise SettingsError(f"The preference {item.strip()!r} has no text; give it as TEXT or "
                            "TEXT=NUMBER, e.g. concise=1.", param="preference")
    if match is not None and not match.group("text").strip():
        raise SettingsError(f"The preference {item.strip()!r} has a weight but no text; give "
                            "it as TEXT=NUMBER, e.g. concise=1.", param="preference")
    name, equals, weight = item.partition("=")
    if equals and name.strip().lower() in PRESETS and (
            match is None or match.group("text").strip() != name.strip()):
        # a preset's weight, mistyped (also "concise=2,formal=1": one -p each)
        several = ("; give each preference its own --preference, e.g. -p concise=2 -p "
                   "formal=1" if "," in weight or "=" in weight else "")
        raise SettingsError(f"The weight of {name.strip()!r} must be a number "
                            f"(got {weight.strip()!r}){several}.", param="preference")
    if match is None:
        return item, None
    text = match.group("text").strip()
    return text, checked_weight(text, float(match.group("weight")))


@dataclass(frozen=True)
class WeightedLane:
    """One weighted lane: the sentence its system prompt gets and its weight."""

    sentence: str
    weight: float


def weighted_lanes(preference: object, extra: str | None = None) -> list[WeightedLane] | None:
    """The weighted lanes of a request (None when its preference is not ``Weights``):
    one per preference, and ``extra`` (the examples' sentence, ``localpref.examples``) as one
    more at weight 1."""
    if not isinstance(preference, Weights):
        return None
    lanes = [WeightedLane(sentence, weight) for sentence, weight in preference.sentences()]
    if extra:
        lanes.append(WeightedLane(extra, 1.0))
    return lanes


def lane_kind(index: int) -> str:
    """The lane kind of weighted preference ``index`` (0-based): ``pref1``, ``pref2``, ..."""
    return f"pref{index + 1}"


class WeightedSelector(Selector):
    """A selector with the buffer of the equivalent other lane (``kernels.weighted``)."""

    def __init__(self, method: Method, vocab_size: int, sampling: Sampling, seed: int | None,
                 end_ids: Iterable[int] = ()) -> None:
        super().__init__(method, vocab_size, sampling, seed, end_ids)
        self.other = np.empty(vocab_size, dtype=np.float64)


@dataclass(frozen=True)
class Weighted(Method):
    """A two-lane method over several weighted preference lanes (see the module docstring).

    Lanes: the anchor (``"pref"``, every preference), the base lane, then one per preference
    (``lane_kind``). Each step writes the equivalent other lane
    ``o = z_all - sum_i w_i (z_i - z_base)`` and lets ``method`` pick from ``(z_all, o)``: its
    contrast ``z_all + k (z_all - o)`` is the weighted combination, with its controls.
    """

    method: ContrastFamily
    weights: tuple[float, ...]

    @property
    def ends_like_pref(self) -> bool:  # the anchor lane is the end rule's
        return self.method.pref_ends

    @property
    def lanes(self) -> tuple[str, ...]:  # type: ignore[override]
        return ("pref", "base", *(lane_kind(i) for i in range(len(self.weights))))

    @property
    def label(self) -> str:
        return self.method.label

    def settings(self) -> dict[str, object]:
        return {**self.method.settings(), "weights": list(self.weights)}

    def selector(self, vocab_size: int, sampling: Sampling, seed: int | None,
                 end_ids: Iterable[int] = ()) -> Selector:
        return WeightedSelector(self, vocab_size, sampling, seed, end_ids)

    def pick(self, selector: Selector, lane_logits: Sequence[np.ndarray]) -> int:
        z_all, z_base = lane_logits[0], lane_logits[1]
        other = weighted_other_into(z_all, z_base, lane_logits[2:], self.weights,
                                    selector.other)  # type: ignore[attr-defined]
        return self.method.pick(selector, [z_all, other])


def weights_error(method: Method, lanes: Sequence[WeightedLane]) -> str | None:
    """Why ``method`` cannot steer with these weighted lanes (one sentence), or None."""
    if not isinstance(method, ContrastFamily):
        return (f"Weighted preferences steer through a two-lane method (amulet, contrastive or "
                f"pad); {method.label} reads one lane.")
    if len(lanes) > 1 and "base" not in method.lanes:
        return ("Several weighted preferences steer against the base lane, which PAD with a "
                "reward model does not read; use amulet, contrastive or pad without one.")
    return None


def weighted_method(method: Method, lanes: Sequence[WeightedLane] | None) -> Method:
    """The method that steers with the weighted ``lanes`` (None: ``method`` itself).

    One lane: the same contrast at strength ``k w`` (``method`` itself at weight 1);
    several: ``Weighted``. Base and Pref stay as they are (``check_weights`` decides whether
    they may stand in a comparison beside a method that uses the weights).
    """
    if lanes is None or weights_error(method, lanes) is not None:
        return method
    assert isinstance(method, ContrastFamily)
    heaviest = max(lane.weight for lane in lanes)
    if method.strength * heaviest > MAX_STRENGTH:  # the strength a lane is steered at
        raise SettingsError(f"{method.title}'s {method.strength_name} {method.strength:g} "
                            f"times the preference weight {heaviest:g} is past the largest "
                            f"strength, {MAX_STRENGTH:,.0f}; lower one of them.",
                            param="preference")
    if len(lanes) == 1:
        weight = lanes[0].weight
        return method if weight == 1.0 else method.with_strength(method.strength * weight)
    return Weighted(method, tuple(lane.weight for lane in lanes))


def check_weights(methods: Sequence[Method], lanes: Sequence[WeightedLane]) -> None:
    """Refuse weights that no method would use (one sentence). In a comparison Base and Pref
    may stand beside a steering method as references (Pref reads the anchor lane)."""
    problems = [weights_error(method, lanes) for method in methods]
    if len(methods) == 1 or all(problems):
        if problems[0]:
            raise SettingsError(problems[0], param="preference")
    for method, problem in zip(methods, problems, strict=True):
        if problem and isinstance(method, ContrastFamily):
            raise SettingsError(problem, param="preference")
