"""llama.cpp's log and its one-time initialisation, and what a model load says.

llama.cpp logs through one process-wide callback (ours: errors only, everything with
``LOCALPREF_DEBUG`` set; llama-cpp-python 0.3.36 maps ggml's WARN level to ERROR and would
print context warnings on every load). While a thread loads a model (``load_watch``), the
errors it logs are kept instead of printed, so that a failed load is one sentence naming
llama.cpp's reason, and Ctrl-C stops the load: Python handles a signal where it next runs
Python, which during a load is inside these callbacks, where ctypes would print and drop a
KeyboardInterrupt and the load would go on. Other calls that log as they go (creating a
context) hold a Ctrl-C until they return (``interrupt_held``), for the same reason.
"""

from __future__ import annotations

import ctypes
import os
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from localpref.interrupt_hold import Held, interrupt_held
from localpref.llama_library import llama_cpp

_GGML_LOG_LEVEL_ERROR = 4
_backend_lock = threading.Lock()
_backend_ready = False
_watching = threading.local()


@dataclass
class LoadWatch(Held):
    """What one thread's model load said: llama.cpp's error lines, and whether Ctrl-C came."""

    errors: list[str] = field(default_factory=list)

    @property
    def reason(self) -> str | None:
        """llama.cpp's reason for a failed load (``unknown model architecture: 'x'``), or
        None when it gave none."""
        for line in reversed(self.errors):
            _, found, reason = line.partition("error loading model: ")
            if found and reason.strip():
                return reason.strip().rstrip(".")
        return None


@llama_cpp.llama_log_callback
def _log_errors_only(level: int, text: bytes, user_data: ctypes.c_void_p) -> None:
    if level != _GGML_LOG_LEVEL_ERROR and not os.environ.get("LOCALPREF_DEBUG"):
        return
    message = text.decode("utf-8", errors="replace")
    watch: LoadWatch | None = getattr(_watching, "watch", None)
    if watch is not None and level == _GGML_LOG_LEVEL_ERROR:
        watch.errors.append(message)
    else:
        sys.stderr.write(message)


@llama_cpp.llama_progress_callback
def _go_on(progress: float, user_data: ctypes.c_void_p) -> bool:
    """llama.cpp asks at each step of a load whether to go on: not after Ctrl-C (or a
    SIGTERM the command handles)."""
    watch: LoadWatch | None = getattr(_watching, "watch", None)
    return watch is None or not watch.interrupted


def loading() -> bool:
    """Whether this thread is loading a model (inside ``load_watch``)."""
    return getattr(_watching, "watch", None) is not None


def init_backend() -> None:
    """Initialise llama.cpp once per process and keep its log quiet unless debugging."""
    global _backend_ready
    with _backend_lock:
        if _backend_ready:
            return
        llama_cpp.llama_log_set(_log_errors_only, ctypes.c_void_p(0))
        with interrupt_held():
            llama_cpp.llama_backend_init()
        _backend_ready = True


@contextmanager
def load_watch(params: llama_cpp.llama_model_params) -> Iterator[LoadWatch]:
    """Watch this thread's load with ``params`` (its progress callback set here): its errors
    are kept, and a Ctrl-C is held (``interrupt_held``) while the progress callback stops
    the load."""
    params.progress_callback = _go_on
    with interrupt_held(LoadWatch()) as watch:
        assert isinstance(watch, LoadWatch)
        _watching.watch = watch
        try:
            yield watch
        finally:
            _watching.watch = None
