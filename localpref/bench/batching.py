"""The batching parts of the benchmark: methods batched in one decode per step against one
after another, concurrent requests through the scheduler, and what a lane costs in
``llama_decode``."""

from __future__ import annotations

import math
import statistics
import time
from typing import Any

from localpref.bench.settings import BENCH_METHODS, CONCURRENT_METHOD, BenchSettings, Progress


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


#: How the lane benchmark decodes: name -> (lanes, all in one decode?). A layout needing more
#: lanes than the context holds is left out (8 lanes: with ``--concurrent`` 4 or more).
LANE_LAYOUTS: dict[str, tuple[int, bool]] = {
    "1_lane": (1, True),
    "2_lanes_batched": (2, True),
    "2_lanes_one_by_one": (2, False),
    "4_lanes_batched": (4, True),
    "8_lanes_batched": (8, True),
}


def bench_lanes(model: Any, settings: BenchSettings, progress: Progress) -> dict[str, Any]:
    """What a lane costs in ``llama_decode`` alone: ms per step with 1, 2, 4 and 8 lanes (as
    many as the context holds) in one batched decode, and with 2 lanes decoded one after
    another (two decodes a step, as code that runs the base and preference models separately
    does). No steering, no sampling: the same token is fed every step, which does not change a
    decode's cost."""
    with model.exclusive() as context:
        return _bench_lanes(context, model.vocabulary, settings, progress)


def _bench_lanes(context: Any, vocabulary: Any, settings: BenchSettings,
                 progress: Progress) -> dict[str, Any]:
    prompt = vocabulary.tokenize(settings.prompt, add_special=True)
    token = prompt[-1]
    steps = max(1, min(settings.max_tokens, context.n_ctx - len(prompt) - 1))
    layouts = {name: layout for name, layout in LANE_LAYOUTS.items()
               if layout[0] <= context.max_lanes}
    timings: dict[str, list[float]] = {name: [] for name in layouts}
    for repeat in range(settings.repeat):
        progress(f"lanes: repeat {repeat + 1}/{settings.repeat}")
        for name, (count, batched) in layouts.items():
            lanes = context.open_lanes([None] * count)  # all or none
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
