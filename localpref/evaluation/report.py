"""From result rows to ``summary.md`` and PNG charts: means, bootstrap intervals, win rates.

Everything here is a function of the rows alone (grouped by ``tables.collect``), so a run split
into shards and merged gives the same tables as one run. Timings differ between runs; they sit
in the last section, "Speed".
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from localpref.evaluation.judge import LOW_COVERAGE, coverage_of
from localpref.evaluation.markdown import (
    direction_arrow,
    format_value,
    markdown_table,
    metric_name,
)
from localpref.evaluation.paper import PREFERENCE_METRICS
from localpref.evaluation.pareto import render_pareto_charts, render_sweep_section
from localpref.evaluation.records import (
    JUDGE_CHART,
    SCORES_CHART,
    SPEED_CHART,
    SUMMARY,
    save_chart,
)
from localpref.evaluation.tables import (
    Cell,
    Tables,
    bootstrap_interval,
    collect,
    comparable,
    judged_pairs,
)
from localpref.evaluation.versus_pref import render_versus_pref_section

SPEED_HEADING = "## Speed"

#: The method the win/tie/lose tables compare when no other is named.
DEFAULT_REFERENCE = "amulet"


def _cell_text(tables: Tables, key: tuple[str, str, str, str], resamples: int,
               bold: bool = False) -> str:
    cell = tables.cells.get(key)
    if cell is None or not cell.values:
        return "–"
    finite, answered = cell.ordered(), len(cell.values)
    if not finite:  # (a score with no value for these answers: MTLD of very short ones)
        return f"– (no value on {answered} prompt{'s' if answered != 1 else ''})"
    metric = key[3]
    low, high = bootstrap_interval(finite, resamples=resamples)
    mean = format_value(metric, cell.mean())
    mean = f"**{mean}**" if bold else mean
    # a mean over fewer prompts than were answered is said, beside means over all of them
    some = f" (n={len(finite)} of {answered})" if len(finite) < answered else ""
    return f"{mean} [{format_value(metric, low)}, {format_value(metric, high)}]{some}"


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


def render_summary(tables: Tables, *, reference: str = DEFAULT_REFERENCE, resamples: int = 2000,
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
    for dataset in sorted({*n_prompts, *tables.prompts}):
        answered = n_prompts.get(dataset, 0)
        total = max(len(tables.prompts.get(dataset, ())), answered)
        unanswered = f" ({total - answered} not answered)" if total > answered else ""
        lines.append(f"Dataset `{dataset}`: {total} prompt{'s' if total != 1 else ''}"
                     f"{unanswered}.")
    if tables.errors:
        lines.append(f"{tables.errors} generation(s) failed (see their `error`) and are left out.")
    lines += ["", "Cells: mean over prompts [95% bootstrap interval, "
              f"{resamples} resamples]. Best mean per row in bold.", ""]

    lines += ["## Preference scores", "",
              "Each preference's own automatic score (↑ higher is better, ↓ lower): "
              + ", ".join(f"{p}: {m} {direction_arrow(d)}"
                          for p, (m, d) in PREFERENCE_METRICS.items())
              + ".", ""]
    rows = []
    for dataset, preference, metric, direction in tables.scored_groups():
        means = {label: tables.cells[(dataset, preference, label, metric)].mean()
                 for label in labels if (dataset, preference, label, metric) in tables.cells}
        finite = [direction * m for m in means.values() if math.isfinite(m)]
        best = max(finite) if finite else math.nan
        row = [dataset, preference, f"{metric_name(metric)} {direction_arrow(direction)}"]
        for label in labels:
            is_best = label in means and math.isfinite(means[label]) and abs(
                direction * means[label] - best) < 1e-12
            row.append(_cell_text(tables, (dataset, preference, label, metric), resamples,
                                  bold=is_best))
        rows.append(row)
    if rows:
        lines += markdown_table(["dataset", "preference", "score", *labels], rows)
    else:
        lines.append("No preference with an automatic score in these results.")
    lines.append("")
    lines += render_versus_pref_section(tables, budget=fluency_budget, resamples=resamples)

    # at several settings (runs merged): one table each, like with like; a sweep's points
    # are compared in its own section
    references = [v for v in tables.variants if v.method == reference]
    if len(references) > 1:
        references = [v for v in references if v.label not in tables.sweeps]
    for mine_variant in references:
        ref = mine_variant.label
        others = [v.label for v in tables.variants if v.method != reference and (
            len(references) == 1 or comparable(mine_variant, v))]
        if not others:
            continue
        lines += [f"## {ref} against each method, by the preference's score", "",
                  f"Per prompt, % of prompts where {ref} scores better / equal / worse.", ""]
        rows = []
        for dataset, preference, metric, direction in tables.scored_groups():
            mine = tables.cells.get((dataset, preference, ref, metric))
            row = [dataset, preference]
            for other in others:
                theirs = tables.cells.get((dataset, preference, other, metric))
                row.append(_percentages(*_outcomes(mine, theirs, direction))
                           if mine and theirs else "–")
            rows.append(row)
        lines += markdown_table(["dataset", "preference", *(f"vs {o}" for o in others)], rows)
        lines.append("")

    pairs = judged_pairs(tables)
    method_of = {variant.label: variant.method for variant in tables.variants}
    for judge in tables.judges:  # a folder two judges judged: a table each, never pooled
        named = f" {judge}" if len(tables.judges) > 1 else ""
        for ref in dict.fromkeys(mine for mine, _ in pairs):  # each column the judge compared
            others = [other for mine, other in pairs if mine == ref]
            cells = {(dataset, preference, other): verdicts_of(tables, judge, dataset,
                                                               preference, ref, other)
                     for dataset, preference in tables.groups for other in others}
            if not any(cells.values()):
                continue
            judged_as = ("" if method_of.get(ref) == reference else
                         f" The judge compared {ref} with each method when these answers were "
                         f"judged; the reference here, {reference}, does not judge them again.")
            lines += [f"## {ref} against each method, by the LLM judge{named}", "",
                      f"Judge: {judge}, the Amulet paper's question, both orders. "
                      f"% of prompts where {ref} wins / ties / loses (the judge's most "
                      f"probable answer), and the mean probability that {ref} wins."
                      f"{judged_as}", "", *_coverage_lines(tables, ref, judge)]
            rows = []
            for dataset, preference in tables.groups:
                row = [dataset, preference]
                for other in others:
                    found = cells[(dataset, preference, other)]
                    if not found:
                        row.append("–")
                        continue
                    counts = [sum(j["outcome"] == o for j in found)
                              for o in ("win", "tie", "lose")]
                    p_win = float(np.mean([j["p_a"] for j in found]))
                    row.append(f"{_percentages(*counts)}, P(win) {p_win:.2f}")
                rows.append(row)
            lines += markdown_table(["dataset", "preference", *(f"vs {o}" for o in others)],
                                    rows)
            lines.append("")

    if tables.sweeps:
        lines += render_sweep_section(tables, fluency_budget, resamples=resamples)

    lines += ["## All scores", ""]
    for metric in tables.metrics:
        lines += [f"### {metric_name(metric)}", ""]
        rows = [[dataset, preference, *(
            _cell_text(tables, (dataset, preference, label, metric), resamples)
            for label in labels)] for dataset, preference in tables.groups]
        lines += markdown_table(["dataset", "preference", *labels], rows)
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
    lines += markdown_table(["method", "tokens/s (median)", "steer ms/token", "prefill ms",
                            "tokens", "n", "threads"], rows)
    lines.append("")
    return "\n".join(lines)


def verdicts_of(tables: Tables, judge: str, dataset: str, preference: str, mine: str,
                other: str) -> list[dict[str, Any]]:
    """``judge``'s verdicts on ``mine`` against ``other`` in one group, one a prompt, in the
    prompts' order."""
    found = [j for j in tables.judged.get((dataset, preference, mine, other), [])
             if str(j.get("judge")) == judge]
    return sorted(found, key=lambda j: int(j["position"]))


