"""Weighted preferences over real HTTP (the official openai SDK): ``localpref.preference`` as
an object answers exactly as the library, bad weights and too many lanes are 400s."""

from __future__ import annotations

import threading
from pathlib import Path

import openai
import pytest
from server_helpers import MODEL_ID, assert_error_shape, request, running_server, sdk_client

from localpref.api import Model

PROMPT = "How do I keep basil alive?"
WEIGHTS = {"concise": 1, "uplifting": 0.4}


def _ask(client: openai.OpenAI, preference: object, tokens: int = 8):
    return client.chat.completions.create(
        model=MODEL_ID, messages=[{"role": "user", "content": PROMPT}], max_tokens=tokens,
        extra_body={"localpref": {"preference": preference}})


def test_weighted_preference_object_answers_as_the_library(model: Model) -> None:
    expected = model.generate(PROMPT, preference=WEIGHTS, max_tokens=8)
    with running_server(model) as server:
        client = sdk_client(server.url)
        answer = _ask(client, WEIGHTS)
        for bad, words in (({"concise": -1}, "from 0 to 1000"), ({"concise": "lots"}, "a number"),
                           ({"concise": 10**400}, "too large")):
            refused = request(server.url, "POST", "/chat/completions", body={
                "model": MODEL_ID, "messages": [{"role": "user", "content": PROMPT}],
                "max_tokens": 4, "localpref": {"preference": bad}})
            error = assert_error_shape(refused, 400)
            assert words in error["message"] and "\n" not in error["message"]
    assert answer.choices[0].message.content == expected.text
    extension = answer.model_extra["localpref"]
    assert extension["preference"] == "concise=1 + uplifting=0.4"
    assert extension["stats"]["n_lanes"] == 4


def test_parallel_counts_lanes_and_a_request_past_them_is_a_400(bundled_path: Path) -> None:
    # --parallel 2: four lanes, so one four-lane weighted request at a time
    with Model(bundled_path, max_lanes=4, n_ctx=512) as small:
        alone = small.generate(PROMPT, preference=WEIGHTS, max_tokens=8)
        with running_server(small) as server:
            client = sdk_client(server.url)
            answers: list = [None] * 6  # three times what the lanes hold, in two-lane units
            def ask(index: int) -> None:
                answers[index] = _ask(client, WEIGHTS if index % 2 else "concise")
            threads = [threading.Thread(target=ask, args=(i,)) for i in range(6)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            refused = request(server.url, "POST", "/chat/completions", body={
                "model": MODEL_ID, "messages": [{"role": "user", "content": PROMPT}],
                "max_tokens": 4,
                "localpref": {"preference": {"concise": 1, "uplifting": 1, "formal": 1}}})
            past_any = request(server.url, "POST", "/chat/completions", body={
                "model": MODEL_ID, "messages": [{"role": "user", "content": PROMPT}],
                "max_tokens": 4,
                "localpref": {"preference": {f"style {i}": 0.1 for i in range(300)}}})
        concise = small.generate(PROMPT, preference="concise", max_tokens=8)
    for index, answer in enumerate(answers):
        wanted = alone if index % 2 else concise
        assert answer.choices[0].message.content == wanted.text
    error = assert_error_shape(refused, 400)
    assert "needs 5 lanes" in error["message"] and "--parallel 3" in error["message"]
    assert error["code"] == "too_many_lanes"
    assert error["param"] == "localpref.preference"  # (was null)
    # past what any --parallel gives (128 requests, 256 lanes): no flag to suggest
    error = assert_error_shape(past_any, 400)
    assert error["param"] == "localpref.preference"
    assert error["message"] == ("This request needs 302 lanes at once, more than a llama.cpp "
                                "context holds (256); give fewer weighted preferences.")


@pytest.mark.parametrize("preference", [{}, {"": 1}])
def test_an_empty_weighted_preference_is_a_400(model: Model, preference: object) -> None:
    with running_server(model) as server:
        refused = request(server.url, "POST", "/chat/completions", body={
            "model": MODEL_ID, "messages": [{"role": "user", "content": PROMPT}],
            "max_tokens": 4, "localpref": {"preference": preference}})
    assert_error_shape(refused, 400)


def test_like_examples_over_http_answer_as_the_library(model: Model) -> None:
    examples = ["- water it\n- give it sun", "- rinse\n- chop"]
    expected = model.generate(PROMPT, like=examples, max_tokens=8)
    with running_server(model) as server:
        client = sdk_client(server.url)
        answer = client.chat.completions.create(
            model=MODEL_ID, messages=[{"role": "user", "content": PROMPT}], max_tokens=8,
            extra_body={"localpref": {"like": examples}})
        refused = [request(server.url, "POST", "/chat/completions", body={
            "model": MODEL_ID, "messages": [{"role": "user", "content": PROMPT}],
            "max_tokens": 4, "localpref": {"like": like}}) for like in (["  "], [])]
    assert answer.choices[0].message.content == expected.text
    assert answer.model_extra["localpref"]["stats"]["like"] == 2
    for refusal in refused:
        error = assert_error_shape(refusal, 400)
        assert "non-empty text" in error["message"]
    assert error["param"] == "localpref.like" and "at least one example" in error["message"]
