"""OpenAI's ``logit_bias`` and presence and frequency penalties: checked, added to copies of a
track's lanes (a NumPy reference and properties), and on the bundled model a ban and a
forced token under every method and penalties that cut repetition, over the library and over
real HTTP with the openai SDK."""

from __future__ import annotations

import math

import numpy as np
import openai
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from server_helpers import MODEL_ID, PROMPT, user

from localpref.decoding import Generation
from localpref.errors import SettingsError
from localpref.request import Request
from localpref.token_bias import TokenBias, checked_logit_bias, checked_penalty

HOW = 1073  # " How" in the bundled model's vocabulary


def test_keys_are_token_ids_or_their_text_and_zero_biases_are_left_out() -> None:
    assert checked_logit_bias(None) == ()
    assert checked_logit_bias({"7": -100, 3: 2.5, np.int64(5): 0, "0": 100}) == (
        (0, 100.0), (3, 2.5), (7, -100.0))
    assert checked_logit_bias(((3, 2.5), (1, -1.0))) == ((1, -1.0), (3, 2.5))  # the checked form
    # NumPy's numbers, as every other number setting takes them (float32 was refused)
    assert checked_logit_bias({5: np.float32(0.5), 6: np.int8(-3)}) == ((5, 0.5), (6, -3.0))


