"""Evaluation: the papers' prompt sets, scorers, the method x preference grid, tables, plots.

    from localpref.evaluation import (GridConfig, Evaluation, load_dataset, load_model,
                                      method_specs, preference_specs, make_scorers)
    model = load_model(None, prompts="paper")
    config = GridConfig(load_dataset("prompts.json").limited(50),
                        method_specs(["base", "amulet"]), preference_specs(["concise"]))
    Evaluation(config, model, "eval-out", make_scorers(["length"])).run()

The command line is ``localpref eval`` (``localpref/commands/evaluate.py``); docs/evaluation.md
explains the choices.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from localpref.evaluation.beam import BeamSearch, BeamSettings
from localpref.evaluation.datasets import Dataset, DatasetError, PromptRow, load_dataset
from localpref.evaluation.grid import Evaluation, GridConfig, LazyJudge
from localpref.evaluation.judge import PairwiseJudge, Verdict
from localpref.evaluation.merge import merge_outputs
from localpref.evaluation.report import write_report
from localpref.evaluation.scorers import (
    DiversityScorer,
    LengthScorer,
    Scorer,
    SentimentScorer,
    distinct_n,
    make_scorers,
    mtld,
    scorer_names,
)
from localpref.evaluation.specs import MethodSpec, PreferenceSpec, method_specs, preference_specs
from localpref.evaluation.tables import bootstrap_interval


def load_model(spec: str | Path | None = None, *, prompts: str = "paper", **options: Any):  # noqa: ANN201
    """A :class:`localpref.Model` loaded with the system prompt of ``prompts``
    (``"paper"``: the Amulet paper's; ``"library"``: localpref's neutral one)."""
    from localpref.api import Model
    from localpref.evaluation.paper import AMULET_SYSTEM_PROMPT
    from localpref.models import resolve_model
    from localpref.presets import DEFAULT_SYSTEM_PROMPT

    system_prompt = AMULET_SYSTEM_PROMPT if prompts == "paper" else DEFAULT_SYSTEM_PROMPT
    filename = options.pop("filename", None)
    path = resolve_model(None if spec is None else str(spec), filename=filename)
    return Model(path, system_prompt=system_prompt, **options)


__all__ = [
    "BeamSearch",
    "BeamSettings",
    "Dataset",
    "DatasetError",
    "DiversityScorer",
    "Evaluation",
    "GridConfig",
    "LazyJudge",
    "LengthScorer",
    "MethodSpec",
    "PairwiseJudge",
    "PreferenceSpec",
    "PromptRow",
    "Scorer",
    "SentimentScorer",
    "Verdict",
    "bootstrap_interval",
    "distinct_n",
    "load_dataset",
    "load_model",
    "make_scorers",
    "merge_outputs",
    "method_specs",
    "mtld",
    "preference_specs",
    "scorer_names",
    "write_report",
]
