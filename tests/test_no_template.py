"""A GGUF with no chat template (a base model): said in one sentence, and a plain-text format."""

from __future__ import annotations

import codecs
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from localpref import cli
from localpref.api import Model
from localpref.decoding import Generation, held_back, trim_plain_turn
from localpref.errors import LocalprefWarning
from localpref.examples import LIKE_INSTRUCTION, LIKE_REQUEST
from localpref.prompts import PLAIN_STOP_STRINGS, no_template_notice
from localpref.request import Request
from localpref.synthetic import SyntheticShape, write_synthetic_llama

SENTENCE = ("synthetic-llama-0M has no chat template (a base model?), so localpref writes the "
            "conversation as plain 'User:' / 'Assistant:' lines and ends an answer at the next "
            "line that starts with 'User:' or 'Assistant:'.")


@pytest.fixture(scope="module")
def base_gguf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_synthetic_llama(tmp_path_factory.mktemp("base") / "base.gguf",
                                 SyntheticShape(vocab_size=512), chat_template=None)


@pytest.fixture(scope="module")
def base_model(base_gguf: Path) -> Model:
    with pytest.warns(LocalprefWarning) as caught:
        loaded = Model(base_gguf, n_ctx=512, max_lanes=2)
    assert [str(w.message) for w in caught] == [SENTENCE]
    yield loaded
    loaded.close()


def test_the_warning_names_the_callers_line_through_load_too(base_gguf: Path) -> None:
    import localpref

    for make in (localpref.load, Model):
        with pytest.warns(LocalprefWarning) as caught:
            make(base_gguf, n_ctx=256, max_lanes=2).close()
        assert [Path(w.filename) for w in caught] == [Path(__file__)], make


def test_the_notice_is_one_sentence_naming_the_model(base_model: Model) -> None:
    assert base_model.notices == [SENTENCE] == [no_template_notice("synthetic-llama-0M")]


def test_the_conversation_is_written_as_plain_lines(base_model: Model) -> None:
    messages = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello."},
                {"role": "user", "content": "Name a colour."}]
    assert base_model.lane_prompts(messages, preference="Be brief.") == {
        "pref": "You are a helpful assistant. Be brief.\n\nUser: Hi\nAssistant: Hello.\n"
                "User: Name a colour.\nAssistant:",
        "base": "You are a helpful assistant.\n\nUser: Hi\nAssistant: Hello.\n"
                "User: Name a colour.\nAssistant:",
    }
    prompts = base_model.prompts
    assert prompts.turn_marks(messages) == (*PLAIN_STOP_STRINGS, "\nYou are a helpful assistant.")
    assert PLAIN_STOP_STRINGS == ("\nUser:", "\nAssistant:")
    # the conversation's own system text, its first line; a short one is no mark
    own = [{"role": "system", "content": "Answer as a pirate would.\nKeep it short."}, *messages]
    assert prompts.turn_marks(own)[-1] == "\nAnswer as a pirate would."
    assert prompts.turn_marks(messages, system_prompt="Be brief.") == PLAIN_STOP_STRINGS
    long_line = "You are a careful assistant who answers in the user's own language. " * 9
    assert prompts.turn_marks(messages, system_prompt=long_line)[-1] == (
        "\nYou are a careful assistant who answers in the u")
    text = prompts.lane_text(messages, None)
    assert prompts.lane_tokens(messages, None) == prompts.tokenize(text)


def test_a_user_line_in_the_message_stays_text(base_model: Model) -> None:
    prompts = base_model.prompts
    vocabulary = base_model.vocabulary
    tokens = prompts.lane_tokens([{"role": "user", "content": "x<|im_end|>"}], None)
    assert not [t for t in tokens if t in vocabulary.control_ids]


def test_a_model_with_a_template_has_no_notice(model: Model) -> None:
    assert model.notices == [] and model.prompts.turn_marks([{"role": "user", "content": "Hi"}]) \
        == ()


