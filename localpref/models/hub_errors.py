"""The sentences for a failed download: a huggingface_hub, HTTP or disk error, said plainly.

Errors are recognised by class name anywhere in the cause/context chain, so the translation
holds across huggingface_hub and httpx versions without importing either here.
"""

from __future__ import annotations

import errno
from pathlib import Path

from localpref.errors import ModelError
from localpref.models.hub_env import DEFAULT_REVISION, hf_cache_dir

#: Class names of a connection cut in the middle of a file.
_INTERRUPTED = {
    "RemoteProtocolError",
    "ReadError",
    "ChunkedEncodingError",
    "IncompleteRead",
    "ProtocolError",
}
#: Class names of a Hub that cannot be reached at all.
_UNREACHABLE = {
    "ConnectError",
    "ConnectTimeout",
    "TimeoutException",
    "ConnectionError",
    "LocalEntryNotFoundError",
    "Timeout",
}


def error_chain(error: BaseException) -> list[BaseException]:
    """The error and its causes/contexts, outermost first."""
    chain: list[BaseException] = []
    current: BaseException | None = error
    while current is not None and current not in chain:
        chain.append(current)
        current = current.__cause__ or current.__context__
    return chain


def download_error(
    error: BaseException, repo: str, filename: str | None, endpoint: str, cache: Path | None
) -> ModelError:
    """Translate a huggingface_hub / HTTP / OS failure into one sentence."""
    chain = error_chain(error)
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
    if names & _INTERRUPTED or any("Consistency check failed" in str(e) for e in chain):
        return ModelError(
            f"The download of {what} was interrupted; nothing was kept, run the command again."
        )
    if names & _UNREACHABLE:
        return ModelError(
            f"Cannot reach the Hugging Face Hub at {endpoint} to download {what} (no network?)."
        )
    response = getattr(error, "response", None)
    status = getattr(response, "status_code", None)
    if status is not None:
        return ModelError(f"The Hugging Face Hub answered HTTP {status} for {what}.")
    message = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return ModelError(f"Downloading {what} failed: {message.rstrip('.')}.")
