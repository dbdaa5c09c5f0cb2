"""`localpref serve` over real HTTP, driven by the official openai SDK: every answer is exactly
the library's own for the same steering (greedy decoding of the bundled model)."""

from __future__ import annotations

import asyncio
import time

import openai
import pytest
from server_helpers import MODEL_ID, PROMPT, user

from localpref.methods import Contrastive, recommended_method
from localpref.presets import PRESETS

TOKENS = 10


def test_models_lists_the_model_and_one_id_per_preset(client) -> None:
    ids = [entry.id for entry in client.models.list().data]
    assert ids == [MODEL_ID, *(f"{MODEL_ID}:{name}" for name in PRESETS)]
    entry = client.models.list().data[0]
    assert entry.object == "model" and entry.owned_by == "localpref"
    # created: when the model was served from, the same in every answer (it was the time of
    # each request), as a model's creation time is
    time.sleep(1.1)
    again = client.models.list().data
    retrieved = client.models.retrieve(f"{MODEL_ID}:concise")
    assert {e.created for e in again} == {entry.created} == {retrieved.created}
    assert 0 < time.time() - entry.created < 3600


def test_method_id_gives_exactly_the_papers_method(client, model) -> None:
    expected = model.generate(PROMPT, preference="concise", method="amulet", max_tokens=TOKENS)
    answer = client.chat.completions.create(model=f"{MODEL_ID}:amulet:concise",
                                            messages=user(), max_tokens=TOKENS)
    assert answer.choices[0].message.content == expected.text
    assert answer.choices[0].message.role == "assistant"
    assert answer.model == f"{MODEL_ID}:amulet:concise"
    assert answer.object == "chat.completion"
    assert answer.usage.prompt_tokens == expected.stats["n_prompt_tokens"]
    assert answer.usage.completion_tokens == len(expected.tokens)
    assert answer.usage.total_tokens == expected.stats["n_prompt_tokens"] + len(expected.tokens)
    reason = {"eos": "stop", "stop": "stop", "length": "length"}[expected.stats["stop_reason"]]
    assert answer.choices[0].finish_reason == reason
    extension = answer.model_extra["localpref"]
    assert extension["method"] == "amulet" and extension["preference"] == "concise"
    assert extension["stats"]["settings"]["alpha"] == 2.0
    assert extension["stats"]["settings"]["contrast"] is None  # the papers' settings


def test_preset_id_streams_the_recommended_steering(client, model) -> None:
    expected = model.generate(PROMPT, preference="concise", max_tokens=TOKENS)
    assert expected.stats["method"] == recommended_method().label
    chunks = list(client.chat.completions.create(
        model=f"{MODEL_ID}:concise", messages=user(), max_tokens=TOKENS, stream=True,
        stream_options={"include_usage": True}))
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == expected.text
    finishing = [c for c in chunks if c.choices and c.choices[0].finish_reason]
    assert len(finishing) == 1 and finishing[0] is chunks[-2]
    settings = finishing[0].model_extra["localpref"]["stats"]["settings"]
    assert settings["contrast"] == recommended_method().contrast
    assert settings["tau"] == recommended_method().tau
    assert chunks[-1].choices == []
    assert chunks[-1].usage.completion_tokens == len(expected.tokens)
    assert chunks[-1].usage.prompt_tokens == expected.stats["n_prompt_tokens"]
    assert all(c.object == "chat.completion.chunk" for c in chunks)


def test_plain_id_is_plain_decoding_and_length_is_reported(client, model) -> None:
    expected = model.generate(PROMPT, max_tokens=3)
    answer = client.chat.completions.create(model=MODEL_ID, messages=user(), max_tokens=3)
    assert answer.choices[0].message.content == expected.text
    assert answer.choices[0].finish_reason == "length"
    assert answer.model_extra["localpref"]["method"] == "base"


def test_localpref_object_overrides_the_id_field_by_field(client, model) -> None:
    expected = model.generate(PROMPT, preference="verbose", method=Contrastive(ratio=1.0),
                              max_tokens=TOKENS)
    answer = client.chat.completions.create(
        model=f"{MODEL_ID}:concise", messages=user(), max_tokens=TOKENS,
        extra_body={"localpref": {"preference": "verbose", "method": "contrastive",
                                  "strength": 1.0}})
    assert answer.choices[0].message.content == expected.text
    extension = answer.model_extra["localpref"]
    assert extension["method"] == "contrastive" and extension["preference"] == "verbose"
    # Without a method the id's preference keeps the recommended steering, tau overridden.
    tau = client.chat.completions.create(
        model=f"{MODEL_ID}:concise", messages=user(), max_tokens=2,
        extra_body={"localpref": {"tau": 0.3}})
    settings = tau.model_extra["localpref"]["stats"]["settings"]
    assert settings["tau"] == 0.3 and settings["contrast"] == recommended_method().contrast
    assert tau.model_extra["localpref"]["preference"] == "concise"


def test_free_text_preference_in_the_id_is_url_decoded(client, model) -> None:
    expected = model.generate(PROMPT, preference="talk like a pirate: arr", method="amulet",
                              max_tokens=4)
    answer = client.chat.completions.create(
        model=f"{MODEL_ID}:amulet:talk%20like%20a%20pirate%3A%20arr", messages=user(),
        max_tokens=4)
    assert answer.choices[0].message.content == expected.text
    assert answer.model_extra["localpref"]["preference"] == "talk like a pirate: arr"


