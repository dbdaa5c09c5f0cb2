"""`localpref generate` and `localpref compare`: output contracts and bad input."""

from __future__ import annotations

import io
import itertools
import json
import os
import pty
import shlex
import signal
import subprocess
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from localpref import Amulet
from localpref.cli import build_parser, main
from localpref.commands import columns as columns_text
from localpref.commands.generate import side_by_side
from localpref.commands.interrupt import (
    TERMINATED_EXIT,
    cancel_on_interrupt,
    closed_uninterrupted,
    interrupt_once,
    say_stopped,
    terminate_as_exit,
)
from localpref.commands.options import method_from_args, method_settings
from localpref.decoding import Track
from localpref.models import bundled_model_path
from localpref.synthetic import SyntheticShape, write_synthetic_llama


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_generate_json_prints_exactly_one_object(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(capsys, "generate", "Hi", "-p", "concise", "--max-tokens", "8",
                           "--json")
    assert code == 0
    payload = json.loads(out)
    assert set(payload) == {"text", "method", "preference", "avoid", "model", "model_path",
                            "stats"}
    assert payload["model_path"] == str(bundled_model_path())
    assert payload["method"] == "amulet"
    assert payload["avoid"] is None
    assert payload["preference"] == "concise"
    assert payload["stats"]["n_tokens"] >= 1
    assert payload["text"]


def test_the_penalty_flags_are_the_apis_keywords(capsys: pytest.CaptureFixture[str],
                                                 model) -> None:
    prompt = "Write the word basil twenty times."
    expected = model.generate(prompt, max_tokens=16, presence_penalty=0.5,
                              frequency_penalty=1.5, preference="concise")
    assert expected.text != model.generate(prompt, max_tokens=16, preference="concise").text
    code, out, _ = run_cli(capsys, "generate", prompt, "-p", "concise", "--max-tokens", "16",
                           "--presence-penalty", "0.5", "--frequency-penalty", "1.5", "--json",
                           "--threads", "1")
    assert code == 0 and json.loads(out)["text"] == expected.text
    code, out, err = run_cli(capsys, "compare", prompt, "-p", "concise", "--methods",
                             "base,recommended", "--max-tokens", "4",
                             "--frequency-penalty", "-2.5")
    assert (code, out, err.strip()) == (
        2, "", "localpref: frequency_penalty must be a number from -2 to 2 (got -2.5).")


def test_an_empty_system_prompt_is_none_in_every_interface(
        capsys: pytest.CaptureFixture[str], model) -> None:
    """--system-prompt '' fell back to the default prompt, and so did chat(system_prompt='');
    the server, batch and load(system_prompt='') read it as no system prompt."""
    question = [{"role": "user", "content": "Who are you?"}]
    none = model.generate([{"role": "system", "content": ""}, *question], max_tokens=10,
                          preference="concise")
    default = model.generate(question, max_tokens=10, preference="concise")
    assert none.stats["n_prompt_tokens"] != default.stats["n_prompt_tokens"]
    code, out, _ = run_cli(capsys, "generate", "Who are you?", "-p", "concise", "--max-tokens",
                           "10", "--system-prompt", "", "--json", "--threads", "1")
    assert code == 0
    payload = json.loads(out)
    assert (payload["text"], payload["stats"]["n_prompt_tokens"]) == (
        none.text, none.stats["n_prompt_tokens"])
    chat = model.chat(system_prompt="", preference="concise", max_tokens=10)
    try:
        answer = chat.send("Who are you?")
    finally:
        chat.close()  # (a chat holds its lanes of the shared model until closed)
    assert (answer.text, answer.stats["n_prompt_tokens"]) == (none.text,
                                                              none.stats["n_prompt_tokens"])


def test_generate_streams_text_and_reports_on_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_cli(capsys, "generate", "Name a fruit.", "--method", "base",
                             "--max-tokens", "6")
    assert code == 0
    assert out.strip()
    assert "tokens/s" in err


def test_method_settings_reach_the_method(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(capsys, "generate", "Hi", "-p", "concise", "--alpha", "1",
                           "--iterations", "10", "--max-tokens", "2", "--json")
    assert code == 0
    settings = json.loads(out)["stats"]["settings"]
    assert settings["alpha"] == 1.0 and settings["iterations"] == 10


@pytest.mark.parametrize("command", [["generate", "Hi"], ["compare", "Hi"], ["eval"]])
def test_every_method_flag_keeps_its_name_and_sets_the_field_it_names(command: list[str]) -> None:
    """Scripts depend on these flags: each sets the method field of its name (``_`` as ``-``),
    a bool is ``--name`` / ``--no-name``, and ``--strength`` is every two-lane method's knob."""
    args = build_parser().parse_args([
        *command, "--alpha", "3", "--lam", "1", "--eta", "5", "--iterations", "7",
        "--contrast", "0.5", "--ratio", "1.5", "--weight", "2", "--candidates", "4",
        "--tau", "0.1", "--kl-budget", "0.3", "--end-tokens", "pref",
        "--reward-model", "r.gguf", "--no-exact", "--strength", "0.7"])
    assert method_settings(args) == {
        "alpha": 3.0, "lam": 1.0, "eta": 5.0, "iterations": 7, "contrast": 0.5, "ratio": 1.5,
        "weight": 2.0, "candidates": 4, "tau": 0.1, "kl_budget": 0.3, "end_tokens": "pref",
        "reward_model": "r.gguf", "exact": False}
    assert args.strength == 0.7
    unset = build_parser().parse_args(command)
    assert method_settings(unset) == {} and unset.strength is None


def test_a_bool_field_is_a_flag_pair_that_reaches_the_method() -> None:
    parser = build_parser()
    loop = method_from_args(parser.parse_args(["generate", "Hi", "--method", "amulet",
                                               "--no-exact", "--iterations", "3"]))
    assert loop == Amulet(exact=False, iterations=3) and loop.label == "amulet (loop)"
    assert method_from_args(parser.parse_args(["generate", "Hi", "--method", "amulet",
                                               "--exact"])) == Amulet()


@pytest.mark.parametrize(("flags", "expected"), [
    (["--method", "amulet", "--strength", "0.5"], {"contrast": 0.5}),
    (["--method", "amulet", "--contrast", "0.5"], {"contrast": 0.5}),
    (["--method", "contrastive", "--strength", "0.5"], {"ratio": 0.5}),
    (["--method", "pad", "--strength", "0.5", "--tau", "0.1"], {"weight": 0.5, "tau": 0.1}),
    (["--method", "amulet", "--kl-budget", "0.3"], {"kl_budget": 0.3}),
])
def test_strength_and_fluency_controls_reach_the_method(
    capsys: pytest.CaptureFixture[str], flags: list[str], expected: dict[str, float]
) -> None:
    code, out, _ = run_cli(capsys, "generate", "Hi", "-p", "concise", *flags,
                           "--max-tokens", "2", "--json")
    assert code == 0
    settings = json.loads(out)["stats"]["settings"]
    assert {key: settings[key] for key in expected} == expected


def test_compare_prints_columns_with_tokens_per_second(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, _ = run_cli(capsys, "compare", "Name a fruit.", "-p", "concise",
                           "--methods", "base,amulet", "--max-tokens", "8")
    assert code == 0
    header = out.split("---")[0]  # the column heads, wrapped to the column width
    assert "base greedy (" in header and "amulet k=4.65" in header and "tok/s" in header


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=st.sampled_from("ab 猫是一种動物😀é\u0301กัहिंदी\u200d"), max_size=60),
       st.integers(min_value=2, max_value=20))
def test_wrapped_lines_fit_their_cells_and_keep_every_character(paragraph: str,
                                                                columns: int) -> None:
    lines = columns_text.wrap(paragraph, columns)
    assert all(columns_text.width(line) <= columns for line in lines)
    assert "".join(lines).replace(" ", "") == paragraph.replace(" ", "")
    assert all(columns_text.width(columns_text.pad(line, columns)) == columns for line in lines)


def test_marks_that_take_no_cell() -> None:
    assert columns_text.width("กั") == 1 and columns_text.width("猫") == 2
    assert columns_text.width("e\u0301") == 1 and columns_text.width("a\u200db") == 2
    # an emoji sequence is one emoji: 4, 6 and 1 cells before, where a terminal draws 2
    assert columns_text.width("👍🏽") == 2 and columns_text.width("👨\u200d👩\u200d👧") == 2
    assert columns_text.width("❤\ufe0f") == 2 and columns_text.width("👍🏽 ok ❤\ufe0f") == 8


def test_compare_on_a_narrow_terminal_puts_the_answers_in_bands(model) -> None:
    """Four answers on 40 columns printed rows of 73 cells (16 a column at least), which the
    terminal wrapped into a jumble: two bands of two now, nothing past the edge."""
    plain = model.generate("Hi", max_tokens=2)
    answers = [replace(plain, text=f"Answer {name}: water basil in the morning, not at night.")
               for name in "ABCD"]
    for width, bands in ((40, 2), (30, 4), (80, 1)):
        table = side_by_side(answers, width)
        assert all(columns_text.width(line) <= width for line in table.splitlines())
        assert table.count("\n\n") == bands - 1
        for name in "ABCD":  # every answer is there, whole
            assert f"Answer {name}:" in table


def test_a_compared_method_that_ran_as_plain_decoding_keeps_its_name(model) -> None:
    """With no preference, four columns were all headed "base greedy": which was which?"""
    plain = model.generate("Hi", max_tokens=2)
    steered = model.generate("Hi", max_tokens=2, preference="concise", method="pref")
    table = side_by_side([plain, plain, steered], 300, requested=["base", "pad", "pref"])
    header = table.splitlines()[0]
    assert header.count("base greedy") == 2 and "pad, nothing to steer toward: base" in header
    assert header.count("nothing to steer") == 1 and "pref greedy" in header


def test_compare_columns_line_up_with_wide_characters(model) -> None:
    """A Chinese answer takes two cells a character: its column must not push the next."""
    plain = model.generate("Hi", max_tokens=2)
    answers = [replace(plain, text="猫是一种非常聪明的动物，它能够理解人类的语言和情感。" * 2),
               replace(plain, text="Cats are clever animals that learn quickly."),
               replace(plain, text="😀 " * 30)]
    table = side_by_side(answers, 80).splitlines()
    column = (80 - 3 * 2) // 3
    starts_with_text = {column + 3: 0, 2 * (column + 3): 0}
    for line in table:
        assert columns_text.width(line) <= 80
        # the second and third columns begin at the same cell on every line, after the gap
        cells_before = [columns_text.width(line[:i]) for i in range(len(line) + 1)]
        for start in starts_with_text:
            if cells_before[-1] > start:
                index = cells_before.index(start)
                assert line[index - 3:index] == "   ", line
                starts_with_text[start] += line[index] != " "
    assert all(starts_with_text.values())  # each column's text began there


def test_compare_json(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(capsys, "compare", "Hi", "-p", "concise", "--methods",
                           "pref,pad", "--max-tokens", "4", "--json")
    assert code == 0
    methods = [row["method"] for row in json.loads(out)["results"]]
    assert methods == ["pref", "pad (prompt-contrast reward)"]
    # which entry was which name: the recommended steering's method is amulet's
    code, out, _ = run_cli(capsys, "compare", "Hi", "-p", "concise", "--methods",
                           " recommended,amulet", "--max-tokens", "2", "--json")
    rows = json.loads(out)["results"]
    assert code == 0 and [(row["requested"], row["method"]) for row in rows] == [
        ("recommended", "amulet"), ("amulet", "amulet")]
    assert {row["model_path"] for row in rows} == {str(bundled_model_path())}


BAD_INPUTS = [
    (["--eta", "0"], "Eta must be greater than 0"),
    (["--lam", "-1"], "Lambda must be greater than 0"),
    (["--lam", "0"], "Lambda must be greater than 0 (got 0.0)."),
    (["--method", "amulet", "--alpha", "1e300"], "These alpha, lambda, eta and iterations give"),
    (["--iterations", "0"], "Iterations must be a whole number"),
    (["--method", "pad", "--candidates", "0"], "Candidates must be a whole number"),
    (["--temperature", "-0.5"], "Temperature must be 0 or more"),
    (["--top-p", "-0.1"], "Top-p must be in [0, 1]"),
    (["--top-p", "1.5"], "Top-p must be in [0, 1]"),
    (["--method", "nonsense"], "Unknown method 'nonsense'"),
    (["-p", "   "], "A preference must be a non-empty text"),
    # the lane's system text would say it twice
    (["-p", "concise", "-p", "Concise"], "'Concise' is given twice as a preference; give each "
                                         "once."),
    (["-p", "concise", "-p", "Your answer should be as short and to the point as possible."],
     "'Your answer should be as short and to the point as possible.' says what 'concise' "
     "says, both preferences; give one of them."),
    (["--avoid", "verbose", "--avoid", " verbose"],
     "'verbose' is given twice to avoid; give each once."),
    (["--max-tokens", "0"], "Max tokens must be a whole number"),
    (["--tau", "1.5"], "Tau must be in [0, 1)"),
    (["--method", "contrastive", "--kl-budget", "0"], "KL budget must be greater than 0"),
    (["--avoid", ""], "--avoid needs a text"),
    (["--avoid", "  "], "--avoid needs a text"),
    (["--avoid", "verbose", "--method", "base"], "base reads one lane"),
    # -p's TEXT=NUMBER was taken literally: the base lane read "verbose=2"
    (["--avoid", "verbose=2"], "--avoid takes no weights ('verbose=2'); give the text alone, "
                               "e.g. --avoid verbose."),
    (["-p", "concise", "--avoid", "CONCISE"], "'concise' is both a preference and what to "
                                              "avoid"),
    (["--avoid", "verbose", "--method", "pref"], "pref reads one lane"),
    (["--avoid", "verbose", "--method", "pad", "--reward-model", "x.gguf"],
     "which PAD with a reward model does not read"),
    (["--method", "recommended", "--paper", "--eta", "0"], "Eta must be greater than 0"),
    # the strength's own field was named, which reads as a preference's weight for PAD
    (["--method", "pad", "--strength", "-1"],
     "--strength sets PAD's weight here: Weight must be from 0 to 1,000,000 (got -1.0)."),
    (["--strength", "nan"], "--strength sets Amulet's contrast k here: The contrast must be a "
                            "finite number (got nan)."),
    # a setting no method reads was silently ignored
    (["--method", "amulet", "--reward-model", "x.gguf"],
     "--reward-model is a setting of PAD; the method amulet does not take it."),
    (["--method", "pref", "--tau", "0.1"], "; the method pref does not take it."),
    (["--method", "base", "--strength", "2"],
     "--strength sets a steering method's strength; the method base does not take it."),
    (["--method", "pad", "--alpha", "3"], "--alpha is a setting of Amulet; the method pad does"),
    (["--reward-model", "x.gguf"], "the recommended steering (amulet) does not take it; name "
                                   "--method."),
]


@pytest.mark.parametrize(("flags", "message"), BAD_INPUTS)
def test_bad_input_is_one_sentence_and_exit_code_2(
    capsys: pytest.CaptureFixture[str], flags: list[str], message: str
) -> None:
    argv = ["generate", "Hi", *flags]
    if "-p" not in flags:
        argv += ["-p", "concise"]
    code, out, err = run_cli(capsys, *argv)
    assert code == 2
    assert out == ""
    assert err.count("\n") == 1 and message in err
    assert "Traceback" not in err


def test_free_text_to_avoid_may_hold_an_equals_sign() -> None:
    from localpref.commands.showing import avoid_from_args

    texts = ["claiming 2+2=5", "pi=3.14159", "e=mc2", "verbose = long answers", "=5",
             "verbose=high"]  # only a built-in name and a number is -p's weight
    args = build_parser().parse_args(["generate", "Hi", *[f"--avoid={t}" for t in texts]])
    assert avoid_from_args(args) == texts


def test_compare_refuses_a_setting_none_of_its_methods_reads(
    capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run_cli(capsys, "compare", "Hi", "-p", "concise", "--methods", "base,pref",
                             "--tau", "0.3")
    assert (code, out) == (2, "")
    assert err == ("localpref: --tau is a setting of Contrastive, Amulet, PAD; none of the "
                   "methods base, pref takes it.\n")
    code, _, _ = run_cli(capsys, "compare", "Hi", "-p", "concise", "--methods", "base,pad",
                         "--tau", "0.3", "--max-tokens", "2")
    assert code == 0  # one method reads it


def test_missing_model_names_the_path(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    missing = tmp_path / "nope.gguf"
    code, _, err = run_cli(capsys, "generate", "Hi", "--model", str(missing))
    assert code == 2 and str(missing) in err and err.count("\n") == 1


def test_corrupt_model_names_the_path(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    corrupt = tmp_path / "corrupt.gguf"
    corrupt.write_bytes(b"GGUF" + os.urandom(64))
    code, _, err = run_cli(capsys, "generate", "Hi", "--model", str(corrupt))
    assert code == 2 and str(corrupt) in err and err.count("\n") == 1


def test_text_that_is_not_utf8_is_one_sentence(capsys: pytest.CaptureFixture[str]) -> None:
    latin1 = b"caf\xe9 au lait".decode("utf-8", "surrogateescape")  # as Python reads argv
    code, out, err = run_cli(capsys, "generate", latin1, "--max-tokens", "2")
    assert code == 2 and out == "" and err.count("\n") == 1
    assert "message is not valid Unicode text" in err and "U+DCE9" in err
    code, _, err = run_cli(capsys, "generate", "Hi", "-p", latin1, "--max-tokens", "2")
    assert code == 2 and "preference is not valid Unicode text" in err
    for command in ("generate", "compare"):  # a traceback, exit code 1, from the tokenizer
        code, out, err = run_cli(capsys, command, "Hi", "--system-prompt", latin1,
                                 "--max-tokens", "2")
        assert (code, out) == (2, "")
        assert err == ("localpref: The system prompt is not valid Unicode text: it holds a "
                       "lone surrogate (U+DCE9, what a byte 0xE9 that is not UTF-8 becomes "
                       "when read as text); send UTF-8 text.\n")


def test_a_window_past_the_trained_context_is_one_sentence(
        capsys: pytest.CaptureFixture[str]) -> None:
    """The bundled model was trained on 8,192 tokens: a larger --ctx would only take memory
    (999,999,999 tokens grew without bound, about 370 MB a second, before this check)."""
    for command in (["generate", "Hi"], ["serve", "--port", "0"]):
        code, _, err = run_cli(capsys, *command, "--ctx", "999999999", "--threads", "1")
        last = err.strip().splitlines()[-1]  # serve says where it listens first
        assert code == 2 and "Traceback" not in err, command
        assert last.endswith("999999999 tokens (--ctx, n_ctx) is more than "
                             "SmolLM2-135M-Instruct was trained for (8192 tokens).")


def test_prompt_longer_than_the_context(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_cli(capsys, "generate", "word " * 5000, "--method", "base")
    assert code == 2
    assert "tokens long and the context holds" in err and err.count("\n") == 1
    assert "which leaves no room for an answer; shorten the prompt" in err


def test_a_short_preference_after_a_long_prompt_blames_the_prompt(
        capsys: pytest.CaptureFixture[str]) -> None:
    """A prompt that fills the window but for a few tokens, with "concise": shortening the
    preset is neither the way nor possible (the sentence said "shorten it")."""
    model_prompt = "word " * 228  # 249 tokens bare, 262 with the preset
    code, out, err = run_cli(capsys, "generate", model_prompt, "-p", "concise", "--ctx", "256",
                             "--max-tokens", "2")
    assert code == 2 and out == "" and err.count("\n") == 1
    assert err.startswith("localpref: With the preference the prompt is ")
    assert err.strip().endswith("tokens long and the context holds 256, which leaves no room "
                                "for an answer; shorten the prompt or load the model with a "
                                "larger context (--ctx, n_ctx).")


def test_an_answer_the_window_ended_says_so_not_just_length(
        capsys: pytest.CaptureFixture[str]) -> None:
    """Text output said "length" whether --max-tokens or the context window ended it."""
    prompt = "Write a long poem about the sea and the waves on the rocks. Make it rhyme."
    code, _, err = run_cli(capsys, "generate", prompt, "--method", "base", "--ctx", "64",
                           "--max-tokens", "60", "--ignore-eos")
    assert code == 0 and err.endswith(" · length: the context window ended it (a larger "
                                      "--ctx, or a shorter prompt)]\n")
    code, _, err = run_cli(capsys, "generate", "Hi", "--method", "base", "--max-tokens", "3",
                           "--ignore-eos")
    assert code == 0 and err.endswith(" ms/token · length]\n")
    code, _, err = run_cli(capsys, "compare", prompt, "--methods", "base,pref", "-p", "verbose",
                           "--ctx", "64", "--max-tokens", "60")
    assert code == 0 and err.endswith(
        "localpref: the context window ended the answers of base greedy, pref greedy before "
        "--max-tokens (a larger --ctx, or a shorter prompt, leaves more room).\n")


@pytest.mark.parametrize(("flags", "blamed"), [
    (["-p", "word " * 300], "The prompt is too long with the preference"),
    (["-p", "concise", "--avoid", "word " * 300], "The prompt is too long with the avoid text"),
    (["--like", "EXAMPLE"], "The prompt is too long with the examples"),
    (["-p", "word " * 150, "--like", "EXAMPLE"],
     "The prompt is too long with the preference and the examples"),
])
def test_a_preference_too_long_for_the_window_is_blamed_not_the_prompt(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, flags: list[str], blamed: str
) -> None:
    example = tmp_path / "example.txt"
    example.write_text("word " * 300, encoding="utf-8")
    flags = [str(example) if flag == "EXAMPLE" else flag for flag in flags]
    code, out, err = run_cli(capsys, "generate", "Hi", *flags, "--ctx", "256",
                             "--max-tokens", "2")
    assert code == 2 and out == ""
    assert err.startswith(f"localpref: {blamed}: ") and err.count("\n") == 1
    assert "tokens, and the context holds 256; shorten " in err


def test_reward_model_with_another_vocabulary_is_refused(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    other = _tiny_gguf_with_vocabulary(tmp_path / "other-vocab.gguf", size=300)
    code, _, err = run_cli(capsys, "generate", "Hi", "-p", "concise", "--method", "pad",
                           "--reward-model", str(other), "--max-tokens", "2")
    assert code == 2
    assert "another vocabulary" in err and err.count("\n") == 1


def test_pad_with_a_reward_model_of_the_same_vocabulary(
    capsys: pytest.CaptureFixture[str], bundled_path: Path
) -> None:
    code, out, _ = run_cli(capsys, "generate", "Hi", "-p", "concise", "--method", "pad",
                           "--reward-model", str(bundled_path), "--max-tokens", "6", "--json")
    assert code == 0
    payload = json.loads(out)
    assert payload["method"] == "pad"
    assert payload["stats"]["n_lanes"] == 2


def _tiny_gguf_with_vocabulary(path: Path, size: int) -> Path:
    """A random-weight llama GGUF with its own small vocabulary (written with `gguf`)."""
    return write_synthetic_llama(path, SyntheticShape(vocab_size=size))


@pytest.mark.parametrize(("signum", "exit_code"), [(signal.SIGINT, 130),
                                                   (signal.SIGTERM, 143)])
def test_ctrl_c_or_sigterm_while_streaming_keeps_what_was_printed(signum: int,
                                                                  exit_code: int) -> None:
    """The answer so far, its line ended, and its figures' line (SIGTERM, as ``kill`` and
    ``timeout`` send, killed generate at once, both unsaid)."""
    process = subprocess.Popen(
        [sys.executable, "-m", "localpref.cli", "generate", "Write a long story about a dragon.",
         "--method", "base", "--max-tokens", "2000", "--ignore-eos"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        # (Ctrl-C as a terminal gives it: a run started in the background ignores it, and
        # so do its children, which then rightly leave it ignored)
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    assert process.stdout is not None
    first = process.stdout.read(40)
    time.sleep(0.3)
    process.send_signal(signum)
    out, err = process.communicate(timeout=60)
    assert process.returncode == exit_code, err
    assert len(first + out) >= 40 and (first + out).endswith("\n")
    assert "Traceback" not in err
    assert err.rstrip().endswith("cancelled]")  # the stats line: ended at its next step


def test_sigterm_while_the_model_closes_or_twice_never_crashes() -> None:
    """A SIGTERM as generate ended raised inside the model's close (llama.cpp's frees), and
    two SIGTERMs while it streamed raised inside it too: a double free (-6) or a segmentation
    fault (-11) in most runs. Now the close holds signals until it returns."""
    command = [sys.executable, "-m", "localpref.cli", "generate", "Hi", "--method", "base",
               "--max-tokens", "5", "--threads", "1"]
    for delay in (0.0, 0.004, 0.008, 0.012, 0.016, 0.02):  # after the figures' line
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                   text=True)
        assert process.stderr is not None
        line = process.stderr.readline()
        while line and not line.startswith("[base"):
            line = process.stderr.readline()
        time.sleep(delay)
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=60)
        assert process.returncode in (0, 143, -signal.SIGTERM), (delay, err)
        assert "Traceback" not in err and "Exception ignored" not in err, err
    process = subprocess.Popen(
        [sys.executable, "-m", "localpref.cli", "generate", "Write a long story about a dragon.",
         "--method", "base", "--max-tokens", "2000", "--ignore-eos", "--threads", "1"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert process.stdout is not None
    process.stdout.read(20)
    process.send_signal(signal.SIGTERM)
    time.sleep(0.05)
    process.send_signal(signal.SIGTERM)  # (ignored: the command is ending)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 143, err
    assert "Traceback" not in err and err.rstrip().endswith("cancelled]")


@pytest.mark.parametrize("command", ["generate", "compare"])
def test_sigterm_while_the_model_loads_ends_with_143_and_no_traceback(
        command: str, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """A SIGTERM before the answer streams (the model loading) killed the command at once
    (-15), unsaid; it ends as ``batch`` does, with exit code 143."""
    from localpref.commands import generate as command_module

    real_load = command_module.load_model

    def load_then_terminated(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        model = real_load(*args, **kwargs)
        os.kill(os.getpid(), signal.SIGTERM)  # (handled at the next bytecode, in this thread)
        time.sleep(0.05)
        return model

    def not_taken(signum: int, frame) -> None:  # noqa: ANN001 - (a SIGTERM ends pytest)
        raise AssertionError("the command did not take SIGTERM")

    monkeypatch.setattr(command_module, "load_model", load_then_terminated)
    suites = (signal.signal(signal.SIGTERM, not_taken), signal.getsignal(signal.SIGINT))
    try:
        with pytest.raises(SystemExit) as stopped:
            main([command, "Hi", "--method" if command == "generate" else "--methods", "base",
                  "--max-tokens", "2", "--threads", "1"])
    finally:
        signal.signal(signal.SIGTERM, suites[0])
        signal.signal(signal.SIGINT, suites[1])  # (ignored once SIGTERM came)
    assert stopped.value.code == 143
    assert "Traceback" not in capsys.readouterr().err


@pytest.mark.parametrize(("signum", "exit_code"), [(signal.SIGINT, 130),
                                                   (signal.SIGTERM, 143)])
def test_ctrl_c_in_compare_prints_what_each_method_wrote_and_exits_130(
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, signum: int,
        exit_code: int) -> None:
    """compare printed empty columns and exited 0 after Ctrl-C, and nothing said the answers
    were cut; SIGTERM lost every answer. The signal comes once both methods have written a
    few tokens (seen through the real ``Track.step``, wrapped)."""
    written: dict[int, int] = {}
    writing, finished = threading.Event(), threading.Event()
    real_step = Track.step

    def step(track: Track, views):  # noqa: ANN001, ANN202 - the wrapped method's own
        piece = real_step(track, views)
        written[id(track)] = len(track.tokens)
        if len(written) == 2 and min(written.values()) >= 4:
            writing.set()
        return piece

    def press_ctrl_c() -> None:
        if writing.wait(120) and not finished.is_set():
            os.kill(os.getpid(), signum)

    def too_early(signum: int, frame) -> None:  # noqa: ANN001 - (a SIGTERM ends pytest)
        raise AssertionError("the signal came before compare took it")

    monkeypatch.setattr(Track, "step", step)
    inherited = (signal.signal(signal.SIGINT, signal.default_int_handler),  # as in a terminal
                 signal.signal(signal.SIGTERM, too_early))
    pressing = threading.Thread(target=press_ctrl_c, daemon=True)
    try:
        pressing.start()
        code = main(["compare", "Write a long story about a dragon.", "-p", "concise",
                     "--methods", "base,pref", "--max-tokens", "2000", "--json",
                     "--threads", "1"])
        # after Ctrl-C the caller's handlers are back; after SIGTERM both are ignored until
        # the process ends (main() returns 143 for it to exit with), as in batch
        ended = signum == signal.SIGTERM
        assert signal.getsignal(signal.SIGINT) is (
            signal.SIG_IGN if ended else signal.default_int_handler)
        assert signal.getsignal(signal.SIGTERM) is (signal.SIG_IGN if ended else too_early)
    finally:
        finished.set()
        pressing.join(5)
        signal.signal(signal.SIGINT, inherited[0])
        signal.signal(signal.SIGTERM, inherited[1])
    captured = capsys.readouterr()
    assert code == exit_code and "Traceback" not in captured.err
    results = json.loads(captured.out)["results"]
    assert [r["stats"]["stop_reason"] for r in results].count("cancelled") >= 1
    assert all(r["text"] and r["stats"]["n_tokens"] >= 4 for r in results)
    assert captured.err.endswith("localpref: stopped; the answers are as far as each method "
                                 "had written.\n")


def test_signals_during_a_close_come_after_it_sigterm_first() -> None:
    """A signal raised inside a model's close crashed llama.cpp's frees; held, a Ctrl-C then
    a SIGTERM ended with 130 where a SIGTERM while streaming wins (143)."""
    closes: list[str] = []

    class Closing:
        def close(self) -> None:
            os.kill(os.getpid(), signal.SIGINT)
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.05)  # (the handlers run in this thread, at the next bytecode)
            closes.append("closed")

    suites = (signal.signal(signal.SIGINT, signal.default_int_handler),
              signal.getsignal(signal.SIGTERM))
    try:
        with pytest.raises(SystemExit) as stopped, terminate_as_exit(), \
                closed_uninterrupted(Closing()):
            pass
        assert stopped.value.code == TERMINATED_EXIT and closes == ["closed"]
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN  # (ending: as in batch)
    finally:
        signal.signal(signal.SIGINT, suites[0])
        signal.signal(signal.SIGTERM, suites[1])


def test_the_first_ctrl_c_cancels_and_a_second_raises() -> None:
    cancels: list[bool] = []
    suites = signal.signal(signal.SIGINT, signal.default_int_handler)  # as a fresh CLI has it
    try:
        with cancel_on_interrupt(lambda: cancels.append(True)) as interrupt:
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.05)  # the handler runs in this thread at the next bytecode
            assert interrupt.pressed and cancels == [True]
            with pytest.raises(KeyboardInterrupt):
                os.kill(os.getpid(), signal.SIGINT)
                time.sleep(0.05)
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
        assert cancels == [True]
    finally:
        signal.signal(signal.SIGINT, suites)


def test_after_sigterm_ctrl_c_stays_ignored_when_both_guards_are_left() -> None:
    """``batch`` holds both guards; SIGTERM ignores Ctrl-C from then on, but leaving
    ``interrupt_once`` put Ctrl-C's handler back, and a Ctrl-C 40 ms after the SIGTERM, while
    the process still ended, killed it (exit -2 where 143 was due; a CI run saw it)."""
    suites = (signal.signal(signal.SIGINT, signal.default_int_handler),
              signal.getsignal(signal.SIGTERM))
    try:
        with pytest.raises(SystemExit) as stopped, interrupt_once(), terminate_as_exit():
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.05)  # the handler runs in this thread at the next bytecode
        assert stopped.value.code == TERMINATED_EXIT
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
        assert signal.getsignal(signal.SIGTERM) is signal.SIG_IGN
        with interrupt_once():  # a guard left without a stop gives the handler back
            pass
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN  # (ignored is left alone)
    finally:
        signal.signal(signal.SIGINT, suites[0])
        signal.signal(signal.SIGTERM, suites[1])


@pytest.mark.parametrize(("terminal", "written"), [
    (True, "\nlocalpref: stopped; kept.\n"),   # after the ^C a terminal echoed
    (False, "localpref: stopped; kept.\n"),     # a file: no blank line
])
def test_a_stopped_commands_sentence_starts_a_line_only_on_a_terminal(
        monkeypatch: pytest.MonkeyPatch, terminal: bool, written: str) -> None:
    class Stderr(io.StringIO):
        def isatty(self) -> bool:
            return terminal

    stderr = Stderr()
    monkeypatch.setattr(sys, "stderr", stderr)
    say_stopped("kept")
    assert stderr.getvalue() == written


# -- what ran: the recommended default, a named method, --paper ---------------------------------


def _json(capsys: pytest.CaptureFixture[str], *flags: str) -> dict:
    code, out, err = run_cli(capsys, "generate", "Name a fruit.", "-p", "concise",
                             "--max-tokens", "6", "--json", *flags)
    assert code == 0, err
    return json.loads(out)


def test_no_method_is_the_recommended_steering_and_says_so(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from localpref.methods import recommended_method

    recommended = recommended_method()
    settings = _json(capsys)["stats"]["settings"]
    assert settings["contrast"] == recommended.contrast
    assert settings["tau"] == recommended.tau > 0
    assert _json(capsys, "--method", "recommended")["stats"]["settings"] == settings
    code, _, err = run_cli(capsys, "generate", "Name a fruit.", "-p", "concise",
                           "--max-tokens", "4")
    assert code == 0
    assert f"[amulet k={recommended.contrast:g} tau={recommended.tau:g}" in err


def test_a_named_method_is_the_papers_exact_method(capsys: pytest.CaptureFixture[str]) -> None:
    settings = _json(capsys, "--method", "amulet")["stats"]["settings"]
    assert settings["contrast"] is None and settings["tau"] == 0.0
    assert settings["effective_contrast"] == pytest.approx(4.6487, abs=1e-4)
    code, _, err = run_cli(capsys, "generate", "Hi", "-p", "concise", "--method", "amulet",
                           "--max-tokens", "2")
    assert code == 0
    assert "[amulet k=4.65 (alpha=2 lambda=2 eta=10 T=60) greedy ·" in err


@pytest.mark.parametrize(("method", "expected"), [
    ([], {"contrast": None, "tau": 0.0, "alpha": 2.0, "iterations": 60}),
    (["--method", "contrastive"], {"ratio": 2.0, "tau": 0.0}),
    (["--method", "amulet", "--tau", "0.1"], {"contrast": None, "tau": 0.1}),
])
def test_paper_gives_the_papers_settings(
    capsys: pytest.CaptureFixture[str], method: list[str], expected: dict
) -> None:
    stats = _json(capsys, "--paper", *method)["stats"]
    assert {key: stats["settings"][key] for key in expected} == expected
    assert stats["settings"]["temperature"] == 0.0


def test_compare_accepts_recommended_and_labels_every_column(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from localpref.methods import recommended_method

    code, out, _ = run_cli(capsys, "compare", "Hi", "-p", "concise", "--methods",
                           "recommended,amulet", "--max-tokens", "3", "--json")
    assert code == 0
    first, second = (row["stats"]["settings"] for row in json.loads(out)["results"])
    recommended = recommended_method()
    assert (first["contrast"], first["tau"]) == (recommended.contrast, recommended.tau)
    assert (second["contrast"], second["tau"]) == (None, 0.0)
    # --paper: both at the papers' settings, the same answer twice, so refused as such
    code, out, err = run_cli(capsys, "compare", "Hi", "-p", "concise", "--methods",
                             "recommended,amulet", "--max-tokens", "3", "--paper")
    assert (code, out, err) == (2, "", "localpref: --methods names the same method twice "
                                       "(recommended and amulet); give each method once.\n")
    code, out, _ = run_cli(capsys, "compare", "Hi", "-p", "concise", "--methods",
                           "recommended,pad", "--max-tokens", "3", "--paper")
    header = out.splitlines()[0]
    assert "amulet k=4.65" in header and "pad" in header


# -- showing the steering -----------------------------------------------------------------------


def test_highlighting_marks_runs_of_changed_tokens() -> None:
    from localpref.commands.showing import ANSI_CHANGED, ANSI_RESET, highlighted, steering_line

    trace = [{"piece": "The", "changed": False}, {"piece": " best", "changed": True},
             {"piece": " basil", "changed": True}, {"piece": " is", "changed": False},
             {"piece": " green", "changed": True}]
    assert highlighted(trace, ansi=False) == "The [[best basil]] is [[green]]"
    assert highlighted(trace, ansi=True) == (
        f"The {ANSI_CHANGED}best basil{ANSI_RESET} is {ANSI_CHANGED}green{ANSI_RESET}")
    # a changed space alone opens no mark of its own: it goes with the next piece
    assert highlighted([trace[0], {"piece": " ", "changed": True}, {"piece": "x", "changed": False},
                        trace[3]], ansi=False) == "The [[x]] is"
    # a changed token a stop string cut away leaves no piece and no empty mark
    assert highlighted([{"piece": "", "changed": True}], ansi=False) == ""
    # a changed token holding a character's first bytes: the character it ends is marked
    assert highlighted([*trace[:2], {"piece": "", "changed": True},
                        {"piece": " 猫", "changed": False}, trace[3]],
                       ansi=False) == "The [[best 猫]] is"
    line = steering_line({"n_tokens": 96, "changed_tokens": 17, "mean_shift": 0.8149})
    assert line == "steering changed 17 of 96 tokens (mean shift 0.81 nats)"
    assert steering_line({"n_tokens": 1, "changed_tokens": 0, "mean_shift": 0.0}) == (
        "steering changed 0 of 1 token (mean shift 0.00 nats)")


def test_show_steering_highlights_the_changed_tokens(capsys: pytest.CaptureFixture[str]) -> None:
    flags = ["generate", "How do I keep basil alive?", "-p", "concise", "--method", "amulet",
             "--max-tokens", "24"]
    code, out, _ = run_cli(capsys, *flags, "--json", "--trace")
    assert code == 0
    payload = json.loads(out)
    trace, stats = payload["trace"], payload["stats"]
    assert len(trace) == stats["n_tokens"]
    assert "".join(step["piece"] for step in trace) == payload["text"]
    assert stats["changed_tokens"] == sum(step["changed"] for step in trace) > 0
    code, out, _ = run_cli(capsys, *flags, "--show-steering")
    assert code == 0
    shown, last = out.rstrip("\n").rsplit("\n", 1)
    assert shown.replace("[[", "").replace("]]", "") == payload["text"]
    marked = [part.split("]]")[0] for part in shown.split("[[")[1:]]
    runs = [list(group) for changed, group in itertools.groupby(trace, lambda s: s["changed"])
            if changed]  # each run marked without its leading space (a line may break there)
    assert marked == ["".join(step["piece"] for step in run).lstrip() for run in runs]
    assert last == (f"steering changed {stats['changed_tokens']} of {stats['n_tokens']} tokens "
                    f"(mean shift {stats['mean_shift']:.2f} nats)")


def test_one_lane_methods_change_nothing(capsys: pytest.CaptureFixture[str]) -> None:
    payload = _json(capsys, "--method", "pref", "--trace")
    assert payload["trace"] and not any(step["changed"] for step in payload["trace"])
    code, out, _ = run_cli(capsys, "generate", "Hi", "-p", "concise", "--method", "pref",
                           "--max-tokens", "4", "--show-steering")
    assert code == 0
    assert "[[" not in out and out.rstrip().splitlines()[-1].startswith("steering changed 0 of")


def test_avoid_is_in_the_json_and_steers_away(capsys: pytest.CaptureFixture[str]) -> None:
    plain = _json(capsys, "--method", "amulet", "--max-tokens", "24")
    avoided = _json(capsys, "--method", "amulet", "--max-tokens", "24", "--avoid", "verbose",
                    "--avoid", "using lists")
    assert plain["avoid"] is None
    assert avoided["avoid"] and "using lists" in str(avoided["avoid"])
    assert avoided["stats"]["avoid"] == avoided["avoid"]
    assert avoided["text"] != plain["text"]


def test_compare_json_trace_has_one_trace_per_method(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(capsys, "compare", "Hi", "-p", "concise", "--methods",
                           "pref,amulet", "--max-tokens", "6", "--json", "--trace",
                           "--avoid", "verbose")
    assert code == 0
    pref, amulet = json.loads(out)["results"]
    for row in (pref, amulet):
        assert "".join(step["piece"] for step in row["trace"]) == row["text"]
        assert len(row["trace"]) == row["stats"]["n_tokens"]
    assert not any(step["changed"] for step in pref["trace"])
    assert amulet["stats"]["changed_tokens"] == sum(step["changed"] for step in amulet["trace"])
    assert amulet["avoid"] == "verbose"
    assert {"token", "piece", "logprob", "logprob_base", "logprob_pref", "top_base",
            "top_pref", "changed"} <= set(amulet["trace"][0])


def test_chat_refuses_an_empty_avoid_before_opening_the_app(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, err = run_cli(capsys, "chat", "--avoid", "")
    assert code == 2 and out == "" and "--avoid needs a text" in err and err.count("\n") == 1


@pytest.mark.parametrize(("flags", "sentence"), [
    (["--method", "pref", "-p", "concise=2", "-p", "formal"],
     "Weighted preferences steer through a two-lane method (amulet, contrastive or pad); pref "
     "reads one lane."),
    (["--method", "base", "--avoid", "verbose"],
     "Avoid needs a two-lane method (contrastive, amulet or pad) to steer away; base reads one "
     "lane."),
    (["-p", "concise", "--avoid", "Concise"],
     "'concise' is both a preference and what to avoid; steering toward and away from the same "
     "thing changes nothing, so give it as one of them."),
])
def test_chat_refuses_flags_no_answer_could_use_before_opening_the_app(
        capsys: pytest.CaptureFixture[str], flags: list[str], sentence: str) -> None:
    """The app opened, said the settings could not answer with the model, and refused every
    message, where generate refuses the same flags."""
    code, out, err = run_cli(capsys, "chat", *flags)
    assert (code, out, err) == (2, "", f"localpref: {sentence}\n")
    code, _, err = run_cli(capsys, "generate", "Hi", *flags)
    assert (code, err) == (2, f"localpref: {sentence}\n")


def test_chat_reads_its_flags_alone_not_the_apps_default_preference(
        capsys: pytest.CaptureFixture[str]) -> None:
    """--avoid concise was refused as "both a preference and what to avoid": the check read
    the app's default preference (concise), which saved settings replace (diff review)."""
    code, out, err = run_cli(capsys, "chat", "--avoid", "concise")
    assert (code, out) == (2, "") and err.startswith("localpref: The chat app needs a terminal")


def test_a_steering_method_without_anything_to_steer_by_says_it_writes_plain_decoding(
        capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_cli(capsys, "generate", "Hi", "--method", "pad", "--max-tokens", "2",
                             "--json")
    assert code == 0 and json.loads(out)["method"] == "base"
    assert err.strip() == ("localpref: nothing to steer toward (no --preference, --avoid or "
                           "--like), so pad writes plain decoding (base).")
    code, out, err = run_cli(capsys, "generate", "Hi", "--method", "pad", "-p", "concise",
                             "--max-tokens", "2", "--json")
    assert code == 0 and "nothing to steer toward" not in err
    code, _, err = run_cli(capsys, "generate", "Hi", "--max-tokens", "2", "--json")
    assert code == 0 and "nothing to steer toward" not in err  # the default says nothing
    code, out, err = run_cli(capsys, "generate", "Hi", "--opposite", "--max-tokens", "2",
                             "--json")
    assert code == 0 and json.loads(out)["method"] == "base"
    assert err.strip() == ("localpref: nothing to steer toward (no --preference, --avoid or "
                           "--like), so --opposite has no preference to take the opposite of: "
                           "plain decoding (base).")
    code, _, err = run_cli(capsys, "compare", "Hi", "--methods", "pref,pad", "--max-tokens",
                           "2", "--json")
    assert err.strip().endswith("so pref, pad write plain decoding (base).")
    # the recommended steering's settings, with nothing to steer: dropped without a word
    code, out, err = run_cli(capsys, "generate", "Hi", "--strength", "2", "--tau", "0.1",
                             "--max-tokens", "2", "--json")
    assert code == 0 and json.loads(out)["method"] == "base"
    assert err.strip() == ("localpref: nothing to steer toward (no --preference, --avoid or "
                           "--like), so --strength, --tau set nothing: plain decoding (base).")
    for preferences in (["harmless"], ["like a pirate"], ["concise=0", "pirate"]):
        code, _, err = run_cli(capsys, "generate", "Hi", *[f"-p={p}" for p in preferences],
                               "--opposite", "--max-tokens", "2", "--json")
        assert code == 0 and err.strip() == (  # nothing has an opposite to read
            "localpref: --opposite adds nothing here: none of these preferences has an "
            "opposite to read (only built-in ones do, but harmless, and weighted only above "
            "0), so the base lane stays neutral.")
    code, out, err = run_cli(capsys, "generate", "Hi", "-p", "concise", "--avoid", "formal",
                             "--opposite", "--max-tokens", "2", "--json")
    assert code == 0 and not json.loads(out)["stats"]["opposite"]  # (it was dropped unsaid)
    assert err.strip() == ("localpref: --opposite adds nothing here: the base lane reads the "
                           "--avoid text (an avoid given wins over the opposites).")
    code, _, err = run_cli(capsys, "generate", "Hi", "-p", "harmless", "-p", "concise",
                           "--opposite", "--max-tokens", "2", "--json")
    assert code == 0 and err == ""  # concise's opposite, verbose, is read
    code, _, err = run_cli(capsys, "generate", "Hi", "-p", "concise", "--max-tokens", "2",
                           "--json")  # the recommended steering: nothing to say
    assert code == 0 and err == ""


@pytest.mark.parametrize(("methods", "sentence"), [
    ("base,amulet,Base", "--methods names Base twice; give each method once."),
    ("base,plain,amulet", "--methods names the same method twice (base and plain); give each "
                          "method once."),
])
def test_compare_refuses_a_method_named_twice(capsys: pytest.CaptureFixture[str], methods: str,
                                              sentence: str) -> None:
    code, out, err = run_cli(capsys, "compare", "Hi", "-p", "concise", "--methods", methods)
    assert (code, out, err) == (2, "", f"localpref: {sentence}\n")


def test_base_with_a_preference_says_it_does_not_read_it(
        capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """--like with -m base was dropped without a word (--avoid is refused: it has no lane)."""
    example = tmp_path / "like.txt"
    example.write_text("Short answers.")
    for flags in (["-p", "concise"], ["--like", str(example)]):
        code, out, err = run_cli(capsys, "generate", "Hi", "-m", "base", *flags,
                                 "--max-tokens", "2", "--json")
        assert code == 0 and json.loads(out)["method"] == "base"
        assert err.strip() == ("localpref: base is plain decoding, the reference: it does not "
                               "read --preference or --like (give another --method to steer).")
    code, out, err = run_cli(capsys, "generate", "Hi", "-m", "base", "-p", "concise=1",
                             "--max-tokens", "2")  # weight 1 is the preference itself
    assert code == 0 and "does not read --preference" in err
    code, out, err = run_cli(capsys, "generate", "Hi", "-m", "base", "-p", "concise=0.5",
                             "--max-tokens", "2")  # refused: the refusal alone is said
    assert code == 2 and out == "" and err.strip() == (
        "localpref: Weighted preferences steer through a two-lane method (amulet, contrastive "
        "or pad); base reads one lane.")


@pytest.mark.parametrize(("command", "flags", "sentence"), [
    ("generate", ["--trace"], "--trace adds each token's record to the JSON object"),
    ("compare", ["--trace"], "--trace adds each token's record to the JSON object"),
    ("generate", ["--show-steering", "--json"], "--show-steering prints the answer for reading"),
])
def test_a_display_option_that_would_do_nothing_is_one_sentence(
        capsys: pytest.CaptureFixture[str], command: str, flags: list[str],
        sentence: str) -> None:
    code, out, err = run_cli(capsys, command, "Hi", "-p", "concise", *flags)
    assert code == 2 and out == "" and err.startswith(f"localpref: {sentence}")
    assert len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("command", [["generate", "Hi"], ["generate", "Hi", "--json"],
                                     ["compare", "Hi", "--methods", "base"]])
def test_a_full_disk_is_one_sentence(command: list[str]) -> None:
    """Output to a full disk (/dev/full) was a traceback ending in OSError."""
    with open("/dev/full", "w") as full:
        done = subprocess.run([sys.executable, "-m", "localpref.cli", *command,
                               "--max-tokens", "4", "--threads", "1"],
                              stdout=full, stderr=subprocess.PIPE, text=True, timeout=120)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1] == (
        "localpref: Cannot write the output: No space left on device.")
    assert "Traceback" not in done.stderr


_STDOUT_CLOSED = "Cannot write the output: standard output is closed; redirect it to a file"
_ANSWER = ["--max-tokens", "4", "--threads", "1"]


@pytest.mark.parametrize(("command", "closed", "sentence"), [
    (["generate", "Hi", *_ANSWER], ">&-", _STDOUT_CLOSED),
    (["compare", "Hi", "--methods", "base", *_ANSWER], ">&-", _STDOUT_CLOSED),
    (["generate", "-", *_ANSWER], "<&-", "The prompt is - but standard input is closed; pipe "
                                         "the prompt in, e.g. cat notes.txt | localpref "
                                         "generate -."),
    # what these print is their whole output: it went nowhere, exit code 0 (a script's
    # p=$(localpref models path X) read an empty path)
    (["models", "path", "smollm2-135m-instruct"], ">&-", _STDOUT_CLOSED),
    (["models", "list", "--json"], ">&-", _STDOUT_CLOSED),
    (["doctor", "--json", "--threads", "1"], ">&-", _STDOUT_CLOSED),
    (["bench", "--max-tokens", "4", "--repeat", "1"], ">&-", _STDOUT_CLOSED),
])
def test_a_closed_standard_stream_is_one_sentence(command: list[str], closed: str,
                                                  sentence: str) -> None:
    """Started with stdout or stdin closed, Python's stream is None: the first write or read
    was a traceback (AttributeError) and exit code 1."""
    line = " ".join(shlex.quote(part) for part in [sys.executable, "-m", "localpref.cli",
                                                   *command])
    done = subprocess.run(["bash", "-c", f"exec {line} {closed}"], stderr=subprocess.PIPE,
                          text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().startswith(f"localpref: {sentence}")
    assert len(done.stderr.strip().splitlines()) == 1 and "Traceback" not in done.stderr


def test_an_encoding_without_the_answers_characters_keeps_the_json_whole() -> None:
    """PYTHONIOENCODING=ascii: a character it lacks (the prompt, echoed in compare's JSON, or
    an emoji in an answer) ended the command with a traceback, then became "?"; the JSON
    escapes it now."""
    done = subprocess.run([sys.executable, "-m", "localpref.cli", "compare", "Café?",
                           "--methods", "base", "--max-tokens", "3", "--threads", "1", "--json"],
                          capture_output=True, env={**os.environ, "PYTHONIOENCODING": "ascii"},
                          timeout=120)
    assert done.returncode == 0 and b"Traceback" not in done.stderr
    assert json.loads(done.stdout)["prompt"] == "Café?" and b"Caf\\u00e9?" in done.stdout


@pytest.mark.parametrize(("env", "coloured"), [({}, True), ({"NO_COLOR": "1"}, False),
                                               ({"TERM": "dumb"}, False)])
def test_show_steering_colours_a_terminal_unless_told_not_to(env: dict[str, str],
                                                             coloured: bool) -> None:
    """On a real terminal the changed tokens are coloured, but NO_COLOR (no-color.org) and
    TERM=dumb get the [[...]] markers (both were ignored)."""
    main, secondary = pty.openpty()
    try:
        done = subprocess.run(
            [sys.executable, "-m", "localpref.cli", "generate", "How do I keep basil alive?",
             "-p", "concise", "--max-tokens", "24", "--threads", "1", "--show-steering"],
            stdout=secondary, stderr=subprocess.PIPE, timeout=120,
            env={**{k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "TERM")},
                 "TERM": "xterm", **env})
        os.close(secondary)
        secondary = -1
        shown = b""
        while True:
            try:
                chunk = os.read(main, 4096)
            except OSError:  # the terminal's other side closed: all read
                break
            if not chunk:
                break
            shown += chunk
    finally:
        os.close(main)
        if secondary >= 0:
            os.close(secondary)
    assert done.returncode == 0
    assert (b"\x1b[" in shown) is coloured and (b"[[" in shown) is not coloured


def test_json_stays_whole_on_a_stdout_that_is_not_utf8(monkeypatch: pytest.MonkeyPatch) -> None:
    """Under PYTHONIOENCODING=ascii the JSON's "☕" became "?" (what stdout cannot encode is
    replaced): it is escaped instead, and left as it is on UTF-8."""
    import io

    from localpref.commands.showing import json_line

    value = {"text": "café ☕"}
    monkeypatch.setattr("sys.stdout", io.TextIOWrapper(io.BytesIO(), encoding="ascii"))
    assert json_line(value) == '{"text": "caf\\u00e9 \\u2615"}'
    monkeypatch.setattr("sys.stdout", io.TextIOWrapper(io.BytesIO(), encoding="utf-8"))
    assert json_line(value) == '{"text": "café ☕"}'
