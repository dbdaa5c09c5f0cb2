"""Every error of `localpref serve` is OpenAI-shaped, with its status: 400 (FastAPI's 422
included), 401, 404, 413, 503 with Retry-After; and the safety defaults (API key, Host check,
no CORS unless asked)."""

from __future__ import annotations

import json
import logging
import socket
import time

import openai
import pytest
from server_helpers import MODEL_ID, assert_error_shape, request, running_server, sdk_client

from localpref.server.errors import ApiError

CHAT = "/chat/completions"


def body(**fields):
    return {"model": MODEL_ID, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2,
            **fields}


@pytest.mark.parametrize(("fields", "param", "words"), [
    ({"messages": None}, "messages", "valid list"),
    ({"max_tokens": "many"}, "max_tokens", "valid integer"),
    ({"messages": [{"role": "bot", "content": "x"}]}, "messages[0].role", "'system'"),
    ({"messages": [{"role": "user", "content": "Hi"}, {"role": "tool", "content": "4"}]},
     "messages[1].role", "messages[1].role: tool messages are not supported (no tool calling);"),
    # an assistant's call, dropped, left the model to answer a conversation it never saw
    ({"messages": [{"role": "user", "content": "Weather in Paris?"},
                   {"role": "assistant", "content": None, "tool_calls": [
                       {"id": "c1", "type": "function",
                        "function": {"name": "get_weather", "arguments": "{}"}}]},
                   {"role": "user", "content": "ok?"}]},
     "messages[1].tool_calls", "messages[1].tool_calls: an assistant's tool calls are not "
                               "supported (no tool calling); send the conversation without "
                               "them."),
    ({"messages": [{"role": "assistant", "content": "x",
                    "function_call": {"name": "f", "arguments": "{}"}},
                   {"role": "user", "content": "ok?"}]},
     "messages[0].function_call", "messages[0].function_call: an assistant's tool calls"),
    ({"stream": "perhaps"}, "stream", "valid boolean"),
    # not "stop.str" (a union member's name), nor "should be a valid string" alone: a list
    # or an object would do too
    ({"stop": [None]}, "stop", "stop must be a text or a list of texts (got [null])."),
    ({"localpref": {"preference": 5}}, "localpref.preference",
     "localpref.preference must be a text, a list of texts or an object (got 5)."),
    ({"localpref": {"like": [1]}}, "localpref.like",
     "localpref.like must be a text or a list of texts (got [1])."),
    ({"messages": []}, "messages", "messages must hold at least 1 item."),
    ({"messages": [{"role": "user", "content": 5}]}, "messages[0].content",
     "messages[0].content must be a text or a list (got 5)."),
])
def test_validation_errors_are_400_not_422(server, fields, param, words) -> None:
    error = assert_error_shape(request(server.url, "POST", CHAT, body=body(**fields)), 400)
    assert error["param"] == param and words in error["message"]
    assert error["type"] == "invalid_request_error"


def test_an_unknown_field_of_the_localpref_object_is_400_with_the_fields_it_takes(
        server) -> None:
    fields = body(localpref={"preferense": "concise", "strength": 2.0})
    error = assert_error_shape(request(server.url, "POST", CHAT, body=fields), 400)
    assert error["param"] == "localpref.preferense"
    assert error["message"].startswith("localpref.preferense is not a field of the localpref "
                                       "object; did you mean 'preference'? it takes preference,")
    # OpenAI's own unknown fields are still ignored (clients send many)
    answer = request(server.url, "POST", CHAT, body=body(some_new_openai_field=1))
    assert answer.status == 200


