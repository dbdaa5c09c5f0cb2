"""Ctrl-C during ``localpref eval``: the finished answers stay, the command says so and exits
130, and the same command then finishes the grid (a real process, a real SIGINT)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

from localpref.evaluation.records import read_rows

QUESTIONS = [f"Give me one tip about {topic}." for topic in (
    "sleep", "tea", "running", "reading", "cooking", "saving money", "gardening", "music")]


def test_ctrl_c_keeps_the_answers_and_the_same_command_finishes(tmp_path: Path) -> None:
    dataset = tmp_path / "tips.json"
    dataset.write_text(json.dumps([{"question": q} for q in QUESTIONS]), encoding="utf-8")
    out = tmp_path / "out"
    argv = [sys.executable, "-m", "localpref.cli", "eval", "--dataset", str(dataset), "--methods",
            "base,amulet", "--preferences", "concise", "--max-tokens", "24", "--threads", "1",
            "--scorers", "length", "--out", str(out), "--no-progress"]
    # A terminal's Ctrl-C: the test may run where SIGINT is ignored (a background job).
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    generations = out / "generations.jsonl"
    deadline = time.monotonic() + 300
    while not list(read_rows(generations)) and time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=300)
    assert process.returncode == 130, err
    assert err.strip().splitlines()[-1] == (
        f"localpref: stopped; the finished answers are kept in {out}; run the same command to "
        "continue.")
    kept = list(read_rows(generations))
    assert 1 <= len(kept) < 2 * len(QUESTIONS)

    finished = subprocess.run(argv, capture_output=True, text=True, timeout=600, check=False)
    assert finished.returncode == 0, finished.stderr
    rows = list(read_rows(generations))
    assert len(rows) == 2 * len(QUESTIONS) and len({r["id"] for r in rows}) == len(rows)
    assert rows[:len(kept)] == kept
