"""What the user typed after ``--model``, parsed without touching the disk's cache or the network.

A value is the bundled model, a local path, a catalog name, a Hub repo ``ORG/NAME[:PATTERN]``, or
a model in another tool's store, ``ollama:NAME[:TAG]`` or ``lmstudio:PATTERN`` (``stores``);
patterns are case-insensitive globs matched against a repo file's path or name.
"""

from __future__ import annotations

import fnmatch
import glob
import os
import re
from dataclasses import dataclass
from pathlib import Path

from localpref.catalog import CatalogEntry, find_entry
from localpref.errors import ModelError
from localpref.models.bundled import BUNDLED_MODEL_NAME
from localpref.paths import expanded

#: Pattern used for a bare ``ORG/NAME`` (the repository must then hold exactly one GGUF).
DEFAULT_PATTERN = "*.gguf"

REPO_SPEC = re.compile(r"^(?P<repo>[A-Za-z0-9][\w.\-]*/[A-Za-z0-9][\w.\-]*)(?::(?P<pattern>.+))?$")
_WINDOWS_DRIVE = re.compile(r"^[A-Za-z]:[\\/]")
#: Other tools' model stores, as the prefix of ``--model STORE:NAME`` (``stores``).
STORES = ("ollama", "lmstudio")
#: Each store's tool, as its users call it.
STORE_TOOLS = {"ollama": "ollama", "lmstudio": "LM Studio"}


@dataclass(frozen=True)
class ModelSpec:
    """A parsed ``--model`` value.

    ``kind`` is ``"bundled"``, ``"path"``, ``"hub"`` or ``"store"``. Hub specs carry the
    repository, the file pattern, the catalog entry they came from (if any) and the SHA-256
    that entry pins; store specs the store (``"ollama"``, ``"lmstudio"``) and the name.
    """

    kind: str
    text: str
    path: Path | None = None
    repo: str | None = None
    pattern: str | None = None
    entry: CatalogEntry | None = None
    sha256: str | None = None
    store: str | None = None
    name: str | None = None

    @property
    def display(self) -> str:
        """How to name this model in a message."""
        if self.kind == "hub":
            return f"{self.repo}:{self.pattern}"
        if self.kind == "path":
            return str(self.path)
        if self.kind == "store":
            return f"{self.store}:{self.name}"
        return BUNDLED_MODEL_NAME


def _is_there(path: Path, text: str) -> bool:
    """Whether ``path`` (``text`` as typed) names something on disk; a path in a folder the
    user may not enter is taken as there, so that reading it says why it cannot be used
    (``exists`` raises), but not another kind of name (``org/Name``, ``ollama:x``) looked up
    in such a current folder."""
    try:
        return path.exists()
    except PermissionError:
        return path.is_absolute() or _looks_like_path(text)


def _looks_like_path(text: str) -> bool:
    """Whether ``text`` can only be a file's path (not a catalog name, repo or store name)."""
    return (text.startswith(("/", "./", "../", "~", "\\"))
            or _WINDOWS_DRIVE.match(text) is not None
            or (text.lower().endswith(".gguf") and ":" not in text))


def parse_model_spec(
    spec: str | os.PathLike[str] | None = None, *, filename: str | None = None
) -> ModelSpec:
    """Classify a ``--model`` value without touching the network (see ``resolve_model``)."""
    if spec is None or (isinstance(spec, str) and not spec.strip()):
        if filename:
            raise ModelError("A file pattern (--file) needs a Hugging Face repo as the model.")
        return ModelSpec("bundled", BUNDLED_MODEL_NAME)
    text = os.fspath(spec).strip()
    if text.lower() == BUNDLED_MODEL_NAME and not filename:
        return ModelSpec("bundled", text)
    local = expanded(text)
    if not isinstance(spec, str) or _is_there(local, text):
        named = _also_named(spec, filename)
        if named is not None:  # (``resolve_model`` takes the folder where that is not here)
            return named
        if filename:
            kind = "folder" if _is_folder(local) else "file"
            raise ModelError(
                f"{text} is a local {kind}; a file pattern (--file) only applies to a Hub repo."
            )
        return ModelSpec("path", text, path=local.absolute())
    return _parse_name(text, filename)


def _is_folder(path: Path) -> bool:
    try:
        return path.is_dir()
    except OSError:
        return False


def same_name_folder(spec: str | os.PathLike[str] | None) -> Path | None:
    """The folder a bare name (not ``./NAME``) also names in the current one, where the name
    means a catalog, Hub or store model too (`hf download ORG/NAME --local-dir NAME` leaves
    such a folder): its absolute path, or None."""
    if not isinstance(spec, str) or _looks_like_path(spec.strip()):
        return None
    folder = expanded(spec.strip())
    return folder.absolute() if _is_folder(folder) else None


