"""The step profile (``localpref bench --profile``): where the time of a step that is not
``llama_decode`` goes, from the named laps the decoding loop clocks itself."""

from __future__ import annotations

import statistics
from typing import Any

from localpref import kernels
from localpref.bench.machine import load_average, memory_facts
from localpref.bench.runs import warm_up
from localpref.bench.settings import BENCH_METHODS, BenchSettings, Progress

#: The decoding loop's own laps (``stats["steer_laps_ms"]``) and their labels in the profile.
PROFILE_LAPS: dict[str, str] = {
    "pick": "pick: combine lanes + sample",
    "advance": "advance: end token, piece, UTF-8, stop strings",
    "fluency": "fluency stats (log-sum-exp per lane)",
    "piece": "stop-string hold-back",
    "stats": "stats update",
}
_STEP_LABEL = "step: batch, llama_decode, views"
_DECODE_LABEL = "  llama_decode"


def profile_steps(model: Any, settings: BenchSettings,
                  progress: Progress | None = None) -> dict[str, Any]:
    """Where the time of a step goes, for each method (``settings.methods``), from the
    named laps the decoding loop clocks itself (``stats["steer_laps_ms"]``).

    Per token, medians over repeats: ``step_us`` (decode time / tokens), ``llama_decode_us``
    (the decodes), ``non_decode_us`` (the rest: the Contract's steering), ``loop_us`` (the
    part of it outside the track's laps: the scheduler's own Python), and each lap.
    """
    say = progress or (lambda message: None)
    kernels.warmup()
    warm_up(model, settings)
    table: dict[str, Any] = {}
    for name in settings.methods:
        rows = []
        for repeat in range(settings.repeat):
            say(f"profile: {name}, repeat {repeat + 1}/{settings.repeat}")
            result = model.generate(
                settings.prompt, preference=settings.preference,
                method=BENCH_METHODS[name](), max_tokens=settings.max_tokens,
                ignore_eos=True, seed=settings.seed,
            )
            rows.append(_profile_figures(result.stats))
        table[name] = {
            key: statistics.median(row[key] for row in rows)
            for key in ("step_us", "steer_us_stats", "llama_decode_us", "non_decode_us",
                        "loop_us")
        }
        table[name]["pieces_us_per_token"] = {
            label: statistics.median(row["pieces"][label] for row in rows)
            for label in rows[0]["pieces"]
        }
    return {"model": model.name, "vocab_size": model.vocabulary.size,
            "threads": model.n_threads,
            **memory_facts(model), "max_tokens": settings.max_tokens,
            "repeat": settings.repeat, "load_average": load_average(), "profile": table}


def _profile_figures(stats: dict[str, Any]) -> dict[str, Any]:
    n_tokens = max(int(stats["n_tokens"]), 1)
    steps = max(n_tokens - 1, 1)  # the first token is the prefill's: one decode fewer
    step_us = float(stats["decode_ms"]) * 1000 / steps
    decode_us = float(stats["llama_decode_ms"]) * 1000 / steps
    pieces = {label: float(stats["steer_laps_ms"][lap]) * 1000 / n_tokens
              for lap, label in PROFILE_LAPS.items()}
    non_decode_us = step_us - decode_us
    pieces[_DECODE_LABEL] = decode_us
    return {
        "step_us": step_us,
        "steer_us_stats": float(stats["steer_ms_per_token"]) * 1000,
        "llama_decode_us": decode_us,
        "non_decode_us": non_decode_us,
        "loop_us": non_decode_us - sum(us for label, us in pieces.items()
                                       if label != _DECODE_LABEL),
        "pieces": pieces,
    }


def format_profile(report: dict[str, Any]) -> str:
    """The step profile as plain text, one block per method."""
    lines = [
        f"step profile: {report['model']} (V = {report['vocab_size']}), {report['threads']} "
        f"llama.cpp thread(s), {report['max_tokens']} tokens x {report['repeat']} runs; "
        "median microseconds per token",
    ]
    for name, row in report["profile"].items():
        share = row["non_decode_us"] / row["step_us"] * 100 if row["step_us"] else 0.0
        lines += [
            "",
            f"{name}: step {row['step_us']:.0f} us, llama_decode {row['llama_decode_us']:.0f} us,"
            f" everything else {row['non_decode_us']:.1f} us ({share:.2f}%; stats say "
            f"{row['steer_us_stats']:.1f} us)",
        ]
        for label, us in row["pieces_us_per_token"].items():
            if label.strip() != "llama_decode" and label != _STEP_LABEL:
                lines.append(f"  {us:10.2f}  {label}")
        lines.append(f"  {row['loop_us']:10.2f}  the loop itself (generator, lists, clocks, yield)")
    return "\n".join(lines)
