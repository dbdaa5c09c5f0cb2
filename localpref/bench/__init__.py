"""Throughput benchmark: what steering costs on top of decoding the lanes.

``run_bench`` measures, on one loaded model:

- **methods**: each method decodes ``max_tokens`` tokens (``ignore_eos``, greedy) from the
  same prompt; the methods are interleaved within every repeat (the order rotates from repeat
  to repeat) and each figure is the median over repeats. ``ratio_to_base`` and
  ``ratio_to_contrastive`` are medians of ratios taken within one repeat (paired runs a few
  seconds apart), which cancels most of the drift of a shared machine.
  ``steer_share = steer_ms_per_token / (decode_ms / (n_tokens - 1))``: the part of a step
  that is not ``llama_decode`` (the first token is the prefill's, so ``decode_ms`` spans one
  step fewer than the tokens, as ``tokens_per_s`` reads it).
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
- **exactness** (``--exactness``, instead of the rest): each lane's logits in 2, 4 and 8
  lanes decoded together against the same lane decoded alone (``bench.exactness``).
- **peak_rss_mb**: the process's peak resident memory (``resource.getrusage``).

Nothing here asserts a timing: the numbers are for people (``docs/performance.md``).
"""

from __future__ import annotations

from localpref.bench.batching import LANE_LAYOUTS, bench_compare, bench_concurrent, bench_lanes
from localpref.bench.chat import bench_chat
from localpref.bench.exactness import EXACTNESS_BATCHES, bench_exactness, format_exactness
from localpref.bench.kernel_timings import bench_kernels, kernel_calls
from localpref.bench.machine import load_average, memory_facts, peak_rss_mb
from localpref.bench.profile import PROFILE_LAPS, format_profile, profile_steps
from localpref.bench.report import format_report
from localpref.bench.runs import bench_methods, warm_up
from localpref.bench.settings import (
    BENCH_METHODS,
    CHAT_MESSAGE,
    CHAT_TURNS,
    COMPARE_METHODS,
    CONCURRENT_METHOD,
    DEFAULT_PREFERENCE,
    DEFAULT_PROMPT,
    KERNEL_SIZES,
    REFERENCE_METHODS,
    BenchSettings,
    Progress,
)
from localpref.bench.suite import run_bench

__all__ = [
    "BENCH_METHODS", "CHAT_MESSAGE", "CHAT_TURNS", "COMPARE_METHODS", "CONCURRENT_METHOD",
    "DEFAULT_PREFERENCE", "DEFAULT_PROMPT", "EXACTNESS_BATCHES", "KERNEL_SIZES", "LANE_LAYOUTS",
    "PROFILE_LAPS", "REFERENCE_METHODS", "BenchSettings", "Progress", "bench_chat",
    "bench_compare", "bench_concurrent", "bench_exactness", "bench_kernels", "bench_lanes",
    "bench_methods", "format_exactness", "format_profile", "format_report", "kernel_calls",
    "load_average", "memory_facts", "peak_rss_mb", "profile_steps", "run_bench", "warm_up",
]
