"""The calibration sweep: every setting and Pref answer the calibration prompts, row by row.

One unit is one greedy generation (a prompt, a preference, Pref or one setting), scored with
the preference's automatic score (``evaluation.scorers``: words, MTLD, VADER) and both lanes'
fluency (``score_lanes``). Units run concurrently on the model's lanes (one request per two
lanes) and each finished one is handed to ``on_row`` at once, so an interrupted sweep keeps
what it finished and a rerun skips it (``unit_key``).
"""

from __future__ import annotations

import contextlib
import hashlib
import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from localpref.calibration.choice import (
    FLUENCY_BUDGET,
    LENGTH_SCORES,
    PREFERENCE_SCORES,
    Setting,
)
from localpref.calibration.prompts import CALIBRATION_PROMPTS, QUICK_PROMPTS
from localpref.errors import LocalprefError
from localpref.evaluation.parallel import answers_as_they_finish
from localpref.evaluation.scorers import DiversityScorer, LengthScorer, Scorer, SentimentScorer
from localpref.methods import PREF_ENDS, Amulet
from localpref.request import Request

if TYPE_CHECKING:
    from localpref.api import Model
    from localpref.decoding import Result

#: The strengths (Amulet's effective contrast k) and taus swept by default, and by ``--quick``
#: (docs/steering.md, "Calibration, third pass": the settings chosen on the bundled and the
#: 0.5B model have tau 0.05 at k 1 to 4, or k = 8 at tau 0.2).
STRENGTHS = (0.5, 1.0, 2.0, 4.0, 8.0)
TAUS = (0.05, 0.2)
QUICK_STRENGTHS = (1.0, 2.0, 4.0)
QUICK_TAUS = (0.05,)
#: Answer lengths (tokens): long enough for length and diversity to differ.
MAX_TOKENS = 128
QUICK_MAX_TOKENS = 48
#: A preference that lengthens answers (verbose) is measured at this many times the cap: at
#: the cap every answer is as long as the cap allows and no setting can show it (at 128
#: tokens Base and Pref already stop at the cap on most prompts, docs/steering.md,
#: "Calibration, fourth pass").
LENGTHENING_ROOM = 4


def lengthens(preference: str) -> bool:
    """Whether the preference's score is the answer's length, higher wanted (verbose)."""
    metric, direction = PREFERENCE_SCORES.get(preference, ("", 0))
    return metric in LENGTH_SCORES and direction > 0


@dataclass(frozen=True)
class Plan:
    """What a sweep runs: prompts, preferences, the settings' grid and the answer length."""

    prompts: tuple[str, ...] = CALIBRATION_PROMPTS
    preferences: tuple[str, ...] = tuple(PREFERENCE_SCORES)
    strengths: tuple[float, ...] = STRENGTHS
    taus: tuple[float, ...] = TAUS
    opposites: tuple[bool, ...] = (False, True)
    max_tokens: int = MAX_TOKENS
    #: The cap of a lengthening preference (None: ``LENGTHENING_ROOM`` times ``max_tokens``).
    long_max_tokens: int | None = None
    #: The per-token KL guard every setting carries (None: unguarded, as before the fifth
    #: pass; ``choice``'s module docstring, "The guard").
    kl_budget: float | None = FLUENCY_BUDGET

    @classmethod
    def make(cls, *, quick: bool = False, limit: int | None = None,
             max_tokens: int | None = None, long_max_tokens: int | None = None,
             strengths: Iterable[float] | None = None,
             taus: Iterable[float] | None = None,
             kl_budget: float | None = FLUENCY_BUDGET) -> Plan:
        """The plan for the command's options (``--quick`` sets smaller defaults; the cap of
        a lengthening preference is ``LENGTHENING_ROOM`` times the cap unless given)."""
        prompts = CALIBRATION_PROMPTS[:QUICK_PROMPTS] if quick else CALIBRATION_PROMPTS
        if limit is not None:
            prompts = CALIBRATION_PROMPTS[:limit]
        max_tokens = max_tokens or (QUICK_MAX_TOKENS if quick else MAX_TOKENS)
        return cls(
            prompts=prompts,
            strengths=tuple(strengths) if strengths else (
                QUICK_STRENGTHS if quick else STRENGTHS),
            taus=tuple(taus) if taus else (QUICK_TAUS if quick else TAUS),
            max_tokens=max_tokens,
            long_max_tokens=long_max_tokens,
            kl_budget=kl_budget,
        )

    @property
    def long_cap(self) -> int:
        """The answer cap of a lengthening preference's generations."""
        return self.long_max_tokens or LENGTHENING_ROOM * self.max_tokens

    def tokens_for(self, preference: str) -> int:
        """The answer cap of this preference's generations."""
        return self.long_cap if lengthens(preference) else self.max_tokens

    @property
    def settings(self) -> list[Setting]:
        """Every setting of the grid, strengths first, then tau, then the base lane."""
        return [Setting(k, tau, opposite, self.kl_budget) for k in self.strengths
                for tau in self.taus for opposite in self.opposites]

    def units(self) -> list[Unit]:
        """Every generation of the sweep: per prompt and preference, Pref then each setting."""
        found = []
        for index, prompt in enumerate(self.prompts):
            for preference in self.preferences:
                cap = self.tokens_for(preference)
                found.append(Unit(index, prompt, preference, None, cap))
                found += [Unit(index, prompt, preference, setting, cap)
                          for setting in self.settings]
        return found

    def describe(self) -> dict[str, Any]:
        """The plan as stored beside the choice."""
        return {"prompts": len(self.prompts), "preferences": list(self.preferences),
                "strengths": list(self.strengths), "taus": list(self.taus),
                "opposites": list(self.opposites), "max_tokens": self.max_tokens,
                "long_max_tokens": self.long_cap, "kl_budget": self.kl_budget}


