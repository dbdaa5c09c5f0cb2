"""Throughput benchmark: what steering costs on top of decoding the lanes.

``run_bench`` measures, on one loaded model:

- **methods**: each method decodes ``max_tokens`` tokens (``ignore_eos``, greedy) from the
  same prompt; the methods are interleaved within every repeat (the order rotates from repeat
  to repeat) and each figure is the median over repeats. ``ratio_to_base`` and
  ``ratio_to_contrastive`` are medians of ratios taken within one repeat (paired runs a few
  seconds apart), which cancels most of the drift of a shared machine.
  ``steer_share = steer_ms_per_token / (decode_ms / n_tokens)``: the part of a step that is
  not ``llama_decode``.
- **kernels**: every Numba kernel of the hot path alone, on random float32 logits of the
  vocabulary sizes given (49k SmolLM2, 152k Qwen, 262k Gemma), median milliseconds per call,
  called the way the methods call them.
- **chat**: time to first token (wall clock from ``Chat.stream`` to its first piece) on turn 1
  and on turn 10 of a conversation, each turn sending the same message.
- **compare**: several methods in ONE batched decode per step against the same methods run
  one after another (wall clock, prefill included).
- **concurrent** (``--concurrent 1,2,4``): N Amulet requests submitted at once (the scheduler
  batches their lanes) against the same N one after another, aggregate tokens/s by wall
  clock, and the time to first token of a request that joins while N-1 others stream.
- **peak_rss_mb**: the process's peak resident memory (``resource.getrusage``).

Nothing here asserts a timing: the numbers are for people (``docs/performance.md``).
"""

from __future__ import annotations

import math
import os
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from localpref import kernels
from localpref.engine import available_cores
from localpref.errors import SettingsError
from localpref.methods import METHODS, Amulet, Method


def _bench_methods() -> dict[str, Callable[[], Method]]:
    """Every method of ``methods.METHODS`` at its defaults, Amulet's paper loop (the
    reference) after Amulet."""
    found: dict[str, Callable[[], Method]] = {}
    for name, method_class in METHODS.items():
        found[name] = method_class
        if method_class is Amulet:
            found["amulet_loop"] = lambda: Amulet(exact=False)
    return found


#: Method names of the benchmark and how each is made (``amulet_loop`` is the paper's loop).
BENCH_METHODS: dict[str, Callable[[], Method]] = _bench_methods()
#: Always measured: the ratios are taken against them.
REFERENCE_METHODS = ("base", "contrastive")
#: SmolLM2 / Llama-3 size, Qwen2.5, Gemma 3.
KERNEL_SIZES = (49152, 151936, 262144)
COMPARE_METHODS = ("base", "pref", "amulet", "pad")
#: The method of the concurrent-requests part.
CONCURRENT_METHOD = Amulet
DEFAULT_PROMPT = "How do I keep basil alive?"
DEFAULT_PREFERENCE = "concise"
CHAT_MESSAGE = "Give me one more tip about growing basil indoors."
#: The chat part measures turn 1 and this turn.
CHAT_TURNS = 10

Progress = Callable[[str], None]


