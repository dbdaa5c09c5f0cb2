"""The fields and routes clients rely on, over real HTTP with the openai SDK: negative seeds,
``logprobs`` / ``top_logprobs`` equal to the trace's, ``response_format`` through llama.cpp's
grammar while steered, ``tools`` refused by name, ``top_p=0`` as greedy, ``models.retrieve``,
legacy text completions, the API key's scheme in any case, ``HEAD`` on ``/health`` and the
models, and an over-long preference."""

from __future__ import annotations

import asyncio
import json
import time

import jsonschema
import openai
import pytest
from server_helpers import (
    MODEL_ID,
    PROMPT,
    assert_error_shape,
    request,
    running_server,
    user,
)

from localpref.api import Model
from localpref.cli import main
from localpref.decoding import Generation, Result
from localpref.errors import SettingsError
from localpref.grammar import json_grammar
from localpref.methods import paper_method
from localpref.request import Request
from localpref.server.logprobs import legacy_logprobs

FRUIT_SCHEMA = {
    "type": "object",
    "properties": {"name": {"type": "string", "maxLength": 20},
                   "colour": {"type": "string", "enum": ["red", "green", "yellow"]},
                   "sweet": {"type": "boolean"}},
    "required": ["name", "colour", "sweet"],
    "additionalProperties": False,
}


def _traced(model: Model, prompt: str, **settings) -> Generation:  # noqa: ANN003
    """The library's own answer with its trace (``top_logprobs`` / ``grammar`` as given)."""
    extra = {k: settings.pop(k) for k in ("top_logprobs", "grammar") if k in settings}
    request_ = Request.make(prompt, trace=True, **settings).replace(**extra)
    return Generation(model.submit(request_)).run()


def test_a_negative_seed_is_random_in_the_server_and_refused_elsewhere(client, model,
                                                                       capsys) -> None:
    greedy = client.chat.completions.create(model=f"{MODEL_ID}:concise", messages=user(),
                                            max_tokens=6, seed=-1)
    assert greedy.choices[0].message.content == model.generate(
        PROMPT, preference="concise", max_tokens=6).text
    sampled = client.chat.completions.create(
        model=MODEL_ID, messages=user(), max_tokens=6, seed=-1, temperature=1.0,
        extra_body={"localpref": {"ignore_eos": True}})
    settings = sampled.model_extra["localpref"]["stats"]["settings"]
    assert settings["seed"] is None and settings["temperature"] == 1.0  # random
    assert sampled.usage.completion_tokens == 6
    with pytest.raises(SettingsError, match="0 or more"):
        Request.make(PROMPT, seed=-1)
    assert main(["generate", PROMPT, "--seed", "-1", "--max-tokens", "2"]) == 2
    err = capsys.readouterr().err.strip()
    assert "seed" in err and "0 or more" in err and len(err.splitlines()) == 1


def test_a_system_or_developer_message_alone_is_answered_as_openai_does(client, model) -> None:
    task = "List three colours, comma separated."
    expected = model.generate([{"role": "system", "content": task}], max_tokens=8)
    for role in ("system", "developer"):
        answer = client.chat.completions.create(
            model=MODEL_ID, messages=[{"role": role, "content": task}], max_tokens=8)
        assert answer.choices[0].message.content == expected.text
    with pytest.raises(openai.BadRequestError) as refused:
        client.chat.completions.create(model=MODEL_ID, max_tokens=2,
                                       messages=[{"role": "assistant", "content": "Hello."}])
    assert refused.value.body["message"] == ("The conversation has no user message (nor a "
                                             "system message to answer).")


def test_models_retrieve_answers_every_id_the_server_takes(client) -> None:
    for ident in (MODEL_ID, f"{MODEL_ID}:concise", f"{MODEL_ID}:pad:uplifting",
                  f"{MODEL_ID}:amulet:talk%20like%20a%20pirate"):
        entry = client.models.retrieve(ident)
        assert (entry.id, entry.object, entry.owned_by) == (ident, "model", "localpref")
    for unknown in ("gpt-4o", f"{MODEL_ID}:nomethod:concise"):
        with pytest.raises(openai.NotFoundError) as missing:
            client.models.retrieve(unknown)
        assert missing.value.body["code"] == "model_not_found"


