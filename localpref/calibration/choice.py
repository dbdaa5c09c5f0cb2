"""The sweep table and the choice rule of a calibration.

Every setting of the sweep (strength k, tau, base lane neutral or opposite, and the per-token
KL guard, ``kl_budget``, which the sweep sets to the fluency budget: see below) answers the same
prompts as Pref (the preference in the prompt) for each calibrated preference. Per setting and
preference, over the prompts both answered (paired, so a prompt's difficulty cancels):

    d_i     = score(setting, prompt i) - score(Pref, prompt i)
    delta   = mean(d)                                   (raw units of the preference's score)
    se      = sd(d) / sqrt(n)                           (its standard error)
    effect  = direction * delta / sd(d)                 (standardized, clipped to +-10; 0 for n < 2)
    fluency = mean(fluency_pref(setting) - fluency_pref(Pref))   (nats per token)

with ``direction`` +1 when higher is better (verbose: words, creative: MTLD, uplifting: VADER)
and -1 for concise (words). A length score (words) says nothing about a prompt where both
answers stopped at the token cap, so such prompts are left out of the pairs (``n_capped``).
The fluency is the mean log-probability of the answer under the *preference* lane: the base
lane penalises exactly what a preference asks for (a concise answer is unlikely under a prompt
that would have written at length), so its figure is reported (``fluency_base``) but not
guarded.

A preference is **moved** past Pref when ``direction * delta > se`` (the mean difference is in
its direction by more than one standard error, on at least two prompts), and goes the **wrong
way** when ``direction * delta < -se``. A mean difference within one standard error of zero
is noise at a calibration's few prompts, and counts as neither: with two prompts, a mean of
+0.5 words that one prompt gives and the other takes back is not a move.

The rule: a setting qualifies when its fluency is within the budget (``fluency >= -budget``,
0.5 nats by default) for every preference and it moves more preferences past Pref than it
sends the wrong way (``moved - wrong >= 1``). Among those, the largest ``moved - wrong`` wins,
then the most moved, then the largest summed standardized effect, then the smaller strength
(then the neutral base lane, then the smaller tau, then the tighter guard, so the choice is
one). No setting qualifies: the uncalibrated default is kept, and the reason says why.

**The guard.** The budget above holds on average over the calibration's prompts, and a
setting can keep it there and still break it on another kind of prompt: the bundled model's
uplifting at k = 4 was 0.16 nats below Pref on the calibration's everyday prompts and 0.60
on TruthfulQA's factual questions, where cheerful words replace a fact the preference lane is
sure of. So every setting of the sweep also carries the per-token KL budget of the methods
(``kl_budget``, docs/steering.md, "Per-token KL budget") at the fluency budget: at each token
the strength is cut back until ``KL(p_steered || p_pref) <= budget``, which leaves the tokens
where the preference lane is unsure free to move and keeps the ones it is sure of. The
calibration then chooses among guarded settings, and the guard is stored with the choice.

**Per preference** (``choose_per_preference``). One setting for every preference couples
them: on the bundled model the setting that moves uplifting most sends creative the wrong way,
and the one that moves concise costs uplifting nothing but moves it less. So each built-in
preference also gets its own setting: among the settings that move *it* past Pref within the
budget (its own fluency), the largest standardized effect (then the smaller strength, the
neutral base lane, the smaller tau, the tighter guard). A preference no setting moves keeps
the uncalibrated default (a calibration changes a preference's setting only on evidence: on
the bundled model verbose, which the 128-token calibration cannot measure, went from beating
Pref under the default to losing to it under the overall choice). A request naming exactly
one built-in preference gets that preference's setting; free text, several preferences,
weights and examples get the overall one.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from localpref.evaluation.paper import PREFERENCE_METRICS

#: The preferences a calibration sweeps, with the score of each and its direction: the
#: evaluation's own (``evaluation.paper.PREFERENCE_METRICS``; verbose is the words of the
#: answer's distinct sentences, so that a loop to the token cap does not count as verbosity).
PREFERENCE_SCORES: dict[str, tuple[str, int]] = {
    name: PREFERENCE_METRICS[name] for name in ("creative", "verbose", "concise", "uplifting")}
#: The scores that are an answer's length (a prompt where both answers hit the cap says
#: nothing about them).
LENGTH_SCORES = ("words", "content_words")
#: Fluency may fall this many nats per token below Pref's (under the preference lane).
FLUENCY_BUDGET = 0.5
#: The standardized effect is clipped to this (a setting with identical differences on every
#: prompt would otherwise have an infinite one).
EFFECT_LIMIT = 10.0


@dataclass(frozen=True)
class Setting:
    """One point of the sweep: the recommended steering at strength k and tau, with the
    neutral or the opposite base lane, and the per-token KL guard (``kl_budget``, None: no
    guard; docs/steering.md, "Calibration, fifth pass")."""

    strength: float
    tau: float
    opposite: bool
    kl_budget: float | None = None

    def settings(self) -> dict[str, Any]:
        """The settings a calibration stores (``record.Calibration.settings``)."""
        return {"contrast": self.strength, "tau": self.tau, "opposite": self.opposite,
                "kl_budget": self.kl_budget}

    @property
    def label(self) -> str:
        lane = "opposite" if self.opposite else "neutral"
        guard = f" kl={self.kl_budget:g}" if self.kl_budget is not None else ""
        return f"k={self.strength:g} tau={self.tau:g} {lane}{guard}"

    @property
    def order(self) -> tuple[float, float, bool, float]:
        """The sweep table's order: strength, tau, base lane, then the guard (none last)."""
        return (self.strength, self.tau, self.opposite,
                math.inf if self.kl_budget is None else self.kl_budget)


