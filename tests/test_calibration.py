"""A calibration's life cycle on the bundled model (issue 20): a tiny sweep is stored with its
table, resumes, and is used wherever the recommended steering is (API, CLI, server, app), never
for a method named explicitly nor for another model file; ``calibrate --reset`` clears it."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from process_helpers import localpref_process, wait_for_lines
from server_helpers import MODEL_ID, running_server, sdk_client

from localpref import Amulet
from localpref.api import Model
from localpref.calibration.choice import choose
from localpref.calibration.prompts import CALIBRATION_PROMPTS
from localpref.calibration.record import (
    CalibrationError,
    CalibrationLookup,
    lock_path,
    model_key,
    read_record,
    record_path,
    rows_path,
    write_record,
)
from localpref.calibration.run import calibrate, stored_rows
from localpref.calibration.sweep import Plan, run_units
from localpref.cli import main
from localpref.commands.calibrate import render
from localpref.methods import PREF_ENDS, is_recommended, recommended_method
from localpref.presets import OPPOSITES
from localpref.synthetic import SyntheticShape, write_synthetic_llama

PROMPT = "How do I keep basil alive?"
TOKENS = 12
#: The setting the hand-written calibration records (far from the default k = 0.5, tau 0.2).
CALIBRATED = {"contrast": 2.0, "tau": 0.1, "kl_budget": None, "end_tokens": PREF_ENDS,
              "opposite": False}


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("LOCALPREF_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def calibrated(model: Model, per_preference: dict | None = None, **settings: object) -> dict:
    """Store a calibration for the model's file by hand (the choice rule is tested apart);
    ``per_preference`` maps a built-in preference to its own settings."""
    own = {name: {"settings": {**CALIBRATED, **mine}, "reason": "by hand"}
           for name, mine in (per_preference or {}).items()}
    record = {"model": model.name, "path": str(model.path), "key": model.calibration_key,
              "calibrated_at": "2026-12-03T11:00:00+00:00", "calibrated": True,
              "chosen": {"method": "amulet", "settings": {**CALIBRATED, **settings},
                         "per_preference": own},
              "reason": "by hand", "rows": []}
    write_record(model.calibration_key, record)
    return record


def test_a_tiny_sweep_is_stored_with_its_table_and_resumes(model: Model, home: Path) -> None:
    small = Plan(prompts=CALIBRATION_PROMPTS[:1], strengths=(0.5, 2.0), taus=(0.2,),
                 max_tokens=16)
    first = calibrate(model, small, progress=False)
    key = model.calibration_key
    assert len(list(stored_rows(key))) == len(small.units()) == 4 * (2 * 2 + 1)
    stored = read_record(key)
    assert stored is not None and stored["rows"] == json.loads(json.dumps(first["rows"]))
    steered = [row for row in first["rows"] if row["method"] == "amulet"]
    assert len(steered) == 4 * 2 * 2 and {row["preference"] for row in steered} == {
        "creative", "verbose", "concise", "uplifting"}
    # every setting carries the per-token guard at the fluency budget, and says so
    assert {row["kl_budget"] for row in steered} == {0.5} == {small.kl_budget}
    assert all(",kl=0.5|" in row["unit"] for row in stored_rows(key) if row["method"] != "pref")
    # a length score leaves out a prompt where both answers hit the cap (n_capped)
    assert all(row["n"] + row["n_capped"] == 1 and row["fluency_pref_delta"] is not None
               for row in steered)
    choice = choose(first["rows"])  # the record is the rule applied to its own table
    assert first["calibrated"] is (choice.setting is not None)
    if choice.setting is not None:
        assert first["chosen"]["settings"]["contrast"] == choice.setting.strength
    else:
        assert first["chosen"]["settings"]["contrast"] == recommended_method().contrast
    assert first["chosen"]["method"] == "amulet" and first["calibrated_at"]
    # one prompt moves nothing past Pref: every preference keeps the uncalibrated default
    own = first["chosen"]["per_preference"]
    assert set(own) == {"creative", "verbose", "concise", "uplifting"}
    assert all(mine["settings"] == {**CALIBRATED, "contrast": 0.5, "tau": 0.2}
               and "uncalibrated default" in mine["reason"] for mine in own.values())
    # the table's columns line up whatever the metric's name (verbose's content_words)
    table = render(first).splitlines()
    header = next(line for line in table if line.startswith("setting"))
    end_of_score = header.index("d score") + len("d score")
    rows = [line for line in table[table.index(header) + 2:] if line.strip()][:len(steered)]
    assert any("content_words" in line for line in rows)
    assert all(line[end_of_score - 1] != " " and line[end_of_score] == " " for line in rows)
    # each row says over how many of the prompts its difference is (both answers capped, or
    # a score with no value: left out, and said, "0/1", not a bare "0")
    end_of_pairs = header.index("pairs") + len("pairs")
    for line, row in zip(rows, steered, strict=True):
        pairs = line[:end_of_pairs].split()[-1]
        assert pairs == ("1" if row["n"] == 1 else "0/1")
    shown = render({**first, "rows": [{**row, "n": 0, "n_capped": 0} for row in steered]})
    assert all(line[:end_of_pairs].split()[-1] == "0/1"
               for line in shown.splitlines()[table.index(header) + 2:][:len(steered)])
    # Resumable: the tiny sweep (2 prompts) reuses the first prompt's rows.
    tiny = Plan(prompts=CALIBRATION_PROMPTS[:2], strengths=(0.5, 2.0), taus=(0.2,),
                 max_tokens=16)
    second = calibrate(model, tiny, progress=False)
    rows = list(stored_rows(key))
    assert len(rows) == len(tiny.units()) == 40
    assert len({row["unit"] for row in rows}) == 40  # nothing generated twice
    assert all(row["n"] + row["n_capped"] == 2
               for row in second["rows"] if row["method"] == "amulet")


def test_rows_scored_with_an_older_metric_are_generated_again(model: Model, home: Path) -> None:
    """Verbose was scored by its words before its distinct sentences' (``content_words``): a
    stored verbose row with the old metric is not reused, every other row is."""
    plan = Plan(prompts=CALIBRATION_PROMPTS[:1], preferences=("verbose", "concise"),
                strengths=(1.0,), taus=(0.2,), opposites=(False,), max_tokens=8)
    calibrate(model, plan, progress=False)
    path = rows_path(model.calibration_key)
    first = [json.loads(line) for line in path.read_text().splitlines()]
    assert {row["metric"] for row in first if row["preference"] == "verbose"} == {
        "content_words"}
    path.write_text("".join(json.dumps({**row, "metric": "words"} if row["preference"] ==
                                       "verbose" else row) + "\n" for row in first))
    calibrate(model, plan, progress=False)
    again = [json.loads(line) for line in path.read_text().splitlines()]
    added = again[len(first):]
    assert len(first) == 4 and sorted(row["preference"] for row in added) == [
        "verbose", "verbose"]  # Pref's and the setting's verbose rows, nothing of concise
    assert [row["score"] for row in added] == [
        row["score"] for row in first if row["preference"] == "verbose"]  # greedy: the same


def test_the_calibration_is_used_when_no_method_is_named(model: Model, home: Path) -> None:
    default = model.generate(PROMPT, preference="concise", max_tokens=TOKENS)
    assert default.stats["calibration"] is None and default.stats["recommended"] is True
    record = calibrated(model)
    mine = Amulet(contrast=2.0, tau=0.1, end_tokens=PREF_ENDS)
    expected = model.generate(PROMPT, preference="concise", method=mine, max_tokens=TOKENS)
    assert expected.stats["calibration"] is None and expected.stats["recommended"] is False
    for method in (None, "recommended", recommended_method()):
        result = model.generate(PROMPT, preference="concise", method=method, max_tokens=TOKENS)
        assert result.tokens == expected.tokens
        assert result.stats["settings"]["contrast"] == 2.0
        assert result.stats["settings"]["tau"] == 0.1
        assert result.stats["calibration"] == {
            "settings": CALIBRATED, "calibrated_at": record["calibrated_at"],
            "per_preference": False, "default_kept": False, "method": "amulet"}
    chosen = recommended_method(model)
    assert chosen == mine and is_recommended(chosen)
    assert recommended_method() == Amulet(contrast=0.5, tau=0.2, end_tokens=PREF_ENDS)
    # A method named explicitly is never calibrated, even at the default's settings.
    for method in ("amulet", Amulet(contrast=0.5, tau=0.2, end_tokens=PREF_ENDS),
                   recommended_method().with_strength(0.5)):
        result = model.generate(PROMPT, preference="concise", method=method, max_tokens=TOKENS)
        assert result.stats["calibration"] is None and result.stats["recommended"] is False
    same = model.generate(PROMPT, preference="concise",
                          method=Amulet(contrast=0.5, tau=0.2, end_tokens=PREF_ENDS),
                          max_tokens=TOKENS)
    assert same.tokens == default.tokens
    # A chat and a comparison take it too.
    chat = model.chat(preference="concise", max_tokens=TOKENS)
    assert chat.send(PROMPT).tokens == expected.tokens
    chat.close()
    results = model.compare(PROMPT, ["recommended", "pref"], preference="concise",
                            max_tokens=TOKENS).run()
    assert results[0].tokens == expected.tokens and results[1].stats["calibration"] is None


def test_a_calibrated_opposite_fills_the_base_lane_unless_the_request_says(
        model: Model, home: Path) -> None:
    calibrated(model, opposite=True)
    mine = Amulet(contrast=2.0, tau=0.1, end_tokens=PREF_ENDS)
    expected = model.generate(PROMPT, preference="concise", method=mine, avoid="verbose",
                              max_tokens=TOKENS)
    result = model.generate(PROMPT, preference="concise", max_tokens=TOKENS)
    assert result.tokens == expected.tokens and result.stats["opposite"] is True
    off = model.generate(PROMPT, preference="concise", opposite=False, max_tokens=TOKENS)
    assert off.stats["opposite"] is False
    assert off.tokens == model.generate(PROMPT, preference="concise", method=mine,
                                        max_tokens=TOKENS).tokens


def test_a_preference_named_alone_gets_its_own_setting(
        model: Model, home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    record = calibrated(model, per_preference={
        "uplifting": {"contrast": 4.0, "tau": 0.05, "opposite": True}})
    overall = Amulet(contrast=2.0, tau=0.1, end_tokens=PREF_ENDS)
    own = Amulet(contrast=4.0, tau=0.05, end_tokens=PREF_ENDS)
    expected = model.generate(PROMPT, preference="uplifting", method=own,
                              avoid=OPPOSITES["uplifting"], max_tokens=TOKENS)
    assert expected.tokens != model.generate(PROMPT, preference="uplifting", method=overall,
                                             max_tokens=TOKENS).tokens
    # named alone, also at weight 1 (docs/steering.md: weight 1 answers as the preference)
    for preference in ("uplifting", ["Uplifting"], {"uplifting": 1.0}):
        result = model.generate(PROMPT, preference=preference, max_tokens=TOKENS)
        assert result.tokens == expected.tokens and result.stats["opposite"] is True
        assert result.stats["settings"]["contrast"] == 4.0
        assert result.stats["calibration"]["per_preference"] is True
        assert result.stats["calibration"]["settings"]["tau"] == 0.05
    half = model.generate(PROMPT, preference={"uplifting": 0.5}, max_tokens=TOKENS)
    assert half.tokens == model.generate(
        PROMPT, preference="uplifting", avoid=OPPOSITES["uplifting"], max_tokens=TOKENS,
        method=Amulet(contrast=2.0, tau=0.05, end_tokens=PREF_ENDS)).tokens
    # Another preset, two presets, or weights of two: the overall setting, neutral base lane.
    for preference in ("concise", ["uplifting", "concise"], {"uplifting": 1.0, "concise": 1.0}):
        result = model.generate(PROMPT, preference=preference, max_tokens=TOKENS)
        assert result.stats["settings"]["contrast"] == 2.0 and result.stats["opposite"] is False
        assert result.stats["calibration"]["per_preference"] is False
    assert recommended_method(model) == overall
    assert main(["models", "list"]) == 0
    assert "calibrated k=2 tau=0.1; uplifting: k=4 tau=0.05, opposite" in \
        capsys.readouterr().out
    assert record["chosen"]["per_preference"]["uplifting"]["reason"] == "by hand"


def test_a_guarded_calibration_steers_with_its_kl_budget(
        model: Model, home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A record made with the guard (every record since the fifth pass) steers with the
    per-token KL budget it stores; one made before it (no ``kl_budget``) stays unguarded."""
    calibrated(model, contrast=4.0, tau=0.05, kl_budget=0.5)
    guarded = Amulet(contrast=4.0, tau=0.05, kl_budget=0.5, end_tokens=PREF_ENDS)
    expected = model.generate(PROMPT, preference="uplifting", method=guarded,
                              max_tokens=TOKENS)
    unguarded = model.generate(PROMPT, preference="uplifting", max_tokens=TOKENS,
                               method=Amulet(contrast=4.0, tau=0.05, end_tokens=PREF_ENDS))
    assert expected.stats["mean_strength"] < 4.0 == unguarded.stats["mean_strength"]
    result = model.generate(PROMPT, preference="uplifting", max_tokens=TOKENS)
    assert result.tokens == expected.tokens and result.stats["settings"]["kl_budget"] == 0.5
    assert result.stats["mean_strength"] == pytest.approx(expected.stats["mean_strength"])
    assert recommended_method(model) == guarded
    assert main(["models", "list"]) == 0
    assert "calibrated k=4 tau=0.05 kl=0.5" in capsys.readouterr().out


