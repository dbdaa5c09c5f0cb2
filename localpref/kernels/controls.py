"""The controls that keep steering fluent on small models: the plausibility (tau) mask, the
per-token KL budget, the end-token rule, and the fluency and per-token statistics of the trace.

Every two-lane method here steers inside one family of distributions (docs/design.md):

    p_k = softmax(z_pref + k d),   d = z_pref - z_other,

where Contrastive uses k = ratio, Amulet's exact form k = amulet_contrast(...), and PAD, over
its K candidates, k = -w with z_other the reward lane (its score z_pref + w (z_rm - z_pref) up to
a constant). So one scalar controls the strength, and these kernels act on that scalar:

- **Plausibility** (as in contrastive decoding, Li et al., ACL 2023): tokens whose
  preference-lane probability is below ``tau`` times the top token's are excluded before
  combining, i.e. kept iff ``z_pref[i] >= max(z_pref) + log(tau)``. The top token always stays.
- **Per-token KL budget** (ours; neither paper has it): the largest ``t`` in [0, 1] with
  ``KL(p_{t k} || p_0) <= epsilon``. ``KL(p_s || p_0) = s E_s[d] - A(s) + A(0)`` with
  ``A(s) = log sum exp(z_pref + s d)``; its derivative in s is ``s Var_s(d)``, so KL grows
  with |s| and a bracketing search (bisection guarded Newton) finds t.
- **Fluency**: ``z[token] - log sum exp(z)``, the log-probability a lane gives the chosen token.
- **Ending** (``pref_ends_into``): end-of-generation tokens take the preference lane's
  probability; the contrast shares out the rest (docs/steering.md, "Ending"). Greedy
  decoding takes the rule's zero-temperature limit (``pref_ends_greedy``): the answer ends
  when the preference lane's top token is an end token.
- **Trace** (``step_statistics``, ``lane_statistics``): a step's log-probabilities and argmaxes
  under each lane in one pass over the vocabulary.

All sums run in float64 over the tokens finite in both lanes (and plausible); the vectorisable
``exp`` and eight-way max of ``primitives`` are reused.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from localpref.kernels.primitives import (
    CHUNK,
    FASTMATH,
    argmax_chunk,
    exp_nonpos,
    finite_or_neg_inf,
    fmax,
    mask_into,
    max8,
    max_of,
    normalise_inplace,
    sum_exp_shifted,
)

NEG_INF = -np.inf
_KL_SEARCH_STEPS = 40
_KL_RELATIVE_TOLERANCE = 1e-4


@njit(cache=True)
def plausibility_threshold(z_pref, tau):
    """``max(z_pref) + log(tau)`` over finite logits; ``-inf`` when ``tau`` is 0 (off)."""
    if tau <= 0.0:
        return NEG_INF
    return _max_of_finite(z_pref) + math.log(tau)


@njit(cache=True)
def _family_value(z_pref, z_other, i, s, threshold):
    """``z_pref + s (z_pref - z_other)`` at token i, or -inf when masked or implausible."""
    a = finite_or_neg_inf(np.float64(z_pref[i]))
    b = finite_or_neg_inf(np.float64(z_other[i]))
    if a == NEG_INF or b == NEG_INF or a < threshold:
        return NEG_INF
    return a + s * (a - b)


@njit(cache=True)
def contrast_plausible_into(z_pref, z_other, k, threshold, out):
    """out = log_softmax(z_pref + k (z_pref - z_other)) over tokens with z_pref >= threshold.

    Returns the number of tokens kept (0 if none: out is then all -inf). The mask is
    contrastive decoding's plausibility constraint (Li et al., ACL 2023, eq. 3), with the
    threshold from ``plausibility_threshold``.
    """
    for i in range(z_pref.shape[0]):
        out[i] = _family_value(z_pref, z_other, i, k, threshold)
    m = max_of(out)
    if m == NEG_INF:
        return 0
    return normalise_inplace(out, m)


@njit(cache=True)
def _kept_pairs(z_pref, z_other, threshold):
    """The kept tokens' ``a = z_pref`` and ``d = z_pref - z_other`` (float64), in vocabulary
    order: the tokens ``_family_value`` keeps (finite in both lanes, ``z_pref >= threshold``).

    One pass over the vocabulary; every moment after it runs over these n tokens only (a
    handful under the plausibility mask, at most V without it), contiguous and branch-free,
    instead of over the vocabulary with its masks each time.
    """
    kept_a = np.empty(z_pref.shape[0], dtype=np.float64)
    kept_d = np.empty(z_pref.shape[0], dtype=np.float64)
    n = 0
    for i in range(z_pref.shape[0]):
        a = _family_value(z_pref, z_other, i, 0.0, threshold)  # z_pref[i], or -inf
        if a != NEG_INF:
            kept_a[n] = a
            kept_d[n] = a - np.float64(z_other[i])
            n += 1
    return kept_a[:n], kept_d[:n]


@njit(cache=True)
def _pair_moments(kept_a, kept_d, s):
    """(A(s), E_s[d], Var_s[d]) of p_s = softmax(a + s d) over the kept pairs
    (``_kept_pairs``); A(s) = log sum exp(a + s d). (-inf, 0, 0) when nothing is kept."""
    n = kept_a.shape[0]
    if n == 0:
        return NEG_INF, 0.0, 0.0
    m = NEG_INF
    for i in range(n):
        m = fmax(m, kept_a[i] + s * kept_d[i])
    total = 0.0
    first = 0.0
    second = 0.0
    for i in range(n):
        w = exp_nonpos(kept_a[i] + s * kept_d[i] - m)
        total += w
        first += w * kept_d[i]
        second += w * kept_d[i] * kept_d[i]
    mean = first / total
    return m + math.log(total), mean, max(second / total - mean * mean, 0.0)


@njit(cache=True)
def contrast_kl(z_pref, z_other, k, threshold):
    """KL(p_k || p_0) for p_s = softmax(z_pref + s (z_pref - z_other)) on the kept tokens:
    how far the step's steering moves the preference lane's distribution. This project's own
    control (the per-token KL budget, docs/design.md, "One family, one strength")."""
    kept_a, kept_d = _kept_pairs(z_pref, z_other, threshold)
    a_k, mean_k, _ = _pair_moments(kept_a, kept_d, k)
    a_0, _, _ = _pair_moments(kept_a, kept_d, 0.0)
    if a_k == NEG_INF:
        return 0.0
    return max(k * mean_k - a_k + a_0, 0.0)


@njit(cache=True)
def kl_budget_scale(z_pref, z_other, k, epsilon, threshold):
    """The largest t in [0, 1] with KL(p_{t k} || p_0) <= epsilon (1.0 if k is within budget).

    KL(t) = t k E[d] - A(t k) + A(0) rises with t (dKL/dt = t k^2 Var_{tk}(d)), so the answer
    is bracketed in [lo, hi] with KL(lo) <= epsilon < KL(hi) and refined by Newton steps that
    stay inside the bracket, bisection otherwise. The returned t always meets the budget.
    The kept tokens are gathered once (``_kept_pairs``), so each step of the search costs
    the kept tokens, not the vocabulary.
    """
    if k == 0.0 or epsilon <= 0.0:
        return 1.0 if k == 0.0 else 0.0
    kept_a, kept_d = _kept_pairs(z_pref, z_other, threshold)
    a_0, _, _ = _pair_moments(kept_a, kept_d, 0.0)
    if a_0 == NEG_INF:
        return 1.0
    a_1, mean_1, _ = _pair_moments(kept_a, kept_d, k)
    if k * mean_1 - a_1 + a_0 <= epsilon:
        return 1.0
    lo = 0.0
    hi = 1.0
    t = 0.5
    for _ in range(_KL_SEARCH_STEPS):
        a_t, mean_t, var_t = _pair_moments(kept_a, kept_d, t * k)
        excess = t * k * mean_t - a_t + a_0 - epsilon
        if excess <= 0.0:
            lo = t
        else:
            hi = t
        if hi - lo <= _KL_RELATIVE_TOLERANCE:
            break
        slope = t * k * k * var_t
        newton = t - excess / slope if slope > 0.0 else -1.0
        t = newton if lo < newton < hi else 0.5 * (lo + hi)
    return lo


@njit(cache=True)
def token_logprob(z, token):
    """log softmax(z)[token] = z[token] - m - log sum_i exp(z_i - m), m = max_i z_i, over the
    finite z_i: the chosen token's log-probability under one lane (the fluency statistics).

    Two passes over V, both vectorised (eight-way max, then a reassociable sum of the
    branch-free exp): about 90 us at V = 49k, where a plain loop is latency-bound at ~540 us.
    """
    m = _max_of_finite(z)
    return np.float64(z[token]) - m - math.log(_sum_exp_finite(z, m))


@njit(cache=True)
def _family_chunk_into(z_pref, z_other, k, threshold, buf):
    """buf[i] = z_pref[i] + k (z_pref[i] - z_other[i]), or -inf where masked or implausible;
    returns how many are kept."""
    kept = 0
    for i in range(z_pref.shape[0]):
        a = finite_or_neg_inf(np.float64(z_pref[i]))
        b = finite_or_neg_inf(np.float64(z_other[i]))
        v = a + k * (a - b)
        keep = (a > NEG_INF) & (b > NEG_INF) & (a >= threshold)
        buf[i] = v if keep else NEG_INF
        kept += 1 if keep else 0
    return kept


@njit(cache=True)
def _online_lse_update(m_old, m_new, s, buf, count):
    """Running sum of exp(x - m) after one chunk: rescale s from m_old to m_new, add buf's."""
    if m_new == NEG_INF:
        return s
    if m_old != m_new:
        s *= exp_nonpos(m_old - m_new)
    return s + sum_exp_shifted(buf[:count], m_new)