def test_the_cli_warns_once_on_stderr_and_doctor_says_so(
        base_gguf: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = cli.main(["generate", "Hi", "--model", str(base_gguf), "--method", "base",
                     "--max-tokens", "2", "--ctx", "256", "--json"])
    captured = capsys.readouterr()
    assert code == 0 and json.loads(captured.out)["stats"]["n_tokens"] == 2
    assert captured.err.splitlines()[0] == f"localpref: warning: {SENTENCE}"
    assert captured.err.count("no chat template") == 1
    assert cli.main(["doctor", "--model", str(base_gguf), "--json"]) in (0, 1)
    report = json.loads(capsys.readouterr().out)
    assert report["warnings"] == [SENTENCE]
    cli.main(["doctor", "--model", str(base_gguf)])
    assert f"warning: {SENTENCE}" in capsys.readouterr().out.splitlines()


def test_a_batch_run_warns_in_one_line(base_gguf: Path, tmp_path: Path) -> None:
    """The library warns on load; the command line shows it as one line, not with Python's
    file, line number and source line."""
    source = tmp_path / "in.jsonl"
    source.write_text(json.dumps({"custom_id": "a", "method": "POST",
                                  "url": "/v1/chat/completions",
                                  "body": {"model": "base", "max_tokens": 2,
                                           "messages": [{"role": "user", "content": "Hi"}]}})
                      + "\n")
    done = subprocess.run(
        [sys.executable, "-m", "localpref.cli", "batch", str(source), "--out",
         str(tmp_path / "out.jsonl"), "--model", str(base_gguf), "--threads", "1", "--quiet",
         "--ctx", "256"], capture_output=True, text=True, timeout=300,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert done.returncode == 0, done.stderr
    assert done.stderr.splitlines()[0] == f"localpref: warning: {SENTENCE}"
    assert done.stderr.count("no chat template") == 1 and "Model(" not in done.stderr


async def test_the_app_shows_the_sentence_as_a_notice(base_model: Model, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    from tui_helpers import SIZE, until

    from tui.app import LocalprefApp

    monkeypatch.setenv("LOCALPREF_HOME", str(tmp_path))
    app = LocalprefApp(model=base_model)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: SENTENCE in app.notices)
    assert app.notices.count(SENTENCE) == 1


def test_examples_are_earlier_plain_exchanges_on_the_preference_lane(base_model: Model) -> None:
    prompts = base_model.lane_prompts("Name a colour.", like=["red, said briefly"])
    assert prompts == {
        "pref": f"You are a helpful assistant. {LIKE_INSTRUCTION}\n\n"
                f"User: {LIKE_REQUEST}\nAssistant: red, said briefly\n"
                "User: Name a colour.\nAssistant:",
        "base": "You are a helpful assistant.\n\nUser: Name a colour.\nAssistant:",
    }


def test_a_plain_turn_is_trimmed_as_a_template_would_end_it() -> None:
    """What a cut at max_tokens or the stop leaves after the emitted text: the start of a
    next turn and trailing whitespace go; what was emitted stays."""
    marks = PLAIN_STOP_STRINGS
    assert trim_plain_turn("Hello\nUser", 5, marks) == "Hello"
    assert trim_plain_turn("Hello\nAssist", 5, marks) == "Hello"
    assert trim_plain_turn("Hello.  \n", 6, marks) == "Hello."
    assert trim_plain_turn("Hello\nUsed", 5, marks) == "Hello\nUsed"  # not a turn's start
    assert trim_plain_turn("Hello\nUser \n", 5, marks) == "Hello"
    assert trim_plain_turn("Hello \n", 7, marks) == "Hello \n"  # emitted: a stream said it


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet="ab \nUserAsistn:", max_size=24), st.data())
def test_the_trimmed_turn_keeps_what_was_emitted(text: str, data: st.DataObject) -> None:
    emitted = data.draw(st.integers(0, len(text)))
    trimmed = trim_plain_turn(text, emitted, PLAIN_STOP_STRINGS)
    assert text.startswith(trimmed) and trimmed.startswith(text[:emitted])
    tail = trimmed[emitted:]
    assert not tail or (tail == tail.rstrip() and held_back(trimmed, PLAIN_STOP_STRINGS) == 0)


def test_answers_start_and_end_as_a_turn_would(base_model: Model) -> None:
    """Sampled answers of a model without a template: no leading whitespace (the format's
    "Assistant:" is followed by " Hello"), nothing of a next turn at the end, and the
    stream says exactly the answer."""
    for seed in range(12):
        settings_ = {"max_tokens": 4 + seed % 5, "temperature": 1.0, "seed": seed}
        answer = base_model.generate("Hi", **settings_)
        assert answer.text == answer.text.strip()  # nor trailing: it waits, then goes
        assert held_back(answer.text, PLAIN_STOP_STRINGS) == 0 or not answer.text
        streamed = "".join(piece for piece in base_model.stream("Hi", **settings_))
        assert streamed == answer.text


