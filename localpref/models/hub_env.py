"""Where the Hugging Face Hub and its cache are, read from the environment when asked.

Same variables and precedence as huggingface_hub, read at call time (not at import), so a test
or a user can change them after localpref is imported.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from localpref.paths import expanded

#: The branch downloads follow and whose cached snapshot is tried first.
DEFAULT_REVISION = "main"
#: The Hugging Face Hub, unless ``HF_ENDPOINT`` names a mirror.
DEFAULT_ENDPOINT = "https://huggingface.co"
#: Seconds to wait for the Hub to answer a metadata request.
HUB_TIMEOUT = 15.0


def hf_cache_dir() -> Path:
    """The Hugging Face Hub cache folder, from the environment as it is now.

    Same precedence as huggingface_hub: ``HF_HUB_CACHE``, ``HUGGINGFACE_HUB_CACHE``,
    ``$HF_HOME/hub``, ``$XDG_CACHE_HOME/huggingface/hub``, ``~/.cache/huggingface/hub``.
    """
    for variable in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        value = os.environ.get(variable)
        if value:
            return expanded(os.path.expandvars(value))
    home = os.environ.get("HF_HOME")
    if home:
        return expanded(os.path.expandvars(home)) / "hub"
    xdg = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return expanded(os.path.expandvars(xdg)) / "huggingface" / "hub"


def _hub_constants() -> Any:
    """huggingface_hub's settings module if it is already loaded (never imported just for this)."""
    return sys.modules.get("huggingface_hub.constants")


def hub_endpoint() -> str:
    """The Hub's base URL: ``HF_ENDPOINT`` as set now, else what huggingface_hub was given."""
    value = os.environ.get("HF_ENDPOINT", "").strip()
    if value:
        return value.rstrip("/")
    constants = _hub_constants()
    return str(getattr(constants, "ENDPOINT", DEFAULT_ENDPOINT)).rstrip("/")


def hub_offline() -> bool:
    """Whether downloads are disabled: ``HF_HUB_OFFLINE`` now, or when huggingface_hub loaded."""
    value = os.environ.get("HF_HUB_OFFLINE") or os.environ.get("TRANSFORMERS_OFFLINE") or ""
    if value.strip().upper() in {"1", "ON", "YES", "TRUE"}:
        return True
    return bool(getattr(_hub_constants(), "HF_HUB_OFFLINE", False))


def repo_cache_dir(repo: str, cache_dir: Path | None = None) -> Path:
    """The cache folder of a model repository: ``models--ORG--NAME``."""
    return (cache_dir or hf_cache_dir()) / ("models--" + repo.replace("/", "--"))
