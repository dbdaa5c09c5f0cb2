"""``llama_cpp``, loaded once for the whole library with llama.cpp's CPU threads told to keep
waiting for one another by spinning, whichever thread decodes: every module imports it from
here (``from localpref.llama_library import llama_cpp``).

llama.cpp's CPU backend runs each decode as an OpenMP parallel region (GNU libgomp, in a build
made with GCC), a barrier after every operation of the graph. At a barrier a thread spins
``GOMP_SPINCOUNT`` times (300,000 by default) before it sleeps in the kernel, except in a
process holding more OpenMP threads than CPUs, where libgomp spins 100 times only (1,000 under
``OMP_WAIT_POLICY=active``). A pool of OpenMP threads belongs to the thread that started the
parallel region, and stays: each thread that has ever decoded (the scheduler's thread of each
loaded model; a caller inside ``Model.exclusive()``, as the evaluation's judge and the bench
are) keeps a pool of its own. Two of them with 2 threads each on 2 cores count as "more threads
than CPUs" for the rest of the process, even while one pool sleeps, and every barrier of every
later decode then sleeps and wakes through the kernel. Measured on the bundled model with 2
threads on 2 cores: a step of 7.1-7.7 ms took 11.0-11.5 ms once one decode had run in the main
thread (docs/performance.md, "Two threads that decode").

``OMP_WAIT_POLICY=active`` with ``GOMP_SPINCOUNT=300000`` keeps libgomp's default of 300,000
spins and raises the count of a process with more threads than CPUs to 1,000: the same step
took 7.3 ms before and 7.4 ms after such a decode, and an idle process still sleeps (no CPU
time in 5 idle seconds, where ``OMP_WAIT_POLICY=active`` alone spins a core forever). libgomp
reads them once, when it loads (at ``import llama_cpp``): they are set for that import only and
then removed, so that no other OpenMP runtime the program loads later sees them. A value the
user set for either is left alone, as is a llama.cpp that does not use libgomp (another
OpenMP runtime reads ``OMP_WAIT_POLICY=active`` as "never sleep").
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from importlib.util import find_spec
from pathlib import Path

#: What libgomp reads when it loads (see the module's docstring).
SPINNING = {"OMP_WAIT_POLICY": "active", "GOMP_SPINCOUNT": "300000"}


def links_libgomp() -> bool:
    """Whether llama.cpp's CPU library (``llama_cpp/lib/libggml-cpu*``) names GNU libgomp among
    the libraries it needs (the name is in its dynamic string table)."""
    spec = find_spec("llama_cpp")
    for location in (spec.submodule_search_locations or []) if spec else []:
        for library in sorted(Path(location).glob("lib/libggml-cpu*")):
            try:
                if b"libgomp.so" in library.read_bytes():
                    return True
            except OSError:
                continue
    return False


def spinning_settings() -> dict[str, str]:
    """``SPINNING``, or nothing: off Linux, where llama.cpp does not use libgomp, or where the
    user set either variable."""
    if not sys.platform.startswith("linux") or any(name in os.environ for name in SPINNING):
        return {}
    return dict(SPINNING) if links_libgomp() else {}


@contextlib.contextmanager
def spinning_environment() -> Iterator[dict[str, str]]:
    """The environment holds ``spinning_settings()`` inside the block, and not after it."""
    chosen = spinning_settings()
    os.environ.update(chosen)
    try:
        yield chosen
    finally:
        for name in chosen:
            os.environ.pop(name, None)


with spinning_environment():
    import llama_cpp
    import llama_cpp.llama_grammar  # (the grammar sampler's module loads nothing more)

__all__ = ["llama_cpp"]
