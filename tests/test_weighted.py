"""Weighted preferences: the kernel against NumPy, weight 1 against today's recommended on the
bundled model, the lanes each request takes in admission, and bad weights."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from localpref.api import Model
from localpref.errors import ModelError, SettingsError
from localpref.kernels.weighted import weighted_logits, weighted_other_into
from localpref.methods import Amulet, Contrastive, recommended_method
from localpref.request import Request
from localpref.weights import Weighted, Weights, parse_preference_items

PROMPT = "How do I keep basil alive?"
INF = np.inf


def reference(z_all, z_base, lanes, weights, k):
    """NumPy: z = z_all + k sum_i w_i (z_i - z_base), -inf where any lane is not finite."""
    ok = np.isfinite(z_all) & np.isfinite(z_base)
    push = np.zeros(len(z_all))
    for lane, weight in zip(lanes, weights, strict=True):
        ok &= np.isfinite(lane)
        push += weight * (np.where(ok, lane, 0.0) - np.where(ok, z_base, 0.0))
    return np.where(ok, np.where(ok, z_all, 0.0) + k * push, -INF)


@st.composite
def weighted_case(draw):
    v = draw(st.integers(2, 48))
    n = draw(st.integers(1, 4))

    def lane():
        values = np.array(draw(st.lists(st.floats(-40, 40), min_size=v, max_size=v)))
        masked = np.array(draw(st.lists(st.integers(0, 11), min_size=v, max_size=v))) == 0
        return np.where(masked, -INF, values)

    z_all, z_base = lane(), lane()
    lanes = [lane().astype(draw(st.sampled_from([np.float32, np.float64]))) for _ in range(n)]
    weights = draw(st.lists(st.floats(0.0, 3.0), min_size=n, max_size=n))
    k = draw(st.floats(0.0, 5.0))
    return z_all, z_base, lanes, weights, k


@settings(max_examples=80, deadline=None)
@given(weighted_case())
def test_prop_weighted_combination_equals_the_numpy_reference(case):
    z_all, z_base, lanes, weights, k = case
    got = weighted_logits(z_all, z_base, lanes, weights, k)
    expected = reference(z_all, z_base, lanes, weights, k)
    finite = np.isfinite(expected)
    assert not np.isnan(got).any()
    assert np.array_equal(np.isfinite(got), finite)
    assert np.all(got[~finite] == -INF)
    assert np.allclose(got[finite], expected[finite], rtol=1e-9, atol=1e-9)


@settings(max_examples=40, deadline=None)
@given(weighted_case())
def test_prop_weight_zero_lanes_push_nothing_and_one_lane_is_the_contrast(case):
    z_all, z_base, lanes, weights, k = case
    ok = np.isfinite(z_all) & np.isfinite(z_base)
    for lane in lanes:
        ok &= np.isfinite(lane)
    zero = weighted_logits(z_all, z_base, lanes, [0.0] * len(lanes), k)
    assert np.array_equal(zero[ok], z_all[ok])
    single = weighted_logits(lanes[0], z_base, [lanes[0]], [1.0], k)
    both = np.isfinite(lanes[0]) & np.isfinite(z_base)
    contrast = lanes[0][both] + k * (lanes[0][both] - z_base[both].astype(np.float64))
    assert np.allclose(single[both], contrast, rtol=1e-9, atol=1e-9)


def test_weighted_other_into_checks_its_arguments() -> None:
    z = np.zeros(4)
    with pytest.raises(ValueError, match="one weight per lane"):
        weighted_other_into(z, z, [z, z], [1.0], np.empty(4))
    with pytest.raises(ValueError, match="same length"):
        weighted_other_into(z, z, [np.zeros(3)], [1.0], np.empty(4))


def test_weight_one_answers_exactly_as_the_unweighted_preference(model: Model) -> None:
    plain = model.generate(PROMPT, preference="concise", max_tokens=24)
    weighted = model.generate(PROMPT, preference={"concise": 1.0}, max_tokens=24)
    assert weighted.tokens == plain.tokens and weighted.text == plain.text
    assert weighted.stats["n_lanes"] == 2
    assert weighted.stats["settings"]["contrast"] == recommended_method().contrast
    sampled = [model.generate(PROMPT, preference=preference, max_tokens=16, temperature=0.8,
                              seed=3).tokens for preference in ("concise", {"concise": 1})]
    assert sampled[0] == sampled[1]
    # read as the preference itself: Pref and Base take it as they take "concise"
    for method in ("pref", "base"):
        assert model.generate(PROMPT, preference={"concise": 1}, method=method,
                              max_tokens=8).tokens == model.generate(
            PROMPT, preference="concise", method=method, max_tokens=8).tokens


def test_one_weighted_preference_scales_the_strength(model: Model) -> None:
    half = model.generate(PROMPT, preference={"concise": 0.5}, method=Contrastive(ratio=2.0),
                          max_tokens=12)
    direct = model.generate(PROMPT, preference="concise", method=Contrastive(ratio=1.0),
                            max_tokens=12)
    assert half.tokens == direct.tokens and half.stats["settings"]["ratio"] == 1.0


def test_two_weighted_preferences_decode_four_lanes_and_weight_zero_keeps_the_anchor(
        model: Model) -> None:
    weighted = model.generate(PROMPT, preference={"concise": 1, "uplifting": 0.4},
                              max_tokens=16, trace=True)
    assert weighted.stats["n_lanes"] == 4
    assert weighted.stats["settings"]["weights"] == [1.0, 0.4]
    assert weighted.stats["preference"] == "concise=1 + uplifting=0.4"
    assert weighted.stats["fluency_base"] is not None and weighted.stats["changed_tokens"] >= 0
    assert len(weighted.trace) == len(weighted.tokens)
    # weight 0 everywhere: no push, the anchor (every preference in one lane) with the controls
    zero = model.generate(PROMPT, preference={"concise": 0, "uplifting": 0}, max_tokens=16)
    anchor = model.generate(PROMPT, preference=["concise", "uplifting"],
                            method=recommended_method().with_strength(0.0), max_tokens=16)
    assert zero.tokens == anchor.tokens
    # the push: with the uplifting lane's weight raised, the answer changes
    pushed = model.generate(PROMPT, preference={"concise": 1, "uplifting": 4}, max_tokens=16)
    assert pushed.tokens != weighted.tokens


def test_weighted_lanes_read_their_own_prompts(model: Model) -> None:
    prompts = model.lane_prompts(PROMPT, preference={"concise": 1, "uplifting": 0.5})
    assert set(prompts) == {"pref", "base", "pref1", "pref2"}
    assert "as short and to the point" in prompts["pref1"]
    assert "uplifting" not in prompts["pref1"] and "uplifting" in prompts["pref2"]
    assert "short" in prompts["pref"] and "uplifting" in prompts["pref"]
    assert "short" not in prompts["base"] and "uplifting" not in prompts["base"]


def test_weighted_steering_uses_the_method_given(model: Model) -> None:
    request = Request.make(PROMPT, preference={"a": 1, "b": 2}, method=Amulet(contrast=1.0))
    assert isinstance(request.preference, Weights)
    result = model.submit(request.replace(max_tokens=6)).run()[0]
    assert result.stats["method"] == "amulet" and result.stats["n_lanes"] == 4
    assert Weighted(Amulet(), (1.0, 2.0)).lanes == ("pref", "base", "pref1", "pref2")


@pytest.mark.parametrize(("preference", "method", "words"), [
    ({"concise": -1}, None, "from 0 to 1000 (got -1)"),
    ({"concise": "lots"}, None, "must be a number"),
    ({"concise": float("nan")}, None, "from 0 to 1000 (got nan)"),
    ({"concise": 10**400}, None, "(got a number too large for a float)"),
    ({"concise": 1001}, None, "from 0 to 1000 (got 1001)"),
    ({"concise": 1, "Concise": 2}, None, "given twice"),
    ({"concise": True}, None, "must be a number"),
    ({}, None, "empty"),
    ({" ": 1}, None, "non-empty text"),
    ({"concise": 0.5}, "pref", "two-lane method"),
    ({"concise": 1, "uplifting": 1}, "base", "two-lane method"),
])
def test_bad_weights_get_one_sentence(model: Model, preference, method, words) -> None:
    with pytest.raises(SettingsError) as error:
        model.generate(PROMPT, preference=preference, method=method, max_tokens=2)
    message = str(error.value)
    assert words in message and message.endswith(".") and "\n" not in message


def test_a_comparison_may_show_pref_beside_the_weighted_method(model: Model) -> None:
    results = model.compare(PROMPT, ["pref", "recommended"],
                            preference={"concise": 1, "uplifting": 1}, max_tokens=6).run()
    assert [r.stats["n_lanes"] for r in results] == [1, 4]


def test_command_line_items_with_a_number_after_equals_are_weights() -> None:
    assert parse_preference_items(["concise", "uplifting"]) == ["concise", "uplifting"]
    assert parse_preference_items(None) is None
    weights = parse_preference_items(["concise=1", "uplifting = 0.4", "be kind"])
    assert isinstance(weights, Weights)
    assert dict(weights) == {"concise": 1.0, "uplifting": 0.4, "be kind": 1.0}
    assert parse_preference_items(["a=b"]) == ["a=b"]  # no number: plain text
    assert dict(parse_preference_items(["x = y=2e-1"])) == {"x = y": 0.2}
    with pytest.raises(SettingsError, match="from 0 to 1000"):
        parse_preference_items(["concise=-1"])
    for bare in ("=1", " = 0.5"):  # a weight of nothing, not the text "=1"
        with pytest.raises(SettingsError, match="has a weight but no text"):
            parse_preference_items([bare])
    for nothing in ("=", " == "):  # neither a text nor a weight: not the text "="
        with pytest.raises(SettingsError, match=r"^The preference '=+' has no text; give it "):
            parse_preference_items(["concise", nothing])
    for mistyped in ("concise=abc", "Uplifting = ", "concise=1,5"):  # a preset's weight
        with pytest.raises(SettingsError, match="must be a number"):
            parse_preference_items([mistyped])
    # -p x=1 -p x=2: the last weight would silently win
    with pytest.raises(SettingsError, match=r"^The preference 'concise' is given twice; "):
        parse_preference_items(["concise=1", "uplifting", " concise = 2"])
    with pytest.raises(SettingsError, match=r"^The preference 'Concise' is given twice; "):
        parse_preference_items(["concise=1", "Concise=1"])


def test_a_text_preference_written_as_a_weight_is_refused_not_read_literally() -> None:
    """``preference="concise=0.5"`` gave the lane the text "concise=0.5" under the label a
    weight gets: the library refuses a built-in name and ``=`` as the command line does, and
    to avoid, a built-in name, ``=`` and a number."""
    for preference in ("concise=0.5", " Concise = abc", ["uplifting", "concise=2"]):
        with pytest.raises(SettingsError, match=r"reads as a weight; give weights as a "
                                                r"mapping .*e\.g\. \{'[cC]oncise': 0\.5\}"):
            Request.make(PROMPT, preference=preference)
    with pytest.raises(SettingsError, match=r"^Avoid takes no weights \('verbose=2'\)"):
        Request.make(PROMPT, preference="concise", avoid="verbose=2")
    for free in ("pi=3.14", "e=mc2", "x = 1"):  # not a built-in name: free text
        assert Request.make(PROMPT, preference=free).preference == free
    assert Request.make(PROMPT, preference="concise", avoid="verbose=high").avoid == (
        "verbose=high")


def test_admission_counts_every_lane_of_a_weighted_request(bundled_path: Path) -> None:
    preference = {"concise": 1, "uplifting": 0.5}  # 4 lanes
    with Model(bundled_path, max_lanes=4, n_ctx=512) as small:
        alone = small.generate(PROMPT, preference=preference, max_tokens=8)
        with pytest.raises(SettingsError) as error:
            small.generate(PROMPT, preference={**preference, "formal": 1}, max_tokens=2)
        assert "needs 5 lanes" in str(error.value) and "max_lanes" in str(error.value)
        results: list = [None] * 3  # three times what the model holds at once
        def ask(index: int) -> None:
            results[index] = small.generate(PROMPT, preference=preference, max_tokens=8)
        threads = [threading.Thread(target=ask, args=(i,)) for i in range(3)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        events = list(small.scheduler.events)
    assert all(result.tokens == alone.tokens for result in results)
    jobs = {job for event in events for job in event.jobs}
    assert all(len(event.jobs) == 1 for event in events if event.kind == "step")
    assert len(jobs) == 4  # one at a time: no step ever held two 4-lane requests
    assert all(event.tokens <= 4 for event in events if event.kind == "step")


def test_command_line_weights_round_trip(capsys: pytest.CaptureFixture[str]) -> None:
    from localpref.cli import main

    argv = ["generate", PROMPT, "--max-tokens", "10", "--json"]
    assert main([*argv, "-p", "concise=1", "-p", "uplifting=0.4"]) == 0
    weighted = json.loads(capsys.readouterr().out)
    assert weighted["preference"] == "concise=1 + uplifting=0.4"
    assert weighted["stats"]["n_lanes"] == 4
    assert weighted["stats"]["settings"]["weights"] == [1.0, 0.4]
    assert main([*argv, "-p", "concise=1"]) == 0
    one = json.loads(capsys.readouterr().out)
    assert main([*argv, "-p", "concise"]) == 0
    plain = json.loads(capsys.readouterr().out)
    assert one["text"] == plain["text"] and one["stats"]["n_lanes"] == 2
    for bad in ("concise=-0.5", "concise=1e999"):
        assert main([*argv, "-p", bad]) == 2
        err = capsys.readouterr().err.strip()
        assert "from 0 to 1000" in err and err.count("\n") == 0 and "Traceback" not in err
    # more preferences than a context has lanes: the sentence says so, not max_lanes
    many = [item for i in range(300) for item in ("-p", f"style {i}=0.1")]
    assert main([*argv, *many]) == 2
    err = capsys.readouterr().err.strip()
    assert err == ("localpref: This needs 302 lanes at once, more than a llama.cpp context "
                   "holds (256); give fewer weighted preferences or methods.")


def test_a_strength_times_a_weight_past_the_largest_strength_is_one_sentence(model) -> None:
    """The same for one weighted preference and for several (one was refused naming a
    contrast the user never gave, the other taken)."""
    from localpref.methods import Amulet

    for preference in ({"concise": 1000}, {"concise": 1000, "formal": 1000}):
        with pytest.raises(SettingsError) as refused:
            model.generate("Hi", preference=preference, method=Amulet(contrast=2000),
                           max_tokens=2)
        assert str(refused.value) == ("Amulet's contrast k 2000 times the preference weight "
                                      "1000 is past the largest strength, 1,000,000; lower "
                                      "one of them.")
        assert refused.value.param == "preference"
    answer = model.generate("Hi", preference={"concise": 1000, "formal": 2},
                            method=Amulet(contrast=1000), max_tokens=2, ignore_eos=True)
    assert len(answer.tokens) == 2


def test_two_weighted_presets_in_one_item_are_refused_not_read_as_one_text() -> None:
    """``-p concise=1000,formal=2`` ran as the free text "concise=1000,formal" at weight 2."""
    from localpref.weights import split_weight

    for item, rest in (("concise=1000,formal=2", "1000,formal=2"), ("concise=abc=2", "abc=2")):
        with pytest.raises(SettingsError) as refused:
            split_weight(item)
        assert str(refused.value) == (
            f"The weight of 'concise' must be a number (got '{rest}'); give each preference "
            "its own --preference, e.g. -p concise=2 -p formal=1.")
    assert split_weight("concise = 2") == ("concise", 2.0)
    assert split_weight("talk like a pirate=0.5") == ("talk like a pirate", 0.5)
    assert split_weight("a=b") == ("a=b", None)
    # a weight is ASCII digits: a full-width one is not read as 2 without a word
    with pytest.raises(SettingsError) as refused:
        split_weight("concise=\uff12")
    assert str(refused.value) == "The weight of 'concise' must be a number (got '\uff12')."


def test_a_chat_the_model_cannot_decode_is_refused_when_it_is_made(model: Model) -> None:
    """Seven weighted preferences take nine lanes of the eight: the chat was made, and each
    turn then failed."""
    from localpref.errors import TooManyLanesError

    many = {f"style {i}": 0.5 for i in range(7)}
    with pytest.raises(TooManyLanesError) as refused:
        model.chat(preference=many)
    assert str(refused.value) == ("This needs 9 lanes at once and the model has 8; load it "
                                  "with a larger max_lanes.")
    chat = model.chat(preference={f"style {i}": 0.5 for i in range(6)}, max_tokens=2)
    assert chat.send("Hi", ignore_eos=True).stats["n_lanes"] == 8
    # what only loading a reward model tells waits for the first turn, as it did
    from localpref.methods import PAD

    missing = model.chat(preference="concise", method=PAD(reward_model="/nowhere.gguf"))
    with pytest.raises(ModelError, match="does not exist"):
        missing.send("Hi")
