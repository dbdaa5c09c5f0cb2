"""A big request (hundreds of messages, tens of thousands of characters) is rendered and
tokenized in a worker thread: the streams already running go on meanwhile, and it is answered
(or refused) exactly as a small one."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from typing import Any

from server_helpers import MODEL_ID, assert_error_shape, request

from localpref.errors import SettingsError
from localpref.methods import Base
from localpref.server.jobs import GenerationJob
from localpref.server.translate import (
    BIG_REQUEST_CHARACTERS,
    BIG_REQUEST_MESSAGES,
    GenerationArgs,
)

CHAT = "/chat/completions"


def turns(count: int) -> list[dict[str, str]]:
    """``count`` messages, user and assistant in turn, ending with the user's."""
    return [{"role": "user" if (count - i) % 2 else "assistant", "content": f"n{i}"}
            for i in range(count)]


def test_big_means_many_messages_or_many_characters() -> None:
    assert not GenerationArgs(turns(BIG_REQUEST_MESSAGES)).big
    assert GenerationArgs(turns(BIG_REQUEST_MESSAGES + 1)).big
    text = "x" * BIG_REQUEST_CHARACTERS
    assert not GenerationArgs([{"role": "user", "content": text}]).big
    assert GenerationArgs([{"role": "user", "content": text + "x"}]).big
    assert GenerationArgs([{"role": "user", "content": "Hi"}],
                          {"preference": text + "x"}).big  # the preference counts too


def test_a_big_request_is_answered_as_the_library_answers_it(server, model) -> None:
    messages = turns(BIG_REQUEST_MESSAGES + 1)
    answer = request(server.url, "POST", CHAT, body={
        "model": MODEL_ID, "messages": messages, "max_tokens": 6, "temperature": 0})
    assert answer.status == 200, answer.text
    alone = model.generate(messages, method=Base(), max_tokens=6, temperature=0)
    assert answer.json()["choices"][0]["message"]["content"] == alone.text


def _stream_meanwhile(client, send: Callable[[], Any]) -> Any:
    """``send()``'s answer, made while a stream runs; asserts that the stream's pieces kept
    coming meanwhile: no wait between them took a large part of it (made in the event loop,
    one wait took nearly all of it)."""
    arrivals: list[float] = []
    stream = client.chat.completions.create(
        model=MODEL_ID, messages=[{"role": "user", "content": "Tell me a long story."}],
        max_tokens=900, temperature=0, stream=True, extra_body={"localpref": {"ignore_eos": True}})
    chunks = iter(stream)
    next(chunks)  # it has begun
    enough = threading.Event()

    def read() -> None:
        for _ in chunks:
            arrivals.append(time.monotonic())
            if enough.is_set():
                break
        stream.close()

    reading = threading.Thread(target=read)
    reading.start()
    try:
        sent_at = time.monotonic()
        answer = send()
        answered_at = time.monotonic()
    finally:
        enough.set()
        reading.join(120)
    during = [at for at in arrivals if sent_at < at < answered_at]
    waits = [later - earlier for earlier, later in
             zip([sent_at, *during], [*during, answered_at], strict=True)]
    assert len(during) >= 3 and max(waits) < (answered_at - sent_at) / 3, (
        len(during), max(waits), answered_at - sent_at)
    return answer


def test_streams_go_on_while_a_big_request_is_made_and_refused(server, client) -> None:
    """25,000 messages take seconds to render and tokenize (then the prompt is too long):
    the stream that runs meanwhile keeps receiving its tokens."""
    refused = _stream_meanwhile(client, lambda: request(server.url, "POST", CHAT, body={
        "model": MODEL_ID, "messages": turns(25_001), "max_tokens": 4}))
    error = assert_error_shape(refused, 400)
    assert (error["code"], error["param"]) == ("context_length_exceeded", "messages")


def merged_levels(levels: int) -> dict[str, Any]:
    """A schema whose every level merges the one below twice (``allOf``): the converter
    writes ``2 ** levels`` copies of the first, about a second at 9 levels."""
    definitions: dict[str, Any] = {"B0": {"type": "object",
                                          "properties": {"s": {"type": "string"}}}}
    for level in range(1, levels + 1):
        below = {"$ref": f"#/$defs/B{level - 1}"}
        definitions[f"B{level}"] = {"type": "object", "properties": {
            name: {"allOf": [below, dict(below)]} for name in ("x", "y")}}
    return {"$defs": definitions, "$ref": f"#/$defs/B{levels}"}


def test_streams_go_on_while_a_slow_schema_is_converted(server, client) -> None:
    """llama-cpp-python's converter is Python, and some schemas within the checked limits
    take it seconds: it ran in the event loop, and every stream (and /health) waited."""
    answer = _stream_meanwhile(client, lambda: request(server.url, "POST", CHAT, body={
        "model": MODEL_ID, "messages": turns(1), "max_tokens": 2, "response_format": {
            "type": "json_schema", "json_schema": {"name": "deep", "schema": merged_levels(9)}}}))
    assert answer.status == 200
    assert answer.json()["choices"][0]["message"]["content"].startswith("{")


def test_the_shutdown_waits_for_a_request_a_worker_is_making() -> None:
    """``join`` (before the model is closed) waits while a worker thread reads the model."""
    making, release = threading.Event(), threading.Event()

    def start():
        making.set()
        release.wait(60)
        raise SettingsError("refused after it was made")

    loop = asyncio.new_event_loop()
    job = GenerationJob(start, loop)
    runner = threading.Thread(target=loop.run_until_complete, args=(job.begin_in_worker(),))
    runner.start()
    assert making.wait(60)
    joined = threading.Event()
    joiner = threading.Thread(target=lambda: (job.join(60), joined.set()))
    joiner.start()
    assert not joined.wait(0.5)  # still making: the model may not be closed yet
    release.set()
    assert joined.wait(60)
    runner.join(60)
    loop.close()
    kind, error = job.events.get_nowait()
    assert kind == "error" and str(error) == "refused after it was made"