def _coverage_lines(tables: Tables, ref: str, judge: str) -> list[str]:
    """``judge``'s median coverage over ``ref``'s pairs, with a warning when it is too low
    for its verdicts to mean much (``judge.coverage_of``)."""
    values = [coverage_of(judgement["orders"])
              for (_, _, mine, _), found in tables.judged.items() if mine == ref
              for judgement in found
              if judgement.get("orders") and str(judgement.get("judge")) == judge]
    if not values:
        return []
    median = float(np.median(values))
    line = (f"The judge's coverage (its probability of answering \"Text 1\", \"Text 2\" or "
            f"\"Tie\" at all, before renormalising): median {median:.2g}.")
    if median < LOW_COVERAGE:
        line += (" **That is low: the judge was mostly not answering the question (a base "
                 "model or a very small one?), so its verdicts say little; use a stronger "
                 "instruction model with --judge.**")
    return [line, ""]


def render_charts(tables: Tables, out_dir: Path, *, reference: str = DEFAULT_REFERENCE,
                  resamples: int = 2000, fluency_budget: float = 0.5) -> list[Path]:
    """PNG charts: preference scores per method, tokens/s per method, judge outcomes, and
    with a sweep one Pareto plot (preference score against fluency) per preference."""
    from matplotlib.figure import Figure

    written: list[Path] = []
    if tables.sweeps:
        written += render_pareto_charts(tables, out_dir, fluency_budget)
    labels = [v.label for v in tables.variants]
    scored = tables.scored_groups()
    if scored and labels:
        columns = min(4, len(scored))
        rows = math.ceil(len(scored) / columns)
        figure = Figure(figsize=(3.6 * columns, 3.4 * rows), layout="constrained")
        axes = figure.subplots(rows, columns, squeeze=False)
        for index, (dataset, preference, metric, direction) in enumerate(scored):
            axis = axes[index // columns][index % columns]
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
            name = metric_name(metric)
            axis.set_title(f"{preference}: {name} {direction_arrow(direction)}", fontsize=10)
            if len({group[0] for group in scored}) > 1:
                axis.set_xlabel(dataset, fontsize=7)
        for index in range(len(scored), rows * columns):
            axes[index // columns][index % columns].set_visible(False)
        figure.suptitle("Preference score per method (mean, 95% bootstrap interval)")
        path = out_dir / SCORES_CHART
        save_chart(figure, path, dpi=110)
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
        path = out_dir / SPEED_CHART
        save_chart(figure, path, dpi=110)
        written.append(path)

    if tables.judged:
        pairs = judged_pairs(tables)
        references = list(dict.fromkeys(mine for mine, _ in pairs))
        names = [f"vs {other}" if len(references) == 1 else f"{mine} vs {other}"
                 for mine, other in pairs]
        groups = [g for g in tables.groups if any((*g, *pair) in tables.judged for pair in pairs)]
        judges = tables.judges  # a row of plots each, never pooled
        figure = Figure(figsize=(3.6 * len(groups), 3.2 * len(judges)), layout="constrained")
        axes = figure.subplots(len(judges), len(groups), squeeze=False)
        for row, judge in enumerate(judges):
            for axis, (dataset, preference) in zip(axes[row], groups, strict=True):
                bottoms = np.zeros(len(pairs))
                verdicts = [verdicts_of(tables, judge, dataset, preference, *pair)
                            for pair in pairs]
                for outcome, colour in (("win", "tab:green"), ("tie", "tab:gray"),
                                        ("lose", "tab:red")):
                    shares = [100 * sum(j["outcome"] == outcome for j in found) / len(found)
                              if found else 0.0 for found in verdicts]
                    axis.bar(range(len(pairs)), shares, bottom=bottoms, color=colour,
                             label=outcome)
                    bottoms += np.array(shares)
                axis.set_xticks(range(len(pairs)), names, rotation=35, ha="right", fontsize=8)
                axis.set_title(preference if len(judges) == 1 else f"{preference}, {judge}",
                               fontsize=9)
                axis.set_ylim(0, 100)
        axes[0][0].legend(fontsize=7)
        whose = references[0] if len(references) == 1 else "Each reference"
        figure.suptitle(f"{whose} against each method,\nLLM judge (% of prompts)", fontsize=10)
        path = out_dir / JUDGE_CHART
        save_chart(figure, path, dpi=110)
        written.append(path)
    return written


def write_report(
    out_dir: Path,
    generations: Sequence[dict[str, Any]],
    metrics: dict[str, dict[str, Any]],
    judgements: Sequence[dict[str, Any]] = (),
    *,
    reference: str = DEFAULT_REFERENCE,
    resamples: int = 2000,
    fluency_budget: float = 0.5,
) -> Path:
    """Write ``summary.md`` and the charts into ``out_dir``; return the summary's path."""
    tables = collect(generations, metrics, judgements)
    summary = out_dir / SUMMARY
    summary.write_text(render_summary(tables, reference=reference, resamples=resamples,
                                      fluency_budget=fluency_budget), encoding="utf-8")
    render_charts(tables, out_dir, reference=reference, resamples=resamples,
                  fluency_budget=fluency_budget)
    return summary