def test_missing_field_and_bad_json_are_400(server) -> None:
    error = assert_error_shape(request(server.url, "POST", CHAT, body={"model": MODEL_ID}), 400)
    assert error["param"] == "messages" and "required" in error["message"].lower()
    error = assert_error_shape(request(server.url, "POST", CHAT, raw=b"{not json",
                                       headers={"Content-Type": "application/json"}), 400)
    assert error["message"] == "The request body is not valid JSON."
    # valid JSON that Python's reader refuses is said as what it is
    for raw, sentence in ((b'{"model": "\xff\xfe"}', "The request body is not valid JSON."),
                          (b"[" * 100_000 + b"]" * 100_000,
                           "The request body's JSON nests arrays or objects too deeply."),
                          (b'{"seed": ' + b"9" * 5000 + b"}",
                           "A number in the request body has more than 4,300 digits.")):
        error = assert_error_shape(request(server.url, "POST", CHAT, raw=raw, headers={
            "Content-Type": "application/json"}), 400)
        assert error["message"] == sentence


def test_a_model_path_with_bytes_that_are_not_utf8_names_no_model(server) -> None:
    """``/v1/models/ID:%C3%28`` was read with U+FFFD in place of the bytes and answered 200,
    for an id chat completions refuses."""
    for path in ("/models/%C3%28", f"/models/{MODEL_ID}:%C3%28",
                 f"/models/{MODEL_ID}:amulet:%FF"):
        error = assert_error_shape(request(server.url, "GET", path), 404)
        assert error["code"] == "model_not_found"
        assert error["message"].endswith("has percent-encoded bytes that are not UTF-8 text, "
                                         "so it names no model here.")
    # Base with a preference names no steering here (chat completions refuse it)
    error = assert_error_shape(request(server.url, "GET", f"/models/{MODEL_ID}:base:humorous"),
                               404)
    assert error["message"].startswith("The method base writes without a preference")
    assert request(server.url, "GET", f"/models/{MODEL_ID}:base").status == 200
    fine = request(server.url, "GET", f"/models/{MODEL_ID}:caf%C3%A9%20au%20lait")
    assert fine.status == 200 and json.loads(fine.text)["id"] == f"{MODEL_ID}:café au lait"


def test_a_compressed_body_is_415_naming_its_encoding(server) -> None:
    """A gzip body was "not valid JSON"; a br header on a plain body was read as plain."""
    import gzip

    plain = json.dumps(body(max_tokens=2)).encode()
    for raw, encoding in ((gzip.compress(plain), "gzip"), (plain, "br")):
        error = assert_error_shape(request(server.url, "POST", CHAT, raw=raw, headers={
            "Content-Type": "application/json", "Content-Encoding": encoding}), 415)
        assert error["message"] == (f"The request body's Content-Encoding '{encoding}' is not "
                                    "supported; send it uncompressed.")
        assert error["param"] == "Content-Encoding"
        assert error["type"] == "invalid_request_error"  # the client's choice, not the server's
    for identity in ("identity", "identity, ", "Identity,identity", ""):  # plain, as HTTP says
        answer = request(server.url, "POST", CHAT, raw=plain, headers={
            "Content-Type": "application/json", "Content-Encoding": identity})
        assert answer.status == 200, identity
    error = assert_error_shape(request(server.url, "POST", CHAT, raw=b"",
                                       headers={"Content-Type": "application/json"}), 400)
    assert error["message"] == "The request body is empty; send a JSON object."
    form = request(server.url, "POST", CHAT, raw=b'{"model": "x"}',  # curl -d, no -H
                   headers={"Content-Type": "application/x-www-form-urlencoded"})
    error = assert_error_shape(form, 400)
    assert error["message"] == ("The request body must be a JSON object sent with Content-Type: "
                                "application/json (curl -d needs -H 'Content-Type: "
                                "application/json').")
    # sent as JSON, but not an object: the header was right, so the sentence says what it is
    for raw, kind in ((b'[{"model": "x"}]', "an array"), (b'"hi"', "a string"),
                      (b"5", "a number"), (b"true", "true or false"), (b"null", "null")):
        error = assert_error_shape(request(server.url, "POST", CHAT, raw=raw, headers={
            "Content-Type": "application/json"}), 400)
        assert error["message"] == f"The request body must be a JSON object, not {kind}."


