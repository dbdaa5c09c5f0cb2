"""`localpref bench --server`, smoke-sized: the servers start, answer streamed requests from
concurrent clients, and the report holds every figure (no timing is asserted); the llama-server
baseline's settings, command line and build script (never compiled here); the staggered load
on a real ``localpref serve``."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from localpref.cli import main
from localpref.server import llama_server
from localpref.server.bench import (
    ServerBenchSettings,
    format_server_report,
    run_server_bench,
    start_localpref,
)
from localpref.server.bench_client import Target
from localpref.server.staggered import (
    StaggeredTiming,
    format_staggered,
    measure_staggered,
    request_lengths,
    staggered_report,
)
from localpref.server.stall import long_prompt, measure_stall, stall_seconds

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "build-llama-server.sh"


def test_server_bench_measures_both_servers_with_concurrent_clients() -> None:
    settings = ServerBenchSettings(max_tokens=2, rounds=1, clients=(1, 2), n_ctx=512, threads=1)
    report = run_server_bench(settings, progress=lambda message: None)
    assert report["model"] == "smollm2-135m-instruct" and report["max_tokens"] == 2
    assert (report["parallel"], report["lanes"]) == (4, 8)
    assert set(report["servers"]) == {"localpref base", "localpref steered",
                                      "llama-cpp-python base"}
    for rows in report["servers"].values():
        assert set(rows) == {"1", "2"}
        for clients, row in rows.items():
            assert row["requests"] == int(clients)  # every stream sent text
            assert 1 <= row["tokens"] <= 2 * int(clients)
            assert row["tokens_per_s"] > 0 and row["ttft_p95_ms"] >= row["ttft_p50_ms"] > 0
    # localpref's rows ignore end tokens: every stream writes all its tokens
    assert report["servers"]["localpref steered"]["2"]["tokens"] == 4
    assert set(report["base_ratio_to_llama_cpp_python"]) == {"1", "2"}
    assert set(report["ttft_ratio_to_llama_cpp_python"]) == {"1", "2"}
    paired = report["paired_to_llama_cpp_python"]
    for what, key in (("tokens_per_s", "base_ratio_to_llama_cpp_python"),
                      ("ttft_p50", "ttft_ratio_to_llama_cpp_python")):
        for clients in ("1", "2"):  # one round: its ratio is the ratio of the medians
            row = paired[what][clients]
            assert row["rounds"] == 1 and row["low"] == row["ratio"] == row["high"]
            assert row["ratio"] == pytest.approx(report[key][clients], abs=2e-3)
    assert 0 <= report["load_average"]["min"] <= report["load_average"]["max"]
    assert "long_prompt_stall" not in report and "steered_to_two_lane_limit" not in report
    table = format_server_report(report)
    assert "llama-cpp-python base" in table and "localpref base / llama-cpp-python base" in table
    assert "paired by round, 95 % interval, tokens/s: 1: " in table
    json.dumps(report)


def test_long_prompt_stall_on_localpref_serve(model) -> None:
    """Three streams, then a long prompt joins: the streams' longest gap and the joiner's
    first piece are measured, on a real ``localpref serve``."""
    settings = ServerBenchSettings(max_tokens=8, n_ctx=1024)
    process, target = start_localpref(settings, threads=1)
    try:
        timing = measure_stall(target, settings.prompt, max_tokens=64, prompt_tokens=300)
    finally:
        process.terminate()
        process.wait(timeout=60)
    assert timing.stall_s > 0 and timing.joiner_ttft_s is not None and timing.joiner_ttft_s > 0
    assert timing.joiner_prompt_tokens is not None
    assert 240 <= timing.joiner_prompt_tokens <= 420  # about 300 with the chat template


def test_long_prompt_is_about_as_long_as_asked(model) -> None:
    for tokens in (300, 1500):
        count = len(model.vocabulary.tokenize(long_prompt(tokens), add_special=False))
        assert 0.8 * tokens <= count <= 1.25 * tokens


def test_staggered_load_on_localpref_serve(model) -> None:
    """Clients sending requests of their own lengths one after another, Base and steered, on a
    real ``localpref serve``: every requested token arrives (end tokens ignored)."""
    settings = ServerBenchSettings(max_tokens=8, n_ctx=512)
    process, base = start_localpref(settings, threads=1)
    steered = Target("localpref steered", base.port, f"{base.model}:recommended:concise",
                     base.extra)
    lengths = [[3, 5], [4, 2], [6]]
    try:
        timings = [measure_staggered(target, settings.prompt, lengths)
                   for target in (base, steered)]
    finally:
        process.terminate()
        process.wait(timeout=60)
    for timing in timings:
        assert (timing.tokens, timing.requests) == (20, 5)
        assert timing.wall_s > 0 and timing.tokens_per_s == timing.tokens / timing.wall_s


def test_request_lengths_are_one_seeded_plan_within_bounds() -> None:
    plan = request_lengths(4, 6, 128)
    assert len(plan) == 4 and all(len(client) == 6 for client in plan)
    assert all(32 <= tokens <= 160 for client in plan for tokens in client)
    assert plan == request_lengths(4, 6, 128)  # every server gets the same work
    assert plan != request_lengths(4, 6, 128, seed=1)
    assert len({tokens for client in plan for tokens in client}) > 6  # lengths differ
    assert request_lengths(2, 3, 1) == [[1, 1, 1], [1, 1, 1]]


def test_staggered_report_takes_medians_and_the_ratio_to_llama_server() -> None:
    timings = {
        "localpref base": [StaggeredTiming(2.0, 300, 24), StaggeredTiming(1.5, 300, 24),
                           StaggeredTiming(3.0, 300, 24)],  # 150, 200, 100 tok/s
        "llama-server base": [StaggeredTiming(1.5, 300, 24), StaggeredTiming(1.5, 300, 24),
                              StaggeredTiming(1.0, 300, 24)],  # 200, 200, 300 tok/s
    }
    report = staggered_report(timings, [[32, 160], [40, 50]])
    assert (report["clients"], report["requests_per_client"]) == (2, 2)
    assert (report["tokens_min"], report["tokens_max"]) == (32, 160)
    assert report["servers"]["localpref base"] == {"tokens_per_s": 150.0, "tokens": 900,
                                                   "requests": 72, "rounds": 3}
    assert report["servers"]["llama-server base"]["tokens_per_s"] == 200.0
    assert report["base_ratio_to_llama_server"] == 0.75
    line = format_staggered(report)
    assert "2 clients, 2 requests each of 32-160 tokens" in line
    assert "localpref base 150.0 tok/s" in line and "0.75x" in line
    # round by round: 0.75, 1.0 and 1/3, geometric mean (0.25)^(1/3)
    paired = report["paired_base_ratio_to_llama_server"]
    assert paired["ratio"] == pytest.approx(0.25 ** (1 / 3), abs=1e-3)
    assert paired["rounds"] == 3 and 1 / 3 - 1e-3 <= paired["low"] <= paired["ratio"]
    assert paired["ratio"] <= paired["high"] <= 1.0 + 1e-3
    assert f"(paired by round, 95 % interval: {paired['ratio']:.2f}x [" in line
    alone = staggered_report({"localpref base": timings["localpref base"]}, [[8]])
    assert "base_ratio_to_llama_server" not in alone
    assert "llama-server" not in format_staggered(alone)


def test_stall_is_the_longest_gap_after_the_join() -> None:
    streams = [[0.0, 0.1, 0.2, 1.7, 1.8], [0.05, 0.15, 1.75], [0.0, 0.1]]
    assert stall_seconds(streams, joined_at=0.25) == pytest.approx(1.6)  # 0.15 -> 1.75
    assert stall_seconds(streams, joined_at=5.0) == 0.0
    assert stall_seconds([[0.0, 2.0, 2.1]], joined_at=1.0) == pytest.approx(2.0)  # spans it


def test_bench_server_flag_checks_its_settings(capsys) -> None:
    assert main(["bench", "--server", "--max-tokens", "0", "--quiet"]) == 2
    assert "--max-tokens must be 1 or more (got 0)." in capsys.readouterr().err
    assert main(["bench", "--server", "--repeat", "-1", "--quiet"]) == 2
    assert "--repeat must be 1 or more (got -1)." in capsys.readouterr().err


@pytest.mark.parametrize(("argv", "message"), [
    (["--server", "--baseline", "nope"],
     "Unknown baseline 'nope': choose among llama-cpp-python, llama-server."),
    (["--server", "--baseline", ","], "--baseline needs at least one value."),
    (["--server", "--clients", "0"], "--clients must be 1 or more (got 0)."),
    (["--server", "--clients", "1,600"], "--clients goes up to 256, what localpref serve "
                                         "--parallel 128 holds (got 600)."),
    # (the server bench measured the bundled model without a word)
    (["--server", "--synthetic", "tiny"], "--synthetic goes with the default bench, --profile "
                                          "or --exactness; --server and --batch measure "
                                          "--model."),
    (["--batch", "2", "--synthetic", "tiny"], "--synthetic goes with the default bench"),
    (["--server", "--clients", "two"], "--clients takes whole numbers (got 'two')."),
    (["--server", "--threads", "0"], "--threads must be from 1 to 512, llama.cpp's most (got 0)."),
    (["--baseline", "llama-server"], "--baseline goes with --server."),
    (["--clients", "1,2"], "--clients goes with --server."),
    (["--llama-server", "/bin/true"], "--llama-server goes with --server."),
    (["--server", "--baseline", "llama-server", "--llama-server", "/no/such/llama-server"],
     "--llama-server /no/such/llama-server: no executable file there."),
])
def test_bench_server_baseline_flags(argv, message, capsys) -> None:
    assert main(["bench", *argv, "--quiet"]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_a_server_that_does_not_start_is_named_with_its_own_sentence(capsys) -> None:
    """localpref serve's stderr went to /dev/null: "did not start (it printed '')"."""
    assert main(["bench", "--server", "--clients", "1", "--max-tokens", "8", "--repeat", "1",
                 "--threads", "1", "--ctx", "100000000", "--quiet"]) == 2
    assert capsys.readouterr().err == (
        "localpref: localpref serve did not start: A window of 100000000 tokens (--ctx, "
        "n_ctx) is more than SmolLM2-135M-Instruct was trained for (8192 tokens).\n")


