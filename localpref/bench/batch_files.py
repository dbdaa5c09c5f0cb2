"""The batch part of the benchmark (``localpref bench --batch``): one batch file of N steered
requests of fixed length answered by ``localpref.batch`` one after another (``parallel=1``),
``parallel`` at once in one process, and over Ray actors with the same CPUs in all.

Each figure is aggregate tokens/s: every answer's tokens over the wall clock from the first
line to the last, prefill included, model loading and Ray's start-up excluded (those are
reported on their own). The runs are interleaved in one order only; the machine's load average
is recorded beside them because other work on the machine moves every figure.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from localpref.bench.machine import load_average
from localpref.errors import LocalprefError


def read_answers(path: Path) -> list[dict[str, Any]]:
    return [json.loads(raw) for raw in path.read_text(encoding="utf-8").splitlines()]

#: The requests' prompts, cycled (different prompts, as in a real file).
PROMPTS = (
    "How do I keep basil alive?", "What is a good first pet?", "Explain how rain forms.",
    "How should I start running?", "Why is the sky blue?", "How do I make bread at home?",
    "What makes a good team meeting?", "How do I learn to draw?",
)


def write_requests(path: Path, count: int, max_tokens: int, model_id: str,
                   preference: str) -> Path:
    """``count`` chat lines, the recommended steering toward ``preference``, ``max_tokens``
    each (end tokens ignored, so every answer has exactly that many)."""
    with open(path, "w", encoding="utf-8") as handle:
        for index in range(count):
            body = {"model": f"{model_id}:{preference}", "max_tokens": max_tokens,
                    "messages": [{"role": "user", "content": PROMPTS[index % len(PROMPTS)]}],
                    "localpref": {"ignore_eos": True}}
            handle.write(json.dumps({"custom_id": f"bench-{index}", "method": "POST",
                                     "url": "/v1/chat/completions", "body": body}) + "\n")
    return path


def bench_batch(model: str | None, *, requests: int = 64, max_tokens: int = 96,
                parallel: int = 4, ray: bool = True,
                n_threads: int | None = None, preference: str = "concise",
                progress: Callable[[str], None] = lambda message: None) -> dict[str, Any]:
    """The batch row: sequential, ``parallel`` in one process on ``n_threads`` threads
    (default: the cores this process may use), and (``ray``) as many Ray actors of 1 CPU as
    that process had threads, ``parallel / actors`` lines at once each: the same CPUs and the
    same lines in flight, so their ratio is what Ray costs."""
    from localpref.api import load
    from localpref.batches.ray_runner import local_actor_limit
    from localpref.batches.run import batch
    from localpref.server.batch_answer import served_id

    threads = n_threads or len(os.sched_getaffinity(0))
    ray_actors = min(threads, local_actor_limit())  # (more threads than cores: a local Ray's cap)
    with load(model, max_lanes=2) as loaded:
        model_id = served_id(loaded, model)
        model_name = loaded.name
    report: dict[str, Any] = {"model": model_name, "requests": requests,
                              "max_tokens": max_tokens, "threads": threads}
    with tempfile.TemporaryDirectory(prefix="localpref-bench-batch-") as folder:
        source = write_requests(Path(folder) / "in.jsonl", requests, max_tokens, model_id,
                                preference)

        def run(name: str, **options: Any) -> dict[str, Any]:
            progress(f"batch: {name} ({requests} requests of {max_tokens} tokens)")
            out = Path(folder) / f"{name}.jsonl"
            started = time.perf_counter()
            summary = batch(source, out, model=model, progress=False, **options)
            wall = time.perf_counter() - started
            if summary.failed:
                first = next(line for line in read_answers(out) if line["error"])
                raise LocalprefError(f"{summary.failed} bench requests failed: "
                                     f"{first['error']['message']}")
            return {"seconds": round(summary.seconds, 2), "tokens": summary.tokens,
                    "tokens_per_s": round(summary.tokens_per_s, 2),
                    "start_s": round(wall - summary.seconds, 2), "load_average": load_average()}

        report["sequential"] = run("sequential", parallel=1, n_threads=threads)
        report["parallel"] = {"parallel": parallel,
                              **run("parallel", parallel=parallel, n_threads=threads)}
        report["speedup"] = round(report["parallel"]["tokens_per_s"]
                                  / report["sequential"]["tokens_per_s"], 3)
        if ray:
            each = max(1, -(-parallel // ray_actors))
            report["ray"] = {"actors": ray_actors, "cpus_per_actor": 1, "parallel": each,
                             **run("ray", parallel=each, ray=True, ray_actors=ray_actors,
                                   ray_cpus_per_actor=1.0)}
            report["ray_to_one_process"] = round(report["ray"]["tokens_per_s"]
                                                 / report["parallel"]["tokens_per_s"], 3)
    return report


def format_batch(report: dict[str, Any]) -> str:
    """The batch row as a small text table."""
    rows = [("one after another", report["sequential"]),
            (f"batch --parallel {report['parallel']['parallel']}", report["parallel"])]
    if "ray" in report:
        ray = report["ray"]
        rows.append((f"--ray: {ray['actors']} actors x 1 CPU, --parallel {ray['parallel']}",
                     ray))
    lines = [f"Batch files: {report['requests']} requests of {report['max_tokens']} tokens, "
             f"{report['model']}, {report['threads']} threads",
             f"{'run':<44} {'tokens/s':>9} {'seconds':>8} {'start s':>8} {'load':>6}"]
    for name, row in rows:
        lines.append(f"{name:<44} {row['tokens_per_s']:>9.1f} {row['seconds']:>8.1f} "
                     f"{row['start_s']:>8.1f} {row['load_average'] or 0:>6.1f}")
    lines.append(f"batch / one after another: {report['speedup']:.2f}x")
    if "ray_to_one_process" in report:
        lines.append(f"ray / one process: {report['ray_to_one_process']:.2f}x")
    return "\n".join(lines)
