"""The worker side of streaming: read pieces, hand them to the interface in batches, save often.

Markdown re-rendering lags above about 20 updates a second, while the model writes 60 tokens a
second or more; so the worker gathers pieces and flushes them at most ``flush_hz`` times a
second, plus once at the end. It also saves the text so far every ``save_interval`` seconds, so
a killed app keeps the partial answer. Nothing here touches a widget: ``flush`` and ``save`` are
callables the caller gives (``ChatSession.write``: the app's ``post_message`` and the store),
called from the worker thread.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager

#: Interface updates per second while an answer streams.
FLUSH_HZ = 15.0
#: Seconds between saves of a partial answer.
SAVE_INTERVAL = 1.0


def pump(
    pieces: Iterable[tuple[int, str]],
    n_tracks: int,
    *,
    cancel: threading.Event,
    close: Callable[[], None],
    flush: Callable[[list[str]], None],
    save: Callable[[list[str]], None] | None = None,
    flush_hz: float = FLUSH_HZ,
    save_interval: float = SAVE_INTERVAL,
) -> list[str]:
    """Consume ``(track, piece)`` pairs until they end or ``cancel`` is set; return the texts.

    ``flush(deltas)`` receives, per track, the text added since the previous flush;
    ``save(texts)`` the whole text of each track so far. ``close()`` cancels the generation
    (it must run on this thread, the one iterating).
    """
    texts = [""] * n_tracks
    pending: list[list[str]] = [[] for _ in range(n_tracks)]
    last_flush = last_save = time.monotonic()

    def flush_now() -> None:
        deltas = ["".join(parts) for parts in pending]
        for parts in pending:
            parts.clear()
        flush(deltas)

    for index, piece in pieces:
        texts[index] += piece
        pending[index].append(piece)
        now = time.monotonic()
        if now - last_flush >= 1.0 / flush_hz:
            flush_now()
            last_flush = now
        if save is not None and now - last_save >= save_interval:
            save(list(texts))
            last_save = now
        if cancel.is_set():
            close()
            break
    flush_now()
    return texts


class EngineUsers:
    """Counts the worker threads using the model, so closing it can wait until none does."""

    def __init__(self) -> None:
        self._count = 0
        self._condition = threading.Condition()

    @contextmanager
    def using(self) -> Iterator[None]:
        with self._condition:
            self._count += 1
        try:
            yield
        finally:
            with self._condition:
                self._count -= 1
                self._condition.notify_all()

    def wait_idle(self, timeout: float) -> bool:
        """True once no worker uses the model (False if ``timeout`` seconds pass first)."""
        with self._condition:
            return self._condition.wait_for(lambda: self._count == 0, timeout)
