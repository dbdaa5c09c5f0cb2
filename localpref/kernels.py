"""Numerical kernels: log-softmax, Amulet (loop and exact form), contrastive, PAD, samplers.

Everything here runs once per generated token, so it is compiled with Numba
(``@njit(cache=True)``), takes plain NumPy arrays and scalars, and never loops over the
vocabulary in Python. docs/design.md gives the formulas; each kernel's docstring
restates its own and names its source.

Conventions
-----------
* **Inputs.** Logits are 1-D arrays of length V (float32 zero-copy views of llama.cpp's logits,
  or float64). Kernels never modify their inputs (except ``apply_repetition_penalty``, which
  works in place by design).
* **Masking.** A token whose logit is not finite (``-inf`` from a grammar mask, ``NaN``, or
  ``+inf``, which cannot be normalised) in *any* input lane is masked: it is ``-inf`` in every
  output and is never chosen. It is masked explicitly before any arithmetic, so ``B = -k < 0``
  can never turn ``-inf`` into ``+inf`` and no kernel produces ``NaN``.
* **Precision.** Combinations, maxima, sums and logarithms are computed in float64, whatever
  the input dtype. Outputs are float64.
* **Buffers.** Hot-path kernels end in ``_into`` and write into buffers that the caller
  allocates once per generation (``out``: float64, length V; for PAD an int64 and a float64
  buffer of length ``candidates``). They return something small: the number of unmasked
  tokens (or candidates), or for ``contrast_logits_into`` the maximum. The plain-named
  functions ``log_softmax``, ``amulet_logprobs``, ``contrastive_logprobs``,
  ``amulet_loop_logprobs`` and ``pad_scores`` are Python wrappers that allocate and check
  their arguments.
* **Everything masked.** ``*_into`` kernels return ``0`` (``contrast_logits_into``: ``-inf``)
  and leave ``out`` all ``-inf``; ``greedy``, ``sample`` and ``contrast_argmax`` return
  ``-1``; the allocating wrappers raise :class:`AllMaskedError` (a ``ValueError``).
* **Ties** are always broken toward the lower token id (argmax, top-k, top-p, PAD candidates).
* **Randomness** lives in Python: ``sample`` takes a uniform ``u`` in [0, 1) drawn by the caller
  from a seeded ``numpy.random.Generator``, and picks by inverse CDF over the surviving tokens
  walked in ascending token-id order (so the same ``u`` gives the same token whatever filters
  were applied, as long as that token survived them).

The hot path of a generation with Amulet is ``k = amulet_contrast(alpha, lam, eta, T)`` once,
then per token either ``contrast_argmax(z_pref, z_base, k)`` (greedy: one pass, no
exponentials), or ``contrast_logits_into(z_pref, z_base, k, out)`` then
``sample(out, ...)`` (sampling normalises by itself), or ``contrast_logprobs_into`` when the
log-probabilities themselves are wanted. Contrastive decoding is the same with ``k = ratio``.
PAD is ``pad_scores_into`` then ``greedy`` or ``sample`` over the K scores, mapping the index
back through the candidate ids.

Performance notes
-----------------
* A loop meant to vectorise is a plain ``for i in range(n)`` over whole arrays or over slices
  handed to a helper (Numba's negative-index check on ``a[i + c]`` defeats LLVM's vectoriser);
  reductions that must vectorise carry the fast-math flags ``reassoc, nsz, contract`` and
  never ``nnan`` / ``ninf``, which would let LLVM fold away the masking tests.
* Max and argmax take eight values at a time (LLVM does not vectorise a floating-point max
  reduction without no-NaN flags, and a compare chain over V is latency-bound).
* exp: ``_exp_nonpos`` is a branch-free exp(x) for x <= 0 (Cody-Waite range reduction,
  degree-12 Taylor polynomial, exponent assembled from bits) that LLVM vectorises; relative
  error about 2e-16, exactly 0 below x = -708 and for ``-inf``. The exponential pass is the
  dominant cost of every normalised kernel (about 1 ns a token on the 2-core machine).
* ``parallel=True`` was measured and is not used: at V = 49k a two-thread exponential pass
  saves about 20 us when both cores are idle, but a worker thread that is descheduled (by
  llama.cpp's own threads or anything else) costs milliseconds.
"""

from __future__ import annotations

import math

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic

__all__ = [
    "AllMaskedError",
    "amulet_contrast",
    "amulet_logprobs",
    "amulet_loop_into",
    "amulet_loop_logprobs",
    "apply_repetition_penalty",
    "contrast_argmax",
    "contrast_logits_into",
    "contrast_logprobs_into",
    "contrastive_logprobs",
    "greedy",
    "kl_divergence",
    "log_softmax",
    "log_softmax_into",
    "pad_scores",
    "pad_scores_into",
    "sample",
    "warmup",
]

NEG_INF = -np.inf

# Fast-math flags for the reduction loops: reassociation lets LLVM vectorise sums. No ``nnan`` /
# ``ninf``: the kernels depend on comparisons with -inf and NaN behaving as IEEE says.
_FM = {"reassoc", "nsz", "contract"}

# Combined logits are clamped to this magnitude so that an absurd contrast (k near 1e300)
# cannot overflow to +-inf and then produce NaN (inf - inf).
_CLAMP = 1e300


class AllMaskedError(ValueError):
    """Every token is masked (-inf, NaN or +inf in a lane): there is nothing to choose."""

    def __init__(self, message: str = "every token is masked, so no token can be chosen") -> None:
        super().__init__(message)


# --------------------------------------------------------------------------------------------
# Scalar helpers (inlined by LLVM into the loops that call them)
# --------------------------------------------------------------------------------------------


@intrinsic
def _bits_as_float64(typingctx, bits):
    """Reinterpret the 64 bits of an int64 as a float64 (a no-op bit cast)."""
    if not isinstance(bits, types.Integer):
        return None
    sig = types.float64(types.int64)

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.DoubleType())

    return sig, codegen


_LOG2E = 1.4426950408889634
_LN2_HI = 6.93147180369123816490e-01  # ln 2 split in two for exact range reduction
_LN2_LO = 1.90821492927058770002e-10
_EXP_FLOOR = -708.0  # exp(-708) ~ 3.3e-308: below this the result is flushed to exactly 0


@njit(cache=True, fastmath=False)
def _exp_nonpos(x):
    """exp(x) for x <= 0 (x may be -inf), branch-free so loops over it vectorise.

    x = n ln2 + r with |r| <= ln2 / 2 (Cody-Waite, two-part ln 2), exp(r) by its Taylor series
    to degree 12 (truncation error < 2e-16 relative), 2^n assembled from exponent bits.
    Returns exactly 0 for x < -708, -inf and NaN. Accurate up to x = 709, but the kernels only
    call it with x <= 0.
    ``fastmath=False`` is explicit because Numba otherwise lets a callee inherit its caller's
    fast-math flags, and reassociation would undo the two-part range reduction (an error of
    1e-14 relative at x = -700); LLVM keeps these per-instruction flags when it inlines.
    """
    xc = x if x > _EXP_FLOOR else _EXP_FLOOR  # also maps NaN to the floor (result 0)
    n = math.floor(xc * _LOG2E + 0.5)
    r = (xc - n * _LN2_HI) - n * _LN2_LO
    p = 1.0 / 479001600.0
    p = p * r + 1.0 / 39916800.0
    p = p * r + 1.0 / 3628800.0
    p = p * r + 1.0 / 362880.0
    p = p * r + 1.0 / 40320.0
    p = p * r + 1.0 / 5040.0
    p = p * r + 1.0 / 720.0
    p = p * r + 1.0 / 120.0
    p = p * r + 1.0 / 24.0
    p = p * r + 1.0 / 6.0
    p = p * r + 0.5
    p = p * r + 1.0
    p = p * r + 1.0
    scale = _bits_as_float64((np.int64(n) + 1023) << 52)
    return p * scale if x >= _EXP_FLOOR else 0.0


@njit(cache=True, fastmath=False)
def _is_finite(x):
    """True for a finite number; False for +-inf and NaN (x - x is NaN for those)."""
    return x - x == 0.0


@njit(cache=True, fastmath=False)
def _finite_or_neg_inf(x):
    """x as float64 if finite, else -inf (the masking rule for one lane)."""
    v = np.float64(x)
    return v if v - v == 0.0 else NEG_INF


@njit(cache=True, fastmath=False)
def _masked2(a, b):
    """a as float64 if both a and b are finite, else -inf (the masking rule for two lanes)."""
    x = np.float64(a)
    y = np.float64(b)
    return x if (x - x == 0.0) & (y - y == 0.0) else NEG_INF