@pytest.mark.parametrize("argv", [["--server", "--exactness"], ["--server", "--batch"],
                                  ["--profile", "--exactness"], ["--batch", "2", "--profile"]])
def test_one_bench_at_a_time(argv, capsys) -> None:
    """Two benches named at once: one ran, the other was dropped without a word."""
    with pytest.raises(SystemExit) as refused:
        main(["bench", *argv, "--quiet"])
    assert refused.value.code == 2 and "not allowed with argument" in capsys.readouterr().err
    for mode in (["--server"], ["--exactness"], ["--batch", "2"]):
        assert main(["bench", *mode, "--concurrent", "2", "--quiet"]) == 2
        assert capsys.readouterr().err.strip() == (
            "localpref: --concurrent goes with the default bench, not with --server, "
            "--exactness, --profile or --batch.")


def test_llama_server_baseline_without_a_build_names_the_script(tmp_path, monkeypatch,
                                                                 capsys) -> None:
    monkeypatch.setenv("LOCALPREF_CACHE", str(tmp_path))
    assert main(["bench", "--server", "--baseline", "llama-server,llama-cpp-python", "-q"]) == 2
    err = capsys.readouterr().err
    assert str(tmp_path / "llama-server" / "0.3.36" / "llama-server") in err
    assert "scripts/build-llama-server.sh" in err


