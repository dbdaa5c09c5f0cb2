"""The contrast family log_softmax(z_pref + k (z_pref - z_base)): Amulet's exact form and its
reference loop, contrastive decoding / classifier-free guidance, and the strength k of Amulet."""

from __future__ import annotations

import numpy as np
from numba import njit
from numpy.typing import ArrayLike

from localpref.kernels.arguments import AllMaskedError, as_int, as_pair
from localpref.kernels.primitives import (
    CHUNK,
    NEG_INF,
    argmax_chunk,
    is_finite,
    masked2,
    max_of,
    normalise_inplace,
)

# Combined logits are clamped to this magnitude so that an absurd contrast (k near 1e300)
# cannot overflow to +-inf and then produce NaN (inf - inf).
_CLAMP = 1e300


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
    """ValueError unless the two lanes have one length and the strength k is finite."""
    if z_pref.shape[0] != z_base.shape[0]:
        raise ValueError("the two lanes have different lengths")
    if not is_finite(k):
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
    m = max_of(out)
    if m == NEG_INF:
        return 0
    return normalise_inplace(out, m)


@njit(cache=True)
def contrast_logits_into(z_pref, z_base, k, out):
    """out = z_pref + k (z_pref - z_base) in float64, unnormalised; returns max(out).

    For sampling, which normalises on its own: softmax(out / T) is the same distribution as
    from ``contrast_logprobs_into`` and this skips its exponential pass. Masked tokens are
    -inf; a return value of -inf means every token is masked. The combination is contrastive
    decoding's (Li et al., ACL 2023) and classifier-free guidance's (Sanchez et al., 2023);
    Amulet's closed form is the same with its k (``amulet_contrast``; docs/design.md, "One
    family, one strength").
    """
    _check_pair(z_pref, z_base, k)
    if out.shape[0] != z_pref.shape[0]:
        raise ValueError("out must have the same length as the lanes")
    _combine_into(z_pref, z_base, k, out)
    return max_of(out)


@njit(cache=True)
def contrast_argmax(z_pref, z_base, k):
    """argmax_i z_pref_i + k (z_pref_i - z_base_i) over tokens finite in both lanes.

    The greedy token of ``contrast_logprobs_into`` without exponentials (the log-softmax does
    not move the argmax) and without a V-sized buffer. Lowest id on ties; -1 if every token
    is masked. Source: the contrast of Li et al. (ACL 2023) / Amulet's closed form (Zhang et
    al., ICLR 2025), docs/design.md, "One family, one strength".
    """
    _check_pair(z_pref, z_base, k)
    n = z_pref.shape[0]
    buf = np.empty(CHUNK)
    m = NEG_INF
    best = -1
    for lo in range(0, n, CHUNK):
        hi = min(lo + CHUNK, n)
        _combine_into(z_pref[lo:hi], z_base[lo:hi], k, buf)
        m, best = argmax_chunk(buf, hi - lo, lo, m, best)
    return best


@njit(cache=True)
def _check_amulet(alpha, lam, eta, iterations):
    """ValueError unless Amulet's settings are in the paper's domain: T >= 0, eta > 0,
    lambda >= 0, alpha finite (Zhang et al., ICLR 2025)."""
    if iterations < 0:
        raise ValueError("iterations must be >= 0")
    if not eta > 0.0:
        raise ValueError("eta must be > 0")
    if not lam >= 0.0:
        raise ValueError("lam must be >= 0")
    if not is_finite(alpha):
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
        b[i] = masked2(z_base[i], z_pref[i])
        x1[i] = masked2(z_pref[i], z_base[i])
    m = max_of(x1)
    if m == NEG_INF:
        _fill(out, NEG_INF)
        return 0
    normalise_inplace(b, max_of(b))
    n_valid = normalise_inplace(x1, m)
    u_sum = np.zeros(n)
    for i in range(n):
        out[i] = x1[i]
    for t in range(1, iterations + 1):
        _amulet_step(out, u_sum, x1, b, alpha, lam, eta, t)
        normalise_inplace(out, max_of(out))
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


def amulet_loop_logprobs(z_pref: ArrayLike, z_base: ArrayLike, alpha: float, lam: float,
                         eta: float, iterations: int) -> np.ndarray:
    """Amulet by its T-iteration loop (see ``amulet_loop_into``): float64 log-probabilities.

    The reference for ``amulet_logprobs``; O(V T). Raises AllMaskedError if every token is
    masked.
    """
    zp, zb = as_pair(z_pref, z_base)
    out = np.empty(zp.shape[0], dtype=np.float64)
    n_valid = amulet_loop_into(
        zp, zb, float(alpha), float(lam), float(eta), as_int(iterations, "iterations"), out
    )
    if n_valid == 0:
        raise AllMaskedError()
    return out


def amulet_logprobs(
    z_pref: ArrayLike,
    z_base: ArrayLike,
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
    tokens are -inf. Raises AllMaskedError if every token is masked. Source: Zhang et al.,
    "Amulet", ICLR 2025, its per-token update summed in closed form (docs/design.md, "One
    family, one strength").
    """
    zp, zb = as_pair(z_pref, z_base)
    k = amulet_contrast(float(alpha), float(lam), float(eta), as_int(iterations, "iterations"))
    return _contrast_alloc(zp, zb, k)


def contrastive_logprobs(z_pref: ArrayLike, z_base: ArrayLike, *,
                         ratio: float = 2.0) -> np.ndarray:
    """Contrastive decoding / classifier-free guidance: log_softmax(z_pref + r (z_pref - z_base)).

    The Amulet paper's "LA" baseline with r = 2. Masked tokens are -inf; raises AllMaskedError
    if every token is masked.
    """
    zp, zb = as_pair(z_pref, z_base)
    return _contrast_alloc(zp, zb, float(ratio))


def _contrast_alloc(zp: np.ndarray, zb: np.ndarray, k: float) -> np.ndarray:
    """A new float64 array of log_softmax(zp + k (zp - zb)) (``contrast_logprobs_into``);
    AllMaskedError if every token is masked."""
    out = np.empty(zp.shape[0], dtype=np.float64)
    if contrast_logprobs_into(zp, zb, k, out) == 0:
        raise AllMaskedError()
    return out

@njit(cache=True)
def _fill(out, value):
    """out[i] = value for every i."""
    for i in range(out.shape[0]):
        out[i] = value
