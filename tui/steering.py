"""What steers the next answer: preferences, method, method settings, sampling, answer length.

The editable fields are derived from the methods' dataclass fields (``dataclasses.fields``), so a
setting the library adds to a method appears in the preference panel without a change here.
Validation is the library's own: a value is checked by constructing the method (or
``Sampling``) with it, and the ``SettingsError`` sentence is what the user reads.

This module holds plain data and never touches a widget, so it is tested without a screen.
"""

from __future__ import annotations

import dataclasses
import functools
import re
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from localpref import PRESETS, Method, Model, Sampling, SettingsError
from localpref.commands.showing import steering_label
from localpref.errors import ModelError, TooManyLanesError
from localpref.examples import checked_like
from localpref.methods import (
    METHODS,
    ContrastFamily,
    avoid_error,
    recommended_method,
    setting_fields,
    setting_kind,
)
from localpref.models.resolve import resolve_model
from localpref.models.spec import ModelSpec, parse_model_spec
from localpref.models.stores import resolve_stored
from localpref.numbers import number as as_number
from localpref.paths import expanded
from localpref.presets import preference_label
from localpref.request import Request, check_not_avoided
from localpref.split_files import part_paths
from localpref.weights import Weights, checked_weight, weighted_lanes, weights_error
from tui.text import shortened

#: Friendlier labels for field names that are abbreviations; other names are shown as written.
FIELD_LABELS = {
    "lam": "lambda",
    "eta": "eta",
    "candidates": "top-k candidates",
    "exact": "exact fast form",
    "reward_model": "reward model",
    "top_p": "top-p",
    "top_k": "top-k",
    "min_p": "min-p",
    "max_tokens": "max tokens",
    "tau": "plausibility tau",
    "kl_budget": "KL budget",
    "contrast": "contrast k",
}

#: The app's short help for the fields it knows (a narrow form); other fields show their
#: dataclass field's ``metadata["help"]``, the library's description (the command line's too).
FIELD_HELP = {
    "ratio": "z_pref + ratio (z_pref - z_base)",
    "alpha": "step of each update toward the preference",
    "lam": "pull back toward the preference lane",
    "eta": "learning rate of the online updates, > 0",
    "iterations": "updates per token (T)",
    "exact": "closed form, same result as the loop, faster",
    "weight": "reward weight w",
    "candidates": "policy top-k the reward rescores",
    "reward_model": "empty: prompt-contrast reward",
    "temperature": "0 is greedy",
    "top_p": "nucleus mass, [0, 1] (0: greedy)",
    "top_k": "0 is off",
    "min_p": "0 is off",
    "seed": "empty: random",
    "max_tokens": "length of one answer",
    "tau": "drop implausible tokens, 0 off",
    "kl_budget": "max KL per token, empty off",
    "contrast": "set k directly, empty: from alpha",
}

#: The most characters of a preference the status bar and notices show.
LABEL_CHARACTERS = 80


def method_title(name: str) -> str:
    """What the app shows for a method (its class's ``title``; the name if it has none)."""
    method_class = METHODS.get(name)
    return (method_class.title if method_class else "") or name


def strength_field(name: str) -> str | None:
    """The field a method's strength knob edits (``ContrastFamily.strength_field``), or None
    for a method without one (Base, Pref)."""
    method_class = METHODS.get(name)
    if method_class is None or not issubclass(method_class, ContrastFamily):
        return None
    return method_class.strength_field


