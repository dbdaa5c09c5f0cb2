"""``localpref bench --server``: localpref's server against llama-cpp-python's own, over HTTP.

Both servers run as child processes on 127.0.0.1 with the same GGUF, the same llama.cpp
threads and the same window per request: ``localpref serve --parallel 4`` and
``python -m localpref.server.baseline`` (``llama_cpp.server`` with the same model parameters as
localpref's engine). For 1, 2 and 4 concurrent streaming clients (each sending the same
greedy request, numbered so that no prompt repeats) it measures:

- ``tokens_per_s``: the tokens all clients received / the wall time from the first request
  sent to the last stream ended (aggregate throughput, prefill included);
- ``ttft_p50_ms`` / ``ttft_p95_ms``: time from a request sent to its first text piece.

localpref is measured with plain decoding (``ID``, Base) and Amulet (``ID:amulet:PREF``);
llama-cpp-python's server with Base only (it cannot steer). The configurations are
interleaved within every round, so drift of a shared machine touches all alike. Tokens are
the ``usage`` the server reports, else one per streamed piece. Nothing here asserts a timing.
"""

from __future__ import annotations

import http.client
import itertools
import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from localpref.engine import available_cores
from localpref.errors import LocalprefError, ModelError, SettingsError

CLIENT_COUNTS = (1, 2, 4)
SYSTEM_PROMPT = "You are a helpful assistant."
_SERVING = re.compile(r"^localpref: serving (\S+) at http://[^:]+:(\d+)/v1$")

Progress = Callable[[str], None]


@dataclass(frozen=True)
class ServerBenchSettings:
    """What ``bench --server`` measures."""

    model: str | None = None
    max_tokens: int = 96
    rounds: int = 3
    clients: tuple[int, ...] = CLIENT_COUNTS
    threads: int | None = None
    prompt: str = "How do I keep basil alive?"
    preference: str = "concise"
    n_ctx: int = 1024

    def __post_init__(self) -> None:
        if self.max_tokens < 1 or self.rounds < 1:
            raise SettingsError("--max-tokens and --repeat must be 1 or more.")
        if not self.clients or min(self.clients) < 1:
            raise SettingsError("Client counts must be 1 or more.")


@dataclass
class Target:
    """One server and the model id to ask it for."""

    label: str
    port: int
    model: str
    #: Extra fields of every request's body (the steered rows send ``localpref.ignore_eos``).
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class StreamTiming:
    ttft_s: float | None
    tokens: int


def stream_once(port: int, model: str, settings: ServerBenchSettings,
                number: int = 0, extra: dict[str, Any] | None = None) -> StreamTiming:
    """One streamed greedy request: time to first text piece, and tokens received.

    Each request's user message starts with its own ``number``, so that no server answers
    from a cache of the same prompt (llama-cpp-python's keeps the last prompt's KV cache).
    """
    body = json.dumps({
        "model": model, "stream": True, "max_tokens": settings.max_tokens, "temperature": 0,
        "stream_options": {"include_usage": True},
        "messages": [{"role": "system", "content": SYSTEM_PROMPT},
                     {"role": "user", "content": f"({number}) {settings.prompt}"}],
        **(extra or {}),
    })
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    started = time.perf_counter()
    connection.request("POST", "/v1/chat/completions", body=body,
                       headers={"Content-Type": "application/json"})
    response = connection.getresponse()
    if response.status != 200:
        raise ModelError(f"The server on port {port} answered {response.status}: "
                         f"{response.read()[:200]!r}")
    first: float | None = None
    pieces = 0
    usage: int | None = None
    for raw in response:
        line = raw.decode("utf-8", "replace").strip()
        if not line.startswith("data: ") or line == "data: [DONE]":
            if line == "data: [DONE]":
                break
            continue
        chunk = json.loads(line[6:])
        if chunk.get("usage"):
            usage = int(chunk["usage"].get("completion_tokens") or 0)
        for choice in chunk.get("choices") or []:
            if (choice.get("delta") or {}).get("content"):
                pieces += 1
                if first is None:
                    first = time.perf_counter() - started
    connection.close()
    return StreamTiming(first, usage if usage is not None else pieces)


