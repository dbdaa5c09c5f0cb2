"""The summary's "Against Pref" section: paired differences, intervals, verdicts, fluency.

Hand-built rows check the arithmetic against NumPy; one real run checks that `--score-lanes`
gives Base and Pref both fluencies, so the section has its fluency column.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from localpref.cli import main
from localpref.evaluation.pareto import render_sweep_section
from localpref.evaluation.records import read_rows
from localpref.evaluation.report import collect, render_summary
from localpref.evaluation.tables import Cell, bootstrap_interval, paired_differences
from localpref.evaluation.versus_pref import comparisons

WORDS = {  # concise: fewer words is better; six prompts, the fewest a verdict is given on
    "pref": [40.0, 50.0, 60.0, 70.0, 80.0, 90.0],
    "amulet": [30.0, 40.0, 50.0, 60.0, 70.0, 80.0],      # 10 fewer on every prompt: beats
    "pad": [45.0, 45.0, 65.0, 65.0, 85.0, 85.0],          # +5, -5, ...: no different
    "contrastive": [50.0, 60.0, 70.0, 80.0, 90.0, 100.0],  # 10 more on every prompt: loses
}
FLUENCY = {"pref": -1.0, "amulet": -1.7, "pad": -1.2, "contrastive": -1.1}
FLUENCY_PREF = {"pref": -0.5, "amulet": -0.8, "pad": -1.3, "contrastive": -0.5}  # pref lane


def _rows() -> tuple[list[dict], dict[str, dict]]:
    rows, metrics = [], {}
    for method, values in WORDS.items():
        for position, words in enumerate(values):
            identifier = f"{method}{position}"
            rows.append({"id": identifier, "method": method, "dataset": "d",
                         "position": position, "preference": "concise",
                         "key": {"model": "m", "prompts": "paper", "max_tokens": 8,
                                 "settings": {}},
                         "stats": {"tokens_per_s": 10.0,
                                   "fluency_base": FLUENCY[method] + 0.01 * position,
                                   "fluency_pref": FLUENCY_PREF[method] - 0.02 * position}})
            metrics[identifier] = {"words": words}
    return rows, metrics


def _longer_rows(pref_words: float = 0.0) -> tuple[list[dict], dict[str, dict]]:
    """The same rows as a second run at 16 tokens (ids ``long-...``), Pref's answers
    ``pref_words`` longer."""
    rows, metrics = _rows()
    longer = {}
    for row in rows:
        words = metrics[row["id"]]["words"] + (pref_words if row["method"] == "pref" else 0.0)
        row["id"] = f"long-{row['id']}"
        row["key"] = {**row["key"], "max_tokens": 16}
        longer[row["id"]] = {"words": words}
    return rows, longer


def test_paired_differences_keep_only_prompts_both_answered() -> None:
    mine = Cell({0: 3.0, 1: 5.0, 2: math.nan, 4: 1.0})
    theirs = Cell({0: 1.0, 1: 1.0, 2: 1.0, 3: 7.0})
    assert paired_differences(mine, theirs) == [2.0, 4.0]


def test_each_method_against_pref_matches_numpy_and_gets_its_verdict() -> None:
    rows, metrics = _rows()
    found = {c.label: c for c in comparisons(collect(rows, metrics), resamples=300)}
    assert set(found) == {"amulet", "pad", "contrastive"}
    for label, comparison in found.items():
        differences = np.array(WORDS[label]) - np.array(WORDS["pref"])
        assert comparison.n_prompts == 6
        assert comparison.delta == pytest.approx(differences.mean())
        assert (comparison.delta_low, comparison.delta_high) == pytest.approx(
            bootstrap_interval(list(differences), resamples=300))
        assert comparison.fluency_delta == pytest.approx(FLUENCY[label] - FLUENCY["pref"])
        assert comparison.pref_fluency_delta == pytest.approx(
            FLUENCY_PREF[label] - FLUENCY_PREF["pref"])
    assert found["amulet"].verdict == "beats"  # concise: lower is better
    assert found["pad"].verdict == "no different"
    assert found["contrastive"].verdict == "loses"
    assert found["amulet"].fluent(0.5) is False and found["pad"].fluent(0.5) is True
    # Under the preference lane the verdicts on fluency differ: amulet -0.3, pad -0.8.
    assert found["amulet"].fluent(0.5, lane="pref") is True
    assert found["pad"].fluent(0.5, lane="pref") is False


def test_the_summary_states_each_verdict_with_its_interval_and_fluency() -> None:
    rows, metrics = _rows()
    text = render_summary(collect(rows, metrics), resamples=300)
    assert "## Against Pref, prompt by prompt" in text
    line = next(x for x in text.splitlines() if x.startswith("| d | concise | words ↓ | **"))
    assert ("**beats** -10.0 [-10.0, -10.0]; fluency -0.70 **not fluent**, pref lane -0.30 "
            "(n=6)") in line
    low, high = bootstrap_interval([5.0, -5.0] * 3, resamples=300)
    assert (f"**no different** 0.0 [{low:.1f}, {high:.1f}]; fluency -0.20, pref lane -0.80 "
            "**not fluent**") in line
    assert "**loses** 10.0 [10.0, 10.0]; fluency -0.10, pref lane 0.00 (n=6)" in line


def test_a_verdict_needs_six_prompts() -> None:
    """On 3 prompts that all moved one way the percentile interval leaves out zero, and the
    summary said "beats" where a sign test gives p = 0.25."""
    rows, metrics = _rows()
    few = [row for row in rows if row["position"] < 5]
    found = {c.label: c for c in comparisons(collect(few, metrics), resamples=300)}
    assert found["amulet"].n_prompts == 5 and found["amulet"].delta_high < 0
    assert found["amulet"].verdict == found["contrastive"].verdict == "too few prompts"
    text = render_summary(collect(few, metrics), resamples=300)
    assert "**too few prompts** -10.0 [-10.0, -10.0]" in text and "**beats** -" not in text


def test_without_preference_lane_fluency_the_cell_names_the_base_lane_only() -> None:
    rows, metrics = _rows()
    for row in rows:
        del row["stats"]["fluency_pref"]
    text = render_summary(collect(rows, metrics), resamples=300)
    line = next(x for x in text.splitlines() if x.startswith("| d | concise | words ↓ | **"))
    assert "**beats** -10.0 [-10.0, -10.0]; fluency -0.70 **not fluent** (n=6)" in line
    assert "pref lane" not in line


def test_runs_at_two_lengths_in_one_folder_compare_like_with_like() -> None:
    """A folder with runs at two --max-tokens (eval merge) lost "Against Pref" and the
    win/tie/lose table without a word: each column now meets the Pref, and each Amulet the
    methods, that ran at its length."""
    rows, metrics = _rows()
    longer, longer_metrics = _longer_rows(pref_words=20.0)  # the longer Pref: 20 words more
    tables = collect(rows + longer, {**metrics, **longer_metrics})
    found = {c.label: c for c in comparisons(tables, resamples=300)}
    assert set(found) == {f"{method} [max_tokens={tokens}]" for tokens in (8, 16)
                          for method in ("amulet", "pad", "contrastive")}
    assert found["amulet [max_tokens=8]"].delta == pytest.approx(-10.0)
    assert found["amulet [max_tokens=16]"].delta == pytest.approx(-30.0)  # its own Pref's
    assert found["contrastive [max_tokens=16]"].delta == pytest.approx(-10.0)
    text = render_summary(tables, resamples=100)
    assert "## Against Pref, prompt by prompt" in text
    assert "Pref ran at several settings here" in text
    for tokens in (8, 16):
        heading = f"## amulet [max_tokens={tokens}] against each method, by the preference's"
        assert heading in text
        table = text.split(heading)[1].split("##")[0]
        assert f"vs pref [max_tokens={tokens}]" in table
        other = 16 if tokens == 8 else 8
        assert f"[max_tokens={other}]" not in table


#: the judge's probabilities (A wins, tie, B wins) behind each outcome
_PROBABILITIES = {"win": (0.75, 0.05, 0.2), "tie": (0.3, 0.4, 0.3), "lose": (0.2, 0.05, 0.75)}


def _judgement(mine: str, other: str, outcome: str, coverage: float = 0.5) -> dict:
    p_a, p_tie, p_b = _PROBABILITIES[outcome]
    return {"dataset": "d", "preference": "concise", "a": mine, "b": other, "position": 0,
            "outcome": outcome, "p_a": p_a, "p_tie": p_tie, "p_b": p_b, "judge": "j",
            "orders": [{"coverage": coverage}, {"coverage": coverage}]}


def test_each_judged_reference_gets_its_own_judge_table() -> None:
    """The judge's table took its title from the first reference and its columns from the
    last, and a folder judged with another --reference than the summary's crashed it."""
    rows, metrics = _rows()
    longer, longer_metrics = _longer_rows()
    judgements = [_judgement("amulet0", "pref0", "win"), _judgement("amulet0", "pad0", "lose"),
                  _judgement("long-amulet0", "long-pref0", "tie")]
    tables = collect(rows + longer, {**metrics, **longer_metrics}, judgements)
    text = render_summary(tables, resamples=50)
    short = text.split("## amulet [max_tokens=8] against each method, by the LLM judge")[1]
    short = short.split("##")[0]
    assert "| vs pref [max_tokens=8] | vs pad [max_tokens=8] |" in short
    assert "| d | concise | 100 / 0 / 0 (n=1), P(win) 0.75 | 0 / 0 / 100 (n=1), P(win) 0.20 |" \
        in short
    long = text.split("## amulet [max_tokens=16] against each method, by the LLM judge")[1]
    assert "| vs pref [max_tokens=16] |" in long.split("##")[0]
    assert "max_tokens=8" not in long.split("##")[0]
    # judged against pad, summarised with the default reference (amulet) absent
    without_amulet = [row for row in rows if row["method"] != "amulet"]
    tables = collect(without_amulet, metrics, [_judgement("pad0", "pref0", "win")])
    text = render_summary(tables, resamples=50)
    assert "## pad against each method, by the LLM judge" in text
    # a merge with another --reference says the judge's table keeps the judged one
    assert ("the mean probability that pad wins. The judge compared pad with each method "
            "when these answers were judged; the reference here, amulet, does not judge them "
            "again.") in text
    assert "does not judge them again" not in render_summary(tables, reference="pad",
                                                              resamples=50)