@dataclass(frozen=True)
class Choice:
    """The rule's answer: the setting chosen (None: keep the default) and why."""

    setting: Setting | None
    moved: int
    effect: float
    reason: str


@dataclass(frozen=True)
class PreferenceChoice:
    """One preference's own setting (None: the uncalibrated default) and why."""

    setting: Setting | None
    effect: float
    reason: str


def setting_of(row: dict[str, Any]) -> Setting:
    """The setting a sweep row belongs to (a row without ``kl_budget`` is unguarded)."""
    guard = row.get("kl_budget")
    return Setting(float(row["strength"]), float(row["tau"]), bool(row["opposite"]),
                   None if guard is None else float(guard))


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


def _within_budget(row: dict[str, Any], budget: float) -> bool:
    """Whether a setting's row stays within ``budget`` nats of Pref's fluency (under the
    preference lane)."""
    return _finite(row.get("fluency_pref_delta")) and row["fluency_pref_delta"] >= -budget


def _paired(mine: dict[int, float], theirs: dict[int, float],
            leave_out: set[int] = frozenset()) -> list[float]:
    return [mine[i] - theirs[i] for i in sorted(mine) if i in theirs and i not in leave_out
            and _finite(mine[i]) and _finite(theirs[i])]


def _both_capped(mine: dict[str, dict[int, float]],
                 theirs: dict[str, dict[int, float]]) -> set[int]:
    """The prompts where both answers stopped at the token cap (``stop_reason`` "length")."""
    a, b = mine.get("capped", {}), theirs.get("capped", {})
    return {i for i in a if a[i] and b.get(i)}


