"""The benchmark report as aligned plain-text tables."""

from __future__ import annotations

from typing import Any


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
