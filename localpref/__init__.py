"""localpref: personalise what a local GGUF model writes, token by token.

    import localpref
    model = localpref.load()                      # the bundled SmolLM2-135M-Instruct
    result = model.generate("How do I keep basil alive?", preference="concise",
                            method=localpref.Amulet(), max_tokens=128, seed=0)

Two training-free methods steer every token toward the preference: Amulet (Zhang et al.,
ICLR 2025) and PAD (Chen et al., ICLR 2025); Base, Pref and Contrastive are the baselines.
This package never imports Textual; the chat app lives in ``tui``.
"""

from localpref import kernels
from localpref.api import Chat, Model, load
from localpref.batches.run import batch
from localpref.decoding import Generation, Result
from localpref.errors import (
    BusyError,
    LocalprefError,
    ModelError,
    PromptTooLongError,
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

__version__ = "0.1.0"

__all__ = [
    "PAD",
    "PRESETS",
    "DEFAULT_SYSTEM_PROMPT",
    "Amulet",
    "Base",
    "BusyError",
    "Chat",
    "Contrastive",
    "Generation",
    "LocalprefError",
    "Method",
    "Model",
    "ModelError",
    "Pref",
    "PromptTooLongError",
    "Result",
    "Sampling",
    "SettingsError",
    "TemplateError",
    "batch",
    "kernels",
    "load",
    "paper_method",
    "recommended_method",
]