@njit(cache=True)
def step_statistics(z_pref, z_other, k, threshold, token):
    """The per-token statistics of a two-lane step in ONE pass over the vocabulary.

    With ``s = z_pref + k (z_pref - z_other)`` over the tokens finite in both lanes and with
    ``z_pref >= threshold`` (the steered family; ``k = 0``, ``threshold = -inf`` when the
    steered scores are computed elsewhere), returns

        (log_softmax(z_pref)[token], log_softmax(z_other)[token], log_softmax(s)[token],
         argmax z_pref, argmax z_other, argmax s)

    (lowest id on ties; -1 and -inf where a lane is all masked). Chunks of ``CHUNK`` tokens
    are masked or combined into small buffers, then argmax (eight at a time) and an online
    log-sum-exp (the running sum rescaled when the running maximum rises: Milakov and
    Gimelshein, "Online normalizer calculation for softmax", 2018) read them while they are
    in L1, so the lanes are read once for all six figures. A chunk the plausibility mask
    keeps nothing of adds nothing to the family's figures (its argmax and sum are left as
    they are: exactly what adding its zeros gives), so under the mask the family costs about
    one chunk's log-sum-exp instead of the vocabulary's.
    """
    n = z_pref.shape[0]
    bp = np.empty(CHUNK)
    bo = np.empty(CHUNK)
    bs = np.empty(CHUNK)
    mp = NEG_INF
    mo = NEG_INF
    ms = NEG_INF
    sp = 0.0
    so = 0.0
    ss = 0.0
    tp = -1
    to = -1
    ts = -1
    for lo in range(0, n, CHUNK):
        hi = min(lo + CHUNK, n)
        count = hi - lo
        mask_into(z_pref[lo:hi], bp)
        mask_into(z_other[lo:hi], bo)
        kept = _family_chunk_into(z_pref[lo:hi], z_other[lo:hi], k, threshold, bs)
        new_p, tp = argmax_chunk(bp, count, lo, mp, tp)
        new_o, to = argmax_chunk(bo, count, lo, mo, to)
        sp = _online_lse_update(mp, new_p, sp, bp, count)
        so = _online_lse_update(mo, new_o, so, bo, count)
        mp = new_p
        mo = new_o
        if kept > 0:
            new_s, ts = argmax_chunk(bs, count, lo, ms, ts)
            ss = _online_lse_update(ms, new_s, ss, bs, count)
            ms = new_s
    a = finite_or_neg_inf(np.float64(z_pref[token]))
    b = finite_or_neg_inf(np.float64(z_other[token]))
    value = a + k * (a - b)
    if not ((a > NEG_INF) & (b > NEG_INF) & (a >= threshold)):
        value = NEG_INF
    lp = a - mp - math.log(sp) if mp > NEG_INF else NEG_INF
    lo_ = b - mo - math.log(so) if mo > NEG_INF else NEG_INF
    ls = value - ms - math.log(ss) if ms > NEG_INF else NEG_INF
    return lp, lo_, ls, tp, to, ts


