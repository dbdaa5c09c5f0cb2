"""Numeric building blocks of the kernels: masking, eight-way max and argmax, a vectorisable exp,
normalisation in place.

Numba helpers that the other modules of ``localpref.kernels`` call from inside their own kernels,
where LLVM inlines them; nothing outside the package calls them (tests/test_warmup.py checks
that no module outside it imports this one), so the warm-up at load loads the kernels that carry
them compiled in, not these. The conventions (masking, float64, ties) and the performance notes
are in the package's docstring (``localpref/kernels/__init__.py``).
"""

from __future__ import annotations

import math

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic

NEG_INF = -np.inf

# Fast-math flags for the reduction loops: reassociation lets LLVM vectorise sums. No ``nnan`` /
# ``ninf``: the kernels depend on comparisons with -inf and NaN behaving as IEEE says.
FASTMATH = {"reassoc", "nsz", "contract"}


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
        """The LLVM of the cast: the int64 argument's bits read as a double."""
        return builder.bitcast(args[0], ir.DoubleType())

    return sig, codegen


_LOG2E = 1.4426950408889634
_LN2_HI = 6.93147180369123816490e-01  # ln 2 split in two for exact range reduction
_LN2_LO = 1.90821492927058770002e-10
_EXP_FLOOR = -708.0  # exp(-708) ~ 3.3e-308: below this the result is flushed to exactly 0


@njit(cache=True, fastmath={"contract"})
def exp_nonpos(x):
    """exp(x) for x <= 0 (x may be -inf), branch-free so loops over it vectorise.

    x = n ln2 + r with |r| <= ln2 / 2 (Cody-Waite, two-part ln 2), exp(r) by its Taylor series
    to degree 12 (truncation error < 2e-16 relative), 2^n assembled from exponent bits.
    Returns exactly 0 for x < -708, -inf and NaN. Accurate up to x = 709, but the kernels only
    call it with x <= 0.
    The flags are ``contract`` alone, explicit because Numba otherwise lets a callee inherit
    its caller's fast-math flags, and reassociation would undo the two-part range reduction (an
    error of 1e-14 relative at x = -700); LLVM keeps these per-instruction flags when it
    inlines. Contraction makes each Horner step and each range-reduction product one fused
    multiply-add (one rounding instead of two): a sum of exps over a 49,152-token lane takes
    28 % less time, and the largest relative error on 5 million points in [-708, 0] fell from
    4.0e-16 to 3.5e-16 (docs/performance.md, "A graph per run of streams, the exponential
    in fused multiply-adds, garbage collections").
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
def is_finite(x):
    """True for a finite number; False for +-inf and NaN (x - x is NaN for those)."""
    return x - x == 0.0


@njit(cache=True, fastmath=False)
def finite_or_neg_inf(x):
    """x as float64 if finite, else -inf (the masking rule for one lane)."""
    v = np.float64(x)
    return v if v - v == 0.0 else NEG_INF


@njit(cache=True, fastmath=False)
def masked2(a, b):
    """a as float64 if both a and b are finite, else -inf (the masking rule for two lanes)."""
    x = np.float64(a)
    y = np.float64(b)
    return x if (x - x == 0.0) & (y - y == 0.0) else NEG_INF


@njit(cache=True, fastmath=False)
def fmax(a, b):
    """max(a, b) as one compare-select: a if a > b, else b (so b when either is NaN)."""
    return a if a > b else b


@njit(cache=True, fastmath=False)
def max8(v0, v1, v2, v3, v4, v5, v6, v7):
    """The maximum of eight values by a balanced tree of ``fmax`` (three levels of independent
    compare-selects, not a chain of seven)."""
    return fmax(fmax(fmax(v0, v1), fmax(v2, v3)), fmax(fmax(v4, v5), fmax(v6, v7)))


# Loops that should vectorise are written as ``for i in range(n)`` over whole arrays (or
# slices passed to a helper): Numba adds a negative-index check to ``a[i + c]`` or ``a[i - lo]``
# that stops LLVM from vectorising. Branchy scans work on chunks of CHUNK tokens, first masked
# or combined into a small buffer by such a loop.
CHUNK = 512


@njit(cache=True)
def mask_into(z, buf):
    """buf[i] = z[i] as float64 if finite, else -inf (vectorised)."""
    for i in range(z.shape[0]):
        buf[i] = finite_or_neg_inf(z[i])


@njit(cache=True)
def argmax_chunk(buf, count, base, m, best):
    """Continue an argmax over buf[:count] (token ids base + i) from the running (m, best).

    Eight at a time: their maximum is compared with m and only a block that beats it is
    searched (strict >, so the lowest id wins ties). buf holds no NaN.
    """
    i = 0
    while i + 8 <= count:
        bm = max8(buf[i], buf[i + 1], buf[i + 2], buf[i + 3],
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
def max_of(out):
    """max of a float64 array holding no NaN (-inf if empty or all -inf).

    Eight independent maxima per step: a compare-select chain over V is latency-bound, and
    LLVM does not vectorise a floating-point max reduction without no-NaN flags, which the
    masking code cannot afford.
    """
    n = out.shape[0]
    m = NEG_INF
    i = 0
    while i + 8 <= n:
        bm = max8(out[i], out[i + 1], out[i + 2], out[i + 3],
                  out[i + 4], out[i + 5], out[i + 6], out[i + 7])
        m = fmax(m, bm)
        i += 8
    while i < n:
        m = fmax(m, out[i])
        i += 1
    return m


@njit(cache=True, fastmath=FASTMATH)
def sum_exp_shifted(out, m):
    """sum_i exp(out[i] - m), where m >= every out[i] (entries may be -inf). Vectorised."""
    s = 0.0
    for i in range(out.shape[0]):
        s += exp_nonpos(out[i] - m)
    return s


@njit(cache=True, fastmath=FASTMATH)
def _subtract_count(out, c):
    """out[i] -= c in place (-inf stays -inf); returns how many entries are finite."""
    n_valid = 0
    for i in range(out.shape[0]):
        v = out[i] - c
        out[i] = v
        n_valid += 1 if v > NEG_INF else 0
    return n_valid


@njit(cache=True)
def normalise_inplace(out, m):
    """Scores with maximum m (finite) become log-probabilities: out -= m + log sum exp(out - m).

    Returns the number of finite entries.
    """
    s = sum_exp_shifted(out, m)
    return _subtract_count(out, m + math.log(s))