@pytest.mark.parametrize(("bias", "sentence"), [
    ({"x": 1}, "logit_bias keys must be token ids, whole numbers 0 or more (got 'x')."),
    ({-1: 1}, "logit_bias keys must be token ids, whole numbers 0 or more (got -1)."),
    ({True: 1}, "logit_bias keys must be token ids, whole numbers 0 or more (got True)."),
    ({1.5: 1}, "logit_bias keys must be token ids, whole numbers 0 or more (got 1.5)."),
    ({"\u00b2": 1}, "logit_bias keys must be token ids, whole numbers 0 or more (got '\u00b2')."),
    ({"\u0661": 1}, "logit_bias keys must be token ids, whole numbers 0 or more (got '\u0661')."),
    ({"1" * 5000: 1}, "logit_bias keys must be token ids, whole numbers 0 or more (got '"
                      + "1" * 36 + "...)."),
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
        TokenBias(((3, 1.0), (50000, 1.0)), 49152)


@settings(max_examples=60, deadline=None)
@given(data=st.data(), size=st.integers(1, 300), lanes=st.integers(1, 4))
def test_biased_lanes_are_copies_plus_the_bias_and_the_lanes_stay_as_they_were(
        data, size, lanes) -> None:
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    views = [rng.normal(size=size).astype(np.float32) for _ in range(lanes)]
    before = [view.copy() for view in views]
    ids = data.draw(st.lists(st.integers(0, size - 1), unique=True, max_size=8))
    values = [data.draw(st.floats(-100, 100, allow_nan=False)) for _ in ids]
    bias = TokenBias(checked_logit_bias(dict(zip(ids, values, strict=True))), size)
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


@settings(max_examples=60, deadline=None)
@given(written=st.lists(st.integers(0, 49), max_size=40),
       presence=st.floats(-2, 2, allow_nan=False), frequency=st.floats(-2, 2, allow_nan=False),
       biased=st.dictionaries(st.integers(0, 49), st.floats(-100, 100, allow_nan=False),
                              max_size=5))
def test_penalties_are_openais_formula_over_the_answer_so_far(written, presence, frequency,
                                                               biased) -> None:
    """z'_t = z_t + b_t - c_t * frequency - [c_t > 0] * presence, c_t the answer's count."""
    lane = np.linspace(-5, 5, 50, dtype=np.float32)
    bias = TokenBias(checked_logit_bias(biased), 50, presence=presence, frequency=frequency)
    for token in written:
        bias.note(token)
    out = bias.biased([lane], [0])[0]
    expected = lane.astype(np.float64).copy()
    for token, value in biased.items():
        expected[token] = np.float32(np.float32(expected[token]) + np.float32(value))
    for token in set(written):
        amount = written.count(token) * frequency + presence
        expected[token] = np.float32(np.float32(expected[token]) - np.float32(amount))
    np.testing.assert_array_equal(out, expected.astype(np.float32))


@pytest.mark.parametrize("value", [2.5, -2.01, math.nan, True, "1"])
def test_a_penalty_outside_openais_range_is_refused(value) -> None:
    with pytest.raises(SettingsError, match=r"^presence_penalty must be a number from -2 to 2"):
        checked_penalty(value, "presence_penalty")
    with pytest.raises(SettingsError, match=r"^frequency_penalty must be a number from -2 to 2"):
        Request(messages=({"role": "user", "content": "Hi"},), frequency_penalty=value)


def _answer(model, logit_bias, prompt: str = "Hi", max_tokens: int = 5,
            **settings) -> list[int]:
    penalties = {name: settings.pop(name) for name in ("presence_penalty", "frequency_penalty")
                 if name in settings}
    request = Request.make(prompt, max_tokens=max_tokens, **settings).replace(
        logit_bias=logit_bias, **penalties)
    generation = Generation(model.submit(request))
    return generation.run().tokens


@pytest.mark.parametrize("steering", [{}, {"preference": "concise"}])
def test_a_frequency_penalty_cuts_repetition(model, steering) -> None:
    prompt = "Write the word basil twenty times."
    plain = _answer(model, None, prompt, 48, ignore_eos=True, **steering)
    penalised = _answer(model, None, prompt, 48, ignore_eos=True, frequency_penalty=2.0,
                        **steering)
    assert _answer(model, None, prompt, 48, ignore_eos=True, frequency_penalty=0.0,
                   **steering) == plain
    most = max(plain.count(token) for token in plain)
    assert max(penalised.count(token) for token in penalised) < most
    assert len(set(penalised)) > len(set(plain))


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


def test_the_python_api_takes_them_as_keywords_and_a_chat_as_settings(model) -> None:
    settings = {"logit_bias": {HOW: 100}, "presence_penalty": 0.5, "frequency_penalty": 0.25}
    generated = model.generate("Hi", max_tokens=3, **settings)
    assert generated.tokens == _answer(model, {HOW: 100}, "Hi", 3, presence_penalty=0.5,
                                       frequency_penalty=0.25) == [HOW] * 3
    assert "".join(model.stream("Hi", max_tokens=3, **settings)) == generated.text
    chat = model.chat(max_tokens=3, **settings)
    try:
        assert chat.send("Hi").tokens == [HOW] * 3
    finally:
        chat.close()
    with pytest.raises(SettingsError, match="^frequency_penalty must be a number from -2"):
        model.generate("Hi", frequency_penalty=5)


def test_the_server_takes_logit_bias_as_openai_sends_it(client, model) -> None:
    plain = model.generate(PROMPT, max_tokens=4)
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
    plain = client.chat.completions.create(model=MODEL_ID, messages=user(), max_tokens=24)
    penalised = client.chat.completions.create(model=MODEL_ID, messages=user(), max_tokens=24,
                                               presence_penalty=2.0, frequency_penalty=1.0)
    expected = _answer(model, None, PROMPT, 24, presence_penalty=2.0, frequency_penalty=1.0)
    assert penalised.usage.completion_tokens == len(expected)
    assert penalised.choices[0].message.content == model.vocabulary.detokenize(expected)
    assert penalised.choices[0].message.content != plain.choices[0].message.content
    for bias, sentence in (({"60000": 5}, "logit_bias names token 60000, which this model's "
                                         "vocabulary (49,152 tokens) does not have."),
                           ({"5": 150}, "A logit_bias must be a number from -100 to 100 "
                                        "(got 150.0 for token 5).")):
        with pytest.raises(openai.BadRequestError) as refused:
            client.chat.completions.create(model=MODEL_ID, messages=user(), max_tokens=2,
                                           logit_bias=bias)
        assert refused.value.body["param"] == "logit_bias"
        assert refused.value.body["message"] == sentence