def test_llama_server_settings_match_slots_to_lanes(tmp_path, monkeypatch) -> None:
    settings = ServerBenchSettings(baselines=("llama-server", "llama-cpp-python"))
    assert settings.clients == (1, 2, 4, 8) and (settings.parallel, settings.lanes) == (4, 8)
    assert settings.stall and settings.context >= settings.stall_prompt_tokens + 512
    assert ServerBenchSettings().clients == (1, 2, 4) and not ServerBenchSettings().stall
    assert ServerBenchSettings(clients=(1, 16)).lanes == 16
    monkeypatch.setenv("LOCALPREF_CACHE", str(tmp_path))
    binary = llama_server.cached_binary()
    binary.parent.mkdir(parents=True)
    binary.write_text("#!/bin/sh\n")
    binary.chmod(0o755)
    assert llama_server.find_binary(None) == binary
    command = llama_server.server_command(binary, Path("m.gguf"), 8080, threads=2,
                                          slots=settings.lanes, n_ctx=settings.context)
    joined = " ".join(command)
    assert command[0] == str(binary)
    assert "--parallel 8 " in joined and f"--ctx-size {8 * settings.context} " in joined
    assert " -nr -fa on " in joined and "--threads 2 --threads-batch 2" in joined
    assert "--model m.gguf --host 127.0.0.1 --port 8080" in joined


