"""One generation, read by the event loop as the scheduler writes it.

The request is checked, rendered, tokenized and queued in the event loop (about a millisecond
of Python and no decoding; the server's model ids name no reward model to load), except a big
one (``GenerationArgs.big``: tens of thousands of characters or hundreds of messages, seconds
of rendering and tokenizing), which is made in a worker thread so that it stalls no other
stream (``begin_in_worker``). The
scheduler's thread wakes the loop whenever a piece or the end arrives (``Generation.on_ready``),
which then reads it without waiting. A request's first piece crosses one thread boundary each
way (loop -> scheduler -> loop); a worker thread per request would add two more, each a wait
for a core on a busy machine. The wake-ups of one step's requests are one (``LoopWaker``): a
step of 8 streams wakes the loop once, not 8 times (each a write to the loop's self-pipe and a
turn of the loop on a core that llama.cpp's threads are using), and a stream's pieces between
its first and its end wait up to ``HOLD_SECONDS`` for one another, to be read and framed
together.

``events`` is an ``asyncio.Queue`` of ``("piece", text)`` events, then ``("done", result)`` or
``("error", exception)``. ``cancel()`` (a client that went away, or the server shutting down)
ends the generation at its next step, and the result then holds the text written so far.
"""

from __future__ import annotations

import asyncio
import math
import sys
import threading
import time
import traceback
import weakref
from collections.abc import Callable
from typing import Any

from localpref.decoding import Generation, Result, at_step_end
from localpref.errors import LocalprefError

Event = tuple[str, Any]


#: How long a stream's later pieces may wait for one another (seconds), while the loop's
#: drains come closer than this: they are read together, at most this much later, and sent
#: in one frame (``LoopWaker``; docs/server.md, "Pieces a few milliseconds apart share a
#: frame").
HOLD_SECONDS = 0.02


