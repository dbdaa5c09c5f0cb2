"""The catalog as ``models list`` shows it: each entry with whether it is on this machine."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from localpref.catalog import load_catalog
from localpref.errors import ModelError
from localpref.models.bundled import bundled_model_path
from localpref.models.cache import cached_matches
from localpref.models.hub_env import hf_cache_dir


def catalog_with_status(cache_dir: Path | None = None) -> list[dict[str, Any]]:
    """Each catalog entry as a dict, with ``downloaded`` (a path or None) and ``size`` on disk."""
    cache = cache_dir or hf_cache_dir()
    rows = []
    for entry in load_catalog():
        row = entry.to_dict()
        local: Path | None = None
        if entry.bundled:
            try:
                local = bundled_model_path()
            except ModelError:
                local = None
        elif entry.repo:
            try:
                matches = cached_matches(entry.repo, entry.file, cache_dir=cache)
            except ModelError:  # its folder cannot be read: the listing's problems say so
                matches = []
            local = matches[0] if len(matches) == 1 else None
        row["downloaded"] = str(local) if local else None
        row["size"] = local.stat().st_size if local else None
        rows.append(row)
    return rows
