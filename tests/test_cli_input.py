"""`generate -` reads the prompt from standard input; `--repeat-penalty` reaches the sampler."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from hypothesis import given
from hypothesis import strategies as st

from localpref import Base
from localpref.cli import main
from localpref.methods import recommended_method

REPETITIVE = "Count from 1 to 20."


def cli_json(capsys: pytest.CaptureFixture[str], *argv: str) -> dict:
    assert main([*argv, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def run_script(*argv: str, stdin: str | bytes) -> subprocess.CompletedProcess:
    """``localpref ARGV`` in a child process with ``stdin`` piped in."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    return subprocess.run([sys.executable, "-m", "localpref.cli", *argv], input=stdin,
                          capture_output=True, timeout=600, env=env,
                          text=isinstance(stdin, str))


def test_generate_dash_answers_the_text_piped_in(capsys, model):
    piped = run_script("generate", "-", "--method", "base", "--max-tokens", "8", "--json",
                       stdin="Name a fruit.\n")
    assert piped.returncode == 0, piped.stderr
    payload = json.loads(piped.stdout)
    # the prompt was the piped text, not "-": same token count, same greedy answer
    assert payload["stats"]["n_prompt_tokens"] == model.count_tokens("Name a fruit.")
    assert payload["stats"]["n_prompt_tokens"] != model.count_tokens("-")
    direct = cli_json(capsys, "generate", "Name a fruit.", "--method", "base",
                      "--max-tokens", "8")
    assert payload["text"] == direct["text"] and payload["text"].strip()


def test_a_byte_order_mark_on_standard_input_is_not_read_as_the_prompt():
    """A file saved by a Windows editor: its mark was three more tokens of the prompt."""
    piped = run_script("compare", "-", "--methods", "base", "--max-tokens", "4", "--json",
                       stdin="\ufeffName a fruit.".encode())
    assert piped.returncode == 0, piped.stderr
    assert json.loads(piped.stdout)["prompt"] == "Name a fruit."


def test_compare_dash_reads_standard_input_too():
    piped = run_script("compare", "-", "--methods", "base", "--max-tokens", "4", "--json",
                       stdin="Name a fruit.")
    assert piped.returncode == 0, piped.stderr
    assert json.loads(piped.stdout)["prompt"] == "Name a fruit."


@pytest.mark.parametrize("stdin, reason", [
    ("  \n", "standard input held no text"),
    (b"\xef\xbb\xbf \n", "standard input held no text"),  # a byte-order mark is no text
    (b"\xff\xfe not text", "not utf-8 text"),
    # read to the limit, not to the end (`yes | localpref generate -` filled the memory)
    (b"y\n" * (8 * 2**20 + 1), "standard input is over 16 mib; a prompt must fit in the "
                               "model's window"),
])
def test_generate_dash_with_nothing_readable_is_one_sentence_and_exit_code_2(stdin, reason):
    piped = run_script("generate", "-", "--max-tokens", "4", stdin=stdin)
    err = piped.stderr if isinstance(piped.stderr, str) else piped.stderr.decode()
    assert piped.returncode == 2
    assert reason in err.lower() and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_repeat_penalty_reaches_the_sampler(capsys, model):
    plain = model.generate(REPETITIVE, method=Base(), max_tokens=24).text
    penalised = model.generate(REPETITIVE, method=Base(), max_tokens=24,
                               repeat_penalty=1.5).text
    assert penalised != plain  # the prompt is one the penalty changes
    payload = cli_json(capsys, "generate", REPETITIVE, "--method", "base", "--max-tokens", "24",
                       "--repeat-penalty", "1.5")
    assert payload["stats"]["settings"]["repeat_penalty"] == 1.5
    assert payload["text"] == penalised
    compared = cli_json(capsys, "compare", REPETITIVE, "--methods", "base", "--max-tokens", "24",
                        "--repeat-penalty", "1.5")
    assert compared["results"][0]["text"] == penalised


@pytest.mark.parametrize("command", ["generate", "compare"])
def test_repeat_penalty_zero_is_refused_with_one_sentence(capsys, command):
    assert main([command, "Hi", "--repeat-penalty", "0"]) == 2
    err = capsys.readouterr().err
    assert "repeat penalty must be greater than 0" in err
    assert len(err.strip().splitlines()) == 1