@dataclass(frozen=True)
class Unit:
    """One generation of the sweep (``setting`` None: Pref)."""

    prompt_index: int
    prompt: str
    preference: str
    setting: Setting | None
    max_tokens: int

    @property
    def key(self) -> str:
        """What identifies this generation across runs (resuming matches on it)."""
        digest = hashlib.sha1(self.prompt.encode()).hexdigest()[:10]
        what = "pref" if self.setting is None else (
            f"k={self.setting.strength:g},tau={self.setting.tau:g},"
            f"opposite={int(self.setting.opposite)}")
        if self.setting is not None and self.setting.kl_budget is not None:
            what += f",kl={self.setting.kl_budget:g}"  # an unguarded row keeps its old key
        return f"{self.prompt_index}:{digest}|{self.preference}|{what}|{self.max_tokens}"

    def request(self) -> Request:
        """The request: greedy, both lanes scored; the setting's method is built here, never
        the recommended steering's object, so no stored calibration replaces it."""
        if self.setting is None:
            method: Any = "pref"
            opposite = False
        else:
            method = Amulet(contrast=self.setting.strength, tau=self.setting.tau,
                            kl_budget=self.setting.kl_budget, end_tokens=PREF_ENDS)
            opposite = self.setting.opposite
        return Request.make(self.prompt, preference=self.preference, method=method,
                            max_tokens=self.max_tokens, score_lanes=True, opposite=opposite)


@dataclass
class Scoring:
    """The automatic scores, made once (VADER's lexicon takes a moment to load)."""

    scorers: list[Scorer] = field(default_factory=lambda: [
        LengthScorer(), DiversityScorer(), SentimentScorer()])

    def row(self, unit: Unit, result: Result) -> dict[str, Any]:
        """The raw row of one finished generation."""
        metrics: dict[str, float] = {}
        for scorer in self.scorers:
            metrics.update(scorer.score(result.text, result.tokens))
        metric, _ = PREFERENCE_SCORES[unit.preference]
        stats = result.stats
        row: dict[str, Any] = {
            "unit": unit.key, "prompt": unit.prompt_index, "preference": unit.preference,
            "method": "pref" if unit.setting is None else "amulet",
            "metric": metric, "score": _number(metrics.get(metric)),
            "fluency_pref": _number(stats.get("fluency_pref")),
            "fluency_base": _number(stats.get("fluency_base")),
            "n_tokens": int(stats.get("n_tokens") or 0),
            "stop_reason": stats.get("stop_reason"),
        }
        if unit.setting is not None:
            row.update(strength=unit.setting.strength, tau=unit.setting.tau,
                       opposite=unit.setting.opposite, kl_budget=unit.setting.kl_budget)
        return row


def _number(value: Any) -> float | None:
    """A finite float, or None (JSON has no NaN)."""
    if isinstance(value, (int, float)) and math.isfinite(value):
        return float(value)
    return None


def run_units(model: Model, units: list[Unit], on_row: Callable[[dict[str, Any]], None],
              *, scoring: Scoring | None = None, parallel: int | None = None) -> None:
    """Run ``units`` on ``model``, ``parallel`` requests at once (None: one per two of its
    lanes), handing each finished row to ``on_row`` (in this thread, in the order they
    finish; ``evaluation.parallel.answers_as_they_finish``).

    Ctrl-C (``KeyboardInterrupt``) or a failed unit cancels what is running and is raised
    again; every row handed over before it is kept by the caller.
    """
    scoring = scoring or Scoring()
    unit_of: dict[int, Unit] = {}

    def requests() -> Iterator[Request]:
        for unit in units:
            request = unit.request()
            unit_of[id(request)] = unit
            yield request

    answers = answers_as_they_finish(model, requests(),
                                     parallel or max(1, model.max_lanes // 2))
    with contextlib.closing(answers):
        for request, result in answers:
            if isinstance(result, LocalprefError):
                raise result
            on_row(scoring.row(unit_of.pop(id(request)), result))