@pytest.mark.parametrize(("model_id", "fields", "sentence"), [
    (f"{MODEL_ID}:nomethod:concise", {}, "Unknown method 'nomethod'"),
    (f"{MODEL_ID}:", {}, "empty preference"),
    (f"{MODEL_ID}:amulet:%20", {}, "empty preference"),
    (f"{MODEL_ID}::concise", {}, "empty method"),
    (MODEL_ID, {"localpref": {"preference": "  "}}, "A preference must be a non-empty text"),
    (MODEL_ID, {"localpref": {"preference": "concise", "tau": 1.5}}, "Tau must be in [0, 1)"),
    (MODEL_ID, {"temperature": -1}, "Temperature must be 0 or more"),
    (MODEL_ID, {"max_tokens": 0}, "Max tokens must be a whole number"),
    (MODEL_ID, {"n": 0}, "n must be 1 to 128 (got 0)."),
    (MODEL_ID, {"n": 129}, "n must be 1 to 128 (got 129)."),
    (MODEL_ID, {"presence_penalty": 2.5}, "presence_penalty must be a number from -2 to 2 "
                                         "(got 2.5)."),
    (MODEL_ID, {"frequency_penalty": -3}, "frequency_penalty must be a number from -2 to 2 "
                                          "(got -3.0)."),
    (MODEL_ID, {"messages": [{"role": "user", "content": "basil " * 3000}]}, "The prompt is"),
    (MODEL_ID, {"messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "x"}}]}]}, "Only text content parts"),
    (MODEL_ID, {"messages": [{"role": "user", "content": [{"type": "text"}]}]},
     'A text content part needs its "text" as a string'),
    (MODEL_ID, {"messages": [{"role": "user", "content": "a\ud800b"}]},  # JSON's \\ud800
     "The message is not valid Unicode text: it holds a lone surrogate (U+D800)"),
    (MODEL_ID, {"localpref": {"preference": "kind\udce9"}}, "preference is not valid Unicode"),
    (MODEL_ID, {"stop": ["\udc80"]}, "stop string is not valid Unicode"),
    # the "does not exist" sentence repeated the id, which UTF-8 cannot write: a 500
    ("x\ud800y", {}, "The model id is not valid Unicode text (it holds a lone surrogate)."),
    (f"{MODEL_ID}\udfff", {}, "The model id is not valid Unicode text"),
    ("\ud800:concise", {}, "The model id is not valid Unicode text"),
])
def test_bad_values_are_400_with_the_librarys_sentence(server, model_id, fields,
                                                       sentence) -> None:
    answer = request(server.url, "POST", CHAT, body={**body(**fields), "model": model_id})
    error = assert_error_shape(answer, 400)
    assert sentence in error["message"]


def test_an_error_repeating_a_lone_surrogate_is_written_with_a_replacement_character() -> None:
    """UTF-8 cannot write a lone surrogate: an error repeating one was a 500 of its own."""
    error = ApiError(404, "The model 'a\ud800b\udfff' does not exist.")
    response = error.response()
    assert json.loads(response.body)["error"]["message"] == (
        "The model 'a\ufffdb\ufffd' does not exist.")


@pytest.mark.parametrize(("fields", "param", "sentence"), [
    ({"temperature": -1}, "temperature", "Temperature must be 0 or more (got -1"),
    ({"top_p": 1.5}, "top_p", "Top-p must be in [0, 1] (got 1.5)."),
    ({"top_k": -2}, "top_k", "Top-k must be from 1 to 2,147,483,647, or 0 for off (got -2)."),
    ({"min_p": 1}, "min_p", "Min-p must be in [0, 1) (got 1"),
    ({"repeat_penalty": 0}, "repeat_penalty", "The repeat penalty must be greater than 0"),
    ({"max_tokens": 0}, "max_tokens", "Max tokens must be a whole number, 1 or more (got 0)."),
    ({"max_completion_tokens": -3}, "max_completion_tokens",
     "Max tokens must be a whole number, 1 or more (got -3)."),
    ({"localpref": {"preference": "concise", "tau": 1.5}}, "localpref.tau",
     "Tau must be in [0, 1) (got 1.5)."),
    ({"localpref": {"preference": "concise", "kl_budget": -1}}, "localpref.kl_budget",
     "The KL budget must be greater than 0"),
    ({"localpref": {"preference": "concise", "end_tokens": "x"}}, "localpref.end_tokens",
     "The end-token rule (end_tokens) must be"),
    ({"localpref": {"preference": "concise", "method": "pad", "strength": -2}},
     "localpref.strength", "localpref.strength sets PAD's weight here: Weight must be from 0 to "
     "1,000,000 (got -2"),
    ({"localpref": {"preference": "concise", "method": "amulet", "strength": -2}},
     "localpref.strength", "localpref.strength sets Amulet's contrast k here: The contrast must "
     "be from 0 to 1,000,000 (got -2"),  # (it named a field that was not sent)
    # a setting the method does not take was dropped without a word (the CLI refuses it)
    ({"model": f"{MODEL_ID}:pref:creative", "localpref": {"strength": 5}}, "localpref.strength",
     "localpref.strength sets a steering method's strength; the method pref does not take it."),
    ({"model": f"{MODEL_ID}:pref:creative", "localpref": {"tau": 0.5}}, "localpref.tau",
     "localpref.tau is a setting of the steering methods (contrastive, amulet, pad); the method "
     "pref does not take it."),
    ({"localpref": {"method": "base", "preference": "creative", "kl_budget": 0.1}},
     "localpref.kl_budget", "localpref.kl_budget is a setting of the steering methods"),
    ({"model": f"{MODEL_ID}:base", "localpref": {"end_tokens": "pref"}}, "localpref.end_tokens",
     "localpref.end_tokens is a setting of the steering methods (contrastive, amulet, pad); "
     "the method base does not take it."),
    ({"localpref": {"preference": ""}}, "localpref.preference",
     "A preference must be a non-empty text"),
    ({"localpref": {"preference": {"concise": "1"}}}, "localpref.preference",
     "The weight of 'concise' must be a number (got '1')."),
    ({"localpref": {"preference": "concise", "avoid": []}}, "localpref.avoid",
     "The avoid list is empty"),
    # steering toward and away from one text: Pref's answer, reported as Amulet's
    ({"localpref": {"preference": "concise", "avoid": "Concise "}}, "localpref.avoid",
     "'concise' is both a preference and what to avoid;"),
    ({"localpref": {"preference": "a\ud800b"}}, "localpref.preference",  # param was null
     "The preference is not valid Unicode text: it holds a lone surrogate (U+D800)"),
    ({"model": f"{MODEL_ID}:%FF"}, "model", "The model id 'smollm2-135m-instruct:%FF' has "
                                            "percent-encoded bytes that are not UTF-8 text"),
    ({"localpref": {"preference": "concise", "method": "nope"}}, "localpref.method",
     "Unknown method 'nope'"),
    ({"localpref": {"like": [""]}}, "localpref.like", "An example (like) must be"),
    ({"temperature": 2.5}, "temperature", "Temperature must be between 0 and 2 (got 2.5)."),
    # a method named with nothing to steer toward would silently be plain decoding
    ({"localpref": {"method": "amulet"}}, "localpref.method",
     "localpref.method 'amulet' steers toward a preference and the request gives none;"),
    ({"localpref": {"method": "pad", "preference": None}},
     "localpref.method", "localpref.method 'pad' steers toward a preference"),
    # the recommended steering's settings with nothing to steer toward were dropped unsaid
    ({"localpref": {"strength": 2}}, "localpref.strength", "localpref.strength sets how the "
     "steering steers, and the request gives nothing to steer toward; send "
     "localpref.preference (or avoid, or like), or a model id NAME:PREFERENCE, or leave it "
     "out."),
    ({"localpref": {"preference": None, "tau": 0.1, "end_tokens": "contrast"}},
     "localpref.tau", "localpref.tau sets how the steering steers"),
    ({"localpref": {"preference": {}, "strength": 2}}, "localpref.preference",
     "The weighted preferences are empty;"),
    # a client that built the message wrongly gets a 400, not a long made-up answer
    ({"messages": [{"role": "user"}]}, "messages[0].content",
     "A user message needs its content (a text, or text parts)."),
    ({"messages": [{"role": "system", "content": "Be brief."}, {"role": "user",
                                                                "content": None}]},
     "messages[1].content", "A user message needs its content"),
    ({"messages": [{"role": "developer", "content": None}, {"role": "user", "content": "Hi"}]},
     "messages[0].content", "A developer message needs its content"),
    ({"messages": [{"role": "user", "content": [
        {"type": "text", "text": "Look:"}, {"type": "image_url", "image_url": {"url": "x"}}]}]},
     "messages[0].content[1].type", "Only text content parts are supported (got 'image_url')."),
    # a bad part was "messages[0].content: Input should be a valid string": the union's
    # first member, pointing the client away from the list of parts it sent
    ({"messages": [{"role": "user", "content": [{"type": "text", "text": 5}]}]},
     "messages[0].content[0].text",
     'A text content part needs its "text" as a string ({"type": "text", "text": "..."}).'),
    ({"messages": [{"role": "user", "content": ["hi"]}]}, "messages[0].content[0]",
     'A content part must be an object such as {"type": "text", "text": "..."} (got "hi").'),
    ({"messages": [{"role": "user", "content": [{"text": "hi"}]}]},
     "messages[0].content[0].type", 'A content part needs its "type" as a string ("text").'),
    ({"messages": [{"role": "user", "content": [{"type": "refusal", "refusal": "No."}]}]},
     "messages[0].content[0].type", "Only text content parts are supported (got 'refusal')."),
    # no parts was an empty turn, answered
    ({"messages": [{"role": "user", "content": []}]}, "messages[0].content",
     "A message's content parts are an empty list; send a text or at least one text part."),
    # opposite with nothing to oppose was plain decoding, silently
    ({"localpref": {"opposite": True}}, "localpref.opposite",
     "localpref.opposite gives the base lane the opposite of the preference, and the request "
     "gives none;"),
    # Base writes without a preference: the preference was dropped, and the response named it
    ({"model": f"{MODEL_ID}:base:humorous"}, "model", "The method base writes without a "
     "preference, so the request's preference would be ignored; send the method pref"),
    ({"model": f"{MODEL_ID}:plain:talk%20like%20a%20pirate"}, "model",
     "The method base writes without a preference, so the request's preference"),
    ({"localpref": {"method": "base", "preference": "humorous"}}, "localpref.method",
     "The method base writes without a preference, so the request's preference"),
    ({"model": f"{MODEL_ID}:base", "localpref": {"avoid": "jargon"}}, "localpref.avoid",
     "Avoid needs a two-lane method (contrastive, amulet or pad) to steer away; base reads "
     "one lane."),  # (not "send the method pref", which takes no avoid either)
    ({"localpref": {"method": "base", "like": "Short."}}, "localpref.method",
     "The method base writes without a preference, so the request's like would be ignored"),
    # a method's name alone was steered toward as a preference ("pad")
    ({"model": f"{MODEL_ID}:pad"}, "model", f"The model id '{MODEL_ID}:pad' names the method pad "
     f"and no preference; use {MODEL_ID}:pad:PREFERENCE, or {MODEL_ID}:PREFERENCE for the "
     "recommended steering."),
])
def test_a_value_out_of_range_names_its_field_in_param(server, fields, param,
                                                        sentence) -> None:
    error = assert_error_shape(request(server.url, "POST", CHAT, body=body(**fields)), 400)
    assert error["param"] == param and error["code"] == "invalid_value"
    assert error["message"].startswith(sentence)


def test_base_named_without_a_preference_and_temperature_two_are_answered(server) -> None:
    for fields in ({"localpref": {"method": "base"}}, {"temperature": 2},
                   {"model": f"{MODEL_ID}:base"}, {"localpref": {"opposite": False}}):
        answer = request(server.url, "POST", CHAT, body=body(**fields))
        assert answer.status == 200 and answer.json()["choices"][0]["message"]["content"]
        # ID:base was steered toward the word "base"
        assert answer.json()["localpref"]["method"] == "base"


def test_a_prompt_past_the_window_is_openais_context_length_exceeded(server, model) -> None:
    """Clients (LangChain, LiteLLM) tell an over-long prompt by its code, and the param names
    the field that holds it: messages in a chat, prompt in a text completion, streamed too."""
    long_text = "word " * (model.n_ctx + 50)
    for path, fields, param in (
            (CHAT, body(messages=[{"role": "user", "content": long_text}]), "messages"),
            (CHAT, body(messages=[{"role": "user", "content": long_text}], stream=True),
             "messages"),
            ("/completions", {"model": MODEL_ID, "prompt": long_text, "max_tokens": 2},
             "prompt"),
            ("/completions", {"model": MODEL_ID, "prompt": ["Hi", long_text], "max_tokens": 2},
             "prompt[1]")):
        error = assert_error_shape(request(server.url, "POST", path, body=fields), 400)
        assert (error["code"], error["param"]) == ("context_length_exceeded", param)
        assert error["message"].startswith("The prompt is too long for the model's context: "
                                           "it is ")
        assert f"the context holds {model.n_ctx}" in error["message"]


@pytest.mark.parametrize(("prompt", "param", "sentence"), [
    ([1, 2, 3], "prompt", "A prompt of token ids is not supported; send the prompt as text"),
    ([[1, 2], [3]], "prompt", "A prompt of token ids is not supported"),
    (["Hi", ""], "prompt[1]", "The prompt is empty."),
    (["Hi", 7], "prompt", 'prompt must be a text or a list of texts (got ["Hi", 7]).'),
])
@pytest.mark.parametrize("stream", [False, True])  # (streamed, token ids were "several")
def test_text_completion_prompts_it_cannot_answer_are_named(server, prompt, param,
                                                             sentence, stream) -> None:
    fields = {"model": MODEL_ID, "prompt": prompt, "max_tokens": 2, "stream": stream}
    error = assert_error_shape(request(server.url, "POST", "/completions", body=fields), 400)
    if stream and param == "prompt[1]":  # two prompts are not streamed, whatever they hold
        sentence = "Several prompts are answered only without streaming"
        param = "prompt"
    assert error["param"] == param and error["message"].startswith(sentence)


def test_bad_value_in_a_stream_is_an_http_error_before_the_stream(server) -> None:
    answer = request(server.url, "POST", CHAT, body=body(stream=True, temperature=-2))
    assert "Temperature must be 0 or more" in assert_error_shape(answer, 400)["message"]


@pytest.mark.parametrize("model_id", ["gpt-4o", "/etc/passwd", "../smollm2-135m-instruct",
                                      "HuggingFaceTB/SmolLM2-360M-Instruct-GGUF"])
def test_unknown_model_ids_are_404_and_never_a_file(server, model_id) -> None:
    error = assert_error_shape(request(server.url, "POST", CHAT, body=body(model=model_id)), 404)
    assert error["param"] == "model" and error["code"] == "model_not_found"
    assert server.state.model_id == MODEL_ID


def test_unknown_route_and_method_have_the_same_shape(server) -> None:
    error = assert_error_shape(request(server.url, "GET", "/nothing"), 404)
    assert error["message"] == "There is no route GET /v1/nothing."
    assert_error_shape(request(server.url, "GET", CHAT), 405)


def test_a_route_with_a_trailing_slash_is_that_route_never_a_redirect(server, model) -> None:
    """Starlette answered ``POST /v1/chat/completions/`` with a bodyless 307, which httpx
    and urllib do not follow for a POST: the client read an empty, non-JSON answer."""
    answer = request(server.url, "POST", CHAT + "/", body=body(max_tokens=2))
    assert answer.status == 200 and answer.json()["object"] == "chat.completion"
    text = request(server.url, "POST", "/completions/",
                   body={"model": MODEL_ID, "prompt": "Hi", "max_tokens": 2})
    assert text.status == 200 and text.json()["object"] == "text_completion"
    listed = request(server.url, "GET", "/models/")
    assert listed.status == 200 and listed.json()["object"] == "list"
    assert request(server.url.removesuffix("/v1"), "GET", "/health/").json() == {
        "status": "ok"}
    assert request(server.url, "POST", CHAT + "//", body=body(max_tokens=2)).status == 200
    assert request(server.url, "GET", "/models//").json()["object"] == "list"
    # another path is left as it came: a 404 names it so, and an id may end in %2F
    error = assert_error_shape(request(server.url, "GET", "/nothing/"), 404)
    assert error["message"] == "There is no route GET /v1/nothing/."
    assert request(server.url, "GET", f"/models/{MODEL_ID}/").json()["id"] == MODEL_ID
    error = assert_error_shape(request(server.url, "GET", f"/models/{MODEL_ID}%2F"), 404)
    assert error["code"] == "model_not_found"
    error = assert_error_shape(request(server.url, "GET", f"/models/{MODEL_ID}%2F/"), 404)
    assert error["message"].startswith(f"The model '{MODEL_ID}/' does not exist")
    error = assert_error_shape(request(server.url, "PUT", "/chat/completions/"), 405)
    assert error["message"] == "/v1/chat/completions does not accept PUT."
    with running_server(model, api_key="s3cret") as keyed:  # the key is asked of it too
        missing = assert_error_shape(request(keyed.url, "POST", CHAT + "/", body=body()), 401)
        assert missing["code"] == "invalid_api_key"
        assert request(keyed.url.removesuffix("/v1"), "GET", "/health/").status == 200


def test_body_over_one_mebibyte_is_413(server) -> None:
    big = body(messages=[{"role": "user", "content": "x" * (1 << 20)}])
    error = assert_error_shape(request(server.url, "POST", CHAT, body=big), 413)
    assert error["code"] == "request_too_large"


def test_openai_sdk_raises_its_own_error_classes(client) -> None:
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "x"}])
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model=f"{MODEL_ID}:nomethod:concise",
                                       messages=[{"role": "user", "content": "x"}])
    assert "Unknown method" in caught.value.body["message"]


