"""`localpref batch --ray`: a local Ray cluster of 2 CPUs, 2 actors of 1 CPU each, gives the same
answers file as one machine, and still a complete one when an actor is killed mid-run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from batch_helpers import essentials, mixed_lines, read_answers, write_batch
from process_helpers import wait_for_lines

import localpref
from localpref.batches.leftovers import alive, descendant_pids, is_ray_process, parent_pid
from localpref.batches.lines import read_lines
from localpref.batches.ray_runner import (
    RayPool,
    RaySettings,
    check_fits,
    check_local_actors,
    interrupt_noticed,
    room_for_actors,
    run_ray,
)
from localpref.batches.recorder import Recorder
from localpref.cli import main
from localpref.engine import available_cores
from localpref.errors import RunFailedError, SettingsError
from localpref.evaluation.records import read_rows

ray = pytest.importorskip("ray")

TOKENS = 12


@pytest.fixture(scope="module")
def ray_cluster():
    """One local Ray for the module (starting one takes seconds)."""
    ray.init(num_cpus=2, include_dashboard=False, object_store_memory=128 * 1024 * 1024,
             configure_logging=False)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def local_answers(batch_model, tmp_path_factory):
    """The file answered on one machine, without Ray."""
    folder = tmp_path_factory.mktemp("batch-local")
    source = write_batch(folder / "in.jsonl", mixed_lines(TOKENS)[:12])
    localpref.batch(source, folder / "out.jsonl", model=batch_model, parallel=2, progress=False)
    return source, [essentials(answer) for answer in read_answers(folder / "out.jsonl")]


def test_two_ray_actors_give_the_same_file_as_one_machine(ray_cluster, local_answers,
                                                         tmp_path) -> None:
    source, expected = local_answers
    out = tmp_path / "out.jsonl"
    summary = localpref.batch(source, out, ray=True, ray_actors=2, ray_cpus_per_actor=1,
                              parallel=2, progress=False)
    assert [essentials(answer) for answer in read_answers(out)] == expected
    assert summary.done == len(expected) and summary.skipped == 0


def test_more_actors_than_the_cluster_holds_run_as_many_as_it_does(
        ray_cluster, local_answers, tmp_path, capsys) -> None:
    """Three actors of one CPU on a Ray of two CPUs (a script's own ``ray.init``): Ray waited
    for the third actor's CPU for good, and the batch with it."""
    source, expected = local_answers
    out = tmp_path / "out.jsonl"
    summary = localpref.batch(source, out, ray=True, ray_actors=3, ray_cpus_per_actor=1,
                              parallel=2, progress=False)
    assert [essentials(answer) for answer in read_answers(out)] == expected
    assert summary.done == len(expected)
    assert ("localpref: the Ray cluster's nodes have room for 2 actors of 1 CPU, not 3; "
            "running 2.\n") in capsys.readouterr().err


def test_an_actor_killed_mid_run_still_gives_a_complete_file(ray_cluster, local_answers,
                                                             tmp_path) -> None:
    source, expected = local_answers
    out = tmp_path / "out.jsonl"
    recorder = Recorder(read_lines(source), out, progress=False)
    killed: list[int] = []

    def kill_once(recorder: Recorder, actors: list) -> None:
        if not killed and recorder.done >= 2:
            ray.kill(actors[0], no_restart=False)  # Ray restarts it and retries its calls
            killed.append(recorder.done)

    run_ray(RaySettings(actors=2, cpus_per_actor=1, parallel=2), recorder, callback=kill_once)
    summary = recorder.finish()
    assert killed and killed[0] < len(expected)
    assert summary.done == len(expected)
    assert [essentials(answer) for answer in read_answers(out)] == expected


def test_an_actor_that_stays_dead_stops_the_run_as_a_failure_keeping_the_answers(
        ray_cluster, local_answers, tmp_path, capsys, monkeypatch) -> None:
    """Past its restarts an actor's calls fail: the run stops in one sentence, with the
    answers written so far kept, and the command exits 1, not the 2 of a bad file."""
    source, expected = local_answers
    out = tmp_path / "out.jsonl"
    recorder = Recorder(read_lines(source), out, progress=False)

    def kill_for_good(recorder: Recorder, actors: list) -> None:
        if recorder.done >= 2:
            ray.kill(actors[0], no_restart=True)

    with pytest.raises(RunFailedError) as failed:
        run_ray(RaySettings(actors=2, cpus_per_actor=1, parallel=2), recorder,
                callback=kill_for_good)
    assert str(failed.value) == ("A Ray actor died more than 4 times; the answers so far are "
                                 "kept: run the same command again to finish.")
    written = [essentials(answer) for answer in read_answers(out)]
    assert 2 <= len(written) < len(expected)
    assert all(answer in expected for answer in written)

    def fails(*args, **kwargs):  # what run_ray raised, as the command meets it
        raise failed.value

    monkeypatch.setattr("localpref.batches.run.batch", fails)
    code = main(["batch", str(source), "--out", str(tmp_path / "again.jsonl"), "--ray"])
    assert code == 1
    assert capsys.readouterr().err == f"localpref: {failed.value}\n"


def test_eval_on_ray_writes_the_rows_of_a_run_here(ray_cluster, tmp_path) -> None:
    dataset = tmp_path / "tiny.json"
    dataset.write_text(json.dumps([{"index": 0, "question": "How do I keep basil alive?"},
                                   {"index": 1, "question": "What is a good first pet?"}]),
                       encoding="utf-8")

    def grid(out, *extra: str) -> list[str]:
        return ["eval", "--dataset", str(dataset), "--methods", "base,amulet",
                "--preferences", "concise,uplifting", "--prompts", "library",
                "--max-tokens", "8", "--ctx", "512", "--bootstrap", "50", "--threads", "1",
                "--scorers", "length", "--out", str(out), "--no-progress", *extra]

    def rows(out) -> dict[str, tuple]:
        return {row["id"]: (row["text"], row["tokens"], row.get("reused_from") is not None)
                for row in read_rows(out / "generations.jsonl")}

    assert main(grid(tmp_path / "here")) == 0
    assert main(grid(tmp_path / "ray", "--ray", "--ray-actors", "2")) == 0
    here, there = rows(tmp_path / "here"), rows(tmp_path / "ray")
    assert len(here) == 8 and here == there


def test_a_cluster_that_cannot_hold_an_actor_is_one_sentence(ray_cluster) -> None:
    # the module's Ray: one node of 2 CPUs, counted in Ray's units (2.0 // 0.1 is 19.0)
    assert [room_for_actors(cpus) for cpus in (1, 2, 0.1, 0.2, 0.3, 3)] == [2, 1, 20, 10, 6, 0]
    check_fits(2)
    with pytest.raises(SettingsError) as too_little:  # (room_for_actors divided by zero)
        RayPool(RaySettings(cpus_per_actor=0.00004)).__enter__()
    assert str(too_little.value) == ("An actor needs at least 0.0001 CPU, the least Ray "
                                     "counts (got 4e-05); give a larger --ray-cpus-per-actor.")
    with pytest.raises(SettingsError) as refused:  # Ray would wait for such a node forever
        check_fits(4)
    assert str(refused.value) == ("No node of the Ray cluster has 4 CPUs for an actor (the "
                                  "largest has 2); give a smaller --ray-cpus-per-actor.")


def test_a_local_ray_with_more_actors_than_cores_is_one_sentence(tmp_path, capsys) -> None:
    """``--ray-actors 100000`` on a local Ray started worker after worker for minutes and
    answered nothing: each actor is a process with the model. Batch and eval refuse it with
    their other flags, before a model loads or a folder is made."""
    limit = max(available_cores(), 2)
    check_local_actors(limit)
    cores = available_cores()
    sentence = (f"A local Ray runs its actors on the {cores} core{'s' if cores != 1 else ''} "
                f"this process may use, so 100,000 actors are too many: give {limit} or "
                "fewer, or a Ray cluster's address.")
    with pytest.raises(SettingsError) as refused:
        check_local_actors(100_000)
    assert str(refused.value) == sentence
    source = write_batch(tmp_path / "in.jsonl", mixed_lines(TOKENS)[:2])
    assert main(["batch", str(source), "--out", str(tmp_path / "out.jsonl"), "--ray",
                 "--ray-actors", "100000", "--quiet"]) == 2
    assert main(["batch", str(source), "--out", str(tmp_path / "out.jsonl"), "--ray",
                 "Local", "--ray-actors", "100000", "--quiet"]) == 2  # Ray's word, the same
    assert RaySettings(address=" local").local and not RaySettings(address="auto").local
    dataset = tmp_path / "tips.json"
    dataset.write_text(json.dumps([{"question": "How do I keep basil alive?"}]))
    assert main(["eval", "--dataset", str(dataset), "--out", str(tmp_path / "eval"), "--ray",
                 "--ray-actors", "100000"]) == 2
    assert capsys.readouterr().err == f"localpref: {sentence}\n" * 3
    assert not (tmp_path / "out.jsonl").exists() and not (tmp_path / "eval").exists()


def test_a_local_ray_gets_the_model_path_whole(tmp_path, monkeypatch) -> None:
    (tmp_path / "m.gguf").write_bytes(b"")
    monkeypatch.chdir(tmp_path)
    assert RayPool(RaySettings(model="m.gguf")).settings.model == str(tmp_path / "m.gguf")
    assert RayPool(RaySettings(model="m.gguf", address="head:6379")).settings.model == "m.gguf"
    assert RayPool(RaySettings(model="qwen2.5-1.5b-instruct")).settings.model == (
        "qwen2.5-1.5b-instruct")


def _ray_orphans() -> set[int]:
    """Live Ray processes that init has adopted (their own Ray's parent is gone)."""
    return {pid for pid in descendant_pids(1)
            if parent_pid(pid) == 1 and is_ray_process(pid) and alive(pid)}


def _batch_on_local_ray(source: Path, out: Path, **popen: Any) -> subprocess.Popen:
    """``localpref batch --ray`` (a local Ray, one actor) in a process of its own."""
    return subprocess.Popen(
        [sys.executable, "-m", "localpref.cli", "batch", str(source), "--out", str(out),
         "--ray", "--ray-actors", "1", "--threads", "1", "--quiet"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}, **popen)


def _wait_for_raylet(process: subprocess.Popen, deadline: float) -> None:
    while not any(b"raylet" in Path(f"/proc/{pid}/cmdline").read_bytes()
                  for pid in descendant_pids(process.pid) if alive(pid)):
        assert process.poll() is None and time.monotonic() < deadline, "Ray never started"
        time.sleep(0.02)


def _assert_no_orphans_beyond(before: set[int]) -> None:
    deadline = time.monotonic() + 10
    while (left := _ray_orphans() - before) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not left


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads processes from /proc")
def test_ctrl_c_while_a_local_ray_starts_leaves_none_of_its_processes(tmp_path) -> None:
    """Ray stopped during its start left its raylet's agents running, orphaned, ignoring
    SIGTERM; the batch now ends them. The interrupt comes as soon as the raylet runs (and
    again until the run ends)."""
    source = write_batch(tmp_path / "in.jsonl", mixed_lines(TOKENS))  # outlives the start
    before = _ray_orphans()
    # as from a terminal: a suite started in the background inherits SIGINT ignored
    process = _batch_on_local_ray(source, tmp_path / "out.jsonl",
                                  preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 120
    _wait_for_raylet(process, deadline)
    # Ray may let an interrupt pass unseen at some moments of its start: press again, as a
    # user would, until the run ends
    while process.poll() is None and time.monotonic() < deadline:
        process.send_signal(signal.SIGINT)
        time.sleep(0.3)
    _, error = process.communicate(timeout=120)
    assert process.returncode == 130, error
    assert b"Traceback" not in error
    _assert_no_orphans_beyond(before)


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads processes from /proc")
def test_sigterm_mid_run_on_ray_says_stopped_and_exits_143(tmp_path) -> None:
    """ray.init put Ray's own SIGTERM handler in place of the batch's: a crash dump and exit 1
    or 15 where the run says it stopped and exits 143 (without Ray it did)."""
    source = write_batch(tmp_path / "in.jsonl", mixed_lines(64))  # outlives two answers
    out = tmp_path / "out.jsonl"
    before = _ray_orphans()
    process = _batch_on_local_ray(source, out)
    wait_for_lines(out, 2, process)
    process.send_signal(signal.SIGTERM)
    output, error = process.communicate(timeout=120)
    assert process.returncode == 143, error
    # the one line: not Ray's notice that the cluster uses token authentication on stderr,
    # nor the raylet's lines on stdout that the killed actor's calls were being retried
    assert error.strip().startswith(b"localpref: stopped;") and b"\n" not in error.strip()
    assert output == b""
    assert all(answer["custom_id"] for answer in read_answers(out))  # whole lines
    _assert_no_orphans_beyond(before)


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads processes from /proc")
def test_an_actor_killed_in_a_command_run_is_retried_without_rays_lines(tmp_path) -> None:
    """Ray's driver printed "(raylet) Task ModelActor.answer failed. There are infinite
    retries remaining..." (and a dead worker's advice about the out-of-memory killer) on the
    run's stdout: the run goes on and finishes, and says nothing but its summary."""
    lines = mixed_lines(32)
    source = write_batch(tmp_path / "in.jsonl", lines)
    out = tmp_path / "out.jsonl"
    before = _ray_orphans()
    process = _batch_on_local_ray(source, out)
    wait_for_lines(out, 1, process)
    actor = next(pid for pid in descendant_pids(process.pid) if alive(pid)
                 and b"ModelActor" in Path(f"/proc/{pid}/cmdline").read_bytes())
    os.kill(actor, signal.SIGKILL)  # while it answers the next lines
    output, error = process.communicate(timeout=300)
    assert process.returncode == 0, error
    assert output == b""
    assert error.decode().startswith(f"localpref: batch: {len(lines)} done (") \
        and error.count(b"\n") == 1
    assert sorted(answer["custom_id"] for answer in read_answers(out)) == sorted(
        line["custom_id"] for line in lines)
    _assert_no_orphans_beyond(before)


class _DropsAnInterrupt:
    """An object whose finalizer gets a Ctrl-C: Python reports the KeyboardInterrupt
    raised there as "ignored" and goes on, as it does in logging's at-fork hook while Ray
    forks its processes."""

    def __del__(self) -> None:
        signal.raise_signal(signal.SIGINT)
        for _ in range(1000):  # the handler runs here, inside the finalizer
            pass


def test_a_ctrl_c_that_python_drops_while_ray_starts_still_interrupts(monkeypatch) -> None:
    """A Ctrl-C that came while ``ray.init`` forked was dropped (1 try in 9) and the batch
    went on to finish with status 0."""
    dropped: list[type[BaseException] | None] = []
    monkeypatch.setattr(sys, "unraisablehook", lambda report: dropped.append(report.exc_type))
    # as from a terminal: a suite started in the background inherits SIGINT ignored
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    went_on = False
    try:
        with pytest.raises(KeyboardInterrupt), interrupt_noticed():
            _DropsAnInterrupt()  # made and finalized at once
            went_on = True
    finally:
        signal.signal(signal.SIGINT, previous)
    assert dropped == [KeyboardInterrupt] and went_on
    assert signal.getsignal(signal.SIGINT) is previous


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads processes from /proc")
def test_sigterm_while_a_local_ray_starts_says_stopped_and_exits_143(tmp_path) -> None:
    """ray.init puts its own handler in place as it begins (``sys.exit(15)``): a SIGTERM while
    Ray started ended the batch with status 15 and no word."""
    source = write_batch(tmp_path / "in.jsonl", mixed_lines(TOKENS))
    before = _ray_orphans()
    process = _batch_on_local_ray(source, tmp_path / "out.jsonl")
    _wait_for_raylet(process, time.monotonic() + 120)
    process.send_signal(signal.SIGTERM)
    _, error = process.communicate(timeout=120)
    assert process.returncode == 143, error
    assert b"localpref: stopped;" in error and b"Traceback" not in error
    _assert_no_orphans_beyond(before)


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads processes from /proc")
def test_sigterm_while_evals_local_ray_starts_says_stopped_and_exits_143(tmp_path) -> None:
    """eval's Ray pool started outside the part that caught SIGTERM: status 1 or 143 with no
    word (and the model left open)."""
    dataset = tmp_path / "tiny.json"
    dataset.write_text(json.dumps(["How do I keep basil alive?", "What is a good first pet?"]),
                       encoding="utf-8")
    out = tmp_path / "out"
    before = _ray_orphans()
    process = subprocess.Popen(
        [sys.executable, "-m", "localpref.cli", "eval", "--dataset", str(dataset), "--methods",
         "base,pref", "--preferences", "concise", "--max-tokens", "8", "--threads", "1",
         "--out", str(out), "--no-progress", "--ray", "--ray-actors", "1"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    _wait_for_raylet(process, time.monotonic() + 120)
    process.send_signal(signal.SIGTERM)
    _, error = process.communicate(timeout=120)
    assert process.returncode == 143, error
    assert error.decode().strip() == (f"localpref: stopped; the finished answers are kept in "
                                      f"{out}; run the same command to continue.")
    _assert_no_orphans_beyond(before)
