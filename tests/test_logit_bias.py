"""OpenAI's ``logit_bias``: checked, added to copies of a track's lanes (a NumPy reference and
properties), and on the bundled model a ban and a forced token under every method, over the
library and over real HTTP with the openai SDK."""

from __future__ import annotations

import math

import numpy as np
import openai
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from server_helpers import MODEL_ID, user

from localpref.decoding import Generation
from localpref.errors import SettingsError
from localpref.logit_bias import LogitBias, checked_logit_bias
from localpref.request import Request

HOW = 1073  # " How" in the bundled model's vocabulary


def test_keys_are_token_ids_or_their_text_and_zero_biases_are_left_out() -> None:
    assert checked_logit_bias(None) == ()
    assert checked_logit_bias({"7": -100, 3: 2.5, np.int64(5): 0, "0": 100}) == (
        (0, 100.0), (3, 2.5), (7, -100.0))
    assert checked_logit_bias(((3, 2.5), (1, -1.0))) == ((1, -1.0), (3, 2.5))  # the checked form


@pytest.mark.parametrize(("bias", "sentence"), [
    ({"x": 1}, "logit_bias keys must be token ids, whole numbers 0 or more (got 'x')."),
    ({-1: 1}, "logit_bias keys must be token ids, whole numbers 0 or more (got -1)."),
    ({True: 1}, "logit_bias keys must be token ids, whole numbers 0 or more (got True)."),
    ({1.5: 1}, "logit_bias keys must be token ids, whole numbers 0 or more (got 1.5)."),
    ({"1": 101}, "A logit_bias must be a number from -100 to 100 (got 101 for token 1)."),
    ({"1": math.inf}, "A logit_bias must be a number from -100 to 100 (got inf for token 1)."),
    ({"1": "5"}, "A logit_bias must be a number from -100 to 100 (got '5' for token 1)."),
    ({"1": True}, "A logit_bias must be a number from -100 to 100 (got True for token 1)."),
    ([1, 2], 'logit_bias must map token ids to biases ({"50256": -100}).'),
])
def test_a_bad_bias_is_one_sentence_naming_the_field(bias, sentence) -> None:
    with pytest.raises(SettingsError) as refused:
        Request(messages=({"role": "user", "content": "Hi"},), logit_bias=bias)
    assert str(refused.value) == sentence and refused.value.param == "logit_bias"


def test_a_token_outside_the_vocabulary_is_refused() -> None:
    with pytest.raises(SettingsError, match=r"^logit_bias names token 50000, which this "
                                            r"model's vocabulary \(49,152 tokens\) does not"):
        LogitBias(((3, 1.0), (50000, 1.0)), 49152)


@settings(max_examples=60, deadline=None)
@given(data=st.data(), size=st.integers(1, 300), lanes=st.integers(1, 4))
def test_biased_lanes_are_copies_plus_the_bias_and_the_lanes_stay_as_they_were(
        data, size, lanes) -> None:
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    views = [rng.normal(size=size).astype(np.float32) for _ in range(lanes)]
    before = [view.copy() for view in views]
    ids = data.draw(st.lists(st.integers(0, size - 1), unique=True, max_size=8))
    values = [data.draw(st.floats(-100, 100, allow_nan=False)) for _ in ids]
    bias = LogitBias(checked_logit_bias(dict(zip(ids, values, strict=True))), size)
    positions = data.draw(st.lists(st.integers(0, lanes - 1), unique=True, min_size=1))
    for _ in range(2):  # the buffers are kept from one step to the next
        out = bias.biased(views, positions)
        for index, view in enumerate(views):
            np.testing.assert_array_equal(view, before[index])  # a lane's own logits
            if index not in positions:
                assert out[index] is view
                continue
            expected = before[index].copy()
            for token, value in zip(ids, values, strict=True):
                if value:
                    expected[token] = np.float32(expected[token] + np.float32(value))
            np.testing.assert_array_equal(out[index], expected)
            assert out[index] is not view and out[index].dtype == np.float32


def _answer(model, logit_bias, **settings) -> list[int]:
    request = Request.make("Hi", max_tokens=5, **settings).replace(logit_bias=logit_bias)
    generation = Generation(model.submit(request))
    return generation.run().tokens


@pytest.mark.parametrize("steering", [
    {}, {"preference": "concise"}, {"preference": "concise", "method": "amulet"},
    {"preference": "concise", "method": "pad"}, {"preference": "concise", "method": "contrastive"},
    {"temperature": 0.8, "seed": 3}])
def test_a_ban_and_a_forced_token_under_every_method(model, steering) -> None:
    """-100 bans a token and 100 forces one, steered or not: the steering steers the biased
    model (its plausibility mask and PAD's candidates come from biased lanes)."""
    plain = _answer(model, None, **steering)
    assert _answer(model, {}, **steering) == plain
    banned = plain[0]
    assert banned not in _answer(model, {banned: -100}, **steering)
    assert _answer(model, {str(HOW): 100}, **steering) == [HOW] * 5


def test_the_server_takes_logit_bias_as_openai_sends_it(client, model) -> None:
    plain = model.generate("How do I keep basil alive?", max_tokens=4)
    first = plain.tokens[0]
    for model_id in (MODEL_ID, f"{MODEL_ID}:concise"):
        banned = client.chat.completions.create(
            model=model_id, messages=user(), max_tokens=4, logprobs=True,
            logit_bias={str(first): -100})
        pieces = [entry.token for entry in banned.choices[0].logprobs.content]
        assert model.vocabulary.detokenize([first]) not in pieces[:1]
        forced = client.chat.completions.create(model=model_id, messages=user(), max_tokens=3,
                                                logit_bias={str(HOW): 100})
        assert forced.choices[0].message.content == " How How How"
    for bias, sentence in (({"60000": 5}, "logit_bias names token 60000, which this model's "
                                         "vocabulary (49,152 tokens) does not have."),
                           ({"5": 150}, "A logit_bias must be a number from -100 to 100 "
                                        "(got 150.0 for token 5).")):
        with pytest.raises(openai.BadRequestError) as refused:
            client.chat.completions.create(model=MODEL_ID, messages=user(), max_tokens=2,
                                           logit_bias=bias)
        assert refused.value.body["param"] == "logit_bias"
        assert refused.value.body["message"] == sentence
