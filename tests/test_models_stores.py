"""Models already on disk: ollama's store and LM Studio's folders, listed and used in place.

Fake stores in tmp_path hold small synthetic GGUF files; HOME and OLLAMA_MODELS point there.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from localpref import cli, load, models
from localpref.errors import ModelError
from localpref.synthetic import SyntheticShape, write_synthetic_llama

MODEL_LAYER = "application/vnd.ollama.image.model"


@pytest.fixture(scope="module")
def gguf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random-weight llama GGUF that llama.cpp loads."""
    return write_synthetic_llama(tmp_path_factory.mktemp("gguf") / "tiny.gguf",
                                 SyntheticShape(vocab_size=512))


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "home"
    folder.mkdir()
    monkeypatch.setenv("HOME", str(folder))
    monkeypatch.delenv("OLLAMA_MODELS", raising=False)
    return folder


def add_ollama_model(root: Path, source: Path, *parts: str) -> Path:
    """Put ``source`` into an ollama store as manifests/REGISTRY/NAMESPACE/NAME/TAG; the blob."""
    data = source.read_bytes() + "/".join(parts).encode()  # every model its own blob
    digest = hashlib.sha256(data).hexdigest()
    blob = root / "blobs" / f"sha256-{digest}"
    blob.parent.mkdir(parents=True, exist_ok=True)
    blob.write_bytes(data)
    manifest = root.joinpath("manifests", *parts)
    manifest.parent.mkdir(parents=True, exist_ok=True)
    manifest.write_text(json.dumps({
        "schemaVersion": 2,
        "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
        "config": {"mediaType": "application/vnd.docker.container.image.v1+json",
                   "digest": "sha256:" + "0" * 64, "size": 10},
        "layers": [
            {"mediaType": "application/vnd.ollama.image.template", "digest": "sha256:" + "1" * 64,
             "size": 5},
            {"mediaType": MODEL_LAYER, "digest": f"sha256:{digest}", "size": len(data)},
        ],
    }))
    return blob


@pytest.fixture
def ollama(home: Path, gguf: Path) -> dict[str, Path]:
    """~/.ollama/models with three models, and one manifest whose blob is missing."""
    root = home / ".ollama" / "models"
    blobs = {
        "tiny:latest": add_ollama_model(root, gguf, "registry.ollama.ai", "library", "tiny",
                                        "latest"),
        "tiny:q4": add_ollama_model(root, gguf, "registry.ollama.ai", "library", "tiny", "q4"),
        "someone/thing:7b": add_ollama_model(root, gguf, "registry.ollama.ai", "someone",
                                             "thing", "7b"),
        "hf.co/org/repo:Q4_K_M": add_ollama_model(root, gguf, "hf.co", "org", "repo", "Q4_K_M"),
    }
    missing = add_ollama_model(root, gguf, "registry.ollama.ai", "library", "gone", "latest")
    missing.unlink()
    return blobs


@pytest.fixture
def lmstudio(home: Path, gguf: Path) -> dict[str, Path]:
    """LM Studio's folder (and the older one) with three models and a vision projector."""
    files = {
        "pub/Alpha-GGUF/Alpha-Q4_K_M.gguf": home / ".lmstudio" / "models",
        "pub/Alpha-GGUF/Alpha-Q8_0.gguf": home / ".lmstudio" / "models",
        "pub/Alpha-GGUF/mmproj-Alpha-f16.gguf": home / ".lmstudio" / "models",
        "old/Beta-GGUF/beta.Q4_0.gguf": home / ".cache" / "lm-studio" / "models",
    }
    paths = {}
    for name, root in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(gguf, path)
        paths[name] = path
    return paths


def _snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    return {str(p): (p.stat().st_size, p.stat().st_mtime_ns) for p in folder.rglob("*")}


def test_ollama_models_are_listed_by_ollamas_names(ollama: dict[str, Path]) -> None:
    found = models.ollama_models()
    assert [m.name for m in found] == ["hf.co/org/repo:Q4_K_M", "someone/thing:7b", "tiny:latest",
                                       "tiny:q4"]
    assert {m.name: m.path for m in found} == ollama
    assert found[2].spec == "ollama:tiny:latest"
    assert found[2].size == ollama["tiny:latest"].stat().st_size


@pytest.mark.parametrize(("spec", "name"), [
    ("ollama:tiny", "tiny:latest"),
    ("ollama:tiny:latest", "tiny:latest"),
    ("OLLAMA:Tiny:Q4", "tiny:q4"),
    ("ollama:library/tiny:q4", "tiny:q4"),
    ("ollama:someone/thing:7b", "someone/thing:7b"),
    ("ollama:hf.co/org/repo:Q4_K_M", "hf.co/org/repo:Q4_K_M"),
])
def test_ollama_names_resolve_to_the_blob_in_place(ollama: dict[str, Path], spec: str,
                                                   name: str) -> None:
    assert models.resolve_model(spec) == ollama[name]


