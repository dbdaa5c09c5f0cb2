"""Ctrl-C while an answer streams in the terminal: cancel it, keep what was printed.

Python turns Ctrl-C into a ``KeyboardInterrupt`` raised wherever the main thread happens to be.
While it waits for the next piece that is inside ``threading.Condition.wait``; an exception
raised while the condition re-takes its lock leaves that lock released under the scheduler's
thread, which then fails and never ends the answer (the command hung until it was killed). So
the streaming commands take the first Ctrl-C as a request: the signal handler only cancels the
generation (thread-safe, ``MultiGeneration.cancel``), the answer ends at its next step, and the
command exits 130 with the text printed so far. A second Ctrl-C raises as usual.
"""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from types import FrameType
from typing import Any

#: The exit code of a command ended by SIGTERM (128 + 15, as a shell reports it).
TERMINATED_EXIT = 143


class Interrupt:
    """Whether Ctrl-C was pressed (``pressed``), or SIGTERM came (``terminated``), inside
    ``cancel_on_interrupt``."""

    pressed = False
    terminated = False

    @property
    def exit_code(self) -> int:
        """The command's exit code: 143 after SIGTERM, 130 after Ctrl-C, else 0."""
        return TERMINATED_EXIT if self.terminated else 130 if self.pressed else 0


@contextlib.contextmanager
def cancel_on_interrupt(cancel: Callable[[], None]) -> Iterator[Interrupt]:
    """Inside, the first Ctrl-C or SIGTERM (what ``kill`` and ``timeout`` send) calls
    ``cancel`` and sets ``pressed`` or ``terminated``, so that the answer so far is printed as
    after Ctrl-C (SIGTERM killed the command at once, its answer's line and figures unsaid).
    After Ctrl-C its handler before is back (so a second Ctrl-C raises
    ``KeyboardInterrupt``); after SIGTERM, Ctrl-C and SIGTERM are ignored until the process
    ends, as ``terminate_as_exit`` does (a second SIGTERM raised inside the model's close).
    Without either, the handlers before are back on leaving. Outside the main thread (where
    no handler can be set) nothing changes."""
    interrupt = Interrupt()
    if threading.current_thread() is not threading.main_thread():
        yield interrupt
        return
    previous = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)}

    def handle(signum: int, frame: FrameType | None) -> None:
        if signum == signal.SIGTERM:  # as ``terminate_as_exit``: later stops are ignored
            interrupt.terminated = True
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            signal.signal(signal.SIGINT, signal.SIG_IGN)
        else:
            interrupt.pressed = True
            signal.signal(signum, previous[signum])
        cancel()

    for signum, before in previous.items():
        if before is not signal.SIG_IGN:  # (a job started in the background ignores Ctrl-C)
            signal.signal(signum, handle)
    try:
        yield interrupt
    finally:
        for signum, before in previous.items():
            if not interrupt.terminated:  # (after SIGTERM, both stay ignored: it is ending)
                signal.signal(signum, before)


@contextlib.contextmanager
def interrupt_once() -> Iterator[None]:
    """Inside, the first Ctrl-C raises ``KeyboardInterrupt`` as usual and every one after it
    is ignored until the process ends: the command is stopping, and the unwinding that the
    first starts closes the model (llama.cpp frees its context) and stops the workers; a
    second ``KeyboardInterrupt`` raised in the middle of that left the scheduler's thread
    decoding in a freed context (a double free or a segmentation fault instead of exit 130).
    Without a Ctrl-C the handler before is back on leaving. Outside the main thread nothing
    changes, nor where Ctrl-C is ignored already (a job started in the background)."""
    if (threading.current_thread() is not threading.main_thread()
            or signal.getsignal(signal.SIGINT) is signal.SIG_IGN):
        yield
        return
    pressed = False

    def once(signum: int, frame: FrameType | None) -> None:
        nonlocal pressed
        pressed = True
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGINT, once)
    try:
        yield
    finally:
        # (not where another stop came: ``terminate_as_exit`` ignores Ctrl-C from then on, and
        # a Ctrl-C after this block, while the process still ends, was a KeyboardInterrupt)
        if not pressed and signal.getsignal(signal.SIGINT) is once:
            signal.signal(signal.SIGINT, previous)


