"""``--sweep``: the grid over one setting of the two-lane methods (their strength by default).

``--sweep strength=0.25,0.5,1`` runs every two-lane method (Contrastive, Amulet, PAD) once per
value, through ``method.with_strength``; ``--sweep amulet.strength=...`` gives one method its
own values; ``tau`` and ``kl_budget`` can be swept the same way. Base, Pref and beam searches
have no strength and run once. A swept row's key holds the settings of the method before the
sweep plus ``{"sweep": {parameter: value}}``, so every value is a row of its own, resumable
and mergeable like any other.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass

from localpref.errors import SettingsError
from localpref.evaluation.specs import MethodSpec, SweepPoint, sweepable, sweepable_method_names
from localpref.methods import ContrastFamily, Method
from localpref.numbers import number

#: What can be swept, and what it means.
SWEEP_PARAMETERS = {
    "strength": "the method's one strength knob (Contrastive ratio, Amulet contrast k, PAD weight)",
    "tau": "the plausibility threshold",
    "kl_budget": "the per-token KL budget",
}


@dataclass(frozen=True)
class Sweep:
    """Values of one parameter for every two-lane method, or for the method named."""

    parameter: str
    values: tuple[float, ...]
    method: str | None = None

    def label(self) -> str:
        prefix = f"{self.method}." if self.method else ""
        return f"{prefix}{self.parameter}=" + ",".join(f"{v:g}" for v in self.values)


def parse_sweep(text: str) -> Sweep:
    """``"strength=0.5,1,2"`` or ``"amulet.strength=0.5,1"``; a ``SettingsError`` sentence
    for anything else."""
    name, equals, raw_values = text.partition("=")
    name = name.strip().lower()
    if not equals or not name:
        raise SettingsError(f"--sweep must look like strength=0.5,1,2 (got {text!r}).")
    method, _, parameter = name.rpartition(".")
    parameter = parameter.replace("-", "_")
    if parameter not in SWEEP_PARAMETERS:
        raise SettingsError(f"Unknown sweep parameter {parameter!r}; choose one of "
                            f"{', '.join(SWEEP_PARAMETERS)}.")
    values: list[float] = []
    for part in raw_values.split(","):
        try:
            value = number(part)
        except ValueError:
            raise SettingsError(f"--sweep {name}= needs numbers separated by commas "
                                f"(got {raw_values.strip()!r}).") from None
        if not math.isfinite(value):
            raise SettingsError(f"--sweep {name}= needs finite numbers (got {part.strip()!r}).")
        if value not in values:
            values.append(value)
    return Sweep(parameter, tuple(values), method or None)


def _at(method: ContrastFamily | Method, parameter: str, value: float) -> Method:
    if parameter == "strength":
        return method.with_strength(value)  # type: ignore[union-attr]
    return dataclasses.replace(method, **{parameter: value})  # type: ignore[arg-type]


def expand(specs: Sequence[MethodSpec], sweeps: Sequence[Sweep]) -> list[MethodSpec]:
    """The grid's methods with every swept method repeated once per value.

    Methods without a strength stay single. A sweep naming a method applies to it instead of an
    unnamed one; naming a method that is not in the grid, or has no strength, or giving two
    sweeps for one method, is a ``SettingsError``.
    """
    if not sweeps:
        return list(specs)
    general = [s for s in sweeps if s.method is None]
    named: dict[str, Sweep] = {}
    for sweep in sweeps:
        if sweep.method is not None:
            if sweep.method in named:
                raise SettingsError(f"Two sweeps for {sweep.method}; give one per method.")
            named[sweep.method] = sweep
    if len(general) > 1:
        raise SettingsError("Give one --sweep for all methods (prefix the others with a "
                            "method name, e.g. pad.strength=0.5,1).")
    by_name = {spec.name: spec for spec in specs}
    for name in named:
        if name not in by_name:
            raise SettingsError(f"--sweep names {name}, which is not among the methods.")
        if by_name[name].calibrated:
            raise SettingsError(f"--sweep: {name} runs the model's calibrated setting; sweep "
                                "recommended or amulet instead.")
        if not sweepable(by_name[name].decoder):
            raise SettingsError(f"--sweep: {name} has no strength to sweep; only "
                                f"{_listed(sweepable_method_names(), 'and')} have.")
    expanded: list[MethodSpec] = []
    swept_any = False
    for spec in specs:
        sweep = named.get(spec.name) or (general[0] if general else None)
        if sweep is None or not sweepable(spec.decoder) or spec.calibrated:
            expanded.append(spec)
            continue
        swept_any = True
        for value in sweep.values:
            try:
                decoder = _at(spec.decoder, sweep.parameter, value)
            except SettingsError as error:
                reason = str(error)
                knob = (f", whose strength is its {spec.decoder.strength_name}"
                        if sweep.parameter == "strength"
                        and isinstance(spec.decoder, ContrastFamily) else "")
                raise SettingsError(f"--sweep {sweep.parameter}={value:g} does not fit "
                                    f"{spec.name}{knob}: {reason[:1].lower()}{reason[1:]}"
                                    ) from None
            expanded.append(MethodSpec(spec.name, decoder,
                                       SweepPoint(sweep.parameter, value, spec.decoder)))
    if not swept_any:
        raise SettingsError("--sweep needs a method with a strength among the methods: "
                            f"{_listed(sweepable_method_names(), 'or')}.")
    return expanded


def _listed(names: Sequence[str], conjunction: str) -> str:
    """``"a, b and c"``."""
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} {conjunction} {names[-1]}"
