"""Holding a Ctrl-C (and a SIGTERM a command handles) until a block of code returns.

Python runs a signal's handler where it next runs Python. Inside a C call that calls back
into Python (llama.cpp's log callback, Numba's compiler and its cache through llvmlite), that
is the callback, where ctypes prints the KeyboardInterrupt and drops it, and the call goes on:
a Ctrl-C pressed then was lost, and the command ran to its end. ``interrupt_held`` marks such a
signal instead and delivers it once the block has returned.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field


@dataclass
class Held:
    """Whether a Ctrl-C (or a SIGTERM that a command turns into its exit) came while it was
    held (``interrupt_held``), and which signals came."""

    interrupted: bool = False
    signals: list[int] = field(default_factory=list)


@contextmanager
def interrupt_held(held: Held | None = None) -> Iterator[Held]:
    """Hold a Ctrl-C (SIGINT) in the main thread until the block ends, then deliver it; the
    same for a SIGTERM that Python handles (``commands.interrupt.terminate_as_exit``).

    Meanwhile it only marks ``held`` interrupted: Python runs a signal's handler where it next
    runs Python, which inside a llama.cpp call is the log callback, where a KeyboardInterrupt
    (or a SystemExit) would be printed and dropped by ctypes (and the call would go on). Once
    the block is left, the signal goes to the handler that was in place (by default:
    KeyboardInterrupt there). Elsewhere than the main thread, with SIGINT ignored, or with
    SIGTERM left to the system (it ends the process at once), nothing changes for it."""
    held = held if held is not None else Held()
    main = threading.current_thread() is threading.main_thread()
    previous: dict[int, object] = {}
    if main:
        interrupt, terminate = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
        if interrupt not in (signal.SIG_IGN, None):
            previous[signal.SIGINT] = interrupt
        if callable(terminate):
            previous[signal.SIGTERM] = terminate

    def mark(signum: int, frame: object) -> None:
        held.interrupted = True
        if signum not in held.signals:
            held.signals.append(signum)

    for signum in previous:  # first, so that a signal from here on is marked, never raised
        signal.signal(signum, mark)
    try:
        yield held
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)  # type: ignore[arg-type]
        # delivered whether or not the block raised (a failed block's error was raised in
        # its place, and the Ctrl-C was lost)
        for signum in sorted(held.signals, key=lambda s: s != signal.SIGTERM):  # SIGTERM first
            signal.raise_signal(signum)