@njit(cache=True)
def lane_normaliser(z):
    """(argmax z, m, s) over the finite entries of one lane in one pass, where m = max z and
    s = sum exp(z - m): log_softmax(z)[t] = z[t] - m - log s (``logprob_from_normaliser``).
    The greedy pick of a one-lane method reads it, and the trace then needs no pass of its
    own (``Selector.normaliser``). Argmax: lowest id on ties, -1 (and m = -inf) when no
    entry is finite; the log-sum-exp is online (see ``step_statistics``)."""
    n = z.shape[0]
    buf = np.empty(CHUNK)
    m = NEG_INF
    s = 0.0
    top = -1
    for lo in range(0, n, CHUNK):
        hi = min(lo + CHUNK, n)
        mask_into(z[lo:hi], buf)
        new_m, top = argmax_chunk(buf, hi - lo, lo, m, top)
        s = _online_lse_update(m, new_m, s, buf, hi - lo)
        m = new_m
    return top, m, s


@njit(cache=True)
def logprob_from_normaliser(z, token, m, s):
    """log_softmax(z)[token] from ``lane_normaliser``'s m and s (-inf for a masked token or
    lane)."""
    a = finite_or_neg_inf(np.float64(z[token]))
    return a - m - math.log(s) if m > NEG_INF else NEG_INF


