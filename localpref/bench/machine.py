"""Facts about the machine and the loaded model that a benchmark report records."""

from __future__ import annotations

import os
import sys
from typing import Any


def peak_rss_mb() -> float:
    """Peak resident memory of this process in MB (1e6 bytes)."""
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    scale = 1 if sys.platform == "darwin" else 1024  # bytes on macOS, kilobytes elsewhere
    return peak * scale / 1e6


def memory_facts(model: Any) -> dict[str, Any]:
    """Parameters, and the KV cache the context allocated (float16 K and V for every cell of
    every lane): with several lanes it is often bigger than a small model's weights, and it
    counts in ``peak_rss_mb``."""
    context = model.context
    cells = context.n_ctx * context.max_lanes
    return {
        "n_params": context.model.n_params,
        "n_ctx_per_lane": context.n_ctx,
        "max_lanes": context.max_lanes,
        "kv_cache_mb": round(cells * context.model.kv_bytes_per_cell / 1e6, 1),
    }


def load_average() -> float | None:
    try:
        return round(os.getloadavg()[0], 2)
    except (AttributeError, OSError):
        return None