@dataclass(frozen=True)
class BenchSettings:
    """What to measure, validated when made."""

    max_tokens: int = 96
    repeat: int = 3
    methods: tuple[str, ...] = tuple(BENCH_METHODS)
    prompt: str = DEFAULT_PROMPT
    preference: str = DEFAULT_PREFERENCE
    kernel_sizes: tuple[int, ...] = KERNEL_SIZES
    kernel_budget_s: float = 0.5
    chat_tokens: int = 24
    compare_methods: tuple[str, ...] = COMPARE_METHODS
    seed: int = 0
    #: numbers of concurrent requests to measure (``--concurrent 1,2,4``; empty: skipped)
    concurrent: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        _whole(self.max_tokens, 1, "--max-tokens")
        _whole(self.repeat, 1, "--repeat")
        _whole(self.chat_tokens, 1, "--chat-tokens")
        for name in (*self.methods, *self.compare_methods):
            if name not in BENCH_METHODS:
                raise SettingsError(
                    f"Unknown benchmark method {name!r}; choose among {', '.join(BENCH_METHODS)}."
                )
        if not self.methods:
            raise SettingsError("Give at least one method to benchmark.")
        for size in self.kernel_sizes:
            _whole(size, 16, "a kernel vocabulary size")
        for count in self.concurrent:
            _whole(count, 1, "--concurrent")
        if not self.prompt.strip() or not self.preference.strip():
            raise SettingsError("The benchmark prompt and preference must not be empty.")

    @property
    def lanes_needed(self) -> int:
        """Lanes the model must hold at once (the comparison's, the concurrent requests',
        or two)."""
        compare = sum(len(BENCH_METHODS[name]().lanes) for name in self.compare_methods)
        concurrent = len(CONCURRENT_METHOD().lanes) * max(self.concurrent, default=0)
        return max(2, compare, concurrent)

    @property
    def measured_methods(self) -> tuple[str, ...]:
        """The methods asked for, plus the references the ratios need (in benchmark order)."""
        wanted = set(self.methods) | set(REFERENCE_METHODS)
        return tuple(name for name in BENCH_METHODS if name in wanted)


def _whole(value: object, minimum: int, name: str) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise SettingsError(f"{name} must be a whole number, {minimum} or more (got {value}).")


@dataclass
class _Runs:
    """Per-repeat figures of one method."""

    stats: list[dict[str, Any]] = field(default_factory=list)

    def median(self, key: str) -> float:
        return statistics.median(float(s[key]) for s in self.stats)


# --------------------------------------------------------------------------------------------
# The whole benchmark
# --------------------------------------------------------------------------------------------


def run_bench(model: Any, settings: BenchSettings = BenchSettings(),
              progress: Progress | None = None) -> dict[str, Any]:
    """Every measurement on ``model`` (a ``localpref.Model`` with at least 6 lanes), as the
    JSON-ready dict that ``localpref bench --json`` prints."""
    say = progress or (lambda message: None)
    import llama_cpp
    import numba

    load_at_start = _load_average()
    say("warming up (Numba cache, one short run per method)")
    kernels.warmup()
    warm_up(model, settings)
    report: dict[str, Any] = {
        "model": model.name,
        "model_path": str(model.path),
        "model_size_mb": round(Path(model.path).stat().st_size / 1e6, 1),
        "vocab_size": model.vocabulary.size,
        "threads": model.n_threads,
        **_memory_facts(model),
        "cores": available_cores(),
        "max_tokens": settings.max_tokens,
        "repeat": settings.repeat,
        "prompt": settings.prompt,
        "preference": settings.preference,
        "llama_cpp_version": getattr(llama_cpp, "__version__", "unknown"),
        "numba_version": numba.__version__,
    }
    report["methods"] = bench_methods(model, settings, say)
    report["kernels"] = bench_kernels(settings.kernel_sizes, budget_s=settings.kernel_budget_s,
                                      progress=say)
    report["chat"] = bench_chat(model, settings, say)
    report["compare"] = bench_compare(model, settings, say)
    report["lanes"] = bench_lanes(model, settings, say)
    if settings.concurrent:
        report["concurrent"] = bench_concurrent(model, settings, say)
    report["peak_rss_mb"] = peak_rss_mb()
    # Other processes on the machine (1-minute load average) when the run started and ended:
    # above the core count, the figures are noisy and llama.cpp's threads wait for the CPU.
    report["load_average"] = [load_at_start, _load_average()]
    return report


def warm_up(model: Any, settings: BenchSettings) -> None:
    """A two-token run of every method (kernels compiled for the real arrays, caches hot)."""
    for name in settings.measured_methods:
        model.generate(settings.prompt, preference=settings.preference,
                       method=BENCH_METHODS[name](), max_tokens=2, ignore_eos=True, seed=0)


# --------------------------------------------------------------------------------------------
# Methods
# --------------------------------------------------------------------------------------------


