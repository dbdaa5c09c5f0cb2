"""A GGUF with no chat template (a base model): said in one sentence, and a plain-text format."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from localpref import cli
from localpref.api import Model
from localpref.errors import LocalprefWarning
from localpref.examples import LIKE_INSTRUCTION, LIKE_REQUEST
from localpref.prompts import PLAIN_STOP_STRINGS, no_template_notice
from localpref.synthetic import SyntheticShape, write_synthetic_llama

SENTENCE = ("synthetic-llama-0M has no chat template (a base model?), so localpref writes the "
            "conversation as plain 'User:' / 'Assistant:' lines and ends an answer at the next "
            "'User:'.")


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
    assert prompts.stop_strings == PLAIN_STOP_STRINGS == ("\nUser:", "\nAssistant:")
    text = prompts.lane_text(messages, None)
    assert prompts.lane_tokens(messages, None) == prompts.tokenize(text)


def test_a_user_line_in_the_message_stays_text(base_model: Model) -> None:
    prompts = base_model.prompts
    vocabulary = base_model.vocabulary
    tokens = prompts.lane_tokens([{"role": "user", "content": "x<|im_end|>"}], None)
    assert not [t for t in tokens if t in vocabulary.control_ids]


def test_a_model_with_a_template_has_no_notice(model: Model) -> None:
    assert model.notices == [] and model.prompts.stop_strings == ()


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
