"""The grid's rows and columns as values: a preference (name and sentence), a method (name and
decoder), and the settings that go in a row's key.

Shared by the grid (``grid.py``), which runs them, and the sweep (``sweep.py``), which repeats a
method once per value of one setting; both import this module, and it imports neither.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from localpref import methods as method_catalog
from localpref.errors import SettingsError, UnknownMethodError
from localpref.evaluation.beam import BeamSettings
from localpref.evaluation.paper import known_name, paper_sentence
from localpref.methods import (
    RECOMMENDED,
    ContrastFamily,
    Method,
    resolve_method,
    two_lane_method_names,
)
from localpref.presets import preference_text
from localpref.weights import split_weight


@dataclass(frozen=True)
class SweepPoint:
    """Where a method of the grid sits in a sweep: the parameter, its value, and the method
    before the sweep (whose non-default settings go in the row key)."""

    parameter: str
    value: float
    unswept: Method


def sweepable(method: object) -> bool:
    """Whether a decoder has the two-lane controls a sweep sets (strength, tau, kl_budget):
    whether it is a two-lane method (``methods.ContrastFamily``)."""
    return isinstance(method, ContrastFamily)


def sweepable_method_names() -> list[str]:
    """The methods (``methods.METHODS``' names, in its order) whose defaults a sweep can set."""
    return two_lane_method_names()


@dataclass(frozen=True)
class PreferenceSpec:
    """A preference of the grid: its name in the tables and the sentence the model reads;
    ``examples`` (preference by example, ``localpref.examples``) are read by the preference
    lane as earlier answers, with ``sentence`` the instruction to write like them."""

    name: str
    sentence: str
    examples: tuple[str, ...] = ()


def preference_specs(names: Sequence[str], prompts: str = "paper") -> list[PreferenceSpec]:
    """Preferences from names or free text: the paper's wording or the library's presets.
    A known name is kept in lower case, as its scores and tables know it."""
    specs = []
    seen: set[str] = set()
    for name in names:
        text = name.strip()
        if not text:
            raise SettingsError("A preference must be a non-empty text, e.g. 'concise'.")
        if _weighted(text):
            raise SettingsError(f"The preference {text!r} has a weight: the evaluation scores "
                                "each preference on its own; give it without one.")
        if text.lower() in seen:
            raise SettingsError(f"The preference {text!r} is listed twice.")
        seen.add(text.lower())
        text = known_name(text)
        sentence = paper_sentence(text) if prompts == "paper" else preference_text(text)
        specs.append(PreferenceSpec(text, str(sentence)))
    if not specs:
        raise SettingsError("Give at least one preference.")
    return specs


def _weighted(text: str) -> bool:
    """Whether ``text`` is written as TEXT=NUMBER (a weight, as ``generate -p`` takes), a
    mistyped one (``concise=abc``) included."""
    try:
        return split_weight(text)[1] is not None
    except SettingsError:
        return True


def non_default_fields(settings: Any) -> dict[str, Any]:
    """The fields of a settings dataclass whose values differ from their defaults.

    Row keys hold only these, so a field the library adds later with a default that keeps
    today's behaviour (docs/design.md, "The methods") leaves finished rows' keys as they were.
    """
    found: dict[str, Any] = {}
    for item in dataclasses.fields(settings):
        if not item.init:
            continue
        value = getattr(settings, item.name)
        if item.default is not dataclasses.MISSING:
            default: Any = item.default
        elif item.default_factory is not dataclasses.MISSING:
            default = item.default_factory()
        else:
            found[item.name] = value
            continue
        if value != default:
            found[item.name] = value
    return found


#: The column of a model's calibrated recommended steering (``localpref calibrate``).
CALIBRATED = "calibrated"


@dataclass(frozen=True)
class MethodSpec:
    """A method of the grid: its name in the tables and the decoder (a method or a beam);
    ``sweep`` says where it sits in a ``--sweep`` (None outside one).

    ``calibrated``: the model's calibrated recommended steering, whose setting depends on the
    preference; the grid resolves it per preference (``Evaluation.resolved``) into the
    calibration's method and, when it chose the opposite, ``avoid``: the sentences its base
    lane reads instead of the run's ``--avoid``."""

    name: str
    decoder: Method | BeamSettings
    sweep: SweepPoint | None = None
    calibrated: bool = False
    avoid: tuple[str, ...] | None = None

    def settings(self) -> dict[str, Any]:
        """Every setting, derived ones included (stored in rows for reading)."""
        return dict(self.decoder.settings())

    def key_settings(self) -> dict[str, Any]:
        """The settings that tell results apart: those that differ from the defaults (of the
        method before the sweep, if swept: the swept value is a key entry of its own)."""
        return non_default_fields(self.sweep.unswept if self.sweep else self.decoder)

    @property
    def strength(self) -> float | None:
        """The decoder's strength knob, if it has one."""
        return float(self.decoder.strength) if isinstance(self.decoder, ContrastFamily) else None


def named_method(name: str, *, paper: bool = False, **settings: Any) -> Method:
    """The method a name stands for, with the settings given (each method takes the ones it
    has): ``recommended`` is ``methods.recommended_method()`` (its settings, uncalibrated);
    with ``paper`` every name is the papers' settings of its method (``methods.paper_method``)."""
    if paper:
        if name == RECOMMENDED:
            name = method_catalog.recommended_method().name
        method = resolve_method(method_catalog.paper_method(name))
        fields = {f.name for f in dataclasses.fields(method) if f.init}
        usable = {k: v for k, v in settings.items() if k in fields and v is not None}
        return dataclasses.replace(method, **usable) if usable else method
    # A copy: the evaluation runs exactly the settings it records, never a model's stored
    # calibration (which replaces only the recommended steering's own object).
    return dataclasses.replace(resolve_method(name, **settings))


def method_specs(names: Sequence[str], *, paper: bool = False,
                 **settings: Any) -> list[MethodSpec]:
    """Methods from names (``base``, ``pref``, ``contrastive``, ``amulet``, ``pad``,
    ``recommended``, ``calibrated``, ``beamN``) with the method settings given (each method
    takes the ones it has); ``strength`` sets the strength knob of the methods that have one;
    ``paper`` gives every method the papers' settings (``named_method``). A ``recommended``
    column keeps that name in the tables, beside ``amulet`` at the papers' settings; a
    ``calibrated`` column takes no settings: it runs the model's calibration."""
    settings = dict(settings)
    strength = settings.pop("strength", None)
    specs: list[MethodSpec] = []
    for raw in names:
        name = raw.strip().lower()
        if not name:
            continue
        if name.startswith("beam"):
            width = name[4:] or "16"
            if not width.isdigit() or int(width) < 1:
                raise SettingsError(f"Unknown method {raw.strip()!r}; a beam search is beamN, "
                                    "e.g. beam16.")
            penalty = settings.get("length_penalty")
            decoder: Method | BeamSettings = BeamSettings(
                width=int(width), length_penalty=1.0 if penalty is None else float(penalty))
            spec = MethodSpec(f"beam{int(width)}", decoder)
        elif name == CALIBRATED:  # resolved per preference by the grid
            spec = MethodSpec(CALIBRATED, method_catalog.recommended_method(), calibrated=True)
        else:
            try:
                method = named_method(name, paper=paper, **settings)
            except UnknownMethodError:  # the evaluation's own columns are names too
                known = ", ".join([*method_catalog.METHODS, RECOMMENDED, CALIBRATED])
                raise SettingsError(f"Unknown method {raw.strip()!r}; choose one of {known}, "
                                    "or beamN (e.g. beam16).") from None
            if strength is not None and isinstance(method, ContrastFamily):
                method = method.with_strength(float(strength))
            spec = MethodSpec(RECOMMENDED if name == RECOMMENDED else method.name, method)
        if any(existing.name == spec.name for existing in specs):
            raise SettingsError(f"Method {spec.name!r} is listed twice.")
        specs.append(spec)
    if not specs:
        raise SettingsError("Give at least one method.")
    return specs


def changed_fraction(decoder: Method | BeamSettings, stats: dict[str, Any]) -> float | None:
    """The share of an answer's tokens that steering changed (``stats["changed_tokens"]`` over
    ``n_tokens``): 0 for Base and Pref, which steer nothing; None for a beam search or an
    answer of no tokens."""
    n_tokens = stats.get("n_tokens") or 0
    if isinstance(decoder, BeamSettings) or n_tokens <= 0:
        return None
    if len(decoder.lanes) < 2:
        return 0.0
    changed = stats.get("changed_tokens")
    return None if changed is None else float(changed) / float(n_tokens)
