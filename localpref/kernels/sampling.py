"""Samplers: greedy, and temperature / top-k / top-p / min-p drawn by inverse CDF with a uniform u
the caller draws; the repetition penalty applied to scores before either."""

from __future__ import annotations

import numpy as np
from numba import njit

from localpref.kernels.primitives import (
    CHUNK,
    FASTMATH,
    NEG_INF,
    argmax_chunk,
    exp_nonpos,
    finite_or_neg_inf,
    mask_into,
)
from localpref.kernels.topk import topk_into


@njit(cache=True)
def _max_argmax(scores):
    """(max, argmax) over finite scores, lowest id on ties; (-inf, -1) if none is finite."""
    n = scores.shape[0]
    buf = np.empty(CHUNK)
    m = NEG_INF
    best = -1
    for lo in range(0, n, CHUNK):
        hi = min(lo + CHUNK, n)
        mask_into(scores[lo:hi], buf)
        m, best = argmax_chunk(buf, hi - lo, lo, m, best)
    return m, best


@njit(cache=True)
def greedy(scores):
    """argmax of scores over finite entries, lowest id on ties; -1 if none is finite."""
    return _max_argmax(scores)[1]


@njit(cache=True, fastmath=False)
def _kept_weight(v, m, inv_t, min_p):
    """exp((v - m) / T), the unnormalised probability relative to the most probable token
    (m the maximum score), or 0 if the token is masked or below min_p (e < min_p is
    p < min_p p_max)."""
    e = exp_nonpos((finite_or_neg_inf(v) - m) * inv_t)
    return e if e >= min_p else 0.0


# Shells for top-p without top-k: the tokens whose score is within tau * T of the best one
# (probability at least e^-tau of the most probable). Defined on the raw score so that the
# gather pass is a plain comparison.
_SHELLS = (2.0, 4.0, 6.0, 9.0, 12.0, 16.0)


@njit(cache=True, fastmath=FASTMATH)
def _mass_pass(scores, m, inv_t, min_p, thresholds):
    """One vectorised pass over V: the total weight Z = sum exp((s - m)/T) over finite tokens,
    the weight of the tokens that pass min_p, and the weights of the six shells
    s >= thresholds[j] (a tuple of six, best shell first)."""
    t0, t1, t2, t3, t4, t5 = thresholds
    z = 0.0
    z_min_p = 0.0
    w0 = 0.0
    w1 = 0.0
    w2 = 0.0
    w3 = 0.0
    w4 = 0.0
    w5 = 0.0
    for i in range(scores.shape[0]):
        v = finite_or_neg_inf(scores[i])
        e = exp_nonpos((v - m) * inv_t)
        z += e
        z_min_p += e if e >= min_p else 0.0
        w0 += e if v >= t0 else 0.0
        w1 += e if v >= t1 else 0.0
        w2 += e if v >= t2 else 0.0
        w3 += e if v >= t3 else 0.0
        w4 += e if v >= t4 else 0.0
        w5 += e if v >= t5 else 0.0
    return z, z_min_p, (w0, w1, w2, w3, w4, w5)


@njit(cache=True, fastmath=FASTMATH)
def _shell_count(scores, s_min):
    """How many finite scores are >= s_min (vectorised)."""
    c = 0
    for i in range(scores.shape[0]):
        v = finite_or_neg_inf(scores[i])
        c += 1 if (v >= s_min) & (v > NEG_INF) else 0
    return c


@njit(cache=True, fastmath=FASTMATH)
def _kept_mass(scores, m, inv_t, min_p):
    """sum of _kept_weight over scores (vectorised)."""
    z = 0.0
    for i in range(scores.shape[0]):
        z += _kept_weight(scores[i], m, inv_t, min_p)
    return z