@njit(cache=True, fastmath=False)
def _fmax(a, b):
    return a if a > b else b


@njit(cache=True, fastmath=False)
def _max8(v0, v1, v2, v3, v4, v5, v6, v7):
    return _fmax(_fmax(_fmax(v0, v1), _fmax(v2, v3)), _fmax(_fmax(v4, v5), _fmax(v6, v7)))


# Loops that should vectorise are written as ``for i in range(n)`` over whole arrays (or
# slices passed to a helper): Numba adds a negative-index check to ``a[i + c]`` or ``a[i - lo]``
# that stops LLVM from vectorising. Branchy scans work on chunks of _CHUNK tokens, first masked
# or combined into a small buffer by such a loop.
_CHUNK = 512


@njit(cache=True)
def _mask_into(z, buf):
    """buf[i] = z[i] as float64 if finite, else -inf (vectorised)."""
    for i in range(z.shape[0]):
        buf[i] = _finite_or_neg_inf(z[i])


@njit(cache=True)
def _argmax_chunk(buf, count, base, m, best):
    """Continue an argmax over buf[:count] (token ids base + i) from the running (m, best).

    Eight at a time: their maximum is compared with m and only a block that beats it is
    searched (strict >, so the lowest id wins ties). buf holds no NaN.
    """
    i = 0
    while i + 8 <= count:
        bm = _max8(buf[i], buf[i + 1], buf[i + 2], buf[i + 3],
                   buf[i + 4], buf[i + 5], buf[i + 6], buf[i + 7])
        if bm > m:
            m = bm
            for j in range(i, i + 8):
                if buf[j] == bm:
                    best = base + j
                    break
        i += 8
    while i < count:
        if buf[i] > m:
            m = buf[i]
            best = base + i
        i += 1
    return m, best


@njit(cache=True)
def _max_of(out):
    """max of a float64 array holding no NaN (-inf if empty or all -inf).

    Eight independent maxima per step: a compare-select chain over V is latency-bound, and
    LLVM does not vectorise a floating-point max reduction without no-NaN flags, which the
    masking code cannot afford.
    """
    n = out.shape[0]
    m = NEG_INF
    i = 0
    while i + 8 <= n:
        bm = _max8(out[i], out[i + 1], out[i + 2], out[i + 3],
                   out[i + 4], out[i + 5], out[i + 6], out[i + 7])
        m = _fmax(m, bm)
        i += 8
    while i < n:
        m = _fmax(m, out[i])
        i += 1
    return m


@njit(cache=True, fastmath=_FM)
def _sum_exp_shifted(out, m):
    """sum_i exp(out[i] - m), where m >= every out[i] (entries may be -inf). Vectorised."""
    s = 0.0
    for i in range(out.shape[0]):
        s += _exp_nonpos(out[i] - m)
    return s


@njit(cache=True, fastmath=_FM)
def _subtract_count(out, c):
    """out[i] -= c in place (-inf stays -inf); returns how many entries are finite."""
    n_valid = 0
    for i in range(out.shape[0]):
        v = out[i] - c
        out[i] = v
        n_valid += 1 if v > NEG_INF else 0
    return n_valid


@njit(cache=True)
def _normalise_inplace(out, m):
    """Scores with maximum m (finite) become log-probabilities: out -= m + log sum exp(out - m).

    Returns the number of finite entries.
    """
    s = _sum_exp_shifted(out, m)
    return _subtract_count(out, m + math.log(s))


@njit(cache=True)
def _fill(out, value):
    for i in range(out.shape[0]):
        out[i] = value


# --------------------------------------------------------------------------------------------
# log-softmax
# --------------------------------------------------------------------------------------------


@njit(cache=True)
def log_softmax_into(z, out):
    """out = log_softmax(z) in float64; returns the number of unmasked (finite) tokens.

    log_softmax(z)_i = z_i - m - log(sum_j exp(z_j - m)), m = max_j z_j, over finite z_j only;
    a non-finite z_i gives out_i = -inf. Passes: mask + copy, max, sum of exponentials,
    subtraction (each vectorised or eight-way). If no token is finite, out is all -inf and the
    result is 0.
    """
    n = z.shape[0]
    if out.shape[0] != n:
        raise ValueError("out must have the same length as z")
    for i in range(n):
        out[i] = _finite_or_neg_inf(z[i])
    m = _max_of(out)
    if m == NEG_INF:
        return 0
    return _normalise_inplace(out, m)


