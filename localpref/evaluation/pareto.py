"""The sweep's trade-off: how far each setting moves the preference score, at what fluency.

For each preference with an automatic score (``paper.PREFERENCE_METRICS``) every variant of
the grid is a point: x = its mean fluency (mean log-probability of its tokens under the base
lane, nats per token; higher is more fluent), y = its mean preference score. A setting is
*within the fluency budget* when its fluency is at most ``budget`` nats below Pref's. Per
method, the best setting is the one within budget with the best score in the preference's
direction; it *beats Pref* when that score is better than Pref's.

Everything here is a function of the rows (through ``tables.Tables``), so a merged run gives
the same section and plots as one run.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path

from localpref.evaluation.markdown import (
    direction_arrow,
    format_value,
    markdown_table,
    metric_name,
)
from localpref.evaluation.records import save_chart
from localpref.evaluation.tables import (
    MIN_PROMPTS_FOR_VERDICT,
    Cell,
    Tables,
    bootstrap_interval,
    paired_differences,
)
from localpref.methods import METHODS, ContrastFamily

FLUENCY = "fluency_base"


def strength_symbol(method: str) -> str:
    """How a method's strength is written in tables and plots (``k`` for Amulet: its class's
    ``strength_symbol``); ``strength`` for a method the library does not know."""
    method_class = METHODS.get(method)
    if method_class is None or not issubclass(method_class, ContrastFamily):
        return "strength"
    return method_class.strength_symbol


@dataclass(frozen=True)
class Point:
    """One variant of the grid for one preference: mean score, fluency and words."""

    label: str
    method: str
    parameter: str | None  # the swept parameter, None for a variant outside the sweep
    value: float | None
    score: float
    fluency: float
    words: float

    @property
    def setting(self) -> str:
        """``k=1``, ``w=2``, ``tau=0.1``; ``–`` outside the sweep."""
        if self.parameter is None or self.value is None:
            return "–"
        name = strength_symbol(self.method) if self.parameter == "strength" else self.parameter
        return f"{name}={self.value:g}"


@dataclass(frozen=True)
class Tradeoff:
    """The points of one (dataset, preference) and the choice within the budget."""

    dataset: str
    preference: str
    metric: str
    direction: int  # +1: higher is better; -1: lower is better
    points: list[Point]
    pref: Point | None
    base: Point | None
    budget: float
    best: dict[str, Point | None]  # method -> best point within budget (None: none fits)

    def within(self, point: Point) -> bool:
        """Whether a point's fluency is at most ``budget`` nats below Pref's."""
        if self.pref is None or not math.isfinite(self.pref.fluency):
            return False
        return math.isfinite(point.fluency) and point.fluency >= self.pref.fluency - self.budget

    def beats_pref(self, point: Point) -> bool:
        """Whether a point's mean score is better than Pref's in the preference's direction."""
        return (self.pref is not None and math.isfinite(point.score)
                and math.isfinite(self.pref.score)
                and self.direction * (point.score - self.pref.score) > 0)

    @property
    def winners(self) -> list[Point]:
        """The methods' best settings that beat Pref within the budget."""
        return [p for p in self.best.values() if p is not None and self.beats_pref(p)]


def _mean(tables: Tables, key: tuple[str, str, str, str]) -> float:
    cell = tables.cells.get(key)
    return cell.mean() if cell is not None else math.nan


def tradeoffs(tables: Tables, budget: float) -> list[Tradeoff]:
    """The trade-off of every preference that has an automatic score, in table order."""
    found = []
    for dataset, preference, metric, direction in tables.scored_groups():
        points = []
        for variant in tables.variants:
            key = (dataset, preference, variant.label)
            if (*key, metric) not in tables.cells:
                continue
            parameter, value = tables.sweeps.get(variant.label, (None, None))
            points.append(Point(variant.label, variant.method, parameter, value,
                                _mean(tables, (*key, metric)), _mean(tables, (*key, FLUENCY)),
                                _mean(tables, (*key, "words"))))
        pref = next((p for p in points if p.method == "pref"), None)
        base = next((p for p in points if p.method == "base"), None)
        tradeoff = Tradeoff(dataset, preference, metric, direction, points, pref, base, budget,
                            {})
        for method in dict.fromkeys(p.method for p in points if p.parameter is not None):
            fitting = [p for p in points if p.method == method and p.parameter is not None
                       and tradeoff.within(p) and math.isfinite(p.score)]
            tradeoff.best[method] = max(fitting, key=lambda p: direction * p.score,
                                        default=None)
        found.append(tradeoff)
    return found