@dataclass(frozen=True)
class FieldSpec:
    """One editable setting: which group it belongs to, its type, default and help."""

    group: str  # "method" or "sampling"
    name: str
    kind: type  # int, float, bool or str
    optional: bool
    default: Any
    label: str
    help: str

    def format(self, value: Any) -> str:
        """A value as the text of an input box."""
        return "" if value is None else str(value)

    def parse(self, raw: Any) -> Any:
        """The typed value of what the user entered; a ``SettingsError`` says what is wrong."""
        if self.kind is bool:
            return bool(raw)
        text = str(raw).strip()
        if not text:
            if self.optional:
                return None
            raise SettingsError(f"{self.label.capitalize()} needs a value.")
        if self.kind is str:
            return text
        if self.kind is int and re.fullmatch(r"[+-]?[0-9]+", text):
            try:
                return int(text)  # exactly as written (a float rounds past 2**53)
            except ValueError:  # (past Python's 4,300 digits)
                raise SettingsError(f"{self.label.capitalize()} has too many digits.") from None
        try:  # as typed: not float()'s "1_0" or full-width digits (``localpref.numbers``)
            number = as_number(text)
        except ValueError:
            raise SettingsError(
                f"{self.label.capitalize()} must be a number (got {text!r}).") from None
        if self.kind is int:
            if not number.is_integer():
                raise SettingsError(
                    f"{self.label.capitalize()} must be a whole number (got {text!r}).")
            return int(number)
        return number


def _spec(group: str, f: dataclasses.Field, hints: dict[str, Any]) -> FieldSpec:
    kind, optional = setting_kind(hints.get(f.name, str))
    default = f.default if f.default is not dataclasses.MISSING else None
    label = f.metadata.get("label") or FIELD_LABELS.get(f.name, f.name.replace("_", " "))
    help_text = FIELD_HELP.get(f.name) or f.metadata.get("help", "")
    return FieldSpec(group, f.name, kind, optional, default, label, help_text)


def method_fields(method_name: str) -> list[FieldSpec]:
    """The editable settings of a method, from its dataclass fields (its own first)."""
    cls = METHODS[method_name]
    hints = typing.get_type_hints(cls)
    return [_spec("method", f, hints) for f in setting_fields(cls)]


def sampling_fields() -> list[FieldSpec]:
    """Sampling settings (from ``Sampling``) plus the seed and the answer length."""
    hints = typing.get_type_hints(Sampling)
    specs = [_spec("sampling", f, hints) for f in dataclasses.fields(Sampling) if f.init]
    specs.append(FieldSpec("sampling", "seed", int, True, None, "seed", FIELD_HELP["seed"]))
    specs.append(FieldSpec("sampling", "max_tokens", int, False, 256, "max tokens",
                           FIELD_HELP["max_tokens"]))
    return specs


#: The field each two-lane method's strength knob edits (``method.strength``), for the methods
#: the library has (``strength_field`` looks one up, a method registered later included).
STRENGTH_FIELDS = {name: field_name for name in METHODS
                   if (field_name := strength_field(name)) is not None}

#: The app's steering defaults. The chosen method starts as the library's recommended steering
#: (``methods.recommended_method()``: the same the command line, the API and the server use
#: when no method is named; docs/steering.md, "Choosing the strength: the sweep"), so the app
#: and ``localpref generate`` agree. The other two-lane methods start at the same strength and
#: plausibility mask. The library's own method defaults stay the papers' (the "paper" preset
#: restores those). Plausibility tau = 0.2 keeps text fluent when the user raises the strength:
#: at the papers' k = 4.65 it lifts fluency from -9.3 to -1.5 nats/token for "concise".
RECOMMENDED_METHOD = recommended_method()
APP_METHOD = RECOMMENDED_METHOD.name
APP_TAU = RECOMMENDED_METHOD.tau
APP_STRENGTH = RECOMMENDED_METHOD.strength
APP_METHOD_SETTINGS: dict[str, dict[str, Any]] = {
    name: {field_name: APP_STRENGTH, "tau": APP_TAU} for name, field_name in STRENGTH_FIELDS.items()
}
APP_METHOD_SETTINGS[APP_METHOD] = {
    f.name: getattr(RECOMMENDED_METHOD, f.name) for f in dataclasses.fields(RECOMMENDED_METHOD)
    if f.init and getattr(RECOMMENDED_METHOD, f.name) != f.default}


