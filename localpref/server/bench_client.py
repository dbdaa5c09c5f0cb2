"""The client side of ``localpref bench --server``: streamed chat requests over plain HTTP, the
time of every text piece, and several clients at once."""

from __future__ import annotations

import http.client
import itertools
import json
import socket
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np

from localpref.errors import ModelError

SYSTEM_PROMPT = "You are a helpful assistant."


@dataclass
class Target:
    """One server and the model id to ask it for."""

    label: str
    port: int
    model: str
    #: Extra fields of every request's body (``ignore_eos`` in the server's own spelling).
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class StreamTiming:
    ttft_s: float | None
    tokens: int
    #: ``time.perf_counter()`` of every text piece.
    arrivals: list[float] = field(default_factory=list)
    prompt_tokens: int | None = None


def stream_once(target: Target, prompt: str, max_tokens: int, number: int = 0,
                on_first: Callable[[], None] | None = None) -> StreamTiming:
    """One streamed greedy request: time to first text piece, and tokens received.

    The user message starts with its own ``number``, so that no server answers from a cache
    of the same prompt (llama-cpp-python's keeps the last prompt's KV cache). ``on_first`` is
    called at the first text piece.
    """
    body = json.dumps({
        "model": target.model, "stream": True, "temperature": 0, "max_tokens": max_tokens,
        "stream_options": {"include_usage": True},
        "messages": [{"role": "system", "content": SYSTEM_PROMPT},
                     {"role": "user", "content": f"({number}) {prompt}"}],
        **target.extra,
    })
    connection = http.client.HTTPConnection("127.0.0.1", target.port, timeout=600)
    started = time.perf_counter()
    connection.request("POST", "/v1/chat/completions", body=body,
                       headers={"Content-Type": "application/json"})
    response = connection.getresponse()
    if response.status != 200:
        raise ModelError(f"{target.label} answered {response.status}: "
                         f"{response.read()[:200]!r}")
    arrivals: list[float] = []
    usage: dict[str, Any] = {}
    for raw in response:
        line = raw.decode("utf-8", "replace").strip()
        if line == "data: [DONE]":
            break
        if not line.startswith("data: "):
            continue
        chunk = json.loads(line[6:])
        if chunk.get("usage"):
            usage = chunk["usage"]
        for choice in chunk.get("choices") or []:
            if (choice.get("delta") or {}).get("content"):
                arrivals.append(time.perf_counter())
                if len(arrivals) == 1 and on_first is not None:
                    on_first()
    connection.close()
    tokens = usage.get("completion_tokens")
    prompt_tokens = usage.get("prompt_tokens")
    return StreamTiming(arrivals[0] - started if arrivals else None,
                        int(tokens) if tokens is not None else len(arrivals), arrivals,
                        int(prompt_tokens) if prompt_tokens is not None else None)


_request_numbers = itertools.count(1)


def next_number() -> int:
    """A request number that no earlier request of this process used."""
    return next(_request_numbers)


Outcome = TypeVar("Outcome")


def run_clients(target: Target, requests: Sequence[Callable[[int], Outcome]]
                ) -> tuple[float, list[Outcome]]:
    """Each of ``requests`` (called with a fresh request number) on a thread of its own, all
    at once: (wall seconds from the first sent to the last ended, what each returned, in
    order)."""
    timings: list[Outcome | BaseException | None] = [None] * len(requests)
    numbers = [next_number() for _ in requests]

    def client(index: int) -> None:
        try:
            timings[index] = requests[index](numbers[index])
        except BaseException as error:  # noqa: BLE001 - reported below
            timings[index] = error

    threads = [threading.Thread(target=client, args=(i,)) for i in range(len(requests))]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - started
    for timing in timings:
        if isinstance(timing, BaseException):
            raise ModelError(f"A request to {target.label} failed: {timing}") from timing
    return wall, [t for t in timings if t is not None and not isinstance(t, BaseException)]


def measure(target: Target, clients: int, prompt: str, max_tokens: int
            ) -> tuple[float, list[float], int]:
    """``clients`` concurrent streams of the same request: (wall seconds, TTFTs, tokens)."""
    def request(number: int) -> StreamTiming:
        return stream_once(target, prompt, max_tokens, number)

    wall, done = run_clients(target, [request] * clients)
    return wall, [t.ttft_s for t in done if t.ttft_s is not None], sum(t.tokens for t in done)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def percentile_ms(values: Sequence[float], q: float) -> float | None:
    return round(float(np.percentile(values, q)) * 1000, 1) if values else None
