"""The grouped results behind the summary and the charts: variants, cells, bootstrap intervals.

``collect`` turns result rows into :class:`Tables`: one column (a :class:`Variant`) per method and
set of settings, one :class:`Cell` of per-prompt values per (dataset, preference, variant,
metric). Everything is a function of the rows alone (sorted before use), so a run split into
shards and merged groups the same way as one run.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from localpref.evaluation.judge import outcome_of
from localpref.evaluation.markdown import METRICS
from localpref.evaluation.paper import PAPER_PREFERENCES, PREFERENCE_METRICS, known_name
from localpref.evaluation.specs import CALIBRATED
from localpref.methods import METHODS, RECOMMENDED

#: Statistics of a generation (``row["stats"]``) tabulated like metrics.
STAT_METRICS = ("fluency_base", "fluency_pref")
#: Columns in the order the library lists its methods; beam searches come after, then others.
#: Base and Pref first, then the recommended steering (as calibrated for the model, if in the
#: run), then the papers' methods.
METHOD_ORDER = (*tuple(METHODS)[:2], RECOMMENDED, CALIBRATED, *tuple(METHODS)[2:])
#: Per-generation values of a row (``row[name]``) tabulated like metrics.
ROW_METRICS = ("changed_fraction",)


#: The fewest prompts on which a paired interval may decide "beats" or "loses". A percentile
#: bootstrap over n prompts that all moved one way never holds zero, however few they are,
#: while a sign test puts n of n at p = 2 / 2^n: 0.25 at 3 prompts, 0.0625 at 5, 0.031 at 6,
#: the first under 0.05.
MIN_PROMPTS_FOR_VERDICT = 6


#: The fewest bootstrap resamples (``--bootstrap``): a 95 % percentile interval's ends are its
#: 2.5 % and 97.5 % resamples, so with fewer than 40 both ends are the extreme resamples or
#: the interval is the one mean (zero wide with 1).
MIN_RESAMPLES = 40


def bootstrap_resamples_error(resamples: int) -> str | None:
    """The sentence refusing ``--bootstrap`` ``resamples``, or None when it is enough."""
    if resamples < MIN_RESAMPLES:
        return (f"--bootstrap must be {MIN_RESAMPLES} or more, for a 95% interval's ends to be "
                f"its 2.5% and 97.5% resamples (got {resamples}).")
    return None


def bootstrap_interval(
    values: Sequence[float], *, resamples: int = 2000, level: float = 0.95, seed: int = 0
) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean (resampling prompts with replacement).

    Deterministic for given values in a given order (a fixed seed). NaN for no values.
    """
    data = np.asarray(values, dtype=np.float64)
    if data.size == 0:
        return math.nan, math.nan
    if data.size == 1:
        return float(data[0]), float(data[0])
    rng = np.random.default_rng(seed)
    means = data[rng.integers(0, data.size, size=(resamples, data.size))].mean(axis=1)
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(means, [tail, 100 - tail])
    return float(low), float(high)


@dataclass(frozen=True)
class Variant:
    """A column of the tables: a method with one set of settings (and model, prompts...)."""

    method: str
    signature: str
    label: str


@dataclass
class Cell:
    """The values of one metric for one (dataset, preference, variant), by prompt position."""

    values: dict[int, float] = field(default_factory=dict)

    def ordered(self) -> list[float]:
        return [self.values[p] for p in sorted(self.values) if math.isfinite(self.values[p])]

    def mean(self) -> float:
        finite = self.ordered()
        return float(np.mean(finite)) if finite else math.nan


def paired_differences(mine: Cell, theirs: Cell) -> list[float]:
    """``mine - theirs`` at every prompt position both cells hold a finite value, in order."""
    return [mine.values[p] - theirs.values[p] for p in sorted(mine.values)
            if p in theirs.values and math.isfinite(mine.values[p])
            and math.isfinite(theirs.values[p])]


def _method_rank(method: str) -> tuple[int, int, str]:
    if method in METHOD_ORDER:
        return (METHOD_ORDER.index(method), 0, method)
    if method.startswith("beam") and method[4:].isdigit():
        return (len(METHOD_ORDER), int(method[4:]), method)
    return (len(METHOD_ORDER) + 1, 0, method)


def _preference_rank(preference: str) -> tuple[int, str]:
    order = list(PAPER_PREFERENCES)
    return (order.index(preference), "") if preference in order else (len(order), preference)


