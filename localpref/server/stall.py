"""The long-prompt stall of ``localpref bench --server``: how long streams that are already
decoding stop while a long prompt joins them.

Three streams decode; once each has sent its first piece, a request with a prompt of about
``prompt_tokens`` tokens joins. The stall is the longest gap between two consecutive pieces of
one stream that ends after the joiner was sent: a server that prefills the whole prompt in one
decode (llama-server's default batch of 2048) stops every stream for the whole prefill; one
that prefills in chunks between steps (localpref's scheduler) stops them for a chunk at a time.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass

from localpref.errors import ModelError
from localpref.server.bench_client import (
    StreamTiming,
    Target,
    next_number,
    run_clients,
    stream_once,
)

STREAMS = 3
#: Tokens the joiner asks for: its first piece ends the prefill.
JOINER_TOKENS = 4
_TOKENS_PER_NOTE = 26  # about, with SmolLM2's tokenizer


@dataclass(frozen=True)
class StallTiming:
    stall_s: float
    joiner_ttft_s: float | None
    joiner_prompt_tokens: int | None
    #: Every stream still decoding when the joiner's first piece came (else the stall is a
    #: lower bound).
    streams_outlived_prefill: bool


def long_prompt(tokens: int) -> str:
    """About ``tokens`` tokens of plain English: numbered notes to summarise."""
    notes = (f"Note {i}: the basil on the kitchen windowsill wants water every {i % 6 + 2} "
             "days and four hours of morning sun." for i in range(1, max(1, tokens //
                                                                          _TOKENS_PER_NOTE) + 1))
    return "Summarise these notes in one sentence.\n" + "\n".join(notes)


def stall_seconds(streams: Sequence[Sequence[float]], joined_at: float) -> float:
    """The longest gap between consecutive arrival times of one stream whose later arrival
    is after ``joined_at`` (a gap that spans the join counts whole); 0.0 when there is none."""
    gaps = [later - earlier for arrivals in streams
            for earlier, later in zip(arrivals, arrivals[1:], strict=False) if later > joined_at]
    return max(gaps, default=0.0)


def measure_stall(target: Target, prompt: str, max_tokens: int, prompt_tokens: int,
                  streams: int = STREAMS) -> StallTiming:
    """``streams`` streams of ``prompt`` (``max_tokens`` each, long enough to outlive the
    joiner's prefill), then the long prompt joins; the stall and the joiner's TTFT."""
    started = [threading.Event() for _ in range(streams)]
    outcome: list[tuple[float, list[StreamTiming]] | BaseException] = []

    def background() -> None:
        def request(index: int):  # noqa: ANN202 - a request of run_clients
            return lambda number: stream_once(target, prompt, max_tokens, number,
                                              on_first=started[index].set)

        try:
            outcome.append(run_clients(target, [request(i) for i in range(streams)]))
        except BaseException as error:  # noqa: BLE001 - raised below
            outcome.append(error)
            for event in started:
                event.set()

    thread = threading.Thread(target=background)
    thread.start()
    for event in started:
        event.wait(timeout=600)
    joined_at = time.perf_counter()
    joiner = stream_once(target, long_prompt(prompt_tokens), JOINER_TOKENS, next_number())
    thread.join()
    if isinstance(outcome[0], BaseException):
        raise ModelError(f"A request to {target.label} failed: {outcome[0]}") from outcome[0]
    _, timings = outcome[0]
    prefill_end = joined_at + (joiner.ttft_s or 0.0)
    return StallTiming(
        stall_s=stall_seconds([t.arrivals for t in timings], joined_at),
        joiner_ttft_s=joiner.ttft_s,
        joiner_prompt_tokens=joiner.prompt_tokens,
        streams_outlived_prefill=all(t.arrivals and t.arrivals[-1] > prefill_end
                                     for t in timings),
    )
