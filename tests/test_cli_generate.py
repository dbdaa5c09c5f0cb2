"""`localpref generate` and `localpref compare`: output contracts and bad input."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from localpref.cli import main
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
    assert set(payload) == {"text", "method", "preference", "model", "stats"}
    assert payload["method"] == "amulet"
    assert payload["preference"] == "concise"
    assert payload["stats"]["n_tokens"] >= 1
    assert payload["text"]


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
    header = out.splitlines()[0]
    assert "base (" in header and "amulet (" in header and "tok/s" in header


def test_compare_json(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(capsys, "compare", "Hi", "-p", "concise", "--methods",
                           "pref,pad", "--max-tokens", "4", "--json")
    assert code == 0
    methods = [row["method"] for row in json.loads(out)["results"]]
    assert methods == ["pref", "pad (prompt-contrast reward)"]


BAD_INPUTS = [
    (["--eta", "0"], "Eta must be greater than 0"),
    (["--lam", "-1"], "Lambda must be 0 or more"),
    (["--iterations", "0"], "Iterations must be a whole number"),
    (["--method", "pad", "--candidates", "0"], "Candidates must be a whole number"),
    (["--temperature", "-0.5"], "Temperature must be 0 or more"),
    (["--top-p", "0"], "Top-p must be in (0, 1]"),
    (["--top-p", "1.5"], "Top-p must be in (0, 1]"),
    (["--method", "nonsense"], "Unknown method 'nonsense'"),
    (["-p", "   "], "A preference must be a non-empty text"),
    (["--max-tokens", "0"], "Max tokens must be a whole number"),
    (["--tau", "1.5"], "Tau must be in [0, 1)"),
    (["--method", "contrastive", "--kl-budget", "0"], "KL budget must be greater than 0"),
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


def test_missing_model_names_the_path(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    missing = tmp_path / "nope.gguf"
    code, _, err = run_cli(capsys, "generate", "Hi", "--model", str(missing))
    assert code == 2 and str(missing) in err and err.count("\n") == 1


def test_corrupt_model_names_the_path(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    corrupt = tmp_path / "corrupt.gguf"
    corrupt.write_bytes(b"GGUF" + os.urandom(64))
    code, _, err = run_cli(capsys, "generate", "Hi", "--model", str(corrupt))
    assert code == 2 and str(corrupt) in err and err.count("\n") == 1


def test_prompt_longer_than_the_context(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_cli(capsys, "generate", "word " * 5000, "--method", "base")
    assert code == 2
    assert "tokens long; the context holds" in err and err.count("\n") == 1


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


def test_ctrl_c_while_streaming_keeps_what_was_printed() -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "localpref.cli", "generate", "Write a long story about a dragon.",
         "--method", "base", "--max-tokens", "2000", "--ignore-eos"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    assert process.stdout is not None
    first = process.stdout.read(40)
    time.sleep(0.3)
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 130
    assert len(first + out) >= 40
    assert "Traceback" not in err