def log_softmax(z) -> np.ndarray:
    """Numerically stable log-softmax of a 1-D array, as a new float64 array.

    Non-finite entries are masked (-inf in the result). Raises AllMaskedError if none is finite.
    """
    a = _as_lane(z, "z")
    out = np.empty(a.shape[0], dtype=np.float64)
    if log_softmax_into(a, out) == 0:
        raise AllMaskedError()
    return out


# --------------------------------------------------------------------------------------------
# Contrast family: z_pref + k (z_pref - z_base)  (Amulet exact form, contrastive / CFG)
# --------------------------------------------------------------------------------------------


@njit(cache=True, fastmath=False)
def _combine(a, b, k):
    """a + k (a - b) in float64 (clamped to +-1e300), or -inf if a or b is not finite."""
    x = np.float64(a)
    y = np.float64(b)
    v = x + k * (x - y)
    v = v if v > -_CLAMP else -_CLAMP
    v = v if v < _CLAMP else _CLAMP
    return v if (x - x == 0.0) & (y - y == 0.0) else NEG_INF


@njit(cache=True)
def _check_pair(z_pref, z_base, k):
    if z_pref.shape[0] != z_base.shape[0]:
        raise ValueError("the two lanes have different lengths")
    if not _is_finite(k):
        raise ValueError("the contrast strength k must be finite")


@njit(cache=True)
def _combine_into(z_pref, z_base, k, out):
    """out[i] = _combine(z_pref[i], z_base[i], k) for i < len(z_pref) (vectorised)."""
    for i in range(z_pref.shape[0]):
        out[i] = _combine(z_pref[i], z_base[i], k)


@njit(cache=True)
def contrast_logprobs_into(z_pref, z_base, k, out):
    """out = log_softmax(z_pref + k (z_pref - z_base)); returns the number of unmasked tokens.

    The family shared by the Amulet exact form (k = amulet_contrast(...)) and contrastive
    decoding / classifier-free guidance, the Amulet paper's "LA" baseline (k = ratio; Zhang et
    al., ICLR 2025, public code ``la_generate``: ``pref + ratio * (pref - plain)``). Computed in
    float64: one vectorised pass combines and masks into out, then max, sum of exponentials
    and normalisation as in ``log_softmax_into``. A token that is not finite in either lane is
    -inf; if every token is masked, out is all -inf and 0 is returned.
    """
    _check_pair(z_pref, z_base, k)
    if out.shape[0] != z_pref.shape[0]:
        raise ValueError("out must have the same length as the lanes")
    _combine_into(z_pref, z_base, k, out)
    m = _max_of(out)
    if m == NEG_INF:
        return 0
    return _normalise_inplace(out, m)


@njit(cache=True)
def contrast_logits_into(z_pref, z_base, k, out):
    """out = z_pref + k (z_pref - z_base) in float64, unnormalised; returns max(out).

    For sampling, which normalises on its own: softmax(out / T) is the same distribution as
    from ``contrast_logprobs_into`` and this skips its exponential pass. Masked tokens are
    -inf; a return value of -inf means every token is masked.
    """
    _check_pair(z_pref, z_base, k)
    if out.shape[0] != z_pref.shape[0]:
        raise ValueError("out must have the same length as the lanes")
    _combine_into(z_pref, z_base, k, out)
    return _max_of(out)


@njit(cache=True)
def contrast_argmax(z_pref, z_base, k):
    """argmax_i z_pref_i + k (z_pref_i - z_base_i) over tokens finite in both lanes.

    The greedy token of ``contrast_logprobs_into`` without exponentials (the log-softmax does
    not move the argmax) and without a V-sized buffer. Lowest id on ties; -1 if every token
    is masked.
    """
    _check_pair(z_pref, z_base, k)
    n = z_pref.shape[0]
    buf = np.empty(_CHUNK)
    m = NEG_INF
    best = -1
    for lo in range(0, n, _CHUNK):
        hi = min(lo + _CHUNK, n)
        _combine_into(z_pref[lo:hi], z_base[lo:hi], k, buf)
        m, best = _argmax_chunk(buf, hi - lo, lo, m, best)
    return best


