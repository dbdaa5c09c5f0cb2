"""The chat part of the benchmark: time to first token on turn 1 and turn 10 of a chat."""

from __future__ import annotations

import math
import statistics
import time
from typing import Any

from localpref.bench.settings import CHAT_MESSAGE, CHAT_TURNS, BenchSettings, Progress
from localpref.methods import Amulet


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
