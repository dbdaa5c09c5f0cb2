"""Avoid (issue 12): its sentence goes into the base lane's system prompt, so the two-lane
methods steer away from it; bad input gets one sentence."""

from __future__ import annotations

import pytest

from localpref import PAD, Amulet, Base, Contrastive, Pref
from localpref.api import Model
from localpref.errors import SettingsError
from localpref.presets import PRESETS, avoid_text
from localpref.request import Request

PROMPT = "How do I keep basil alive?"


def test_avoid_sentence_is_in_the_base_lane_only(model: Model) -> None:
    texts = model.lane_prompts(PROMPT, preference="concise", avoid="verbose")
    assert PRESETS["verbose"] in texts["base"] and PRESETS["verbose"] not in texts["pref"]
    assert PRESETS["concise"] in texts["pref"] and PRESETS["concise"] not in texts["base"]
    free = model.lane_prompts(PROMPT, avoid="Never mention watering.")
    assert "Never mention watering." in free["base"]
    assert free["pref"] == model.lane_prompts(PROMPT)["pref"]  # the neutral prompt


def test_avoid_fills_the_papers_preference_slot_of_the_base_lane(model: Model) -> None:
    system = "You are a helpful assistant. {preference}"
    texts = model.lane_prompts(PROMPT, preference="concise", avoid="verbose",
                               system_prompt=system)
    assert f"You are a helpful assistant. {PRESETS['verbose']}" in texts["base"]
    assert "{preference}" not in texts["base"] + texts["pref"]


def test_avoid_text_expands_presets_and_joins_several() -> None:
    assert avoid_text(None) is None
    assert avoid_text(["verbose", "Be formal."]) == f"{PRESETS['verbose']} Be formal."


def test_avoid_changes_a_greedy_amulet_answer(model: Model) -> None:
    plain = model.generate(PROMPT, preference="concise", method=Amulet(contrast=1.0),
                           max_tokens=32)
    away = model.generate(PROMPT, preference="concise", avoid="verbose",
                          method=Amulet(contrast=1.0), max_tokens=32)
    assert away.tokens != plain.tokens
    assert away.stats["avoid"] == "verbose" and plain.stats["avoid"] is None


def test_avoid_alone_steers_away_from_the_neutral_preference_lane(model: Model) -> None:
    base = model.generate(PROMPT, method="base", max_tokens=32)
    away = model.generate(PROMPT, avoid="verbose", method=Amulet(contrast=1.0), max_tokens=32,
                          trace=True)
    assert away.stats["method"] == "amulet"  # not plain decoding
    assert away.stats["preference"] is None and away.stats["avoid"] == "verbose"
    assert away.tokens != base.tokens
    assert away.stats["changed_tokens"] == sum(entry["changed"] for entry in away.trace) > 0
    # The preference lane has the neutral prompt: its greedy path is Base's.
    assert away.trace[0]["top_pref"] == base.tokens[0]


def test_avoid_in_a_comparison_leaves_base_and_pref_as_references(model: Model) -> None:
    methods = [Base(), Pref(), Amulet(contrast=1.0)]
    results = model.compare(PROMPT, methods, preference="concise", avoid="verbose",
                            max_tokens=16).run()
    assert results[0].tokens == model.generate(PROMPT, method=Base(), max_tokens=16).tokens
    assert results[1].tokens == model.generate(PROMPT, preference="concise", method=Pref(),
                                               max_tokens=16).tokens
    assert results[2].tokens == model.generate(PROMPT, preference="concise", avoid="verbose",
                                               method=Amulet(contrast=1.0),
                                               max_tokens=16).tokens


def test_chat_keeps_its_avoid_between_turns(model: Model) -> None:
    chat = model.chat(preference="concise", avoid="verbose", method=Contrastive(ratio=1.0),
                      max_tokens=12)
    first = chat.send("Name a herb.")
    fresh = model.generate("Name a herb.", preference="concise", avoid="verbose",
                           method=Contrastive(ratio=1.0), max_tokens=12)
    assert first.tokens == fresh.tokens and first.stats["avoid"] == "verbose"
    chat.close()


@pytest.mark.parametrize("avoid", ["", "   ", [], ["concise", " "]])
def test_empty_avoid_is_refused(model: Model, avoid) -> None:  # noqa: ANN001
    with pytest.raises(SettingsError, match="avoid"):
        model.generate(PROMPT, preference="concise", avoid=avoid, max_tokens=2)


@pytest.mark.parametrize("method", [Base(), Pref(), "base", "pref",
                                    PAD(reward_model="missing-reward-model.gguf")])
def test_avoid_with_a_method_that_has_no_base_lane_is_refused(model: Model, method) -> None:  # noqa: ANN001
    with pytest.raises(SettingsError, match="[Aa]void") as error:
        model.generate(PROMPT, preference="concise", avoid="verbose", method=method,
                       max_tokens=2)
    assert str(error.value).count(".") <= 2  # one sentence
    with pytest.raises(SettingsError):
        model.chat(preference="concise", avoid="verbose", method=method)


def test_a_comparison_refuses_pad_with_a_reward_model_and_avoid(model: Model) -> None:
    with pytest.raises(SettingsError, match="reward model"):
        model.compare(PROMPT, [Amulet(), PAD(reward_model="missing.gguf")],
                      preference="concise", avoid="verbose", max_tokens=2)
    with pytest.raises(SettingsError, match="two-lane"):
        model.compare(PROMPT, [Base(), Pref()], preference="concise", avoid="verbose",
                      max_tokens=2)


@pytest.mark.parametrize(("preference", "avoid", "named"), [
    ("concise", "concise", "concise"),
    ("Concise ", "Your answer should be as short and to the point as possible.", "Concise"),
    (["formal", "concise"], ["verbose", "CONCISE"], "concise"),
    ({"concise": 2.0, "formal": 1.0}, "concise", "concise"),
])
def test_a_preference_that_is_also_avoided_is_refused(model: Model, preference, avoid,
                                                      named) -> None:
    """Both lanes read the same text: the answer was Pref's word for word while its stats
    said Amulet steered it (0 tokens changed)."""
    with pytest.raises(SettingsError) as refused:
        model.generate("Hi", preference=preference, avoid=avoid, max_tokens=2)
    assert str(refused.value) == (
        f"{named!r} is both a preference and what to avoid; steering toward and away from the "
        "same thing changes nothing, so give it as one of them.")
    assert refused.value.param == "avoid"
    # at weight 0 a preference is not steered toward: avoiding it is no contradiction
    model.generate("Hi", preference={"concise": 0.0, "formal": 1.0}, avoid="concise",
                   max_tokens=2)
    Request.make("Hi", preference={"concise": 0.0}, avoid="verbose")  # every weight 0
