"""The catalog of known GGUF models (``models/catalog.toml``) and its loader.

The catalog file lives at ``models/catalog.toml`` in the source tree: that is the one to edit.
Its copy ``localpref/catalog.toml`` is installed as package data so an installed ``localpref``
finds it; a test (``tests/test_models_catalog.py``) fails unless the two are byte-equal.
``LOCALPREF_CATALOG=/path/to/file.toml`` replaces it (for your own list, or tests).
"""

from __future__ import annotations

import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from localpref.errors import ModelError
from localpref.paths import expanded

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    try:
        import tomli as tomllib
    except ModuleNotFoundError:
        tomllib = None  # type: ignore[assignment]

#: Environment variable naming a catalog file to use instead of the built-in one.
CATALOG_ENV = "LOCALPREF_CATALOG"
#: The catalog format this loader reads.
SCHEMA_VERSION = 1

_NAME = re.compile(r"^[a-z0-9][a-z0-9.\-]*$")
_REPO = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*/[A-Za-z0-9][A-Za-z0-9_.\-]*$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_RECOMMENDED_KEYS = {"n_ctx": int, "temperature": float, "top_p": float, "min_ram_gb": float}


@dataclass(frozen=True)
class CatalogEntry:
    """One known model: where to get it and what it needs.

    ``file`` is a glob pattern for Hub entries and the exact file name for the bundled one.
    """

    name: str
    file: str
    params: str
    quant: str
    size_mb: int
    licence: str
    family: str
    has_system_role: bool
    chat_template: str
    context_length: int
    recommended: dict[str, Any] = field(default_factory=dict)
    repo: str | None = None
    bundled: bool = False
    sha256: str | None = None
    notes: str = ""

    @property
    def spec(self) -> str:
        """The ``REPO:PATTERN`` form of this entry (its name for the bundled model)."""
        return self.name if self.bundled or not self.repo else f"{self.repo}:{self.file}"

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict of every field."""
        return {
            "name": self.name,
            "repo": self.repo,
            "file": self.file,
            "bundled": self.bundled,
            "params": self.params,
            "quant": self.quant,
            "size_mb": self.size_mb,
            "licence": self.licence,
            "family": self.family,
            "has_system_role": self.has_system_role,
            "chat_template": self.chat_template,
            "context_length": self.context_length,
            "recommended": dict(self.recommended),
            "sha256": self.sha256,
            "notes": self.notes,
        }


def catalog_path() -> Path:
    """Where the catalog is read from: ``$LOCALPREF_CATALOG``, the source tree, or the package."""
    override = os.environ.get(CATALOG_ENV)
    if override:
        return expanded(override)
    source_root = Path(__file__).resolve().parent.parent
    in_tree = source_root / "models" / "catalog.toml"
    if in_tree.is_file() and (source_root / "pyproject.toml").is_file():
        return in_tree
    return Path(__file__).resolve().parent / "catalog.toml"


def load_catalog(path: str | os.PathLike[str] | None = None) -> list[CatalogEntry]:
    """Read and validate the catalog; raise :class:`ModelError` naming any malformed entry."""
    source = Path(path) if path is not None else catalog_path()
    if tomllib is None:  # pragma: no cover - Python 3.10 without tomli
        raise ModelError("Reading the model catalog on Python 3.10 needs the tomli package.")
    try:
        data = tomllib.loads(source.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ModelError(f"The model catalog {source} is missing.") from None
    except (OSError, UnicodeDecodeError) as error:
        raise ModelError(f"Cannot read the model catalog {source}: {error}.") from None
    except tomllib.TOMLDecodeError as error:
        raise ModelError(f"The model catalog {source} is not valid TOML: {error}.") from None
    schema = data.get("schema", SCHEMA_VERSION)
    if schema != SCHEMA_VERSION:
        raise ModelError(f"The model catalog {source} has schema {schema}; this localpref reads 1.")
    raw_entries = data.get("model", [])
    if not isinstance(raw_entries, list):
        raise ModelError(f"The model catalog {source} must hold [[model]] tables.")
    entries = [_entry(raw, index, source) for index, raw in enumerate(raw_entries)]
    seen: set[str] = set()
    for entry in entries:
        if entry.name in seen:
            raise ModelError(f"The model catalog {source} lists '{entry.name}' twice.")
        seen.add(entry.name)
    return entries


def find_entry(name: str, entries: list[CatalogEntry] | None = None) -> CatalogEntry | None:
    """The catalog entry called ``name`` (case-insensitive), or None."""
    wanted = name.strip().lower()
    for entry in load_catalog() if entries is None else entries:
        if entry.name == wanted:
            return entry
    return None


def _entry(raw: Any, index: int, source: Path) -> CatalogEntry:
    """Validate one ``[[model]]`` table and build its entry."""
    label = f"entry {index + 1}"
    if not isinstance(raw, dict):
        raise ModelError(f"The model catalog {source}: {label} is not a table.")
    name = raw.get("name")
    if isinstance(name, str):
        label = f"'{name}'"

    def fail(problem: str) -> ModelError:
        return ModelError(f"The model catalog {source}: {label} {problem}.")

    def need(key: str, kind: type | tuple[type, ...]) -> Any:
        if key not in raw:
            raise fail(f"has no {key}")
        value = raw[key]
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise fail(f"has a {key} of the wrong type")
        if isinstance(value, str) and not value.strip():
            raise fail(f"has an empty {key}")
        return value

    name = need("name", str)
    if not _NAME.match(name):
        raise fail("has a name that is not lower-case letters, digits, '.' and '-'")
    bundled = raw.get("bundled", False)
    if not isinstance(bundled, bool):
        raise fail("has a bundled flag that is not true or false")
    repo = raw.get("repo")
    if bundled:
        if repo is not None:
            raise fail("is bundled, so it takes no repo")
    else:
        repo = need("repo", str)
        if not _REPO.match(repo):
            raise fail("has a repo that is not ORG/NAME")
    file = need("file", str)
    if not bundled and not file.lower().endswith(".gguf"):
        raise fail("has a file pattern that does not end in .gguf")
    size_mb = need("size_mb", int)
    context_length = need("context_length", int)
    if size_mb <= 0 or context_length <= 0:
        raise fail("has a size or context length that is not positive")
    sha256 = raw.get("sha256")
    if sha256 is not None and (not isinstance(sha256, str) or not _SHA256.match(sha256)):
        raise fail("has a sha256 that is not 64 lower-case hex digits")
    recommended = raw.get("recommended", {})
    if not isinstance(recommended, dict):
        raise fail("has a recommended that is not a table")
    for key, value in recommended.items():
        kind = _RECOMMENDED_KEYS.get(key)
        if kind is None:
            raise fail(f"recommends an unknown setting {key}")
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise fail(f"recommends a {key} that is not a number")
        if kind is int and not isinstance(value, int):
            raise fail(f"recommends a {key} that is not a whole number")
    notes = raw.get("notes", "")
    if not isinstance(notes, str):
        raise fail("has notes that are not text")
    known = {
        "name", "repo", "file", "bundled", "params", "quant", "size_mb", "licence", "family",
        "has_system_role", "chat_template", "context_length", "recommended", "sha256", "notes",
    }  # fmt: skip
    unknown = sorted(set(raw) - known)
    if unknown:
        raise fail(f"has unknown field(s) {', '.join(unknown)}")
    return CatalogEntry(
        name=name,
        file=file,
        params=need("params", str),
        quant=need("quant", str),
        size_mb=size_mb,
        licence=need("licence", str),
        family=need("family", str),
        has_system_role=need("has_system_role", bool),
        chat_template=need("chat_template", str),
        context_length=context_length,
        recommended=dict(recommended),
        repo=repo,
        bundled=bundled,
        sha256=sha256,
        notes=notes,
    )
