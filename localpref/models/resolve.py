"""Turning a ``--model`` value into a checked local GGUF file, from the cache when possible.

A Hub file already in the Hugging Face cache is used with no network call (so it works with
``HF_HUB_OFFLINE=1``); otherwise it is downloaded when allowed. Whatever the source, the
file's GGUF header is validated before it is returned.
"""

from __future__ import annotations

import os
from pathlib import Path

from localpref.errors import ModelError
from localpref.gguf_header import read_gguf_header
from localpref.models.bundled import BUNDLED_MODEL_NAME, bundled_model_path
from localpref.models.cache import cached_matches, refuse_a_later_part, relative_in_snapshot
from localpref.models.download import download_model
from localpref.models.hub_env import hf_cache_dir, hub_offline
from localpref.models.progress import ProgressCallback
from localpref.models.spec import (
    STORE_TOOLS,
    ModelSpec,
    parse_model_spec,
    same_name_folder,
    several_matches_error,
)
from localpref.models.stores import resolve_stored, stored_elsewhere
from localpref.split_files import check_parts, is_later_part


def refuse_an_empty_name(model: object) -> None:
    """One sentence for an empty model name: a script's unset variable would silently be
    the bundled model."""
    if isinstance(model, str) and not model.strip():
        raise ModelError("The model name is empty; give a path or a name, or None for the "
                         f"bundled model ({BUNDLED_MODEL_NAME}).")


def resolve_model(
    spec: str | os.PathLike[str] | None = None,
    *,
    filename: str | None = None,
    progress: ProgressCallback | None = None,
    download: bool = True,
    stores_first: bool = True,
) -> Path:
    """The local GGUF file for a ``--model`` value, downloading it when needed and allowed.

    ``spec`` is None or the bundled name (the bundled file), an existing path, a catalog name,
    ``ORG/NAME``, ``ORG/NAME:PATTERN``, ``ollama:NAME[:TAG]`` or ``lmstudio:PATTERN`` (used in
    place, never copied or downloaded); ``filename`` is a glob pattern (``*Q4_K_M.gguf``) or an
    exact file name picking one file of a Hub repo. A cached file is returned without a network
    call. With ``download=False`` a file that is not cached is an error instead of a download.
    ``progress(done_bytes, total_bytes)`` is called while downloading (and may raise
    ``DownloadCancelled`` to stop). A Hub name that is not cached but that ollama or LM
    Studio keeps under that name is one sentence pointing to ``ollama:``/``lmstudio:``
    instead of a download, unless ``stores_first`` is False (``models pull``: a copy of its
    own). A folder is the one GGUF model in it (``the_model_in``); a folder in the current one
    whose bare name also names a catalog, Hub or store model is that model where it is here
    (cached, or kept by the store), else the folder's own model where it holds one, else the
    name's (downloaded). The returned file's GGUF header has been validated. Raises
    :class:`ModelError` (one sentence) on any failure.
    """
    try:
        parsed = parse_model_spec(spec, filename=filename)
    except ModelError:
        if isinstance(spec, str) and not filename:
            _refer_to_a_store(spec, f"'{spec.strip()}' is not a file, a catalog name or a "
                              "Hugging Face repo")
        raise
    folder = (same_name_folder(spec) if stores_first and not filename
              and parsed.kind in ("hub", "store") else None)  # (a file pattern: the repo's)
    if folder is not None:  # the name's model where it is here, else the folder's
        try:
            return _resolve_parsed(parsed, progress=None, download=False, stores_first=True)
        except ModelError:
            if _holds_model_files(folder):
                return _resolve_parsed(ModelSpec("path", str(folder), path=folder),
                                       progress=progress, download=download, stores_first=True)
    return _resolve_parsed(parsed, progress=progress, download=download,
                           stores_first=stores_first)


def _model_files(folder: Path) -> list[Path]:
    """A folder's GGUF files that may be a model or a model's part (a vision projector,
    ``*mmproj*``, is not), by name. Raises OSError for a folder that cannot be listed."""
    return sorted(entry for entry in folder.iterdir()
                  if entry.name.lower().endswith(".gguf") and "mmproj" not in entry.name.lower())


def _holds_model_files(folder: Path) -> bool:
    try:
        return bool(_model_files(folder))
    except OSError:
        return True  # (reading it as a folder says why it cannot be)