def bench_methods(model: Any, settings: BenchSettings, progress: Progress) -> dict[str, Any]:
    """Tokens/s, steering and prefill of every method; interleaved, medians over repeats."""
    names = settings.measured_methods
    runs = {name: _Runs() for name in names}
    for repeat in range(settings.repeat):
        shift = repeat % len(names)
        for name in names[shift:] + names[:shift]:
            progress(f"methods: repeat {repeat + 1}/{settings.repeat}, {name}")
            result = model.generate(
                settings.prompt, preference=settings.preference, method=BENCH_METHODS[name](),
                max_tokens=settings.max_tokens, ignore_eos=True, seed=settings.seed,
            )
            runs[name].stats.append(_run_figures(result.stats))
    table: dict[str, Any] = {}
    for name in names:
        method_runs = runs[name]
        table[name] = {
            "label": method_runs.stats[0]["label"],
            "tokens_per_s": method_runs.median("tokens_per_s"),
            "ratio_to_base": _paired_ratio(method_runs, runs["base"]),
            "ratio_to_contrastive": _paired_ratio(method_runs, runs["contrastive"]),
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


def _run_figures(stats: dict[str, Any]) -> dict[str, Any]:
    """The figures of one run, with the per-token step time and the steering share."""
    n_tokens = max(int(stats["n_tokens"]), 1)
    step_ms = float(stats["decode_ms"]) / n_tokens
    steer = float(stats["steer_ms_per_token"])
    return {
        "label": stats["method"],
        "n_lanes": stats.get("n_lanes", 0),
        "n_tokens": n_tokens,
        "tokens_per_s": float(stats["tokens_per_s"]),
        "steer_ms_per_token": steer,
        "steer_share": steer / step_ms if step_ms > 0 else 0.0,
        "step_ms": step_ms,
        "llama_decode_ms_per_token": float(stats.get("llama_decode_ms", 0.0)) / n_tokens,
        "prefill_ms": float(stats["prefill_ms"]),
        "prefill_tokens": float(stats.get("prefill_tokens", 0)),
    }


def _paired_ratio(runs: _Runs, reference: _Runs) -> float:
    """Median over repeats of tokens/s divided by the reference's in the same repeat."""
    ratios = [
        mine["tokens_per_s"] / theirs["tokens_per_s"]
        for mine, theirs in zip(runs.stats, reference.stats, strict=True)
        if theirs["tokens_per_s"] > 0
    ]
    return statistics.median(ratios) if ratios else math.nan


# --------------------------------------------------------------------------------------------
# Kernels
# --------------------------------------------------------------------------------------------


def kernel_calls(vocab_size: int, seed: int = 0) -> dict[str, Callable[[], object]]:
    """One call of every hot-path kernel on random logits of ``vocab_size`` tokens, made the
    way ``localpref.methods`` makes it (allocating wrappers included where it uses them)."""
    rng = np.random.default_rng(seed)
    z_pref = (rng.standard_normal(vocab_size) * 3.0).astype(np.float32)
    z_base = (z_pref + rng.standard_normal(vocab_size).astype(np.float32) * 0.5).astype(
        np.float32
    )
    k = float(kernels.amulet_contrast(2.0, 2.0, 10.0, 60))
    out = np.empty(vocab_size, dtype=np.float64)
    scores = np.empty(vocab_size, dtype=np.float64)
    kernels.contrast_logprobs_into(z_pref, z_base, k, scores)
    calls: dict[str, Callable[[], object]] = {
        "contrastive": lambda: kernels.contrast_logprobs_into(z_pref, z_base, 2.0, out),
        "amulet_exact": lambda: kernels.contrast_logprobs_into(z_pref, z_base, k, out),
        "amulet_loop": lambda: kernels.amulet_loop_logprobs(z_pref, z_base, 2.0, 2.0, 10.0, 60),
        "pad": lambda: kernels.pad_scores(z_pref, z_base, 1.0, 10),
        "greedy": lambda: kernels.greedy(scores),
        "sample": lambda: kernels.sample(scores, 0.7, 0, 0.95, 0.0, 0.5),
    }
    if hasattr(kernels, "contrast_argmax"):
        calls["contrast_argmax"] = lambda: kernels.contrast_argmax(z_pref, z_base, k)
    return calls


def bench_kernels(sizes: Sequence[int], *, budget_s: float = 0.5,
                  progress: Progress | None = None) -> dict[str, dict[str, float]]:
    """Median milliseconds per call of every kernel at every size: ``{str(V): {name: ms}}``.

    Kernels are interleaved call by call; each size gets about ``budget_s`` seconds (at least
    5 and at most 200 rounds).
    """
    table: dict[str, dict[str, float]] = {}
    for size in sizes:
        if progress:
            progress(f"kernels: V = {size}")
        calls = kernel_calls(size)
        first = {}
        for name, call in calls.items():
            call()  # compiled or loaded from the cache already; this warms the buffers
            started = time.perf_counter()
            call()
            first[name] = time.perf_counter() - started
        rounds = int(min(200, max(5, budget_s / max(sum(first.values()), 1e-9))))
        samples: dict[str, list[float]] = {name: [] for name in calls}
        for _ in range(rounds):
            for name, call in calls.items():
                started = time.perf_counter()
                call()
                samples[name].append(time.perf_counter() - started)
        table[str(size)] = {name: statistics.median(s) * 1000 for name, s in samples.items()}
    return table


# --------------------------------------------------------------------------------------------
# Chat and compare
# --------------------------------------------------------------------------------------------


def bench_chat(model: Any, settings: BenchSettings, progress: Progress) -> dict[str, Any]:
    """Time to first token on turn 1 and turn 10 of an Amulet chat (the same message each
    turn, answers of at most ``chat_tokens`` tokens); medians over repeats.

    ``new_tokens_*`` count the tokens evaluated before the first step, over both lanes;
    ``history_tokens_*`` the conversation's length on the longer lane.
    """
    last = CHAT_TURNS
    firsts: list[dict[str, float]] = []
    lasts: list[dict[str, float]] = []
    for repeat in range(settings.repeat):
        progress(f"chat: repeat {repeat + 1}/{settings.repeat}, {last} turns")
        # Answers end at an end token as in a real chat (with ignore_eos, end tokens would sit
        # in the cache but not in the re-rendered history, and be evaluated again).
        chat = model.chat(preference=settings.preference, method=Amulet(),
                          max_tokens=settings.chat_tokens, seed=settings.seed)
        try:
            for turn in range(1, last + 1):
                figures = _timed_turn(chat, CHAT_MESSAGE)
                if turn == 1:
                    firsts.append(figures)
                if turn == last:
                    lasts.append(figures)
        finally:
            chat.close()

    def med(rows: list[dict[str, float]], key: str) -> float:
        return statistics.median(row[key] for row in rows)

    turn1, turn_n = med(firsts, "ttft_ms"), med(lasts, "ttft_ms")
    return {
        "ttft_turn1_ms": turn1,
        "ttft_turn10_ms": turn_n,
        "ttft_ratio": turn_n / turn1 if turn1 > 0 else math.nan,
        "turns": last,
        "new_tokens_turn1": med(firsts, "new_tokens"),
        "new_tokens_turn10": med(lasts, "new_tokens"),
        "history_tokens_turn1": med(firsts, "history_tokens"),
        "history_tokens_turn10": med(lasts, "history_tokens"),
        "tokens_per_answer": settings.chat_tokens,
    }


def _timed_turn(chat: Any, message: str) -> dict[str, float]:
    """Send ``message``; the wall clock to the first streamed piece, and what was evaluated."""
    started = time.perf_counter()
    generation = chat.stream(message)
    ttft_ms: float | None = None
    for _ in generation:
        if ttft_ms is None:
            ttft_ms = (time.perf_counter() - started) * 1000
    stats = generation.stats
    if ttft_ms is None:  # nothing printable: prefill plus one step
        ttft_ms = stats["prefill_ms"] + stats["decode_ms"] / max(stats["n_tokens"], 1)
    return {
        "ttft_ms": ttft_ms,
        "new_tokens": float(stats.get("prefill_tokens", 0)),
        "history_tokens": float(stats.get("n_prompt_tokens", 0)),
    }


def bench_compare(model: Any, settings: BenchSettings, progress: Progress) -> dict[str, Any]:
    """Several methods batched in one decode per step against one after another."""
    names = list(settings.compare_methods)
    batched: list[float] = []
    sequential: list[float] = []

    def run_batched() -> None:
        started = time.perf_counter()
        model.compare(settings.prompt, [BENCH_METHODS[n]() for n in names],
                      preference=settings.preference, max_tokens=settings.max_tokens,
                      ignore_eos=True, seed=settings.seed).run()
        batched.append(time.perf_counter() - started)

    def run_sequential() -> None:
        started = time.perf_counter()
        for name in names:
            model.generate(settings.prompt, preference=settings.preference,
                           method=BENCH_METHODS[name](), max_tokens=settings.max_tokens,
                           ignore_eos=True, seed=settings.seed)
        sequential.append(time.perf_counter() - started)

    for repeat in range(settings.repeat):
        progress(f"compare: repeat {repeat + 1}/{settings.repeat}, {len(names)} methods")
        order = (run_batched, run_sequential) if repeat % 2 == 0 else (run_sequential,
                                                                       run_batched)
        for run in order:
            run()
    batched_s, sequential_s = statistics.median(batched), statistics.median(sequential)
    return {
        "methods": names,
        "n_lanes": sum(len(BENCH_METHODS[n]().lanes) for n in names),
        "batched_s": batched_s,
        "sequential_s": sequential_s,
        "speedup": sequential_s / batched_s if batched_s > 0 else math.nan,
    }


def bench_concurrent(model: Any, settings: BenchSettings,
                     progress: Progress) -> dict[str, dict[str, float]]:
    """For each N: N Amulet requests at once against N one after another (medians over
    repeats), and the time to first token of one joining N-1 that stream.

    ``aggregate_tokens_per_s``: all tokens over the wall clock from the first submission to
    the last end (prefill included); ``sequential_tokens_per_s`` the same, one at a time;
    ``speedup`` their ratio; ``ttft_ms``: from the joiner's submission to its first piece.
    """
    table: dict[str, dict[str, float]] = {}

    def stream() -> Any:
        return model.stream(settings.prompt, preference=settings.preference,
                            method=CONCURRENT_METHOD(), max_tokens=settings.max_tokens,
                            ignore_eos=True, seed=settings.seed)

    for count in settings.concurrent:
        together: list[float] = []
        one_by_one: list[float] = []
        ttft: list[float] = []
        for repeat in range(settings.repeat):
            progress(f"concurrent: {count} request(s), repeat {repeat + 1}/{settings.repeat}")
            started = time.perf_counter()
            for _ in range(count):
                stream().run()
            one_by_one.append(time.perf_counter() - started)
            started = time.perf_counter()
            generations = [stream().start() for _ in range(count)]
            tokens = sum(len(generation.run().tokens) for generation in generations)
            together.append(time.perf_counter() - started)
            others = [stream() for _ in range(count - 1)]
            for other in others:
                next(other)  # streaming
            started = time.perf_counter()
            joiner = stream()
            next(joiner)
            ttft.append((time.perf_counter() - started) * 1000)
            for generation in [*others, joiner]:
                generation.close()
        total = tokens
        aggregate = total / statistics.median(together)
        sequential = total / statistics.median(one_by_one)
        table[str(count)] = {
            "aggregate_tokens_per_s": aggregate,
            "sequential_tokens_per_s": sequential,
            "speedup": aggregate / sequential if sequential > 0 else math.nan,
            "ttft_ms": statistics.median(ttft),
        }
    return table


#: How the lane benchmark decodes: name -> (lanes, all in one decode?).
LANE_LAYOUTS: dict[str, tuple[int, bool]] = {
    "1_lane": (1, True),
    "2_lanes_batched": (2, True),
    "2_lanes_one_by_one": (2, False),
    "4_lanes_batched": (4, True),
}


def bench_lanes(model: Any, settings: BenchSettings, progress: Progress) -> dict[str, Any]:
    """What a lane costs in ``llama_decode`` alone: ms per step with 1, 2 and 4 lanes in one
    batched decode, and with 2 lanes decoded one after another (two decodes a step, as code
    that runs the base and preference models separately does). No steering, no sampling: the
    same token is fed every step, which does not change a decode's cost."""
    with model.exclusive() as context:
        return _bench_lanes(context, model.vocabulary, settings, progress)


def _bench_lanes(context: Any, vocabulary: Any, settings: BenchSettings,
                 progress: Progress) -> dict[str, Any]:
    prompt = vocabulary.tokenize(settings.prompt, add_special=True)
    token = prompt[-1]
    steps = max(1, min(settings.max_tokens, context.n_ctx - len(prompt) - 1))
    timings: dict[str, list[float]] = {name: [] for name in LANE_LAYOUTS}
    for repeat in range(settings.repeat):
        progress(f"lanes: repeat {repeat + 1}/{settings.repeat}")
        for name, (count, batched) in LANE_LAYOUTS.items():
            lanes = [context.open_lane() for _ in range(count)]
            try:
                context.prefill(lanes, [prompt] * count)
                started = time.perf_counter()
                for _ in range(steps):
                    if batched:
                        context.step(lanes, [token] * count)
                    else:
                        for lane in lanes:
                            context.step([lane], [token])
                            context.logits(0).copy()  # the next decode overwrites it
                timings[name].append((time.perf_counter() - started) * 1000 / steps)
            finally:
                for lane in lanes:
                    context.close_lane(lane)
    ms_per_step = {name: statistics.median(values) for name, values in timings.items()}
    single = ms_per_step["1_lane"]
    return {
        "steps": steps,
        "ms_per_step": ms_per_step,
        "cost_vs_1_lane": {name: ms / single for name, ms in ms_per_step.items()},
    }


# --------------------------------------------------------------------------------------------
# Step profile: where the time of a step that is not llama_decode goes
# --------------------------------------------------------------------------------------------

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
            **_memory_facts(model), "max_tokens": settings.max_tokens,
            "repeat": settings.repeat, "load_average": _load_average(), "profile": table}


