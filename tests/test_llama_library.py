"""llama.cpp's OpenMP threads spin at barriers whichever thread decodes (``llama_library``).

Each check runs in a fresh process: libgomp reads its settings once, when ``import llama_cpp``
loads it, and this test process loaded it long ago. What libgomp took is read back from
libgomp itself (``omp_display_env``), not from the environment, which holds nothing after.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from localpref.llama_library import SPINNING, links_libgomp, spinning_settings

ROOT = Path(__file__).resolve().parent.parent

# Loads the library the way a command does, then prints the environment's two variables as
# JSON on stdout; libgomp prints its settings on stderr.
PROBE = """
import ctypes, json, os
import localpref.engine
print(json.dumps({name: os.environ.get(name) for name in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}))
maps = open("/proc/self/maps").read()
if "libgomp" in maps:
    ctypes.CDLL("libgomp.so.1").omp_display_env(1)
"""


def probe(**environment: str) -> tuple[dict, str]:
    env = {name: value for name, value in os.environ.items() if name not in SPINNING}
    completed = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True,
                               env={**env, **environment}, cwd=ROOT, timeout=120)
    assert completed.returncode == 0, completed.stderr
    return json.loads(completed.stdout), completed.stderr


def libgomp_setting(stderr: str, name: str) -> str:
    line = next(line for line in stderr.splitlines() if line.strip().startswith(f"{name} ="))
    return line.split("=", 1)[1].strip().strip("'")


pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux") or not links_libgomp(),
                                reason="llama.cpp here is not built with GNU libgomp")


def test_libgomp_spins_as_set_and_the_environment_keeps_nothing() -> None:
    environment, stderr = probe()
    assert environment == {"OMP_WAIT_POLICY": None, "GOMP_SPINCOUNT": None}
    assert libgomp_setting(stderr, "OMP_WAIT_POLICY") == "ACTIVE"
    assert libgomp_setting(stderr, "GOMP_SPINCOUNT") == "300000"


def test_a_setting_of_the_user_is_left_as_it_is() -> None:
    environment, stderr = probe(OMP_WAIT_POLICY="passive")
    assert environment == {"OMP_WAIT_POLICY": "passive", "GOMP_SPINCOUNT": None}
    assert libgomp_setting(stderr, "OMP_WAIT_POLICY") == "PASSIVE"
    environment, stderr = probe(GOMP_SPINCOUNT="1000")
    assert environment == {"OMP_WAIT_POLICY": None, "GOMP_SPINCOUNT": "1000"}
    assert libgomp_setting(stderr, "GOMP_SPINCOUNT") == "1000"


def test_the_settings_are_chosen_only_without_the_users_own(monkeypatch) -> None:
    for name in SPINNING:
        monkeypatch.delenv(name, raising=False)
    assert spinning_settings() == SPINNING
    monkeypatch.setenv("GOMP_SPINCOUNT", "5")
    assert spinning_settings() == {}


def test_links_libgomp_reads_what_the_loader_loaded() -> None:
    """The file check agrees with the libraries llama_cpp's import mapped."""
    code = "import llama_cpp; print('libgomp' in open('/proc/self/maps').read())"
    completed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                               timeout=120)
    assert completed.stdout.strip() == str(links_libgomp())
