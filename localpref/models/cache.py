"""The Hugging Face cache on disk: finding, listing and removing cached GGUF files.

The layout is huggingface_hub's: ``models--ORG--NAME/{refs/main, snapshots/REV/FILE, blobs/}``,
where snapshot entries are (usually) symlinks to content-addressed blobs. Nothing here touches
the network.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from localpref.errors import ModelError
from localpref.models.bundled import BUNDLED_DISTRIBUTION
from localpref.models.hub_env import DEFAULT_REVISION, hf_cache_dir, repo_cache_dir
from localpref.models.spec import (
    REPO_SPEC,
    STORE_TOOLS,
    parse_model_spec,
    pattern_matches,
)
from localpref.models.stores import find_stored, store_links_to, stored_elsewhere
from localpref.models.walk import files_below
from localpref.split_files import check_parts, is_later_part, part_paths


def snapshot_files(snapshot: Path, problems: list[str] | None = None, *,
                   pattern: str = "*") -> list[Path]:
    """The GGUF files (or links to present blobs) under one snapshot folder whose path in it
    matches ``pattern``, sorted; of a split model, its first part only (``split_files``). A
    folder there that cannot be read, or a link to a blob that cannot (its permissions), is
    ``ModelError`` (one sentence), or with ``problems`` that sentence added to them and the
    file left out."""
    found = []
    for path in _files_below(snapshot, problems):
        if (not path.name.lower().endswith(".gguf") or is_later_part(path.name)
                or not pattern_matches(path.relative_to(snapshot).as_posix(), pattern)):
            continue
        try:
            if path.is_file():  # (a link to a blob that is gone is no model: left out)
                found.append(path)
        except OSError as error:
            _unreadable("file", path, error, problems)
    return found


def _files_below(folder: Path, problems: list[str] | None) -> list[Path]:
    """Every entry below ``folder`` that is not a folder, sorted, links to folders not
    followed (``walk.files_below``); a folder that cannot be read is ``ModelError``, or a
    sentence in ``problems`` when they are given."""
    return files_below(folder, lambda error: _unreadable("folder", Path(error.filename),
                                                         error, problems),
                       follow_links=False)


def _checked_is_file(path: Path) -> bool:
    """Whether a file of the cache is at ``path`` (``ModelError`` when its folder, or the
    blobs a link leads to, cannot be read)."""
    try:
        return path.is_file()
    except OSError as error:
        raise ModelError(_unread_sentence("file", path, error)) from None


def _unreadable(kind: str, path: Path, error: OSError, problems: list[str] | None) -> None:
    """``ModelError`` for the cache's ``kind`` ("folder", "file") at ``path`` that cannot be
    read, or without raising its sentence added to ``problems`` when they are given."""
    sentence = _unread_sentence(kind, path, error)
    if problems is None:
        raise ModelError(sentence)
    problems.append(sentence)


def _unread_sentence(kind: str, path: Path, error: OSError) -> str:
    """The sentence for the cache's ``kind`` ("folder", "file") at ``path`` that cannot be
    read."""
    return f"The Hugging Face cache's {kind} {path} cannot be read ({error.strerror or error})."


def _is_file(path: Path) -> bool:
    """Whether ``path`` is a file (or a link to one) that can be looked at: False, not an
    error, inside a folder that can be listed but not entered."""
    try:
        return path.is_file()
    except OSError:
        return False


def ordered_snapshots(repo_dir: Path, revision: str = DEFAULT_REVISION) -> list[Path]:
    """The repo's snapshot folders: the one ``refs/REVISION`` names first, then newest first.
    ``ModelError`` (one sentence) when its folder cannot be read (its permissions)."""
    snapshots_dir = repo_dir / "snapshots"
    try:
        if not snapshots_dir.is_dir():
            return []
        snapshots = [p for p in snapshots_dir.iterdir() if p.is_dir()]
        snapshots.sort(key=lambda p: p.stat().st_mtime, reverse=True)
    except OSError as error:
        raise ModelError(f"The Hugging Face cache's folder {snapshots_dir} cannot be read "
                         f"({error.strerror or error}).") from None
    ref = repo_dir / "refs" / revision
    try:
        commit = ref.read_text(encoding="utf-8").strip()
    except OSError:
        commit = ""
    preferred = snapshots_dir / commit
    if commit and preferred in snapshots:
        snapshots.remove(preferred)
        snapshots.insert(0, preferred)
    return snapshots


def cached_matches(repo: str, pattern: str, *, cache_dir: Path | None = None) -> list[Path]:
    """Cached GGUF files of ``repo`` matching ``pattern``, from the first snapshot that has any.

    The snapshot ``refs/main`` points to is searched first, then older ones. No network call.
    A folder that cannot be read is passed over; when no file matches and one could not be
    read, ``ModelError`` says so (the file may be in it).
    """
    repo_dir = repo_cache_dir(repo, cache_dir)
    unread: list[str] = []
    for snapshot in ordered_snapshots(repo_dir):
        matches = snapshot_files(snapshot, unread, pattern=pattern)
        if matches:
            return matches
    if unread:
        raise ModelError(unread[0])
    return []


def refuse_a_later_part(repo: str, pattern: str, *, cache_dir: Path | None = None) -> None:
    """Where ``pattern`` matches no model of ``repo`` in the cache but a later part of a split
    one (``*00002*``): the sentence that names its first part (``check_parts``)."""
    for snapshot in ordered_snapshots(repo_cache_dir(repo, cache_dir)):
        for path in sorted(snapshot.rglob("*")):
            if is_later_part(path.name) and pattern_matches(
                    path.relative_to(snapshot).as_posix(), pattern):
                check_parts(path)


def relative_in_snapshot(path: Path) -> str:
    """``sub/file.gguf`` for a path ``.../snapshots/REV/sub/file.gguf``."""
    parts = path.parts
    if "snapshots" in parts:
        index = len(parts) - 1 - parts[::-1].index("snapshots")
        return "/".join(parts[index + 2 :])
    return path.name


@dataclass(frozen=True)
class CachedFile:
    """A GGUF file in the Hugging Face cache."""

    repo: str
    filename: str
    path: Path
    size: int
    revision: str

    @property
    def spec(self) -> str:
        """``REPO:FILE``, which ``resolve_model`` accepts."""
        return f"{self.repo}:{self.filename}"

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "repo": self.repo,
            "file": self.filename,
            "spec": self.spec,
            "path": str(self.path),
            "size": self.size,
            "revision": self.revision,
        }


def cached_models(cache_dir: Path | None = None, *,
                  problems: list[str] | None = None) -> list[CachedFile]:
    """Every GGUF file in the Hugging Face cache (model repos only), one per repo and file name
    (a split model once, its first part, with the size of every part).

    When a file is in several snapshots, the one ``refs/main`` names (else the newest) is listed.
    A repository whose folder cannot be read is left out, its sentence added to ``problems``.
    """
    cache = cache_dir or hf_cache_dir()
    if not cache.is_dir():
        return []
    found: list[CachedFile] = []
    noted = problems if problems is not None else []
    try:
        repo_dirs = sorted(path for path in cache.iterdir() if path.name.startswith("models--"))
    except OSError as error:
        noted.append(f"The Hugging Face cache's folder {cache} cannot be read "
                     f"({error.strerror or error}).")
        return []
    for repo_dir in repo_dirs:
        parts = repo_dir.name.split("--")
        if len(parts) < 3:
            continue
        repo = f"{parts[1]}/{'--'.join(parts[2:])}"
        seen: set[str] = set()
        try:
            snapshots = ordered_snapshots(repo_dir)
        except ModelError as error:
            noted.append(str(error))
            continue
        for snapshot in snapshots:
            for path in snapshot_files(snapshot, noted):
                relative = path.relative_to(snapshot).as_posix()
                if relative in seen:
                    continue
                seen.add(relative)
                size = sum(part.stat().st_size for part in part_paths(path)
                           if part.is_file())  # a split model: all its parts
                found.append(CachedFile(repo, relative, path, size, snapshot.name))
    return found


#: Files left in a repo's snapshots after its GGUF files are removed that do not keep its cache
#: folder: a model card or a configuration (a file this large or larger is another tool's).
LEFTOVER_BYTES = 1 << 20


def remove_model(spec: str, *, filename: str | None = None) -> list[Path]:
    """Delete a model from the Hugging Face cache; return the snapshot paths removed.

    ``ORG/NAME`` alone removes every GGUF file of that repository; a pattern (``:PATTERN``,
    ``filename=`` or a catalog name) the matching GGUF files. Each file's blob goes once no
    snapshot links to it, and the repository's folder once no GGUF file and nothing of
    ``LEFTOVER_BYTES`` or more is left in it: the cache is shared with other tools, and a
    repository's other weights (safetensors) are theirs. The bundled model and files outside
    the cache are not touched (ModelError).
    """
    cache = hf_cache_dir()
    try:
        parsed = parse_model_spec(spec, filename=filename)
    except ModelError:
        stored = [] if filename else stored_elsewhere(spec)
        if stored:  # (typed as the tool shows it: `models path` points there too)
            raise _only_read(stored[0].spec, STORE_TOOLS[stored[0].store]) from None
        raise
    if parsed.kind == "bundled":
        raise ModelError(
            f"The bundled model belongs to the {BUNDLED_DISTRIBUTION} package; "
            f"`pip uninstall {BUNDLED_DISTRIBUTION}` removes it."
        )
    if parsed.kind == "store":
        assert parsed.store is not None and parsed.name is not None
        find_stored(parsed.store, parsed.name)  # (a name the tool does not keep: said so)
        raise _only_read(parsed.display, STORE_TOOLS[parsed.store])
    if parsed.kind == "path":
        assert parsed.path is not None
        return _remove_a_cached_file(parsed.path, cache)
    assert parsed.repo is not None and parsed.pattern is not None
    repo_dir = repo_cache_dir(parsed.repo, cache)
    whole_repo = (
        REPO_SPEC.match(parsed.text) is not None and ":" not in parsed.text and not filename
    )
    if whole_repo and not repo_dir.exists():
        raise ModelError(
            f"Nothing to remove: {parsed.repo} is not in the Hugging Face cache ({cache})."
        )
    removed, unread = [], []
    for snapshot in ordered_snapshots(repo_dir):
        # (what cannot be read is not removed); a split model: every part, and a part whose
        # first is gone, which no model loads (it was "no GGUF file" to remove)
        wanted = "*" if whole_repo else parsed.pattern
        for path in [*snapshot_files(snapshot, unread, pattern=wanted),
                     *_orphaned_parts(snapshot)]:
            if whole_repo or pattern_matches(path.relative_to(snapshot).as_posix(),
                                             parsed.pattern):
                removed += [part for part in ([path] if is_later_part(path.name)
                                              else part_paths(path))
                            if part.is_file() or part.is_symlink()]
    refuse_what_stores_link_to(removed)  # (before any file goes)
    for part in removed:
        delete_cached_file(part)
    if not removed and not whole_repo:
        refuse_a_later_part(parsed.repo, parsed.pattern, cache_dir=cache)
    if not removed and unread:  # (it may be there: `models list` names it)
        raise ModelError(unread[0])
    if not removed:
        raise ModelError(
            f"Nothing to remove: {parsed.repo} has no GGUF file in the Hugging Face cache "
            f"({cache}); its other files belong to other tools." if whole_repo else
            f"Nothing to remove: no file of {parsed.repo} matching '{parsed.pattern}' "
            f"is in the cache ({cache})."
        )
    if not any(_keeps_the_folder(path) for s in ordered_snapshots(repo_dir)
               for path in s.rglob("*")):
        shutil.rmtree(repo_dir, ignore_errors=True)
        shutil.rmtree(cache / ".locks" / repo_dir.name, ignore_errors=True)
    return removed


def _only_read(model: str, tool: str) -> ModelError:
    return ModelError(f"{model} belongs to {tool}, which localpref only reads; remove it with "
                      f"{tool}.")


def _remove_a_cached_file(path: Path, cache: Path) -> list[Path]:
    """``models remove PATH``: a GGUF file of a snapshot in the cache ``cache`` (a split
    model's first part with its other parts); the paths removed. Any other file there (a
    blob, a model card, ``refs/main``, another tool's weights) and a path outside the cache
    are ``ModelError``."""
    # ".." is resolved first, and the folder holding the file wherever links lead it:
    # "CACHE/../x.gguf" is not in the cache.
    absolute = Path(os.path.normpath(path.absolute()))
    folder, resolved_cache = absolute.parent.resolve(), cache.resolve()
    if folder != resolved_cache and resolved_cache not in folder.parents:
        raise ModelError(
            f"{path} is not in the Hugging Face cache; delete it yourself if you wish."
        )
    inside = (folder / absolute.name).relative_to(resolved_cache).parts
    if not (absolute.name.lower().endswith(".gguf") and len(inside) > 3
            and inside[0].startswith("models--") and inside[1] == "snapshots"):
        raise ModelError(f"{path} is not a GGUF file of a snapshot in the Hugging "
                         "Face cache; localpref removes only those (the cache's other "
                         "files belong to other tools).")
    first = part_paths(absolute)[0]
    if is_later_part(absolute.name) and (_checked_is_file(first) or first.is_symlink()):
        check_parts(absolute)  # (the sentence naming its first part)
    parts = [part for part in ([absolute] if is_later_part(absolute.name)
                               else part_paths(absolute))
             if _checked_is_file(part) or part.is_symlink()]
    if not parts:
        raise ModelError(f"{path} is a folder, not a GGUF file.")
    refuse_what_stores_link_to(parts)
    for part in parts:
        delete_cached_file(part)
    return parts


def _orphaned_parts(snapshot: Path) -> list[Path]:
    """The later parts of split models under ``snapshot`` whose first part is not there."""
    return [path for path in _files_below(snapshot, [])
            if path.name.lower().endswith(".gguf") and is_later_part(path.name)
            and not _is_file(part_paths(path)[0])]


def refuse_what_stores_link_to(files: list[Path]) -> None:
    """One sentence when a store's model is a link to one of ``files`` (LM Studio's "import
    as a link", an ollama blob linked to a file kept elsewhere): removed, it was gone from
    that tool without a word."""
    linked = store_links_to([file for file in files if file.exists()])
    if not linked:
        return
    tools = list(dict.fromkeys(STORE_TOOLS[spec.split(":", 1)[0]] for spec in linked))
    several = len(linked) > 1
    owner = f"{tools[0]}'s model{'s' if several else ''}" if len(tools) == 1 else "The models"
    raise ModelError(f"{owner} {', '.join(linked)} link{'' if several else 's'} to this file; "
                     f"remove {'them' if several else 'it'} in {' and '.join(tools)} first, "
                     "then run this again.")


def _keeps_the_folder(path: Path) -> bool:
    """Whether a file left in a snapshot keeps its repository's cache folder: a GGUF file, or
    a file of ``LEFTOVER_BYTES`` or more (another tool's weights)."""
    return path.is_file() and (path.name.lower().endswith(".gguf")
                               or path.stat().st_size >= LEFTOVER_BYTES)


def _link_target(path: Path) -> Path | None:
    """Where a symlink points, one level only (a blob may itself link to a shared store)."""
    if not path.is_symlink():
        return None
    target = Path(os.readlink(path))
    if not target.is_absolute():
        target = path.parent / target
    return Path(os.path.normpath(target))


def delete_cached_file(path: Path) -> None:
    """Remove a snapshot entry, and its blob once no other snapshot entry links to it.

    Only entries under a ``blobs`` folder are deleted as blobs; whatever a blob itself links
    to (huggingface_hub's shared store) is left to huggingface_hub.
    """
    blob = _link_target(path)
    path.unlink(missing_ok=True)
    repo_dirs = [folder.parent for folder in path.parents if folder.name == "snapshots"]
    # huggingface_hub links a snapshot entry to its own repository's blobs folder only.
    if blob is not None and blob.parent.name == "blobs" and blob.parent.parent in repo_dirs:
        repo_dir = blob.parent.parent
        still_used = any(
            _link_target(link) == blob for link in (repo_dir / "snapshots").rglob("*")
        )  # fmt: skip
        if not still_used:
            blob.unlink(missing_ok=True)
    # Drop folders the removal emptied, up to and including the snapshot, never above it.
    for folder in path.parents:
        if folder.name == "snapshots" or folder.parent == folder:
            break
        try:
            folder.rmdir()
        except OSError:
            break