@njit(cache=True)
def lane_statistics(z, token):
    """(log_softmax(z)[token], argmax z) in one pass (a step with one lane decoded)."""
    top, m, s = lane_normaliser(z)
    return logprob_from_normaliser(z, token, m, s), top


@njit(cache=True)
def _max_of_finite(z):
    """max of the finite entries of z (-inf if none), eight independent maxima per step.

    The masking twin of ``primitives.max_of`` (and ``_sum_exp_finite`` of
    ``primitives.sum_exp_shifted``), which read buffers already masked: masking inside those
    slowed the contrast kernels by 12-17 %, so raw lanes get their own pair.
    """
    n = z.shape[0]
    m = NEG_INF
    i = 0
    while i + 8 <= n:
        block = max8(finite_or_neg_inf(z[i]), finite_or_neg_inf(z[i + 1]),
                     finite_or_neg_inf(z[i + 2]), finite_or_neg_inf(z[i + 3]),
                     finite_or_neg_inf(z[i + 4]), finite_or_neg_inf(z[i + 5]),
                     finite_or_neg_inf(z[i + 6]), finite_or_neg_inf(z[i + 7]))
        m = fmax(m, block)
        i += 8
    while i < n:
        m = fmax(m, finite_or_neg_inf(z[i]))
        i += 1
    return m


