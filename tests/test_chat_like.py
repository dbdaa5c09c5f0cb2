"""`localpref chat --like FILE`: the files become the app's examples, quoted in the preference
lane's prompt; the real app, in a pseudo-terminal, evaluates them once per chat; a bad file, or
examples over ``max_like_tokens``, is one sentence and exit code 2."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from terminal_helpers import (
    CTRL_Q,
    ENTER,
    ESCAPES,
    answered,
    chat_terminal,
    history,
    printed,
)
from tui_helpers import seed

from localpref.api import Model
from localpref.cli import build_parser, main
from localpref.commands.chat import app_from_args
from localpref.commands.options import MAX_LIKE_FILE_BYTES, like_from_args
from localpref.examples import DEFAULT_MAX_LIKE_TOKENS, LIKE_INSTRUCTION, LIKE_REQUEST
from localpref.store import Store

PROMPT = "How do I keep basil alive?"
#: About 240 tokens: long enough that evaluating it again would show in the prefill counter.
LONG_EXAMPLE = " ".join(["Short lines. Plain words."] * 40)
LIST_EXAMPLE = "- rinse\n- chop\n- serve"


def example_files(folder: Path, *texts: str) -> list[str]:
    """One file per example; their paths."""
    paths = []
    for number, text in enumerate(texts, start=1):
        path = folder / f"example{number}.txt"
        path.write_text(text + "\n", encoding="utf-8")
        paths.append(str(path))
    return paths


def like_arguments(paths: list[str]) -> list[str]:
    return [argument for path in paths for argument in ("--like", path)]


def test_like_files_are_the_preference_lanes_earlier_answers(model: Model,
                                                              tmp_path: Path) -> None:
    paths = example_files(tmp_path, LONG_EXAMPLE, LIST_EXAMPLE)
    args = build_parser().parse_args(["chat", "--preference", "concise", *like_arguments(paths)])
    app = app_from_args(args, model=model, store_path=tmp_path / "history.sqlite3")
    try:
        overrides = app.steering.overrides()
    finally:
        app.store.close()
    assert overrides["like"] == (LONG_EXAMPLE, LIST_EXAMPLE)
    assert overrides["preference"] == ["concise"]
    prompts = model.lane_prompts(PROMPT, preference=overrides["preference"],
                                 like=overrides["like"])
    assert LIKE_INSTRUCTION in prompts["pref"]
    for example in (LONG_EXAMPLE, LIST_EXAMPLE):
        assert (f"<|im_start|>user\n{LIKE_REQUEST}<|im_end|>\n"
                f"<|im_start|>assistant\n{example}<|im_end|>") in prompts["pref"]
    assert "Plain words" not in prompts["base"] and "chop" not in prompts["base"]


def stored_stats(path: Path) -> list[dict]:
    """The stats of every saved answer, oldest first."""
    with Store(path) as store:
        return [message.stats or {} for conversation in store.list_conversations()
                for message in store.messages(conversation.id) if message.role == "assistant"]


def test_chat_with_like_in_a_terminal_evaluates_the_examples_once(model: Model,
                                                                  tmp_path: Path) -> None:
    path = tmp_path / "history.sqlite3"
    seed(tmp_path, presets=[], method="amulet", sampling={"max_tokens": 6})
    example_tokens = len(model.vocabulary.tokenize(LONG_EXAMPLE, add_special=False))
    with chat_terminal(tmp_path, *like_arguments(example_files(tmp_path, LONG_EXAMPLE))) as term:
        term.wait(lambda: "Message (Enter sends" in term.text, "the app to start")
        term.type("Hi there." + ENTER)
        term.wait(lambda: len(history(path)) == 1 and answered(history(path)[0], 1),
                  "the first answer")
        term.type("And basil?" + ENTER)
        term.wait(lambda: answered(history(path)[0], 2), "the second answer")
        term.type(CTRL_Q)
        assert term.finish() == 0
    first, second = stored_stats(path)
    assert first["like"] == 1 and second["like"] == 1
    assert first["method"] == "amulet" and first["n_lanes"] == 2
    assert first["prefill_tokens"] > example_tokens
    # the second turn evaluates only its new tokens: the examples' cache is kept
    assert 0 < second["prefill_tokens"] < example_tokens / 4


def test_examples_over_the_bound_exit_with_code_2_and_one_sentence(tmp_path: Path) -> None:
    paths = example_files(tmp_path, "word " * 700, "word " * 700)
    with chat_terminal(tmp_path, *like_arguments(paths), columns=80) as term:
        assert term.finish() == 2
    output = printed(term.tail)
    assert "localpref: The examples are" in output
    assert f"the limit is {DEFAULT_MAX_LIKE_TOKENS} (max_like_tokens)" in output
    assert "Traceback" not in output
    # one line, the terminal's to fold: Textual's exit message broke it at the screen's width
    line = next(line for line in ESCAPES.sub("", term.tail.decode()).splitlines()
                if "localpref: The examples are" in line)
    assert line.rstrip().endswith("examples.") and len(line.rstrip()) > 80


@pytest.mark.parametrize(("text", "words"), [
    (None, "Cannot read the example file"),
    ("  \n\n", "is empty"),
    (b"\xff\xfe not text", "is not UTF-8 text"),
])
def test_a_bad_like_file_is_one_sentence_before_the_app(
        capsys: pytest.CaptureFixture[str], tmp_path: Path, text, words) -> None:
    path = tmp_path / "example.txt"
    if isinstance(text, str):
        path.write_text(text, encoding="utf-8")
    elif isinstance(text, bytes):
        path.write_bytes(text)
    assert main(["chat", "--like", str(path)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("localpref: ") and words in captured.err
    assert str(path) in captured.err and captured.err.count("\n") == 1


def test_a_like_file_loses_its_byte_order_mark_and_a_huge_one_is_not_read_whole(
        capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    marked = tmp_path / "marked.txt"
    marked.write_bytes("\ufeffWater it. Sun.\n".encode())
    args = build_parser().parse_args(["chat", "--like", str(marked)])
    assert like_from_args(args) == ["Water it. Sun.\n"]  # no U+FEFF to start an answer with
    huge = tmp_path / "huge.txt"
    with huge.open("wb") as file:  # sparse: 9 MiB, read no further than the limit
        file.truncate(MAX_LIKE_FILE_BYTES + 1)
    # a device has no size: /dev/zero was read until memory ran out
    for endless in (huge, Path("/dev/zero")):
        assert main(["chat", "--like", str(endless)]) == 2
        err = capsys.readouterr().err
        assert err == (f"localpref: The example file {endless} is over 8 MiB; an example is a "
                       "text of at most a few thousand tokens.\n")


def test_the_app_without_a_terminal_is_one_sentence(capsys: pytest.CaptureFixture[str],
                                                     tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """From a script or a pipe the app started anyway and wrote its screens into the pipe
    until killed."""
    monkeypatch.setenv("LOCALPREF_HOME", str(tmp_path))
    monkeypatch.setattr("sys.stdin", io.StringIO(""))  # a script's input
    assert main(["chat", "--threads", "1"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == ("localpref: The chat app needs a terminal (its input, output and "
                            "standard error); for an answer in a script use localpref "
                            "generate, or chat --list / --export for the saved "
                            "conversations.\n")