def test_host_header_must_be_a_loopback_name(server) -> None:
    for host in ("evil.example", "evil.example:8765", "192.168.1.2", "localhost.evil.example"):
        error = assert_error_shape(request(server.url, "GET", "/models",
                                           headers={"Host": host}), 400)
        assert error["code"] == "invalid_host"
    for host in (f"localhost:{server.port}", f"127.0.0.1:{server.port}", f"[::1]:{server.port}"):
        assert request(server.url, "GET", "/models", headers={"Host": host}).status == 200


def test_no_cors_headers_unless_an_origin_is_named(server, model) -> None:
    origin = {"Origin": "http://localhost:3000"}
    plain = request(server.url, "GET", "/models", headers=origin)
    assert plain.status == 200 and "access-control-allow-origin" not in plain.headers
    with running_server(model, cors_origins=("http://localhost:3000",)) as cors:
        allowed = request(cors.url, "GET", "/models", headers=origin)
        assert allowed.headers["access-control-allow-origin"] == "http://localhost:3000"
        other = request(cors.url, "GET", "/models", headers={"Origin": "http://elsewhere"})
        assert "access-control-allow-origin" not in other.headers
        preflight = {"Access-Control-Request-Method": "POST"}
        fine = request(cors.url, "OPTIONS", "/chat/completions", headers={**origin, **preflight})
        assert fine.status == 200
        refused = request(cors.url, "OPTIONS", "/chat/completions",
                          headers={"Origin": "http://elsewhere", **preflight})
        error = assert_error_shape(refused, 400)  # JSON like every error, not plain text
        assert error["message"].startswith("Disallowed CORS origin: this server answers")
        # Chromium asks before a public page calls localhost: a named origin may
        private = {**preflight, "Access-Control-Request-Private-Network": "true",
                   "Access-Control-Request-Headers": "authorization,content-type"}
        asked = request(cors.url, "OPTIONS", "/chat/completions", headers={**origin, **private})
        assert asked.status == 200
        assert asked.headers["access-control-allow-private-network"] == "true"
        assert asked.headers["access-control-allow-origin"] == "http://localhost:3000"
        elsewhere = request(cors.url, "OPTIONS", "/chat/completions",
                            headers={"Origin": "http://elsewhere", **private})
        assert elsewhere.status == 400 and "access-control-allow-origin" not in elsewhere.headers