def test_a_reader_that_goes_away_ends_the_command_quietly() -> None:
    """`localpref generate ... | head -c 5`: the pipe closes while the answer streams; the
    command ends with 141 (as a shell reports SIGPIPE) and no traceback."""
    process = subprocess.Popen(
        [sys.executable, "-m", "localpref.cli", "generate", "Write a long poem about the sea.",
         "--max-tokens", "64", "--ignore-eos", "--threads", "1"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert process.stdout is not None and process.stderr is not None
    assert len(process.stdout.read(5)) == 5
    process.stdout.close()
    error = process.stderr.read().decode()
    assert process.wait(120) == 141
    assert "Traceback" not in error and "BrokenPipeError" not in error


@pytest.mark.parametrize(("flags", "sentence"), [
    (["--temperature", "inf"], "Temperature must be a finite number (got inf)."),
    (["--temperature", "nan"], "Temperature must be a finite number (got nan)."),
    (["--repeat-penalty", "1e309"], "The repeat penalty must be a finite number (got inf)."),
    (["-p", "concise", "--kl-budget", "inf"], "The KL budget must be a finite number (got inf)."),
    (["-p", "concise", "-m", "amulet", "--eta", "inf"], "Eta must be a finite number (got inf)."),
    (["-p", "concise", "-m", "pad", "--weight=-inf"],
     "Weight must be a finite number (got -inf)."),
    (["--temperature", "-1"], "Temperature must be 0 or more (got -1.0)."),
])
def test_an_infinite_number_is_told_it_must_be_finite(capsys, flags, sentence):
    """inf is "0 or more": the bound's own sentence misled; it now says what is wrong."""
    assert main(["generate", "Hi", *flags]) == 2
    assert capsys.readouterr().err.strip() == f"localpref: {sentence}"


@pytest.mark.parametrize(("argv", "sentence"), [
    (["generate", "Hi", "--max-tokens", "abc"],
     "localpref: argument --max-tokens: invalid int value: 'abc' (see localpref generate "
     "--help).\n"),
    (["doctor", "--model", " "],  # a script's unset $MODEL is not the bundled model
     "localpref: argument --model: an empty model name; give a path or a name (the bundled "
     "model is smollm2-135m-instruct) (see localpref doctor --help).\n"),
    (["models", "path", ""],
     "localpref: argument NAME: an empty model name; give a path or a name (the bundled "
     "model is smollm2-135m-instruct) (see localpref models path --help).\n"),
    (["doctor", "--file", ""],  # it was no pattern at all, without a word
     "localpref: argument --file: an empty file pattern; give a glob such as '*Q4_K_M.gguf', "
     "or leave --file out (see localpref doctor --help).\n"),
    (["models", "path", "org/name", "--file", " "],
     "localpref: argument --file: an empty file pattern; give a glob such as '*Q4_K_M.gguf', "
     "or leave --file out (see localpref models path --help).\n"),
    (["generate", "Hi", "--stop="],  # a script's unset $STOP stops nothing
     "localpref: argument --stop: an empty stop string stops nothing; give the text to stop "
     "at (see localpref generate --help).\n"),
    (["calibrate", "--quick", "--force"],
     "localpref: unrecognized arguments: --force (see localpref calibrate --help).\n"),
    (["eval", "merge", "a", "--out", "b", "--force"],  # the innermost command's help
     "localpref: unrecognized arguments: --force (see localpref eval merge --help).\n"),
    (["--force"], "localpref: unrecognized arguments: --force (see localpref --help).\n"),
    (["generate"], "localpref: the following arguments are required: prompt (see localpref "
                   "generate --help).\n"),
    (["eval", "merge", "--bootstrap", "many"],
     "localpref: argument --bootstrap: invalid int value: 'many' (see localpref eval merge "
     "--help).\n"),
    # what float() reads but nobody types as a number: a digit grouping, full-width digits
    (["generate", "Hi", "--temperature", "1_0"],
     "localpref: argument --temperature: invalid number value: '1_0' (see localpref generate "
     "--help).\n"),
    (["generate", "Hi", "--strength", "\uff12"],
     "localpref: argument --strength: invalid number value: '\uff12' (see localpref generate "
     "--help).\n"),
    (["compare", "Hi", "--alpha", "\u0663"],  # (an Arabic-Indic three, a method's own flag)
     "localpref: argument --alpha: invalid number value: '\u0663' (see localpref compare "
     "--help).\n"),
    (["calibrate", "--strengths", "1,\uff12"],
     "localpref: --strengths takes numbers separated by commas (got '\uff12').\n"),
    (["eval", "--dataset", "x.json", "--sweep", "strength=1_0"],
     "localpref: --sweep strength= needs numbers separated by commas (got '1_0').\n"),
    (["calibrate", "--budget", "0x1"],
     "localpref: argument --budget: invalid number value: '0x1' (see localpref calibrate "
     "--help).\n"),
])
def test_what_argparse_refuses_is_one_line_naming_the_commands_help(capsys, argv,
                                                                    sentence) -> None:
    """argparse printed its whole usage block, and an unknown flag the top command's."""
    with pytest.raises(SystemExit) as refused:
        code = main(argv)
        raise SystemExit(code)
    assert refused.value.code == 2
    captured = capsys.readouterr()
    assert (captured.out, captured.err) == ("", sentence)


@pytest.mark.parametrize(("argv", "first"), [
    ([], "usage: localpref [-h]"), (["models"], "usage: localpref models [-h]")])
def test_a_command_without_its_subcommand_lists_them_on_stderr(capsys, argv, first) -> None:
    """The list went to stdout with exit code 2: a script reading stdout took it for output."""
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.startswith(first)


@pytest.mark.parametrize("command", ["generate", "compare"])
def test_the_method_settings_help_says_the_recommended_steering_has_its_own(capsys,
                                                                             command) -> None:
    """--tau said "default 0, off" and --end-tokens "default contrast", while a run without
    --method used tau 0.2 and end tokens pref (the recommended steering's)."""
    with pytest.raises(SystemExit):
        main([command, "--help"])
    shown = " ".join(capsys.readouterr().out.split())
    recommended = recommended_method()
    assert ("Each default below is its method's own (the papers'). Without a method named, "
            f"the recommended steering runs: {recommended.title} with tau "
            f"{recommended.tau:g}, end tokens {recommended.end_tokens}, contrast "
            f"{recommended.contrast:g}") in shown
    assert (recommended.tau, recommended.end_tokens) == (0.2, "pref")


@given(st.floats(allow_nan=False, allow_infinity=False))
def test_a_number_as_typed_reads_every_decimal_float_writes(value: float) -> None:
    from localpref.numbers import number

    for text in (repr(value), f"{value:e}", f"{value:f}", f" {value!r} "):
        assert number(text) == float(text)


def test_a_number_as_typed_refuses_what_only_float_reads() -> None:
    from localpref.numbers import number

    for text in ("1_0", "\uff12", "\u0663", "0x1", "", " ", "1e", ".", "e5", "1.5.2"):
        with pytest.raises(ValueError):
            number(text)
    assert number("-INF") == float("-inf") and number("+.5") == 0.5