def test_calibrate_sweeps_guarded_unless_told(home: Path) -> None:
    from localpref.cli import build_parser
    from localpref.commands.calibrate import plan_from_args

    def plan(*flags: str) -> Plan:
        return plan_from_args(build_parser().parse_args(["calibrate", *flags]))

    assert plan().kl_budget == 0.5 and plan("--budget", "0.3").kl_budget == 0.3
    assert plan("--kl-budget", "1").kl_budget == 1.0 and plan("--no-kl-budget").kl_budget is None
    assert {unit.setting.kl_budget for unit in plan("--quick").units() if unit.setting} == {0.5}


def test_another_model_file_does_not_match(model: Model, home: Path, tmp_path: Path) -> None:
    calibrated(model)
    assert CalibrationLookup(model.path).current() is not None
    copy = tmp_path / "copy.gguf"
    shutil.copyfile(model.path, copy)
    with copy.open("r+b") as handle:  # a changed byte near the end
        handle.seek(-100, 2)
        byte = handle.read(1)
        handle.seek(-100, 2)
        handle.write(bytes([byte[0] ^ 0xFF]))
    assert model_key(copy) != model_key(model.path)
    assert CalibrationLookup(copy).current() is None
    synthetic = write_synthetic_llama(tmp_path / "synthetic.gguf", SyntheticShape())
    assert CalibrationLookup(synthetic).current() is None


