"""Every hot-path Numba kernel is loaded when a model loads, not in the first answer's steps.

No timing here: a kernel that is loaded has its compiled signatures in ``dispatcher.signatures``;
one that the first step would still have to load (or compile) has none, or gains one while
generating.
"""

from __future__ import annotations

import ast
import importlib
import io
import json
import pkgutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from numba.core.dispatcher import Dispatcher

from localpref import PAD, Amulet, Base, Contrastive, kernels
from localpref.commands.options import compile_notice

#: Every module of the kernels package (``localpref.kernels.*``, ``controls`` included).
MODULES = tuple(importlib.import_module(f"{kernels.__name__}.{info.name}")
                for info in pkgutil.iter_modules(kernels.__path__))
#: The modules of building blocks: their kernels are called only from inside other kernels
#: (checked below), which carry them compiled in. A kernel loaded from Numba's cache does not
#: load the dispatchers of the kernels it calls, so these stay unloaded, and need not be loaded:
#: Python never calls them while decoding.
BUILDING_BLOCKS = ("localpref.kernels.primitives", "localpref.kernels.topk")
ROOT = Path(__file__).resolve().parent.parent


def dispatchers(entry_points_only: bool) -> dict[str, Dispatcher]:
    """The Numba kernels defined in the kernels package, by qualified name; with
    ``entry_points_only``, the public ones outside the building blocks (the ones Python calls)."""
    found = {}
    for module in MODULES:
        if entry_points_only and module.__name__ in BUILDING_BLOCKS:
            continue
        for name, value in vars(module).items():
            if (isinstance(value, Dispatcher) and value.py_func.__module__ == module.__name__
                    and not (entry_points_only and name.startswith("_"))):
                found[f"{module.__name__}.{name}"] = value
    return found


# Runs in a fresh process: nothing is loaded until localpref.load() loads the bundled model.
FRESH_PROCESS = """
import importlib
import json
import sys

import localpref

names = json.loads(sys.argv[1])

def unloaded():
    return sorted(name for name in names
                  if not getattr(importlib.import_module(name.rpartition(".")[0]),
                                 name.rpartition(".")[2]).signatures)

before = unloaded()
model = localpref.load()
print(json.dumps({"before": before, "after": unloaded()}))
model.close()
"""


def test_every_public_kernel_is_loaded_once_load_returns():
    public = set(dispatchers(entry_points_only=True))
    assert {"localpref.kernels.sampling.sample", "localpref.kernels.contrast.contrast_argmax",
            "localpref.kernels.pad.pad_scores_into", "localpref.kernels.logprobs.kl_divergence",
            "localpref.kernels.controls.step_statistics",
            "localpref.kernels.controls.pref_ends_into"} <= public
    run = subprocess.run([sys.executable, "-c", FRESH_PROCESS, json.dumps(sorted(public))],
                         capture_output=True, text=True, timeout=600, check=True)
    state = json.loads(run.stdout.strip().splitlines()[-1])
    assert set(state["before"]) == public  # a fresh process has loaded none of them
    assert state["after"] == []  # load() loaded every one


def _is_njit(node: ast.AST) -> bool:
    """Is ``node`` a function decorated with ``@njit`` or ``@njit(...)``?"""
    if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
        return False
    for decorator in node.decorator_list:
        target = decorator.func if isinstance(decorator, ast.Call) else decorator
        if isinstance(target, ast.Name) and target.id == "njit":
            return True
    return False


def python_calls_of_building_blocks() -> list[str]:
    """``module:line name`` for every reference to a building block's kernel in code that runs
    as Python (anywhere in ``localpref/`` and ``tui/`` outside an ``@njit`` function)."""
    blocks = {name: {n for n, v in vars(importlib.import_module(name)).items()
                     if isinstance(v, Dispatcher) and v.py_func.__module__ == name}
              for name in BUILDING_BLOCKS}
    found = []
    for path in sorted([*(ROOT / "localpref").rglob("*.py"), *(ROOT / "tui").rglob("*.py")]):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        dotted = ".".join(path.relative_to(ROOT).with_suffix("").parts)
        # a local name bound to a building block's kernel (a block's own kernels included)
        names = {name: name for name in blocks.get(dotted, ())}
        modules: dict[str, str] = {}  # a local name bound to a building-block module
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module:
                for alias in node.names:
                    local = alias.asname or alias.name
                    if f"{node.module}.{alias.name}" in blocks:
                        modules[local] = f"{node.module}.{alias.name}"
                    elif alias.name in blocks.get(node.module, ()):
                        names[local] = alias.name
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name in blocks and alias.asname:
                        modules[alias.asname] = alias.name
        stack = [tree]
        while stack:
            node = stack.pop()
            if _is_njit(node):
                continue  # compiled: its calls are the kernels' own
            hit = None
            if isinstance(node, ast.Name) and node.id in names:
                hit = node.id
            elif isinstance(node, ast.Attribute):  # primitives.max_of, or its dotted path
                owner = ast.unparse(node.value)
                if node.attr in blocks.get(modules.get(owner, owner), ()):
                    hit = ast.unparse(node)
            if hit:
                found.append(f"{path.relative_to(ROOT)}:{node.lineno} {hit}")
            stack.extend(ast.iter_child_nodes(node))
    return sorted(found)


