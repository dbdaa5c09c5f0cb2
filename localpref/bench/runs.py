"""The methods part of the benchmark: every method decodes the same fixed-length greedy run,
interleaved within each repeat; medians over repeats and ratios paired within a repeat."""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field
from typing import Any

from localpref.bench.settings import BENCH_METHODS, BenchSettings, Progress


@dataclass
class Runs:
    """Per-repeat figures of one method."""

    stats: list[dict[str, Any]] = field(default_factory=list)

    def median(self, key: str) -> float:
        return statistics.median(float(s[key]) for s in self.stats)


def warm_up(model: Any, settings: BenchSettings) -> None:
    """A two-token run of every method (kernels compiled for the real arrays, caches hot)."""
    for name in settings.measured_methods:
        model.generate(settings.prompt, preference=settings.preference,
                       method=BENCH_METHODS[name](), max_tokens=2, ignore_eos=True, seed=0)


def bench_methods(model: Any, settings: BenchSettings, progress: Progress) -> dict[str, Any]:
    """Tokens/s, steering and prefill of every method; interleaved, medians over repeats."""
    names = settings.measured_methods
    runs = {name: Runs() for name in names}
    for repeat in range(settings.repeat):
        shift = repeat % len(names)
        for name in names[shift:] + names[:shift]:
            progress(f"methods: repeat {repeat + 1}/{settings.repeat}, {name}")
            result = model.generate(
                settings.prompt, preference=settings.preference, method=BENCH_METHODS[name](),
                max_tokens=settings.max_tokens, ignore_eos=True, seed=settings.seed,
            )
            runs[name].stats.append(run_figures(result.stats))
    table: dict[str, Any] = {}
    for name in names:
        method_runs = runs[name]
        table[name] = {
            "label": method_runs.stats[0]["label"],
            "tokens_per_s": method_runs.median("tokens_per_s"),
            "ratio_to_base": paired_ratio(method_runs, runs["base"]),
            "ratio_to_contrastive": paired_ratio(method_runs, runs["contrastive"]),
            "steer_ms_per_token": method_runs.median("steer_ms_per_token"),
            "steer_share": method_runs.median("steer_share"),
            "prefill_ms": method_runs.median("prefill_ms"),
            "prefill_tokens": method_runs.median("prefill_tokens"),
            "step_ms": method_runs.median("step_ms"),
            "llama_decode_ms_per_token": method_runs.median("llama_decode_ms_per_token"),
            "n_tokens": int(method_runs.median("n_tokens")),
            "n_lanes": int(method_runs.stats[0]["n_lanes"]),
        }
    return table


def run_figures(stats: dict[str, Any]) -> dict[str, Any]:
    """The figures of one run, with the per-token step time and the steering share."""
    n_tokens = max(int(stats["n_tokens"]), 1)
    # decode_ms spans the steps between the first token (the prefill's) and the last, as
    # tokens_per_s reads it: one fewer than the tokens
    step_ms = float(stats["decode_ms"]) / max(n_tokens - 1, 1)
    steer = float(stats["steer_ms_per_token"])
    return {
        "label": stats["method"],
        "n_lanes": stats.get("n_lanes", 0),
        "n_tokens": n_tokens,
        "tokens_per_s": float(stats["tokens_per_s"]),
        "steer_ms_per_token": steer,
        "steer_share": steer / step_ms if step_ms > 0 else 0.0,
        "step_ms": step_ms,
        "llama_decode_ms_per_token": (float(stats.get("llama_decode_ms", 0.0))
                                      / max(n_tokens - 1, 1)),
        "prefill_ms": float(stats["prefill_ms"]),
        "prefill_tokens": float(stats.get("prefill_tokens", 0)),
    }


def paired_ratio(runs: Runs, reference: Runs) -> float:
    """Median over repeats of tokens/s divided by the reference's in the same repeat."""
    ratios = [
        mine["tokens_per_s"] / theirs["tokens_per_s"]
        for mine, theirs in zip(runs.stats, reference.stats, strict=True)
        if theirs["tokens_per_s"] > 0
    ]
    return statistics.median(ratios) if ratios else math.nan