@njit(cache=True)
def _check_amulet(alpha, lam, eta, iterations):
    if iterations < 0:
        raise ValueError("iterations must be >= 0")
    if not eta > 0.0:
        raise ValueError("eta must be > 0")
    if not lam >= 0.0:
        raise ValueError("lam must be >= 0")
    if not _is_finite(alpha):
        raise ValueError("alpha must be finite")


@njit(cache=True)
def amulet_contrast(alpha, lam, eta, iterations):
    """The scalar k of the exact Amulet form: x_{T+1} = log_softmax(z_pref + k (z_pref - z_base)).

    Amulet (Zhang et al., "Amulet: ReAlignment During Test Time for Personalized Preference
    Adaptation of LLMs", ICLR 2025; public code ``amulet_game``) iterates, with
    b = log_softmax(z_base), x_1 = log_softmax(z_pref):
        u_t = alpha (x_t - b),  U_t = u_1 + ... + u_t,
        x_{t+1} = log_softmax((eta U_t + lam eta t x_1 + x_t) / (t lam eta + 1)).
    Each step is linear in log-probabilities and the normalisers are constant over tokens, so
    x_t = x_1 + k_t (x_1 - b) + const, with
        k_1 = 0,  k_{t+1} = (eta alpha (t + k_1 + ... + k_t) + k_t) / (t lam eta + 1).
    Returns k_{T+1} in float64 (recursing on k itself, not on A = 1 + k and B = -k, which
    cancel). 4.6487 at alpha 2, lam 2, eta 10, T 60; 117.07 at alpha 4; 0 at alpha 0 or T 0.
    """
    _check_amulet(alpha, lam, eta, iterations)
    k = 0.0
    s = 0.0  # k_1 + ... + k_t
    for t in range(1, iterations + 1):
        s += k
        k = (eta * alpha * (t + s) + k) / (t * lam * eta + 1.0)
    return k


@njit(cache=True)
def amulet_loop_into(z_pref, z_base, alpha, lam, eta, iterations, out):
    """The Amulet loop exactly as the paper and the authors' code run it: O(V T), the reference.

    b = log_softmax(z_base), x_1 = log_softmax(z_pref) (both over the tokens finite in both
    lanes); for t = 1..T: U_t = U_{t-1} + alpha (x_t - b),
    x_{t+1} = log_softmax((eta U_t + lam eta t x_1 + x_t) / (t lam eta + 1)); out = x_{T+1}
    (T updates; the authors' ``amulet_game`` skips the last normalisation, which the sampler's
    softmax undoes). Returns the number of unmasked tokens (0: out is all -inf). Allocates three
    scratch arrays of length V.
    """
    _check_pair(z_pref, z_base, 0.0)
    _check_amulet(alpha, lam, eta, iterations)
    n = z_pref.shape[0]
    if out.shape[0] != n:
        raise ValueError("out must have the same length as the lanes")
    b = np.empty(n)
    x1 = np.empty(n)
    for i in range(n):
        b[i] = _masked2(z_base[i], z_pref[i])
        x1[i] = _masked2(z_pref[i], z_base[i])
    m = _max_of(x1)
    if m == NEG_INF:
        _fill(out, NEG_INF)
        return 0
    _normalise_inplace(b, _max_of(b))
    n_valid = _normalise_inplace(x1, m)
    u_sum = np.zeros(n)
    for i in range(n):
        out[i] = x1[i]
    for t in range(1, iterations + 1):
        _amulet_step(out, u_sum, x1, b, alpha, lam, eta, t)
        _normalise_inplace(out, _max_of(out))
    return n_valid


@njit(cache=True)
def _amulet_step(x, u_sum, x1, b, alpha, lam, eta, t):
    """One update of the loop, in place: U += alpha (x - b); x = (eta U + lam eta t x1 + x) /
    (t lam eta + 1), unnormalised; masked tokens (x1 = -inf) stay -inf."""
    denom = t * lam * eta + 1.0
    c1 = lam * eta * t
    for i in range(x.shape[0]):
        ok = x1[i] > NEG_INF
        u = u_sum[i] + alpha * (x[i] - b[i])
        u_sum[i] = u if ok else 0.0
        v = (eta * u + c1 * x1[i] + x[i]) / denom
        x[i] = v if ok else NEG_INF


