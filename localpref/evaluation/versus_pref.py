"""Each method against Pref, prompt by prompt: does steering beat simply asking?

Pref (the preference in the prompt, no steering) is the baseline every steering method must
beat to be worth its second lane. For each dataset, preference with an automatic score
(``paper.PREFERENCE_METRICS``) and variant, over the prompts both have:

    Δ score   = mean over prompts of (score(method) - score(Pref))
    Δ fluency = mean over prompts of (fluency(method) - fluency(Pref))

with fluency the mean log-probability of the answer's tokens under the base lane (nats per
token, as in the sweep) and, beside it, under the preference lane (is this a text the model,
asked for the preference, finds natural? The base lane penalises exactly what a preference asks
for), and a 95% percentile bootstrap interval over prompts for each (paired: a prompt's two
answers are resampled together, so prompt difficulty cancels).

A method **beats Pref** when the interval of Δ score lies wholly on the preference's side of
zero, **loses** when it lies wholly on the other side, and is **no different** otherwise, on
at least ``tables.MIN_PROMPTS_FOR_VERDICT`` prompts (**too few prompts** below); it
is **fluent** under a lane when Δ fluency under it is at least ``-budget`` nats (0.5 by
default, the sweep's budget).

Everything is a function of the rows (through ``tables.Tables``), so merged shards give the
same section as one run.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from localpref.evaluation.markdown import (
    direction_arrow,
    format_value,
    markdown_table,
    metric_name,
)
from localpref.evaluation.tables import (
    MIN_PROMPTS_FOR_VERDICT,
    Cell,
    Tables,
    bootstrap_interval,
    counterpart,
    paired_differences,
)

FLUENCY = "fluency_base"
FLUENCY_PREF = "fluency_pref"
PREF = "pref"


@dataclass(frozen=True)
class Comparison:
    """One variant against Pref on one (dataset, preference): paired means and intervals."""

    dataset: str
    preference: str
    metric: str
    direction: int  # +1: higher is better
    label: str
    n_prompts: int
    delta: float
    delta_low: float
    delta_high: float
    fluency_delta: float
    fluency_low: float
    fluency_high: float
    pref_fluency_delta: float = math.nan
    """Mean fluency difference under the preference lane (NaN where not recorded)."""

    @property
    def verdict(self) -> str:
        """``beats``, ``loses`` or ``no different`` (the interval against zero); ``too few
        prompts`` under ``MIN_PROMPTS_FOR_VERDICT``."""
        low, high = self.direction * self.delta_low, self.direction * self.delta_high
        if not (math.isfinite(low) and math.isfinite(high)):
            return "no data"
        if self.n_prompts < MIN_PROMPTS_FOR_VERDICT:
            return "too few prompts"
        if min(low, high) > 0:
            return "beats"
        if max(low, high) < 0:
            return "loses"
        return "no different"

    def fluent(self, budget: float, *, lane: str = "base") -> bool | None:
        """Whether the mean fluency under ``lane`` (``base`` or ``pref``) is at most ``budget``
        nats below Pref's (None: unknown)."""
        delta = self.fluency_delta if lane == "base" else self.pref_fluency_delta
        return None if not math.isfinite(delta) else delta >= -budget


def comparisons(tables: Tables, *, resamples: int = 2000) -> list[Comparison]:
    """Every non-Pref variant against Pref, per scored (dataset, preference), in table order;
    with Pref at several settings (a folder of runs at two ``--max-tokens``), each against
    the Pref that ran under its conditions (``tables.counterpart``)."""
    prefs = [v for v in tables.variants if v.method == PREF]
    found = []
    for dataset, preference, metric, direction in tables.scored_groups():
        group = (dataset, preference)
        for variant in tables.variants:
            pref = counterpart(variant, prefs) if variant.method != PREF else None
            mine = tables.cells.get((*group, variant.label, metric))
            theirs = tables.cells.get((*group, pref.label, metric)) if pref else None
            if pref is None or mine is None or theirs is None:
                continue
            scores = paired_differences(mine, theirs)
            fluency = paired_differences(
                tables.cells.get((*group, variant.label, FLUENCY)) or Cell(),
                tables.cells.get((*group, pref.label, FLUENCY)) or Cell())
            pref_fluency = paired_differences(
                tables.cells.get((*group, variant.label, FLUENCY_PREF)) or Cell(),
                tables.cells.get((*group, pref.label, FLUENCY_PREF)) or Cell())
            low, high = bootstrap_interval(scores, resamples=resamples)
            f_low, f_high = bootstrap_interval(fluency, resamples=resamples)
            found.append(Comparison(
                dataset, preference, metric, direction, variant.label, len(scores),
                float(np.mean(scores)) if scores else math.nan, low, high,
                float(np.mean(fluency)) if fluency else math.nan, f_low, f_high,
                float(np.mean(pref_fluency)) if pref_fluency else math.nan))
    return found


def _cell(comparison: Comparison, budget: float) -> str:
    metric = comparison.metric
    marks = {True: "", False: " **not fluent**", None: ""}
    under_pref = ""
    if math.isfinite(comparison.pref_fluency_delta):
        under_pref = (f", pref lane {format_value(FLUENCY_PREF, comparison.pref_fluency_delta)}"
                      f"{marks[comparison.fluent(budget, lane='pref')]}")
    return (f"**{comparison.verdict}** {format_value(metric, comparison.delta)} "
            f"[{format_value(metric, comparison.delta_low)}, "
            f"{format_value(metric, comparison.delta_high)}]; fluency "
            f"{format_value(FLUENCY, comparison.fluency_delta)}{marks[comparison.fluent(budget)]}"
            f"{under_pref} (n={comparison.n_prompts})")


def render_versus_pref_section(tables: Tables, *, budget: float = 0.5,
                               resamples: int = 2000) -> list[str]:
    """The summary's "Against Pref" section (empty without Pref rows)."""
    found = comparisons(tables, resamples=resamples)
    if not found:
        return []
    labels = list(dict.fromkeys(c.label for c in found))
    lines = ["## Against Pref, prompt by prompt", "",
             "Each cell: the verdict (**beats** / **loses**: the 95% paired bootstrap interval of "
             "the score difference lies wholly on the better / worse side of zero; **too few "
             f"prompts** under {MIN_PROMPTS_FOR_VERDICT}, where every prompt moving one way "
             "puts the interval off zero by itself), the mean "
             "difference from Pref's score [interval], the mean difference from Pref's fluency "
             "under the base lane and, where recorded, under the preference lane (nats/token; "
             f"**not fluent** when more than {budget:g} below), and n, the prompts both "
             "answered."]
    if sum(v.method == PREF for v in tables.variants) > 1:
        lines[-1] += (" Pref ran at several settings here: each column is compared with the "
                      "Pref that ran under its conditions (the same settings where both "
                      "record one).")
    lines.append("")
    rows = []
    for dataset, preference, metric, direction in tables.scored_groups():
        row = [dataset, preference, f"{metric_name(metric)} {direction_arrow(direction)}"]
        for label in labels:
            match = [c for c in found if (c.dataset, c.preference, c.label)
                     == (dataset, preference, label)]
            row.append(_cell(match[0], budget) if match else "–")
        rows.append(row)
    lines += markdown_table(["dataset", "preference", "score", *(f"{label} − pref"
                                                                 for label in labels)], rows)
    lines.append("")
    return lines