class LoopWaker:
    """Runs callbacks in one event loop from other threads, many per wake-up.

    The first callback of a burst schedules a drain (``call_soon_threadsafe``), the others
    join it. Within a decoding step (the scheduler's thread, ``decoding.at_step_end``) the
    drain is scheduled when the step ends, so that every request's piece of the step is one
    wake-up. When drains come less than ``hold`` seconds apart (steps shorter than that: one
    or two streams), the loop instead drains again ``hold`` seconds after the last drain, and
    the callbacks that arrive meanwhile wait for that drain rather than wake the loop, unless
    they are ``urgent`` (a stream's first piece, its end). A lone stream of 100 tokens a
    second then wakes the loop 50 times a second instead of 100, and the loop frames the
    pieces it finds together as one (``streaming.sse_events``). A timed drain that finds
    nothing ends the holding; steps longer than ``hold`` never start it, so that the loop is
    not woken by a timer between them (on cores that llama.cpp's threads are using, a
    wake-up costs the step more than the loop's own work).
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, hold: float = HOLD_SECONDS) -> None:
        self._loop = loop
        self.hold = hold
        self._lock = threading.Lock()
        self._pending: list[Callable[[], None]] = []
        self._scheduled = False  # a drain is asked of the loop (``call_soon_threadsafe``)
        self._held = False  # a timed drain is due within ``hold``: callbacks wait for it
        # the loop's thread only:
        self._timer: asyncio.TimerHandle | None = None
        self._drained_at = -math.inf  # when a drain last ran something (``loop.time()``)

    def wake(self, callback: Callable[[], None], *, urgent: bool = False) -> None:
        """Run ``callback`` in the loop soon (from any thread); nothing if the loop closed."""
        with self._lock:
            self._pending.append(callback)
            if self._scheduled or (self._held and not urgent):
                return
            self._scheduled = True
        if not at_step_end(self._schedule):
            self._schedule()

    def _schedule(self) -> None:
        try:
            self._loop.call_soon_threadsafe(self._drain)
        except RuntimeError:  # the event loop has closed: nobody is listening any more
            with self._lock:
                self._pending.clear()
                self._scheduled = False

    def _drain(self, *, timed: bool = False) -> None:
        now = self._loop.time()
        with self._lock:
            pending, self._pending = self._pending, []
            self._scheduled = False
            hold = (bool(pending) and self.hold > 0 and self._timer is None
                    and (timed or now - self._drained_at < self.hold))
            if hold:
                self._held = True
        if pending:
            self._drained_at = now
        if hold:
            self._timer = self._loop.call_later(self.hold, self._timed_drain)
        for callback in dict.fromkeys(pending):  # once each, in order
            callback()

    def _timed_drain(self) -> None:
        self._timer = None
        with self._lock:
            if not self._pending:
                self._held = False  # quiet: the next callback wakes the loop at once
                return
        self._drain(timed=True)


_wakers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, LoopWaker] = \
    weakref.WeakKeyDictionary()


def waker_for(loop: asyncio.AbstractEventLoop) -> LoopWaker:
    """The loop's one ``LoopWaker`` (made in the loop's thread, where jobs are made)."""
    waker = _wakers.get(loop)
    if waker is None:
        waker = _wakers[loop] = LoopWaker(loop)
    return waker


class GenerationJob:
    """A generation made by ``start()`` and read in the event loop; read its ``events``."""

    def __init__(self, start: Callable[[], Generation], loop: asyncio.AbstractEventLoop,
                 on_end: Callable[[GenerationJob], None] | None = None, *,
                 continuing: bool = False) -> None:
        self.events: asyncio.Queue[Event] = asyncio.Queue()
        self._start = start
        #: it continues a request already accepted (``Generation.start``'s ``continuing``)
        self.continuing = continuing
        self._waker = waker_for(loop)
        self._on_end = on_end
        self._cancelled = threading.Event()
        self._generation: Generation | None = None
        self._done = False  # the last event is in ``events``
        self._read_any = False  # a piece has been read (the next ones need not hurry)
        self._let_go = threading.Event()  # the scheduler has ended the generation
        self._made = threading.Event()  # clear while a worker thread makes the generation
        self._made.set()
        #: the generation's result once it has ended (None if it never started)
        self.result: Result | None = None
        #: when the server last asked whether the client is still there (time.monotonic())
        self.disconnect_checked_at = time.monotonic()

    def begin(self) -> None:
        """Make and queue the generation (in the event loop); a failure is an error event."""
        try:
            generation = self._start()
        except Exception as error:  # noqa: BLE001 - every failure goes back to the client
            self._end(("error", error))
            return
        self._queue(generation)

    async def begin_in_worker(self) -> None:
        """``begin``, with the generation made (its prompts rendered and tokenized) in a worker
        thread: for a request so big that making it would hold the event loop, and every
        other stream, for long (``GenerationArgs.big``)."""
        self._made.clear()
        try:
            generation = await asyncio.to_thread(self._make)
        except asyncio.CancelledError:  # the request's task ended: the generation never runs
            self._done = True
            if self._on_end is not None:
                self._on_end(self)
            raise
        except Exception as error:  # noqa: BLE001 - every failure goes back to the client
            self._end(("error", error))
            return
        self._queue(generation)

    def _make(self) -> Generation:
        try:
            return self._start()
        finally:
            self._made.set()

    def _queue(self, generation: Generation) -> None:
        """Start reading ``generation`` and queue it (in the event loop)."""
        try:
            self._generation = generation
            generation.on_ready(self._wake)
            if self._cancelled.is_set():
                generation.cancel()
            generation.start(continuing=self.continuing)
        except Exception as error:  # noqa: BLE001 - every failure goes back to the client
            self._end(("error", error))
            return
        self._read()

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
        """Wait until the scheduler has ended the generation (the server's shutdown, before
        the model is closed; not from the event loop's thread): first for a worker thread
        that is making it (it reads the model)."""
        self._made.wait(timeout)
        if self._generation is not None:
            self._let_go.wait(timeout)

    def _wake(self) -> None:
        """After each piece and at the end, in the scheduler's thread: the loop reads."""
        generation = self._generation
        ended = generation is not None and generation.ended
        if ended:
            self._let_go.set()
        # the first piece and the end go out at once; the pieces between may share a frame
        self._waker.wake(self._read, urgent=ended or not self._read_any)

    def _read(self) -> None:
        """Move what has arrived to ``events`` (in the event loop; never waits)."""
        generation = self._generation
        if generation is None or self._done:
            return
        while generation.ready():
            try:
                piece = next(generation)
            except StopIteration:
                self._end(("done", generation.result))
                return
            except Exception as error:  # noqa: BLE001 - every failure goes back to the client
                self._end(("error", error))
                return
            self._read_any = True
            self.events.put_nowait(("piece", piece))

    def _end(self, event: Event) -> None:
        self._done = True
        if event[0] == "error" and not isinstance(event[1], LocalprefError):
            traceback.print_exception(event[1], file=sys.stderr)  # a bug: keep its traceback
        generation = self._generation
        if generation is not None:
            generation.close()  # at once: it has ended, or it never started
            self.result = generation.result
        self._let_go.set()
        self.events.put_nowait(event)
        if self._on_end is not None:
            self._on_end(self)