def amulet_loop_logprobs(z_pref, z_base, alpha, lam, eta, iterations) -> np.ndarray:
    """Amulet by its T-iteration loop (see ``amulet_loop_into``): float64 log-probabilities.

    The reference for ``amulet_logprobs``; O(V T). Raises AllMaskedError if every token is
    masked.
    """
    zp, zb = _as_pair(z_pref, z_base)
    out = np.empty(zp.shape[0], dtype=np.float64)
    n_valid = amulet_loop_into(
        zp, zb, float(alpha), float(lam), float(eta), _as_int(iterations, "iterations"), out
    )
    if n_valid == 0:
        raise AllMaskedError()
    return out


def amulet_logprobs(
    z_pref,
    z_base,
    *,
    alpha: float = 2.0,
    lam: float = 2.0,
    eta: float = 10.0,
    iterations: int = 60,
) -> np.ndarray:
    """Amulet's distribution after ``iterations`` updates, by the exact O(V + T) form.

    log_softmax(z_pref + k (z_pref - z_base)) with k = amulet_contrast(alpha, lam, eta,
    iterations); equal to ``amulet_loop_logprobs`` to rounding. Defaults are the authors'
    (alpha 2, lambda 2, eta 10, T 60). Returns normalised float64 log-probabilities; masked
    tokens are -inf. Raises AllMaskedError if every token is masked.
    """
    zp, zb = _as_pair(z_pref, z_base)
    k = amulet_contrast(float(alpha), float(lam), float(eta), _as_int(iterations, "iterations"))
    return _contrast_alloc(zp, zb, k)


def contrastive_logprobs(z_pref, z_base, *, ratio: float = 2.0) -> np.ndarray:
    """Contrastive decoding / classifier-free guidance: log_softmax(z_pref + r (z_pref - z_base)).

    The Amulet paper's "LA" baseline with r = 2. Masked tokens are -inf; raises AllMaskedError
    if every token is masked.
    """
    zp, zb = _as_pair(z_pref, z_base)
    return _contrast_alloc(zp, zb, float(ratio))


def _contrast_alloc(zp, zb, k):
    out = np.empty(zp.shape[0], dtype=np.float64)
    if contrast_logprobs_into(zp, zb, k, out) == 0:
        raise AllMaskedError()
    return out


# --------------------------------------------------------------------------------------------
# Top-k selection (shared by PAD and the samplers)
# --------------------------------------------------------------------------------------------


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
def _topk_into(z, z_other, ids, vals):
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
        v = _masked2(z[i], z_other[i])
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
            v = _masked2(z[i], z_other[i])
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


# --------------------------------------------------------------------------------------------
# PAD
# --------------------------------------------------------------------------------------------


@njit(cache=True)
def pad_scores_into(z_policy, z_reward, weight, ids_out, scores_out):
    """PAD's token scores over the policy's top-k candidates; returns the number of candidates.

    PAD (Chen et al., "PAD: Personalized Alignment of LLMs at Decoding-Time", ICLR 2025; public
    code ``generate_step``): K = the k = len(ids_out) tokens with the highest policy logits,
    among tokens finite in both lanes (ties: lower token id, where the authors' torch.topk
    leaves ties unspecified);
        r(a) = log_softmax_K(z_reward)[a] - log_softmax_K(z_policy)[a]
    (log-softmax restricted to K), and the score s(a) = z_policy(a) + weight r(a).
    ids_out[j] / scores_out[j] for j < n are the candidates in policy order (highest policy
    logit first); entries from n on are -1 / -inf. n < k when fewer tokens are finite; 0 if
    every token is masked. With weight 0 the scores are the policy logits.
    """
    if z_policy.shape[0] != z_reward.shape[0]:
        raise ValueError("the two lanes have different lengths")
    if scores_out.shape[0] != ids_out.shape[0]:
        raise ValueError("ids_out and scores_out must have the same length")
    if not _is_finite(weight):
        raise ValueError("the PAD weight must be finite")
    n = _topk_into(z_policy, z_reward, ids_out, scores_out)
    for j in range(n, ids_out.shape[0]):
        ids_out[j] = -1
        scores_out[j] = NEG_INF
    if n > 0:
        _pad_rescore(z_reward, weight, ids_out, scores_out, n)
    return n


