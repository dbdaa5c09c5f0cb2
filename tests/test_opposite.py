"""The opposite (issue 20): each built-in preference's opposite goes into the base lane when no
avoid is given, so steering contrasts the preference with its opposite; free text adds none."""

from __future__ import annotations

import json

import openai
import pytest
from server_helpers import MODEL_ID, running_server, sdk_client

from localpref import Amulet
from localpref.api import Model
from localpref.cli import main
from localpref.errors import SettingsError
from localpref.presets import OPPOSITES, PRESETS, base_lane_text, opposite_text
from localpref.request import Request

PROMPT = "How do I keep basil alive?"
METHOD = Amulet(contrast=1.0)


def test_every_built_in_preference_has_its_opposite() -> None:
    assert set(OPPOSITES) == set(PRESETS)
    assert OPPOSITES["concise"] == PRESETS["verbose"]
    assert OPPOSITES["verbose"] == PRESETS["concise"]
    assert "conventional and predictable" in OPPOSITES["creative"]
    assert "bleak" in OPPOSITES["uplifting"]
    assert "casual" in OPPOSITES["formal"]
    assert "curt" in OPPOSITES["pleasant"]
    assert "dry and serious" in OPPOSITES["humorous"]
    assert OPPOSITES["harmless"] is None
    for sentence in filter(None, OPPOSITES.values()):
        assert sentence.startswith("Your answer should") and sentence.endswith(".")


@pytest.mark.parametrize("name", list(PRESETS))
def test_the_opposite_lane_reads_the_presets_opposite(model: Model, name: str) -> None:
    neutral = model.lane_prompts(PROMPT, preference=name)
    texts = model.lane_prompts(PROMPT, preference=name, opposite=True)
    assert texts["pref"] == neutral["pref"] and PRESETS[name] in texts["pref"]
    if OPPOSITES[name] is None:  # harmless: no opposite, the neutral base lane
        assert texts["base"] == neutral["base"] == model.lane_prompts(PROMPT)["base"]
    else:
        assert OPPOSITES[name] in texts["base"] and PRESETS[name] not in texts["base"]
        assert f"You are a helpful assistant. {OPPOSITES[name]}" in texts["base"]


def test_several_preferences_join_their_opposites_like_avoid() -> None:
    both = opposite_text(["concise", "uplifting", "talk like a pirate", "harmless"])
    assert both == f"{OPPOSITES['concise']} {OPPOSITES['uplifting']}"
    assert opposite_text({"concise": 1.0, "uplifting": 0.0}) == OPPOSITES["concise"]
    assert opposite_text("Talk like a pirate.") is None and opposite_text(None) is None
    assert opposite_text(" Concise ") == OPPOSITES["concise"]


def test_avoid_wins_over_the_opposite(model: Model) -> None:
    texts = model.lane_prompts(PROMPT, preference="concise", avoid="Be formal.", opposite=True)
    assert "Be formal." in texts["base"] and OPPOSITES["concise"] not in texts["base"]
    assert base_lane_text("concise", "Be formal.", True) == "Be formal."
    assert base_lane_text("concise", None, False) is None


def test_free_text_keeps_the_neutral_base_lane(model: Model) -> None:
    texts = model.lane_prompts(PROMPT, preference="talk like a pirate", opposite=True)
    assert texts["base"] == model.lane_prompts(PROMPT)["base"]
    plain = model.generate(PROMPT, preference="talk like a pirate", method=METHOD, max_tokens=12)
    same = model.generate(PROMPT, preference="talk like a pirate", method=METHOD, max_tokens=12,
                          opposite=True)
    assert same.tokens == plain.tokens and same.stats["opposite"] is False


def test_opposite_steers_exactly_as_avoiding_the_opposite(model: Model) -> None:
    plain = model.generate(PROMPT, preference="concise", method=METHOD, max_tokens=16)
    opposite = model.generate(PROMPT, preference="concise", method=METHOD, max_tokens=16,
                              opposite=True)
    avoided = model.generate(PROMPT, preference="concise", avoid="verbose", method=METHOD,
                             max_tokens=16)
    assert opposite.tokens == avoided.tokens != plain.tokens
    assert opposite.stats["opposite"] is True and opposite.stats["avoid"] is None
    assert plain.stats["opposite"] is False and avoided.stats["opposite"] is False
    off = model.generate(PROMPT, preference="concise", method=METHOD, max_tokens=16,
                         opposite=False)
    assert off.tokens == plain.tokens  # the default is off