def _signature(row: dict[str, Any]) -> dict[str, Any]:
    """What distinguishes results of one method: everything in the key but prompt/preference
    (and for a calibrated column, whose setting and opposite depend on the preference, those
    too: the calibration it ran is its signature)."""
    key = dict(row.get("key") or {})
    for name in ("dataset", "position", "prompt_sha", "preference", "preference_text", "method"):
        key.pop(name, None)
    if "calibration" in key:
        key.pop("settings", None)
        key.pop("avoid", None)
    return key


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict):
        flat: dict[str, Any] = {}
        for k, v in value.items():
            flat.update(_flatten(v, f"{prefix}{k}."))
        return flat
    return {prefix[:-1]: value}


def variants_of(rows: Iterable[dict[str, Any]]) -> dict[str, Variant]:
    """Each row's column: rows of one method that differ in settings get labels saying how."""
    signatures: dict[str, dict[str, dict[str, Any]]] = defaultdict(dict)
    row_signature: dict[str, tuple[str, str]] = {}
    names: dict[str, set[str]] = defaultdict(set)
    for row in rows:
        signature = _signature(row)
        text = json.dumps(signature, sort_keys=True)
        signatures[row["method"]][text] = signature
        row_signature[row["id"]] = (row["method"], text)
        label = str(row.get("label") or row["method"])
        # A column named otherwise than its decoder ("recommended" runs amulet) says both.
        names[row["method"]].add(label if label.startswith(row["method"])
                                 else f"{row['method']} ({label})")
    labels: dict[tuple[str, str], Variant] = {}
    for method, found in signatures.items():
        # The decoder's own label ("pad (prompt-contrast reward)") when it says more.
        name = min(names[method])
        if len(found) == 1:
            text = next(iter(found))
            labels[(method, text)] = Variant(method, text, name)
            continue
        flats = {text: _flatten(signature) for text, signature in found.items()}
        keys = sorted({k for flat in flats.values() for k in flat})
        differing = [k for k in keys if len({json.dumps(f.get(k)) for f in flats.values()}) > 1]
        for text, flat in flats.items():
            parts = [f"{k.split('.')[-1]}={flat.get(k, 'default')}" for k in differing]
            labels[(method, text)] = Variant(method, text, f"{name} [{', '.join(parts)}]")
    return {row_id: labels[sig] for row_id, sig in row_signature.items()}


def judged_pairs(tables: Tables) -> list[tuple[str, str]]:
    """Each (reference label, other label) the judge compared, in the tables' column order."""
    order = {variant.label: place for place, variant in enumerate(tables.variants)}
    pairs = {(mine, other) for (_, _, mine, other) in tables.judged}
    return sorted(pairs, key=lambda pair: (order.get(pair[0], 0), order.get(pair[1], 0)))


def comparable(first: Variant, second: Variant) -> bool:
    """Whether two columns ran under the same conditions: every setting both record agrees
    (Pref at 96 tokens beside Amulet at 96 tokens, not beside Amulet at 128; a method's own
    settings, which the other has not, do not count)."""
    mine, theirs = (_flatten(json.loads(v.signature)) for v in (first, second))
    return all(json.dumps(mine[k]) == json.dumps(theirs[k]) for k in mine.keys() & theirs.keys())


def counterpart(variant: Variant, candidates: Sequence[Variant]) -> Variant | None:
    """The one column of ``candidates`` (Pref's, say) to compare ``variant`` with: the only
    one, else the only one that ran under its conditions (``comparable``), else None."""
    if len(candidates) == 1:
        return candidates[0]
    found = [other for other in candidates if comparable(variant, other)]
    return found[0] if len(found) == 1 else None


def _variant_order(variants: Iterable[Variant]) -> list[Variant]:
    unique = {v.label: v for v in variants}
    return sorted(unique.values(), key=lambda v: (_method_rank(v.method), v.label))


@dataclass
class Tables:
    """The grouped results behind the summary and the charts."""

    groups: list[tuple[str, str]]  # (dataset, preference)
    variants: list[Variant]
    cells: dict[tuple[str, str, str, str], Cell]  # (dataset, preference, variant label, metric)
    metrics: list[str]
    speed: dict[str, list[dict[str, Any]]]  # variant label -> stats of generated rows
    #: (dataset, preference, the reference's label, the other's label) -> judgements
    judged: dict[tuple[str, str, str, str], list[dict[str, Any]]]
    judges: list[str]
    errors: int
    models: list[str]
    prompt_modes: list[str]
    max_tokens: list[int]
    decoding: list[str]
    sweeps: dict[str, tuple[str, float]] = field(default_factory=dict)
    """Variant label -> (swept parameter, value), for the rows of a ``--sweep``."""
    prompts: dict[str, set[int]] = field(default_factory=dict)
    """Dataset -> the positions of its prompts with a row, failed ones included."""

    def scored_groups(self) -> list[tuple[str, str, str, int]]:
        """``(dataset, preference, metric, direction)`` of every group whose preference has an
        automatic score (``paper.PREFERENCE_METRICS``; direction +1: higher is better), in
        table order."""
        return [(dataset, preference, *PREFERENCE_METRICS[preference])
                for dataset, preference in self.groups if preference in PREFERENCE_METRICS]


