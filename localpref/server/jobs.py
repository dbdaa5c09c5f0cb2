"""One generation run in a worker thread, its pieces handed to the event loop.

``Model.stream`` decodes in the calling thread, so each request's generation runs in its own
thread and feeds an ``asyncio.Queue``: ``("piece", text)`` events, then ``("done", result)``
or ``("error", exception)``. The library serialises or batches the generations (its lock
today, its scheduler later); the server never decodes in the event loop. ``cancel()`` (a client
that went away, or the server shutting down) ends the generation at its next step, and the
result then holds the text written so far.
"""

from __future__ import annotations

import asyncio
import sys
import threading
import time
import traceback
from collections.abc import Callable
from typing import Any

from localpref.decoding import Generation, Result
from localpref.errors import LocalprefError

Event = tuple[str, Any]


class GenerationJob:
    """A generation started by ``start()`` in a worker thread; read its ``events``."""

    def __init__(self, start: Callable[[], Generation], loop: asyncio.AbstractEventLoop,
                 on_end: Callable[[GenerationJob], None] | None = None) -> None:
        self.events: asyncio.Queue[Event] = asyncio.Queue()
        self._start = start
        self._loop = loop
        self._on_end = on_end
        self._cancelled = threading.Event()
        self._generation: Generation | None = None
        #: the generation's result once it has ended (None if it never started)
        self.result: Result | None = None
        #: when the server last asked whether the client is still there (time.monotonic())
        self.disconnect_checked_at = time.monotonic()
        self._thread = threading.Thread(target=self._work, name="localpref-request", daemon=True)

    def begin(self) -> None:
        self._thread.start()

    def cancel(self) -> None:
        """End the generation at its next step (from any thread); its text so far is kept."""
        self._cancelled.set()
        generation = self._generation
        if generation is not None:
            generation.cancel()

    @property
    def cancelled(self) -> bool:
        return self._cancelled.is_set()

    def join(self, timeout: float | None = None) -> None:
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _emit(self, kind: str, value: Any) -> None:
        try:
            self._loop.call_soon_threadsafe(self.events.put_nowait, (kind, value))
        except RuntimeError:  # the event loop has closed: nobody is listening any more
            pass

    def _work(self) -> None:
        generation: Generation | None = None
        try:
            generation = self._start()
            self._generation = generation
            if self._cancelled.is_set():
                generation.cancel()
            for piece in generation:
                self._emit("piece", piece)
            self._emit("done", generation.result)
        except Exception as error:  # noqa: BLE001 - every failure goes back to the client
            if not isinstance(error, LocalprefError):  # a bug: keep its traceback in the log
                traceback.print_exc(file=sys.stderr)
            self._emit("error", error)
        finally:
            if generation is not None:
                generation.close()
                self.result = generation.result
            if self._on_end is not None:
                self._on_end(self)

