"""Sizes for people and memory estimates: what ``models list`` and ``doctor`` print."""

from __future__ import annotations

from typing import Any

from localpref.gguf_header import GGUFInfo


def format_size(n_bytes: float) -> str:
    """A human size in powers of 1000: ``512 B``, ``98.4 MB``, ``1.06 GB``."""
    units = ("B", "KB", "MB", "GB", "TB")
    value, index = float(n_bytes), 0
    while abs(value) >= 1000 and index < len(units) - 1:
        value, index = value / 1000, index + 1
    if index == 0:
        return f"{int(value)} B"
    return f"{value:.3g} {units[index]}" if abs(value) < 10 else f"{value:.1f} {units[index]}"


#: llama.cpp rounds each lane's KV stream up to a multiple of this many cells.
KV_STREAM_ROUNDING = 256


def memory_estimate(
    info: GGUFInfo,
    *,
    n_ctx: int = 4096,
    n_gpu_layers: int = 0,
    n_seq: int = 2,
    gpu_offload: bool = True,
    later_parts_bytes: int = 0,
) -> dict[str, Any]:
    """Approximate memory a model needs: weights (the file) + f16 KV cache + logits buffers.

    ``n_ctx`` is the window of one lane: each of the ``n_seq`` lanes has a KV stream of its own
    of ``n_ctx`` cells, rounded up to a multiple of 256 as llama.cpp does (``engine.Context``,
    which ``generate``, ``chat`` and ``serve`` load with ``n_ctx * max_lanes`` cells). With
    ``n_gpu_layers`` (-1: all) and a build that can offload, the offloaded share of the
    weights and the KV cache of offloaded layers is counted as GPU memory. llama.cpp's compute
    scratch buffers (tens to hundreds of MB) are not included. ``later_parts_bytes``: the
    sizes of a split model's parts after the first (``info`` is the first part's header).
    """
    layers = info.block_count or 0
    per_token = info.kv_bytes_per_token() or 0
    kv_bytes = per_token * -(-n_ctx // KV_STREAM_ROUNDING) * KV_STREAM_ROUNDING * max(n_seq, 1)
    weights = max(info.file_size - info.data_offset, 0) or info.file_size
    weights += later_parts_bytes
    logits_bytes = (info.vocab_size or 0) * 4 * max(n_seq, 1)
    if not gpu_offload or n_gpu_layers == 0 or layers == 0:
        gpu_layers = 0
    elif n_gpu_layers < 0 or n_gpu_layers > layers:
        gpu_layers = layers
    else:
        gpu_layers = n_gpu_layers
    share = gpu_layers / layers if layers else 0.0
    gpu_bytes = int((weights + kv_bytes) * share)
    total = weights + kv_bytes + logits_bytes
    return {
        "n_ctx": n_ctx,
        "n_seq": n_seq,
        "gpu_layers_requested": n_gpu_layers,
        "gpu_layers": gpu_layers,
        "layers": layers,
        "weights_bytes": weights,
        "kv_cache_bytes": kv_bytes,
        "kv_bytes_per_token": per_token,
        "logits_bytes": logits_bytes,
        "total_bytes": total,
        "ram_bytes": total - gpu_bytes,
        "vram_bytes": gpu_bytes,
        "note": (
            "approximate: weights + f16 KV cache + logits; llama.cpp compute buffers not included"
        ),
    }