class Termination:
    """Whether SIGTERM came inside ``terminate_as_exit``: what a ``SystemExit`` that reached the
    command meant, when code it passed through changed its exit code (Ray's wait turns it into
    ``SystemExit(1)``)."""

    came: bool = False

    def exit_code_of(self, stop: BaseException) -> int | None:
        """The exit code of a command that ``stop`` ended (a ``KeyboardInterrupt``, or a
        ``SystemExit`` that reached it): 130 after Ctrl-C, 143 after SIGTERM; None for a
        ``SystemExit`` of something else, which the command raises again."""
        if isinstance(stop, KeyboardInterrupt):
            return 130
        return TERMINATED_EXIT if self.came else None


@contextlib.contextmanager
def terminate_as_exit() -> Iterator[Termination]:
    """Inside, SIGTERM (what ``kill``, systemd and CI timeouts send) raises ``SystemExit``
    (exit code 143) in the main thread, so that ``finally`` blocks stop the processes a
    command started, as they do on Ctrl-C (by default Python dies on SIGTERM at once and its
    children live on). Once it came, later SIGTERMs and Ctrl-Cs are ignored until the process
    ends: a second exception raised while the first unwinds (closing the model) is the double
    free ``interrupt_once`` tells of. Outside the main thread nothing changes."""
    termination = Termination()
    if threading.current_thread() is not threading.main_thread():
        yield termination
        return

    def exit_(signum: int, frame: FrameType | None) -> None:
        termination.came = True
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        raise SystemExit(TERMINATED_EXIT)

    previous = signal.signal(signal.SIGTERM, exit_)
    try:
        yield termination
    finally:
        # (not where a block inside took a SIGTERM and ignores the next: ``cancel_on_interrupt``)
        if not termination.came and signal.getsignal(signal.SIGTERM) is exit_:
            signal.signal(signal.SIGTERM, previous)


def say_stopped(what: str) -> None:
    """``localpref: stopped; <what>.`` on stderr, a line of its own: on a terminal a new line
    first (the ``^C`` it echoed, or a progress bar, holds the line), in a file or a pipe no
    blank line."""
    start = "\n" if sys.stderr.isatty() else ""
    print(f"{start}localpref: stopped; {what}.", file=sys.stderr, flush=True)


@contextlib.contextmanager
def closed_uninterrupted(closeable: Any) -> Iterator[None]:
    """On leaving, ``closeable.close()`` (a model) with Ctrl-C and SIGTERM held until it
    returns, then delivered to the handlers before: an exception that a signal's handler
    raised inside a model's close (llama.cpp frees its contexts, then its weights) left it
    half freed and the rest was freed again at exit, a double free (SIGTERM while
    ``generate`` ended crashed it, -6 or -11). Outside the main thread it only closes."""
    try:
        yield
    finally:
        if threading.current_thread() is not threading.main_thread():
            closeable.close()
        else:
            _close_holding_signals(closeable)


def _close_holding_signals(closeable: Any) -> None:
    """``closeable.close()``, the signals that came meanwhile delivered after it."""
    held: list[int] = []
    previous = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)}
    for signum, before in previous.items():
        if before is not signal.SIG_IGN:
            signal.signal(signum, lambda signum, frame: held.append(signum))
    try:
        closeable.close()
    finally:
        for signum, before in previous.items():
            signal.signal(signum, before)
        # (to the handlers before: an exit, an interrupt; a SIGTERM first, as it wins while
        # the answer streams: a kill after a Ctrl-C ends the command with 143)
        for signum in sorted(set(held), key=lambda held_signal: held_signal != signal.SIGTERM):
            signal.raise_signal(signum)