def app_method_settings() -> dict[str, dict[str, Any]]:
    """A fresh copy of the app's default method settings."""
    return {name: dict(values) for name, values in APP_METHOD_SETTINGS.items()}


@dataclass
class Steering:
    """The settings the next answer uses; the app keeps one applied copy and saves it."""

    presets: list[str] = field(default_factory=lambda: ["concise"])
    """Built-in preference names (several at once)."""
    custom: str = ""
    """Free-text preference added to the built-ins ("" for none)."""
    avoid: str = ""
    """What to steer away from: a built-in name or free text ("" for nothing); it goes into
    the base lane's prompt, so only two-lane methods with a base lane take it."""
    method: str = APP_METHOD
    """Method name, a key of ``localpref.methods.METHODS``."""
    method_settings: dict[str, dict[str, Any]] = field(default_factory=app_method_settings)
    """Per method, the settings that differ from its library defaults (kept when switching
    method); starts at the app's defaults (``APP_METHOD_SETTINGS``), not the papers'."""
    sampling: dict[str, Any] = field(default_factory=dict)
    """``Sampling`` fields plus ``seed`` and ``max_tokens``; missing ones take defaults."""
    weights: dict[str, float] = field(default_factory=dict)
    """Each checked preference's strength slider (a preset name or the free text -> weight;
    a missing one is 1). All at 1 is the one joined preference lane; any other value sends
    weights, one lane per preference (``localpref.weights``)."""
    examples: list[str] = field(default_factory=list)
    """Answers the user liked ("more like this"): the preference lane's examples (``like``)."""

    # -- what the library receives -------------------------------------------------------------

    @property
    def preference_items(self) -> list[str]:
        """The checked presets and the free text, in order."""
        items = [name for name in self.presets if name in PRESETS]
        if self.custom.strip():
            items.append(self.custom.strip())
        return items

    @property
    def preference(self) -> list[str] | dict[str, float] | None:
        """The preference for the library: the list, or weights when a slider is off 1
        (None: plain decoding)."""
        items = self.preference_items
        values = {item: float(self.weights.get(item, 1.0)) for item in items}
        if any(value != 1.0 for value in values.values()):
            return values
        return items or None

    @property
    def weighed(self) -> bool:
        """Whether a slider is off 1: the preferences read a lane each."""
        return isinstance(self.preference, dict)

    @property
    def steers_nothing(self) -> bool:
        """Whether nothing is given to steer by (no preference, avoid text or example): every
        method then decodes plainly (base)."""
        return self.preference is None and not self.avoid.strip() and not self.examples

    @property
    def preference_label(self) -> str:
        """The preference as the status bar and notices show it: at most
        ``LABEL_CHARACTERS`` characters (a pasted page of text would fill the screen)."""
        return shortened(preference_label(self.preference) or "none", LABEL_CHARACTERS)

    def method_object(self, name: str | None = None) -> Method:
        """A method (the chosen one by default) with its saved settings; ``SettingsError`` if
        one is invalid."""
        name = name or self.method
        known = {spec.name for spec in method_fields(name)}
        values = {k: v for k, v in self.method_settings.get(name, {}).items() if k in known}
        return METHODS[name](**values)

    def effect(self) -> tuple[Any, ...]:
        """What the next answer reads from these settings: two settings with one effect steer
        alike, though one names a default the other leaves out (a weight of 1, the method's
        own alpha) or they differ in a method not chosen."""
        try:
            method: Any = self.method_object()
        except SettingsError:
            method = self.method_settings.get(self.method)
        weights = {item: self.weights.get(item, 1.0) for item in self.preference_items}
        return (self.preference_items, self.avoid.strip(), self.method, method,
                self.sampling_values(), weights, self.examples)

    def sampling_values(self) -> dict[str, Any]:
        """Every sampling field, defaults filled in."""
        return {spec.name: self.sampling.get(spec.name, spec.default)
                for spec in sampling_fields()}

    def overrides(self) -> dict[str, Any]:
        """Keyword arguments for ``Chat.stream`` / ``Model.compare`` (validated)."""
        values = self.sampling_values()
        sampling = {k: values[k] for k in (f.name for f in dataclasses.fields(Sampling))}
        Sampling(**sampling)
        max_tokens = values["max_tokens"]
        Request.make("check", max_tokens=max_tokens, seed=values["seed"])  # the library's rule
        method = self.method_object()
        reward_model = getattr(method, "reward_model", None)
        problem = reward_model_problem(reward_model) if reward_model is not None else None
        if problem is not None:  # (a saved setting or a profile: the file went since)
            raise SettingsError(problem)
        if method == RECOMMENDED_METHOD:
            method = RECOMMENDED_METHOD  # the recommended steering: the model's calibration
        extra: dict[str, Any] = {}
        preference = self.preference
        if self.avoid.strip():
            problem = avoid_error(method)
            if problem:
                raise SettingsError(problem)
            extra["avoid"] = self.avoid.strip()
            check_not_avoided(preference, extra["avoid"])  # both lanes would read it
        if isinstance(preference, dict):
            Weights(preference)  # a weight below 0 is one sentence
            problem = weights_error(method, weighted_lanes(Weights(preference)) or [])
            if problem:
                raise SettingsError(problem)
        if self.examples:
            extra["like"] = checked_like(self.examples)
        return {"preference": preference, "method": method, **sampling,
                "max_tokens": max_tokens, "seed": values["seed"], **extra,
                "trace": True}  # the changed tokens, for the header and highlighting

    def problem_with(self, model: Model | None) -> str | None:
        """Why no next answer could use these settings (every message would be refused),
        in the app's words, or None: ``overrides``' checks, and with ``model`` what only it
        tells, its examples' tokens against ``max_like_tokens`` and the lanes the answer
        takes against those the app loaded."""
        try:
            overrides = self.overrides()
            if model is not None:
                if self.examples:
                    model.like_tokens(self.examples)
                model.check(Request.make([{"role": "user", "content": "check"}], **overrides))
        except TooManyLanesError as error:  # the library's advice (max_lanes) is not the app's
            if not self.weighed:  # (the method's own lanes: a model loaded with fewer)
                return (f"The method {self.method} needs {error.needed} lanes at once and the "
                        f"app decodes {error.available}: choose a method of fewer lanes.")
            if self.examples:  # (beside weights, the examples read a lane of their own)
                return (f"These preferences as weighed, with the examples, need "
                        f"{error.needed} lanes at once and the app decodes {error.available}: "
                        "untick a preference, set the sliders back to 1 (one lane for every "
                        "preference), or use no examples.")
            return (f"These preferences as weighed need {error.needed} lanes at once and the "
                    f"app decodes {error.available}: untick some, or set the sliders back to 1 "
                    "(one lane for every preference).")
        except SettingsError as error:
            return str(error)
        return None

    @property
    def is_recommended(self) -> bool:
        """Whether the next answer uses the recommended steering (the app's default)."""
        try:
            return self.method_object() == RECOMMENDED_METHOD
        except SettingsError:
            return False

    @property
    def method_label(self) -> str:
        """What steers the next answer: ``base`` with neither a preference nor an avoid,
        else the method and the settings that shape it (``amulet k=0.5 tau=0.2``), named
        ``recommended`` when it is the recommended steering."""
        if self.steers_nothing:
            return "base"
        try:
            method = self.method_object()
        except SettingsError:
            return self.method
        label = method_description(method)
        return f"recommended: {label}" if method == RECOMMENDED_METHOD else label

    @property
    def avoid_label(self) -> str | None:
        return self.avoid.strip() or None

    # -- presets ------------------------------------------------------------------------------

    def with_paper_settings(self) -> Steering:
        """The same preferences and method with the papers' exact settings: every method at
        its library defaults (Amulet alpha 2, lambda 2, eta 10, 60 iterations; Contrastive
        ratio 2; PAD weight 1, top-10; tau 0, no KL budget) and greedy decoding, as the papers
        ran; the answer length and seed are kept."""
        kept = {k: v for k, v in self.sampling.items() if k in ("max_tokens", "seed")}
        # Explicit values (not an empty dict), so a saved copy does not fall back to the app's
        # defaults when it is loaded again.
        paper = {name: {spec.name: spec.default for spec in method_fields(name)}
                 for name in METHODS}
        return dataclasses.replace(self, method_settings=paper, sampling=kept)

    def with_app_settings(self) -> Steering:
        """The recommended steering (its method at its settings; the other methods at the
        app's defaults), the same preferences."""
        return dataclasses.replace(self, method=APP_METHOD,
                                   method_settings=app_method_settings())

    # -- saving -------------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Any) -> Steering:
        """Settings saved by any version (``read``, without what it changed)."""
        return cls.read(data)[0]

    @classmethod
    def read(cls, data: Any) -> tuple[Steering, list[str]]:
        """Settings saved by any version, and one sentence for each saved setting that could
        not be used and was changed. Unknown keys are dropped without a word (another
        version's); the chosen method's reward model no longer on disk is left out (PAD then
        scores with the prompt-contrast reward), an avoid text saved with a method that
        cannot take it is left out, and values the library refuses go back to the app's
        defaults: the sampling alone, the method's settings alone, or both, whichever is the
        least that lets the settings answer (a missing reward model reset the sampling too,
        and said nothing). Settings no reset lets answer are kept as saved: the notice at
        the model's start says why they cannot answer (``problem_with``)."""
        if not isinstance(data, dict):
            return cls(), []
        steering = cls()
        presets = data.get("presets")
        if isinstance(presets, list):  # (a list or an object in it was a TypeError at start)
            steering.presets = [p for p in presets if isinstance(p, str) and p in PRESETS]
        if isinstance(data.get("custom"), str):
            steering.custom = data["custom"]
        if isinstance(data.get("avoid"), str):
            steering.avoid = data["avoid"]
        if isinstance(data.get("method"), str) and data["method"] in METHODS:
            steering.method = data["method"]
        settings = data.get("method_settings")
        if isinstance(settings, dict):
            for name, values in settings.items():
                if name in METHODS and isinstance(values, dict):
                    known = {spec.name for spec in method_fields(name)}
                    steering.method_settings[name] = {
                        k: v for k, v in values.items() if k in known}
        if isinstance(data.get("sampling"), dict):
            known = {spec.name for spec in sampling_fields()}
            steering.sampling = {k: v for k, v in data["sampling"].items() if k in known}
        if isinstance(data.get("weights"), dict):
            steering.weights = {
                k: weight for k, v in data["weights"].items()
                if isinstance(k, str) and (weight := _saved_weight(k, v)) is not None}
        if isinstance(data.get("examples"), list):
            steering.examples = [e for e in data["examples"] if isinstance(e, str) and e.strip()]
        changed = _without_missing_reward_model(steering)
        cannot_avoid = _avoid_refusal(steering) if steering.avoid.strip() else None
        if cannot_avoid is not None:  # saved with a method that cannot take it
            changed.append(f"The saved avoid text {shortened(steering.avoid.strip(), 60)!r} is "
                           f"left out: {cannot_avoid}")
            steering.avoid = ""
        problem = _refusal(steering)
        if problem is not None:
            reset = _least_reset(steering)
            if reset is not None:
                steering, what = reset
                changed.append(f"The saved {what} back to the app's defaults: {problem}")
        return steering, changed