@njit(cache=True, fastmath=FASTMATH)
def _sum_exp_finite(z, m):
    """sum_i exp(z_i - m) over the finite z_i, where m >= every finite z_i. Vectorised."""
    s = 0.0
    for i in range(z.shape[0]):
        s += exp_nonpos(finite_or_neg_inf(z[i]) - m)
    return s


@njit(cache=True)
def pref_ends_into(scores, z_pref, end_positions):
    """End tokens take the preference lane's probability; the contrast shares out the rest.
    This project's own rule (docs/design.md, "Avoid, the end-token rule and the trace").

    In place on ``scores`` (a steered distribution's scores, normalised or not), with E the
    end-of-generation tokens at ``end_positions`` (ascending) that ``scores`` does not mask:

        p(e) = p_pref(e)                             for e in E
        p(i) = (1 - p_pref(E)) p_steered(i | not E)  otherwise,

    ``p_pref = softmax(z_pref)`` over the same tokens as ``scores`` (the vocabulary, or PAD's
    candidates). So the steered answer ends exactly as often as the preference lane would,
    and the contrast only chooses among the tokens that go on (docs/steering.md, "Ending").
    ``1 - p_pref(E)`` is summed directly over the other tokens (no cancellation when the
    preference lane is sure to end). Returns its log.
    """
    n_end = end_positions.shape[0]
    eligible = np.zeros(n_end, dtype=np.bool_)
    for j in range(n_end):
        p = end_positions[j]
        eligible[j] = finite_or_neg_inf(np.float64(scores[p])) > NEG_INF
        scores[p] = NEG_INF
    m = _max_of_finite(scores)
    a0 = _max_of_finite(z_pref)
    # Mass of the tokens that go on: the segments between end tokens, plus masked end tokens.
    going_on = 0.0
    ending = 0.0
    lo = 0
    for j in range(n_end):
        p = end_positions[j]
        going_on += _sum_exp_finite(z_pref[lo:p], a0)
        w = exp_nonpos(finite_or_neg_inf(np.float64(z_pref[p])) - a0)
        if eligible[j]:
            ending += w
        else:
            going_on += w
        lo = p + 1
    going_on += _sum_exp_finite(z_pref[lo:], a0)
    lse0 = a0 + math.log(going_on + ending)
    rest = math.log(going_on) - math.log(going_on + ending) if going_on > 0.0 else NEG_INF
    if m > NEG_INF:
        shift = rest - (m + math.log(_sum_exp_finite(scores, m)))
        for i in range(scores.shape[0]):
            scores[i] = finite_or_neg_inf(scores[i]) + shift
    for j in range(n_end):
        if eligible[j]:
            scores[end_positions[j]] = np.float64(z_pref[end_positions[j]]) - lse0
    return rest


@njit(cache=True)
def pref_ends_greedy(scores, z_pref, end_positions):
    """The greedy pick under the end rule: the temperature -> 0 limit of ``pref_ends_into``.

    At temperature T the rule acts on the tempered lanes: the end tokens E get
    ``p_T(E) = sum_e softmax(z_pref / T)_e`` and the rest share ``1 - p_T(E)`` as the
    tempered steered distribution does. As T -> 0, ``p_T(E)`` tends to 1 when the preference
    lane's top token (over the tokens ``scores`` keeps, i.e. its finite entries) is an end
    token and to 0 otherwise, and the rest tends to its argmax. So

        pick = argmax_i z_pref[i] over kept i,        if that token is in E,
               argmax_{i kept, i not in E} scores[i],  otherwise,

    lowest index on ties (as ``greedy``); ``end_positions`` ascending. Under greedy decoding
    the steered answer therefore ends exactly when the preference lane's greedy pick is to
    end. (Taking the argmax of ``pref_ends_into``'s temperature-1 output instead would end
    less often than the preference lane: the contrast sharpens the going-on tokens, so an
    end token the preference lane ranks first at p = 0.4 could still lose to a going-on
    token at p = 0.5.) Returns -1 if no entry is finite.
    """
    return _end_rule_pick(z_pref, z_pref, 0.0, NEG_INF, scores, True, end_positions)