def _script(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=60, check=False)


def test_build_script_arguments(tmp_path) -> None:
    env = {"LOCALPREF_CACHE": str(tmp_path), "CMAKE_ARGS": "-DGGML_BLAS=ON"}
    done = _script("--help")
    assert done.returncode == 0 and "--cache-dir DIR" in done.stdout
    done = _script("--dry-run", "--jobs", "3", env=env)
    assert done.returncode == 0
    lines = done.stdout.strip().splitlines()
    assert lines[0] == "pip download --no-binary :all: --no-deps llama-cpp-python==0.3.36"
    for flag in ("-DLLAMA_BUILD_SERVER=ON", "-DLLAMA_BUILD_TOOLS=ON", "-DGGML_NATIVE=ON",
                 "-DLLAMA_BUILD_TESTS=OFF", "-DLLAMA_BUILD_EXAMPLES=OFF",
                 "-DCMAKE_BUILD_TYPE=Release"):
        assert flag in lines[1]
    assert lines[1].rstrip().endswith("-DGGML_BLAS=ON")  # the user's CMAKE_ARGS win
    assert lines[2] == "cmake --build <build> --target llama-server -j 3"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("LOCALPREF_CACHE", str(tmp_path))
        assert lines[-1] == str(llama_server.cached_binary())
        assert _script("--print-path", env=env).stdout.strip() == lines[-1]
    other = _script("--print-path", "--version", "0.3.35", "--cache-dir", str(tmp_path / "c"))
    assert other.stdout.strip() == str(tmp_path / "c" / "0.3.35" / "llama-server")
    for args, message in ((["--jobs", "0"], "--jobs takes a whole number of 1 or more"),
                          (["--version", "latest"], "--version takes a version such as"),
                          (["--cache-dir"], "--cache-dir needs a value."),
                          (["--frobnicate"], "unknown argument '--frobnicate'")):
        done = _script(*args, env=env)
        assert done.returncode == 2 and done.stdout == ""
        assert done.stderr.count("\n") == 1 and message in done.stderr


def test_build_script_reuses_the_cached_binary(tmp_path) -> None:
    binary = tmp_path / "llama-server" / "0.3.36" / "llama-server"
    binary.parent.mkdir(parents=True)
    binary.write_text("#!/bin/sh\n")
    binary.chmod(0o755)
    # PYTHON=false: a download or a build would fail; the cached binary needs neither.
    done = _script(env={"LOCALPREF_CACHE": str(tmp_path), "PYTHON": "false"})
    assert done.returncode == 0 and done.stdout.strip() == str(binary)