def _refusal(steering: Steering) -> str | None:
    """Why ``steering.overrides()`` refuses these settings, or None."""
    try:
        steering.overrides()
    except (SettingsError, TypeError) as error:
        return str(error)
    return None


def _avoid_refusal(steering: Steering) -> str | None:
    """Why the chosen method cannot steer away from an avoid text (``avoid_error``), or
    None."""
    try:
        return avoid_error(steering.method_object())
    except (SettingsError, TypeError):
        return None


def _without_missing_reward_model(steering: Steering) -> list[str]:
    """Leave out (in place) the chosen method's saved reward model when it names nothing PAD
    could load now (``reward_model_problem``: the file went since), with a sentence. Another
    method's is kept as saved: the form says what is wrong with it if that method is
    chosen."""
    values = steering.method_settings.get(steering.method, {})
    spec = values.get("reward_model")
    if not isinstance(spec, str) or reward_model_problem(spec) is None:
        return []
    del values["reward_model"]
    unusable = _unusable_file(spec, parse_model_spec(spec)) if _is_named(spec) else None
    if unusable is not None:
        return [f"The saved reward model {shortened(spec, 80)!r} cannot be used, so PAD "
                f"scores with the prompt-contrast reward: {unusable}"]
    return [f"The saved reward model {shortened(spec, 80)!r} is not there any more, so PAD "
            "scores with the prompt-contrast reward."]


