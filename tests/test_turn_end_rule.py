"""Without a chat template an answer ends at the next turn (``\\nUser:``, ``turn_marks``):
under the end rule (``end_tokens="pref"``, the recommended steering) the steered answer takes
the preference lane's greedy token wherever it begins or continues a turn, as it takes the
preference lane's end token under a chat template (docs/steering.md, "End tokens"). The
contrast steered past the turn's newline, and a concise answer looped to ``max_tokens`` on a
base model."""

from __future__ import annotations

import mmap
import shutil
from pathlib import Path

import pytest

from localpref.api import Model
from localpref.decoding import takes_turn
from localpref.errors import LocalprefWarning
from localpref.methods import PAD

TEMPLATE_KEY = b"tokenizer.chat_template"
PROMPTS = ["How do I keep basil alive?", "Give me three tips for sleeping better.",
           "What is DNS?", "Write a short poem about rain."]


def newlines_only(model: Model, token: int) -> bool:
    """Whether the token is a line break or a blank line (where a turn can begin)."""
    piece = model.vocabulary.piece(token)
    return bool(piece) and not piece.strip(b"\n")


@pytest.fixture(scope="module")
def plain_model(bundled_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Model:
    """The bundled model with its chat template's key renamed: a model without one."""
    path = tmp_path_factory.mktemp("plain") / "smollm2-no-template.gguf"
    shutil.copyfile(bundled_path, path)
    with path.open("r+b") as file, mmap.mmap(file.fileno(), 0) as header:
        at = header.find(TEMPLATE_KEY)
        assert at > 0 and header.find(TEMPLATE_KEY, at + 1) < 0
        header[at + len(TEMPLATE_KEY) - 1] = ord("X")
    with pytest.warns(LocalprefWarning, match="has no chat template"):
        model = Model(path, n_ctx=1024, max_lanes=4)
    yield model
    model.close()


def test_the_steered_answer_takes_the_preference_lanes_turn_start(plain_model: Model) -> None:
    followed = 0
    for preference in ("concise", "verbose"):
        for prompt in PROMPTS:
            result = plain_model.generate(prompt, preference=preference, max_tokens=40,
                                          trace=True)
            assert result.stats["method"] == "amulet" and result.stats["recommended"]
            for step in result.trace:
                if newlines_only(plain_model, step["top_pref"]):
                    assert step["token"] == step["top_pref"], (preference, prompt, step)
                    followed += 1
    assert followed  # the rule had something to do


def test_pad_and_weighted_preferences_under_the_end_rule_take_it_too(plain_model: Model) -> None:
    methods = {"pad": PAD(end_tokens="pref", tau=0.2), "weighted": None}
    for name, method in methods.items():
        preference = {"concise": 1.0, "uplifting": 0.5} if name == "weighted" else "concise"
        for prompt in PROMPTS:
            result = plain_model.generate(prompt, preference=preference, method=method,
                                          max_tokens=40, trace=True)
            for step in result.trace:
                if newlines_only(plain_model, step["top_pref"]):
                    assert step["token"] == step["top_pref"], (name, prompt, step)


def test_the_papers_settings_steer_the_turns_tokens_like_any_other(plain_model: Model) -> None:
    """Only the end rule follows the preference lane: the papers' Amulet
    (``end_tokens="contrast"``) steers past a newline the preference lane would write."""
    papers = plain_model.generate(PROMPTS[0], preference="concise", method="amulet",
                                  max_tokens=40, trace=True)
    assert any(newlines_only(plain_model, step["top_pref"])
               and step["token"] != step["top_pref"] for step in papers.trace)


MARKS = ("\nUser:", "\nAssistant:", "\nYou are a helpful assistant.")


@pytest.mark.parametrize(("text", "piece", "takes"), [
    ("Tips:", "\n", True), ("Tips.", "\n\n", True),  # newlines where a turn can begin
    ("Tips:\n", "User", True), ("Tips:\nUser", ":", True), ("Tips:\n\n", "User", True),
    ("Tips:\n", "Assistant", True), ("Tips:\n", "You", True), ("Tips:\nYou", " are", True),
    ("Tips", "\nUser", True),
    # a line's first letters begin ordinary lines too ("As a rule", "Use")
    ("Tips:\n", "As", False), ("Tips:\n", "Us", False), ("Tips:\n", "A", False),
    ("Tips", " I", False), ("Tips", ".", False), ("Tips", "", False),
    ("Tips", "\nThe", False),  # a newline fused with a word no turn begins with
])
def test_a_piece_takes_a_turn_from_its_newline_or_the_marks_first_word(text, piece,
                                                                       takes) -> None:
    assert takes_turn(text, piece, MARKS) is takes
