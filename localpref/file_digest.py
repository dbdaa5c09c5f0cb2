"""A short fingerprint of a (model) file without reading all of it."""

from __future__ import annotations

import hashlib
from pathlib import Path

#: How much of each end of the file the digest reads.
DIGEST_BYTES = 1 << 20


def file_digest(path: str | Path, *, with_mtime: bool) -> str:
    """SHA-256 of the file's size (and, ``with_mtime``, its modification time) and its first
    and last MiB, as 32 hex digits: two model files that differ anywhere but in the middle of
    their tensor data differ here (their GGUF headers and last tensors do)."""
    path = Path(path)
    info = path.stat()
    stamp = f"{info.st_size}:{info.st_mtime_ns}:" if with_mtime else f"{info.st_size}:"
    digest = hashlib.sha256(stamp.encode())
    with path.open("rb") as handle:
        digest.update(handle.read(DIGEST_BYTES))
        if info.st_size > DIGEST_BYTES:
            handle.seek(max(DIGEST_BYTES, info.st_size - DIGEST_BYTES))
            digest.update(handle.read(DIGEST_BYTES))
    return digest.hexdigest()[:32]
