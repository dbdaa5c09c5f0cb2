"""The catalog of known models: every entry well-formed, the bundled entry true to its file."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from localpref import models
from localpref.catalog import CatalogEntry, catalog_path, find_entry, load_catalog
from localpref.errors import ModelError
from localpref.gguf_header import read_gguf_header

ROOT = Path(__file__).resolve().parent.parent
MINIMAL = (
    'params = "1M"\nquant = "Q4_K_M"\nsize_mb = 1\nlicence = "MIT"\nfamily = "x"\n'
    'has_system_role = true\nchat_template = "ChatML"\ncontext_length = 128\n'
)


@pytest.fixture(autouse=True)
def built_in_catalog(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests read the repository's catalog unless they set their own."""
    monkeypatch.delenv("LOCALPREF_CATALOG", raising=False)


def test_every_entry_is_well_formed() -> None:
    entries = load_catalog()
    assert len(entries) >= 8
    assert len({e.name for e in entries}) == len(entries)
    assert [e.name for e in entries if e.bundled] == [models.BUNDLED_MODEL_NAME]
    for entry in entries:
        assert re.fullmatch(r"[a-z0-9][a-z0-9.\-]*", entry.name), entry.name
        assert entry.size_mb > 0 and entry.context_length > 0
        assert entry.licence and entry.family and entry.chat_template and entry.params
        assert isinstance(entry.has_system_role, bool)
        recommended = entry.recommended
        assert 0 < recommended["n_ctx"] <= entry.context_length, entry.name
        assert recommended["temperature"] >= 0
        assert 0 < recommended["top_p"] <= 1
        assert recommended["min_ram_gb"] * 1000 >= entry.size_mb * 0.9, entry.name
        if not entry.bundled:
            assert entry.repo and re.fullmatch(r"[\w.\-]+/[\w.\-]+-GGUF", entry.repo), entry.repo
            assert entry.file.lower().endswith(".gguf") and "*" in entry.file
            assert entry.quant.lower() in entry.file.lower(), entry.name
            assert entry.spec == f"{entry.repo}:{entry.file}"


def test_bundled_entry_matches_the_bundled_file() -> None:
    entry = find_entry(models.BUNDLED_MODEL_NAME)
    assert entry is not None and entry.bundled and entry.spec == models.BUNDLED_MODEL_NAME
    path = models.bundled_model_path()
    info = read_gguf_header(path)
    assert entry.file == path.name
    assert entry.quant == info.file_type
    assert entry.context_length == info.context_length
    assert entry.has_system_role is info.has_system_role
    assert abs(entry.size_mb * 1_000_000 - info.file_size) < 0.05 * info.file_size


def test_entries_of_one_family_pair_up_for_pad() -> None:
    families: dict[str, list[CatalogEntry]] = {}
    for entry in load_catalog():
        families.setdefault(entry.family, []).append(entry)
    assert len(families["smollm2"]) >= 2  # a reward model for the bundled model


def test_find_entry_ignores_case_and_unknown_names() -> None:
    assert find_entry("Qwen2.5-0.5B-Instruct") is not None
    assert find_entry("no-such-model") is None


def test_packaged_copy_is_identical_to_models_catalog() -> None:
    """``models/catalog.toml`` is the one people edit; ``localpref/catalog.toml`` is its copy
    for installed packages (package data), kept byte-equal by this test."""
    source = ROOT / "models" / "catalog.toml"
    packaged = ROOT / "localpref" / "catalog.toml"
    assert catalog_path() == source
    assert packaged.is_file(), (
        "localpref/catalog.toml is missing: cp models/catalog.toml localpref/")
    assert packaged.read_bytes() == source.read_bytes(), (
        "localpref/catalog.toml differs from models/catalog.toml, the one to edit: "
        "cp models/catalog.toml localpref/catalog.toml")


def test_catalog_path_can_be_overridden(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    own = tmp_path / "mine.toml"
    own.write_text(f'[[model]]\nname = "mine"\nrepo = "me/mine-GGUF"\nfile = "*.gguf"\n{MINIMAL}')
    monkeypatch.setenv("LOCALPREF_CATALOG", str(own))
    assert catalog_path() == own
    assert [e.spec for e in load_catalog()] == ["me/mine-GGUF:*.gguf"]


GOOD = 'name = "a"\nrepo = "o/r"\nfile = "*.gguf"\n' + MINIMAL


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        (GOOD.replace('repo = "o/r"\n', ""), "'a' has no repo"),
        (GOOD.replace('"o/r"', '"nope"'), "repo that is not ORG/NAME"),
        (GOOD.replace('"*.gguf"', '"*.bin"'), "does not end in .gguf"),
        (GOOD.replace('"a"', '"A b"'), "name that is not lower-case"),
        (GOOD + 'sha256 = "xyz"\n', "has a sha256 that is not 64"),
        (GOOD + "colour = 1\n", "unknown field(s) colour"),
        (GOOD.replace("size_mb = 1\n", ""), "has no size_mb"),
        (GOOD.replace("size_mb = 1", 'size_mb = "big"'), "size_mb of the wrong type"),
        (GOOD + "[model.recommended]\nspeed = 1\n", "recommends an unknown setting speed"),
        (GOOD + "[[model]]\n" + GOOD, "lists 'a' twice"),
    ],
)
def test_malformed_entries_are_named(tmp_path: Path, body: str, problem: str) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[[model]]\n" + body)
    with pytest.raises(ModelError, match=re.escape(problem)):
        load_catalog(bad)


def test_invalid_toml_and_missing_file(tmp_path: Path) -> None:
    broken = tmp_path / "broken.toml"
    broken.write_text("[[model]\nname = ")
    with pytest.raises(ModelError, match="is not valid TOML"):
        load_catalog(broken)
    with pytest.raises(ModelError, match="is missing"):
        load_catalog(tmp_path / "absent.toml")