def test_api_key_is_required_when_set(model) -> None:
    with running_server(model, api_key="s3cret") as keyed:
        missing = assert_error_shape(request(keyed.url, "GET", "/models"), 401)
        assert missing["code"] == "invalid_api_key"
        wrong = request(keyed.url, "POST", CHAT, body=body(),
                        headers={"Authorization": "Bearer nope"})
        assert assert_error_shape(wrong, 401)["message"] == "The API key is wrong."
        for header in ("Basic czNjcmV0", "s3cret"):  # another scheme; the key sent bare
            other = assert_error_shape(request(keyed.url, "POST", CHAT, body=body(),
                                               headers={"Authorization": header}), 401)
            assert other["message"] == ("The Authorization header is not of the Bearer scheme; "
                                        "send 'Authorization: Bearer KEY'.")
        assert request(keyed.url.removesuffix("/v1"), "GET", "/health").status == 200
        assert sdk_client(keyed.url, "s3cret").models.list().data[0].id == MODEL_ID
        with pytest.raises(openai.AuthenticationError):
            sdk_client(keyed.url, "nope").models.list()


def test_while_loading_everything_is_503_with_retry_after() -> None:
    with running_server(None) as loading:
        health = request(loading.url.removesuffix("/v1"), "GET", "/health")
        assert (health.status, health.json()) == (503, {"status": "loading"})
        for method, path, sent in (("GET", "/models", None), ("POST", CHAT, body())):
            answer = request(loading.url, method, path, body=sent)
            error = assert_error_shape(answer, 503)
            assert error["code"] == "model_loading" and int(answer.headers["retry-after"]) > 0