def _is_named(spec: str) -> bool:
    """Whether ``spec`` names a model in a form ``parse_model_spec`` takes."""
    try:
        parse_model_spec(spec)
    except ModelError:
        return False
    return True


def _least_reset(steering: Steering) -> tuple[Steering, str] | None:
    """``steering`` with the least put back to the app's defaults that lets it answer: the
    sampling, else the chosen method's settings, else both, and what was reset,
    in words (``"sampling settings are"``); None when none lets it answer (a preference that
    is also the avoid text: what was saved is kept, and the model's notice says why)."""
    title = method_title(steering.method).split(" (")[0]  # "Base", not "Base (no preference)"
    method_only = _with_method_defaults(steering)
    for candidate, what in ((dataclasses.replace(steering, sampling={}),
                             "sampling settings are"),
                            (method_only, f"{title} settings are"),
                            (dataclasses.replace(method_only, sampling={}),
                             f"{title} settings and the sampling are")):
        if _refusal(candidate) is None:
            return candidate, what
    return None


def _saved_weight(text: str, value: Any) -> float | None:
    """A saved weight as ``weights.checked_weight`` reads it (a float from 0 to its
    ``MAX_WEIGHT``), or None for anything else (an integer too large for a float was an
    OverflowError at start)."""
    try:
        return checked_weight(text, value)
    except SettingsError:
        return None