def test_building_blocks_run_only_inside_compiled_kernels():
    """What lets the warm-up leave the building blocks unloaded: no Python code of the library
    or the app calls one (so none is loaded in an answer's steps)."""
    assert python_calls_of_building_blocks() == []


def test_the_building_block_check_sees_a_python_call(tmp_path, monkeypatch):
    (tmp_path / "localpref").mkdir()
    (tmp_path / "tui").mkdir()
    (tmp_path / "localpref" / "user.py").write_text(
        "from numba import njit\n"
        "from localpref.kernels.primitives import max_of\n\n"
        "@njit(cache=True)\ndef inside(z):\n    return max_of(z)\n\n"
        "def outside(z):\n    return max_of(z)\n\n"
        "def dotted(z):\n    return localpref.kernels.primitives.max_of(z)\n", encoding="utf-8")
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    assert python_calls_of_building_blocks() == [
        "localpref/user.py:12 localpref.kernels.primitives.max_of", "localpref/user.py:9 max_of"]


@pytest.mark.parametrize("method, preference, sampling", [
    (Base(), None, {}),
    (Base(), None, {"temperature": 0.8, "top_k": 20, "top_p": 0.9, "min_p": 0.05}),
    (Base(), None, {"repeat_penalty": 1.3}),
    (Contrastive(), "concise", {}),
    (Contrastive(), "concise", {"temperature": 0.7, "top_p": 0.95}),
    (Amulet(), "concise", {}),
    (Amulet(), "concise", {"repeat_penalty": 1.2}),
    (Amulet(tau=0.2, kl_budget=0.5), "concise", {}),
    (Amulet(exact=False, iterations=3, tau=0.2, kl_budget=0.5), "concise", {}),
    (PAD(), "concise", {}),
    (PAD(tau=0.2, kl_budget=0.5), "concise", {"temperature": 0.7, "repeat_penalty": 1.2}),
])
def test_generating_compiles_nothing_after_load(model, method, preference, sampling):
    """The warm-up loaded each kernel for the very types the hot path passes it."""
    before = {name: len(d.signatures) for name, d in dispatchers(entry_points_only=False).items()}
    result = model.generate("Name a fruit.", preference=preference, method=method,
                            max_tokens=3, seed=0, **sampling)
    assert result.stats["n_tokens"] >= 1
    after = {name: len(d.signatures) for name, d in dispatchers(entry_points_only=False).items()}
    assert {n: (before[n], after[n]) for n in after if after[n] != before[n]} == {}


def test_a_sigterm_while_the_kernels_load_comes_once_they_are_in(monkeypatch) -> None:
    """Numba loads through llvmlite's ctypes callbacks, where the SystemExit of batch's and
    bench's SIGTERM handler was dropped (the run went on, or crashed, and SIGTERM was ignored
    from then on): the signal is held until the kernels are loaded, then it is the exit."""
    import os
    import signal

    from localpref import warmup as warming
    from localpref.commands.interrupt import TERMINATED_EXIT, terminate_as_exit
    from localpref.kernels import controls

    loaded: list[str] = []

    def kernels_then_signal() -> None:
        os.kill(os.getpid(), signal.SIGTERM)  # lands while the kernels load
        for _ in range(1000):  # Python runs the handler here
            pass
        loaded.append("kernels")

    monkeypatch.setattr(warming, "_warm", False)
    monkeypatch.setattr(kernels, "warmup", kernels_then_signal)
    monkeypatch.setattr(controls, "warmup", lambda: loaded.append("controls"))
    before = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
    try:
        with pytest.raises(SystemExit) as stopped, terminate_as_exit():
            warming.warmup()
    finally:
        signal.signal(signal.SIGTERM, before[0])
        signal.signal(signal.SIGINT, before[1])
    assert loaded == ["kernels", "controls"] and stopped.value.code == TERMINATED_EXIT


def test_warming_for_counts_the_seconds_of_a_running_warmup_only() -> None:
    """A fresh process: None before, a growing count while the kernels load, None after."""
    code = """
import threading, time
from localpref.warmup import warming_for, warmup
seen, done = [], threading.Event()
def watch():
    while not done.is_set():
        seen.append(warming_for())
        time.sleep(0.005)
before = warming_for()
watcher = threading.Thread(target=watch)
watcher.start()
warmup()
done.set()
watcher.join()
counted = [s for s in seen if s is not None]
print(before is None, warming_for() is None, len(counted) > 2, counted == sorted(counted),
      all(s >= 0 for s in counted))
"""
    completed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                               timeout=300)
    assert completed.stdout.split() == ["True"] * 5, completed.stderr


@pytest.mark.parametrize(("seconds", "said"), [(None, False), (1.0, False), (5.0, True)])
def test_a_load_warming_the_kernels_for_seconds_says_it_is_compiling(seconds, said) -> None:
    """The first command after an install sat silent for about a minute while Numba
    compiled; a load still warming up after COMPILE_NOTICE_SECONDS says so, once."""
    stream = io.StringIO()
    with compile_notice(stream, warmed_for=lambda: seconds):
        if said:  # the watcher's first look says it ...
            deadline = time.monotonic() + 60
            while not stream.getvalue():
                assert time.monotonic() < deadline
                time.sleep(0.01)
        time.sleep(0.8)  # ... and its later looks say nothing (more)
    expected = ("localpref: compiling the steering kernels (the first run after an install "
                "only; about a minute)...\n")
    assert stream.getvalue() == (expected if said else "")