def test_text_completions_answer_as_a_chat_with_the_prompt_as_user(client, model) -> None:
    expected = model.generate(PROMPT, preference="concise", method="amulet", max_tokens=8)
    answer = client.completions.create(model=f"{MODEL_ID}:amulet:concise", prompt=PROMPT,
                                       max_tokens=8)
    assert answer.object == "text_completion" and answer.id.startswith("cmpl-")
    assert answer.choices[0].text == expected.text
    assert answer.usage.completion_tokens == len(expected.tokens)
    assert answer.model_extra["localpref"]["method"] == "amulet"
    chunks = list(client.completions.create(
        model=MODEL_ID, prompt=[PROMPT], max_tokens=8, stream=True,
        stream_options={"include_usage": True},
        extra_body={"localpref": {"preference": "concise", "method": "amulet"}}))
    assert "".join(c.choices[0].text for c in chunks if c.choices) == expected.text
    assert all(c.object == "text_completion" for c in chunks)
    assert chunks[-1].usage.completion_tokens == len(expected.tokens)
    finishing = [c for c in chunks if c.choices and c.choices[0].finish_reason]
    assert len(finishing) == 1 and finishing[0].model_extra["localpref"]["method"] == "amulet"
    with pytest.raises(openai.NotFoundError):
        client.completions.create(model="gpt-3.5-turbo-instruct", prompt=PROMPT)
    for fields, param in (({"prompt": []}, "prompt"), ({"echo": True}, "echo"),
                          ({"prompt": PROMPT, "temperature": -1}, "temperature"),
                          ({"best_of": 1, "n": 2}, "best_of")):  # (OpenAI: best_of >= n)
        body = {"prompt": PROMPT, **fields}
        with pytest.raises(openai.BadRequestError) as refused:
            client.completions.create(model=MODEL_ID, max_tokens=2, **body)
        assert refused.value.body["param"] == param
    assert client.completions.create(model=MODEL_ID, prompt=PROMPT, max_tokens=2, n=1,
                                     best_of=1).choices[0].text == model.generate(
                                         PROMPT, max_tokens=2).text


