"""The whole benchmark on one loaded model: every part, with the facts that make its figures
readable (model, threads, versions, memory, the machine's load)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from localpref import kernels
from localpref.bench.batching import bench_compare, bench_concurrent, bench_lanes
from localpref.bench.chat import bench_chat
from localpref.bench.kernel_timings import bench_kernels
from localpref.bench.machine import load_average, memory_facts, peak_rss_mb
from localpref.bench.runs import bench_methods, warm_up
from localpref.bench.settings import CHAT_MESSAGE, CHAT_TURNS, BenchSettings, Progress
from localpref.engine import available_cores
from localpref.errors import SettingsError
from localpref.methods import Amulet
from localpref.request import Request


def check_window(model: Any, settings: BenchSettings) -> None:
    """Refuse, before anything runs, a window too small for the runs or the chat: a run past
    it stopped short without a word (two methods' runs of different lengths), and a chat past
    it failed once every other part had run, their figures lost."""
    def tokens(messages: Any) -> int:
        return model.prompt_tokens(Request.make(messages, preference=settings.preference,
                                                method=Amulet()))

    run = tokens(settings.prompt)
    if run + settings.max_tokens > model.n_ctx:
        raise SettingsError(f"A run's prompt ({run} tokens) and --max-tokens "
                            f"{settings.max_tokens} do not fit in the window of {model.n_ctx} "
                            "tokens; lower --max-tokens or raise --ctx.")
    exchange = [{"role": "user", "content": CHAT_MESSAGE},
                {"role": "assistant", "content": " x" * settings.chat_tokens}]
    chat = tokens([*exchange * (CHAT_TURNS - 1), exchange[0]]) + settings.chat_tokens
    if chat > model.n_ctx:
        raise SettingsError(f"The benchmark's {CHAT_TURNS}-turn chat takes about {chat} tokens "
                            f"and the window holds {model.n_ctx}; raise --ctx.")


def run_bench(model: Any, settings: BenchSettings | None = None,
              progress: Progress | None = None) -> dict[str, Any]:
    """Every measurement on ``model`` (a ``localpref.Model`` with at least 6 lanes), as the
    JSON-ready dict that ``localpref bench --json`` prints."""
    settings = settings or BenchSettings()
    say = progress or (lambda message: None)
    check_window(model, settings)
    import numba

    from localpref.llama_library import llama_cpp

    load_at_start = load_average()
    say("warming up (Numba cache, one short run per method)")
    kernels.warmup()
    warm_up(model, settings)
    report: dict[str, Any] = {
        "model": model.name,
        "model_path": str(model.path),
        "model_size_mb": round(Path(model.path).stat().st_size / 1e6, 1),
        "vocab_size": model.vocabulary.size,
        "threads": model.n_threads,
        **memory_facts(model),
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
    report["load_average"] = [load_at_start, load_average()]
    return report