def _with_method_defaults(steering: Steering) -> Steering:
    """A copy of ``steering`` with the chosen method's settings at the app's defaults."""
    settings = dict(steering.method_settings)
    defaults = app_method_settings()
    if steering.method in defaults:
        settings[steering.method] = defaults[steering.method]
    else:
        settings.pop(steering.method, None)
    return dataclasses.replace(steering, method_settings=settings)


def reward_model_problem(spec: str) -> str | None:
    """Why the reward model field names nothing PAD could load, as one sentence for the form,
    or None: a missing file was applied, then every message was refused until the field was
    found and cleared. Only what the text itself says is read (a path is looked at; a model
    name is taken as the library takes it, downloaded when first used), so it costs a
    ``stat`` as the user types."""
    try:
        parsed = parse_model_spec(spec)
    except ModelError:
        return (f"There is no reward model {spec!r}: give a GGUF file's path, ollama:NAME, "
                "lmstudio:PATTERN or a Hugging Face repo (ORG/NAME:PATTERN), or leave it empty "
                "for the prompt-contrast reward.")
    unusable = _unusable_file(spec, parsed)
    return None if unusable is None else f"PAD cannot use this reward model: {unusable}"


def _unusable_file(spec: str, parsed: ModelSpec) -> str | None:
    """Why the local file ``spec`` names (a path, or a model ollama or LM Studio keeps) is no
    model llama.cpp could load (``resolve_model``'s sentence: a folder, not a GGUF file, cut
    short, a split model's part missing), or None; a Hub name is downloaded when first used,
    so it is not looked at. The header is read again only when a file changed
    (``_header_problem``), not at each key the user types in the form."""
    if parsed.kind == "path":
        path = expanded(spec)
    elif parsed.kind == "store" and parsed.store is not None and parsed.name is not None:
        try:
            path = resolve_stored(parsed.store, parsed.name)
        except ModelError as error:
            return str(error)
    else:
        return None
    return _header_problem(spec, _as_they_are(path))


