"""Download progress: the callback type, and the tqdm stand-in huggingface_hub reports through.

A progress callback may stop a download by raising :class:`DownloadCancelled`: the exception
travels up through huggingface_hub, which deletes its temporary file, so nothing half-written
is left in the cache.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from localpref.errors import ModelError

#: ``progress(done_bytes, total_bytes)``; total is 0 when the server does not say.
ProgressCallback = Callable[[int, int], None]


class DownloadCancelled(ModelError):
    """The user stopped a download; raise it from a progress callback to stop one."""


def progress_class(progress: ProgressCallback | None, size: int) -> type:
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
