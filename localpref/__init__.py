"""localpref: personalise what a local GGUF model writes, token by token.

    import localpref
    model = localpref.load()                      # the bundled SmolLM2-135M-Instruct
    result = model.generate("How do I keep basil alive?", preference="concise",
                            method=localpref.Amulet(), max_tokens=128, seed=0)

Two training-free methods steer every token toward the preference: Amulet (Zhang et al.,
ICLR 2025) and PAD (Chen et al., ICLR 2025); Base, Pref and Contrastive are the baselines.
This package never imports Textual; the chat app lives in ``tui``.

The names below load on first use (PEP 562), so that ``import localpref.cli`` starts at once and a
Ctrl-C while the command line loads NumPy and Numba is a cancelled command, not a traceback.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

#: Each public name and the module it lives in.
_EXPORTS = {
    "PAD": "localpref.methods",
    "Amulet": "localpref.methods",
    "Base": "localpref.methods",
    "Contrastive": "localpref.methods",
    "Method": "localpref.methods",
    "Pref": "localpref.methods",
    "Sampling": "localpref.methods",
    "paper_method": "localpref.methods",
    "recommended_method": "localpref.methods",
    "Chat": "localpref.api",
    "Model": "localpref.api",
    "load": "localpref.api",
    "batch": "localpref.batches.run",
    "Generation": "localpref.decoding",
    "Result": "localpref.decoding",
    "BusyError": "localpref.errors",
    "LocalprefError": "localpref.errors",
    "ModelError": "localpref.errors",
    "PromptTooLongError": "localpref.errors",
    "RunFailedError": "localpref.errors",
    "SettingsError": "localpref.errors",
    "TemplateError": "localpref.errors",
    "DEFAULT_SYSTEM_PROMPT": "localpref.presets",
    "PRESETS": "localpref.presets",
}

__all__ = [  # the names of _EXPORTS, and the kernels module
    "Amulet",
    "Base",
    "BusyError",
    "Chat",
    "Contrastive",
    "DEFAULT_SYSTEM_PROMPT",
    "Generation",
    "LocalprefError",
    "Method",
    "Model",
    "ModelError",
    "PAD",
    "PRESETS",
    "Pref",
    "PromptTooLongError",
    "Result",
    "RunFailedError",
    "Sampling",
    "SettingsError",
    "TemplateError",
    "batch",
    "kernels",
    "load",
    "paper_method",
    "recommended_method",
]


def __getattr__(name: str) -> Any:
    if name == "kernels":
        return importlib.import_module("localpref.kernels")
    module_name = _EXPORTS.get(name)
    if module_name is None:
        raise AttributeError(f"module 'localpref' has no attribute {name!r}")
    value = getattr(importlib.import_module(module_name), name)
    globals()[name] = value  # the next use is a plain attribute
    return value


def __dir__() -> list[str]:
    """The module's names, each once (a lazily loaded one is in ``globals()`` as well),
    without the helpers its own code imports."""
    return sorted({*__all__, *globals()} - {"Any", "TYPE_CHECKING", "importlib", "annotations"})


if TYPE_CHECKING:  # what type checkers and editors see: the same names, imported eagerly
    from localpref import kernels
    from localpref.api import Chat, Model, load
    from localpref.batches.run import batch
    from localpref.decoding import Generation, Result
    from localpref.errors import (
        BusyError,
        LocalprefError,
        ModelError,
        PromptTooLongError,
        RunFailedError,
        SettingsError,
        TemplateError,
    )
    from localpref.methods import (
        PAD,
        Amulet,
        Base,
        Contrastive,
        Method,
        Pref,
        Sampling,
        paper_method,
        recommended_method,
    )
    from localpref.presets import DEFAULT_SYSTEM_PROMPT, PRESETS