def _children(pid: int) -> set[int]:
    """The processes whose parent is ``pid`` (read from /proc)."""
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat[stat.rindex(")") + 2:].split()[1]) == pid:
                found.add(int(entry.name))
    return found


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat[stat.rindex(")") + 2] == "Z"  # ended, not yet reaped


def _terminated_with(bench: subprocess.Popen, children: set[int]) -> None:
    """SIGTERM ``bench``: it exits 143, and ``children`` end with it."""
    bench.send_signal(signal.SIGTERM)
    assert bench.wait(timeout=120) == 143
    deadline = time.monotonic() + 60
    while not all(_gone(pid) for pid in children) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert all(_gone(pid) for pid in children)


_TERMINATED_WHILE_STARTING = """
import os, signal, sys, time
from localpref.server.llama_server import killed_unless_started

def terminate(signum, frame):
    raise SystemExit(143)

signal.signal(signal.SIGTERM, terminate)
server = [sys.executable, "-c",
          "import os, sys, time; open(sys.argv[1], 'w').write(str(os.getpid())); "
          "time.sleep(120)", sys.argv[1]]
# the SIGTERM comes while Popen waits for the new process's exec, as a bench's can
with killed_unless_started(server,
                           preexec_fn=lambda: os.kill(os.getppid(), signal.SIGTERM)):
    time.sleep(60)
"""


def test_a_sigterm_while_a_server_process_is_being_started_leaves_no_process(
        tmp_path: Path) -> None:
    """Raised inside Popen (after the fork), the bench's SIGTERM left a server nobody knew
    of, serving until killed by hand (seen once in a loaded run of the test below)."""
    pid_file = tmp_path / "pid"
    run = subprocess.run([sys.executable, "-c", _TERMINATED_WHILE_STARTING, str(pid_file)],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 143, run.stderr
    deadline = time.monotonic() + 5
    while not pid_file.exists() and time.monotonic() < deadline:
        time.sleep(0.1)  # (a process left running writes its pid at once)
    if pid_file.exists():  # (killed before it ran, it writes none)
        time.sleep(0.2)
        assert _gone(int(pid_file.read_text()))


def test_sigterm_stops_the_servers_the_bench_started() -> None:
    """kill (SIGTERM, what CI timeouts and systemd send) ended the bench and left its
    servers running for good; now it stops them as Ctrl-C does, and exits 143."""
    bench = subprocess.Popen(
        [sys.executable, "-m", "localpref.cli", "bench", "--server", "--baseline",
         "llama-cpp-python", "--clients", "1", "--repeat", "50", "--max-tokens", "64",
         "--threads", "1"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        assert bench.stderr is not None
        for line in bench.stderr:  # the progress: both servers started
            if "round 1/" in line:
                break
        children = _children(bench.pid)
        assert len(children) == 2
        _terminated_with(bench, children)
        assert "Traceback" not in bench.stderr.read()
    finally:
        bench.kill()
        bench.wait()


def test_sigterm_while_a_server_starts_stops_it_too() -> None:
    """A server was stopped only once its start returned: a SIGTERM while localpref serve
    loaded left it serving, with no parent, until killed by hand."""
    bench = subprocess.Popen(
        [sys.executable, "-m", "localpref.cli", "bench", "--server", "--clients", "1",
         "--max-tokens", "8", "--repeat", "1", "--threads", "1"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        assert bench.stderr is not None
        for line in bench.stderr:
            if "starting localpref serve" in line:
                break
        deadline = time.monotonic() + 60
        while not (children := _children(bench.pid)) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert children  # localpref serve, still loading (it prints its line once ready)
        _terminated_with(bench, children)
    finally:
        bench.kill()
        bench.wait()