@njit(cache=True)
def _pad_rescore(z_reward, weight, ids, scores, n):
    """scores[j] (policy logits of the n candidates, best first) += weight * r, with
    r = log_softmax_K(z_reward) - log_softmax_K(z_policy) over the candidates."""
    m_pol = scores[0]
    m_rew = NEG_INF
    for j in range(n):
        m_rew = _fmax(m_rew, np.float64(z_reward[ids[j]]))
    s_pol = 0.0
    s_rew = 0.0
    for j in range(n):
        s_pol += math.exp(scores[j] - m_pol)
        s_rew += math.exp(np.float64(z_reward[ids[j]]) - m_rew)
    lse_pol = m_pol + math.log(s_pol)
    lse_rew = m_rew + math.log(s_rew)
    for j in range(n):
        zp = scores[j]
        reward = (np.float64(z_reward[ids[j]]) - lse_rew) - (zp - lse_pol)
        scores[j] = zp + weight * reward


def pad_scores(z_policy, z_reward, weight: float, candidates: int):
    """PAD scores (see ``pad_scores_into``) as new arrays: (candidate_ids int64[K], scores[K]).

    K = min(candidates, tokens finite in both lanes); candidates in policy order. Raises
    AllMaskedError if every token is masked, ValueError if candidates < 1.
    """
    zp, zr = _as_pair(z_policy, z_reward)
    k = _as_int(candidates, "candidates")
    if k < 1:
        raise ValueError("candidates must be at least 1")
    ids = np.empty(min(k, max(zp.shape[0], 1)), dtype=np.int64)
    scores = np.empty(ids.shape[0], dtype=np.float64)
    n = pad_scores_into(zp, zr, float(weight), ids, scores)
    if n == 0:
        raise AllMaskedError()
    return ids[:n], scores[:n]


# --------------------------------------------------------------------------------------------
# Samplers
# --------------------------------------------------------------------------------------------


@njit(cache=True)
def _max_argmax(scores):
    """(max, argmax) over finite scores, lowest id on ties; (-inf, -1) if none is finite."""
    n = scores.shape[0]
    buf = np.empty(_CHUNK)
    m = NEG_INF
    best = -1
    for lo in range(0, n, _CHUNK):
        hi = min(lo + _CHUNK, n)
        _mask_into(scores[lo:hi], buf)
        m, best = _argmax_chunk(buf, hi - lo, lo, m, best)
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
    e = _exp_nonpos((_finite_or_neg_inf(v) - m) * inv_t)
    return e if e >= min_p else 0.0


# Shells for top-p without top-k: the tokens whose score is within tau * T of the best one
# (probability at least e^-tau of the most probable). Defined on the raw score so that the
# gather pass is a plain comparison.
_SHELLS = (2.0, 4.0, 6.0, 9.0, 12.0, 16.0)


@njit(cache=True, fastmath=_FM)
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
        v = _finite_or_neg_inf(scores[i])
        e = _exp_nonpos((v - m) * inv_t)
        z += e
        z_min_p += e if e >= min_p else 0.0
        w0 += e if v >= t0 else 0.0
        w1 += e if v >= t1 else 0.0
        w2 += e if v >= t2 else 0.0
        w3 += e if v >= t3 else 0.0
        w4 += e if v >= t4 else 0.0
        w5 += e if v >= t5 else 0.0
    return z, z_min_p, (w0, w1, w2, w3, w4, w5)


@njit(cache=True, fastmath=_FM)
def _shell_count(scores, s_min):
    """How many finite scores are >= s_min (vectorised)."""
    c = 0
    for i in range(scores.shape[0]):
        v = _finite_or_neg_inf(scores[i])
        c += 1 if (v >= s_min) & (v > NEG_INF) else 0
    return c


@njit(cache=True, fastmath=_FM)
def _kept_mass(scores, m, inv_t, min_p):
    """sum of _kept_weight over scores (vectorised)."""
    z = 0.0
    for i in range(scores.shape[0]):
        z += _kept_weight(scores[i], m, inv_t, min_p)
    return z


