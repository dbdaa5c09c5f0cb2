"""`localpref eval --methods calibrated` on the bundled model: the column runs what the library
runs for each preference under the model's calibration (the preference's own setting and its
opposite, or the overall setting), records the resolved setting in each row's key, and is one
column of the tables; an uncalibrated model or a sweep of it is one sentence."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from localpref.api import Model
from localpref.calibration.record import write_record
from localpref.calibration.run import default_settings
from localpref.cli import main
from localpref.evaluation import Evaluation, GridConfig, load_dataset, make_scorers
from localpref.evaluation.records import read_rows
from localpref.evaluation.specs import method_specs, preference_specs
from localpref.evaluation.tables import variants_of
from localpref.methods import PREF_ENDS
from localpref.presets import OPPOSITES

TOKENS = 8
PROMPTS = ["How do I keep basil alive?", "Why is the sky blue?"]
CALIBRATED_AT = "2026-12-04T09:00:00+00:00"
OVERALL = {"contrast": 2.0, "tau": 0.1, "end_tokens": PREF_ENDS, "opposite": False}
CONCISE = {"contrast": 4.0, "tau": 0.05, "end_tokens": PREF_ENDS, "opposite": True}


@pytest.fixture
def calibrated_home(model: Model, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A calibration of the bundled model stored by hand: concise has its own setting with the
    opposite, every other preference gets the overall one."""
    monkeypatch.setenv("LOCALPREF_HOME", str(tmp_path / "home"))
    write_record(model.calibration_key, {
        "model": model.name, "path": str(model.path), "key": model.calibration_key,
        "calibrated_at": CALIBRATED_AT, "calibrated": True, "reason": "by hand", "rows": [],
        "chosen": {"method": "amulet", "settings": OVERALL,
                   "per_preference": {"concise": {"settings": CONCISE, "reason": "by hand"}}}})
    return tmp_path / "home"


@pytest.fixture
def prompts_file(tmp_path: Path) -> Path:
    path = tmp_path / "prompts.json"
    path.write_text(json.dumps([{"prompt": text} for text in PROMPTS]))
    return path


def _config(prompts_file: Path, methods: list[str]) -> GridConfig:
    return GridConfig(load_dataset(prompts_file), method_specs(methods),
                      preference_specs(["concise", "uplifting"], "library"), prompts="library",
                      max_tokens=TOKENS, resamples=50)


def test_the_calibrated_column_answers_as_the_library_does_under_the_calibration(
        model: Model, calibrated_home: Path, prompts_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    evaluation = Evaluation(_config(prompts_file, ["pref", "calibrated"]), model, out,
                            make_scorers(["length"]), progress=False)
    evaluation.run()
    rows = [row for row in read_rows(out / "generations.jsonl") if row["method"] == "calibrated"]
    assert len(rows) == len(PROMPTS) * 2
    for row in rows:
        library = model.generate(row["prompt"], preference=row["preference"],
                                 max_tokens=TOKENS)
        assert row["tokens"] == library.tokens, (row["preference"], row["prompt"])
        own = row["preference"] == "concise"
        assert library.stats["calibration"]["per_preference"] is own
        assert library.stats["opposite"] is own
        setting = CONCISE if own else OVERALL
        key = row["key"]
        assert key["settings"]["contrast"] == setting["contrast"]
        assert key["settings"]["tau"] == setting["tau"]
        assert key.get("avoid") == ([OPPOSITES["concise"]] if own else None)
        assert key["calibration"] == CALIBRATED_AT
        assert row["settings"]["contrast"] == setting["contrast"]
    # One column, although the two preferences ran different settings.
    variants = variants_of(read_rows(out / "generations.jsonl"))
    assert len({variants[row["id"]] for row in rows}) == 1
    assert "calibrated" in (out / "summary.md").read_text()
    again = Evaluation(_config(prompts_file, ["pref", "calibrated"]), model, out,
                       make_scorers(["length"]), progress=False)
    again.run()
    assert again.generated == 0  # the resolved keys resume


def test_a_calibration_that_kept_the_default_runs_the_default(
        model: Model, prompts_file: Path, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A calibrated model whose sweep found no setting past Pref answers with the
    uncalibrated default: the column runs that, as ``generate`` does, not a refusal."""
    monkeypatch.setenv("LOCALPREF_HOME", str(tmp_path / "home"))
    write_record(model.calibration_key, {
        "model": model.name, "path": str(model.path), "key": model.calibration_key,
        "calibrated_at": CALIBRATED_AT, "calibrated": False, "reason": "none beat Pref",
        "rows": [],
        "chosen": {"method": "amulet", "settings": default_settings(), "per_preference": {}}})
    assert model.calibration is None and model.calibration_record is not None
    out = tmp_path / "out"
    Evaluation(_config(prompts_file, ["calibrated"]), model, out, make_scorers(["length"]),
               progress=False).run()
    rows = list(read_rows(out / "generations.jsonl"))
    assert len(rows) == len(PROMPTS) * 2
    for row in rows:
        library = model.generate(row["prompt"], preference=row["preference"],
                                 max_tokens=TOKENS)
        assert library.stats["calibration"] is None  # the default, uncalibrated
        assert row["tokens"] == library.tokens, (row["preference"], row["prompt"])
        assert row["key"]["settings"]["contrast"] == 0.5 and "avoid" not in row["key"]
        assert row["key"]["calibration"] == CALIBRATED_AT


def test_an_uncalibrated_model_or_a_sweep_of_the_column_is_one_sentence(
        prompts_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOCALPREF_HOME", str(tmp_path / "empty-home"))
    common = ["eval", "--dataset", str(prompts_file), "--prompts", "library",
              "--preferences", "concise", "--max-tokens", "2", "--no-progress",
              "--out", str(tmp_path / "out"), "--threads", "1"]
    assert main([*common, "--methods", "pref,calibrated"]) == 2
    error = capsys.readouterr().err
    assert "is not calibrated" in error and "localpref calibrate" in error
    # a run refused after it made its folder leaves none behind (an empty one with a lock
    # file in it was left); a folder that was there stays, as it was
    assert "Traceback" not in error and not (tmp_path / "out").exists()
    nested = [*common[:-4], "--out", str(tmp_path / "new" / "deeper" / "out"), "--threads", "1"]
    assert main([*nested, "--methods", "pref,calibrated"]) == 2  # nor the folders above it
    assert "is not calibrated" in capsys.readouterr().err and not (tmp_path / "new").exists()
    (tmp_path / "out").mkdir()
    assert main([*common, "--methods", "pref,calibrated"]) == 2
    assert "is not calibrated" in capsys.readouterr().err
    assert (tmp_path / "out").is_dir()
    assert main([*common, "--methods", "calibrated", "--sweep",
                 "calibrated.strength=1,2"]) == 2
    assert "calibrated setting" in capsys.readouterr().err
