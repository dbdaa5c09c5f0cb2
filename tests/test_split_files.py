"""Split GGUF files (``NAME-00001-of-00003.gguf``...): the first part stands for the model,
which loads and answers as the same model in one file; a later part or a missing one is one
sentence; LM Studio's listing shows the model once."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from localpref import cli
from localpref.api import Model
from localpref.errors import ModelError
from localpref.models.stores import lmstudio_models
from localpref.split_files import is_later_part, part_names, split_part
from localpref.synthetic import SyntheticShape, write_synthetic_llama


def test_part_names() -> None:
    assert split_part("Qwen2.5-7B-Q4_K_M-00002-of-00003.gguf") == (2, 3)
    assert split_part("model.gguf") is None and split_part("x-00004-of-00003.gguf") is None
    assert is_later_part("a-00002-of-00002.GGUF") and not is_later_part("a-00001-of-00002.gguf")
    assert part_names("m-00002-of-00003.gguf") == [
        "m-00001-of-00003.gguf", "m-00002-of-00003.gguf", "m-00003-of-00003.gguf"]
    assert part_names("m.gguf") == ["m.gguf"]


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("split")
    whole = write_synthetic_llama(folder / "whole.gguf", SyntheticShape(), seed=3)
    repo = folder / "lmstudio" / "acme" / "tiny-GGUF"  # as LM Studio keeps models
    repo.mkdir(parents=True)
    first = write_synthetic_llama(repo / "tiny.gguf", SyntheticShape(), seed=3,
                                  split_max_tensors=8)
    assert first.name == "tiny-00001-of-00003.gguf"
    return whole, first


def test_a_split_model_answers_as_the_same_model_in_one_file(models: tuple[Path, Path]) -> None:
    whole, first = models
    answers = []
    for path in (whole, first):
        model = Model(path, n_ctx=256, max_lanes=2, n_threads=1)
        try:
            answers.append(model.generate("Hi", max_tokens=8, ignore_eos=True,
                                          preference="concise").tokens)
        finally:
            model.close()
    assert answers[0] == answers[1] and len(answers[0]) == 8


def test_lm_studio_lists_a_split_model_once(models: tuple[Path, Path]) -> None:
    """Once, as its first part, with the size of every part (as doctor gives it)."""
    _, first = models
    found = lmstudio_models([first.parents[2]])
    assert [model.name for model in found] == ["acme/tiny-GGUF/tiny-00001-of-00003.gguf"]
    every_part = sum(path.stat().st_size for path in first.parent.glob("tiny-*.gguf"))
    assert found[0].size == every_part > 2 * first.stat().st_size


def test_doctor_gives_a_split_model_the_size_of_every_part(
        models: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    _, first = models
    assert cli.main(["doctor", "--json", "--model", str(first)]) in (0, 1)
    report = json.loads(capsys.readouterr().out)
    every_part = sum(path.stat().st_size for path in first.parent.glob("tiny-*.gguf"))
    assert "error" not in report["model"] and report["model"]["size_bytes"] == every_part


def test_a_later_part_in_the_hugging_face_cache_names_the_first(
        models: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """A pattern that matches only a later part of a cached split model is not "not
    downloaded": ``models path`` and ``models remove`` name the first part, as a path does."""
    _, first = models
    snapshot = tmp_path / "hub" / "models--acme--tiny-GGUF" / "snapshots" / "abc"
    snapshot.mkdir(parents=True)
    for part in first.parent.glob("tiny-*.gguf"):
        shutil.copyfile(part, snapshot / part.name)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    sentence = ("localpref: tiny-00002-of-00003.gguf is part 2 of 3 of a split model; give its "
                "first part, tiny-00001-of-00003.gguf.")
    for command in ("path", "remove"):
        assert cli.main(["models", command, "acme/tiny-GGUF:*00002*"]) == 2
        assert capsys.readouterr().err.strip() == sentence
    assert len(list(snapshot.iterdir())) == 3  # nothing removed


def test_a_later_part_or_a_missing_one_is_one_sentence(
        models: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _, first = models
    second = first.with_name("tiny-00002-of-00003.gguf")
    code = cli.main(["generate", "Hi", "--model", str(second), "--threads", "1"])
    assert code == 2 and capsys.readouterr().err.strip() == (
        "localpref: tiny-00002-of-00003.gguf is part 2 of 3 of a split model; give its first "
        "part, tiny-00001-of-00003.gguf.")
    # models path and calibrate resolve the name without loading it, and say it as well
    for command in (["models", "path", str(second)],
                    ["calibrate", "--model", str(second), "--reset"]):
        assert cli.main(command) == 2
        assert "is part 2 of 3 of a split model" in capsys.readouterr().err
    lone = tmp_path / first.name
    lone.write_bytes(first.read_bytes())
    assert cli.main(["models", "path", str(lone)]) == 2
    assert "are not beside it" in capsys.readouterr().err
    with pytest.raises(ModelError) as missing:
        Model(lone, n_ctx=256, max_lanes=1, n_threads=1)
    assert str(missing.value) == (
        f"tiny-00001-of-00003.gguf is the first of 3 parts of a split model, and "
        f"tiny-00002-of-00003.gguf, tiny-00003-of-00003.gguf are not beside it in {tmp_path}.")
    # a later part without its first: the first was named as if it were there
    (tmp_path / "b").mkdir()
    orphan = tmp_path / "b" / second.name
    orphan.write_bytes(second.read_bytes())
    assert cli.main(["generate", "Hi", "--model", str(orphan), "--threads", "1"]) == 2
    assert capsys.readouterr().err.strip() == (
        f"localpref: tiny-00002-of-00003.gguf is part 2 of 3 of a split model, and its first "
        f"part, tiny-00001-of-00003.gguf, is not beside it in {tmp_path / 'b'}; llama.cpp "
        "loads a split model from its first part, with every part beside it.")


def test_a_split_model_counts_every_part_s_tensors_and_is_served_by_its_name(
        models: tuple[Path, Path]) -> None:
    from localpref.gguf_header import read_gguf_header
    from localpref.server.ids import served_model_id
    from localpref.split_files import model_stem

    whole, first = models
    assert read_gguf_header(first).tensor_count == read_gguf_header(whole).tensor_count > 8
    assert served_model_id(str(first), first) == "tiny"
    assert model_stem("tiny-00001-of-00003.gguf") == "tiny"
    assert model_stem("a.b-00004-of-00003.gguf") == "a.b-00004-of-00003"  # not a part
    assert model_stem("model.Q4_K_M.gguf") == "model.Q4_K_M"