def _profile_figures(stats: dict[str, Any]) -> dict[str, Any]:
    n_tokens = max(int(stats["n_tokens"]), 1)
    step_us = float(stats["decode_ms"]) * 1000 / n_tokens
    decode_us = float(stats["llama_decode_ms"]) * 1000 / n_tokens
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


# --------------------------------------------------------------------------------------------
# Memory, machine
# --------------------------------------------------------------------------------------------


def peak_rss_mb() -> float:
    """Peak resident memory of this process in MB (1e6 bytes)."""
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    scale = 1 if sys.platform == "darwin" else 1024  # bytes on macOS, kilobytes elsewhere
    return peak * scale / 1e6


def _memory_facts(model: Any) -> dict[str, Any]:
    """Parameters, and the KV cache the context allocated (float16 K and V for every cell of
    every lane): with several lanes it is often bigger than a small model's weights, and it
    counts in ``peak_rss_mb``."""
    import llama_cpp

    context = model.context
    handle = context.model.handle
    n_layer = llama_cpp.llama_model_n_layer(handle)
    head_dim = llama_cpp.llama_model_n_embd(handle) // max(llama_cpp.llama_model_n_head(handle), 1)
    per_cell = n_layer * 2 * llama_cpp.llama_model_n_head_kv(handle) * head_dim * 2
    cells = context.n_ctx * context.max_lanes
    return {
        "n_params": int(llama_cpp.llama_model_n_params(handle)),
        "n_ctx_per_lane": context.n_ctx,
        "max_lanes": context.max_lanes,
        "kv_cache_mb": round(cells * per_cell / 1e6, 1),
    }


