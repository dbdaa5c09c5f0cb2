"""`localpref bench`: the JSON contract, the human table and bad input (no timing thresholds)."""

from __future__ import annotations

import json
import math
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from localpref.api import Model
from localpref.bench import (
    BENCH_METHODS,
    LANE_LAYOUTS,
    BenchSettings,
    bench_exactness,
    bench_lanes,
    format_exactness,
)
from localpref.cli import main
from localpref.errors import ModelError, SettingsError
from localpref.synthetic import build_synthetic, synthetic_file_name

METHOD_FIELDS = {
    "tokens_per_s", "ratio_to_base", "ratio_to_contrastive", "steer_ms_per_token",
    "steer_share", "prefill_ms",
}


def _positive(value: object) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value) and value > 0


def _finite(value: object) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value) and value >= 0


def test_json_has_every_contract_field(capsys: pytest.CaptureFixture[str]) -> None:
    # One llama.cpp thread: two threads spin badly when other test runs share the cores.
    code = main(["bench", "--json", "--quiet", "--max-tokens", "4", "--repeat", "1",
                 "--kernel-sizes", "512,2048", "--threads", "1"])
    captured = capsys.readouterr()
    assert code == 0
    assert captured.err == ""
    payload = json.loads(captured.out)  # exactly one JSON object on stdout
    assert {"model", "methods", "kernels", "chat", "peak_rss_mb"} <= set(payload)
    assert isinstance(payload["model"], str) and payload["model"]

    assert set(payload["methods"]) == set(BENCH_METHODS)
    for name, row in payload["methods"].items():
        assert METHOD_FIELDS <= set(row), name
        for key in ("tokens_per_s", "ratio_to_base", "ratio_to_contrastive", "prefill_ms"):
            assert _positive(row[key]), (name, key, row[key])
        assert _finite(row["steer_ms_per_token"]) and _finite(row["steer_share"]), name
        assert row["steer_share"] < 1.0, name  # a part of a step
        assert row["n_tokens"] == 4
    assert payload["methods"]["base"]["ratio_to_base"] == pytest.approx(1.0)
    assert payload["methods"]["contrastive"]["ratio_to_contrastive"] == pytest.approx(1.0)
    assert payload["methods"]["amulet"]["n_lanes"] == 2
    assert payload["methods"]["recommended"]["n_lanes"] == 2  # the front ends' default

    assert set(payload["kernels"]) == {"512", "2048"}
    for size, row in payload["kernels"].items():
        assert {"amulet_loop", "amulet_exact", "contrastive", "pad", "greedy", "sample"} <= set(
            row
        ), size
        assert all(_positive(ms) for ms in row.values()), (size, row)

    chat = payload["chat"]
    assert _positive(chat["ttft_turn1_ms"]) and _positive(chat["ttft_turn10_ms"])
    # history reuse: turn 10 evaluates far fewer tokens than its whole conversation
    assert chat["new_tokens_turn10"] < chat["history_tokens_turn10"]

    compare = payload["compare"]
    for key in ("batched_s", "sequential_s", "speedup"):
        assert _positive(compare[key]), key
    lanes = payload["lanes"]
    assert set(lanes["ms_per_step"]) == set(lanes["cost_vs_1_lane"]) == {
        "1_lane", "2_lanes_batched", "2_lanes_one_by_one", "4_lanes_batched"}
    assert all(_positive(ms) for ms in lanes["ms_per_step"].values())
    assert lanes["cost_vs_1_lane"]["1_lane"] == pytest.approx(1.0)
    assert lanes["steps"] == 4
    assert _positive(payload["peak_rss_mb"])
    assert payload["threads"] == 1