def test_a_preference_the_calibration_kept_at_the_default_is_not_called_calibrated(
        model: Model, home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """No setting beat Pref overall, but "uplifting" got its own: "concise" runs the default
    and says so, "uplifting" runs its own setting and is called calibrated."""
    default = {**CALIBRATED, "contrast": 0.5, "tau": 0.2}
    record = calibrated(model, {"uplifting": {"contrast": 2.0, "tau": 0.1},
                                "concise": {"contrast": 0.5, "tau": 0.2}},
                        contrast=0.5, tau=0.2)
    write_record(model.calibration_key, {**record, "default": default})
    for preference, note in (
            ("concise", "k=0.5 tau=0.2 ends=pref greedy (recommended, uncalibrated default: "
                        "the calibration kept it)"),
            ("uplifting", "k=2 tau=0.1 ends=pref greedy (recommended, calibrated for this "
                          "model)")):
        assert main(["generate", PROMPT, "-p", preference, "--max-tokens", "4"]) == 0
        assert note in capsys.readouterr().err


def test_a_calibration_that_kept_the_default_everywhere_says_so_unlike_none(
        model: Model, home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """No setting beat Pref for any preference (``calibrated`` false): the default steers,
    and the answer says the calibration kept it, as ``doctor`` does; it read as a model never
    calibrated."""
    argv = ["generate", PROMPT, "-p", "concise", "--max-tokens", "2", "--json"]
    assert main(argv) == 0
    never = json.loads(capsys.readouterr().out)["stats"]
    default = {**CALIBRATED, "contrast": 0.5, "tau": 0.2}
    record = calibrated(model, contrast=0.5, tau=0.2)
    write_record(model.calibration_key, {**record, "calibrated": False, "default": default})
    assert main(argv) == 0
    captured = capsys.readouterr()
    kept = json.loads(captured.out)["stats"]
    assert never["calibration"] is None and kept["method"] == never["method"]
    assert kept["calibration"] == {"settings": default, "calibrated_at": record["calibrated_at"],
                                   "per_preference": False, "default_kept": True,
                                   "method": "amulet"}
    assert model.calibration is None  # the default steers: nothing calibrated is in force
    assert main(argv[:-1]) == 0
    assert "(recommended, uncalibrated default: the calibration kept it)" in (
        capsys.readouterr().err)


def test_cli_reports_it_and_reset_clears_it(model: Model, home: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["generate", PROMPT, "-p", "concise", "--max-tokens", "6"]
    assert main(argv) == 0
    assert "(recommended, uncalibrated default)" in capsys.readouterr().err
    calibrated(model)
    assert main([*argv, "--json"]) == 0
    stats = json.loads(capsys.readouterr().out)["stats"]
    assert stats["calibration"]["settings"]["contrast"] == 2.0
    assert stats["settings"]["contrast"] == 2.0 and stats["settings"]["tau"] == 0.1
    assert main(argv) == 0
    assert "amulet k=2 tau=0.1 ends=pref greedy (recommended, calibrated for this model)" in \
        capsys.readouterr().err
    assert main([*argv, "--method", "amulet", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["stats"]["calibration"] is None
    # a mistyped reset is one sentence and removes nothing (the flags were not read)
    assert main(["calibrate", "--reset", "--strengths", "banana"]) == 2
    assert "--strengths" in capsys.readouterr().err
    assert record_path(model.calibration_key).exists()
    assert main(["calibrate", "--reset"]) == 0
    assert "Removed the calibration" in capsys.readouterr().out
    assert not record_path(model.calibration_key).exists()
    assert not rows_path(model.calibration_key).exists()
    assert model.calibration is None
    assert main([*argv, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["stats"]["calibration"] is None
    assert main(["calibrate", "--reset", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["reset"] is False


def test_sigterm_stops_a_sweep_with_its_sentence_and_exit_143(model: Model, home: Path) -> None:
    """SIGTERM ended calibrate at once, with its progress bar as the last thing said and no
    line ending; it now stops as Ctrl-C does, the finished generations kept."""
    rows = rows_path(model.calibration_key)
    process = localpref_process("calibrate", "--threads", "1", "--limit", "4", "--max-tokens",
                                "24", "--strengths", "1", "--taus", "0.2", "--no-progress")
    wait_for_lines(rows, 1, process)
    process.send_signal(signal.SIGTERM)
    _, error = process.communicate(timeout=120)
    assert process.returncode == 143, error
    assert error.decode().strip().splitlines()[-1] == (
        f"localpref: stopped; the finished generations are kept in {rows}; run the same "
        "command to continue.")
    assert all(json.loads(line) for line in rows.read_text(encoding="utf-8").splitlines())


#: A second process that takes a key's calibration lock, says so, and holds it until its
#: stdin closes.
HOLDER = """
import sys
from localpref.calibration.record import held
with held(sys.argv[1]):
    print("held", flush=True)
    sys.stdin.read()
"""


def test_a_second_calibration_of_the_same_file_is_refused_while_one_runs(
        model: Model, home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Two sweeps of one model file would append every unit twice to the same rows, and a
    reset would remove them under the running one: while another process calibrates the file
    (holds its lock), ``calibrate`` and ``calibrate --reset`` are one sentence (exit 2 in the
    CLI), nothing is generated, nothing removed; once it ends, both work."""
    key = model.calibration_key
    calibrated(model)
    rows_path(key).write_text('{"unit": "kept"}\n')
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, key], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        plan = Plan(prompts=CALIBRATION_PROMPTS[:1], preferences=("concise",),
                    strengths=(1.0,), taus=(0.2,), opposites=(False,), max_tokens=4)
        with pytest.raises(CalibrationError, match="Another localpref calibrate is running"):
            calibrate(model, plan, progress=False)
        for argv in (["calibrate", "--limit", "1", "--strengths", "1", "--taus", "0.2",
                      "--max-tokens", "4", "--no-progress"], ["calibrate", "--reset"]):
            assert main(argv) == 2
            err = capsys.readouterr().err
            assert err.startswith("localpref: Another localpref calibrate is running on this "
                                  "model file") and "Traceback" not in err
        assert rows_path(key).read_text() == '{"unit": "kept"}\n'  # nothing added, nothing gone
        assert record_path(key).exists() and lock_path(key).exists()
    finally:
        holder.communicate("")
    assert holder.returncode == 0
    record = calibrate(model, plan, progress=False)  # the lock went with its process
    assert {row["preference"] for row in record["rows"]} == {"concise"}
    assert rows_path(key).read_text().startswith('{"unit": "kept"}\n')  # appended after it
    assert sorted(row["method"] for row in stored_rows(key) if row["unit"] != "kept") == [
        "amulet", "pref"]
    assert main(["calibrate", "--reset"]) == 0
    assert not rows_path(key).exists() and not record_path(key).exists()


@pytest.mark.parametrize("argv", [["--strengths", "a,1"], ["--strengths", "-1"],
                                  ["--taus", "1.5"], ["--limit", "0"], ["--budget", "0"],
                                  ["--max-tokens", "0"], ["--long-tokens", "0"],
                                  ["--kl-budget", "0"], ["--kl-budget", "nan"],
                                  ["--kl-budget", "1", "--no-kl-budget"]])
def test_calibrate_bad_flags_are_one_sentence(argv: list[str], home: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["calibrate", *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("localpref: ") and "Traceback" not in err


@pytest.mark.parametrize(("argv", "sentence"), [
    (["--strengths", "1,inf"], "--strengths: every value must be a finite number (got inf)."),
    (["--taus", "nan"], "--taus: every value must be a finite number (got nan)."),
    (["--strengths", "-1"], "--strengths: every value must be 0 or more (got -1)."),
    (["--taus", "1.5"], "--taus: every value must be in [0, 1) (got 1.5)."),
])
def test_calibrate_says_why_a_swept_value_is_refused(
        argv: list[str], sentence: str, home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``--strengths inf`` was refused as "must be 0 or more": infinity is more."""
    assert main(["calibrate", *argv]) == 2
    assert capsys.readouterr().err == f"localpref: {sentence}\n"


def test_doctor_and_models_list_show_the_calibration_state(
        model: Model, home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models", "list"]) == 0
    assert "uncalibrated" in capsys.readouterr().out
    calibrated(model)
    assert main(["models", "list"]) == 0
    assert "calibrated k=2 tau=0.1" in capsys.readouterr().out
    assert main(["doctor"]) == 0
    assert "calibrated k=2 tau=0.1" in capsys.readouterr().out


def ignored_notice(model: Model, problem: str) -> str:
    """The notice of a record that is ignored, written out (not built by the code it tests)."""
    return (f"The calibration {record_path(model.calibration_key)} {problem}, so it is "
            "ignored (the uncalibrated default steers); run localpref calibrate again, or "
            "localpref calibrate --reset.")


@pytest.mark.parametrize(("overall", "own", "problem"), [
    ({"contrast": None}, {}, "has a contrast of null, not a number"),
    ({}, {"contrast": -3}, "has a setting for uplifting that cannot be used (the contrast must "
                           "be from 0 to 1,000,000 (got -3))"),
    ({"opposite": "yes"}, {}, 'has an opposite of "yes", not true or false'),
    ({}, {"end_tokens": "bogus"}, 'has end tokens for uplifting of "bogus", not "pref"'),
    ({"tau": 1.5}, {}, "has a setting that cannot be used (tau must be in [0, 1) (got 1.5))"),
])
def test_a_hand_edited_calibration_is_ignored_and_said_everywhere(
        model: Model, home: Path, capsys: pytest.CaptureFixture[str], overall, own,
        problem) -> None:
    """A null contrast steered at the papers' k = 4.65 and was called calibrated; -3 refused
    every request of that preference; nothing said why."""
    calibrated(model, per_preference={"uplifting": own}, **overall)
    sentence = ignored_notice(model, problem)
    assert model.calibration is None and model.notices[-1] == sentence
    result = model.generate(PROMPT, preference="uplifting", max_tokens=2)
    assert result.stats["calibration"] is None and result.stats["settings"]["contrast"] == 0.5
    assert main(["models", "list"]) == 0
    assert f"ignored: its record {problem} (localpref calibrate --reset)" in (
        capsys.readouterr().out)
    assert main(["calibrate", "--reset"]) == 0
    capsys.readouterr()
    assert model.notices == [] and model.calibration is None


@pytest.mark.parametrize(("where", "problem"), [
    ("chosen", "has a setting that cannot be used (tau must be in [0, 1) (got 1.5))"),
    ("default", "has a setting in its default that cannot be used (tau must be in [0, 1) "
                "(got 1.5))"),
])
def test_a_hand_edited_record_that_kept_the_default_is_ignored_too(
        model: Model, home: Path, capsys: pytest.CaptureFixture[str], where: str,
        problem: str) -> None:
    """A record whose sweep kept the uncalibrated default (``calibrated`` false) with a tau of
    1.5 written in by hand was taken without a word: the answer and ``doctor`` said the
    calibration kept the default, and reported the bad setting as what was kept."""
    default = {**CALIBRATED, "contrast": 0.5, "tau": 0.2}
    record = {**calibrated(model, **default), "calibrated": False, "default": dict(default)}
    (record["chosen"]["settings"] if where == "chosen" else record["default"])["tau"] = 1.5
    write_record(model.calibration_key, record)
    sentence = ignored_notice(model, problem)
    assert model.calibration_record is None and model.notices[-1] == sentence
    result = model.generate(PROMPT, preference="concise", max_tokens=2)
    assert result.stats["calibration"] is None and result.stats["settings"]["tau"] == 0.2
    assert main(["doctor"]) == 0
    assert f"ignored: its record {problem}" in capsys.readouterr().out


def test_a_corrupt_calibration_file_is_said_to_be_ignored(model: Model, home: Path) -> None:
    calibrated(model)
    record_path(model.calibration_key).write_text("{not json", encoding="utf-8")
    assert model.calibration is None
    assert model.notices == [f"The calibration {record_path(model.calibration_key)} is not "
                             "valid JSON, so it is ignored (the uncalibrated default steers); "
                             "run localpref calibrate again, or localpref calibrate --reset."]


@pytest.mark.parametrize(("edit", "problem"), [
    (lambda record: record.write_bytes(b"\xff{}"), "is not UTF-8 text"),  # every command failed
    (lambda record: record.write_text(record.read_text().replace('"method": "amulet"',
                                                                 '"method": "pad"')),
     'has the method "pad", where a calibration steers with "amulet"'),  # reported as used
    (lambda record: record.write_text(record.read_text().replace(
        '"calibrated_at": "2026-12-03T11:00:00+00:00"', '"calibrated_at": 5')),
     "does not say when it was made (calibrated_at)"),
])
def test_a_record_that_cannot_be_read_or_reported_as_it_stands_is_ignored(
        model: Model, home: Path, edit, problem: str) -> None:  # noqa: ANN001
    calibrated(model)
    edit(record_path(model.calibration_key))
    assert model.calibration is None and model.notices == [ignored_notice(model, problem)]
    result = model.generate(PROMPT, preference="concise", max_tokens=2)
    assert result.stats["calibration"] is None


def test_a_record_nested_too_deep_is_ignored_not_a_traceback(model: Model, home: Path) -> None:
    calibrated(model)
    record_path(model.calibration_key).write_text("[" * 5000 + "]" * 5000, encoding="utf-8")
    assert model.calibration is None and model.notices == [
        ignored_notice(model, "nests too deep to be a calibration record")]


def test_a_stored_row_of_the_wrong_kinds_is_generated_again(model: Model, home: Path) -> None:
    """A hand-edited row (``"unit": [1]``, ``"strength": "x"``, ``"prompt": "x"``) ended
    the next calibration with a traceback; it is skipped and its unit generated again."""
    plan = Plan(prompts=CALIBRATION_PROMPTS[:1], preferences=("concise",), strengths=(1.0,),
                taus=(0.2,), opposites=(False,), max_tokens=4)
    calibrate(model, plan, progress=False)
    path = rows_path(model.calibration_key)
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    steered = next(row for row in rows if row["method"] == "amulet")
    edits = [{"unit": [1]}, {**steered, "strength": "x"}, {**steered, "prompt": "x"},
             {**steered, "opposite": None}, {**steered, "score": "high"}]
    path.write_text("".join(json.dumps(row) + "\n" for row in
                            [*(row for row in rows if row is not steered), *edits]))
    assert list(stored_rows(model.calibration_key)) == [r for r in rows if r is not steered]
    record = calibrate(model, plan, progress=False)  # (it raised TypeError, ValueError)
    assert record["key"] == model.calibration_key
    again = [json.loads(line) for line in path.read_text().splitlines()][-1]
    assert again["unit"] == steered["unit"] and again["strength"] == steered["strength"]


def test_a_row_torn_by_a_kill_does_not_take_the_next_one_with_it(model: Model,
                                                                 home: Path) -> None:
    """The resumed sweep appended its first row to the torn line: both were lost, and the
    next run generated that row again."""
    plan = Plan(prompts=CALIBRATION_PROMPTS[:1], preferences=("concise",), strengths=(1.0,),
                taus=(0.2,), opposites=(False,), max_tokens=4)
    calibrate(model, plan, progress=False)
    path = rows_path(model.calibration_key)
    whole = path.read_text().splitlines()
    path.write_text("\n".join(whole[:-1]) + "\n" + whole[-1][:20])  # the kill, mid-row
    calibrate(model, plan, progress=False)
    lines = path.read_text().splitlines()
    assert lines[:-2] == whole[:-1] and lines[-2] == whole[-1][:20]
    assert json.loads(lines[-1]) == json.loads(whole[-1])  # its own line, read back
    calibrate(model, plan, progress=False)
    assert len(path.read_text().splitlines()) == len(lines)  # nothing generated again
    # a line that is not UTF-8 (a traceback before any generation) is skipped as torn
    with path.open("ab") as rows:
        rows.write(b"\xff\n")
    calibrate(model, plan, progress=False)
    assert len(path.read_bytes().splitlines()) == len(lines) + 1


def test_the_server_uses_it_for_preset_ids_only(model: Model, home: Path) -> None:
    calibrated(model)
    expected = model.generate(PROMPT, preference="concise", max_tokens=TOKENS)
    with running_server(model) as server:
        client = sdk_client(server.url)
        messages = [{"role": "user", "content": PROMPT}]
        for model_id in (f"{MODEL_ID}:concise", f"{MODEL_ID}:recommended:concise"):
            answer = client.chat.completions.create(model=model_id, messages=messages,
                                                    max_tokens=TOKENS)
            assert answer.choices[0].message.content == expected.text
            stats = answer.model_extra["localpref"]["stats"]
            assert stats["calibration"]["settings"]["contrast"] == 2.0
        named = client.chat.completions.create(model=f"{MODEL_ID}:amulet:concise",
                                               messages=messages, max_tokens=2)
        assert named.model_extra["localpref"]["stats"]["calibration"] is None


async def test_the_app_uses_it_and_says_so(model: Model, home: Path) -> None:
    from tui_helpers import SIZE

    from tui.app import LocalprefApp
    from tui.widgets import StatusBar

    app = LocalprefApp(model=model)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        assert "(uncalibrated default)" in app.query_one(StatusBar).plain
    default = {**CALIBRATED, "contrast": 0.5, "tau": 0.2}  # kept for every preference
    write_record(model.calibration_key,
                 {**calibrated(model), "calibrated": False, "default": default})
    app = LocalprefApp(model=model)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        assert "(uncalibrated default: the calibration kept it)" in (
            app.query_one(StatusBar).plain)
    calibrated(model)
    app = LocalprefApp(model=model)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        status = app.query_one(StatusBar).plain
        assert "recommended: amulet k=2 tau=0.1" in status
        assert "(calibrated for this model)" in status
        assert is_recommended(app.steering.overrides()["method"])


def test_the_evaluation_runs_the_settings_it_records() -> None:
    from localpref.evaluation.specs import named_method

    method = named_method("recommended")
    assert method == recommended_method() and not is_recommended(method)


def test_weighted_preferences_report_the_calibration_too(model: Model, home: Path) -> None:
    calibrated(model)
    result = model.generate(PROMPT, preference={"concise": 1.0, "uplifting": 0.5},
                            max_tokens=4)
    assert result.stats["recommended"] is True
    assert result.stats["calibration"]["settings"]["contrast"] == 2.0


def test_one_request_at_a_time_when_asked(bundled_path: Path, capsys) -> None:
    """``parallel=1`` (``calibrate --parallel 1``): no step decodes two units together, so a
    model whose lanes are not bit-exact beside others calibrates the same on every run."""
    plan = Plan(prompts=CALIBRATION_PROMPTS[:1], strengths=(0.5,), taus=(0.2,), max_tokens=6)
    units = plan.units()[:4]
    rows: list[dict] = []
    with Model(bundled_path, max_lanes=8, n_ctx=512) as small:
        run_units(small, units, rows.append, parallel=1)
        events = list(small.scheduler.events)
    assert len(rows) == 4 and {row["unit"] for row in rows} == {unit.key for unit in units}
    steps = [event for event in events if event.kind == "step"]
    assert steps and all(len(event.jobs) == 1 for event in steps)
    assert len({job for event in steps for job in event.jobs}) == 4
    assert main(["calibrate", "--parallel", "0"]) == 2
    assert "--parallel must be from 1 to 8 (got 0)." in capsys.readouterr().err