def _paired_interval(tables: Tables, tradeoff: Tradeoff, point: Point,
                     resamples: int) -> tuple[float, float, int]:
    """95% bootstrap interval of (point - Pref) over the prompts both have, and how many."""
    if tradeoff.pref is None:
        return math.nan, math.nan, 0
    group = (tradeoff.dataset, tradeoff.preference)
    mine = tables.cells.get((*group, point.label, tradeoff.metric)) or Cell()
    theirs = tables.cells.get((*group, tradeoff.pref.label, tradeoff.metric)) or Cell()
    differences = paired_differences(mine, theirs)
    return (*bootstrap_interval(differences, resamples=resamples), len(differences))


def render_sweep_section(tables: Tables, budget: float, *, resamples: int = 2000) -> list[str]:
    """The summary's "Sweep" section: every point, then the best setting per method."""
    lines = ["## Sweep: preference score against fluency", "",
             "Fluency: mean log-probability of the answer's tokens under the base lane "
             "(nats/token, higher is more fluent). A setting is within the fluency budget when "
             f"its fluency is at most {budget:g} nats below Pref's. Best: the setting within "
             "budget with the best mean score; Δ: its mean minus Pref's [95% paired bootstrap "
             "interval over prompts]; it beats Pref when that interval leaves out zero. Plots: "
             "`pareto-*.png`.", ""]
    for tradeoff in tradeoffs(tables, budget):
        name = metric_name(tradeoff.metric)
        arrow = direction_arrow(tradeoff.direction)
        lines += [f"### {tradeoff.preference} ({name} {arrow})", ""]
        extra_words = tradeoff.metric != "words"
        header = ["method", "setting", f"{name} {arrow}", "fluency", *(
            ["words"] if extra_words else []), "within budget"]
        rows = []
        for point in tradeoff.points:
            within = "–" if point.method == "pref" else ("yes" if tradeoff.within(point)
                                                          else "no")
            rows.append([point.method, point.setting, format_value(tradeoff.metric, point.score),
                         format_value(FLUENCY, point.fluency),
                         *([format_value("words", point.words)] if extra_words else []), within])
        lines += markdown_table(header, rows)
        lines.append("")
        if tradeoff.pref is None or not math.isfinite(tradeoff.pref.fluency):
            lines += ["No Pref rows with a fluency here: the budget is measured from Pref, so "
                      "no setting is chosen.", ""]
            continue
        rows = []
        for method, point in tradeoff.best.items():
            if point is None:
                rows.append([method, "none within budget", "–", "–", "–"])
                continue
            low, high, _ = _paired_interval(tables, tradeoff, point, resamples)
            delta = point.score - tradeoff.pref.score
            metric = tradeoff.metric
            rows.append([method, point.setting, format_value(metric, point.score),
                         format_value(FLUENCY, point.fluency),
                         f"{format_value(metric, delta)} [{format_value(metric, low)}, "
                         f"{format_value(metric, high)}]"])
        lines += markdown_table(["method", "best within budget", f"{name} {arrow}", "fluency",
                                 "Δ vs Pref"], rows)
        lines.append("")
        lines += [_verdict_line(tables, tradeoff, resamples), ""]
    return lines


def _verdict_line(tables: Tables, tradeoff: Tradeoff, resamples: int) -> str:
    """Whether a setting within the budget beats Pref: "yes" only where its paired interval
    leaves out zero (the rule of the "Against Pref" section), "not shown" where it is better
    on average only."""
    assert tradeoff.pref is not None
    pref_text = (f"Pref: {format_value(tradeoff.metric, tradeoff.pref.score)} at fluency "
                 f"{format_value(FLUENCY, tradeoff.pref.fluency)}")
    shown, unclear, few = [], [], []
    for point in tradeoff.winners:
        low, high, n_prompts = _paired_interval(tables, tradeoff, point, resamples)
        clear = low > 0 if tradeoff.direction > 0 else high < 0  # False for a NaN interval
        if n_prompts < MIN_PROMPTS_FOR_VERDICT:
            few.append((point, n_prompts))
        else:
            (shown if clear else unclear).append(point)

    def named(points: list[Point]) -> str:
        return ", ".join(f"{p.method} {p.setting} ({format_value(tradeoff.metric, p.score)})"
                         for p in points)

    budget = f"{tradeoff.budget:g}"
    if shown:
        return f"**Beats Pref within {budget} nats: yes**: {named(shown)}; {pref_text}."
    if not (unclear or few):
        return f"**Beats Pref within {budget} nats: no**; {pref_text}."
    reasons = []
    if unclear:
        reasons.append(f"{named(unclear)} better on average, but "
                       f"{'its interval' if len(unclear) == 1 else 'each interval'} over "
                       "prompts holds no difference")
    if few:
        counts = ", ".join(f"{p.method} {p.setting} ({format_value(tradeoff.metric, p.score)}) "
                           f"on {n}" for p, n in few)
        reasons.append(f"{counts} prompts better on average, too few to tell (at least "
                       f"{MIN_PROMPTS_FOR_VERDICT})")
    return f"**Beats Pref within {budget} nats: not shown**: {'; '.join(reasons)}; {pref_text}."


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:40] or "preference"


