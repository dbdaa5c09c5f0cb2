"""The same loading flags on every command that loads a model: --threads, --ctx, --gpu-layers."""

from __future__ import annotations

import argparse
import json

import pytest

from localpref.cli import build_parser, main
from localpref.commands.options import load_settings

LOAD_FLAGS = {"--model", "--gpu-layers", "--threads", "--ctx"}


Parsers = dict[str, argparse.ArgumentParser]


def _commands(parser: argparse.ArgumentParser, path: str = "") -> Parsers:
    """Every (sub-)command parser, by its command line (``"eval"``, ``"models list"``...)."""
    found = {path.strip(): parser}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                found.update(_commands(child, f"{path} {name}"))
    return found


def _flags(parser: argparse.ArgumentParser) -> set[str]:
    return {flag for action in parser._actions for flag in action.option_strings}


def test_every_command_that_takes_a_model_takes_the_loading_flags() -> None:
    commands = _commands(build_parser())
    loading = {name for name, parser in commands.items() if "--model" in _flags(parser)}
    assert {"chat", "generate", "compare", "eval", "bench", "serve", "doctor"} <= loading
    for name in loading:
        assert LOAD_FLAGS <= _flags(commands[name]), name


@pytest.mark.parametrize("command", ["chat", "generate", "compare", "eval", "bench", "serve",
                                     "doctor"])
def test_the_flags_parse_the_same_everywhere(command: str) -> None:
    argv = [command, *(["Hi"] if command in ("generate", "compare") else []),
            "--threads", "3", "--ctx", "512", "--gpu-layers", "-1"]
    args = build_parser().parse_args(argv)
    assert load_settings(args) == {"n_gpu_layers": -1, "n_threads": 3, "n_ctx": 512}


@pytest.mark.parametrize(("flag", "value", "sentence"), [
    ("--threads", "0", "--threads must be from 1 to 512, llama.cpp's most (got 0)."),
    # more than llama.cpp takes crashed it (100,000) or hung it (20,000)
    ("--threads", "100000", "--threads must be from 1 to 512, llama.cpp's most (got 100000)."),
    ("--ctx", "8", "--ctx must be 16 or more (got 8)."),
])
@pytest.mark.parametrize("command", ["generate", "compare", "doctor"])
def test_a_bad_value_is_one_sentence_and_exit_2(capsys: pytest.CaptureFixture[str], command: str,
                                                flag: str, value: str, sentence: str) -> None:
    prompt = ["Hi"] if command != "doctor" else []
    assert main([command, *prompt, flag, value]) == 2
    assert capsys.readouterr().err.strip() == f"localpref: {sentence}"


def test_generate_runs_with_the_threads_and_window_given(
        capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["generate", "Hi", "--method", "base", "--max-tokens", "4", "--threads", "1",
                 "--ctx", "256", "--json"])
    payload = json.loads(capsys.readouterr().out)
    assert code == 0 and payload["stats"]["n_threads"] == 1
    long_prompt = "Tell me about rivers and mountains. " * 40
    assert main(["generate", long_prompt, "--method", "base", "--max-tokens", "4",
                 "--threads", "1", "--ctx", "256"]) == 2
    assert "the context holds 256" in capsys.readouterr().err


def test_compare_runs_with_the_threads_given(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["compare", "Hi", "--methods", "base,pref", "-p", "concise", "--max-tokens", "4",
                 "--threads", "1", "--ctx", "256", "--json"])
    payload = json.loads(capsys.readouterr().out)
    assert code == 0
    assert [result["stats"]["n_threads"] for result in payload["results"]] == [1, 1]


@pytest.mark.parametrize("name", ["", "  "])
def test_the_api_refuses_an_empty_model_name_as_the_command_line_does(name: str) -> None:
    import localpref
    from localpref.errors import ModelError

    with pytest.raises(ModelError, match=r"^The model name is empty; give a path or a name, "
                                         r"or None for the bundled model \(smollm2-135m"):
        localpref.load(name)


def test_gpu_layers_asked_of_a_build_without_offload_are_said(
        capsys: pytest.CaptureFixture[str]) -> None:
    """--gpu-layers on a CPU-only build was ignored without a word (doctor said it)."""
    from localpref.engine import gpu_offload_built

    said = ("localpref: warning: This llama-cpp-python was built without GPU offload, so the "
            "GPU layers asked for are not offloaded (`localpref doctor` says how to build it "
            "with offload).")
    for layers, warned in (("5", not gpu_offload_built()), ("0", False)):
        assert main(["generate", "Hi", "--method", "base", "--max-tokens", "2", "--json",
                     "--threads", "1", "--gpu-layers", layers]) == 0
        out, err = capsys.readouterr()
        assert json.loads(out)["stats"]["n_tokens"] == 2
        assert (said in err.splitlines()) is warned