def test_an_even_split_counts_as_a_tie_even_in_rows_written_before() -> None:
    """Two identical answers, judged in both orders, give A and B the same probability; the
    outcome went to A ("win"). Rows written then are read by today's rule."""
    rows, metrics = _rows()
    even = {**_judgement("amulet0", "pref0", "win"), "p_a": 0.48, "p_tie": 0.04, "p_b": 0.48}
    text = render_summary(collect(rows, metrics, [even]), resamples=50)
    assert "| d | concise | 0 / 100 / 0 (n=1), P(win) 0.48 |" in text


def test_the_judge_table_gives_its_coverage_and_warns_when_it_is_negligible() -> None:
    rows, metrics = _rows()
    answering = render_summary(collect(rows, metrics, [_judgement("amulet0", "pref0", "win",
                                                                  coverage=0.46)]), resamples=50)
    assert "median 0.46." in answering and "That is low" not in answering
    silent = render_summary(collect(rows, metrics, [_judgement("amulet0", "pref0", "win",
                                                               coverage=2.9e-7)]), resamples=50)
    assert "median 2.9e-07. **That is low: the judge was" in silent
    # a folder judged again by another judge: a table each, with its own median; the
    # verdicts were pooled into one table (n=2 for one prompt, the weak judge's counted)
    both = render_summary(collect(rows, metrics, [
        _judgement("amulet0", "pref0", "win", coverage=0.46),
        {**_judgement("amulet0", "pref0", "lose", coverage=2e-7), "judge": "gemma"}]),
        resamples=50)
    weak = both.split("## amulet against each method, by the LLM judge gemma")[1]
    weak = weak.split("##")[0]
    assert "Judge: gemma, the Amulet paper's question" in weak
    assert "median 2e-07. **That is low: the judge was mostly" in weak
    assert "| d | concise | 0 / 0 / 100 (n=1), P(win) 0.20 |" in weak
    strong = both.split("## amulet against each method, by the LLM judge j")[1].split("##")[0]
    assert "median 0.46." in strong and "That is low" not in strong
    assert "| d | concise | 100 / 0 / 0 (n=1), P(win) 0.75 |" in strong
    assert "(n=2)" not in both