def test_weighted_preferences_read_the_avoid_and_the_opposites(model: Model) -> None:
    """n weighted preferences decode n + 2 lanes, and the base lane among them still reads an
    avoid, or the opposites of the built-in ones weighed above 0."""
    weights = {"concise": 1.0, "uplifting": 0.4, "talk like a pirate": 1.0}

    def run(**extra: object):
        return model.generate(PROMPT, preference=weights, method=METHOD, max_tokens=12,
                              trace=True, **extra)

    plain, opposite = run(), run(opposite=True)
    avoided = run(avoid=opposite_text(weights))
    formal = run(avoid="Be formal.")
    assert opposite.stats["n_lanes"] == 5 and opposite.stats["opposite"] is True
    assert plain.stats["opposite"] is False and formal.stats["opposite"] is False
    assert opposite.tokens == avoided.tokens
    assert opposite.stats["mean_shift"] == avoided.stats["mean_shift"]
    shifts = {plain.stats["mean_shift"], opposite.stats["mean_shift"], formal.stats["mean_shift"]}
    assert len(shifts) == 3  # each base lane read what it was given
    texts = model.lane_prompts(PROMPT, preference=weights, opposite=True)
    assert OPPOSITES["concise"] in texts["base"] and OPPOSITES["uplifting"] in texts["base"]


def test_opposite_in_a_comparison_leaves_base_and_pref_plain(model: Model) -> None:
    results = model.compare(PROMPT, ["pref", METHOD], preference="concise", opposite=True,
                            max_tokens=12).run()
    assert results[0].tokens == model.generate(PROMPT, preference="concise", method="pref",
                                               max_tokens=12).tokens
    assert results[1].tokens == model.generate(PROMPT, preference="concise", method=METHOD,
                                               avoid="verbose", max_tokens=12).tokens


@pytest.mark.parametrize("method", ["pref", "base"])
def test_opposite_asked_of_a_one_lane_method_is_refused(model: Model, method: str,
                                                        capsys: pytest.CaptureFixture[str]
                                                        ) -> None:
    """--opposite --method pref (and opposite=True in the API and the server) was ignored
    without a word: a flag given is a flag that does something, as avoid is refused there."""
    sentence = (f"Opposite needs a two-lane method (contrastive, amulet or pad) to contrast "
                f"with the opposite; {method} reads one lane.")
    with pytest.raises(SettingsError) as refused:
        model.generate(PROMPT, preference="concise", method=method, opposite=True,
                       max_tokens=2)
    assert (str(refused.value), refused.value.param) == (sentence, "opposite")
    assert main(["generate", PROMPT, "-p", "concise", "--method", method, "--opposite",
                 "--max-tokens", "2"]) == 2
    assert capsys.readouterr().err.splitlines()[-1] == f"localpref: {sentence}"
    # no preference: plain decoding, said as such (the check blamed "base reads one lane")
    assert main(["generate", PROMPT, "--method", "amulet", "--opposite", "--max-tokens",
                 "2"]) == 0
    assert "nothing to steer toward" in capsys.readouterr().err
    with running_server(model) as server:
        client = sdk_client(server.url)
        with pytest.raises(openai.BadRequestError) as answered:
            client.chat.completions.create(
                model=f"{MODEL_ID}:{method}:concise", max_tokens=2,
                messages=[{"role": "user", "content": PROMPT}],
                extra_body={"localpref": {"opposite": True}})
    if method == "base":  # ID:base:concise is refused first: base reads no preference
        assert answered.value.body["param"] == "model"
        assert answered.value.body["message"].startswith(
            "The method base writes without a preference, so the request's preference")
    else:
        assert answered.value.body["param"] == "localpref.opposite"
        assert answered.value.body["message"] == sentence


def test_opposite_must_be_a_bool() -> None:
    with pytest.raises(SettingsError, match="opposite must be true or false"):
        Request.make(PROMPT, opposite="yes")  # type: ignore[arg-type]


def test_cli_opposite_flag(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["generate", PROMPT, "-p", "concise", "--method", "amulet", "--contrast", "1",
            "--max-tokens", "8", "--json"]
    assert main([*argv, "--opposite"]) == 0
    on = json.loads(capsys.readouterr().out)
    assert main([*argv, "--no-opposite"]) == 0
    off = json.loads(capsys.readouterr().out)
    assert main([*argv, "--avoid", "verbose"]) == 0
    avoided = json.loads(capsys.readouterr().out)
    assert on["stats"]["opposite"] is True and off["stats"]["opposite"] is False
    assert on["text"] == avoided["text"]


def test_server_opposite_field(model: Model) -> None:
    expected = model.generate(PROMPT, preference="concise", method=METHOD, opposite=True,
                              max_tokens=10)
    with running_server(model) as server:
        client = sdk_client(server.url)
        answer = client.chat.completions.create(
            model=f"{MODEL_ID}:amulet:concise", messages=[{"role": "user", "content": PROMPT}],
            max_tokens=10, extra_body={"localpref": {"opposite": True, "strength": 1.0}})
        with pytest.raises(openai.BadRequestError) as refused:  # not read as true
            client.chat.completions.create(
                model=f"{MODEL_ID}:amulet:concise", max_tokens=2,
                messages=[{"role": "user", "content": PROMPT}],
                extra_body={"localpref": {"opposite": "yes"}})
    assert answer.choices[0].message.content == expected.text
    assert answer.model_extra["localpref"]["stats"]["opposite"] is True
    assert refused.value.status_code == 400
    assert refused.value.body["param"] == "localpref.opposite"
