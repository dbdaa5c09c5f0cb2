"""Fetching one GGUF from the Hub into the Hugging Face cache, checked end to end.

One metadata request picks the file (and gives its size and SHA-256), the free disk space is
checked, huggingface_hub downloads it (to a temporary file renamed into place, so an
interrupted download leaves nothing where the model belongs), then the file's SHA-256 is
compared with the Hub's record or the catalog's pin and a mismatch is deleted.
"""

from __future__ import annotations

import hashlib
import inspect
import os
import re
import shutil
from pathlib import Path
from typing import Any

from localpref.errors import ModelError
from localpref.models.cache import delete_cached_file
from localpref.models.hub_env import DEFAULT_REVISION, HUB_TIMEOUT, hf_cache_dir, hub_endpoint
from localpref.models.hub_errors import download_error
from localpref.models.progress import DownloadCancelled, ProgressCallback, progress_class
from localpref.models.sizes import format_size
from localpref.models.spec import DEFAULT_PATTERN, pattern_matches, several_matches_error
from localpref.split_files import is_later_part, part_names

_HEX64 = re.compile(r"^[0-9a-f]{64}$")


def download_model(
    repo: str,
    pattern: str = DEFAULT_PATTERN,
    *,
    expected_sha256: str | None = None,
    progress: ProgressCallback | None = None,
    cache_dir: Path | None = None,
) -> Path:
    """Download the one GGUF of ``repo`` matching ``pattern`` into the Hugging Face cache (a
    split model's every part, ``split_files``; the path returned is its first part's).

    Lists the repo (one metadata request), picks the file, checks the free disk space, downloads
    with huggingface_hub (which writes to a temporary file and renames it into place), then
    checks the SHA-256 against ``expected_sha256`` or the Hub's LFS record. A file that fails
    the checksum is deleted. Returns the snapshot path (``resolve_model`` then validates its
    GGUF header). ``progress`` may raise :class:`DownloadCancelled` to stop the download; it is
    re-raised with a sentence naming the file, and nothing half-written is kept.
    """
    cache = cache_dir or hf_cache_dir()
    endpoint = hub_endpoint()
    files = _pick_remote_files(repo, pattern, endpoint)
    filename, _, hub_sha = files[0]
    if expected_sha256 and hub_sha and expected_sha256.lower() != hub_sha.lower():
        raise ModelError(
            f"The Hub's SHA-256 of {filename} in {repo} differs from the one the catalog pins; "
            "the file changed upstream, so it was not downloaded."
        )
    _check_free_space(cache, sum(size for _, size, _ in files), filename)
    paths = [_download_one(repo, name, size, expected_sha256 if index == 0 else None, sha,
                           endpoint, cache, progress)
             for index, (name, size, sha) in enumerate(files)]
    return paths[0]


def _download_one(repo: str, filename: str, size: int, expected_sha256: str | None,
                  hub_sha: str | None, endpoint: str, cache: Path,
                  progress: ProgressCallback | None) -> Path:
    """Download one file of the repo and check its SHA-256 (see ``download_model``)."""
    try:
        from huggingface_hub import hf_hub_download

        options: dict[str, Any] = {}
        if "tqdm_class" in inspect.signature(hf_hub_download).parameters:
            options["tqdm_class"] = progress_class(progress, size)
        result = hf_hub_download(
            repo_id=repo,
            filename=filename,
            revision=DEFAULT_REVISION,
            cache_dir=str(cache),
            endpoint=endpoint,
            etag_timeout=HUB_TIMEOUT,
            **options,
        )
    except DownloadCancelled:
        raise DownloadCancelled(
            f"The download of {filename} from {repo} was cancelled; nothing was kept."
        ) from None
    except Exception as error:  # noqa: BLE001 - every failure becomes one sentence
        raise download_error(error, repo, filename, endpoint, cache) from None
    path = Path(str(result))
    wanted = (expected_sha256 or hub_sha or "").lower()
    if not wanted:
        blob_name = path.resolve().name
        wanted = blob_name if _HEX64.match(blob_name) else ""
    if wanted:
        actual = file_sha256(path)
        if actual != wanted:
            delete_cached_file(path)
            raise ModelError(
                f"The download of {filename} from {repo} is corrupt (SHA-256 {actual[:12]}… "
                f"instead of {wanted[:12]}…), so it was deleted; run the command again."
            )
    return path


def _pick_remote_files(repo: str, pattern: str, endpoint: str
                       ) -> list[tuple[str, int, str | None]]:
    """The one GGUF of the repo matching ``pattern`` (of a split model: every part, the first
    first), each with its size and LFS SHA-256."""
    try:
        from huggingface_hub import HfApi

        info = HfApi(endpoint=endpoint).model_info(
            repo, revision=DEFAULT_REVISION, files_metadata=True, timeout=HUB_TIMEOUT
        )
    except Exception as error:  # noqa: BLE001
        raise download_error(error, repo, None, endpoint, None) from None
    siblings = {sibling.rfilename: sibling for sibling in info.siblings or []}
    ggufs = sorted(name for name in siblings
                   if name.lower().endswith(".gguf") and not is_later_part(name))
    matches = [name for name in ggufs if pattern_matches(name, pattern)]
    if not matches:
        if not ggufs:
            raise ModelError(f"{repo} on the Hugging Face Hub has no GGUF files.")
        shown = ", ".join(ggufs[:8]) + (f" and {len(ggufs) - 8} more" if len(ggufs) > 8 else "")
        raise ModelError(f"No GGUF file of {repo} matches '{pattern}' (it has {shown}).")
    if len(matches) > 1:
        raise several_matches_error(pattern, repo, matches, where="on the Hub")
    folder, _, first = matches[0].rpartition("/")
    names = [f"{folder}/{name}" if folder else name for name in part_names(first)]
    missing = [name for name in names if name not in siblings]
    if missing:
        raise ModelError(f"{matches[0]} is the first part of a split model, and {repo} on the "
                         f"Hugging Face Hub lacks {', '.join(missing)}.")
    files = []
    for name in names:
        sibling = siblings[name]
        lfs = sibling.lfs
        size = sibling.size or (lfs.size if lfs else 0) or 0
        files.append((name, int(size), lfs.sha256 if lfs else None))
    return files


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


def file_sha256(path: str | os.PathLike[str], chunk_size: int = 1 << 20) -> str:
    """The SHA-256 of a file, hex-encoded."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()