def _also_named(spec: str | os.PathLike[str], filename: str | None) -> ModelSpec | None:
    """The catalog, Hub or store model a bare name that is also a folder here means, or
    None."""
    if same_name_folder(spec) is None:
        return None
    try:
        return _parse_name(os.fspath(spec).strip(), filename)
    except ModelError:
        return None


def _parse_name(text: str, filename: str | None) -> ModelSpec:
    """A ``--model`` value that is not a path on disk: a store's model, a catalog name or a
    Hub repo (``parse_model_spec``)."""
    stored = store_prefix(text)
    if stored is not None:
        if filename:
            raise ModelError(f"{text} names a model {STORE_TOOLS[stored[0]]} keeps; a file "
                             "pattern (--file) only applies to a Hub repo.")
        return ModelSpec("store", text, store=stored[0], name=stored[1])
    entry = None if "/" in text or "\\" in text else find_entry(text)
    if entry is not None:
        if entry.bundled:
            raise ModelError(
                f"{entry.name} is the bundled model; it has no other files to pick with --file."
            )
        pattern = filename or entry.file
        sha = entry.sha256 if pattern == entry.file else None
        return ModelSpec("hub", text, repo=entry.repo, pattern=pattern, entry=entry, sha256=sha)
    match = REPO_SPEC.match(text)
    looks_like_path = _looks_like_path(text)
    if match is None or looks_like_path:
        if _URL.match(text):
            raise _url_error(text)
        if looks_like_path or text.count("/") > 1:
            raise ModelError(f"Model file {text} does not exist.")
        name, _, tag = text.partition(":")
        # (NAME:TAG as ollama shows it; not where a part is empty, as in ":x" or "x:")
        hint = (f" (for ollama's {text}, give ollama:{text})"
                if name.strip() and tag.strip() and ":" not in tag and "/" not in text else "")
        raise ModelError(
            f"Unknown model '{text}': give a path to a .gguf file, a catalog name "
            "(see `localpref models list`), a Hugging Face repo as ORG/NAME[:PATTERN], or "
            f"ollama:NAME or lmstudio:PATTERN for a model those tools keep{hint}."
        )
    pattern = match.group("pattern")
    if pattern and filename and pattern != filename:
        raise ModelError(
            f"Give the file pattern once: either '{text}' or --file {filename}, not both."
        )
    return ModelSpec(
        "hub", text, repo=match.group("repo"), pattern=filename or pattern or DEFAULT_PATTERN
    )


_URL = re.compile(r"^[a-z][a-z0-9+.-]*://", re.IGNORECASE)
#: A file's address on the Hub: https://huggingface.co/ORG/NAME/resolve|blob/REVISION/FILE
_HUB_FILE_URL = re.compile(
    r"^https?://(?:www\.)?(?:huggingface\.co|hf\.co)/(?P<repo>[^/]+/[^/]+)/(?:resolve|blob)/"
    r"[^/]+/(?P<file>[^?#]+)", re.IGNORECASE)


def _url_error(text: str) -> ModelError:
    """The sentence for a URL given as a model: the ``ORG/NAME:FILE`` it means, where it is a
    file on the Hugging Face Hub."""
    hub_file = _HUB_FILE_URL.match(text)
    if hub_file is not None:
        meant = f"{hub_file.group('repo')}:{hub_file.group('file')}"
        return ModelError(f"Give a Hugging Face file as ORG/NAME:FILE, not its address: "
                          f"{meant}.")
    return ModelError(f"A model is not given by its address ({text}): download the file and "
                      "give its path, or give a Hugging Face repo as ORG/NAME[:PATTERN].")


def store_prefix(text: str) -> tuple[str, str] | None:
    """``("ollama", NAME)`` for ``"ollama:NAME"`` (any case of the prefix), else None."""
    prefix, colon, rest = text.partition(":")
    if colon and prefix.lower() in STORES:
        return prefix.lower(), rest.strip()
    return None


def pattern_matches(relative_path: str, pattern: str) -> bool:
    """Whether a repo file matches a user's pattern (case-insensitive glob on path or file name)."""
    path = relative_path.lower()
    wanted = pattern.lower()
    return fnmatch.fnmatchcase(path, wanted) or fnmatch.fnmatchcase(path.rsplit("/", 1)[-1], wanted)


def several_matches_error(pattern: str, repo: str, names: list[str], *, where: str) -> ModelError:
    """The error for a pattern that matches more than one file (the files are listed)."""
    listed = ", ".join(sorted(names))
    # REPO:PATTERN is taken wherever a model is named (--file only by chat, doctor, models)
    # (a file's own name as a pattern, its glob characters escaped: m[1].gguf as m[[]1].gguf)
    example = next((f", e.g. {repo}:{one}" for one in map(glob.escape, sorted(names))
                    if sum(pattern_matches(name, one) for name in names) == 1), "")
    return ModelError(
        f"'{pattern}' matches {len(names)} files of {repo} {where} ({listed}); "
        f"give a pattern that matches one of them{example}."
    )
