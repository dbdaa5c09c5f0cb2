"""Preference by example: the examples reach the preference lane's prompt (never the base
lane's), a chat evaluates them once, and bad examples get one sentence."""

from __future__ import annotations

from pathlib import Path

import pytest

from localpref.api import Model
from localpref.errors import SettingsError
from localpref.examples import LIKE_INSTRUCTION, LIKE_REQUEST, check_like_tokens, like_turns

PROMPT = "How do I keep basil alive?"
EXAMPLES = ("- water it\n- give it sun\n- pinch the tops", "- rinse\n- chop\n- serve")


def example_turn(example: str) -> str:
    """One example as an earlier exchange, in the bundled model's ChatML."""
    return (f"<|im_start|>user\n{LIKE_REQUEST}<|im_end|>\n"
            f"<|im_start|>assistant\n{example}<|im_end|>\n")


def test_examples_are_the_preference_lanes_earlier_answers_and_only_its(model: Model) -> None:
    prompts = model.lane_prompts(PROMPT, like=list(EXAMPLES))
    assert prompts["pref"] == (
        f"<|im_start|>system\nYou are a helpful assistant. {LIKE_INSTRUCTION}<|im_end|>\n"
        + example_turn(EXAMPLES[0]) + example_turn(EXAMPLES[1])
        + f"<|im_start|>user\n{PROMPT}<|im_end|>\n<|im_start|>assistant\n")
    assert prompts["base"] == ("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
                               f"<|im_start|>user\n{PROMPT}<|im_end|>\n<|im_start|>assistant\n")
    both = model.lane_prompts(PROMPT, preference="concise", like=list(EXAMPLES))
    assert "short and to the point" in both["pref"] and example_turn(EXAMPLES[1]) in both["pref"]
    assert both["pref"].index("short and") < both["pref"].index(LIKE_INSTRUCTION)


def test_steering_by_example_decodes_the_examples_lane_against_the_base_lane(
        model: Model) -> None:
    result = model.generate(PROMPT, like=list(EXAMPLES), max_tokens=12)
    assert result.stats["method"] == "amulet" and result.stats["n_lanes"] == 2
    assert result.stats["like"] == 2
    # the preference lane reads the instruction and the examples as earlier exchanges: Pref
    # on it answers as Pref does with that instruction and those exchanges written out
    pref = model.generate(PROMPT, like=list(EXAMPLES), method="pref", max_tokens=12)
    written_out = model.generate([*like_turns(EXAMPLES), {"role": "user", "content": PROMPT}],
                                 preference=LIKE_INSTRUCTION, method="pref", max_tokens=12)
    assert pref.tokens == written_out.tokens
    assert pref.tokens != model.generate(PROMPT, preference=LIKE_INSTRUCTION, method="pref",
                                         max_tokens=12).tokens
    assert model.generate(PROMPT, max_tokens=4).stats["method"] == "base"


def test_examples_with_weights_are_one_more_lane(model: Model) -> None:
    prompts = model.lane_prompts(PROMPT, preference={"concise": 1, "uplifting": 0.5},
                                 like=[EXAMPLES[0]])
    assert set(prompts) == {"pref", "base", "pref1", "pref2", "pref3"}
    assert "pinch" in prompts["pref3"] and "pinch" in prompts["pref"]
    assert "pinch" not in prompts["pref1"]
    result = model.generate(PROMPT, preference={"concise": 0.5}, like=[EXAMPLES[0]],
                            max_tokens=4)
    assert result.stats["n_lanes"] == 4 and result.stats["settings"]["weights"] == [0.5, 1.0]
    # one preference at weight 1 is that preference: its examples join its lane, as without
    # a weight (they took a lane of their own, and the answer differed)
    answers = [model.generate(PROMPT, preference=preference, like=[EXAMPLES[0]], max_tokens=12)
               for preference in ("concise", {"concise": 1})]
    assert answers[0].tokens == answers[1].tokens and answers[1].stats["n_lanes"] == 2


def test_a_chat_evaluates_the_examples_once(model: Model) -> None:
    long_example = " ".join(["Short lines. Plain words."] * 40)
    examples_tokens = len(model.vocabulary.tokenize(long_example, add_special=False))
    chat = model.chat(like=[long_example], max_tokens=6)
    try:
        first = chat.send("Hi there.")
        second = chat.send("And basil?")
    finally:
        chat.close()
    assert first.stats["prefill_tokens"] > examples_tokens
    # the second turn evaluates only its new tokens (the examples' cache is kept)
    assert 0 < second.stats["prefill_tokens"] < examples_tokens / 4


@pytest.mark.parametrize(("like", "words"), [
    ([""], "non-empty text"),
    (["fine", "   "], "non-empty text"),
    ([3], "non-empty text"),
    ({"an example": 1}, "a text or a list of texts"),  # never its keys
    ({"an example"}, "a text or a list of texts"),
])
def test_bad_examples_get_one_sentence(model: Model, like, words) -> None:
    with pytest.raises(SettingsError) as error:
        model.generate(PROMPT, like=like, max_tokens=2)
    assert words in str(error.value) and "\n" not in str(error.value)


def test_examples_over_the_bound_get_one_sentence(bundled_path: Path) -> None:
    with Model(bundled_path, max_lanes=2, n_ctx=512, max_like_tokens=20) as small:
        with pytest.raises(SettingsError) as error:
            small.generate(PROMPT, like=["word " * 15, "word " * 15], max_tokens=2)
        small.generate(PROMPT, like=["a few words"], max_tokens=2)
    message = str(error.value)
    assert "limit is 20" in message and "max_like_tokens" in message and "\n" not in message


def test_a_long_example_is_refused_from_its_start() -> None:
    """Over the limit on its first characters alone, an example is not tokenized whole (a 50 MB
    file took 18 s and 3 GB); under it, every text is counted whole."""
    counted: list[int] = []

    def count(text: str) -> int:  # a word a token
        counted.append(len(text))
        return len(text.split())

    with pytest.raises(SettingsError, match="more than 20 tokens together"):
        check_like_tokens(["word " * 100_000], count, limit=20)
    assert counted == [20 * 64]
    counted.clear()
    spaces = "a" + " " * 5_000 + "b"  # long tokens: the start is under the limit, count whole
    assert check_like_tokens([spaces, "one two"], count, limit=20) == 4
    assert counted == [20 * 64, len(spaces), 7]