def test_many_choices_are_made_off_the_event_loop_and_each_answered_as_alone(
        client, model, monkeypatch) -> None:
    """40 prompts with n 2: 80 answers, 20 times what the server runs at once, made in a
    worker thread (128,000 made on the event loop held every stream for 8 s) and answered a
    lane's worth at a time; each choice is its prompt's answer alone (greedy: both the
    same). Two choices are made on the loop, where a thread hop costs more than making them."""
    from localpref.server import app as server_app

    made_in_loop: list[bool] = []
    make = server_app.generation_args

    def recording(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        try:
            asyncio.get_running_loop()
            made_in_loop.append(True)
        except RuntimeError:
            made_in_loop.append(False)
        return make(*args, **kwargs)

    monkeypatch.setattr(server_app, "generation_args", recording)
    prompts = [f"Say the number {number}." for number in range(40)]
    answer = client.completions.create(model=MODEL_ID, prompt=prompts, n=2, max_tokens=2)
    alone = {p: model.generate(p, method="base", max_tokens=2).text for p in set(prompts)}
    assert [c.index for c in answer.choices] == list(range(80))
    assert [c.text for c in answer.choices] == [alone[p] for p in prompts for _ in range(2)]
    assert made_in_loop == [False] * 80
    made_in_loop.clear()
    small = client.completions.create(model=MODEL_ID, prompt=prompts[:2], max_tokens=2)
    assert [c.text for c in small.choices] == [alone[p] for p in prompts[:2]]
    assert made_in_loop == [True] * 2


def test_several_prompts_in_one_text_completion_are_each_answered_as_alone(
        client, model) -> None:
    """LangChain's ``OpenAI.batch`` sends a list of prompts. Twelve steered prompts, three
    times what the server runs at once (eight lanes, two a request): choice i is what prompt i
    gets alone, and the usage is the sum."""
    prompts = [f"Name a {thing} I could grow." for thing in (
        "herb", "tree", "flower", "vegetable", "fruit", "shrub", "vine", "grass", "fern",
        "cactus", "bulb", "moss")]
    expected = [model.generate(p, preference="concise", method="amulet", max_tokens=6)
                for p in prompts]
    answer = client.completions.create(model=f"{MODEL_ID}:amulet:concise", prompt=prompts,
                                       max_tokens=6, logprobs=2)
    assert [c.index for c in answer.choices] == list(range(len(prompts)))
    assert [c.text for c in answer.choices] == [e.text for e in expected]
    assert [c.logprobs.tokens for c in answer.choices] == [
        [model.vocabulary.detokenize([t]) for t in e.tokens] for e in expected]
    assert [c.model_extra["localpref"]["method"] for c in answer.choices] == ["amulet"] * 12
    assert answer.usage.completion_tokens == sum(len(e.tokens) for e in expected)
    assert answer.usage.prompt_tokens == sum(e.stats["n_prompt_tokens"] for e in expected)
    # one bad prompt: nothing is answered; several prompts are not streamed
    for fields, param, message in (
            ({"prompt": [prompts[0], " "]}, "prompt[1]", "The prompt is empty."),
            ({"prompt": prompts[:2], "stream": True}, "prompt",
             "Several prompts are answered only without streaming; send stream false, or one "
             "prompt per request.")):
        with pytest.raises(openai.BadRequestError) as refused:
            client.completions.create(model=MODEL_ID, max_tokens=2, **fields)
        assert refused.value.body["code"] == "invalid_value"
        assert (refused.value.body["param"], refused.value.body["message"]) == (
            param, message)


def test_n_choices_are_each_the_answer_with_its_own_seed(client, model) -> None:
    """``n`` > 1 (DSPy, self-consistency): choice j is the answer a request of its own with
    ``seed + j`` gets, in the chat and the text shape alike; nine steered choices are more
    than the server runs at once (four two-lane requests). The prompt is counted once."""
    sampled = {"temperature": 1.0, "top_p": 0.95, "max_tokens": 6}
    answer = client.chat.completions.create(model=f"{MODEL_ID}:concise", messages=user(),
                                            n=9, seed=40, **sampled)
    alone = [client.chat.completions.create(model=f"{MODEL_ID}:concise", messages=user(),
                                            seed=40 + j, **sampled) for j in range(9)]
    assert [c.index for c in answer.choices] == list(range(9))
    assert [c.message.content for c in answer.choices] == [
        a.choices[0].message.content for a in alone]
    assert len({c.message.content for c in answer.choices}) > 1  # sampled: they differ
    assert all(c.message.role == "assistant" for c in answer.choices)
    assert [c.model_extra["localpref"]["method"] for c in answer.choices] == [
        alone[0].model_extra["localpref"]["method"]] * 9
    assert answer.object == "chat.completion" and answer.id.startswith("chatcmpl-")
    assert answer.usage.prompt_tokens == alone[0].usage.prompt_tokens
    assert answer.usage.completion_tokens == sum(a.usage.completion_tokens for a in alone)
    greedy = client.chat.completions.create(model=MODEL_ID, messages=user(), n=2,
                                            max_tokens=6)
    expected = model.generate(PROMPT, max_tokens=6).text
    assert [c.message.content for c in greedy.choices] == [expected, expected]
    # two prompts, two choices each: prompt i's j-th choice is choice 2 * i + j
    prompts = ["Name a herb.", "Name a tree."]
    text = client.completions.create(model=MODEL_ID, prompt=prompts, n=2, seed=7,
                                     **sampled)
    alone_text = [client.completions.create(model=MODEL_ID, prompt=p, seed=7 + j, **sampled)
                  for p in prompts for j in range(2)]
    assert [c.text for c in text.choices] == [a.choices[0].text for a in alone_text]
    assert [c.index for c in text.choices] == [0, 1, 2, 3]
    assert text.usage.prompt_tokens == (alone_text[0].usage.prompt_tokens
                                        + alone_text[2].usage.prompt_tokens)


def test_n_choices_stream_each_under_its_index_as_they_come(client, server) -> None:
    """``n`` > 1 streamed, OpenAI's way: every chunk holds one choice named by its index; a
    choice's pieces join to the choice the same request gets unstreamed, each ends with its
    own finishing chunk, and the usage counts the prompt once. Nine steered choices are more
    than the server runs at once."""
    sampled = {"temperature": 1.0, "top_p": 0.95, "max_tokens": 6, "seed": 21}
    whole = client.chat.completions.create(model=f"{MODEL_ID}:concise", messages=user(), n=9,
                                           logprobs=True, **sampled)
    chunks = list(client.chat.completions.create(
        model=f"{MODEL_ID}:concise", messages=user(), n=9, stream=True, logprobs=True,
        stream_options={"include_usage": True}, **sampled))
    assert all(len(c.choices) == 1 for c in chunks[:-1]) and chunks[-1].choices == []
    assert [c.choices[0].index for c in chunks[:9]] == list(range(9))
    assert all(c.choices[0].delta.role == "assistant" for c in chunks[:9])
    texts = ["".join(c.choices[0].delta.content or "" for c in chunks[:-1]
                     if c.choices[0].index == index) for index in range(9)]
    assert texts == [choice.message.content for choice in whole.choices]
    finishing = [c for c in chunks[:-1] if c.choices[0].finish_reason]
    assert sorted(c.choices[0].index for c in finishing) == list(range(9))
    for chunk in finishing:
        index = chunk.choices[0].index
        assert chunk.choices[0].finish_reason == whole.choices[index].finish_reason
        assert [e.token for e in chunk.choices[0].logprobs.content] == [
            e.token for e in whole.choices[index].logprobs.content]
        assert chunk.model_extra["localpref"]["method"] == whole.model_extra["localpref"][
            "method"]
    assert chunks[-1].usage.prompt_tokens == whole.usage.prompt_tokens
    assert chunks[-1].usage.completion_tokens == whole.usage.completion_tokens
    assert len({c.id for c in chunks}) == 1
    text = list(client.completions.create(model=MODEL_ID, prompt=PROMPT, n=2, stream=True,
                                          **sampled))
    alone = client.completions.create(model=MODEL_ID, prompt=PROMPT, n=2, **sampled)
    assert ["".join(c.choices[0].text for c in text if c.choices[0].index == index)
            for index in range(2)] == [choice.text for choice in alone.choices]
    # a prompt too long is the HTTP error it is unstreamed; a client gone frees every lane
    with pytest.raises(openai.BadRequestError) as refused:
        client.chat.completions.create(model=MODEL_ID, messages=user("basil " * 3000), n=2,
                                       stream=True)
    assert refused.value.body["code"] == "context_length_exceeded"
    stream = client.chat.completions.create(
        model=f"{MODEL_ID}:verbose", messages=user("Write a long story about a fox."), n=6,
        max_tokens=400, stream=True)
    seen = 0
    for chunk in stream:
        seen += bool(chunk.choices and chunk.choices[0].delta.content)
        if seen == 4:
            break
    stream.close()
    deadline = time.monotonic() + 30
    while server.state.jobs:
        assert time.monotonic() < deadline, "the choices' jobs did not end"
        time.sleep(0.05)
    ended = list(server.state.finished)[-4:]  # the four running (two lanes each of eight)
    assert [r.stats["stop_reason"] for r in ended] == ["cancelled"] * 4
    assert all(len(r.tokens) < 400 for r in ended)


def test_chat_logprobs_are_the_traces_in_openais_shape(client, model) -> None:
    traced = _traced(model, PROMPT, preference="concise", method="amulet", max_tokens=6,
                     top_logprobs=3)
    answer = client.chat.completions.create(model=f"{MODEL_ID}:amulet:concise", messages=user(),
                                            max_tokens=6, logprobs=True, top_logprobs=3)
    content = answer.choices[0].logprobs.content
    assert answer.choices[0].message.content == traced.text
    assert [entry.logprob for entry in content] == [r["logprob"] for r in traced.trace]
    for entry, record in zip(content, traced.trace, strict=True):
        piece = model.vocabulary.piece(record["token"])
        assert entry.bytes == list(piece) and entry.token == piece.decode("utf-8", "replace")
        assert [alt.logprob for alt in entry.top_logprobs] == [
            lp for _, lp in record["top_logprobs"]]
        assert len(entry.top_logprobs) == 3
        # greedy: the chosen token is the steered distribution's likeliest
        assert entry.top_logprobs[0].bytes == entry.bytes
        assert entry.top_logprobs[0].logprob == pytest.approx(entry.logprob, abs=1e-9)
    # The recommended steering's plausibility mask leaves fewer tokens: fewer alternatives.
    recommended = _traced(model, PROMPT, preference="concise", max_tokens=6, top_logprobs=2)
    streamed = list(client.chat.completions.create(
        model=f"{MODEL_ID}:concise", messages=user(), max_tokens=6, logprobs=True,
        stream=True))
    sent = [e.logprob for c in streamed if c.choices and c.choices[0].logprobs
            for e in c.choices[0].logprobs.content]
    # (without top_logprobs the greedy fast path derives the same value: within rounding)
    assert sent == pytest.approx([r["logprob"] for r in recommended.trace], rel=1e-12)
    legacy = client.completions.create(model=f"{MODEL_ID}:concise", prompt=PROMPT,
                                       max_tokens=6, logprobs=2)
    assert legacy.choices[0].logprobs.token_logprobs == [
        r["logprob"] for r in recommended.trace]
    assert [list(top.values()) for top in legacy.choices[0].logprobs.top_logprobs] == [
        [lp for _, lp in r["top_logprobs"]] for r in recommended.trace]
    with pytest.raises(openai.BadRequestError) as refused:
        client.chat.completions.create(model=MODEL_ID, messages=user(), max_tokens=2,
                                       top_logprobs=3)
    assert refused.value.body["param"] == "top_logprobs"


def test_legacy_logprobs_write_a_part_of_a_character_as_its_escaped_bytes(model) -> None:
    """Every token holding part of a character read as one U+FFFD key, so a step's
    alternatives overwrote each other (one left of three, the chosen token's key holding
    another's value): such a token is ``bytes:`` and its bytes escaped, as OpenAI writes it."""
    vocabulary = model.vocabulary
    parts = []  # tokens that are a part of a character (an emoji's bytes are split so)
    for token in range(vocabulary.size):
        try:
            vocabulary.piece(token).decode("utf-8")
        except UnicodeDecodeError:
            parts.append(token)
            if len(parts) == 3:
                break
    first, second, third = parts
    word = vocabulary.tokenize(" basil", add_special=False, parse_special=False)[0]
    trace = [{"token": first, "logprob": -0.5, "piece": "",
              "top_logprobs": [[first, -0.5], [second, -1.5], [third, -2.5]]},
             {"token": word, "logprob": -0.25, "piece": "\ufffd basil",
              "top_logprobs": [[word, -0.25], [first, -3.0], [second, -4.0]]}]
    result = Result(text="\ufffd basil", tokens=[first, word], stats={}, trace=trace)
    legacy = legacy_logprobs(result, vocabulary, 3)
    escaped = {token: "bytes:" + "".join(f"\\x{byte:02x}" for byte in vocabulary.piece(token))
               for token in parts}
    assert legacy["tokens"] == [escaped[first], " basil"]
    assert legacy["top_logprobs"] == [
        {escaped[first]: -0.5, escaped[second]: -1.5, escaped[third]: -2.5},
        {" basil": -0.25, escaped[first]: -3.0, escaped[second]: -4.0}]


def test_logprobs_describe_the_answer_and_not_the_stop_string_cut_from_it(client, model) -> None:
    prompt = "Count from 1 to 20."
    traced = _traced(model, prompt, method="base", max_tokens=30, stop=["5"])
    cut = [record for record in traced.trace if not record["piece"]]
    assert traced.text.endswith("4\n") and cut  # the stop's token was drawn, its text cut
    chat = client.chat.completions.create(model=MODEL_ID, messages=user(prompt), max_tokens=30,
                                          stop=["5"], logprobs=True)
    content = chat.choices[0].logprobs.content
    assert chat.choices[0].message.content == traced.text
    assert "".join(entry.token for entry in content) == traced.text
    assert len(content) == len(traced.trace) - len(cut)
    legacy = client.completions.create(model=MODEL_ID, prompt=prompt, max_tokens=30,
                                       stop=["5"], logprobs=0)
    choice = legacy.choices[0]
    assert "".join(choice.logprobs.tokens) == choice.text
    assert choice.logprobs.text_offset[-1] < len(choice.text)


def test_a_json_schema_answer_validates_while_steered(client, model) -> None:
    prompt = "Describe a fruit as JSON: its name, colour and whether it is sweet."
    answer = client.chat.completions.create(
        model=f"{MODEL_ID}:amulet:humorous", messages=user(prompt), max_tokens=48,
        logprobs=True,
        response_format={"type": "json_schema",
                         "json_schema": {"name": "fruit", "schema": FRUIT_SCHEMA}})
    text = answer.choices[0].message.content
    jsonschema.validate(json.loads(text), FRUIT_SCHEMA)
    assert answer.choices[0].finish_reason == "stop"
    assert answer.model_extra["localpref"]["method"] == "amulet"
    # the same as the library's own answer under the grammar, token for token
    library = _traced(model, prompt, preference="humorous", method="amulet", max_tokens=48,
                      grammar=json_grammar(FRUIT_SCHEMA))
    assert text == library.text
    assert [e.logprob for e in answer.choices[0].logprobs.content] == [
        r["logprob"] for r in library.trace]
    # The recommended steering's plausibility mask can keep only tokens the grammar forbids
    # (here after '"Banana" '): the allowed token the preference lane scores highest is taken,
    # where the request was a 500 ("No token could be chosen at this step.").
    named = {"type": "object", "properties": {"name": {"type": "string"},
                                              "colour": {"type": "string"}},
             "required": ["name", "colour"], "additionalProperties": False}
    for stream in (False, True):
        recommended = client.chat.completions.create(
            model=f"{MODEL_ID}:concise", messages=user("Describe a fruit."), max_tokens=128,
            logprobs=True, stream=stream, response_format={
                "type": "json_schema", "json_schema": {"name": "fruit", "schema": named}})
        text = ("".join(c.choices[0].delta.content or "" for c in recommended if c.choices)
                if stream else recommended.choices[0].message.content)
        assert json.loads(text) == {"name": "Banana", "colour": "Banana"}
    plain = client.chat.completions.create(
        model=f"{MODEL_ID}:pad:concise", messages=user(prompt), max_tokens=40,
        response_format={"type": "json_object"})
    assert isinstance(json.loads(plain.choices[0].message.content), dict)
    with pytest.raises(openai.BadRequestError) as refused:
        client.chat.completions.create(model=MODEL_ID, messages=user(), max_tokens=2,
                                       response_format={"type": "json_schema",
                                                        "json_schema": {"name": "x"}})
    assert refused.value.body["param"] == "response_format"
    # A bound the grammar would not enforce is refused by name, not silently dropped.
    bounded = {"type": "object", "properties": {"fruit": FRUIT_SCHEMA, "count": {
        "type": "array", "items": {"type": "integer", "minimum": 5}}}}
    with pytest.raises(openai.BadRequestError) as refused:
        client.chat.completions.create(model=MODEL_ID, messages=user(), max_tokens=2,
                                       response_format={"type": "json_schema", "json_schema": {
                                           "name": "x", "schema": bounded}})
    assert refused.value.body["param"] == "response_format"
    assert refused.value.body["message"] == (
        "The JSON schema uses 'minimum' (at properties.count.items), which localpref cannot "
        "enforce while it writes; remove it and check that constraint on the answer.")
    # Bounds llama.cpp's grammar parser would recurse on until the process died (a 200-byte
    # request took the server down): a 400, and the server goes on.
    for deep in ({"type": "string", "maxLength": 5000},
                 {"type": "array", "items": {"type": "integer"}, "maxItems": 5000},
                 {"type": "string", "pattern": "^a{0,5000}$"}):
        with pytest.raises(openai.BadRequestError) as refused:
            client.chat.completions.create(model=MODEL_ID, messages=user(), max_tokens=2,
                                           response_format={"type": "json_schema", "json_schema": {
                                               "name": "x", "schema": deep}})
        assert refused.value.body["message"].startswith(
            "The grammar nests 5000 groups deep and llama.cpp parses at most 1000: ")
        assert refused.value.body["param"] == "response_format"  # (it was null)
    # A count of millions held the event loop (every stream, /health) for up to a minute
    # while the converter wrote it out, then was refused; a $ref leading back to itself was
    # refused by llama.cpp with no field named. Both are refused by name, before converting.
    for schema, sentence in (
            ({"type": "string", "maxLength": 100_000_000},
             "The JSON schema's 'maxLength' is 100,000,000, more than the 10,000 "),
            ({"type": "string", "pattern": "^a{1,10000000}$"},
             "The JSON schema's pattern repeats a part {1,10000000} times, more than the "),
            ({"$ref": "#/$defs/x", "$defs": {"x": {"$ref": "#/$defs/x"}}},
             "The JSON schema's $ref '#/$defs/x' (at $defs.x) leads back to itself before ")):
        with pytest.raises(openai.BadRequestError) as refused:
            client.chat.completions.create(model=MODEL_ID, messages=user(), max_tokens=2,
                                           response_format={"type": "json_schema", "json_schema": {
                                               "name": "x", "schema": schema}})
        assert refused.value.body["param"] == "response_format"
        assert refused.value.body["message"].startswith(sentence)
    # a length beside a pattern was dropped from the grammar: the answer broke the schema
    with pytest.raises(openai.BadRequestError) as refused:
        client.chat.completions.create(
            model=MODEL_ID, messages=user(), max_tokens=2, response_format={
                "type": "json_schema", "json_schema": {"name": "w", "strict": True, "schema": {
                    "type": "object", "properties": {"w": {
                        "type": "string", "pattern": "^[a-z]+$", "minLength": 20}}}}})
    assert refused.value.body["param"] == "response_format"
    assert refused.value.body["message"].startswith(
        "The JSON schema's 'minLength' (at properties.w) would not be enforced where it stands")
    fine = client.chat.completions.create(
        model=MODEL_ID, messages=user(), max_tokens=4, response_format={
            "type": "json_schema", "json_schema": {"name": "x", "schema": {
                "type": "string", "maxLength": 1000}}})
    assert fine.choices[0].message.content.startswith('"')


def test_tools_are_refused_by_name_unless_tool_choice_is_none(client, model) -> None:
    tools = [{"type": "function", "function": {"name": "weather", "parameters": {
        "type": "object", "properties": {"city": {"type": "string"}}}}}]
    with pytest.raises(openai.BadRequestError) as refused:
        client.chat.completions.create(model=MODEL_ID, messages=user(), max_tokens=2,
                                       tools=tools)
    assert refused.value.body["param"] == "tools" and "tools" in refused.value.body["message"]
    answer = client.chat.completions.create(model=MODEL_ID, messages=user(), max_tokens=3,
                                            tools=tools, tool_choice="none")
    assert answer.choices[0].message.content == model.generate(PROMPT, max_tokens=3).text


def test_a_tool_choice_that_asks_for_a_call_is_refused_without_tools_too(client) -> None:
    """"required" or a named function asks for a call this server cannot make: a 400, not a
    plain answer; "auto" and "none" (any answer may be text) are fine."""
    named = {"type": "function", "function": {"name": "weather"}}
    for field, choice in (("tool_choice", "required"), ("tool_choice", named),
                          ("function_call", {"name": "weather"})):
        with pytest.raises(openai.BadRequestError) as refused:
            client.chat.completions.create(model=MODEL_ID, messages=user(), max_tokens=2,
                                           **{field: choice})
        assert refused.value.body["param"] == field
        assert refused.value.body["message"].startswith(f"{field} asks for a call")
    for choice in ("auto", "none"):
        answer = client.chat.completions.create(model=MODEL_ID, messages=user(), max_tokens=2,
                                                tool_choice=choice)
        assert answer.choices[0].finish_reason == "length"
    # a value that is no choice at all says what the field takes (it was told it "asks for
    # a call"); "required" is no function_call
    for field, choice, words in (
            ("tool_choice", 5, '"none", "auto", "required" or an object naming a function'),
            ("tool_choice", "bogus", '"none", "auto", "required" or an object naming a '
                                     'function'),
            ("function_call", 7, '"none", "auto" or an object naming a function'),
            ("function_call", "required", '"none", "auto" or an object naming a function')):
        with pytest.raises(openai.BadRequestError) as refused:
            client.chat.completions.create(model=MODEL_ID, messages=user(), max_tokens=2,
                                           **{field: choice})
        assert refused.value.body["param"] == field
        assert refused.value.body["message"] == (f"{field} must be {words} (got "
                                                 f"{json.dumps(choice)}).")


@pytest.mark.parametrize(("field", "value"), [
    ("max_tokens", "5"), ("max_tokens", True), ("max_tokens", 5.5), ("temperature", "0.5"),
    ("stream", "yes"), ("stream", 1), ("logprobs", "yes"), ("presence_penalty", "0"),
    ("stream_options", {"include_usage": "yes"}),
])
def test_a_field_of_the_wrong_type_is_a_400_naming_it(server, field, value) -> None:
    """A string for a number or a number for a flag is the client's mistake, not a value to
    guess at ("5" as 5, true as 1): OpenAI refuses them too."""
    body = {"model": MODEL_ID, "messages": user(), "max_tokens": 2, field: value}
    error = assert_error_shape(request(server.url, "POST", "/chat/completions", body=body), 400)
    assert error["param"].split(".")[0] == field


def test_a_whole_number_is_still_a_number_and_a_model_id_error_names_the_model(
        server) -> None:
    body = {"model": MODEL_ID, "messages": user(), "max_tokens": 2, "temperature": 0,
            "top_p": 1}
    assert request(server.url, "POST", "/chat/completions", body=body).status == 200
    for model_id in (f"{MODEL_ID}:nosuchmethod:concise", f"{MODEL_ID}:", f"{MODEL_ID}::x"):
        body = {"model": model_id, "messages": user(), "max_tokens": 2}
        error = assert_error_shape(request(server.url, "POST", "/chat/completions", body=body),
                                   400)
        assert error["param"] == "model", model_id


def test_functions_are_refused_by_name_and_a_text_completion_takes_a_logit_bias(
        client, model) -> None:
    """OpenAI's deprecated ``functions`` are tools by another name: not silently dropped. A
    text completion's ``logit_bias`` is a chat's (``tests/test_logit_bias.py``); an empty or
    all-zero bias changes nothing."""
    functions = [{"name": "weather", "parameters": {"type": "object", "properties": {}}}]
    with pytest.raises(openai.BadRequestError) as refused:
        client.chat.completions.create(model=MODEL_ID, messages=user(), max_tokens=2,
                                       functions=functions)
    assert refused.value.body["param"] == "functions"
    assert refused.value.body["message"].startswith("functions are not supported")
    token = model.vocabulary.tokenize(" How", add_special=False)[0]
    forced = client.completions.create(model=MODEL_ID, prompt=PROMPT, max_tokens=2,
                                       logit_bias={str(token): 100})
    assert forced.choices[0].text == " How How"
    expected = model.generate(PROMPT, max_tokens=3).text
    for bias in ({}, {str(token): 0}):
        answer = client.chat.completions.create(model=MODEL_ID, messages=user(), max_tokens=3,
                                                logit_bias=bias, functions=functions,
                                                function_call="none")
        assert answer.choices[0].message.content == expected


def test_top_p_zero_keeps_only_the_likeliest_token(client, model) -> None:
    """Clients that ask for determinism send ``top_p=0`` (OpenAI accepts 0 to 1): greedy."""
    settings = {"temperature": 1.0, "seed": 7, "max_tokens": 12,
                "extra_body": {"localpref": {"ignore_eos": True}}}
    nucleus = client.chat.completions.create(model=MODEL_ID, messages=user(), top_p=0,
                                             **settings)
    assert nucleus.choices[0].message.content == model.generate(
        PROMPT, max_tokens=12, ignore_eos=True).text  # greedy
    sampled = model.generate(PROMPT, max_tokens=12, ignore_eos=True, temperature=1.0, seed=7)
    assert sampled.text != nucleus.choices[0].message.content  # the temperature alone samples
    with pytest.raises(openai.BadRequestError) as refused:
        client.chat.completions.create(model=MODEL_ID, messages=user(), top_p=1.5,
                                       max_tokens=2)
    assert "[0, 1]" in refused.value.body["message"]


def test_null_stream_fields_are_false_as_openai_reads_them(server, model) -> None:
    body = {"model": MODEL_ID, "messages": user(), "max_tokens": 3, "stream": None,
            "stream_options": {"include_usage": None}}
    answer = request(server.url, "POST", "/chat/completions", body=body)
    assert answer.status == 200
    completion = answer.json()
    assert completion["object"] == "chat.completion"  # not a stream
    assert completion["choices"][0]["message"]["content"] == model.generate(
        PROMPT, max_tokens=3).text


def test_a_null_preference_keeps_the_model_ids_as_a_null_method_does(server, model) -> None:
    """``"preference": null`` (what a client's unset optional field sends) cleared the
    id's preference, and ``ID:amulet:concise`` then wrote plain decoding, named Base."""
    body = {"model": f"{MODEL_ID}:amulet:concise", "messages": user(), "max_tokens": 6,
            "localpref": {"preference": None, "method": None, "avoid": None}}
    answer = request(server.url, "POST", "/chat/completions", body=body)
    assert answer.status == 200, answer.body
    completion = answer.json()
    assert (completion["localpref"]["method"], completion["localpref"]["preference"]) == (
        "amulet", "concise")
    assert completion["choices"][0]["message"]["content"] == model.generate(
        PROMPT, preference="concise", method=paper_method("amulet"), max_tokens=6).text


def test_head_health_and_a_long_preference(server) -> None:
    head = request(server.url.removesuffix("/v1"), "HEAD", "/health")
    assert head.status == 200 and head.text == ""
    for path in ("/models", f"/models/{MODEL_ID}:concise"):  # uptime checkers send HEAD
        head = request(server.url, "HEAD", path)
        assert head.status == 200 and head.text == "", path
    assert request(server.url, "HEAD", "/models/gpt-4o").status == 404
    body = {"model": MODEL_ID, "max_tokens": 2, "messages": user(),
            "localpref": {"preference": "be brief " * 1250}}  # 10,000 characters
    error = assert_error_shape(request(server.url, "POST", "/chat/completions", body=body), 400)
    # a context overflow in the words and code LangChain and litellm tell one by, the text
    # to shorten in param (it was an invalid_value: "The preference text is too long: ...")
    assert error["message"].startswith("The prompt is too long with the preference: ")
    assert error["message"].endswith(" tokens, and the context holds 1024; shorten it.")
    assert (error["param"], error["code"]) == ("localpref.preference", "context_length_exceeded")
    body["localpref"] = {"preference": "concise", "avoid": "long words " * 1000}
    error = assert_error_shape(request(server.url, "POST", "/chat/completions", body=body), 400)
    assert error["message"].startswith("The prompt is too long with the avoid text: ")
    assert (error["param"], error["code"]) == ("localpref.avoid", "context_length_exceeded")
    # examples: the sentence blamed them and param the messages ("hi")
    body["localpref"] = {"like": "word " * 1000}
    error = assert_error_shape(request(server.url, "POST", "/chat/completions", body=body), 400)
    assert error["message"].startswith("The prompt is too long with the examples: ")
    assert (error["param"], error["code"]) == ("localpref.like", "context_length_exceeded")
    body["localpref"] = {"preference": "be brief " * 600, "like": ["word " * 200]}
    error = assert_error_shape(request(server.url, "POST", "/chat/completions", body=body), 400)
    assert error["message"].startswith(
        "The prompt is too long with the preference and the examples: ")
    assert error["param"] == "localpref.preference"  # the longer of the two


def test_a_conversation_a_short_preference_pushes_past_the_window_names_the_prompt(
        server, model) -> None:
    """A conversation of n_ctx - 1 tokens fits (one token of answer), and a built-in
    preference of a few tokens pushes it past: the sentence tells to shorten the prompt (or
    load a larger context), as the library's does, and ``param`` names the messages (it
    named the preference, which a built-in name cannot be shortened to fit)."""
    words = next(n for n in range(model.n_ctx - 40, model.n_ctx)
                 if model.count_tokens("word " * n) == model.n_ctx - 1)
    body = {"model": MODEL_ID, "max_tokens": 4, "messages": user("word " * words)}
    answer = request(server.url, "POST", "/chat/completions", body=body)
    assert answer.status == 200 and answer.json()["usage"]["completion_tokens"] == 1
    body["localpref"] = {"preference": "concise"}
    error = assert_error_shape(request(server.url, "POST", "/chat/completions", body=body), 400)
    assert (error["param"], error["code"]) == ("messages", "context_length_exceeded")
    assert error["message"].startswith("The prompt is too long for the model's context: with "
                                       "the preference the prompt is ")
    assert error["message"].endswith("shorten the prompt or load the model with a larger "
                                     "context (--ctx, n_ctx).")


def test_the_api_keys_scheme_is_case_insensitive(model) -> None:
    with running_server(model, api_key="sesame") as server:
        for scheme in ("Bearer", "bearer", "BEARER"):
            answer = request(server.url, "GET", "/models",
                             headers={"Authorization": f"{scheme} sesame"})
            assert answer.status == 200, scheme
        for header in ("bearer wrong", "Basic sesame", "sesame"):
            answer = request(server.url, "GET", "/models", headers={"Authorization": header})
            assert_error_shape(answer, 401)


def test_an_end_token_among_the_alternatives_is_written_out(model) -> None:
    """Its text, as llama-server shows it, not an empty string that two control tokens
    would share as one key of a legacy ``top_logprobs`` object."""
    from localpref.decoding import Result
    from localpref.server.logprobs import chat_logprobs, legacy_logprobs

    vocabulary = model.vocabulary
    word = vocabulary.tokenize("Hi", add_special=False, parse_special=False)[0]
    ends = sorted(vocabulary.answer_end_ids)[:2]
    names = [vocabulary.piece(end, special=True).decode() for end in ends]
    assert all(names) and names[0] != names[1] and "<|endoftext|>" in names
    trace = [{"token": word, "logprob": -0.5, "piece": "Hi",
              "top_logprobs": [[word, -0.5], [ends[0], -1.5], [ends[1], -2.5]]}]
    result = Result(text="Hi", tokens=[word], stats={}, trace=trace)
    legacy = legacy_logprobs(result, vocabulary, 3)
    assert legacy["tokens"] == ["Hi"]
    # a control token drawn mid-answer (ignore_eos) is the text it wrote, none: the tokens
    # still join to the answer
    drawn = [{"token": ends[0], "logprob": -3.0, "piece": "", "top_logprobs": []},
             {"token": word, "logprob": -0.5, "piece": "Hi", "top_logprobs": []}]
    wrote = Result(text="Hi", tokens=[ends[0], word], stats={}, trace=drawn)
    assert "".join(legacy_logprobs(wrote, vocabulary, 0)["tokens"]) == "Hi"
    assert [entry["token"] for entry in chat_logprobs(wrote, vocabulary)["content"]] == [
        "", "Hi"]
    assert legacy["top_logprobs"] == [{"Hi": -0.5, names[0]: -1.5, names[1]: -2.5}]
    chat = chat_logprobs(result, vocabulary)["content"][0]
    assert [alt["token"] for alt in chat["top_logprobs"]] == ["Hi", *names]
    assert chat["top_logprobs"][1]["bytes"] == list(names[0].encode())
