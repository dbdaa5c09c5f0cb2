"""`localpref eval --sweep`: strengths in the rows, resume, shards, the Pareto plots and the
best setting within the fluency budget. The bundled model decodes every answer, at tiny sizes."""

from __future__ import annotations

import dataclasses
import json
import math
import re
from pathlib import Path
from typing import ClassVar

import pytest

from localpref.api import Model
from localpref.cli import main
from localpref.errors import SettingsError
from localpref.evaluation import (
    Evaluation,
    GridConfig,
    load_dataset,
    make_scorers,
    method_specs,
    preference_specs,
)
from localpref.evaluation.records import read_rows
from localpref.evaluation.report import SPEED_HEADING
from localpref.evaluation.specs import sweepable_method_names
from localpref.evaluation.sweep import expand, parse_sweep
from localpref.evaluation.tables import MIN_PROMPTS_FOR_VERDICT
from localpref.methods import METHODS, PAD, Amulet, Contrastive, Pref

PROMPTS = [
    {"index": 0, "question": "How can you ensure proper nutrition for a housecat? "},
    {"index": 1, "question": "What are the key elements of a captivating novel? "},
]
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture()
def dataset_file(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.json"
    path.write_text(json.dumps(PROMPTS), encoding="utf-8")
    return path


def sweep_cli(dataset: Path, out: Path, *extra: str) -> list[str]:
    return ["eval", "--dataset", str(dataset), "--methods", "base,pref,amulet",
            "--preferences", "concise", "--max-tokens", "8", "--ctx", "512",
            "--bootstrap", "100", "--threads", "1", "--out", str(out), "--no-progress",
            "--sweep", "strength=0.5,3", *extra]


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def sweep_part(summary: Path) -> str:
    text = summary.read_text(encoding="utf-8")
    return text[text.index("## Sweep"):text.index("## All scores")]


# -- parsing and expanding ----------------------------------------------------------------------


def test_sweep_values_are_parsed_and_expand_only_the_two_lane_methods() -> None:
    sweep = parse_sweep(" Strength = 0.5, 1,2,1 ")
    assert (sweep.parameter, sweep.values, sweep.method) == ("strength", (0.5, 1.0, 2.0), None)
    specs = expand(method_specs(["base", "pref", "amulet", "pad"]),
                   [sweep, parse_sweep("pad.strength=4")])
    assert [(s.name, s.strength) for s in specs] == [
        ("base", None), ("pref", None), ("amulet", 0.5), ("amulet", 1.0), ("amulet", 2.0),
        ("pad", 4.0)]
    assert specs[2].decoder == Amulet(contrast=0.5) and specs[-1].decoder == PAD(weight=4.0)
    assert specs[2].key_settings() == {}  # the swept value is a key entry of its own
    (tau,) = expand(method_specs(["amulet"]), [parse_sweep("tau=0.1")])
    assert tau.decoder == Amulet(tau=0.1) and tau.sweep.parameter == "tau"


@pytest.mark.parametrize(("text", "message"), [
    ("foo=1", "Unknown sweep parameter 'foo'"),
    ("strength=abc", "needs numbers separated by commas"),
    ("strength", "must look like strength=0.5,1,2"),
    ("strength=inf", "finite numbers"),
])
def test_bad_sweeps_are_one_sentence(text: str, message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        parse_sweep(text)


def test_sweeps_that_cannot_apply_are_refused() -> None:
    with pytest.raises(SettingsError, match="needs a method with a strength"):
        expand(method_specs(["base", "pref"]), [parse_sweep("strength=1")])
    with pytest.raises(SettingsError, match="not among the methods"):
        expand(method_specs(["amulet"]), [parse_sweep("pad.strength=1")])
    with pytest.raises(SettingsError) as negative:  # (it named the contrast alone)
        expand(method_specs(["amulet"]), [parse_sweep("strength=-1")])
    assert str(negative.value) == ("--sweep strength=-1 does not fit amulet, whose strength is "
                                   "its contrast k: the contrast must be from 0 to 1,000,000 "
                                   "(got -1.0).")


@dataclasses.dataclass(frozen=True)
class Louder(Contrastive):
    """A method the library does not have: the sweep must take it up from ``METHODS`` alone."""

    name: ClassVar[str] = "louder"


def test_a_new_two_lane_method_is_swept_and_named_without_touching_the_sweep(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(METHODS, "louder", Louder)
    assert sweepable_method_names() == ["contrastive", "amulet", "pad", "louder"]
    specs = expand(method_specs(["base", "louder"]), [parse_sweep("strength=0.5,3")])
    assert [(s.name, s.strength) for s in specs] == [
        ("base", None), ("louder", 0.5), ("louder", 3.0)]
    assert specs[1].decoder == Louder(ratio=0.5) and specs[1].sweep.unswept == Louder()
    with pytest.raises(SettingsError, match="contrastive, amulet, pad or louder"):
        expand(method_specs(["base"]), [parse_sweep("strength=1")])


@pytest.mark.parametrize("sweep", ["foo=1", "strength=abc", "pref.strength=1"])
def test_bad_sweep_on_the_command_line_exits_2_with_one_sentence(
    capsys: pytest.CaptureFixture[str], dataset_file: Path, tmp_path: Path, sweep: str
) -> None:
    argv = sweep_cli(dataset_file, tmp_path / "out")
    argv[argv.index("strength=0.5,3")] = sweep
    code, _, stderr = run_cli(capsys, *argv)
    assert code == 2 and stderr.startswith("localpref: ") and stderr.count("\n") == 1
    assert not (tmp_path / "out").exists()


# -- a tiny sweep on the bundled model ------------------------------------------------------------


def _recomputed_best(out: Path, budget: float) -> dict[str, float | None]:
    """Per swept method, the strength with the fewest words among those whose mean fluency
    is at most ``budget`` below Pref's: computed from the rows, not through the report."""
    rows = [r for r in read_rows(out / "generations.jsonl") if not r.get("error")]
    words = {r["id"]: r["metrics"]["words"] for r in read_rows(out / "scores.jsonl")}
    groups: dict[tuple[str, float | None], list[dict]] = {}
    for row in rows:
        groups.setdefault((row["method"], row.get("strength")), []).append(row)

    def mean(values: list[float]) -> float:
        return sum(values) / len(values)

    fluency = {key: mean([r["stats"]["fluency_base"] for r in group])
               for key, group in groups.items()}
    length = {key: mean([words[r["id"]] for r in group]) for key, group in groups.items()}
    floor = fluency[("pref", None)] - budget
    best: dict[str, float | None] = {}
    for method in ("amulet",):
        fitting = [k for k in groups if k[0] == method and fluency[k] >= floor]
        best[method] = min(fitting, key=lambda k: length[k])[1] if fitting else None
    return best


def test_sweep_rows_carry_strengths_and_both_fluencies_and_resume(model: Model,
                                                                  dataset_file: Path,
                                                                  tmp_path: Path) -> None:
    methods = expand(method_specs(["base", "pref", "amulet", "pad"]),
                     [parse_sweep("strength=0.5,3")])
    config = GridConfig(load_dataset(dataset_file).limited(1), methods,
                        preference_specs(["concise", "uplifting"], "library"),
                        prompts="library", max_tokens=6, resamples=100, score_lanes=True)
    out = tmp_path / "sweep"
    first = Evaluation(config, model, out, make_scorers(["length", "sentiment"]),
                       progress=False)
    summary = first.run()
    rows = list(read_rows(out / "generations.jsonl"))
    # per preference: pref + 2 amulet + 2 pad; base once, reused for the second preference
    assert len(rows) == 12 and first.generated == 11
    swept = [r for r in rows if r["method"] in ("amulet", "pad")]
    assert sorted({(r["method"], r["strength"]) for r in swept}) == [
        ("amulet", 0.5), ("amulet", 3.0), ("pad", 0.5), ("pad", 3.0)]
    for row in swept:
        assert row["key"]["sweep"] == {"strength": row["strength"]}
        assert row["sweep"] == {"parameter": "strength", "value": row["strength"]}
    assert len({r["id"] for r in swept}) == len(swept)
    for row in rows:
        assert row["key"]["score_lanes"] is True
        assert math.isfinite(row["stats"]["fluency_base"]), row["method"]
        assert math.isfinite(row["stats"]["fluency_pref"]), row["method"]
    pref = next(r for r in rows if r["method"] == "pref")
    assert pref["tokens"] == model.generate(PROMPTS[0]["question"],
                                            preference=pref["preference_text"],
                                            method=Pref(), max_tokens=6, seed=0).tokens
    for name in ("pareto-concise.png", "pareto-uplifting.png"):
        assert (out / name).read_bytes()[:8] == PNG_SIGNATURE, name
    text = summary.read_text(encoding="utf-8")
    assert "## Sweep" in text and "| amulet | k=0.5 |" in text and "| pad | w=3 |" in text
    again = Evaluation(config, model, out, make_scorers(["length", "sentiment"]),
                       progress=False)
    again.run()
    assert again.generated == 0


def test_summary_best_within_budget_matches_the_rows_and_shards_merge_the_same(
    capsys: pytest.CaptureFixture[str], dataset_file: Path, tmp_path: Path
) -> None:
    out = tmp_path / "one"
    budget = 0.3
    code, _, stderr = run_cli(capsys, *sweep_cli(dataset_file, out, "--fluency-budget",
                                                 str(budget)))
    assert code == 0, stderr
    best = _recomputed_best(out, budget)["amulet"]
    section = sweep_part(out / "summary.md")
    rows = [line for line in section.splitlines() if line.startswith("| amulet |")]
    chosen = rows[-1]  # the "best within budget" table comes after the table of points
    verdict = next(line for line in section.splitlines() if line.startswith("**Beats Pref"))
    if best is None:
        assert "none within budget" in chosen and ": no**" in verdict
    else:
        assert chosen.startswith(f"| amulet | k={best:g} |")
        # "yes" only where the paired interval leaves zero out (the Against Pref rule):
        # fewer words is better for concise
        delta, low, high = map(float, re.search(
            r"\| (-?[\d.]+) \[(-?[\d.]+), (-?[\d.]+)\] \|$", chosen).groups())
        enough = len(PROMPTS) >= MIN_PROMPTS_FOR_VERDICT  # (2 here: never "yes")
        expected = ("yes" if delta < 0 and high < 0 and enough else "not shown" if delta < 0
                    else "no")
        assert f"nats: {expected}**" in verdict, (chosen, verdict)
        if expected == "not shown" and high < 0:
            assert " on 2 prompts better on average, too few to tell (at least 6)" in verdict
    assert f"within {budget:g} nats" in section
    assert (out / "pareto-concise.png").read_bytes()[:8] == PNG_SIGNATURE

    halves = [tmp_path / "half1", tmp_path / "half2"]
    for index, half in enumerate(halves, start=1):
        code, _, stderr = run_cli(capsys, *sweep_cli(dataset_file, half, "--shard",
                                                     f"{index}/2"))
        assert code == 0, stderr
    merged = tmp_path / "merged"
    code, _, stderr = run_cli(capsys, "eval", "merge", *map(str, halves), "--out", str(merged),
                              "--bootstrap", "100", "--fluency-budget", str(budget))
    assert code == 0, stderr
    one = (out / "summary.md").read_text(encoding="utf-8").split(SPEED_HEADING)[0]
    assert (merged / "summary.md").read_text(encoding="utf-8").split(SPEED_HEADING)[0] == one


def test_a_fixed_strength_applies_to_the_methods_that_have_one() -> None:
    from localpref.evaluation.specs import method_specs

    specs = {spec.name: spec for spec in method_specs(["base", "amulet", "pad"], strength=0.5,
                                                      tau=0.1)}
    assert specs["amulet"].decoder.effective_contrast == pytest.approx(0.5)
    assert specs["pad"].decoder.weight == 0.5 and specs["pad"].decoder.tau == 0.1
    assert specs["amulet"].key_settings()["contrast"] == 0.5  # rows tell the setting apart
    assert specs["base"].strength is None