@njit(cache=True)
def contrast_pref_ends_greedy(z_pref, z_other, k, threshold, end_positions):
    """``pref_ends_greedy`` on the contrast family, in one pass, without writing the scores.

    Over the tokens ``contrast_plausible_into`` keeps (finite in both lanes, ``z_pref >=
    threshold``), with ``s = z_pref + k (z_pref - z_other)``:

        pick = argmax z_pref over kept tokens,        if that token is in E,
               argmax s over kept tokens not in E,     otherwise

    (lowest index on ties; ``end_positions`` ascending; -1 if nothing is kept). The greedy
    fast path of Contrastive and Amulet under ``end_tokens="pref"``.
    """
    return _end_rule_pick(z_pref, z_other, k, threshold, z_pref, False, end_positions)


@njit(cache=True)
def _end_rule_pick(z_pref, z_other, k, threshold, scores, from_scores, end_positions):
    """The two greedy picks above in one loop: a token's value is ``scores[i]`` when
    ``from_scores`` (-inf = not kept), else the contrast family's ``_family_value``.

    Under a plausibility threshold the family keeps only tokens with ``z_pref >= threshold``,
    so a chunk of ``CHUNK`` tokens whose largest finite ``z_pref`` is below it keeps none and
    is skipped: the loop visits the kept tokens in the same order as without the skip."""
    j = 0
    best_pref = NEG_INF
    pref_top = -1
    pref_top_ends = False
    best_going_on = NEG_INF
    going_on_top = -1
    n = z_pref.shape[0]
    skip_chunks = (not from_scores) and threshold > NEG_INF
    for lo in range(0, n, CHUNK):
        hi = min(lo + CHUNK, n)
        if skip_chunks and _max_of_finite(z_pref[lo:hi]) < threshold:
            continue
        for i in range(lo, hi):
            if from_scores:
                v = finite_or_neg_inf(np.float64(scores[i]))
            else:
                v = _family_value(z_pref, z_other, i, k, threshold)
            if v == NEG_INF:
                continue
            j, is_end = _end_at(end_positions, j, i)
            zp = np.float64(z_pref[i])
            if pref_top < 0 or zp > best_pref:
                best_pref = zp
                pref_top = i
                pref_top_ends = is_end
            if not is_end and (going_on_top < 0 or v > best_going_on):
                best_going_on = v
                going_on_top = i
    if pref_top_ends or going_on_top < 0:
        return pref_top
    return going_on_top


@njit(cache=True)
def _end_at(end_positions, j, i):
    """(j, whether token i is an end token), walking the ascending ``end_positions`` from
    index j; called with increasing i, so one loop over V walks the end tokens once."""
    n_end = end_positions.shape[0]
    while j < n_end and end_positions[j] < i:
        j += 1
    return j, j < n_end and end_positions[j] == i