_request_numbers = itertools.count(1)


def measure(target: Target, clients: int, settings: ServerBenchSettings
            ) -> tuple[float, list[float], int]:
    """``clients`` concurrent streams: (wall seconds, TTFTs, tokens)."""
    timings: list[StreamTiming | BaseException] = [None] * clients  # type: ignore[list-item]
    numbers = [next(_request_numbers) for _ in range(clients)]

    def client(index: int) -> None:
        try:
            timings[index] = stream_once(target.port, target.model, settings, numbers[index],
                                         target.extra)
        except BaseException as error:  # noqa: BLE001 - reported below
            timings[index] = error

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - started
    for timing in timings:
        if isinstance(timing, BaseException):
            raise ModelError(f"A request to {target.label} failed: {timing}") from timing
    done = [t for t in timings if isinstance(t, StreamTiming)]
    return wall, [t.ttft_s for t in done if t.ttft_s is not None], sum(t.tokens for t in done)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def start_localpref(settings: ServerBenchSettings, threads: int) -> tuple[subprocess.Popen, Target]:
    """``localpref serve`` on a free port; returns once it has printed its serving line."""
    command = [sys.executable, "-m", "localpref.cli", "serve", "--port", "0",
               "--parallel", str(max(settings.clients)), "--threads", str(threads),
               "--ctx", str(settings.n_ctx)]
    if settings.model:
        command += ["--model", settings.model]
    env = {k: v for k, v in os.environ.items() if k != "LOCALPREF_API_KEY"}
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                               text=True, env=env)
    line = process.stdout.readline().strip() if process.stdout else ""
    match = _SERVING.match(line)
    if not match:
        process.kill()
        process.wait()
        raise ModelError(f"localpref serve did not start (it printed {line!r}).")
    return process, Target("localpref", int(match.group(2)), match.group(1))


def start_llama_cpp(path: Path, settings: ServerBenchSettings, threads: int
                    ) -> tuple[subprocess.Popen, Target]:
    """llama-cpp-python's server on a free port; returns once it answers ``/v1/models``."""
    port = free_port()
    command = [sys.executable, "-m", "localpref.server.baseline", "--model", str(path),
               "--host", "127.0.0.1", "--port", str(port), "--n_threads", str(threads),
               "--n_threads_batch", str(threads), "--n_ctx", str(settings.n_ctx),
               "--flash_attn", "True", "--verbose", "False",
               "--interrupt_requests", "False"]  # queue concurrent requests, as localpref does
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                               text=True)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if process.poll() is not None:
            error = (process.stderr.read() if process.stderr else "").strip().splitlines()
            raise ModelError("llama-cpp-python's server did not start: "
                             f"{error[-1] if error else 'no output'} (it needs the dev extras: "
                             "sse-starlette, starlette-context, pydantic-settings).")
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            connection.request("GET", "/v1/models")
            if connection.getresponse().status == 200:
                return process, Target("llama-cpp-python", port, "base")
        except OSError:
            time.sleep(0.2)
    process.kill()
    raise ModelError("llama-cpp-python's server did not answer within 5 minutes.")


def percentile_ms(values: Sequence[float], q: float) -> float | None:
    return round(float(np.percentile(values, q)) * 1000, 1) if values else None


