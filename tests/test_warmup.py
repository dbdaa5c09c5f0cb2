"""Every hot-path Numba kernel is loaded when a model loads, not in the first answer's steps.

No timing here: a kernel that is loaded has its compiled signatures in ``dispatcher.signatures``;
one that the first step would still have to load (or compile) has none, or gains one while
generating.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from numba.core.dispatcher import Dispatcher

from localpref import PAD, Amulet, Base, Contrastive, kernels, steering

MODULES = (kernels, steering)


def dispatchers(public_only: bool) -> dict[str, Dispatcher]:
    """The Numba kernels defined in ``kernels`` and ``steering``, by qualified name."""
    found = {}
    for module in MODULES:
        for name, value in vars(module).items():
            if (isinstance(value, Dispatcher) and value.py_func.__module__ == module.__name__
                    and not (public_only and name.startswith("_"))):
                found[f"{module.__name__}.{name}"] = value
    return found


# Runs in a fresh process: nothing is loaded until localpref.load() loads the bundled model.
FRESH_PROCESS = """
import json
import localpref
from numba.core.dispatcher import Dispatcher

def unloaded():
    return sorted(f"{m.__name__}.{n}" for m in (localpref.kernels, localpref.steering)
                  for n, v in vars(m).items()
                  if isinstance(v, Dispatcher) and v.py_func.__module__ == m.__name__
                  and not n.startswith("_") and not v.signatures)

before = unloaded()
model = localpref.load()
print(json.dumps({"before": before, "after": unloaded()}))
model.close()
"""


def test_every_public_kernel_is_loaded_once_load_returns():
    run = subprocess.run([sys.executable, "-c", FRESH_PROCESS], capture_output=True,
                         text=True, timeout=600, check=True)
    state = json.loads(run.stdout.strip().splitlines()[-1])
    public = set(dispatchers(public_only=True))
    assert set(state["before"]) == public  # a fresh process has loaded none of them
    assert state["after"] == []  # load() loaded every one


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
    before = {name: len(d.signatures) for name, d in dispatchers(public_only=False).items()}
    result = model.generate("Name a fruit.", preference=preference, method=method,
                            max_tokens=3, seed=0, **sampling)
    assert result.stats["n_tokens"] >= 1
    after = {name: len(d.signatures) for name, d in dispatchers(public_only=False).items()}
    assert {n: (before[n], after[n]) for n in after if after[n] != before[n]} == {}
