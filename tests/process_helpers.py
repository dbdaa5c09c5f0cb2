"""Commands run as processes of their own (to send them signals), and waiting on their files."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any


def localpref_process(*argv: str, **popen: Any) -> subprocess.Popen:
    """``python -m localpref.cli ARGV`` with stdout and stderr piped, reading this test's
    modules (``sys.path``) and environment."""
    return subprocess.Popen(
        [sys.executable, "-m", "localpref.cli", *argv], stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
        **popen)


def wait_for_lines(path: Path, count: int, process: subprocess.Popen,
                   seconds: float = 180) -> None:
    """Until ``path`` holds ``count`` whole lines; fails if ``process`` ends first or
    ``seconds`` pass."""
    deadline = time.monotonic() + seconds
    while not (path.exists() and path.read_bytes().count(b"\n") >= count):
        assert process.poll() is None and time.monotonic() < deadline, process.communicate()
        time.sleep(0.05)
