"""From result rows to ``summary.md`` and PNG charts: means, bootstrap intervals, win rates.

Everything here is a function of the rows alone (sorted before use), so a run split into
shards and merged gives the same tables as one run. Timings differ between runs; they sit in
the last section, "Speed".
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from localpref.evaluation.paper import PAPER_PREFERENCES, PREFERENCE_METRICS

#: Metrics in the order the tables show them, with their number format and a readable name.
METRICS: dict[str, tuple[str, str]] = {
    "words": ("{:.1f}", "words"),
    "tokens": ("{:.1f}", "tokens"),
    "vader": ("{:.3f}", "VADER compound"),
    "distinct1": ("{:.3f}", "distinct-1"),
    "distinct2": ("{:.3f}", "distinct-2"),
    "mtld": ("{:.1f}", "MTLD"),
    "fluency_base": ("{:.2f}", "fluency under the base lane (nats/token)"),
    "fluency_pref": ("{:.2f}", "fluency under the preference lane (nats/token)"),
    "changed_fraction": ("{:.3f}", "tokens changed by steering (fraction of the answer)"),
}
#: Statistics of a generation (``row["stats"]``) tabulated like metrics.
STAT_METRICS = ("fluency_base", "fluency_pref")
METHOD_ORDER = ("base", "pref", "recommended", "contrastive", "amulet", "pad")
#: Per-generation values of a row (``row[name]``) tabulated like metrics.
ROW_METRICS = ("changed_fraction",)
SPEED_HEADING = "## Speed"


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
    """What distinguishes results of one method: everything in the key but prompt/preference."""
    key = dict(row.get("key") or {})
    for name in ("dataset", "position", "prompt_sha", "preference", "preference_text", "method"):
        key.pop(name, None)
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
    judged: dict[tuple[str, str, str], list[dict[str, Any]]]  # (dataset, pref, other label)
    judges: list[str]
    errors: int
    models: list[str]
    prompt_modes: list[str]
    max_tokens: list[int]
    decoding: list[str]
    sweeps: dict[str, tuple[str, float]] = field(default_factory=dict)
    """Variant label -> (swept parameter, value), for the rows of a ``--sweep``."""


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
        group = (row["dataset"], row["preference"])
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
    judged: dict[tuple[str, str, str], list[dict[str, Any]]] = defaultdict(list)
    judges: set[str] = set()
    for judgement in judgements:
        if judgement.get("error") or judgement.get("b") not in variant_of:
            continue
        other = variant_of[judgement["b"]].label
        judged[(judgement["dataset"], judgement["preference"], other)].append(judgement)
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
    )


def _format(metric: str, value: float) -> str:
    if not math.isfinite(value):
        return "n/a"
    return METRICS.get(metric, ("{:.3f}", metric))[0].format(value)


def _arrow(direction: int) -> str:
    return "↑" if direction > 0 else "↓"


def _cell_text(tables: Tables, key: tuple[str, str, str, str], resamples: int,
               bold: bool = False) -> str:
    cell = tables.cells.get(key)
    if cell is None or not cell.ordered():
        return "–"
    metric = key[3]
    low, high = bootstrap_interval(cell.ordered(), resamples=resamples)
    mean = _format(metric, cell.mean())
    mean = f"**{mean}**" if bold else mean
    return f"{mean} [{_format(metric, low)}, {_format(metric, high)}]"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def _outcomes(reference: Cell, other: Cell, direction: int) -> tuple[int, int, int]:
    win = tie = lose = 0
    for position, value in reference.values.items():
        theirs = other.values.get(position)
        if theirs is None or not (math.isfinite(value) and math.isfinite(theirs)):
            continue
        difference = direction * (value - theirs)
        if difference > 1e-9:
            win += 1
        elif difference < -1e-9:
            lose += 1
        else:
            tie += 1
    return win, tie, lose


def _percentages(win: int, tie: int, lose: int) -> str:
    total = win + tie + lose
    if not total:
        return "–"
    return " / ".join(f"{100 * n / total:.0f}" for n in (win, tie, lose)) + f" (n={total})"


def render_summary(tables: Tables, *, reference: str = "amulet", resamples: int = 2000,
                   fluency_budget: float = 0.5) -> str:
    """The whole ``summary.md``."""
    labels = [v.label for v in tables.variants]
    lines = ["# localpref evaluation", ""]
    n_prompts = {
        dataset: len({p for (d, _, _, _), c in tables.cells.items() if d == dataset
                      for p in c.values})
        for dataset, _ in tables.groups
    }
    lines.append(f"Model: {', '.join(tables.models)}. Prompts: {', '.join(tables.prompt_modes)}. "
                 f"Max new tokens: {', '.join(map(str, tables.max_tokens))}. "
                 f"Decoding: {', '.join(tables.decoding)}.")
    for dataset, count in sorted(n_prompts.items()):
        lines.append(f"Dataset `{dataset}`: {count} prompts.")
    if tables.errors:
        lines.append(f"{tables.errors} generation(s) failed (see their `error`) and are left out.")
    lines += ["", "Cells: mean over prompts [95% bootstrap interval, "
              f"{resamples} resamples]. Best mean per row in bold.", ""]

    lines += ["## Preference scores", "",
              "Each preference's own automatic score (↑ higher is better, ↓ lower): "
              + ", ".join(f"{p}: {m} {_arrow(d)}" for p, (m, d) in PREFERENCE_METRICS.items())
              + ".", ""]
    rows = []
    for dataset, preference in tables.groups:
        if preference not in PREFERENCE_METRICS:
            continue
        metric, direction = PREFERENCE_METRICS[preference]
        means = {label: tables.cells[(dataset, preference, label, metric)].mean()
                 for label in labels if (dataset, preference, label, metric) in tables.cells}
        finite = [direction * m for m in means.values() if math.isfinite(m)]
        best = max(finite) if finite else math.nan
        row = [dataset, preference, f"{METRICS.get(metric, ('', metric))[1]} {_arrow(direction)}"]
        for label in labels:
            is_best = label in means and math.isfinite(means[label]) and abs(
                direction * means[label] - best) < 1e-12
            row.append(_cell_text(tables, (dataset, preference, label, metric), resamples,
                                  bold=is_best))
        rows.append(row)
    if rows:
        lines += _table(["dataset", "preference", "score", *labels], rows)
    else:
        lines.append("No preference with an automatic score in these results.")
    lines.append("")

    reference_labels = [v.label for v in tables.variants if v.method == reference]
    others = [label for label in labels if label not in reference_labels]
    if len(reference_labels) == 1 and others:
        ref = reference_labels[0]
        lines += [f"## {ref} against each method, by the preference's score", "",
                  f"Per prompt, % of prompts where {ref} scores better / equal / worse.", ""]
        rows = []
        for dataset, preference in tables.groups:
            if preference not in PREFERENCE_METRICS:
                continue
            metric, direction = PREFERENCE_METRICS[preference]
            mine = tables.cells.get((dataset, preference, ref, metric))
            row = [dataset, preference]
            for other in others:
                theirs = tables.cells.get((dataset, preference, other, metric))
                row.append(_percentages(*_outcomes(mine, theirs, direction))
                           if mine and theirs else "–")
            rows.append(row)
        lines += _table(["dataset", "preference", *(f"vs {o}" for o in others)], rows)
        lines.append("")

    if tables.judged:
        ref = reference_labels[0] if reference_labels else reference
        lines += [f"## {ref} against each method, by the LLM judge", "",
                  f"Judge: {', '.join(tables.judges)}, the Amulet paper's question, both orders. "
                  f"% of prompts where {ref} wins / ties / loses (the judge's most probable "
                  f"answer), and the mean probability that {ref} wins.", ""]
        rows = []
        for dataset, preference in tables.groups:
            row = [dataset, preference]
            for other in others:
                found = sorted(tables.judged.get((dataset, preference, other), []),
                               key=lambda j: int(j["position"]))
                if not found:
                    row.append("–")
                    continue
                counts = [sum(j["outcome"] == o for j in found) for o in ("win", "tie", "lose")]
                p_win = float(np.mean([j["p_a"] for j in found]))
                row.append(f"{_percentages(*counts)}, P(win) {p_win:.2f}")
            rows.append(row)
        lines += _table(["dataset", "preference", *(f"vs {o}" for o in others)], rows)
        lines.append("")

    if tables.sweeps:
        from localpref.evaluation.pareto import render_sweep_section

        lines += render_sweep_section(tables, fluency_budget, resamples=resamples)

    lines += ["## All scores", ""]
    for metric in tables.metrics:
        lines += [f"### {METRICS.get(metric, ('', metric))[1]}", ""]
        rows = [[dataset, preference, *(
            _cell_text(tables, (dataset, preference, label, metric), resamples)
            for label in labels)] for dataset, preference in tables.groups]
        lines += _table(["dataset", "preference", *labels], rows)
        lines.append("")

    lines += [SPEED_HEADING, "",
              "Generated rows only (reused answers left out), one generation at a time. "
              "tokens/s excludes prefill; steer ms/token is everything in a step but "
              "`llama_decode`.", ""]
    rows = []
    for label in labels:
        stats = tables.speed.get(label, [])
        if not stats:
            continue
        rate = [float(s.get("tokens_per_s") or 0.0) for s in stats]
        steer = [float(s.get("steer_ms_per_token") or 0.0) for s in stats]
        prefill = [float(s.get("prefill_ms") or 0.0) for s in stats]
        generated = [float(s.get("n_tokens") or 0.0) for s in stats]
        threads = sorted({str(s.get("n_threads")) for s in stats})
        rows.append([label, f"{np.median(rate):.1f}", f"{np.mean(steer):.2f}",
                     f"{np.mean(prefill):.0f}", f"{np.mean(generated):.1f}", str(len(stats)),
                     ",".join(threads)])
    lines += _table(["method", "tokens/s (median)", "steer ms/token", "prefill ms",
                     "tokens", "n", "threads"], rows)
    lines.append("")
    return "\n".join(lines)


def render_charts(tables: Tables, out_dir: Path, *, reference: str = "amulet",
                  resamples: int = 2000, fluency_budget: float = 0.5) -> list[Path]:
    """PNG charts: preference scores per method, tokens/s per method, judge outcomes, and
    with a sweep one Pareto plot (preference score against fluency) per preference."""
    from matplotlib.figure import Figure

    written: list[Path] = []
    if tables.sweeps:
        from localpref.evaluation.pareto import render_pareto_charts

        written += render_pareto_charts(tables, out_dir, fluency_budget)
    labels = [v.label for v in tables.variants]
    scored = [(d, p) for d, p in tables.groups if p in PREFERENCE_METRICS]
    if scored and labels:
        columns = min(4, len(scored))
        rows = math.ceil(len(scored) / columns)
        figure = Figure(figsize=(3.6 * columns, 3.4 * rows), layout="constrained")
        axes = figure.subplots(rows, columns, squeeze=False)
        for index, (dataset, preference) in enumerate(scored):
            axis = axes[index // columns][index % columns]
            metric, direction = PREFERENCE_METRICS[preference]
            means, errors = [], [[], []]
            for label in labels:
                cell = tables.cells.get((dataset, preference, label, metric))
                values = cell.ordered() if cell else []
                mean = float(np.mean(values)) if values else math.nan
                low, high = bootstrap_interval(values, resamples=resamples)
                means.append(mean)
                errors[0].append(max(mean - low, 0) if values else 0)
                errors[1].append(max(high - mean, 0) if values else 0)
            colours = ["tab:red" if v.method == reference else "tab:blue"
                       for v in tables.variants]
            axis.bar(range(len(labels)), means, yerr=errors, color=colours, capsize=3)
            axis.set_xticks(range(len(labels)), labels, rotation=35, ha="right", fontsize=8)
            name = METRICS.get(metric, ("", metric))[1]
            axis.set_title(f"{preference}: {name} {_arrow(direction)}", fontsize=10)
            if len({d for d, _ in scored}) > 1:
                axis.set_xlabel(dataset, fontsize=7)
        for index in range(len(scored), rows * columns):
            axes[index // columns][index % columns].set_visible(False)
        figure.suptitle("Preference score per method (mean, 95% bootstrap interval)")
        path = out_dir / "scores.png"
        figure.savefig(path, dpi=110)
        written.append(path)

    speed_labels = [label for label in labels if tables.speed.get(label)]
    if speed_labels:
        figure = Figure(figsize=(max(4.0, 1.1 * len(speed_labels) + 1.5), 3.4),
                        layout="constrained")
        axis = figure.subplots()
        medians = [float(np.median([float(s.get("tokens_per_s") or 0.0)
                                    for s in tables.speed[label]])) for label in speed_labels]
        axis.bar(range(len(speed_labels)), medians, color="tab:green")
        axis.set_xticks(range(len(speed_labels)), speed_labels, rotation=35, ha="right",
                        fontsize=8)
        axis.set_ylabel("tokens/s (median)")
        axis.set_title("Decoding speed per method")
        path = out_dir / "speed.png"
        figure.savefig(path, dpi=110)
        written.append(path)

    if tables.judged:
        others = sorted({other for (_, _, other) in tables.judged},
                        key=lambda label: labels.index(label) if label in labels else 0)
        groups = [g for g in tables.groups if any((*g, o) in tables.judged for o in others)]
        figure = Figure(figsize=(3.6 * len(groups), 3.2), layout="constrained")
        axes = figure.subplots(1, len(groups), squeeze=False)[0]
        for axis, (dataset, preference) in zip(axes, groups, strict=True):
            bottoms = np.zeros(len(others))
            for outcome, colour in (("win", "tab:green"), ("tie", "tab:gray"),
                                    ("lose", "tab:red")):
                shares = []
                for other in others:
                    found = tables.judged.get((dataset, preference, other), [])
                    shares.append(100 * sum(j["outcome"] == outcome for j in found)
                                  / len(found) if found else 0.0)
                axis.bar(range(len(others)), shares, bottom=bottoms, color=colour,
                         label=outcome)
                bottoms += np.array(shares)
            axis.set_xticks(range(len(others)), [f"vs {o}" for o in others], rotation=35,
                            ha="right", fontsize=8)
            axis.set_title(preference, fontsize=10)
            axis.set_ylim(0, 100)
        axes[0].legend(fontsize=7)
        figure.suptitle(f"{reference} against each method, LLM judge (% of prompts)")
        path = out_dir / "judge.png"
        figure.savefig(path, dpi=110)
        written.append(path)
    return written


def write_report(
    out_dir: Path,
    generations: Sequence[dict[str, Any]],
    metrics: dict[str, dict[str, Any]],
    judgements: Sequence[dict[str, Any]] = (),
    *,
    reference: str = "amulet",
    resamples: int = 2000,
    fluency_budget: float = 0.5,
) -> Path:
    """Write ``summary.md`` and the charts into ``out_dir``; return the summary's path."""
    tables = collect(generations, metrics, judgements)
    summary = out_dir / "summary.md"
    summary.write_text(render_summary(tables, reference=reference, resamples=resamples,
                                      fluency_budget=fluency_budget), encoding="utf-8")
    render_charts(tables, out_dir, reference=reference, resamples=resamples,
                  fluency_budget=fluency_budget)
    return summary