def _resolve_parsed(parsed: ModelSpec, *, progress: ProgressCallback | None, download: bool,
                    stores_first: bool) -> Path:
    """``resolve_model`` of a parsed spec."""
    if parsed.kind == "bundled":
        path = bundled_model_path()
    elif parsed.kind == "store":
        assert parsed.store is not None and parsed.name is not None
        path = resolve_stored(parsed.store, parsed.name)
    elif parsed.kind == "path":
        assert parsed.path is not None
        path = parsed.path
        try:
            if path.is_dir():
                path = the_model_in(path)
        except PermissionError:  # (a folder on its way that the user may not enter)
            raise ModelError(f"Cannot read {path}: permission denied.") from None
    else:
        path = _resolve_hub(parsed, progress=progress, download=download,
                            stores_first=stores_first)
    try:
        read_gguf_header(path)
    except ModelError as error:
        if parsed.kind == "store":  # the file is a blob whose name says nothing of the model
            raise ModelError(f"{parsed.display} cannot be used: {error}") from None
        raise
    check_parts(path)  # a later part, or a first part without the others: said here, for all
    return path


def the_model_in(folder: Path) -> Path:
    """The GGUF model a folder holds, where it holds one (``hf download ORG/NAME --local-dir
    DIR`` leaves a folder of one model's files): its file, or a split model's first part; a
    vision projector (``*mmproj*``) is not a model. Raises PermissionError for a folder the
    user may not read."""
    named = _model_files(folder)
    files = [entry for entry in named if entry.is_file()]
    models = [entry for entry in files if not is_later_part(entry.name)]
    if len(models) == 1:
        return models[0]
    if not models:
        if files:  # later parts alone: the sentence that names the missing first part
            check_parts(files[0])
        if named:  # a link to nothing, a folder named x.gguf
            raise ModelError(f"{folder} is a directory, not a GGUF file, and {named[0].name} "
                             "in it is not a file (a broken link?).")
        raise ModelError(f"{folder} is a directory, not a GGUF file.")
    names = ", ".join(model.name for model in models[:4]) + (", ..." if len(models) > 4 else "")
    raise ModelError(f"{folder} is a directory of {len(models)} GGUF models ({names}); give "
                     "the one to load.")


def _resolve_hub(parsed: ModelSpec, *, progress: ProgressCallback | None, download: bool,
                 stores_first: bool) -> Path:
    """A Hub spec: the cached file when there is one, else a checked download."""
    assert parsed.repo is not None and parsed.pattern is not None
    cache = hf_cache_dir()
    cached = cached_matches(parsed.repo, parsed.pattern, cache_dir=cache)
    if len(cached) == 1:
        return cached[0]
    if len(cached) > 1:
        raise several_matches_error(
            parsed.pattern,
            parsed.repo,
            [relative_in_snapshot(p) for p in cached],
            where="in the cache",
        )
    refuse_a_later_part(parsed.repo, parsed.pattern, cache_dir=cache)
    by_name = parsed.entry is not None and parsed.pattern == parsed.entry.file
    target = parsed.text if by_name else parsed.display
    if any(character in target for character in "*?["):
        target = f"'{target}'"
    if stores_first:  # typed as ollama or LM Studio shows it: not a Hub download
        _refer_to_a_store(parsed.text, f"{parsed.display} is not in the Hugging Face cache",
                          f" (or `localpref models pull {target}` for a copy of its own)",
                          pattern=parsed.pattern if parsed.entry is None else None)
    if not download:
        raise ModelError(
            f"{parsed.display} is not downloaded; run `localpref models pull {target}` first."
        )
    if hub_offline():
        raise ModelError(
            f"No file of {parsed.repo} matching '{parsed.pattern}' is in the Hugging Face cache "
            f"({cache}), and HF_HUB_OFFLINE is set, so it cannot be downloaded."
        )
    return download_model(
        parsed.repo,
        parsed.pattern,
        expected_sha256=parsed.sha256,
        progress=progress,
        cache_dir=cache,
    )


def _refer_to_a_store(text: str, what_is_wrong: str, download_instead: str = "", *,
                      pattern: str | None = None) -> None:
    """Raise the sentence that points to ``ollama:NAME`` / ``lmstudio:NAME`` when another tool
    keeps the model ``text`` names (the user typed it as that tool shows it; an LM Studio file
    matching ``pattern`` too); return if none does. ``download_instead`` (the other way: a Hub
    download) is added for LM Studio's models, which are Hub repos' files."""
    stored = stored_elsewhere(text, pattern)
    if not stored:
        return
    tool = STORE_TOOLS[stored[0].store]
    other_way = download_instead if stored[0].store == "lmstudio" else ""
    if len(stored) == 1:
        raise ModelError(f"{what_is_wrong}, but {tool} keeps it: give "
                         f"--model {stored[0].spec}{other_way}.")
    specs = list(dict.fromkeys(model.spec for model in stored))
    # names that differ only in case are each a --model; one name in two folders, a path each
    choices = specs if len(specs) == len(stored) else [str(model.path) for model in stored]
    raise ModelError(f"{what_is_wrong}, but {tool} keeps {len(stored)} models it may name: "
                     f"give --model {' or --model '.join(choices)}{other_way}.")
