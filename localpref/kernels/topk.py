"""Top-k selection of a lane's best tokens (PAD's candidates and the top-k sampler's): a binary
heap with the worst at its root, ties toward the lower token id."""

from __future__ import annotations

import numpy as np
from numba import njit

from localpref.kernels.primitives import NEG_INF, masked2


@njit(cache=True, fastmath=False)
def _worse(va, ia, vb, ib):
    """Is (value va, token ia) ranked below (vb, ib)? Higher value first, then lower id."""
    return va < vb or (va == vb and ia > ib)


@njit(cache=True)
def _sift_down(vals, ids, start, end, v, i):
    """Place (v, i) at heap position ``start`` of the worst-at-root heap vals/ids[:end]."""
    j = start
    while True:
        c = 2 * j + 1
        if c >= end:
            break
        if c + 1 < end and _worse(vals[c + 1], ids[c + 1], vals[c], ids[c]):
            c += 1
        if _worse(vals[c], ids[c], v, i):
            vals[j] = vals[c]
            ids[j] = ids[c]
            j = c
        else:
            break
    vals[j] = v
    ids[j] = i


@njit(cache=True)
def topk_into(z, z_other, ids, vals):
    """The len(ids) best tokens of z among those finite in z and z_other, best first.

    Order: higher z first, then lower token id (a total order, so ties at the boundary keep the
    lower ids). A binary heap holds the k best so far with the worst at its root; every later
    token costs one comparison with the root (false for -inf and NaN), and only a token that
    beats it is checked for finiteness and sifted in: O(V) in practice (about k ln(V/k)
    insertions for tokens in random order), O(V log k) at worst; then a heap sort of the k
    survivors. Writes ids (int64) and vals (float64 copies of z); returns how many were found
    (fewer than k when fewer tokens are finite).
    """
    k = ids.shape[0]
    n_tok = z.shape[0]
    if k == 0:
        return 0
    n = 0
    i = 0
    # Fill: push the first k valid tokens (sift up).
    while i < n_tok and n < k:
        v = masked2(z[i], z_other[i])
        if v > NEG_INF:
            j = n
            n += 1
            while j > 0:
                p = (j - 1) // 2
                if _worse(v, i, vals[p], ids[p]):
                    vals[j] = vals[p]
                    ids[j] = ids[p]
                    j = p
                else:
                    break
            vals[j] = v
            ids[j] = i
        i += 1
    # Scan. On an equal value a later token has the higher id, so it ranks below the root:
    # it enters only if strictly greater.
    root = vals[0] if n > 0 else NEG_INF
    while i < n_tok:
        if np.float64(z[i]) > root:
            v = masked2(z[i], z_other[i])
            if v > root:
                _sift_down(vals, ids, 0, n, v, i)
                root = vals[0]
        i += 1
    # Heap sort: move the worst to the end repeatedly, leaving the best first.
    for end in range(n - 1, 0, -1):
        v = vals[end]
        t = ids[end]
        vals[end] = vals[0]
        ids[end] = ids[0]
        _sift_down(vals, ids, 0, end, v, t)
    return n