def _load_average() -> float | None:
    try:
        return round(os.getloadavg()[0], 2)
    except (AttributeError, OSError):
        return None


# --------------------------------------------------------------------------------------------
# The human table
# --------------------------------------------------------------------------------------------


def format_report(report: dict[str, Any]) -> str:
    """The benchmark as aligned plain-text tables."""
    lines = [
        f"localpref bench: {report['model']} (V = {report['vocab_size']}, "
        f"{report['model_size_mb']:.4g} MB), {report['threads']} llama.cpp thread(s) on "
        f"{report['cores']} core(s), llama-cpp-python {report['llama_cpp_version']}",
        f"{report['max_tokens']} tokens per run (ignore_eos, greedy), median of "
        f"{report['repeat']} interleaved repeats",
        "",
        f"{'method':<13}{'lanes':>6}{'tok/s':>9}{'x base':>8}{'x contr':>9}{'step ms':>9}"
        f"{'steer ms':>10}{'steer %':>9}{'prefill ms':>12}",
    ]
    for name, row in report["methods"].items():
        lines.append(
            f"{name:<13}{row['n_lanes']:>6}{row['tokens_per_s']:>9.1f}"
            f"{row['ratio_to_base']:>8.2f}{row['ratio_to_contrastive']:>9.2f}"
            f"{row['step_ms']:>9.2f}{row['steer_ms_per_token']:>10.3f}"
            f"{row['steer_share'] * 100:>8.1f}%{row['prefill_ms']:>12.1f}"
        )
    sizes = list(report["kernels"])
    if sizes:
        names = list(report["kernels"][sizes[0]])
        lines += ["", "kernel alone, ms per call" + "".join(f"{'V=' + s:>12}" for s in sizes)]
        for name in names:
            cells = "".join(f"{report['kernels'][s][name]:>12.3f}" for s in sizes)
            lines.append(f"  {name:<23}{cells}")
    chat = report["chat"]
    lines += [
        "",
        f"chat (amulet, answers of at most {chat['tokens_per_answer']} tokens): time to first "
        f"token turn 1 {chat['ttft_turn1_ms']:.1f} ms ({chat['new_tokens_turn1']:.0f} tokens "
        f"evaluated over the lanes), turn 10 {chat['ttft_turn10_ms']:.1f} ms "
        f"({chat['new_tokens_turn10']:.0f}; history {chat['history_tokens_turn10']:.0f} "
        f"tokens); x{chat['ttft_ratio']:.2f}",
    ]
    compare = report["compare"]
    lines.append(
        f"compare {','.join(compare['methods'])} ({compare['n_lanes']} lanes): one batched "
        f"decode per step {compare['batched_s']:.2f} s, one after another "
        f"{compare['sequential_s']:.2f} s; x{compare['speedup']:.2f}"
    )
    for count, row in (report.get("concurrent") or {}).items():
        lines.append(
            f"{count} concurrent amulet request(s): {row['aggregate_tokens_per_s']:.1f} tok/s "
            f"together, {row['sequential_tokens_per_s']:.1f} one after another "
            f"(x{row['speedup']:.2f}); a request joining {int(count) - 1} streaming: first "
            f"token in {row['ttft_ms']:.0f} ms"
        )
    lanes = report.get("lanes")
    if lanes:
        costs = lanes["cost_vs_1_lane"]
        cells = ", ".join(f"{name.replace('_', ' ')} {ms:.2f} (x{costs[name]:.2f})"
                          for name, ms in lanes["ms_per_step"].items())
        lines.append(f"llama_decode ms per step: {cells}")
    lines.append(
        f"peak RSS {report['peak_rss_mb']:.0f} MB (weights {report['model_size_mb']:.4g} MB "
        f"mapped once; KV cache {report['kv_cache_mb']:.0f} MB for {report['max_lanes']} lanes "
        f"x {report['n_ctx_per_lane']} tokens)"
    )
    start, end = report.get("load_average") or [None, None]
    if start is not None and end is not None:
        lines.append(f"machine load average {start:.1f} at start, {end:.1f} at end "
                     f"({report['cores']} cores)")
    return "\n".join(lines)