def _decoding(key: dict[str, Any]) -> str:
    sampling = key.get("sampling") or {}
    temperature = float(sampling.get("temperature") or 0.0)
    if temperature == 0:
        return "greedy"
    return f"sampled at temperature {temperature:g}, seed {key.get('seed')}"


def collect(
    generations: Sequence[dict[str, Any]],
    metrics: dict[str, dict[str, Any]],
    judgements: Sequence[dict[str, Any]] = (),
) -> Tables:
    """Group rows by (dataset, preference, variant) with their metric values."""
    usable = [row for row in generations if not row.get("error")]
    variant_of = variants_of(usable)
    cells: dict[tuple[str, str, str, str], Cell] = defaultdict(Cell)
    speed: dict[str, list[dict[str, Any]]] = defaultdict(list)
    seen_metrics: set[str] = set()
    groups: set[tuple[str, str]] = set()
    sweeps: dict[str, tuple[str, float]] = {}
    for row in usable:
        label = variant_of[row["id"]].label
        group = (row["dataset"], known_name(str(row["preference"])))
        groups.add(group)
        stats = row.get("stats") or {}
        values = dict(metrics.get(row["id"]) or {})
        values.update({name: stats[name] for name in STAT_METRICS if name in stats})
        values.update({name: row[name] for name in ROW_METRICS if row.get(name) is not None})
        for name, value in values.items():
            number = math.nan if value is None else float(value)
            cells[(*group, label, name)].values[int(row["position"])] = number
            seen_metrics.add(name)
        swept = (row.get("key") or {}).get("sweep")
        if isinstance(swept, dict) and len(swept) == 1:
            ((parameter, value),) = swept.items()
            sweeps[label] = (str(parameter), float(value))
        if not row.get("reused_from"):
            speed[label].append(row.get("stats") or {})
    judged: dict[tuple[str, str, str, str], list[dict[str, Any]]] = defaultdict(list)
    judges: set[str] = set()
    for judgement in judgements:
        if (judgement.get("error") or judgement.get("a") not in variant_of
                or judgement.get("b") not in variant_of):
            continue
        mine, other = variant_of[judgement["a"]].label, variant_of[judgement["b"]].label
        # read from the probabilities, so rows written before a rule changed count by today's
        outcome = outcome_of(judgement["p_a"], judgement["p_tie"], judgement["p_b"])
        group = (judgement["dataset"], known_name(str(judgement["preference"])))
        judged[(*group, mine, other)].append({**judgement, "outcome": outcome})
        judges.add(str(judgement.get("judge")))
    ordered_metrics = [m for m in METRICS if m in seen_metrics]
    ordered_metrics += sorted(seen_metrics - set(METRICS))
    return Tables(
        groups=sorted(groups, key=lambda g: (g[0], _preference_rank(g[1]))),
        variants=_variant_order(variant_of.values()),
        cells=dict(cells),
        metrics=ordered_metrics,
        speed=dict(speed),
        judged=dict(judged),
        judges=sorted(judges),
        errors=len(generations) - len(usable),
        models=sorted({str((row.get("key") or {}).get("model")) for row in usable}),
        prompt_modes=sorted({str((row.get("key") or {}).get("prompts")) for row in usable}),
        max_tokens=sorted({int((row.get("key") or {}).get("max_tokens", 0)) for row in usable}),
        decoding=sorted({_decoding(row.get("key") or {}) for row in usable}),
        sweeps=sweeps,
        prompts=_prompts_of(generations),
    )


def _prompts_of(generations: Sequence[dict[str, Any]]) -> dict[str, set[int]]:
    """Dataset -> the positions of its prompts that have a row (answered or failed)."""
    prompts: dict[str, set[int]] = defaultdict(set)
    for row in generations:
        if row.get("dataset") is not None and row.get("position") is not None:
            prompts[str(row["dataset"])].add(int(row["position"]))
    return dict(prompts)