@njit(cache=True)
def _chunk_masses(scores, m, inv_t, min_p):
    """The kept weight of every chunk of CHUNK tokens (each summed vectorised)."""
    n = scores.shape[0]
    masses = np.empty((n + CHUNK - 1) // CHUNK)
    for c in range(masses.shape[0]):
        lo = c * CHUNK
        masses[c] = _kept_mass(scores[lo:min(lo + CHUNK, n)], m, inv_t, min_p)
    return masses


@njit(cache=True)
def _walk(scores, m, inv_t, min_p, masses, u):
    """Inverse CDF in ascending token id over the kept tokens (finite, e >= min_p).

    target = u * (total kept weight). The chunk masses locate the chunk where the running
    weight crosses target, and only that chunk is walked token by token: one vectorised pass
    over V in all (for the masses) plus one chunk. Falls back to the last kept token when
    rounding leaves target unreached.
    """
    n = scores.shape[0]
    total = 0.0
    for c in range(masses.shape[0]):
        total += masses[c]
    target = u * total
    cum = 0.0
    for c in range(masses.shape[0]):
        if cum + masses[c] > target:
            for j in range(c * CHUNK, min((c + 1) * CHUNK, n)):
                e = _kept_weight(scores[j], m, inv_t, min_p)
                if e > 0.0:
                    cum += e
                    if cum > target:
                        return j
        else:
            cum += masses[c]
    for j in range(n - 1, -1, -1):
        if _kept_weight(scores[j], m, inv_t, min_p) > 0.0:
            return j
    return -1


@njit(cache=True, fastmath=False)
def _better(va, ia, vb, ib):
    """Is (va, token ia) ranked above (vb, ib)? Higher value first, then lower id."""
    return va > vb or (va == vb and ia < ib)


@njit(cache=True)
def _swap3(v, ids, e, a, b):
    """Swap entries a and b of the three parallel arrays (value, token id, weight)."""
    v[a], v[b] = v[b], v[a]
    ids[a], ids[b] = ids[b], ids[a]
    e[a], e[b] = e[b], e[a]


@njit(cache=True)
def _select_mass(v, ids, e, target):
    """Weighted quickselect: the smallest rank-prefix of (v, ids) whose weight e reaches target.

    Reorders the three arrays in place and returns (v, id) of the last token of that prefix
    and the prefix weight; the prefix is every token ranked at or above it (higher v, then
    lower id). Expected O(n): each round partitions the active range around a median-of-three
    pivot and keeps only the side that contains the crossing point. If the whole array weighs
    less than target (rounding), the prefix is everything.
    """
    lo = 0
    hi = v.shape[0]
    acc = 0.0  # weight of the tokens already known to be in the prefix (ranked above lo)
    while hi - lo > 1:
        mid = lo + (hi - lo) // 2
        last = hi - 1
        # median of three (by rank) moved to `last` as the pivot
        if _better(v[mid], ids[mid], v[lo], ids[lo]):
            _swap3(v, ids, e, mid, lo)
        if _better(v[last], ids[last], v[lo], ids[lo]):
            _swap3(v, ids, e, last, lo)
        if _better(v[mid], ids[mid], v[last], ids[last]):
            _swap3(v, ids, e, mid, last)
        pv = v[last]
        pi = ids[last]
        store = lo
        mass = 0.0
        for j in range(lo, last):
            if _better(v[j], ids[j], pv, pi):
                _swap3(v, ids, e, j, store)
                mass += e[store]
                store += 1
        _swap3(v, ids, e, store, last)
        if acc + mass >= target:
            hi = store
        elif acc + mass + e[store] >= target or store + 1 == hi:
            return v[store], ids[store], acc + mass + e[store]
        else:
            acc += mass + e[store]
            lo = store + 1
    return v[lo], ids[lo], acc + e[lo]


@njit(cache=True)
def _sample_top_p(scores, m, inv_t, top_p, min_p, u):
    """top-p (and min-p) without top-k: O(V) passes, then work on a shell of likely tokens.

    The mass pass gives Z, the weight of the min-p survivors and the weights of six shells.
    If min-p alone keeps less than top_p of the mass, it is the binding filter (both keep a
    rank-prefix, so the shorter one wins) and the walk over V uses it. Otherwise the smallest
    shell holding top_p of the mass is gathered and a weighted quickselect finds the top-p
    prefix in it; the walk goes over the shell in id order.
    """
    t = 1.0 / inv_t
    thresholds = (m - _SHELLS[0] * t, m - _SHELLS[1] * t, m - _SHELLS[2] * t,
                  m - _SHELLS[3] * t, m - _SHELLS[4] * t, m - _SHELLS[5] * t)
    z, z_min_p, weights = _mass_pass(scores, m, inv_t, min_p, thresholds)
    target = top_p * z
    if z_min_p < target:
        return _walk(scores, m, inv_t, min_p, _chunk_masses(scores, m, inv_t, min_p), u)
    s_min = NEG_INF
    for j in range(6):
        if weights[j] >= target:
            s_min = thresholds[j]
            break
    count = _shell_count(scores, s_min)
    ids = np.empty(count, dtype=np.int64)
    v = np.empty(count)
    c = 0
    for i in range(scores.shape[0]):
        if np.float64(scores[i]) >= s_min:  # false for NaN; -inf and +inf are checked next
            s = finite_or_neg_inf(scores[i])
            if s > NEG_INF and c < count:
                ids[c] = i
                v[c] = s
                c += 1
    ids = ids[:c]
    v = v[:c]
    e = np.empty(c)
    for j in range(c):
        e[j] = exp_nonpos((v[j] - m) * inv_t)
    v_thr, id_thr, mass = _select_mass(v.copy(), ids.copy(), e.copy(), target)
    goal = u * mass
    cum = 0.0
    last = -1
    for j in range(c):  # ids ascending
        if e[j] > 0.0 and not _better(v_thr, id_thr, v[j], ids[j]):
            cum += e[j]
            last = ids[j]
            if cum > goal:
                return ids[j]
    return last


@njit(cache=True)
def _sample_top_k(scores, m, inv_t, top_k, top_p, min_p, u):
    """top-k (then top-p, min-p) on the ranked top_k candidates of a heap: O(V + k log k)."""
    k = min(top_k, scores.shape[0])
    ids = np.empty(k, dtype=np.int64)
    e = np.empty(k)
    n = topk_into(scores, scores, ids, e)
    z = 0.0
    for j in range(n):
        e[j] = exp_nonpos((e[j] - m) * inv_t)
        z += e[j]
    keep = n
    if top_p < 1.0:  # on the top-k distribution, renormalised (as llama.cpp chains them)
        cum = 0.0
        for j in range(n):
            cum += e[j] / z
            if cum >= top_p:
                keep = j + 1
                break
    if min_p > 0.0:  # e is non-increasing and e[0] = 1: min-p keeps a prefix
        j = 1
        while j < keep and e[j] >= min_p:
            j += 1
        keep = j
    order = np.argsort(ids[:keep])
    total = 0.0
    for j in range(keep):
        total += e[j]
    goal = u * total
    cum = 0.0
    last = -1
    for jj in range(keep):
        j = order[jj]
        if e[j] > 0.0:
            cum += e[j]
            last = ids[j]
            if cum > goal:
                return ids[j]
    return last


@njit(cache=True)
def sample(scores, temperature, top_k, top_p, min_p, u):
    """Draw a token from scores (log-probs or logits; non-finite = impossible) with uniform u.

    temperature 0 (or top_k 1, or top_p <= 0) is greedy. Otherwise p = softmax(scores /
    temperature), then, as llama.cpp's samplers define them (but with the temperature applied
    first, as in Hugging Face): top_k (0 = off) keeps the top_k most probable tokens (ties:
    lower id); top_p (>= 1 = off) keeps the smallest set of most probable tokens whose
    renormalised mass is >= top_p; min_p (0 = off) drops tokens with p < min_p * p_max. The
    survivors are renormalised and walked in ascending token id; the token is the first whose
    cumulative probability exceeds u (u uniform in [0, 1), drawn by the caller from a seeded
    numpy.random.Generator). Returns -1 if no token is finite. Sources: top-k (Fan et al.,
    ACL 2018), top-p / nucleus sampling (Holtzman et al., ICLR 2020), min-p (Nguyen et al.,
    "Min-p sampling", ICLR 2025), with llama.cpp's ``llama_sampler_*`` as the reference of
    their edge cases.

    Cost, never a sort of V (after a max pass): temperature / min-p only: one vectorised pass
    of per-chunk weights, then one chunk of 512 walked. top_k: a heap scan, then O(k log k).
    top_p without top_k: a vectorised pass, a gather of the smallest "shell" of tokens near
    the top that holds top_p of the mass, a weighted quickselect in it (expected linear) and
    a walk over it; only a very flat distribution makes that shell large.
    """
    if not temperature >= 0.0:
        raise ValueError("temperature must be >= 0")
    if top_k < 0:
        raise ValueError("top_k must be >= 0 (0 = off)")
    if not (min_p >= 0.0 and min_p <= 1.0):
        raise ValueError("min_p must be in [0, 1]")
    inv_t = 1.0 / temperature if temperature > 0.0 else np.inf
    if top_k == 1 or not top_p > 0.0 or not inv_t < np.inf:
        return greedy(scores)
    m, best = _max_argmax(scores)
    if best < 0:
        return -1
    if top_k > 0:
        return _sample_top_k(scores, m, inv_t, top_k, top_p, min_p, u)
    if top_p < 1.0:
        return _sample_top_p(scores, m, inv_t, top_p, min_p, u)
    return _walk(scores, m, inv_t, min_p, _chunk_masses(scores, m, inv_t, min_p), u)


@njit(cache=True)
def apply_repetition_penalty(scores, recent_token_ids, penalty):
    """In place, llama.cpp / CTRL (Keskar et al. 2019) repetition penalty.

    For every distinct token id in recent_token_ids (each penalised once, however often it
    appears): score / penalty if the score is positive, score * penalty otherwise. penalty 1
    is a no-op; -inf and NaN stay as they are. On log-probabilities (all <= 0) it multiplies.
    """
    if not penalty > 0.0:
        raise ValueError("the repetition penalty must be > 0")
    if penalty == 1.0:
        return
    n_tok = scores.shape[0]
    n = recent_token_ids.shape[0]
    new = np.empty(n)
    for j in range(n):
        t = recent_token_ids[j]
        if t < 0 or t >= n_tok:
            raise ValueError("a recent token id is outside the vocabulary")
        v = np.float64(scores[t])
        new[j] = v / penalty if v > 0.0 else v * penalty
    # Gather first, then scatter: a repeated id writes the same value twice.
    for j in range(n):
        scores[recent_token_ids[j]] = new[j]
