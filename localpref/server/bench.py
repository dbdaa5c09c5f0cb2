"""``localpref bench --server``: localpref's server against llama.cpp servers, over HTTP.

Every server runs as a child process on 127.0.0.1 with the same GGUF, the same llama.cpp
threads and the same context per request: ``localpref serve --parallel P`` (2P lanes) and the
baselines named by ``--baseline``: llama-cpp-python's own server (``python -m
localpref.server.baseline``, ``llama_cpp.server`` with the same model parameters as localpref's
engine; it serves one request at a time) and llama.cpp's C++ ``llama-server``
(:mod:`localpref.server.llama_server`, with 2P slots: one per localpref lane). For each count
of concurrent streaming clients (each sending the same greedy request, numbered so that no
prompt repeats, end tokens ignored where the server can) it measures:

- ``tokens_per_s``: the tokens all clients received / the wall time from the first request
  sent to the last stream ended (aggregate throughput, prefill included);
- ``ttft_p50_ms`` / ``ttft_p95_ms``: time from a request sent to its first text piece.

localpref is measured with plain decoding (``ID``, Base) and steered (``ID:recommended:PREF``,
the model's recommended steering, two lanes a request: up to P clients); the baselines with
Base only (they cannot steer). With llama-server, the long-prompt stall too
(:mod:`localpref.server.stall`) and a staggered load, clients sending requests of different
lengths one after another (:mod:`localpref.server.staggered`). The configurations are
interleaved within every round, so drift of a shared machine touches all alike; the machine's
load average is recorded before every measurement. Tokens are the ``usage`` the server
reports, else one per streamed piece. Nothing here asserts a timing.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from localpref.bench.machine import load_average
from localpref.bench.settings import check_rate_tokens
from localpref.engine import MAX_LANES, MAX_THREADS, available_cores
from localpref.errors import LocalprefError, ModelError, SettingsError
from localpref.server import llama_server
from localpref.server.bench_client import Target, free_port, measure, percentile_ms
from localpref.server.paired import format_paired, paired_ratios, paired_two_lane_limit
from localpref.server.staggered import (
    CLIENTS,
    REQUESTS_PER_CLIENT,
    StaggeredTiming,
    format_staggered,
    measure_staggered,
    request_lengths,
    staggered_report,
)
from localpref.server.stall import measure_stall

CLIENT_COUNTS = (1, 2, 4)
#: With llama-server, 8 clients too: llama-server's plain rate with as many slots as
#: localpref has lanes gives the two-lane limit of steered clients.
CLIENT_COUNTS_WITH_LLAMA_SERVER = (1, 2, 4, 8)
BASELINES = ("llama-cpp-python", "llama-server")
_SERVING = re.compile(r"^localpref: serving (\S+) at http://[^:]+:(\d+)/v1$")

Progress = Callable[[str], None]


@dataclass(frozen=True)
class ServerBenchSettings:
    """What ``bench --server`` measures. ``clients`` defaults to :data:`CLIENT_COUNTS`, or
    :data:`CLIENT_COUNTS_WITH_LLAMA_SERVER` when llama-server is a baseline."""

    model: str | None = None
    max_tokens: int = 96
    rounds: int = 3
    clients: tuple[int, ...] = ()
    threads: int | None = None
    prompt: str = "How do I keep basil alive?"
    preference: str = "concise"
    n_ctx: int = 1024
    baselines: tuple[str, ...] = ("llama-cpp-python",)
    #: The llama-server binary (a path or a name on PATH); None: the build script's cache.
    llama_server: str | None = None
    #: Tokens of the long prompt whose prefill the stall measures (with llama-server).
    stall_prompt_tokens: int = 1500

    def __post_init__(self) -> None:
        check_rate_tokens(self.max_tokens, "a stream's")
        for flag, value in (("--max-tokens", self.max_tokens), ("--repeat", self.rounds)):
            if value < 1:
                raise SettingsError(f"{flag} must be 1 or more (got {value}).")
        if not self.clients:
            object.__setattr__(self, "clients", CLIENT_COUNTS_WITH_LLAMA_SERVER
                               if "llama-server" in self.baselines else CLIENT_COUNTS)
        if min(self.clients) < 1:
            raise SettingsError(f"--clients must be 1 or more (got {min(self.clients)}).")
        if max(self.clients) > MAX_LANES:  # (serve's largest --parallel, a lane a client)
            raise SettingsError(f"--clients goes up to {MAX_LANES}, what localpref serve "
                                f"--parallel {MAX_LANES // 2} holds (got {max(self.clients)}).")
        if self.threads is not None and not 1 <= self.threads <= MAX_THREADS:
            raise SettingsError(f"--threads must be from 1 to {MAX_THREADS}, llama.cpp's most "
                                f"(got {self.threads}).")
        if not self.baselines:
            raise SettingsError("--baseline needs at least one server.")
        for name in self.baselines:
            if name not in BASELINES:
                raise SettingsError(f"Unknown baseline {name!r}: choose among "
                                    f"{', '.join(BASELINES)}.")

    @property
    def parallel(self) -> int:
        """``localpref serve --parallel``: 4 (as ``serve``), more when the clients need it;
        every Base client gets a lane of its own, every steered one two."""
        return max(4, -(-max(self.clients) // 2))

    @property
    def lanes(self) -> int:
        return 2 * self.parallel

    @property
    def stall(self) -> bool:
        """Measure the long-prompt stall (with llama-server, whose default batch stalls)."""
        return "llama-server" in self.baselines

    @property
    def context(self) -> int:
        """Tokens of context per request (per lane, per slot): room for the long prompt when
        the stall is measured."""
        return max(self.n_ctx, self.stall_prompt_tokens + 548) if self.stall else self.n_ctx

    @property
    def stall_stream_tokens(self) -> int:
        """Tokens of the streams a long prompt joins: enough to outlive its prefill."""
        return max(256, 4 * self.max_tokens)


def start_localpref(settings: ServerBenchSettings, threads: int) -> tuple[subprocess.Popen, Target]:
    """``localpref serve`` on a free port; returns once it has printed its serving line."""
    command = [sys.executable, "-m", "localpref.cli", "serve", "--port", "0",
               "--parallel", str(settings.parallel), "--threads", str(threads),
               "--ctx", str(settings.context)]
    if settings.model:
        command += ["--model", settings.model]
    env = {k: v for k, v in os.environ.items() if k != "LOCALPREF_API_KEY"}
    # its stderr: its sentence, where it does not start
    with tempfile.TemporaryFile(mode="w+") as errors:
        with llama_server.killed_unless_started(command, stdout=subprocess.PIPE, stderr=errors,
                                                text=True, env=env) as process:
            line = process.stdout.readline().strip() if process.stdout else ""
            match = _SERVING.match(line)
            if not match:
                process.wait()
                errors.seek(0)
                said = errors.read().strip().splitlines()
                reason = said[-1].removeprefix("localpref: ") if said else repr(line)
                raise ModelError(f"localpref serve did not start: {reason}")
    return process, Target("localpref base", int(match.group(2)), match.group(1),
                           {"localpref": {"ignore_eos": True}})


def start_llama_cpp(path: Path, settings: ServerBenchSettings, threads: int
                    ) -> tuple[subprocess.Popen, Target]:
    """llama-cpp-python's server on a free port; returns once it answers ``/v1/models``. It
    has no ``ignore_eos``: its answers end at the model's end token (this prompt's greedy
    answer runs past 96 tokens on the bundled model)."""
    port = free_port()
    command = [sys.executable, "-m", "localpref.server.baseline", "--model", str(path),
               "--host", "127.0.0.1", "--port", str(port), "--n_threads", str(threads),
               "--n_threads_batch", str(threads), "--n_ctx", str(settings.context),
               "--flash_attn", "True", "--verbose", "False",
               "--interrupt_requests", "False"]  # queue concurrent requests, as localpref does
    deadline = time.monotonic() + 300
    with llama_server.killed_unless_started(command, stdout=subprocess.DEVNULL,
                                            stderr=subprocess.PIPE, text=True) as process:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                error = (process.stderr.read() if process.stderr else "").strip().splitlines()
                raise ModelError("llama-cpp-python's server did not start: "
                                 f"{error[-1] if error else 'no output'} (it needs the dev "
                                 "extras: sse-starlette, starlette-context, pydantic-settings).")
            try:
                connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
                connection.request("GET", "/v1/models")
                if connection.getresponse().status == 200:
                    return process, Target("llama-cpp-python base", port, "base")
            except OSError:
                time.sleep(0.2)
        raise ModelError("llama-cpp-python's server did not answer within 5 minutes.")


def start_llama_server(binary: Path, path: Path, settings: ServerBenchSettings, threads: int
                       ) -> tuple[subprocess.Popen, Target]:
    """llama-server with one slot per localpref lane; returns once its model is loaded."""
    port = free_port()
    command = llama_server.server_command(binary, path, port, threads, settings.lanes,
                                          settings.context)
    return (llama_server.start(command, port),
            Target("llama-server base", port, "base", {"ignore_eos": True}))


def run_server_bench(settings: ServerBenchSettings, progress: Progress) -> dict[str, Any]:
    """Start every server, measure every configuration, stop them; the report."""
    from localpref.models import resolve_model

    binary = (llama_server.find_binary(settings.llama_server)
              if "llama-server" in settings.baselines else None)
    path = resolve_model(settings.model)
    threads = settings.threads or available_cores()
    processes: list[subprocess.Popen] = []
    loads: list[float] = []
    try:
        progress(f"starting localpref serve --parallel {settings.parallel}")
        mine, base = start_localpref(settings, threads)
        processes.append(mine)
        # Steered answers end early on this prompt (10-39 tokens): every row runs to the cap
        # (end tokens ignored) so that tokens/s measures decoding, not the prompt's prefill.
        steered = Target("localpref steered", base.port,
                         f"{base.model}:recommended:{settings.preference}", base.extra)
        targets = [base, steered]
        if "llama-server" in settings.baselines and binary is not None:
            progress(f"starting llama-server with {settings.lanes} slots")
            process, target = start_llama_server(binary, path, settings, threads)
            processes.append(process)
            targets.append(target)
        if "llama-cpp-python" in settings.baselines:
            progress("starting llama-cpp-python's server")
            process, target = start_llama_cpp(path, settings, threads)
            processes.append(process)
            targets.append(target)
        for target in targets:  # warm-up: compiled kernels, caches
            progress(f"warming up {target.label}")
            measure(target, 1, settings.prompt, 4)
        samples: dict[tuple[str, int], list[tuple[float, list[float], int]]] = {}
        stalls: dict[str, list[Any]] = {}
        staggered: dict[str, list[StaggeredTiming]] = {}
        lengths = request_lengths(CLIENTS, REQUESTS_PER_CLIENT, settings.max_tokens)

        def stall_of(target: Target) -> Any:
            return measure_stall(target, settings.prompt, settings.stall_stream_tokens,
                                 settings.stall_prompt_tokens)

        def staggered_of(target: Target) -> StaggeredTiming:
            return measure_staggered(target, settings.prompt, lengths)

        for round_index in range(settings.rounds):
            shift = round_index % len(targets)
            order = targets[shift:] + targets[:shift]
            for clients in settings.clients:
                for target in order:
                    if target is steered and clients > settings.parallel:
                        continue  # two lanes a steered request: it would queue
                    progress(f"round {round_index + 1}/{settings.rounds}: {target.label}, "
                             f"{clients} client(s)")
                    loads.append(load_average() or 0.0)
                    samples.setdefault((target.label, clients), []).append(
                        measure(target, clients, settings.prompt, settings.max_tokens))
            if settings.stall:
                for labels, what, into, measure_one in (
                        (STALL_LABELS, "long-prompt stall", stalls, stall_of),
                        (STAGGERED_LABELS, "staggered load", staggered, staggered_of)):
                    for target in order:
                        if target.label not in labels:
                            continue
                        progress(f"round {round_index + 1}/{settings.rounds}: {target.label}, "
                                 f"{what}")
                        loads.append(load_average() or 0.0)
                        into.setdefault(target.label, []).append(measure_one(target))
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
    report = _report(settings, base.model, threads, samples, stalls, loads)
    if staggered:
        report["staggered"] = staggered_report(staggered, lengths)
    return report


#: The servers whose long-prompt stall is measured (llama-cpp-python's serves one at a time).
STALL_LABELS = ("localpref base", "llama-server base")
#: The servers measured under the staggered load (with llama-server, as the stall).
STAGGERED_LABELS = ("localpref base", "localpref steered", "llama-server base")


def _report(settings: ServerBenchSettings, model: str, threads: int,
            samples: dict[tuple[str, int], list[tuple[float, list[float], int]]],
            stalls: dict[str, list[Any]], loads: list[float]) -> dict[str, Any]:
    servers: dict[str, dict[str, Any]] = {}
    for (label, clients), runs in samples.items():
        rates = [tokens / wall for wall, _, tokens in runs if wall > 0]
        ttfts = [t for _, values, _ in runs for t in values]
        servers.setdefault(label, {})[str(clients)] = {
            "tokens_per_s": round(float(np.median(rates)), 3),
            "ttft_p50_ms": percentile_ms(ttfts, 50),
            "ttft_p95_ms": percentile_ms(ttfts, 95),
            "requests": len(ttfts),
            "tokens": int(sum(tokens for _, _, tokens in runs)),
        }
    report: dict[str, Any] = {
        "model": model, "threads": threads, "max_tokens": settings.max_tokens,
        "rounds": settings.rounds, "parallel": settings.parallel, "lanes": settings.lanes,
        "baselines": list(settings.baselines), "servers": servers,
        "load_average": {"min": min(loads), "median": round(float(np.median(loads)), 2),
                         "max": max(loads)} if loads else None,
    }
    for name in settings.baselines:
        key = name.replace("-", "_")
        report[f"base_ratio_to_{key}"] = _ratios(servers, f"{name} base", "tokens_per_s")
        report[f"ttft_ratio_to_{key}"] = _ratios(servers, f"{name} base", "ttft_p50_ms")
        report[f"paired_to_{key}"] = paired_ratios(samples, "localpref base", f"{name} base")
    if "llama-server" in settings.baselines:
        report["steered_to_two_lane_limit"] = _two_lane_limit(servers)
        report["paired_steered_to_two_lane_limit"] = paired_two_lane_limit(
            samples, "localpref steered", "llama-server base")
    if stalls:
        report["long_prompt_stall"] = {label: _stall_row(rows) for label, rows in stalls.items()}
    return report


def _ratios(servers: dict[str, dict[str, Any]], baseline: str, key: str) -> dict[str, float]:
    """localpref Base's ``key`` over the baseline's, per client count."""
    ours, theirs = servers.get("localpref base", {}), servers.get(baseline, {})
    return {clients: round(row[key] / theirs[clients][key], 3) for clients, row in ours.items()
            if clients in theirs and row[key] and theirs[clients][key]}


def _two_lane_limit(servers: dict[str, dict[str, Any]]) -> dict[str, float]:
    """Steered tokens/s with N clients over the two-lane limit: half of llama-server's plain
    rate with 2N clients (as many streams as the steered requests' lanes)."""
    steered, plain = servers.get("localpref steered", {}), servers.get("llama-server base", {})
    limits = {}
    for clients, row in steered.items():
        lanes = str(2 * int(clients))
        if lanes in plain and plain[lanes]["tokens_per_s"] > 0:
            limits[clients] = round(row["tokens_per_s"] / (plain[lanes]["tokens_per_s"] / 2), 3)
    return limits


def _stall_row(rows: list[Any]) -> dict[str, Any]:
    ttfts = [row.joiner_ttft_s for row in rows if row.joiner_ttft_s is not None]
    return {
        "stall_s": round(float(np.median([row.stall_s for row in rows])), 3),
        "joiner_ttft_ms": percentile_ms(ttfts, 50),
        "joiner_prompt_tokens": rows[0].joiner_prompt_tokens,
        "streams_outlived_prefill": all(row.streams_outlived_prefill for row in rows),
        "runs": len(rows),
    }


def format_server_report(report: dict[str, Any]) -> str:
    """The report as a table."""
    load = report.get("load_average") or {}
    lines = [f"model {report['model']}, {report['threads']} threads, "
             f"{report['max_tokens']} tokens per request, {report['rounds']} rounds, "
             f"localpref --parallel {report['parallel']} ({report['lanes']} lanes), "
             f"load average {load.get('min', '-')}-{load.get('max', '-')}",
             f"{'server':<24}{'clients':>8}{'tokens/s':>10}{'TTFT p50':>10}{'TTFT p95':>10}"]
    for label, by_clients in report["servers"].items():
        for clients, row in by_clients.items():
            lines.append(f"{label:<24}{clients:>8}{row['tokens_per_s']:>10.1f}"
                         f"{_ms(row['ttft_p50_ms']):>10}{_ms(row['ttft_p95_ms']):>10}")
    for name in report["baselines"]:
        key = name.replace("-", "_")
        ratios = ", ".join(f"{c} client(s) {r:.2f}x"
                           for c, r in report[f"base_ratio_to_{key}"].items())
        ttft = ", ".join(f"{c}: {r:.2f}x" for c, r in report[f"ttft_ratio_to_{key}"].items())
        lines.append(f"localpref base / {name} base: tokens/s {ratios}; TTFT p50 {ttft}")
        paired = report.get(f"paired_to_{key}") or {}
        for what, title in (("tokens_per_s", "tokens/s"), ("ttft_p50", "TTFT p50")):
            if paired.get(what):
                rows = ", ".join(f"{c}: {format_paired(r)}" for c, r in paired[what].items())
                lines.append(f"  paired by round, 95 % interval, {title}: {rows}")
    if report.get("steered_to_two_lane_limit"):
        limits = ", ".join(f"{c} client(s) {r:.2f}x"
                           for c, r in report["steered_to_two_lane_limit"].items())
        lines.append(f"localpref steered / two-lane limit (llama-server, 2N clients, "
                     f"halved): {limits}")
    if report.get("paired_steered_to_two_lane_limit"):
        rows = ", ".join(f"{c}: {format_paired(r)}"
                         for c, r in report["paired_steered_to_two_lane_limit"].items())
        lines.append(f"  paired by round, 95 % interval: {rows}")
    if report.get("staggered"):
        lines.append(format_staggered(report["staggered"]))
    for label, row in (report.get("long_prompt_stall") or {}).items():
        note = "" if row["streams_outlived_prefill"] else " (a stream ended first: a lower bound)"
        lines.append(f"long-prompt stall, {label}: {row['stall_s']:.2f} s with "
                     f"{row['joiner_prompt_tokens']} prompt tokens joining 3 streams; the "
                     f"joiner's TTFT {_ms(row['joiner_ttft_ms'])}{note}")
    return "\n".join(lines)


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f} ms"


def run_server_bench_command(args: Any) -> int:
    """``localpref bench --server`` from the bench command's parsed flags."""
    settings = ServerBenchSettings(
        model=args.model, max_tokens=args.max_tokens, rounds=args.repeat,
        threads=args.threads, preference=args.preference, prompt=args.prompt,
        clients=args.clients or (), baselines=args.baseline or ("llama-cpp-python",),
        llama_server=args.llama_server, n_ctx=getattr(args, "ctx", None) or 1024,
    )
    if "llama-server" in settings.baselines:  # before any server starts
        llama_server.find_binary(settings.llama_server)

    def progress(message: str) -> None:
        if not args.quiet:
            print(f"bench: {message}", file=sys.stderr, flush=True)

    try:
        report = run_server_bench(settings, progress)
    except OSError as error:
        raise LocalprefError(f"The server benchmark failed: {error}.") from None
    print(json.dumps(report) if args.json else format_server_report(report))
    return 0