def test_stops_are_found_in_what_the_model_wrote_with_the_formats_space(
        base_model: Model) -> None:
    """The space after "Assistant:" is left out of the answer, not out of the search for
    stops: a stop the model writes as its very first token (" w68", or a "\nUser:" turn it
    begins at once) ends the answer there, empty, streamed or not."""
    tried = 0
    for seed in range(12):
        settings_ = {"max_tokens": 6, "temperature": 1.0, "seed": seed}
        free = base_model.generate("Hi", **settings_)
        first = base_model.vocabulary.piece(free.tokens[0]).decode("utf-8", "replace") \
            if free.tokens else ""
        if not first.startswith(" ") or not first.strip():
            continue
        tried += 1
        assert free.text.startswith(first.lstrip())  # the format's space left out
        stopped = base_model.generate("Hi", stop=[first], **settings_)
        assert (stopped.text, stopped.stats["stop_reason"]) == ("", "stop")
        assert "".join(base_model.stream("Hi", stop=[first], **settings_)) == ""
    assert tried >= 3


def test_ignore_eos_writes_on_as_the_model_wrote(base_model: Model) -> None:
    """ignore_eos writes to max_tokens: past a turn the model begins and with its own
    spacing (no turn to end, so nothing is trimmed), but for the format's space after
    "Assistant:", left out as it is from every answer (it was kept here alone)."""
    spaced = 0  # answers whose first token began with the format's space
    for seed in range(6):
        settings_ = {"max_tokens": 10, "temperature": 1.0, "seed": seed, "ignore_eos": True}
        answer = base_model.generate("Hi", **settings_)
        assert answer.stats["n_tokens"] == 10
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        raw = decoder.decode(b"".join(base_model.vocabulary.piece(t) for t in answer.tokens))
        decoder.errors = "ignore"  # a character the last token began is dropped
        assert answer.text == (raw + decoder.decode(b"", final=True)).lstrip()
        spaced += raw[:1].isspace()
        assert "".join(base_model.stream("Hi", **settings_)) == answer.text
    assert spaced >= 2


def test_an_answer_ends_where_the_model_writes_the_system_line_again(base_model: Model) -> None:
    """A base model begins the next exchange with the system text (Gemma 3 270M wrote "List
    three fruits.\n\nYou are a helpful assistant."): that line ends the answer as "User:"
    does. A grammar makes the model write it; steered and streamed alike."""
    written = 'root ::= "Red and green.\\n\\nYou are a helpful assistant. Your answer"'
    for settings_ in ({}, {"preference": "concise", "method": "amulet"}):
        request = Request.make("Name two colours.", max_tokens=150, **settings_).replace(
            grammar=written)
        answer = Generation(base_model.submit(request)).run()
        assert (answer.text, answer.stats["stop_reason"]) == ("Red and green.", "stop")
    # another system text: the default's line is then ordinary text, written out whole
    request = Request.make("Name two colours.", max_tokens=150,
                           system_prompt="Answer every question briefly.").replace(
        grammar=written)
    whole = Generation(base_model.submit(request)).run()
    assert whole.text.startswith("Red and green.\n\nYou are a helpful assistant. Your answer")


def test_whitespace_before_a_stop_is_trimmed_though_it_came_first(base_model: Model) -> None:
    """A model writes ".", "\n\n", "User", ":": the stop was found one token after the
    whitespace, which had been emitted already, so the answer kept a newline. Trailing
    whitespace now waits for what follows it."""
    vocabulary = base_model.vocabulary
    tried = 0
    for seed in range(60):
        settings_ = {"max_tokens": 16, "temperature": 1.0, "seed": seed}
        free = base_model.generate("Hi", **settings_)
        pieces = [vocabulary.piece(t).decode("utf-8", "replace") for t in free.tokens]
        for index in range(1, len(pieces) - 2):
            space, after = pieces[index], pieces[index + 1]
            if space.isspace() and after.strip():
                # the stop one token after the whitespace, or two ("User", ":")
                for stop in (after, after + pieces[index + 2]):
                    if stop not in free.text:  # a piece of a character split over tokens
                        continue
                    stopped = base_model.generate("Hi", stop=[stop], **settings_)
                    assert stopped.stats["stop_reason"] == "stop"
                    assert stopped.text == stopped.text.rstrip(), (seed, stopped.text)
                    streamed = "".join(base_model.stream("Hi", stop=[stop], **settings_))
                    assert streamed == stopped.text
                tried += 1
                break
    assert tried >= 3
