"""The kernels part of the benchmark: every Numba kernel of the hot path alone, on random
logits, called the way the methods call it."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence

import numpy as np

from localpref import kernels
from localpref.bench.settings import Progress


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
