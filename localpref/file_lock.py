"""An advisory lock held on a file while one process writes something two must not write at
once (a calibration's rows, a batch's answers file).

``exclusive`` takes an ``flock`` on the lock file without waiting: a second process gets the
caller's one-sentence error at once instead of interleaving its writes. The lock goes when the
process ends however it ends (a killed run leaves no stale lock); the lock file itself stays,
empty, so that every process locks the same file. Where ``fcntl`` is missing (Windows)
nothing is locked.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from localpref.errors import LocalprefError


@contextmanager
def exclusive(path: Path, *, busy: LocalprefError, what: str) -> Iterator[None]:
    """Hold the lock on ``path`` (created with its folder when missing), or raise ``busy``
    when another process holds it; a lock file that cannot be opened is an error of the same
    class naming ``what`` it locks."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows: no advisory locks
        yield
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle = path.open("a")
    except OSError as error:
        blocker = file_in_the_way(path.parent)
        reason = f"{blocker} is a file, not a folder" if blocker else error.strerror or error
        raise type(busy)(f"Cannot open the lock file of {what}, {path}: {reason}.") from None
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise busy from None
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def file_in_the_way(folder: Path) -> Path | None:
    """The nearest of ``folder`` and its parents that exists and is not a folder (a file
    named like a folder of the path), or None."""
    for place in (folder, *folder.parents):
        if place.exists():
            return None if place.is_dir() else place
    return None
