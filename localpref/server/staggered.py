"""The staggered load of ``localpref bench --server``: clients that send one request after
another, each of its own length, so that requests start and end at different steps.

The rows of ``measure`` send the same request from every client at once: they all start and
end together, and a server's lanes stay in the order they were opened. Real clients do not:
one request ends while the others go on, the next takes the freed lane, and a step holds lanes
in any order (docs/performance.md, "A graph per run of streams"). Every client here sends
``requests`` requests back to back, their lengths drawn from a seeded generator, the same for
every server, so every server does the same work; the figure is the tokens all clients
received over the wall time from the first request sent to the last stream ended.
"""

from __future__ import annotations

import random
import statistics
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from localpref.server.bench_client import Target, next_number, run_clients, stream_once
from localpref.server.paired import format_paired, paired_ratio

CLIENTS = 4
REQUESTS_PER_CLIENT = 6
SEED = 20261205


@dataclass(frozen=True)
class StaggeredTiming:
    wall_s: float
    tokens: int
    requests: int

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.wall_s if self.wall_s > 0 else 0.0


def request_lengths(clients: int, requests: int, max_tokens: int,
                    seed: int = SEED) -> list[list[int]]:
    """Each client's request lengths: from a quarter of ``max_tokens`` to a quarter more than
    it (at least 1), drawn from ``seed``, so that the same plan is sent to every server."""
    low = max(1, max_tokens // 4)
    high = max(low, max_tokens + max_tokens // 4)
    draw = random.Random(seed)
    return [[draw.randint(low, high) for _ in range(requests)] for _ in range(clients)]


def measure_staggered(target: Target, prompt: str, lengths: list[list[int]]) -> StaggeredTiming:
    """Every client sends its requests one after another (``lengths[client]``); all clients
    at once."""
    def client(plan: list[int]) -> Callable[[int], list[int]]:
        def send(first_number: int) -> list[int]:
            numbers = [first_number] + [next_number() for _ in plan[1:]]
            return [stream_once(target, prompt, tokens, number).tokens
                    for tokens, number in zip(plan, numbers, strict=True)]
        return send

    wall, received = run_clients(target, [client(plan) for plan in lengths])
    return StaggeredTiming(wall_s=wall, tokens=sum(map(sum, received)),
                           requests=sum(map(len, received)))


def staggered_report(timings: dict[str, list[StaggeredTiming]],
                     lengths: list[list[int]]) -> dict[str, Any]:
    """The report's ``staggered`` object: the plan, and per server the median tokens/s over
    rounds with the tokens and requests of all rounds; localpref Base over llama-server Base
    when both ran."""
    servers = {label: {"tokens_per_s": round(statistics.median(t.tokens_per_s for t in rows), 3),
                       "tokens": sum(t.tokens for t in rows),
                       "requests": sum(t.requests for t in rows), "rounds": len(rows)}
               for label, rows in timings.items()}
    report: dict[str, Any] = {
        "clients": len(lengths), "requests_per_client": len(lengths[0]) if lengths else 0,
        "tokens_min": min(map(min, lengths)) if lengths else 0,
        "tokens_max": max(map(max, lengths)) if lengths else 0,
        "servers": servers,
    }
    ours, theirs = servers.get("localpref base"), servers.get("llama-server base")
    if ours and theirs and theirs["tokens_per_s"] > 0:
        report["base_ratio_to_llama_server"] = round(
            ours["tokens_per_s"] / theirs["tokens_per_s"], 3)
        paired = paired_ratio([t.tokens_per_s for t in timings["localpref base"]],
                              [t.tokens_per_s for t in timings["llama-server base"]])
        if paired is not None:
            report["paired_base_ratio_to_llama_server"] = paired
    return report


def format_staggered(report: dict[str, Any]) -> str:
    """One line of the bench's table."""
    rates = ", ".join(f"{label} {row['tokens_per_s']:.1f} tok/s"
                      for label, row in report["servers"].items())
    ratio = report.get("base_ratio_to_llama_server")
    versus = f"; localpref base / llama-server base {ratio:.2f}x" if ratio is not None else ""
    paired = report.get("paired_base_ratio_to_llama_server")
    if paired is not None:
        versus += f" (paired by round, 95 % interval: {format_paired(paired)})"
    return (f"staggered load ({report['clients']} clients, {report['requests_per_client']} "
            f"requests each of {report['tokens_min']}-{report['tokens_max']} tokens, one after "
            f"another): {rates}{versus}")