def _as_they_are(path: Path) -> tuple[tuple[int, ...], ...]:
    """What tells whether the files of the model at ``path`` (a split model's every part)
    changed: each one's size, times, inode and mode, or the error looking at it gave."""
    looks = []
    for part in part_paths(path):
        try:
            found = part.stat()
        except OSError as error:
            looks.append((error.errno or -1,))
            continue
        looks.append((found.st_size, found.st_mtime_ns, found.st_ctime_ns, found.st_ino,
                      found.st_mode))
    return tuple(looks)


@functools.lru_cache(maxsize=64)
def _header_problem(spec: str, files: tuple[tuple[int, ...], ...]) -> str | None:
    """``resolve_model``'s sentence for the model ``spec`` names, its files as ``files``
    describes them (``_as_they_are``: the cache's key), or None."""
    try:
        resolve_model(spec, download=False)
    except ModelError as error:
        return str(error)
    return None


def steering_from_form(
    presets: list[str],
    custom: str,
    method: str,
    method_raw: dict[str, Any],
    sampling_raw: dict[str, Any],
    base: Steering | None = None,
    avoid: str = "",
    weights: dict[str, float] | None = None,
) -> tuple[Steering | None, dict[str, str]]:
    """Settings from what the form holds, or None and ``{field name: what is wrong}``.

    Each value is checked alone (the method built with only that value changed) so a message
    points at its field; then all together (key ``""`` for a problem of the combination).
    """
    errors: dict[str, str] = {}
    method_values: dict[str, Any] = {}
    for spec in method_fields(method):
        try:
            value = spec.parse(method_raw.get(spec.name, spec.format(spec.default)))
            METHODS[method](**{spec.name: value})
            problem = (reward_model_problem(value)
                       if spec.name == "reward_model" and value is not None else None)
            if problem is not None:
                raise SettingsError(problem)
            method_values[spec.name] = value
        except (SettingsError, TypeError) as error:
            errors[spec.name] = str(error)
    sampling_values: dict[str, Any] = {}
    sampling_names = {f.name for f in dataclasses.fields(Sampling)}
    for spec in sampling_fields():
        try:
            value = spec.parse(sampling_raw.get(spec.name, spec.format(spec.default)))
            if spec.name in sampling_names:
                Sampling(**{spec.name: value})
            else:  # max_tokens, seed: the library's rule, which the message will meet
                Request.make("check", **{spec.name: value})
            sampling_values[spec.name] = value
        except (SettingsError, TypeError) as error:
            errors[spec.name] = str(error)
    if errors:
        return None, errors
    steering = Steering(
        presets=[p for p in presets if p in PRESETS],
        custom=custom if custom.strip() else "",  # (spaces alone were kept, and saved)
        avoid=avoid,
        method=method,
        method_settings=dict(base.method_settings) if base else app_method_settings(),
        sampling=sampling_values,
        weights=dict(weights if weights is not None else (base.weights if base else {})),
        examples=list(base.examples) if base else [],
    )
    steering.method_settings[method] = method_values
    try:
        steering.overrides()
    except SettingsError as error:
        cannot_avoid = bool(avoid.strip()) and (avoid_error(steering.method_object())
                                                or error.param == "avoid")
        # a setting that fits no other (a lambda no alpha answers) marks its own field
        field = ("avoid" if cannot_avoid else error.param if error.param in method_values
                 else "")
        return None, {field: str(error)}
    return steering, {}


def method_description(method: Method) -> str:
    """``amulet k=0.5 tau=0.2``: the method and the settings that shape it (the command
    line's ``steering_label``, without the sampling)."""
    return steering_label({"method": method.label, "settings": method.settings()},
                          sampling=False)