@pytest.fixture(scope="module")
def synthetic_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder for the tiny synthetic model (written by the first test that needs it)."""
    return tmp_path_factory.mktemp("synthetic")


def test_human_table_on_a_tiny_synthetic_model(
    synthetic_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tmp_path = synthetic_dir
    code = main(["bench", "--synthetic", "tiny", "--synthetic-dir", str(tmp_path),
                 "--max-tokens", "3", "--repeat", "1", "--kernel-sizes", "256",
                 "--methods", "amulet,pad", "--threads", "1"])
    captured = capsys.readouterr()
    assert code == 0
    assert (tmp_path / synthetic_file_name("tiny")).is_file()
    assert not list(tmp_path.glob("*f16*"))  # the float16 file is deleted after quantizing
    lines = captured.out.splitlines()
    assert lines[0].startswith("localpref bench: synthetic-llama")
    table = "\n".join(lines)
    for name in ("base", "contrastive", "amulet", "pad", "amulet_exact", "time to first token",
                 "2 lanes one by one", "peak RSS"):
        assert name in table
    assert not any(line.startswith("amulet_loop") for line in lines)  # not asked for
    assert "bench: warming up" in captured.err  # progress goes to stderr


def test_profile_times_the_pieces_of_a_step(
    synthetic_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["bench", "--profile", "--json", "--quiet", "--synthetic", "tiny",
                 "--synthetic-dir", str(synthetic_dir), "--methods", "amulet,base",
                 "--max-tokens", "4", "--repeat", "2", "--threads", "1"])
    captured = capsys.readouterr()
    assert code == 0
    profile = json.loads(captured.out)["profile"]
    assert set(profile) == {"amulet", "base"}
    for name, row in profile.items():
        assert _positive(row["step_us"]) and _positive(row["llama_decode_us"]), name
        # (the loop's share is what is left of a step beside the decodes and the laps, medians
        # of spans that differ by the prefill's decode: below zero on a noisy machine, 4 tokens)
        assert _finite(row["non_decode_us"]) and math.isfinite(row["loop_us"]), name
        pieces = row["pieces_us_per_token"]
        assert "pick: combine lanes + sample" in pieces and "  llama_decode" in pieces, name
        assert all(_finite(us) for us in pieces.values()), name
    # the laps are the loop's own clock: nothing is wrapped
    import llama_cpp

    assert llama_cpp.llama_decode.__name__ == "llama_decode"


def test_build_synthetic_reuses_the_file(tmp_path: Path) -> None:
    first = build_synthetic("tiny", tmp_path)
    stamp = first.stat().st_mtime_ns
    assert build_synthetic("tiny", tmp_path) == first
    assert first.stat().st_mtime_ns == stamp


@pytest.mark.parametrize(
    "argv",
    [
        ["--repeat", "0"],
        ["--max-tokens", "0"],
        ["--methods", "amulet,nonsense"],
        ["--kernel-sizes", "big"],
        ["--kernel-sizes", "4"],
        ["--kernel-sizes", "99999999999"],  # (745 GiB asked for once every run was made)
        ["--threads", "0"],
        ["--synthetic", "tiny", "--model", "x.gguf"],
    ],
)
def test_bad_input_is_one_sentence_and_exit_2(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["bench", "--quiet", *argv])
    captured = capsys.readouterr()
    assert code == 2
    assert captured.out == ""
    assert captured.err.startswith("localpref: ") and captured.err.count("\n") == 1


@pytest.mark.parametrize("mode", [[], ["--server", "--clients", "1"]])
def test_one_token_is_refused_where_a_rate_needs_two(
        mode: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    """--max-tokens 1 ran and printed NaN ratios and a steer share of 111 %: a run's
    tokens/s counts the tokens after the first over the time from the first to the last."""
    assert main(["bench", "--quiet", "--max-tokens", "1", *mode]) == 2
    assert capsys.readouterr().err.startswith(
        "localpref: --max-tokens must be 2 or more: a ")


def test_a_synthetic_dir_that_is_a_file_is_named(tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    afile = tmp_path / "afile"
    afile.write_text("kept")
    code = main(["bench", "--quiet", "--synthetic", "tiny", "--synthetic-dir", str(afile)])
    assert code == 2 and afile.read_text() == "kept"
    assert capsys.readouterr().err == (f"localpref: --synthetic-dir {afile} exists and is not a "
                                       "folder.\n")


def test_settings_always_measure_the_references() -> None:
    settings = BenchSettings(methods=("pad",))
    assert settings.measured_methods == ("base", "contrastive", "pad")
    with pytest.raises(SettingsError):
        BenchSettings(preference="  ")


def test_the_bench_offers_every_synthetic_shape() -> None:
    from localpref.commands.bench import SYNTHETIC_SHAPES
    from localpref.synthetic import SHAPES

    assert set(SYNTHETIC_SHAPES) == set(SHAPES)
    assert SHAPES["262k"].vocab_size == 262144 and 0.8e9 < SHAPES["262k"].n_params < 1.0e9
    assert 1.1e9 < SHAPES["1b"].n_params < 1.3e9


def test_lanes_decoded_together_are_bit_exact_on_cpu(model: Model) -> None:
    report = bench_exactness(model, 6, lambda message: None)
    assert report["steps"] == 6 and report["gpu_layers"] == 0
    assert set(report["batches"]) == {"2", "4", "8"}
    for size, row in report["batches"].items():
        assert row["bit_exact"] is True and row["max_abs_diff"] == 0.0, size
        assert len(row["lanes"]) == int(size)
        for lane in row["lanes"]:
            assert lane == {"max_abs_diff": 0.0, "differing_steps": 0,
                            "greedy_disagreements": 0, "first_disagreement": None}
    assert report["bit_exact"] is True and report["greedy_disagreements"] == 0
    assert format_exactness(report).splitlines()[1:] == [
        "  2 lanes: bit-exact", "  4 lanes: bit-exact", "  8 lanes: bit-exact"]


def test_a_tool_that_cannot_open_all_its_lanes_leaves_none_open(bundled_path: Path) -> None:
    """The exactness bench opened its 8 lanes one by one: with a chat holding two, it failed
    at the seventh and the six it had stayed open for good, and every later request of the
    process waited for lanes forever (a clean-clone CI run hung so)."""
    with Model(bundled_path, max_lanes=4, n_ctx=512, n_threads=1) as small:
        chat = small.chat(preference="concise", max_tokens=4)
        chat.send("Hi")
        held = small.context.max_lanes - small.context.free_lanes
        assert held == 2
        with pytest.raises(ModelError, match="All 4 lanes of the context are in use"):
            bench_exactness(small, 2, lambda message: None, batch_sizes=(2, 4))
        assert small.context.free_lanes == 2
        chat.close()
        assert small.generate("Hi", preference="concise", max_tokens=3).text


def test_exactness_report_says_how_far_lanes_differ() -> None:
    lanes = [{"max_abs_diff": 0.25, "differing_steps": 3, "greedy_disagreements": 1,
              "first_disagreement": 7},
             {"max_abs_diff": 0.0, "differing_steps": 0, "greedy_disagreements": 0,
              "first_disagreement": None}]
    report = {"steps": 256, "gpu_layers": -1, "batches": {
        "2": {"bit_exact": False, "max_abs_diff": 0.25, "greedy_disagreements": 1,
              "lanes": lanes}}}
    assert format_exactness(report).splitlines()[1] == (
        "  2 lanes: NOT bit-exact, largest |difference| 0.25; greedy token differs on 1 of 512 "
        "lane-steps, first at step 7")


def test_exactness_command_prints_one_json_object(
    synthetic_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["bench", "--exactness", "--json", "--quiet", "--synthetic", "tiny",
                 "--synthetic-dir", str(synthetic_dir), "--max-tokens", "5", "--threads", "1"])
    captured = capsys.readouterr()
    assert code == 0 and captured.err == ""
    report = json.loads(captured.out)
    assert report["model"].startswith("synthetic-llama") and report["steps"] == 5
    assert [len(row["lanes"]) for row in report["batches"].values()] == [2, 4, 8]
    # The tiny shape (head size 16) is not always bit-exact on CPU: the report says by how much.
    for row in report["batches"].values():
        assert row["bit_exact"] == (row["max_abs_diff"] == 0.0)
        assert row["max_abs_diff"] == max(lane["max_abs_diff"] for lane in row["lanes"])
        for lane in row["lanes"]:
            assert (lane["differing_steps"] == 0) == (lane["max_abs_diff"] == 0.0)
            assert 0 <= lane["greedy_disagreements"] <= lane["differing_steps"] <= 5
    assert report["bit_exact"] == all(row["bit_exact"] for row in report["batches"].values())


def test_the_lane_benchmark_measures_eight_lanes_when_the_context_holds_them(
    model: Model,
) -> None:
    lanes = bench_lanes(model, BenchSettings(max_tokens=2, repeat=1), lambda message: None)
    assert set(lanes["ms_per_step"]) == set(LANE_LAYOUTS)  # the model holds 8 lanes
    assert lanes["ms_per_step"]["8_lanes_batched"] > 0
    assert lanes["cost_vs_1_lane"]["1_lane"] == pytest.approx(1.0)


@pytest.mark.parametrize(("argv", "sentence"), [
    # the chat failed once every other part had run, their figures lost
    (["--ctx", "256", "--max-tokens", "8"], "The benchmark's 10-turn chat takes about "),
    # the runs stopped at the window without a word, two methods' runs of different lengths
    (["--ctx", "600", "--max-tokens", "700"], "A run's prompt (40 tokens) and --max-tokens 700 "
                                              "do not fit in the window of 600 tokens; lower "
                                              "--max-tokens or raise --ctx."),
])
def test_a_window_too_small_is_refused_before_anything_runs(
        argv: list[str], sentence: str, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["bench", *argv, "--repeat", "1", "--threads", "1", "--kernel-sizes", "16",
                 "--methods", "base"])
    captured = capsys.readouterr()
    assert code == 2 and captured.out == ""
    assert captured.err.startswith(f"localpref: {sentence}")
    assert "bench: warming up" not in captured.err  # (nothing ran)


@pytest.mark.parametrize(("argv", "sentence"), [
    (["--server", "--methods", "base"], "bench --server does not read --methods; leave it out."),
    (["--server", "--kernel-sizes", "4096"],
     "bench --server does not read --kernel-sizes; leave it out."),
    (["--batch", "2", "--prompt", "Hi"], "bench --batch does not read --prompt; leave it out."),
    (["--batch", "--repeat", "2"], "bench --batch does not read --repeat; leave it out."),
    (["--exactness", "--preference", "formal"],
     "bench --exactness does not read --preference; leave it out."),
    (["--profile", "--kernel-sizes", "4096"],
     "bench --profile does not read --kernel-sizes; leave it out."),
    (["--synthetic-dir", "anywhere"], "--synthetic-dir goes with --synthetic."),
    (["--server", "--gpu-layers", "-1"], "bench --server does not read --gpu-layers; leave it "
                                         "out."),
    (["--batch", "--ctx", "4096"], "bench --batch does not read --ctx; leave it out."),
    (["--server", "--methods", "base", "--ctx", "2048"],  # (--ctx is read: --methods named)
     "bench --server does not read --methods; leave it out."),
])
def test_a_flag_the_chosen_bench_would_ignore_is_one_sentence(
        argv: list[str], sentence: str, capsys: pytest.CaptureFixture[str]) -> None:
    """Each of these ran and measured what it would have measured without the flag."""
    assert main(["bench", "--quiet", "--max-tokens", "2", *argv]) == 2
    assert capsys.readouterr() == ("", f"localpref: {sentence}\n")


@pytest.mark.parametrize("mode", [["--profile"], ["--exactness"], ["--server"], ["--batch"], []])
def test_each_bench_gets_the_defaults_of_the_flags_left_out(mode: list[str]) -> None:
    from localpref.bench import BENCH_METHODS, DEFAULT_PREFERENCE, DEFAULT_PROMPT
    from localpref.cli import build_parser
    from localpref.commands.bench import READ_BY, REPEAT, check_flags_read

    given = {"--profile": ["--methods", "pad", "--prompt", "Hi", "--preference", "formal",
                           "--repeat", "5"],
             "--server": ["--prompt", "Hi", "--preference", "formal", "--repeat", "5"],
             "--batch": ["--preference", "formal"], "--exactness": []}
    args = build_parser().parse_args(["bench", *mode, *given.get(mode[0] if mode else "", [])])
    check_flags_read(args)  # what each bench reads is let through ...
    read = READ_BY[mode[0]] if mode else ("--methods", "--prompt", "--preference", "--repeat")
    assert args.methods == ("pad" if "--methods" in read and mode else ",".join(BENCH_METHODS))
    assert args.prompt == ("Hi" if "--prompt" in read and mode else DEFAULT_PROMPT)
    assert args.preference == ("formal" if "--preference" in read and mode
                               else DEFAULT_PREFERENCE)
    assert args.repeat == (5 if "--repeat" in read and mode else REPEAT)  # ... else defaults


@pytest.mark.parametrize(("signum", "exit_code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_bench_stopped_midway_says_it_prints_no_figures(signum: int, exit_code: int) -> None:
    """Ctrl-C ended a bench with a blank line, SIGTERM with nothing: no word of why no
    table came."""
    process = subprocess.Popen(
        [sys.executable, "-m", "localpref.cli", "bench", "--max-tokens", "8", "--threads", "1"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # (as a terminal's)
    assert process.stderr is not None
    first = process.stderr.readline()  # (the warm-up's line: the model loaded)
    assert first.startswith("bench: warming up"), first
    process.send_signal(signum)
    try:
        out, err = process.communicate(timeout=120)
    finally:
        process.kill()  # (a hang at exit, once: the close waited for a read the signal cut)
    assert process.returncode == exit_code, err
    assert out == "" and "Traceback" not in err
    assert err.endswith("localpref: stopped; a bench cut short prints no figures.\n")
