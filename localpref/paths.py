"""Paths as the user types them (a flag, an environment variable): ``~`` expanded as a shell
expands it."""

from __future__ import annotations

import os
from pathlib import Path


def expanded(text: str | os.PathLike[str]) -> Path:
    """``text`` with a leading ``~`` or ``~user`` expanded; ``~user`` for no such user stays as
    written, as a shell leaves it (``Path.expanduser`` raises RuntimeError there: a traceback
    for ``--model ~nobody/x.gguf``)."""
    return Path(os.path.expanduser(os.fspath(text)))