def test_without_pref_rows_there_is_no_section() -> None:
    rows, metrics = _rows()
    rows = [row for row in rows if row["method"] != "pref"]
    assert "Against Pref" not in render_summary(collect(rows, metrics), resamples=50)


def test_score_lanes_gives_base_and_pref_both_fluencies_and_end_tokens_reach_pad(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    dataset = tmp_path / "one.json"
    dataset.write_text(json.dumps([{"question": "How do I keep basil alive indoors?"}]),
                       encoding="utf-8")
    out = tmp_path / "out"
    code = main(["eval", "--dataset", str(dataset), "--methods", "base,pref,pad",
                 "--preferences", "concise", "--max-tokens", "6", "--ctx", "512",
                 "--bootstrap", "50", "--threads", "1", "--out", str(out), "--no-progress",
                 "--score-lanes", "--tau", "0.2", "--end-tokens", "pref"])
    assert code == 0, capsys.readouterr().err
    rows = {row["method"]: row for row in read_rows(out / "generations.jsonl")}
    for method in ("base", "pref", "pad"):
        stats = rows[method]["stats"]
        assert math.isfinite(stats["fluency_base"]) and math.isfinite(stats["fluency_pref"])
        assert rows[method]["key"]["score_lanes"] is True
    assert rows["pad"]["settings"]["end_tokens"] == "pref"
    assert rows["pad"]["settings"]["tau"] == 0.2
    text = (out / "summary.md").read_text(encoding="utf-8")
    section = text.split("## Against Pref, prompt by prompt")[1].split("\n## ")[0]
    line = next(x for x in section.splitlines() if x.startswith("| one | concise"))
    assert "fluency n/a" not in line and line.count("(n=1)") == 2  # base and pad
    assert "Dataset `one`: 1 prompt." in text  # (was "1 prompts")


def test_a_score_some_answers_have_no_value_for_says_over_how_many() -> None:
    """MTLD has no value for an answer of under ten words: a cell averaged the rest and
    showed it beside means over every prompt, and a cell of none showed only "–"."""
    rows, metrics = _rows()
    for row in rows:
        position = row["position"]
        metrics[row["id"]]["mtld"] = (
            None if row["method"] == "pad" or (row["method"] == "amulet" and position > 0)
            else 20.0 + position)
    text = render_summary(collect(rows, metrics), resamples=50)
    table = text.split("## All scores")[1].split("\n### ")
    mtld = next(part for part in table if part.lower().startswith("mtld"))
    lines = [line for line in mtld.splitlines() if line.startswith("| ")]
    header = [cell.strip() for cell in lines[0].strip("|").split("|")]
    row = next(line for line in lines if line.startswith("| d | concise |"))
    cells = dict(zip(header, (cell.strip() for cell in row.strip("|").split("|")), strict=True))
    assert cells["pref"].startswith("22.5 [") and "(n=" not in cells["pref"]  # all six
    assert cells["amulet"] == "20.0 [20.0, 20.0] (n=1 of 6)"
    assert cells["pad"] == "– (no value on 6 prompts)"


def test_the_sweeps_verdict_line_names_each_settings_own_reason() -> None:
    """A setting on too few prompts and one whose interval holds zero on enough were both
    said to be "on 3 prompts, too few to tell"."""
    rows, metrics = [], {}

    def add(method: str, strength: float | None, words: list[float]) -> None:
        for position, count in enumerate(words):
            identifier = f"{method}{position}"
            settings = {} if strength is None else {"strength": strength}
            key = {"model": "m", "prompts": "paper", "max_tokens": 8, "settings": settings}
            if strength is not None:
                key["sweep"] = settings
            rows.append({"id": identifier, "method": method, "dataset": "d",
                         "position": position, "preference": "concise", "key": key,
                         "stats": {"fluency_base": -1.0}})
            metrics[identifier] = {"words": count}

    add("pref", None, [50.0] * 10)
    add("amulet", 1.0, [40, 60, 30, 70, 45, 55, 40, 60, 35, 58])  # 49.3 on 10: unclear
    add("contrastive", 1.0, [30.0, 30.0, 30.0])  # better on each of only 3 prompts
    line = next(x for x in render_sweep_section(collect(rows, metrics), 0.5, resamples=300)
                if x.startswith("**Beats Pref"))
    assert line.startswith("**Beats Pref within 0.5 nats: not shown**: amulet ")
    assert "(49.3) better on average, but its interval over prompts holds no difference; " \
        in line
    assert "(30.0) on 3 prompts better on average, too few to tell (at least 6); " in line


def test_the_judge_chart_has_a_row_of_plots_for_each_judge(tmp_path: Path) -> None:
    """Two judges' verdicts were pooled into one row of bars: each has its own row now."""
    from PIL import Image

    from localpref.evaluation.report import JUDGE_CHART, render_charts

    rows, metrics = _rows()
    heights = []
    for judgements in ([_judgement("amulet0", "pref0", "win")],
                       [_judgement("amulet0", "pref0", "win"),
                        {**_judgement("amulet0", "pref0", "lose"), "judge": "gemma"}]):
        folder = tmp_path / str(len(judgements))
        folder.mkdir()
        render_charts(collect(rows, metrics, judgements), folder, resamples=50)
        with Image.open(folder / JUDGE_CHART) as chart:
            heights.append(chart.size[1])
    assert heights == [round(3.2 * 110), round(2 * 3.2 * 110)]