def run_server_bench(settings: ServerBenchSettings, progress: Progress) -> dict[str, Any]:
    """Start both servers, measure every configuration, stop them; the report."""
    from localpref.models import resolve_model

    path = resolve_model(settings.model)
    threads = settings.threads or available_cores()
    processes: list[subprocess.Popen] = []
    try:
        progress("starting localpref serve")
        mine, localpref_target = start_localpref(settings, threads)
        processes.append(mine)
        progress("starting llama-cpp-python's server")
        theirs, llama_target = start_llama_cpp(path, settings, threads)
        processes.append(theirs)
        targets = {
            "localpref base": localpref_target,
            # Steered answers end early on this prompt (10-39 tokens): run them to the cap so
            # that their tokens/s measures decoding, not the prompt's prefill.
            "localpref amulet": Target("localpref", localpref_target.port,
                                       f"{localpref_target.model}:amulet:{settings.preference}",
                                       {"localpref": {"ignore_eos": True}}),
            "llama-cpp-python base": llama_target,
        }
        for label, target in targets.items():  # warm-up: compiled kernels, caches
            progress(f"warming up {label}")
            measure(target, 1, ServerBenchSettings(**{**vars(settings), "max_tokens": 4}))
        samples: dict[tuple[str, int], list[tuple[float, list[float], int]]] = {}
        for round_index in range(settings.rounds):
            for clients in settings.clients:
                order = list(targets.items())
                shift = round_index % len(order)
                for label, target in order[shift:] + order[:shift]:
                    progress(f"round {round_index + 1}/{settings.rounds}: {label}, "
                             f"{clients} client(s)")
                    samples.setdefault((label, clients), []).append(
                        measure(target, clients, settings))
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
    servers: dict[str, dict[str, Any]] = {}
    for (label, clients), runs in samples.items():
        rates = [tokens / wall for wall, _, tokens in runs if wall > 0]
        ttfts = [t for _, values, _ in runs for t in values]
        servers.setdefault(label, {})[str(clients)] = {
            "tokens_per_s": round(float(np.median(rates)), 1),
            "ttft_p50_ms": percentile_ms(ttfts, 50),
            "ttft_p95_ms": percentile_ms(ttfts, 95),
            "requests": len(ttfts),
            "tokens": int(sum(tokens for _, _, tokens in runs)),
        }
    ratios = {
        str(clients): round(servers["localpref base"][str(clients)]["tokens_per_s"]
                            / servers["llama-cpp-python base"][str(clients)]["tokens_per_s"], 3)
        for clients in settings.clients
        if servers["llama-cpp-python base"][str(clients)]["tokens_per_s"] > 0
    }
    return {"model": localpref_target.model, "threads": threads,
            "max_tokens": settings.max_tokens, "rounds": settings.rounds,
            "servers": servers, "base_ratio_to_llama_cpp_python": ratios}


def format_server_report(report: dict[str, Any]) -> str:
    """The report as a table."""
    lines = [f"model {report['model']}, {report['threads']} threads, "
             f"{report['max_tokens']} tokens per request, {report['rounds']} rounds",
             f"{'server':<24}{'clients':>8}{'tokens/s':>10}{'TTFT p50':>10}{'TTFT p95':>10}"]
    for label, by_clients in report["servers"].items():
        for clients, row in by_clients.items():
            lines.append(f"{label:<24}{clients:>8}{row['tokens_per_s']:>10.1f}"
                         f"{_ms(row['ttft_p50_ms']):>10}{_ms(row['ttft_p95_ms']):>10}")
    ratios = ", ".join(f"{c} client(s) {r:.2f}x"
                       for c, r in report["base_ratio_to_llama_cpp_python"].items())
    lines.append(f"localpref base / llama-cpp-python base: {ratios}")
    return "\n".join(lines)


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f} ms"


def run_server_bench_command(args: Any) -> int:
    """``localpref bench --server`` from the bench command's parsed flags."""
    settings = ServerBenchSettings(
        model=args.model, max_tokens=args.max_tokens, rounds=args.repeat,
        threads=args.threads, preference=args.preference, prompt=args.prompt,
    )

    def progress(message: str) -> None:
        if not args.quiet:
            print(f"bench: {message}", file=sys.stderr, flush=True)

    try:
        report = run_server_bench(settings, progress)
    except OSError as error:
        raise LocalprefError(f"The server benchmark failed: {error}.") from None
    print(json.dumps(report) if args.json else format_server_report(report))
    return 0