def pareto_path(out_dir: Path, tradeoff: Tradeoff, several_datasets: bool) -> Path:
    """``pareto-<preference>.png`` (the dataset in front when there are several)."""
    prefix = f"{_slug(tradeoff.dataset)}-" if several_datasets else ""
    return out_dir / f"pareto-{prefix}{_slug(tradeoff.preference)}.png"


def render_pareto_charts(tables: Tables, out_dir: Path, budget: float) -> list[Path]:
    """One PNG per preference: score against fluency, a curve per swept method through its
    settings (each point labelled), Base and Pref marked, the budget shaded."""
    from matplotlib.figure import Figure

    found = tradeoffs(tables, budget)
    several = len({t.dataset for t in found}) > 1
    colours = {"contrastive": "tab:orange", "amulet": "tab:blue", "pad": "tab:green"}
    # Hollow diamonds for Contrastive: greedy, it equals Amulet at k = ratio, so its points
    # sit on Amulet's curve and must stay visible there.
    markers = {"contrastive": ("D", "none", 9), "amulet": ("o", None, 6), "pad": ("^", None, 6)}
    written = []
    for tradeoff in found:
        figure = Figure(figsize=(6.4, 4.6), layout="constrained")
        axis = figure.subplots()
        swept = [p for p in tradeoff.points if p.parameter is not None]
        for method in dict.fromkeys(p.method for p in swept):
            curve = sorted((p for p in swept if p.method == method
                            and math.isfinite(p.fluency) and math.isfinite(p.score)),
                           key=lambda p: p.value or 0.0)
            if not curve:
                continue
            xs, ys = [p.fluency for p in curve], [p.score for p in curve]
            name = strength_symbol(method) if curve[0].parameter == "strength" \
                else curve[0].parameter
            marker, face, size = markers.get(method, ("o", None, 6))
            axis.plot(xs, ys, marker=marker, markerfacecolor=face, markersize=size,
                      color=colours.get(method), label=f"{method} ({name})")
            for point in curve:
                axis.annotate(f"{point.value:g}", (point.fluency, point.score),
                              textcoords="offset points", xytext=(4, 4), fontsize=7,
                              color=colours.get(method, "black"))
        for point, marker, colour in ((tradeoff.base, "s", "black"),
                                      (tradeoff.pref, "*", "tab:red")):
            if point is not None and math.isfinite(point.fluency) and math.isfinite(point.score):
                axis.scatter([point.fluency], [point.score], marker=marker, s=140 if marker ==
                             "*" else 70, color=colour, zorder=5, label=point.method)
        if tradeoff.pref is not None and math.isfinite(tradeoff.pref.fluency):
            edge = tradeoff.pref.fluency - budget
            axis.axvline(edge, color="gray", linestyle="--", linewidth=1)
            low = min([edge, *(p.fluency for p in tradeoff.points if math.isfinite(p.fluency))])
            axis.axvspan(low - 0.1 * max(budget, 0.1), edge, color="gray", alpha=0.12,
                         label=f"more than {budget:g} nats below Pref")
        name = metric_name(tradeoff.metric)
        axis.set_xlabel("fluency: mean log-prob under the base lane (nats/token) → more fluent")
        axis.set_ylabel(f"{name} ({'higher' if tradeoff.direction > 0 else 'lower'} = more "
                        f"{tradeoff.preference})")
        axis.set_title(f"{tradeoff.preference}: preference score against fluency", fontsize=10)
        axis.grid(alpha=0.3)
        axis.legend(fontsize=7, loc="best")
        path = pareto_path(out_dir, tradeoff, several)
        save_chart(figure, path, dpi=100)
        written.append(path)
    return written


__all__ = ["Point", "Tradeoff", "render_pareto_charts", "render_sweep_section", "tradeoffs"]