@njit(cache=True)
def pref_ends_logprob(z_pref, z_other, k, threshold, end_positions, token, lp_pref, lp_steered):
    """log p(token) under the end rule (``pref_ends_into``) applied to the contrast family,
    from the family's and the preference lane's own log-probabilities of ``token``.

    With E the kept end tokens, ``p_pref(E) = sum_e exp(z_pref[e] - A_pref)`` (``A_pref =
    z_pref[token] - lp_pref``, the lane's log-normaliser) and ``p_s(E)`` the same under the
    family (``A_s = s[token] - lp_steered``):

        log p(token) = lp_pref                                              if token in E,
                       log(1 - p_pref(E)) + lp_steered - log(1 - p_s(E))      otherwise,

    so the trace needs O(|E|) work on top of ``step_statistics`` instead of a pass over V
    (one pass when p(E) > 1/2 in either, where ``1 - p(E)`` would cancel; ``end_positions``
    ascending).
    """
    a_pref = np.float64(z_pref[token]) - lp_pref
    a_steered = _family_value(z_pref, z_other, token, k, threshold) - lp_steered
    ending_pref = 0.0
    ending_steered = 0.0
    for j in range(end_positions.shape[0]):
        e = end_positions[j]
        if e == token:
            return lp_pref
        v = _family_value(z_pref, z_other, e, k, threshold)
        if v == NEG_INF:
            continue
        ending_pref += math.exp(np.float64(z_pref[e]) - a_pref)
        ending_steered += math.exp(v - a_steered)
    if ending_pref <= 0.5 and ending_steered <= 0.5:  # no cancellation in 1 - p(E)
        return math.log1p(-ending_pref) + lp_steered - math.log1p(-ending_steered)
    # Most of the mass on the end tokens: sum the going-on mass directly (a pass over V).
    going_on_pref = 0.0
    going_on_steered = 0.0
    j = 0
    for i in range(z_pref.shape[0]):
        j, is_end = _end_at(end_positions, j, i)
        v = _family_value(z_pref, z_other, i, k, threshold)
        if is_end and v > NEG_INF:
            continue  # a kept end token
        going_on_pref += exp_nonpos(finite_or_neg_inf(np.float64(z_pref[i])) - a_pref)
        if v > NEG_INF:
            going_on_steered += math.exp(v - a_steered)
    return math.log(going_on_pref) + lp_steered - math.log(going_on_steered)


@njit(cache=True)
def restrict_to_plausible(z_pref, threshold, candidate_ids, scores):
    """Set to -inf the PAD scores of candidates whose z_pref is below ``threshold``."""
    for j in range(candidate_ids.shape[0]):
        if np.float64(z_pref[candidate_ids[j]]) < threshold:
            scores[j] = NEG_INF


def gather(z: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """``z[ids]`` as float64 (PAD's candidates)."""
    return np.asarray(z[ids], dtype=np.float64)


def warmup() -> None:
    """Compile (or load from Numba's cache) this module's kernels for the types decoding
    passes them: float32 lanes (llama.cpp's logits), float64 scores and PAD's float64
    candidates, int64 ids; ``localpref.warmup.warmup`` calls it when a model loads."""
    z32 = np.array([0.5, -1.0, 2.0, -np.inf], dtype=np.float32)
    z64 = z32.astype(np.float64)
    out = np.empty(4, dtype=np.float64)
    ids = np.array([2, 0], dtype=np.int64)
    scores = np.zeros(2, dtype=np.float64)
    for z in (z32, z64):
        threshold = plausibility_threshold(z, 0.5)
        kl_budget_scale(z, z[::-1].copy(), 2.0, 0.1, threshold)
        contrast_kl(z, z[::-1].copy(), 2.0, threshold)
        contrast_plausible_into(z, z[::-1].copy(), 2.0, threshold, out)
        restrict_to_plausible(z, threshold, ids, scores)
        token_logprob(z, 1)
        step_statistics(z, z[::-1].copy(), 2.0, threshold, 1)
        lane_statistics(z, 1)
        _, m, s = lane_normaliser(z)  # the one-lane greedy pick, then the trace
        logprob_from_normaliser(z, 1, m, s)
        pref_ends_into(out, z, ids)
        pref_ends_greedy(out, z, ids)
        contrast_pref_ends_greedy(z, z[::-1].copy(), 2.0, threshold, ids[1:].copy())
        pref_ends_logprob(z, z[::-1].copy(), 2.0, threshold, ids[1:].copy(), 2, -1.0, -1.0)
    pref_ends_into(scores, z64[:2].copy(), ids[:1].copy())  # PAD: over its candidates
    pref_ends_greedy(scores, z64[:2].copy(), ids[:1].copy())