def test_developer_role_text_parts_sampling_and_stop(client, model) -> None:
    messages = [{"role": "system", "content": "You are terse."},
                {"role": "user", "content": "Name three\ncolours."}]  # parts: a line apart
    sampling = dict(temperature=0.8, top_p=0.9, seed=7)
    expected = model.generate(messages, preference="concise", max_tokens=TOKENS, top_k=20,
                              min_p=0.05, repeat_penalty=1.1, stop=["\n"], **sampling)
    answer = client.chat.completions.create(
        model=f"{MODEL_ID}:concise", max_tokens=TOKENS, stop="\n",
        messages=[{"role": "developer", "content": "You are terse."},
                  {"role": "user", "content": [{"type": "text", "text": "Name three"},
                                               {"type": "text", "text": "colours."}]}],
        presence_penalty=0, frequency_penalty=0, n=1,
        extra_body={"top_k": 20, "min_p": 0.05, "repeat_penalty": 1.1}, **sampling)
    assert answer.choices[0].message.content == expected.text
    settings = answer.model_extra["localpref"]["stats"]["settings"]
    assert (settings["top_k"], settings["min_p"], settings["repeat_penalty"]) == (20, 0.05, 1.1)
    assert settings["seed"] == 7 and settings["temperature"] == 0.8


async def test_four_concurrent_streams_each_equal_their_sequential_text(server, model) -> None:
    preferences = ["concise", "verbose", "uplifting", "formal"]
    expected = [model.generate(PROMPT, preference=p, method="amulet", max_tokens=6).text
                for p in preferences]
    client = openai.AsyncOpenAI(base_url=server.url, api_key="unused", max_retries=0,
                                timeout=600)

    async def one(preference: str) -> str:
        stream = await client.chat.completions.create(
            model=f"{MODEL_ID}:amulet:{preference}", messages=user(), max_tokens=6,
            stream=True)
        return "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])

    texts = await asyncio.gather(*(one(p) for p in preferences))
    await client.close()
    assert list(texts) == expected
    assert len(set(texts)) > 1  # the preferences did steer differently


async def test_async_non_streamed_request(server, model) -> None:
    expected = model.generate(PROMPT, preference="humorous", max_tokens=5)
    async with openai.AsyncOpenAI(base_url=server.url, api_key="unused", max_retries=0,
                                  timeout=600) as client:
        answer = await client.chat.completions.create(
            model=f"{MODEL_ID}:humorous", messages=user(), max_tokens=5)
    assert answer.choices[0].message.content == expected.text


def _wait_for(condition, seconds: float = 120.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "gave up waiting"
        time.sleep(0.05)


def test_a_stream_closed_by_the_client_frees_its_lanes(client, server, model) -> None:
    stream = client.chat.completions.create(
        model=f"{MODEL_ID}:amulet:verbose", messages=user("Write a long story about a fox."),
        max_tokens=400, stream=True)
    pieces = []
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            pieces.append(chunk.choices[0].delta.content)
            if len(pieces) == 2:
                break
    stream.close()
    _wait_for(lambda: not server.state.jobs)
    closed = server.state.finished[-1]
    assert closed.stats["stop_reason"] == "cancelled"
    assert closed.text.startswith("".join(pieces)) and len(closed.tokens) < 400
    later = client.chat.completions.create(model=f"{MODEL_ID}:concise", messages=user(),
                                           max_tokens=3)
    assert later.choices[0].message.content == model.generate(
        PROMPT, preference="concise", max_tokens=3).text
    lanes = [model.context.open_lane() for _ in range(model.context.max_lanes)]
    for lane in lanes:
        model.context.close_lane(lane)


def test_a_client_gone_before_a_whole_answer_cancels_it(server, model) -> None:
    import json
    import socket

    body = json.dumps({"model": f"{MODEL_ID}:amulet:verbose", "max_tokens": 400,
                       "messages": user("Write a long story about a fox.")}).encode()
    with socket.create_connection(("127.0.0.1", server.port)) as connection:
        connection.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                           b"Content-Type: application/json\r\nContent-Length: "
                           + str(len(body)).encode() + b"\r\n\r\n" + body)
        _wait_for(lambda: server.state.jobs)  # the generation has started
    _wait_for(lambda: not server.state.jobs)
    gone = server.state.finished[-1]
    assert gone.stats["stop_reason"] == "cancelled" and len(gone.tokens) < 400


def test_end_tokens_and_ignore_eos_in_the_localpref_object(client, model) -> None:
    from localpref.methods import Amulet

    ended = model.generate(PROMPT, preference="concise", method="amulet", max_tokens=64)
    assert ended.stats["stop_reason"] == "eos"  # this prompt ends early: ignore_eos matters
    expected = model.generate(PROMPT, preference="concise", method="amulet", max_tokens=64,
                              ignore_eos=True)
    answer = client.chat.completions.create(
        model=f"{MODEL_ID}:amulet:concise", messages=user(), max_tokens=64,
        extra_body={"localpref": {"ignore_eos": True}})
    assert answer.choices[0].message.content == expected.text
    assert answer.usage.completion_tokens == 64 and answer.choices[0].finish_reason == "length"
    pref_ends = model.generate(PROMPT, preference="concise", method=Amulet(end_tokens="pref"),
                               max_tokens=TOKENS)
    answer = client.chat.completions.create(
        model=f"{MODEL_ID}:amulet:concise", messages=user(), max_tokens=TOKENS,
        extra_body={"localpref": {"end_tokens": "pref"}})
    assert answer.choices[0].message.content == pref_ends.text
    assert answer.model_extra["localpref"]["stats"]["settings"]["end_tokens"] == "pref"
    with pytest.raises(openai.BadRequestError) as refused:
        client.chat.completions.create(
            model=f"{MODEL_ID}:amulet:concise", messages=user(), max_tokens=2,
            extra_body={"localpref": {"end_tokens": "sometimes"}})
    assert "end_tokens" in str(refused.value) or "end token" in str(refused.value)