@njit(cache=True)
def _chunk_masses(scores, m, inv_t, min_p):
    """The kept weight of every chunk of _CHUNK tokens (each summed vectorised)."""
    n = scores.shape[0]
    masses = np.empty((n + _CHUNK - 1) // _CHUNK)
    for c in range(masses.shape[0]):
        lo = c * _CHUNK
        masses[c] = _kept_mass(scores[lo:min(lo + _CHUNK, n)], m, inv_t, min_p)
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
            for j in range(c * _CHUNK, min((c + 1) * _CHUNK, n)):
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
            s = _finite_or_neg_inf(scores[i])
            if s > NEG_INF and c < count:
                ids[c] = i
                v[c] = s
                c += 1
    ids = ids[:c]
    v = v[:c]
    e = np.empty(c)
    for j in range(c):
        e[j] = _exp_nonpos((v[j] - m) * inv_t)
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
    n = _topk_into(scores, scores, ids, e)
    z = 0.0
    for j in range(n):
        e[j] = _exp_nonpos((e[j] - m) * inv_t)
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
    numpy.random.Generator). Returns -1 if no token is finite.

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


# --------------------------------------------------------------------------------------------
# Diagnostics
# --------------------------------------------------------------------------------------------


@njit(cache=True, fastmath=False)
def _kl_term(lp, lq):
    """p (log p - log q) for one token: 0 if p is masked or underflows, +inf if q is masked."""
    a = np.float64(lp)
    b = np.float64(lq)
    ok = a - a == 0.0
    p = _exp_nonpos(min(a, 0.0) if ok else NEG_INF)
    b = b if b - b == 0.0 else NEG_INF
    return p * (a - b) if ok & (p > 0.0) else 0.0


@njit(cache=True, fastmath=_FM)
def kl_divergence(logp, logq):
    """KL(p || q) = sum_i p_i (log p_i - log q_i) in float64, from log-probabilities.

    Tokens where p is masked (non-finite log p, or p underflowing to 0) contribute nothing;
    if q is masked where p > 0 the divergence is +inf. One vectorised pass.
    """
    if logp.shape[0] != logq.shape[0]:
        raise ValueError("the two distributions have different lengths")
    s = 0.0
    for i in range(logp.shape[0]):
        s += _kl_term(logp[i], logq[i])
    return s


# --------------------------------------------------------------------------------------------
# Python-side argument handling
# --------------------------------------------------------------------------------------------


def _as_lane(z, name: str) -> np.ndarray:
    a = np.asarray(z)
    if a.ndim != 1:
        raise ValueError(f"{name} must be a 1-D array of logits")
    if a.dtype != np.float32 and a.dtype != np.float64:
        a = a.astype(np.float64)
    return np.ascontiguousarray(a)


def _as_pair(z_a, z_b) -> tuple[np.ndarray, np.ndarray]:
    a = _as_lane(z_a, "the first lane")
    b = _as_lane(z_b, "the second lane")
    if a.shape[0] != b.shape[0]:
        raise ValueError(f"the two lanes have different lengths ({a.shape[0]} and {b.shape[0]})")
    return a, b


def _as_int(x, name: str) -> int:
    if isinstance(x, (bool, np.bool_)) or int(x) != x:
        raise ValueError(f"{name} must be an integer")
    return int(x)


def warmup() -> None:
    """Compile (or load from Numba's cache) every kernel for float32 lanes and float64 scores,
    so that the first generated token does not pay for compilation (``localpref.warmup``
    runs this and ``steering.warmup`` when a model loads)."""
    z32 = np.array([0.5, -1.0, 2.0, -np.inf], dtype=np.float32)
    out = np.empty(4, dtype=np.float64)
    log_softmax_into(z32, out)
    log_softmax_into(out, out.copy())
    k = amulet_contrast(2.0, 2.0, 10.0, 60)
    contrast_logprobs_into(z32, z32, k, out)
    contrast_logits_into(z32, z32, k, out)
    contrast_argmax(z32, z32, k)
    amulet_loop_into(z32, z32, 2.0, 2.0, 10.0, 1, out)
    ids = np.empty(2, dtype=np.int64)
    sc = np.empty(2, dtype=np.float64)
    pad_scores_into(z32, z32, 1.0, ids, sc)
    for scores in (out, sc, z32):  # z32: Base and Pref draw from a lane's raw logits
        greedy(scores)
        sample(scores, 1.0, 0, 1.0, 0.0, 0.5)
        sample(scores, 0.7, 2, 0.9, 0.05, 0.5)
        sample(scores, 0.7, 0, 0.9, 0.0, 0.5)
    apply_repetition_penalty(out, np.array([0], dtype=np.int64), 1.1)
    kl_divergence(out, out)