def test_ollama_models_env_names_the_store(tmp_path: Path, home: Path, gguf: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    elsewhere = tmp_path / "elsewhere"
    blob = add_ollama_model(elsewhere, gguf, "registry.ollama.ai", "library", "other", "latest")
    monkeypatch.setenv("OLLAMA_MODELS", str(elsewhere))
    assert models.ollama_dir() == elsewhere
    assert models.resolve_model("ollama:other") == blob


def test_an_unknown_ollama_name_is_one_sentence_listing_what_is_there(
        ollama: dict[str, Path], home: Path) -> None:
    with pytest.raises(ModelError) as error:
        models.resolve_model("ollama:nope")
    # the models it cannot use are named (why: models list; a store of broken manifests
    # made it a few kilobytes)
    assert str(error.value) == (
        f"No ollama model nope:latest in {home / '.ollama' / 'models'}; it has "
        "hf.co/org/repo:Q4_K_M, someone/thing:7b, tiny:latest, tiny:q4; it cannot use "
        "gone:latest (`localpref models list` says why).")


def test_a_broken_ollama_manifest_is_said_and_never_stops_the_others(
        ollama: dict[str, Path], home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A manifest that is not UTF-8, or whose layers are not a list, raised a traceback
    from every listing and every ``ollama:`` name; and the models ``ollama list`` shows that
    cannot be used were left out of ``models list`` without a word."""
    library = home / ".ollama" / "models" / "manifests" / "registry.ollama.ai" / "library"
    for name, content in (("badutf", b"\xff\xfe\x00"), ("intlayers", b'{"layers": 5}'),
                          ("truelayers", b'{"layers": true}')):
        (library / name).mkdir(parents=True)
        (library / name / "latest").write_bytes(content)
    problems: list[str] = []
    listed = [model.name for model in models.stored_models(problems=problems)]
    assert "tiny:latest" in listed and not any(name in " ".join(listed) for name in (
        "badutf", "intlayers", "gone"))
    for name in ("badutf", "intlayers", "truelayers"):
        sentence = (f"The ollama model {name}:latest cannot be used: its manifest "
                    f"{library / name / 'latest'} cannot be read as ollama writes it.")
        assert sentence in problems
        with pytest.raises(ModelError) as named:
            models.resolve_model(f"ollama:{name}")
        assert str(named.value) == sentence
    assert any(problem.startswith("The ollama model gone:latest cannot be used: its model "
                                  "blob ") for problem in problems)
    assert models.resolve_model("ollama:tiny") == ollama["tiny:latest"]
    assert cli.main(["models", "list"]) == 0
    assert "intlayers:latest cannot be used" in capsys.readouterr().out
    assert cli.main(["models", "list", "--json"]) == 0
    listing = json.loads(capsys.readouterr().out)
    assert any("badutf:latest cannot be used" in problem for problem in listing["problems"])


def test_an_ollama_model_that_is_there_but_unusable_says_why(home: Path, gguf: Path) -> None:
    """``ollama list`` shows these, so "no such model" would mislead: each says what is
    wrong with it instead."""
    root = home / ".ollama" / "models"
    gone = add_ollama_model(root, gguf, "registry.ollama.ai", "library", "gone", "latest")
    gone.unlink()
    add_ollama_model(root, gguf, "registry.ollama.ai", "library", "torn", "latest")
    (root / "manifests" / "registry.ollama.ai" / "library" / "torn" / "latest").write_text("{")
    licence = root / "manifests" / "registry.ollama.ai" / "library" / "licence" / "latest"
    licence.parent.mkdir(parents=True)
    licence.write_text(json.dumps({"layers": [
        {"mediaType": "application/vnd.ollama.image.license", "digest": "sha256:" + "2" * 64}]}))
    for name, why in (
            ("gone", f"its model blob {gone.name} is missing (`ollama pull` it again)"),
            ("torn", f"its manifest {root / 'manifests' / 'registry.ollama.ai' / 'library'}"
                     "/torn/latest cannot be read as ollama writes it"),
            ("licence", "its manifest has no model layer (nothing localpref can load)")):
        with pytest.raises(ModelError) as error:
            models.resolve_model(f"ollama:{name}")
        assert str(error.value) == f"The ollama model {name}:latest cannot be used: {why}."
    for name, content in (("text", b"not a model, a 34-byte text blob.\n"), ("empty", b"")):
        blob = add_ollama_model(root, gguf, "registry.ollama.ai", "library", name, "latest")
        blob.write_bytes(content)  # listed, it failed on use ("bad magic")
        with pytest.raises(ModelError) as not_gguf:
            models.resolve_model(f"ollama:{name}")
        assert str(not_gguf.value) == (f"The ollama model {name}:latest cannot be used: its "
                                       f"model blob {blob.name} is not a GGUF file.")
        assert f"{name}:latest" not in [model.name for model in models.stored_models()]
    cut = add_ollama_model(root, gguf, "registry.ollama.ai", "library", "cut", "latest")
    cut.write_bytes(cut.read_bytes()[:2])  # a blob's name says nothing of its model: the name
    with pytest.raises(ModelError) as truncated:
        models.resolve_model("ollama:cut")
    assert str(truncated.value) == (f"ollama:cut cannot be used: {cut} is truncated: it ends "
                                    "inside the GGUF header.")


def test_missing_stores_hold_nothing_and_are_no_error(home: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    assert models.ollama_models() == [] and models.lmstudio_models() == []
    assert cli.main(["models", "list", "--json"]) == 0
    listing = json.loads(capsys.readouterr().out)
    assert listing["ollama"] == {"dir": str(home / ".ollama" / "models"), "models": []}
    assert listing["lmstudio"]["models"] == []
    assert cli.main(["models", "path", "ollama:llama3.2"]) == 2
    assert capsys.readouterr().err.strip() == (
        f"localpref: No ollama model llama3.2:latest in {home / '.ollama' / 'models'}; "
        "that folder does not exist.")


def test_lmstudio_models_are_listed_without_vision_projectors(
        lmstudio: dict[str, Path]) -> None:
    found = models.lmstudio_models()
    assert [m.name for m in found] == ["old/Beta-GGUF/beta.Q4_0.gguf",
                                       "pub/Alpha-GGUF/Alpha-Q4_K_M.gguf",
                                       "pub/Alpha-GGUF/Alpha-Q8_0.gguf"]
    assert all(m.path == lmstudio[m.name] for m in found)


@pytest.mark.parametrize(("pattern", "name"), [
    ("lmstudio:alpha-q4_k_m", "pub/Alpha-GGUF/Alpha-Q4_K_M.gguf"),
    ("lmstudio:*Q8_0.gguf", "pub/Alpha-GGUF/Alpha-Q8_0.gguf"),
    ("LMStudio:beta", "old/Beta-GGUF/beta.Q4_0.gguf"),
])
def test_lmstudio_patterns_resolve_to_the_file_in_place(lmstudio: dict[str, Path], pattern: str,
                                                        name: str) -> None:
    assert models.resolve_model(pattern) == lmstudio[name]


def test_an_lmstudio_pattern_matching_several_or_none_is_one_sentence(
        lmstudio: dict[str, Path]) -> None:
    with pytest.raises(ModelError, match=r"^'alpha' matches 2 LM Studio models "
                       r"\(pub/Alpha-GGUF/Alpha-Q4_K_M.gguf, pub/Alpha-GGUF/Alpha-Q8_0.gguf\); "):
        models.resolve_model("lmstudio:alpha")
    with pytest.raises(ModelError, match=r"^No LM Studio model matches 'gamma' in .*; it has "
                       r"old/Beta-GGUF/beta.Q4_0.gguf, pub/Alpha-GGUF/Alpha-Q4_K_M.gguf, "
                       r"pub/Alpha-GGUF/Alpha-Q8_0.gguf\.$"):
        models.resolve_model("lmstudio:gamma")


def test_a_name_as_listed_resolves_even_with_brackets(lmstudio: dict[str, Path],
                                                     home: Path, gguf: Path) -> None:
    """``[`` opens a glob class: a listed name that holds one is taken as it is first."""
    path = home / ".lmstudio" / "models" / "pub" / "repo" / "smol [Q4_1].gguf"
    path.parent.mkdir(parents=True)
    shutil.copyfile(gguf, path)
    assert "pub/repo/smol [Q4_1].gguf" in [m.name for m in models.lmstudio_models()]
    assert models.resolve_model("lmstudio:pub/repo/smol [Q4_1].gguf") == path


def test_models_list_shows_both_stores(ollama: dict[str, Path], lmstudio: dict[str, Path],
                                       capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["models", "list"]) == 0
    out = capsys.readouterr().out
    assert "ollama:tiny:latest" in out and str(ollama["tiny:latest"]) in out
    assert "lmstudio:pub/Alpha-GGUF/Alpha-Q8_0.gguf" in out
    assert cli.main(["models", "list", "--json", "--verbose"]) == 0
    listing = json.loads(capsys.readouterr().out)
    specs = [item["spec"] for item in listing["ollama"]["models"]]
    assert specs == ["ollama:hf.co/org/repo:Q4_K_M", "ollama:someone/thing:7b",
                     "ollama:tiny:latest", "ollama:tiny:q4"]
    assert listing["lmstudio"]["models"][0]["header"]["vocab_size"] == 512


def test_a_stored_model_is_loaded_and_run_in_place_and_never_removed(
        ollama: dict[str, Path], lmstudio: dict[str, Path], home: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    before = _snapshot(home)
    loaded = load("ollama:tiny", n_ctx=256, max_lanes=1)
    try:
        assert loaded.path == ollama["tiny:latest"]
        assert len(loaded.generate("w1 w2", method="base", max_tokens=3).tokens) == 3
    finally:
        loaded.close()
    code = cli.main(["generate", "w1", "--model", "lmstudio:q8", "--method", "base",
                     "--max-tokens", "2", "--ctx", "256", "--json"])
    assert code == 0 and json.loads(capsys.readouterr().out)["stats"]["n_tokens"] == 2
    assert cli.main(["models", "remove", "ollama:tiny"]) == 2
    assert capsys.readouterr().err.strip() == (
        "localpref: ollama:tiny belongs to ollama, which localpref only reads; remove it with "
        "ollama.")
    assert _snapshot(home) == before


def test_removing_a_store_s_model_says_whether_the_store_keeps_it(
        ollama: dict[str, Path], home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`models remove ollama:nope` said "belongs to ollama" of a model ollama does not keep,
    and a name typed as ollama shows it was "Unknown model" (`models path` pointed there)."""
    assert cli.main(["models", "remove", "ollama:nope"]) == 2
    assert capsys.readouterr().err.strip().startswith(
        "localpref: No ollama model nope:latest in ")
    assert cli.main(["models", "remove", "tiny:q4"]) == 2
    assert capsys.readouterr().err.strip() == (
        "localpref: ollama:tiny:q4 belongs to ollama, which localpref only reads; remove it "
        "with ollama.")
    assert cli.main(["models", "pull", "ollama:tiny:q4"]) == 0  # (the path, as before)
    out, err = capsys.readouterr()
    assert out.strip() == str(ollama["tiny:q4"])
    assert err.strip() == ("localpref: nothing to download: ollama:tiny:q4 is ollama's, and "
                           "read where it is.")


def test_the_app_picker_offers_the_stored_models(ollama: dict[str, Path],
                                                 lmstudio: dict[str, Path]) -> None:
    from tui.screens.models import model_rows

    rows, problems = model_rows(ollama["tiny:latest"])
    by_spec = {row.spec: row for row in rows}
    assert by_spec["ollama:tiny:latest"].loaded
    assert by_spec["ollama:tiny:latest"].detail.startswith("ollama · used in place · ")
    assert by_spec["lmstudio:pub/Alpha-GGUF/Alpha-Q8_0.gguf"].detail.startswith(
        "LM Studio · used in place · ")
    assert not by_spec["lmstudio:pub/Alpha-GGUF/Alpha-Q8_0.gguf"].loaded


def test_an_ollama_name_prefers_its_own_case_and_says_when_case_alone_is_ambiguous(
        ollama: dict[str, Path], home: Path, gguf: Path) -> None:
    """ollama keeps ``Tiny`` and ``tiny`` apart: the exact name is that model, never the
    other; a name matching both only without case is one sentence."""
    root = home / ".ollama" / "models"
    upper = add_ollama_model(root, gguf, "registry.ollama.ai", "library", "Tiny", "latest")
    assert models.resolve_model("ollama:Tiny") == upper
    assert models.resolve_model("ollama:tiny") == ollama["tiny:latest"]
    with pytest.raises(ModelError) as ambiguous:
        models.resolve_model("ollama:TINY")
    assert str(ambiguous.value) == ("ollama:TINY:latest matches 2 ollama models (Tiny:latest, "
                                    "tiny:latest); give the name as `models list` shows it.")


def test_lmstudio_follows_linked_folders_once(home: Path, gguf: Path, tmp_path: Path) -> None:
    """A publisher folder kept on another drive and linked in is listed; a link that loops
    is walked once."""
    drive = tmp_path / "drive" / "pub"
    (drive / "Far-GGUF").mkdir(parents=True)
    shutil.copyfile(gguf, drive / "Far-GGUF" / "far.Q4_0.gguf")
    (drive / "Far-GGUF" / "loop").symlink_to(drive)
    root = home / ".lmstudio" / "models"
    root.mkdir(parents=True)
    (root / "pub").symlink_to(drive)
    assert [model.name for model in models.stored_models()] == ["pub/Far-GGUF/far.Q4_0.gguf"]
    assert models.resolve_model("lmstudio:far") == root / "pub" / "Far-GGUF" / "far.Q4_0.gguf"


def test_a_second_lmstudio_name_linked_to_a_listed_file_is_listed_and_resolves(
        home: Path, gguf: Path) -> None:
    """A file linked under a second name was left out as a repeat of the first; and both of
    LM Studio's folders being one folder lists each file once."""
    root = home / ".lmstudio" / "models"
    first = root / "pubA" / "Smol-GGUF" / "smol.Q4_0.gguf"
    first.parent.mkdir(parents=True)
    shutil.copyfile(gguf, first)
    second = root / "pubB" / "Other-GGUF" / "other.Q4_0.gguf"
    second.parent.mkdir(parents=True)
    second.symlink_to(first)
    (home / ".cache" / "lm-studio").mkdir(parents=True)
    (home / ".cache" / "lm-studio" / "models").symlink_to(root)
    assert [model.name for model in models.stored_models()] == [
        "pubA/Smol-GGUF/smol.Q4_0.gguf", "pubB/Other-GGUF/other.Q4_0.gguf"]
    assert models.resolve_model("lmstudio:pubB/Other-GGUF/other.Q4_0.gguf") == second


def test_one_lmstudio_name_for_two_files_is_one_sentence_naming_both(
        lmstudio: dict[str, Path], home: Path, gguf: Path) -> None:
    """The same name in both LM Studio folders, or names that differ only in case, never
    pick one of the files silently."""
    older = home / ".cache" / "lm-studio" / "models" / "pub" / "Alpha-GGUF" / "Alpha-Q8_0.gguf"
    older.parent.mkdir(parents=True)
    shutil.copyfile(gguf, older)
    newer = lmstudio["pub/Alpha-GGUF/Alpha-Q8_0.gguf"]
    with pytest.raises(ModelError) as twice:
        models.resolve_model("lmstudio:pub/Alpha-GGUF/Alpha-Q8_0.gguf")
    assert str(twice.value) == (f"lmstudio:pub/Alpha-GGUF/Alpha-Q8_0.gguf names 2 files "
                                f"({newer}, {older}); give the path of the one to use.")
    lower = home / ".lmstudio" / "models" / "pub" / "alpha-gguf" / "alpha-q4_k_m.gguf"
    lower.parent.mkdir(parents=True)
    shutil.copyfile(gguf, lower)
    assert models.resolve_model("lmstudio:pub/alpha-gguf/alpha-q4_k_m.gguf") == lower
    assert (models.resolve_model("lmstudio:pub/Alpha-GGUF/Alpha-Q4_K_M.gguf")
            == lmstudio["pub/Alpha-GGUF/Alpha-Q4_K_M.gguf"])
    with pytest.raises(ModelError, match=r"names 2 files \("):
        models.resolve_model("lmstudio:PUB/ALPHA-GGUF/ALPHA-Q4_K_M.GGUF")


@pytest.mark.parametrize(("typed", "pointer"), [
    ("tiny", "ollama keeps it: give --model ollama:tiny:latest."),
    ("someone/thing:7b", "ollama keeps it: give --model ollama:someone/thing:7b."),
    ("hf.co/org/repo:Q4_K_M", "ollama keeps it: give --model ollama:hf.co/org/repo:Q4_K_M."),
    ("old/Beta-GGUF", "LM Studio keeps it: give --model lmstudio:old/Beta-GGUF/beta.Q4_0.gguf"),
    ("beta.Q4_0.gguf", "LM Studio keeps it: give --model lmstudio:old/Beta-GGUF/beta.Q4_0.gguf."),
    ("pub/Alpha-GGUF:*Q8_0*",  # the one file of that folder the pattern picks
     "LM Studio keeps it: give --model lmstudio:pub/Alpha-GGUF/Alpha-Q8_0.gguf"),
])
def test_a_model_typed_as_its_tool_shows_it_points_to_that_tool(
        ollama: dict[str, Path], lmstudio: dict[str, Path], typed: str, pointer: str,
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Without ``ollama:`` / ``lmstudio:`` the name never loads a store's file, but the
    sentence says which tool keeps it, never to download it again."""
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # a download would fail loudly
    for download in (False, True):  # `models path`, and `generate` / `serve`
        with pytest.raises(ModelError) as error:
            models.resolve_model(typed, download=download)
        assert pointer in str(error.value)
        assert "models pull" not in str(error.value).split(" (or")[0]


def test_models_pull_downloads_what_a_store_keeps_under_that_name(
        ollama: dict[str, Path], monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """``models pull`` asks for a copy of its own: no pointer to the store."""
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    with pytest.raises(ModelError) as error:
        models.resolve_model("someone/thing:7b", download=False, stores_first=False)
    assert str(error.value) == ("someone/thing:7b is not downloaded; run `localpref models pull "
                                "someone/thing:7b` first.")


def test_a_name_no_tool_keeps_gets_no_pointer(ollama: dict[str, Path],
                                              lmstudio: dict[str, Path]) -> None:
    with pytest.raises(ModelError) as error:
        models.resolve_model("nothing-like-it")
    assert "keeps it" not in str(error.value) and str(error.value).startswith("Unknown model")
    with pytest.raises(ModelError) as other_file:  # LM Studio keeps another quantization
        models.resolve_model("old/Beta-GGUF:*Q8_0*", download=False)
    assert "keeps it" not in str(other_file.value)


def test_an_ollama_model_is_served_by_ollamas_name(ollama: dict[str, Path]) -> None:
    from localpref.server.ids import listed_ids, served_model_id

    assert served_model_id("ollama:tiny", ollama["tiny:latest"]) == "tiny:latest"
    assert served_model_id("ollama:TINY:q4", ollama["tiny:q4"]) == "tiny:q4"
    assert served_model_id("ollama:someone/thing:7b",
                           ollama["someone/thing:7b"]) == "someone/thing:7b"
    assert listed_ids("tiny:latest")[1].startswith("tiny:latest:")


def test_a_later_part_of_a_split_model_named_in_lmstudio_points_to_its_first_part(
        lmstudio: dict[str, Path], home: Path, gguf: Path) -> None:
    """A split model is listed by its first part; naming a later part said "no match"."""
    folder = home / ".lmstudio" / "models" / "pub" / "Gamma-GGUF"
    folder.mkdir(parents=True)
    for name in ("Gamma-00001-of-00002.gguf", "Gamma-00002-of-00002.gguf",
                 "Orphan-00002-of-00002.gguf"):
        shutil.copyfile(gguf, folder / name)
    with pytest.raises(ModelError, match=re.escape(
            "Gamma-00002-of-00002.gguf is part 2 of 2 of a split model; give its first part: "
            "lmstudio:pub/Gamma-GGUF/Gamma-00001-of-00002.gguf.")):
        models.resolve_model("lmstudio:Gamma-00002-of-00002.gguf")
    with pytest.raises(ModelError, match=re.escape(
            "Orphan-00002-of-00002.gguf is part 2 of 2 of a split model; its first part, "
            f"Orphan-00001-of-00002.gguf, is not beside it in {folder}.")):
        models.resolve_model("lmstudio:orphan")
    assert models.resolve_model("lmstudio:gamma") == folder / "Gamma-00001-of-00002.gguf"


def test_a_split_model_missing_a_part_is_not_listed_and_says_why(
        lmstudio: dict[str, Path], home: Path, gguf: Path) -> None:
    """Listed, a split model without all its parts failed on use: it is left out with the
    sentence its use would give, which naming it also gives."""
    folder = home / ".lmstudio" / "models" / "split" / "broken"
    folder.mkdir(parents=True)
    for name in ("bk-00001-of-00003.gguf", "bk-00002-of-00003.gguf"):
        shutil.copyfile(gguf, folder / name)
    problems: list[str] = []
    listed = [model.name for model in models.stored_models(problems=problems)]
    assert not any("bk-" in name for name in listed) and "pub/Alpha-GGUF/Alpha-Q8_0.gguf" in listed
    why = (f"bk-00001-of-00003.gguf is the first of 3 parts of a split model, and "
           f"bk-00003-of-00003.gguf is not beside it in {folder}.")
    assert problems == [f"The LM Studio model split/broken/bk-00001-of-00003.gguf cannot be "
                        f"used: {why}"]
    for name in ("bk", "split/broken/bk-00001-of-00003.gguf"):
        with pytest.raises(ModelError) as named:
            models.resolve_model(f"lmstudio:{name}")
        assert str(named.value) == problems[0]
    shutil.copyfile(gguf, folder / "ok.gguf")  # a pattern that fits both was quietly "ok"
    with pytest.raises(ModelError) as both:
        models.resolve_model("lmstudio:split/broken")
    assert str(both.value).startswith("'split/broken' matches 2 LM Studio models "
                                      "(split/broken/bk-00001-of-00003.gguf, "
                                      "split/broken/ok.gguf; the LM Studio model "
                                      "split/broken/bk-00001-of-00003.gguf cannot be used: ")
    assert models.resolve_model("lmstudio:ok.gguf") == folder / "ok.gguf"
    older = home / ".cache" / "lm-studio" / "models"  # the older folder, a link to the new
    shutil.rmtree(older)
    older.symlink_to(home / ".lmstudio" / "models")
    problems = []
    models.stored_models(problems=problems)
    assert len(problems) == 1 and problems[0].endswith(why)  # once, not once per folder


def test_a_name_several_stored_models_fit_points_to_each_never_to_a_download(
        ollama: dict[str, Path], lmstudio: dict[str, Path], home: Path, gguf: Path,
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Two files in an LM Studio folder, one file in both of LM Studio's folders, two ollama
    names that differ only in case: the sentence gives each ``--model`` (a path each where
    their names are one), not a download of what is on the disk already."""
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # a download would fail loudly
    with pytest.raises(ModelError) as folder:
        models.resolve_model("pub/Alpha-GGUF")
    assert str(folder.value) == (
        "pub/Alpha-GGUF:*.gguf is not in the Hugging Face cache, but LM Studio keeps 2 models "
        "it may name: give --model lmstudio:pub/Alpha-GGUF/Alpha-Q4_K_M.gguf or --model "
        "lmstudio:pub/Alpha-GGUF/Alpha-Q8_0.gguf (or `localpref models pull "
        "'pub/Alpha-GGUF:*.gguf'` for a copy of its own).")
    older = home / ".cache" / "lm-studio" / "models" / "pub" / "Alpha-GGUF" / "Alpha-Q8_0.gguf"
    older.parent.mkdir(parents=True)
    shutil.copyfile(gguf, older)
    newer = lmstudio["pub/Alpha-GGUF/Alpha-Q8_0.gguf"]
    with pytest.raises(ModelError) as both_folders:
        models.resolve_model("pub/Alpha-GGUF:*Q8_0*", download=False)
    assert f"LM Studio keeps 2 models it may name: give --model {newer} or --model {older}" \
        in str(both_folders.value)
    with pytest.raises(ModelError) as by_pattern:
        models.resolve_model("lmstudio:Alpha-Q8_0")
    assert str(by_pattern.value) == (f"'Alpha-Q8_0' matches 2 LM Studio files ({newer}, "
                                     f"{older}); give the path of the one to use.")
    root = home / ".ollama" / "models"
    add_ollama_model(root, gguf, "registry.ollama.ai", "library", "Tiny", "latest")
    with pytest.raises(ModelError) as cased:
        models.resolve_model("TINY")
    assert str(cased.value) == (
        "'TINY' is not a file, a catalog name or a Hugging Face repo, but ollama keeps 2 models "
        "it may name: give --model ollama:Tiny:latest or --model ollama:tiny:latest.")


def test_an_ollama_model_with_an_adapter_is_not_used_without_it(home: Path,
                                                                gguf: Path) -> None:
    """ollama applies an adapter layer (a LoRA) over the model's weights: the weights alone
    are another model, so it is neither listed nor loaded."""
    root = home / ".ollama" / "models"
    add_ollama_model(root, gguf, "registry.ollama.ai", "library", "tuned", "latest")
    manifest = root / "manifests" / "registry.ollama.ai" / "library" / "tuned" / "latest"
    body = json.loads(manifest.read_text())
    body["layers"].append({"mediaType": "application/vnd.ollama.image.adapter",
                           "digest": "sha256:" + "3" * 64, "size": 10})
    manifest.write_text(json.dumps(body))
    add_ollama_model(root, gguf, "registry.ollama.ai", "library", "plain", "latest")
    assert [model.name for model in models.ollama_models()] == ["plain:latest"]
    with pytest.raises(ModelError) as error:
        models.resolve_model("ollama:tuned")
    assert str(error.value) == (
        "The ollama model tuned:latest cannot be used: it carries an adapter (LoRA) that "
        "ollama applies over its weights, which localpref does not apply.")


#: what a user's shell may not read, as root too: the capabilities to read any folder dropped
AS_A_USER = (["setpriv", "--bounding-set", "-dac_override,-dac_read_search"]
             if os.geteuid() == 0 else [])

_LISTED_UNREADABLE = """
import json, os
from pathlib import Path
from localpref import models
from localpref.errors import ModelError
problems = []
report = {"cached": [m.spec for m in models.cached_models(problems=problems)],
          "stored": sorted(m.name for m in models.stored_models(problems=problems)),
          "problems": problems, "shut_hub": []}
shut_hub = Path(os.environ["SHUT_HUB"])
report["shut_hub_listed"] = models.cached_models(shut_hub, problems=report["shut_hub"])
for spec in ("org/Locked-GGUF", "org/Inner-GGUF:inner*", "org/Inner-GGUF:outer*",
             "lmstudio:nothing-like-it", "ollama:tiny:q4"):
    try:
        report[spec] = str(models.resolve_model(spec))
    except ModelError as error:
        report[spec] = str(error)
print(json.dumps(report))
"""


@pytest.mark.skipif(bool(AS_A_USER) and shutil.which("setpriv") is None,
                    reason="root without setpriv reads every folder")
def test_a_folder_that_cannot_be_read_leaves_its_models_out_and_says_so(
        ollama: dict[str, Path], lmstudio: dict[str, Path], home: Path, gguf: Path,
        tmp_path: Path) -> None:
    """One unreadable folder (a repository's in the Hugging Face cache, one of LM Studio's)
    leaves its models out of the listing with a sentence, never a traceback, and the other
    stores are listed (run in a process that reads folders as a user does)."""
    hub = tmp_path / "hub"
    locked = hub / "models--org--Locked-GGUF" / "snapshots"
    locked.mkdir(parents=True)
    inner = hub / "models--org--Inner-GGUF" / "snapshots" / "abc" / "sub"
    inner.mkdir(parents=True)
    shutil.copyfile(gguf, inner / "inner.Q4_0.gguf")
    shutil.copyfile(gguf, inner.parent / "outer.Q4_0.gguf")
    shut = home / ".lmstudio" / "models" / "shut"
    shut.mkdir()
    (home / ".lmstudio" / "models" / "also-shut").symlink_to(shut)  # one folder, two paths
    shut_hub = tmp_path / "shut-hub"
    shut_hub.mkdir()
    manifest = home / ".ollama" / "models" / "manifests" / "registry.ollama.ai" / "library"
    manifest = manifest / "tiny" / "q4"  # a manifest the user cannot read: left out, unsaid
    private = lmstudio["pub/Alpha-GGUF/Alpha-Q8_0.gguf"]  # listed, it failed on use
    folders = (locked, inner, shut, shut_hub, manifest, private)
    for folder in folders:
        folder.chmod(0)
    try:
        run = subprocess.run([*AS_A_USER, sys.executable, "-c", _LISTED_UNREADABLE],
                             capture_output=True, text=True, timeout=120,
                             env={**os.environ, "HOME": str(home), "HF_HUB_CACHE": str(hub),
                                  "SHUT_HUB": str(shut_hub),
                                  "HF_ENDPOINT": "http://127.0.0.1:9"})
    finally:
        for folder in folders:
            folder.chmod(0o755)
    assert run.returncode == 0, run.stderr
    report = json.loads(run.stdout)
    assert report["cached"] == ["org/Inner-GGUF:outer.Q4_0.gguf"]  # what could be read
    assert {"tiny:latest", "old/Beta-GGUF/beta.Q4_0.gguf"} <= set(report["stored"])
    unread_manifest = (f"The ollama model tiny:q4 cannot be used: its manifest {manifest} "
                       "cannot be read (Permission denied).")
    gone = [problem for problem in report["problems"] if "gone:latest" in problem]
    assert len(gone) == 1 and gone[0].endswith(" is missing (`ollama pull` it again).")
    assert [problem for problem in report["problems"] if problem not in gone] == [
        f"The Hugging Face cache's folder {inner} cannot be read (Permission denied).",
        f"The Hugging Face cache's folder {locked} cannot be read (Permission denied).",
        unread_manifest,  # (was left out without a word, and named "not as ollama writes it")
        f"The folder {shut} cannot be read (Permission denied).",
        f"The LM Studio model pub/Alpha-GGUF/Alpha-Q8_0.gguf cannot be used: {private} cannot "
        "be read (Permission denied)."]
    assert "pub/Alpha-GGUF/Alpha-Q8_0.gguf" not in report["stored"]
    assert report["ollama:tiny:q4"] == unread_manifest
    assert report["shut_hub_listed"] == []
    assert report["shut_hub"] == [
        f"The Hugging Face cache's folder {shut_hub} cannot be read (Permission denied)."]
    assert report["org/Locked-GGUF"] == report["problems"][1]
    assert report["org/Inner-GGUF:inner*"] == report["problems"][0]  # it may be in there
    assert report["org/Inner-GGUF:outer*"] == str(inner.parent / "outer.Q4_0.gguf")
    assert report["lmstudio:nothing-like-it"].endswith(
        f"; the folder {shut} cannot be read (Permission denied); it cannot use "
        "pub/Alpha-GGUF/Alpha-Q8_0.gguf (`localpref models list` says why).")


def _as_a_user(home: Path, *arguments: str, **env: str) -> subprocess.CompletedProcess[str]:
    """``localpref ARGUMENTS`` run as a user whose shell may not read every folder."""
    return subprocess.run([*AS_A_USER, sys.executable, "-m", "localpref.cli", *arguments],
                          capture_output=True, text=True, timeout=120,
                          env={**os.environ, "HOME": str(home), **env})


@pytest.mark.skipif(bool(AS_A_USER) and shutil.which("setpriv") is None,
                    reason="root without setpriv reads every folder")
def test_a_store_folder_that_cannot_be_entered_is_a_sentence_never_a_traceback(
        ollama: dict[str, Path], lmstudio: dict[str, Path], home: Path) -> None:
    """Python's ``is_file`` and ``is_dir`` raise where a folder's permissions refuse a look
    (an ollama ``blobs`` folder, LM Studio's folder itself, a folder that can be listed and
    not entered, a Linux service's store at mode 700): every listing and every name of a
    store crashed with a traceback."""
    blobs = home / ".ollama" / "models" / "blobs"
    studio = home / ".lmstudio"
    listed_not_entered = home / ".cache" / "lm-studio" / "models" / "old" / "Beta-GGUF"
    changed = ((blobs, 0), (studio, 0), (listed_not_entered, 0o600))
    for folder, mode in changed:
        folder.chmod(mode)
    try:
        listing = _as_a_user(home, "models", "list", "--json")
        tiny = _as_a_user(home, "models", "path", "ollama:tiny")
        beta = _as_a_user(home, "models", "path", "lmstudio:beta")
        nothing = _as_a_user(home, "models", "path", "lmstudio:nothing-like-it")
        (home / ".ollama").chmod(0)
        store_shut = _as_a_user(home, "models", "path", "ollama:tiny")
    finally:
        (home / ".ollama").chmod(0o755)
        for folder, _ in changed:
            folder.chmod(0o755)
    for run in (listing, tiny, beta, nothing, store_shut):
        assert "Traceback" not in run.stderr, run.stderr
    assert listing.returncode == 0
    problems = json.loads(listing.stdout)["problems"]
    tiny_sentence = (f"The ollama model tiny:latest cannot be used: its model blob "
                     f"{ollama['tiny:latest']} cannot be read (Permission denied).")
    beta_file = lmstudio["old/Beta-GGUF/beta.Q4_0.gguf"]
    beta_sentence = ("The LM Studio model old/Beta-GGUF/beta.Q4_0.gguf cannot be used: "
                     f"{beta_file} cannot be read (Permission denied).")
    assert tiny_sentence in problems and beta_sentence in problems
    assert f"The folder {studio / 'models'} cannot be read (Permission denied)." in problems
    assert (tiny.returncode, tiny.stderr.strip()) == (2, f"localpref: {tiny_sentence}")
    assert (beta.returncode, beta.stderr.strip()) == (2, f"localpref: {beta_sentence}")
    assert nothing.returncode == 2
    assert store_shut.returncode == 2 and store_shut.stderr.strip() == (
        f"localpref: No ollama model tiny:latest in {home / '.ollama' / 'models'}; it has no "
        f"models; the folder {home / '.ollama' / 'models' / 'manifests'} cannot be read "
        "(Permission denied).")


def test_a_manifest_digest_never_leads_out_of_the_blobs_folder(home: Path, gguf: Path,
                                                               tmp_path: Path) -> None:
    """Only the part after ':' was checked: ``../../elsewhere/sha256:abc`` named a file
    outside the store, listed and loaded as an ollama model."""
    root = home / ".ollama" / "models"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    shutil.copyfile(gguf, elsewhere / "sha256-abc123")
    manifest = root / "manifests" / "registry.ollama.ai" / "library" / "escape" / "latest"
    manifest.parent.mkdir(parents=True)
    manifest.write_text(json.dumps({"layers": [
        {"mediaType": MODEL_LAYER, "digest": "../../../elsewhere/sha256:abc123"}]}))
    (root / "blobs").mkdir()
    assert models.ollama_models() == []
    with pytest.raises(ModelError) as error:
        models.resolve_model("ollama:escape")
    assert str(error.value) == (f"The ollama model escape:latest cannot be used: its manifest "
                                f"{manifest} names no valid model blob.")


def test_an_ollama_models_folder_that_is_a_file_is_said_as_that(
        home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    a_file = tmp_path / "models.txt"
    a_file.write_text("not a folder")
    monkeypatch.setenv("OLLAMA_MODELS", str(a_file))
    problems: list[str] = []
    assert models.ollama_models(problems=problems) == [] and problems == []
    assert cli.main(["models", "path", "ollama:tiny"]) == 2
    assert capsys.readouterr().err.strip() == (
        f"localpref: No ollama model tiny:latest in {a_file}; that is a file, not a folder.")


def test_a_cached_file_an_ollama_blob_links_to_is_not_removed(
        home: Path, gguf: Path, empty_hf_cache: Path) -> None:
    """LM Studio's links to a cached file were kept from ``models remove``; an ollama blob
    linked to one was not, and the ollama model was gone without a word."""
    snapshot = empty_hf_cache / "models--OrgC--RepoC-GGUF" / "snapshots" / "abc"
    snapshot.mkdir(parents=True)
    cached = snapshot / "c.Q4_0.gguf"
    shutil.copyfile(gguf, cached)
    blob = add_ollama_model(home / ".ollama" / "models", gguf, "registry.ollama.ai",
                            "library", "cmodel", "latest")
    blob.unlink()
    blob.symlink_to(cached)
    assert models.resolve_model("ollama:cmodel") == blob
    with pytest.raises(ModelError) as error:
        models.remove_model("OrgC/RepoC-GGUF")
    assert str(error.value) == ("ollama's model ollama:cmodel:latest links to this file; "
                                "remove it in ollama first, then run this again.")
    assert cached.is_file() and models.resolve_model("ollama:cmodel") == blob


def test_an_lmstudio_file_that_is_not_gguf_is_not_listed_and_says_why(
        lmstudio: dict[str, Path], home: Path) -> None:
    """An ollama blob that is not GGUF was left out with a sentence; a text file named
    ``*.gguf`` in LM Studio's folder was listed as a model and offered in hints."""
    notes = home / ".lmstudio" / "models" / "pub" / "Notes" / "readme.gguf"
    notes.parent.mkdir(parents=True)
    notes.write_text("not a model\n")
    problems: list[str] = []
    assert "pub/Notes/readme.gguf" not in [m.name for m in models.lmstudio_models(
        problems=problems)]
    sentence = (f"The LM Studio model pub/Notes/readme.gguf cannot be used: {notes} is not a "
                "GGUF file (it does not begin as one).")
    assert sentence in problems
    with pytest.raises(ModelError) as error:
        models.resolve_model("lmstudio:readme")
    assert str(error.value) == sentence


def test_one_name_unusable_in_both_lmstudio_folders_is_said_by_name_once(
        home: Path) -> None:
    """The not-found sentence carried the first folder's whole sentence and then the name;
    naming the model gave the second folder's file where ``models list`` names the first."""
    first = home / ".lmstudio" / "models" / "pub" / "repo" / "notes.gguf"
    second = home / ".cache" / "lm-studio" / "models" / "pub" / "repo" / "notes.gguf"
    for path, text in ((first, "text\n"), (second, "other\n")):
        path.parent.mkdir(parents=True)
        path.write_text(text)
    with pytest.raises(ModelError) as error:
        models.resolve_model("lmstudio:nothere")
    assert str(error.value).endswith(
        "; it has no models; it cannot use pub/repo/notes.gguf (`localpref models list` says "
        "why).")
    with pytest.raises(ModelError) as error:
        models.resolve_model("lmstudio:notes")
    assert str(error.value) == ("The LM Studio model pub/repo/notes.gguf cannot be used: "
                                f"{first} is not a GGUF file (it does not begin as one).")


@pytest.mark.skipif(bool(AS_A_USER) and shutil.which("setpriv") is None,
                    reason="root without setpriv reads every folder")
def test_a_path_in_a_folder_the_user_may_not_enter_is_one_sentence(
        home: Path, gguf: Path, tmp_path: Path) -> None:
    """``--model PATH`` in a folder the user may not enter: ``Path.exists`` raised, a
    traceback with exit code 1 from every command that takes a model."""
    locked = tmp_path / "locked"
    locked.mkdir()
    shutil.copyfile(gguf, locked / "m.gguf")
    locked.chmod(0)
    try:
        runs = [_as_a_user(home, "models", "path", str(locked / "m.gguf")),
                _as_a_user(home, "generate", "--model", str(locked / "m.gguf"), "Hi")]
        named = subprocess.run([*AS_A_USER, sys.executable, "-m", "localpref.cli", "models",
                                "path", "org/Name-GGUF"], capture_output=True, text=True,
                               timeout=120, cwd=locked,
                               env={**os.environ, "HOME": str(home),
                                    "HF_HUB_CACHE": str(tmp_path / "hub")})
    finally:
        locked.chmod(0o755)
    for run in runs:
        assert (run.returncode, run.stderr) == (
            2, f"localpref: Cannot read {locked / 'm.gguf'}: permission denied.\n")
    # another kind of name, looked up from such a folder, is not taken for a path there
    assert named.returncode == 2 and "Cannot read" not in named.stderr, named.stderr
    assert "org/Name-GGUF" in named.stderr and "not downloaded" in named.stderr


@pytest.mark.skipif(bool(AS_A_USER) and shutil.which("setpriv") is None,
                    reason="root without setpriv reads every folder")
def test_a_cached_model_whose_blobs_cannot_be_read_is_said_not_offered_for_download(
        home: Path, gguf: Path, tmp_path: Path) -> None:
    """A repository's ``blobs`` folder the user may not enter: its model was left out of
    ``models list`` without a word, and naming it said to download it again."""
    repo_dir = tmp_path / "hub" / "models--org--Blob-GGUF"
    blobs, snapshot = repo_dir / "blobs", repo_dir / "snapshots" / "abc"
    blobs.mkdir(parents=True)
    snapshot.mkdir(parents=True)
    shutil.copyfile(gguf, blobs / "0123")
    (snapshot / "m.Q4_0.gguf").symlink_to("../../blobs/0123")
    blobs.chmod(0)
    try:
        listing, *refused = (
            _as_a_user(home, *arguments, HF_HUB_CACHE=str(tmp_path / "hub"),
                       HF_ENDPOINT="http://127.0.0.1:9")
            for arguments in (("models", "list", "--json"),
                              ("models", "path", "org/Blob-GGUF:m*"),
                              ("models", "remove", str(snapshot / "m.Q4_0.gguf")),
                              ("models", "remove", "org/Blob-GGUF")))
    finally:
        blobs.chmod(0o755)
    sentence = (f"The Hugging Face cache's file {snapshot / 'm.Q4_0.gguf'} cannot be read "
                "(Permission denied).")
    assert listing.returncode == 0, listing.stderr
    assert sentence in json.loads(listing.stdout)["problems"]
    for run in refused:  # (a removal was a traceback, or "nothing to remove")
        assert (run.returncode, run.stderr) == (2, f"localpref: {sentence}\n")
    assert (snapshot / "m.Q4_0.gguf").is_symlink() and (blobs / "0123").is_file()


@pytest.mark.skipif(bool(AS_A_USER) and shutil.which("setpriv") is None,
                    reason="root without setpriv reads every folder")
def test_a_file_in_a_folder_not_entered_is_said_once_whichever_folder_shows_it(
        home: Path, gguf: Path) -> None:
    folder = home / ".lmstudio" / "models" / "pub" / "repo"
    folder.mkdir(parents=True)
    shutil.copyfile(gguf, folder / "m.gguf")
    old = home / ".cache" / "lm-studio" / "models"
    old.parent.mkdir(parents=True)
    old.symlink_to(home / ".lmstudio" / "models")  # both of LM Studio's folders are one
    folder.chmod(0o644)
    try:
        listing = _as_a_user(home, "models", "list", "--json")
    finally:
        folder.chmod(0o755)
    assert listing.returncode == 0, listing.stderr
    assert json.loads(listing.stdout)["problems"] == [
        f"The LM Studio model pub/repo/m.gguf cannot be used: {folder / 'm.gguf'} cannot be "
        "read (Permission denied)."]


def test_a_cached_file_an_unusable_ollama_models_blob_links_to_is_not_removed(
        home: Path, gguf: Path, empty_hf_cache: Path) -> None:
    """ollama uses a model localpref cannot (one with an adapter): its blob linked to a
    cached file kept that file too."""
    snapshot = empty_hf_cache / "models--org--repo" / "snapshots" / "abc"
    snapshot.mkdir(parents=True)
    cached = snapshot / "m.Q4_0.gguf"
    shutil.copyfile(gguf, cached)
    root = home / ".ollama" / "models"
    blob = add_ollama_model(root, gguf, "registry.ollama.ai", "library", "mymodel", "latest")
    blob.unlink()
    blob.symlink_to(cached)
    manifest = root / "manifests" / "registry.ollama.ai" / "library" / "mymodel" / "latest"
    content = json.loads(manifest.read_text())
    content["layers"].append({"mediaType": "application/vnd.ollama.image.adapter",
                              "digest": "sha256:" + "9" * 64, "size": 1})
    manifest.write_text(json.dumps(content))
    assert models.ollama_models() == []  # localpref cannot use it
    with pytest.raises(ModelError) as error:
        models.remove_model("org/repo")
    assert str(error.value) == ("ollama's model ollama:mymodel:latest links to this file; "
                                "remove it in ollama first, then run this again.")
    assert cached.is_file()


def test_two_lmstudio_names_linked_to_one_missing_file_are_each_said(
        home: Path, tmp_path: Path) -> None:
    """Both are names LM Studio shows: neither may vanish from the listing."""
    folder = home / ".lmstudio" / "models" / "pub" / "repo"
    folder.mkdir(parents=True)
    gone = tmp_path / "gone" / "model.gguf"
    for name in ("a.gguf", "b.gguf"):
        (folder / name).symlink_to(gone)
    problems: list[str] = []
    assert models.lmstudio_models(problems=problems) == []
    assert problems == [f"The LM Studio model pub/repo/{name} cannot be used: it links to "
                        f"{gone}, which is not there." for name in ("a.gguf", "b.gguf")]