def summary_rows(results: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """The sweep table from the raw results (one generation each): Pref's row per preference,
    then one row per setting and preference with the paired differences against Pref.

    A raw result has ``preference``, ``prompt`` (its index), ``method`` (``"pref"`` or
    ``"amulet"``), for a setting ``strength`` / ``tau`` / ``opposite``, and ``score``,
    ``fluency_pref``, ``fluency_base``, ``n_tokens`` and ``stop_reason`` (``"length"`` at the
    token cap).
    """
    pref: dict[str, dict[str, dict[int, float]]] = {}
    steered: dict[tuple[Setting, str], dict[str, dict[int, float]]] = {}
    for result in results:
        preference = result["preference"]
        if preference not in PREFERENCE_SCORES:
            continue
        group = (pref.setdefault(preference, {}) if result["method"] == "pref"
                 else steered.setdefault((setting_of(result), preference), {}))
        prompt = int(result["prompt"])
        for name in ("score", "fluency_pref", "fluency_base", "n_tokens"):
            value = result.get(name)
            group.setdefault(name, {})[prompt] = float(value) if _finite(value) else math.nan
        group.setdefault("capped", {})[prompt] = float(result.get("stop_reason") == "length")
    rows: list[dict[str, Any]] = []
    order = list(PREFERENCE_SCORES)
    for preference in sorted(pref, key=order.index):
        metric, direction = PREFERENCE_SCORES[preference]
        values = pref[preference]
        rows.append({
            "method": "pref", "preference": preference, "metric": metric,
            "direction": direction, "n": len(values.get("score", {})),
            "score": _mean(values.get("score", {}).values()),
            "fluency_pref": _mean(values.get("fluency_pref", {}).values()),
            "fluency_base": _mean(values.get("fluency_base", {}).values()),
            "n_tokens": _mean(values.get("n_tokens", {}).values()),
        })
    for (setting, preference), values in sorted(
            steered.items(), key=lambda item: (*item[0][0].order, order.index(item[0][1]))):
        metric, direction = PREFERENCE_SCORES[preference]
        reference = pref.get(preference, {})
        capped = _both_capped(values, reference) if metric in LENGTH_SCORES else set()
        scores = _paired(values.get("score", {}), reference.get("score", {}), capped)
        fluency = _paired(values.get("fluency_pref", {}), reference.get("fluency_pref", {}))
        fluency_base = _paired(values.get("fluency_base", {}), reference.get("fluency_base", {}))
        delta = _mean(scores)
        moved = verdict(scores, direction)
        rows.append({
            "method": "amulet", "strength": setting.strength, "tau": setting.tau,
            "opposite": setting.opposite, "kl_budget": setting.kl_budget,
            "preference": preference, "metric": metric,
            "direction": direction, "n": len(scores),
            "score": _mean(values.get("score", {}).values()), "delta": delta,
            "effect": standardized(scores, direction),
            "fluency_pref_delta": _mean(fluency), "fluency_base_delta": _mean(fluency_base),
            "n_tokens": _mean(values.get("n_tokens", {}).values()),
            "n_capped": len(capped),
            "moved": moved > 0,
            "wrong_way": moved < 0,
        })
    return rows


def _mean(values: Iterable[float]) -> float:
    finite = [v for v in values if _finite(v)]
    return float(np.mean(finite)) if finite else math.nan


def standardized(differences: Sequence[float], direction: int) -> float:
    """``direction * mean / sd`` of paired differences (sample sd), clipped to +-10; 0 for
    fewer than two (no sd to divide by), and for differences that are all zero."""
    if len(differences) < 2:
        return 0.0
    mean = float(np.mean(differences))
    sd = _sd(differences)
    if mean == 0:
        return 0.0
    if sd <= 1e-12:
        return math.copysign(EFFECT_LIMIT, direction * mean)
    return float(np.clip(direction * mean / sd, -EFFECT_LIMIT, EFFECT_LIMIT))


def _sd(differences: Sequence[float]) -> float:
    return float(np.std(differences, ddof=1)) if len(differences) > 1 else 0.0


def verdict(differences: Sequence[float], direction: int) -> int:
    """+1 when the paired differences move the score in ``direction`` by more than one
    standard error and at least two of them move it that way, -1 when they move it the other
    way by as much, 0 otherwise (too few, or within one standard error of zero). One moved
    prompt is never enough: when one difference of n is non-zero, the mean equals the
    standard error exactly, and rounding alone would decide."""
    if len(differences) < 2:
        return 0
    signed = direction * float(np.mean(differences))
    margin = _sd(differences) / math.sqrt(len(differences))
    toward = sum(1 for d in differences if direction * d > 0)
    away = sum(1 for d in differences if direction * d < 0)
    if signed > margin and toward >= 2:
        return 1
    if signed < -margin and away >= 2:
        return -1
    return 0


def choose(rows: Iterable[dict[str, Any]], budget: float = FLUENCY_BUDGET) -> Choice:
    """The setting the rule picks from a sweep table (``summary_rows``; Pref's rows are
    skipped), or ``Choice(None, ...)`` with the reason when none qualifies."""
    groups: dict[Setting, list[dict[str, Any]]] = {}
    for row in rows:
        if row.get("method") == "pref":
            continue
        groups.setdefault(setting_of(row), []).append(row)
    if not groups:
        return Choice(None, 0, 0.0, "the sweep has no steered rows")
    candidates = []
    fluent_any = False
    for setting, members in groups.items():
        fluent = all(_within_budget(r, budget) for r in members)
        fluent_any = fluent_any or fluent
        moved = sum(1 for r in members if r.get("moved"))
        wrong = sum(1 for r in members if r.get("wrong_way"))
        if fluent and moved - wrong >= 1:
            effect = float(sum(r.get("effect", 0.0) for r in members
                               if _finite(r.get("effect"))))
            candidates.append((wrong - moved, -moved, -effect, setting.strength,
                               setting.opposite, setting.tau, setting.order[3], setting, moved,
                               wrong, effect))
    if not candidates:
        why = ("no setting moved more preferences past Pref (by more than a standard error) "
               "than it sent the wrong way within the fluency budget"
               if fluent_any else
               f"no setting stayed within {budget:g} nats of Pref's fluency")
        return Choice(None, 0, 0.0, why)
    best = min(candidates, key=lambda c: c[:7])
    setting, moved, wrong, effect = best[7:]
    total = len(groups[setting])
    against = f", {wrong} the wrong way" if wrong else ", none the wrong way"
    return Choice(setting, moved, effect,
                  f"{setting.label} moves {moved} of {total} preferences past Pref{against}, "
                  f"within {budget:g} nats of its fluency (summed effect {effect:.2f})")


def choose_per_preference(rows: Iterable[dict[str, Any]],
                          budget: float = FLUENCY_BUDGET) -> dict[str, PreferenceChoice]:
    """Each swept preference's own setting (module docstring, "Per preference"): the one that
    moves it past Pref most within the budget, or None (the uncalibrated default) when none
    does."""
    by_preference: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        if row.get("method") != "pref":
            by_preference.setdefault(row["preference"], []).append(row)
    found: dict[str, PreferenceChoice] = {}
    for preference, members in by_preference.items():
        moved = [r for r in members if r.get("moved") and _within_budget(r, budget)]
        if not moved:
            found[preference] = PreferenceChoice(
                None, 0.0, "no setting moved it past Pref within the fluency budget: the "
                "uncalibrated default")
            continue
        best = min(moved, key=lambda r: (-float(r.get("effect") or 0.0), r["strength"],
                                         r["opposite"], r["tau"], setting_of(r).order[3]))
        setting, effect = setting_of(best), float(best.get("effect") or 0.0)
        found[preference] = PreferenceChoice(
            setting, effect,
            f"{setting.label} moves it past Pref by {best['delta']:+.3g} "
            f"(effect {effect:.2f}, fluency {best['fluency_pref_delta']:+.2f} nats)")
    return found