def test_an_assistants_refusal_part_in_the_history_reads_as_its_text(server) -> None:
    """OpenAI's history may hold an assistant message of refusal parts: it was a 400."""
    said = [{"type": "text", "text": "I would"}, {"type": "refusal", "refusal": "rather not."}]
    usage = []
    for content in (said, "I would\nrather not."):
        messages = [{"role": "user", "content": "Tell me a secret."},
                    {"role": "assistant", "content": content},
                    {"role": "user", "content": "Then a joke."}]
        answer = request(server.url, "POST", CHAT, body=body(messages=messages, max_tokens=2))
        assert answer.status == 200, answer.text
        usage.append(answer.json()["usage"]["prompt_tokens"])
    assert usage[0] == usage[1]  # the parts read as the one text, a line break between


def test_a_client_gone_mid_body_leaves_no_traceback(server, caplog) -> None:
    """A client that hangs up halfway through its body (a killed client, a flaky network)
    is nobody to answer: the server logs no error for it and goes on serving."""
    caplog.set_level(logging.DEBUG)
    for _ in range(3):
        with socket.create_connection(("127.0.0.1", server.port)) as sock:
            sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                         b"Content-Type: application/json\r\nContent-Length: 500\r\n\r\n"
                         b'{"model":')
            time.sleep(0.3)
    time.sleep(0.5)  # the server reads the hang-up
    errors = [record for record in caplog.records if record.levelno >= logging.ERROR]
    assert errors == []
    answer = request(server.url, "POST", CHAT, body=body(max_tokens=2))
    assert answer.status == 200
