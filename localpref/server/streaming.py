"""Server-Sent Events for a streaming chat (or text) completion.

``data: {chunk}\\n\\n`` frames: the first delta carries the role, then content pieces, the last
chunk the ``finish_reason`` (and the ``localpref`` extension); with
``stream_options.include_usage`` a chunk with ``choices: []`` and ``usage``; then
``data: [DONE]``. An error after the stream began is sent as ``data: {"error": {...}}`` then
``[DONE]``. Text completions stream ``text_completion`` chunks the same way (no role chunk).
With ``logprobs`` the finishing chunk carries every token's. When the client goes away the
generator is cancelled by Starlette, and the job is cancelled with it: the generation ends at
its next step.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

from localpref.decoding import Result
from localpref.server import completions
from localpref.server.errors import from_library
from localpref.server.jobs import Event, GenerationJob

DONE = b"data: [DONE]\n\n"
#: One choice's event of several streamed together: (its index, the event).
ChoiceEvent = tuple[int, Event]


def frame(payload: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(payload, ensure_ascii=False).encode() + b"\n\n"


def piece_frames(index: int = 0, **common: Any) -> Callable[[str], bytes]:
    """The frame of one content piece of a stream (``common``: ``completions.chunk``'s
    model, ident, created and shape), byte for byte ``frame(chunk(delta={"content":
    text}))``, from a frame rendered once around a placeholder: only the text is encoded per
    piece (one piece a token and a stream; docs/performance.md, "Where a step's time goes
    beside the decode")."""
    placeholder = "\x00piece\x00"
    rendered = frame(completions.chunk(**common, index=index, delta={"content": placeholder}))
    # the last one: the text comes after every other field a client names (the model id)
    before, after = rendered.rsplit(json.dumps(placeholder).encode(), 1)

    def piece_frame(text: str) -> bytes:
        return before + json.dumps(text, ensure_ascii=False).encode() + after

    return piece_frame


def pieces_ready(text: str, events: asyncio.Queue[Event]) -> tuple[str, Event | None]:
    """``text`` joined by the pieces already waiting behind it in ``events`` (one frame for
    what the loop read in one drain, ``jobs.LoopWaker``), and the first other event taken
    from the queue on the way (None: none)."""
    while not events.empty():
        event = events.get_nowait()
        if event[0] != "piece":
            return text, event
        text += event[1]
    return text, None


def finish_frame(result: Result, *, avoid: Any, index: int = 0,
                 logprobs: Callable[[Result], Any] | None = None, **common: Any) -> bytes:
    """The frame of choice ``index``'s finishing chunk: its ``finish_reason``, its logprobs
    (sent whole here) and the ``localpref`` object."""
    return frame(completions.chunk(
        **common, index=index, finish=completions.finish_reason(result),
        logprobs=logprobs(result) if logprobs is not None else None,
        localpref=completions.localpref_extension(result, avoid)))


def ready_events(events: asyncio.Queue[ChoiceEvent]) -> list[ChoiceEvent]:
    """Every event already waiting in ``events`` (taken from it)."""
    ready = []
    while not events.empty():
        ready.append(events.get_nowait())
    return ready


async def sse_events(job: GenerationJob, first: Event, *, model: str, avoid: Any,
                     include_usage: bool, shape: completions.Shape = completions.CHAT,
                     logprobs: Callable[[Result], Any] | None = None) -> AsyncIterator[bytes]:
    """The frames of one streamed completion; ``first`` is the job's first event, already read
    (so that an error before any text is an HTTP error status instead). ``logprobs`` (the
    answer's, from its result): sent whole with the finishing chunk."""
    ident, created = shape.new_id(), completions.now()
    common = {"model": model, "ident": ident, "created": created, "shape": shape}
    piece_frame = piece_frames(**common)
    event = first
    try:
        if shape.chat:
            yield frame(completions.chunk(**common, delta={"role": "assistant", "content": ""}))
        while True:
            kind, value = event
            if kind == "piece":
                text, following = pieces_ready(value, job.events)
                yield piece_frame(text)
                if following is not None:
                    event = following
                    continue
            elif kind == "done":
                yield finish_frame(value, avoid=avoid, logprobs=logprobs, **common)
                if include_usage:
                    yield frame(completions.chunk(**common, choices=False,
                                                  usage=completions.usage(value)))
                break
            else:
                yield frame(from_library(value).body())
                break
            event = await job.events.get()
        yield DONE
    finally:
        job.cancel()  # the client went away (or the stream ended): end the generation


async def sse_choices(events: asyncio.Queue[ChoiceEvent], first: ChoiceEvent, choices: int, *,
                      model: str, avoid: Any, include_usage: bool, on_close: Callable[[], None],
                      shape: completions.Shape = completions.CHAT,
                      logprobs: Callable[[Result], Any] | None = None) -> AsyncIterator[bytes]:
    """The frames of ``choices`` answers streamed as one completion (``n`` > 1), OpenAI's
    way: every chunk holds one choice, named by its ``index``; a chat's role chunks first,
    then each choice's pieces as they come and its finishing chunk when it ends, the usage
    (each prompt once) after the last. ``events`` holds every choice's events as they come,
    ``first`` already read from it. An error of any choice is sent as an error frame and
    ends the stream; ``on_close`` then (or when the client goes away) ends the others."""
    ident, created = shape.new_id(), completions.now()
    common = {"model": model, "ident": ident, "created": created, "shape": shape}
    frames = [piece_frames(index, **common) for index in range(choices)]
    results: list[Result] = []
    event = first
    try:
        if shape.chat:
            for index in range(choices):
                yield frame(completions.chunk(**common, index=index,
                                              delta={"role": "assistant", "content": ""}))
        while len(results) < choices:
            failed = False
            texts: dict[int, str] = {}  # the pieces read together: one frame a choice
            for index, (kind, value) in [event, *ready_events(events)]:
                if kind == "piece":
                    texts[index] = texts.get(index, "") + value
                    continue
                if index in texts:
                    yield frames[index](texts.pop(index))
                if kind == "done":
                    yield finish_frame(value, avoid=avoid, index=index, logprobs=logprobs,
                                       **common)
                    results.append(value)
                else:
                    yield frame(from_library(value).body())
                    failed = True
                    break
            if failed:
                break
            for index, text in texts.items():
                yield frames[index](text)
            if len(results) < choices:
                event = await events.get()
        if include_usage and len(results) == choices:
            yield frame(completions.chunk(**common, choices=False,
                                          usage=completions.several_usage(results, choices)))
        yield DONE
    finally:
        on_close()
