"""Load every Numba kernel of the decoding hot path before the first token is generated.

Each kernel is compiled once and cached on disk (``@njit(cache=True)``), but even a cached
kernel is loaded into the process on its first call: tens of milliseconds per kernel. Paid in
the first step, that lands in the first answer's ``steer_ms_per_token`` (90 ms/token on a
four-token answer where the steady cost is 0.25 ms). ``Model`` calls ``warmup()`` when it
loads, outside every timed region, so the first answer is timed like every other
(docs/performance.md: ``steer_ms_per_token``).
"""

from __future__ import annotations

import threading
import time

from localpref import kernels
from localpref.interrupt_hold import interrupt_held
from localpref.kernels import controls

_lock = threading.Lock()
_warm = False
#: when (``time.monotonic``) the running ``warmup`` began; None while none runs
_began: float | None = None


def warmup() -> None:
    """Load (or compile) every hot-path kernel of ``kernels`` and ``kernels.controls`` for the types
    decoding passes them; a no-op after the first call in a process."""
    global _warm, _began
    with _lock:
        if _warm:
            return
        _began = time.monotonic()
        try:
            # Numba loads and compiles through llvmlite's ctypes callbacks, where a Ctrl-C's
            # KeyboardInterrupt or SIGTERM's SystemExit would be dropped (and SIGTERM's
            # handler spent): held until the kernels are in, then delivered
            with interrupt_held():
                kernels.warmup()
                controls.warmup()
        finally:
            _began = None
        _warm = True


def warming_for() -> float | None:
    """How many seconds the running ``warmup`` has been loading the kernels (None while none
    runs): from the disk cache that takes well under a second; still at it after a few
    seconds, it is compiling them (the first run after an install, about a minute on a small
    CPU), which a command says rather than sit silent."""
    began = _began
    return None if began is None else time.monotonic() - began
