"""llama.cpp's own C++ server, ``llama-server``, as a baseline of ``localpref bench --server``.

``scripts/build-llama-server.sh`` builds it from the llama.cpp that the llama-cpp-python sdist
vendors (the same code as localpref's engine) and keeps it once per machine at
:func:`cached_binary`. The bench runs it with the same model, threads and context per slot as
``localpref serve``, ``-nr`` (no extra CPU buffer types: localpref's engine turns them off,
their AMX matmul crashes on some CPUs), ``-fa on`` (flash attention, as localpref's engine)
and as many slots as localpref has lanes.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from localpref.errors import ModelError, SettingsError
from localpref.interrupt_hold import interrupt_held
from localpref.paths import expanded

#: The llama-cpp-python version whose vendored llama.cpp the build script compiles.
LLAMA_CPP_PYTHON_VERSION = "0.3.36"
BUILD_SCRIPT = "scripts/build-llama-server.sh"


def cache_root() -> Path:
    """``$LOCALPREF_CACHE``, else ``$XDG_CACHE_HOME/localpref``, else ``~/.cache/localpref``
    (the build script's rule, read when called)."""
    root = os.environ.get("LOCALPREF_CACHE")
    if root:
        return Path(root)
    xdg = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(xdg) / "localpref"


def cached_binary(version: str = LLAMA_CPP_PYTHON_VERSION) -> Path:
    """Where the build script leaves ``llama-server`` for ``version``."""
    return cache_root() / "llama-server" / version / "llama-server"


def find_binary(given: str | None) -> Path:
    """The ``llama-server`` to run: ``given`` (a path or a name on PATH), else the cached
    build; one plain sentence when there is none."""
    if given:
        found = shutil.which(given) if os.sep not in given else None
        path = Path(found) if found else expanded(given)
        if not (path.is_file() and os.access(path, os.X_OK)):
            raise SettingsError(f"--llama-server {given}: no executable file there.")
        return path
    path = cached_binary()
    if not (path.is_file() and os.access(path, os.X_OK)):
        raise SettingsError(f"No llama-server at {path}: build it once with {BUILD_SCRIPT} "
                            "(10-20 minutes), or give one with --llama-server PATH.")
    return path


def server_command(binary: Path, model: Path, port: int, threads: int, slots: int,
                   n_ctx: int) -> list[str]:
    """The command line: ``n_ctx`` tokens per slot (llama-server splits ``-c`` among them)."""
    if slots < 1 or threads < 1 or n_ctx < 16:
        raise SettingsError("llama-server needs 1 or more slots and threads and a context "
                            "of 16 or more.")
    return [str(binary), "--model", str(model), "--host", "127.0.0.1", "--port", str(port),
            "--threads", str(threads), "--threads-batch", str(threads),
            "--ctx-size", str(n_ctx * slots), "--parallel", str(slots),
            "-nr", "-fa", "on", "--no-webui"]  # its log goes to a temporary file


@contextlib.contextmanager
def killed_unless_started(command: list[str], **popen: Any) -> Iterator[subprocess.Popen]:
    """``subprocess.Popen(command, **popen)``, killed when the block (what waits for its
    start) fails or is interrupted: a SIGTERM or a Ctrl-C while a server loaded left it
    serving with no parent (the caller stops only the processes whose start returned). One
    that comes while the process is being started is held until ``Popen`` returns (raised
    inside ``Popen``, after the fork, it left a process nobody knew of), then delivered
    here, where the process is known and killed."""
    process: subprocess.Popen | None = None
    try:
        with interrupt_held():
            process = subprocess.Popen(command, **popen)
        yield process
    except BaseException:
        if process is not None:
            process.kill()
            process.wait()
        raise


def start(command: list[str], port: int, timeout_s: float = 300) -> subprocess.Popen:
    """Run ``command``; return once it answers ``/health`` with 200 (model loaded). Its log
    goes to a temporary file (a pipe nobody reads would block it once full)."""
    log = tempfile.TemporaryFile(mode="w+")
    deadline = time.monotonic() + timeout_s
    with killed_unless_started(command, stdout=log, stderr=subprocess.STDOUT,
                               text=True) as process:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                log.seek(0)
                lines = log.read().strip().splitlines()
                log.close()
                raise ModelError("llama-server did not start: "
                                 f"{lines[-1] if lines else 'no output'}")
            try:
                connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
                connection.request("GET", "/health")
                if connection.getresponse().status == 200:
                    return process
            except OSError:
                pass
            time.sleep(0.2)
        log.close()
        raise ModelError(f"llama-server did not answer within {timeout_s:.0f} s.")
