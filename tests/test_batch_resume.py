"""`localpref batch` killed with SIGKILL mid-run (a real subprocess), then run again: the file
ends complete, every custom_id once, in input order, and what was written before is kept."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

from batch_helpers import chat, line, read_answers, write_batch

import localpref

PROMPTS = ["Name a fruit.", "What is rain?", "Describe the sea.", "Say hello.",
           "Give me a tip for sleep.", "What is a cat?", "Count to five.", "Name a colour.",
           "Tell me about tea.", "How do I boil an egg?"]


def whole_lines(path) -> list[str]:
    if not path.exists():
        return []
    text = path.read_text(encoding="utf-8")
    return text[: text.rfind("\n") + 1].splitlines()


def test_a_run_killed_mid_file_is_finished_by_the_next_run(batch_model, tmp_path) -> None:
    items = [line(f"q{i}", chat(prompt, tokens=24, **({"localpref": {"preference": "concise"}}
                                                      if i % 2 else {})))
             for i, prompt in enumerate(PROMPTS)]
    source = write_batch(tmp_path / "in.jsonl", items)
    out = tmp_path / "out.jsonl"
    command = [sys.executable, "-m", "localpref.cli", "batch", str(source), "--out", str(out),
               "--parallel", "2", "--threads", "1", "--quiet"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                               env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        deadline = time.monotonic() + 600
        while not whole_lines(out) and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert process.poll() is None, process.stderr.read().decode()
        process.send_signal(signal.SIGKILL)
        process.wait(60)
    finally:
        if process.poll() is None:
            process.kill()
        process.stderr.close()
    before = whole_lines(out)
    assert 1 <= len(before) < len(items)

    summary = localpref.batch(source, out, model=batch_model, parallel=2, progress=False)
    answers = read_answers(out)
    assert [a["custom_id"] for a in answers] == [item["custom_id"] for item in items]
    assert summary.skipped == len(before) and summary.done == len(items) - len(before)
    assert all(a["response"]["status_code"] == 200 for a in answers)
    assert all(a["response"]["body"]["choices"][0]["message"]["content"] for a in answers)
    by_id = {a["custom_id"]: a for a in answers}
    for raw in before:  # every line written before the kill is in the file unchanged
        kept = json.loads(raw)
        assert by_id[kept["custom_id"]] == kept
