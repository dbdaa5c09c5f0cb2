"""Walking a model folder: every file below it, the folders that cannot be read said, not
raised by ``os.walk`` into silence."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path


def files_below(root: Path, unreadable: Callable[[OSError], None], *,
                follow_links: bool) -> list[Path]:
    """Every entry below ``root`` that is not a folder, sorted. ``unreadable`` is called
    with the error of each folder that cannot be read (its permissions; a folder gone
    meanwhile, or a ``root`` that does not exist or is a file, holds nothing and is not an
    error). With ``follow_links`` linked folders are walked (models kept on another drive),
    never one folder twice (a link that loops)."""

    def refused(error: OSError) -> None:
        if not isinstance(error, (FileNotFoundError, NotADirectoryError)):
            unreadable(error)

    found, seen = [], set()
    for folder, folders, files in os.walk(root, onerror=refused, followlinks=follow_links):
        real = os.path.realpath(folder)
        if real in seen:
            folders.clear()
            continue
        seen.add(real)
        found += [Path(folder, name) for name in files]
    return sorted(found)
