"""The Numba kernels against an independent, plainly written NumPy reference, and properties.

Nothing in the reference section calls localpref: it restates each formula of docs/design.md
("The methods") in vectorised NumPy (and the Amulet loop as the paper writes it).
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from localpref import kernels as K
from localpref.kernels import sampling
from localpref.kernels.primitives import exp_nonpos

INF = np.inf

# ============================================================================================
# NumPy reference
# ============================================================================================


def ref_joint_mask(*lanes):
    ok = np.ones(len(lanes[0]), dtype=bool)
    for lane in lanes:
        ok &= np.isfinite(np.asarray(lane, dtype=np.float64))
    return ok


def ref_log_softmax(z, ok=None):
    z = np.asarray(z, dtype=np.float64)
    if ok is None:
        ok = np.isfinite(z)
    out = np.full(z.shape, -INF)
    v = z[ok]
    m = v.max()
    out[ok] = v - (m + np.log(np.sum(np.exp(v - m))))
    return out


def ref_amulet_loop(z_pref, z_base, alpha, lam, eta, iterations):
    ok = ref_joint_mask(z_pref, z_base)
    b = ref_log_softmax(z_base, ok)
    x1 = ref_log_softmax(z_pref, ok)
    x = x1.copy()
    u_sum = np.zeros(len(x))
    for t in range(1, iterations + 1):
        u_sum[ok] += alpha * (x[ok] - b[ok])
        y = np.full(len(x), -INF)
        y[ok] = (eta * u_sum[ok] + lam * eta * t * x1[ok] + x[ok]) / (t * lam * eta + 1)
        x = ref_log_softmax(y, ok)
    return x


def ref_amulet_k(alpha, lam, eta, iterations):
    ks = [0.0]
    for t in range(1, iterations + 1):
        ks.append((eta * alpha * (t + sum(ks)) + ks[-1]) / (t * lam * eta + 1))
    return ks[-1]


def ref_contrast(z_pref, z_base, k):
    ok = ref_joint_mask(z_pref, z_base)
    a = np.asarray(z_pref, dtype=np.float64)
    b = np.asarray(z_base, dtype=np.float64)
    y = np.full(len(a), -INF)
    y[ok] = a[ok] + k * (a[ok] - b[ok])
    return ref_log_softmax(y, ok)


def ref_ranked(z, ok):
    """Token ids with ok, by z descending then id ascending."""
    ids = np.flatnonzero(ok)
    return ids[np.lexsort((ids, -np.asarray(z, dtype=np.float64)[ids]))]


def ref_logsumexp(v):
    m = v.max()
    return m + np.log(np.sum(np.exp(v - m)))


def ref_pad(z_policy, z_reward, weight, candidates):
    ok = ref_joint_mask(z_policy, z_reward)
    cand = ref_ranked(z_policy, ok)[:candidates]
    zp = np.asarray(z_policy, dtype=np.float64)[cand]
    zr = np.asarray(z_reward, dtype=np.float64)[cand]
    reward = (zr - ref_logsumexp(zr)) - (zp - ref_logsumexp(zp))
    return cand, zp + weight * reward


def ref_greedy(scores):
    s = np.asarray(scores, dtype=np.float64)
    ok = np.isfinite(s)
    if not ok.any():
        return -1
    return int(np.argmax(np.where(ok, s, -INF)))


def ref_sample_distribution(scores, temperature, top_k, top_p, min_p):
    """Probabilities over the vocabulary after temperature, top-k, top-p, min-p."""
    s = np.asarray(scores, dtype=np.float64)
    ranked = ref_ranked(s, np.isfinite(s))
    logits = s[ranked] / temperature
    p = np.exp(logits - logits.max())
    p /= p.sum()
    if top_k > 0:
        ranked, p = ranked[:top_k], p[:top_k] / p[:top_k].sum()
    if top_p < 1.0:
        reach = np.cumsum(p) >= top_p
        n = int(np.argmax(reach)) + 1 if reach.any() else len(p)
        ranked, p = ranked[:n], p[:n] / p[:n].sum()
    if min_p > 0.0:
        keep = p >= min_p * p.max()
        ranked, p = ranked[keep], p[keep] / p[keep].sum()
    dist = np.zeros(len(s))
    dist[ranked] = p
    return dist


def ref_repetition_penalty(scores, recent, penalty):
    out = np.array(scores, dtype=np.float64)
    ids = np.unique(np.asarray(recent, dtype=np.int64))
    v = out[ids]
    out[ids] = np.where(v > 0, v / penalty, v * penalty)
    return out


def ref_kl(logp, logq):
    logp = np.asarray(logp, dtype=np.float64)
    logq = np.asarray(logq, dtype=np.float64)
    ok = np.isfinite(logp)
    p = np.exp(logp[ok])
    ok_q = np.isfinite(logq[ok])
    if np.any((p > 0) & ~ok_q):
        return INF
    return float(np.sum(p * (logp[ok] - logq[ok])))


# ============================================================================================
# Helpers
# ============================================================================================


def random_lanes(v, seed, std=3.0, masked=0.0, correlated=True):
    rng = np.random.default_rng(seed)
    z_base = (rng.standard_normal(v) * std).astype(np.float32)
    if correlated:  # two lanes of one model on two prompts are close: perturb one into the other
        z_pref = (z_base + rng.standard_normal(v).astype(np.float32) * np.float32(1.0))
    else:
        z_pref = (rng.standard_normal(v) * std).astype(np.float32)
    if masked:
        z_pref[rng.random(v) < masked] = -INF
        z_base[rng.random(v) < masked] = -INF
    return z_pref.astype(np.float32), z_base


def assert_normalised_masked(out, ok):
    assert not np.isnan(out).any()
    assert np.all(out[~ok] == -INF)
    assert np.all(np.isfinite(out[ok]))
    assert abs(ref_logsumexp(out[ok])) < 1e-9


def u_grid(n):
    return (np.arange(n) + 0.5) / n


# ============================================================================================
# log-softmax and the exp helper
# ============================================================================================


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_log_softmax_matches_reference(dtype):
    z, _ = random_lanes(49152, 1, masked=0.05)
    z = z.astype(dtype)
    before = z.copy()
    out = K.log_softmax(z)
    ref = ref_log_softmax(z)
    ok = np.isfinite(z)
    np.testing.assert_array_equal(z, before)
    assert out.dtype == np.float64
    assert np.max(np.abs(out[ok] - ref[ok])) < 1e-12
    assert_normalised_masked(out, ok)


def test_log_softmax_into_reports_valid_count_and_all_masked():
    z = np.array([1.0, -INF, np.nan, 2.0, INF], dtype=np.float32)
    out = np.empty(5)
    assert K.log_softmax_into(z, out) == 2
    assert_normalised_masked(out, np.array([True, False, False, True, False]))
    masked = np.full(4, -INF, dtype=np.float32)
    out = np.zeros(4)
    assert K.log_softmax_into(masked, out) == 0
    assert np.all(out == -INF)
    with pytest.raises(K.AllMaskedError):
        K.log_softmax(masked)


def test_exp_nonpos_accuracy():
    x = np.concatenate([-np.linspace(0.0, 707.9, 200001), -np.geomspace(1e-12, 1.0, 1001)])
    got = np.array([exp_nonpos(v) for v in x[::97]])
    want = np.exp(x[::97])
    assert np.max(np.abs(got - want) / want) < 1e-15
    assert exp_nonpos(-INF) == 0.0
    assert exp_nonpos(-800.0) == 0.0
    assert exp_nonpos(0.0) == 1.0


# ============================================================================================
# Amulet
# ============================================================================================


def test_amulet_contrast_values():
    assert round(K.amulet_contrast(2.0, 2.0, 10.0, 60), 4) == 4.6487
    assert round(K.amulet_contrast(4.0, 2.0, 10.0, 60), 2) == 117.07
    assert K.amulet_contrast(0.0, 2.0, 10.0, 60) == 0.0
    assert K.amulet_contrast(2.0, 2.0, 10.0, 0) == 0.0
    for alpha in (0.5, 1.0, 2.0, 4.0):
        for lam, eta, t in ((2.0, 10.0, 60), (1.0, 1.0, 5), (0.0, 3.0, 7)):
            k = K.amulet_contrast(alpha, lam, eta, t)
            assert k == pytest.approx(ref_amulet_k(alpha, lam, eta, t), rel=1e-12)


def test_amulet_contrast_rejects_bad_settings():
    with pytest.raises(ValueError):
        K.amulet_contrast(2.0, 2.0, 0.0, 60)
    with pytest.raises(ValueError):
        K.amulet_contrast(2.0, -1.0, 10.0, 60)
    with pytest.raises(ValueError):
        K.amulet_contrast(2.0, 2.0, 10.0, -1)


@pytest.mark.parametrize("correlated", [False, True], ids=["independent", "correlated"])
@pytest.mark.parametrize("v", [49152, 262144])
@pytest.mark.parametrize("alpha", [0.5, 1.0, 2.0, 4.0])
def test_amulet_exact_equals_loop(v, alpha, correlated):
    # independent lanes: normal logits with std 3 (far apart, the hardest case for rounding);
    # correlated: one lane a perturbation of the other, as two prompts of one model are
    z_pref, z_base = random_lanes(v, seed=int(alpha * 10) + v, correlated=correlated)
    before = (z_pref.copy(), z_base.copy())
    exact = K.amulet_logprobs(z_pref, z_base, alpha=alpha)
    loop = K.amulet_loop_logprobs(z_pref, z_base, alpha, 2.0, 10.0, 60)
    np.testing.assert_array_equal(z_pref, before[0])
    np.testing.assert_array_equal(z_base, before[1])
    sel = exact > -30
    assert sel.sum() >= 1
    assert np.max(np.abs(exact[sel] - loop[sel])) < 1e-6
    # the exact form also matches the NumPy reference of the closed form
    k = K.amulet_contrast(alpha, 2.0, 10.0, 60)
    ref = ref_contrast(z_pref, z_base, k)
    assert np.max(np.abs(exact[sel] - ref[sel])) < 1e-9


@pytest.mark.parametrize("alpha", [0.5, 1.0, 2.0, 4.0])
def test_amulet_numpy_loop_equals_numba_loop(alpha):
    z_pref, z_base = random_lanes(49152, seed=7 + int(alpha * 4), masked=0.01)
    loop = K.amulet_loop_logprobs(z_pref, z_base, alpha, 2.0, 10.0, 60)
    ref = ref_amulet_loop(z_pref, z_base, alpha, 2.0, 10.0, 60)
    ok = ref_joint_mask(z_pref, z_base)
    sel = ref > -30
    assert np.max(np.abs(loop[sel] - ref[sel])) < 1e-9
    assert_normalised_masked(loop, ok)


def test_amulet_numpy_loop_equals_numba_loop_large_vocab():
    z_pref, z_base = random_lanes(262144, seed=99)
    loop = K.amulet_loop_logprobs(z_pref, z_base, 2.0, 2.0, 10.0, 60)
    ref = ref_amulet_loop(z_pref, z_base, 2.0, 2.0, 10.0, 60)
    sel = ref > -30
    assert np.max(np.abs(loop[sel] - ref[sel])) < 1e-9


def test_amulet_logprobs_is_keyword_only():
    z = np.zeros(4, dtype=np.float32)
    with pytest.raises(TypeError):
        K.amulet_logprobs(z, z, 2.0)  # type: ignore[misc]


# ============================================================================================
# Masking across the lane-combining kernels
# ============================================================================================


def masked_lanes(v=49152, seed=5):
    z_pref, z_base = random_lanes(v, seed, masked=0.1)
    rng = np.random.default_rng(seed + 1)
    z_pref[rng.integers(0, v, 50)] = np.nan
    z_base[rng.integers(0, v, 50)] = np.nan
    z_base[rng.integers(0, v, 5)] = INF
    return z_pref, z_base


@pytest.mark.parametrize(
    "combine",
    [
        lambda a, b: K.amulet_logprobs(a, b),
        lambda a, b: K.amulet_logprobs(a, b, alpha=4.0),
        lambda a, b: K.amulet_loop_logprobs(a, b, 2.0, 2.0, 10.0, 60),
        lambda a, b: K.contrastive_logprobs(a, b),
        lambda a, b: K.contrastive_logprobs(a, b, ratio=7.5),
    ],
    ids=["amulet", "amulet-a4", "amulet-loop", "contrastive", "contrastive-r7.5"],
)
def test_masking_stays_minus_inf(combine):
    z_pref, z_base = masked_lanes()
    ok = ref_joint_mask(z_pref, z_base)
    out = combine(z_pref, z_base)
    assert_normalised_masked(out, ok)


def test_contrastive_matches_reference_and_into_reuses_buffer():
    z_pref, z_base = masked_lanes(seed=11)
    out = np.empty(len(z_pref))
    n = K.contrast_logprobs_into(z_pref, z_base, 2.0, out)
    ok = ref_joint_mask(z_pref, z_base)
    assert n == ok.sum()
    ref = ref_contrast(z_pref, z_base, 2.0)
    assert np.max(np.abs(out[ok] - ref[ok])) < 1e-9
    assert np.array_equal(out, K.contrastive_logprobs(z_pref, z_base, ratio=2.0))


def test_contrast_argmax_is_argmax_of_logprobs():
    for seed in range(5):
        z_pref, z_base = masked_lanes(seed=seed)
        for k in (0.0, 2.0, 4.6487, 117.07):
            out = np.empty(len(z_pref))
            K.contrast_logprobs_into(z_pref, z_base, k, out)
            assert K.contrast_argmax(z_pref, z_base, k) == ref_greedy(out)


def test_all_masked_lanes():
    a = np.array([-INF, 1.0, np.nan], dtype=np.float32)
    b = np.array([0.0, -INF, 1.0], dtype=np.float32)
    out = np.zeros(3)
    assert K.contrast_logprobs_into(a, b, 2.0, out) == 0
    assert np.all(out == -INF)
    assert K.contrast_argmax(a, b, 2.0) == -1
    for call in (
        lambda: K.amulet_logprobs(a, b),
        lambda: K.contrastive_logprobs(a, b),
        lambda: K.amulet_loop_logprobs(a, b, 2.0, 2.0, 10.0, 3),
        lambda: K.pad_scores(a, b, 1.0, 10),
    ):
        with pytest.raises(K.AllMaskedError):
            call()


def test_huge_contrast_does_not_make_nan():
    z_pref, z_base = random_lanes(1000, seed=4)
    out = np.empty(1000)
    K.contrast_logprobs_into(z_pref, z_base, 1e299, out)
    assert not np.isnan(out).any()
    assert abs(ref_logsumexp(out[np.isfinite(out)])) < 1e-9


def test_mismatched_lanes_are_rejected():
    with pytest.raises(ValueError):
        K.amulet_logprobs(np.zeros(3, np.float32), np.zeros(4, np.float32))
    with pytest.raises(ValueError):
        K.contrast_logprobs_into(np.zeros(3), np.zeros(3), 2.0, np.empty(2))


# ============================================================================================
# PAD
# ============================================================================================


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("candidates", [1, 10, 40])
def test_pad_matches_reference_with_ties_and_masks(seed, candidates):
    rng = np.random.default_rng(seed)
    v = 49152 if seed < 2 else 3000
    # integer-valued logits make ties common, also at the top-k boundary
    z_policy = np.round(rng.standard_normal(v) * 2.0).astype(np.float32)
    z_reward = np.round(rng.standard_normal(v) * 2.0).astype(np.float32)
    z_policy[rng.random(v) < 0.1] = -INF
    z_reward[rng.random(v) < 0.1] = -INF
    z_policy[rng.integers(0, v, 5)] = np.nan
    z_policy[np.argmax(z_policy)] = -INF  # the best policy token is grammar-masked
    before = (z_policy.copy(), z_reward.copy())
    for weight in (0.0, 0.5, 1.0, 3.0):
        ids, scores = K.pad_scores(z_policy, z_reward, weight, candidates)
        ref_ids, ref_scores = ref_pad(z_policy, z_reward, weight, candidates)
        np.testing.assert_array_equal(ids, ref_ids)
        assert np.max(np.abs(scores - ref_scores)) < 1e-12
        assert ref_joint_mask(z_policy, z_reward)[ids].all()
        assert not np.isnan(scores).any()
    np.testing.assert_array_equal(z_policy, before[0])
    np.testing.assert_array_equal(z_reward, before[1])


def test_pad_weight_zero_is_policy_top_k_order():
    z_policy, z_reward = random_lanes(49152, seed=21, masked=0.05)
    ids, scores = K.pad_scores(z_policy, z_reward, 0.0, 10)
    ok = ref_joint_mask(z_policy, z_reward)
    np.testing.assert_array_equal(ids, ref_ranked(z_policy, ok)[:10])
    np.testing.assert_array_equal(scores, z_policy[ids].astype(np.float64))
    assert np.all(np.diff(scores) <= 0)


def test_pad_ties_prefer_lower_ids_and_short_vocab():
    z = np.array([1.0, 3.0, 3.0, -INF, 3.0, 2.0], dtype=np.float32)
    r = np.zeros(6, dtype=np.float32)
    ids, _ = K.pad_scores(z, r, 1.0, 2)
    assert ids.tolist() == [1, 2]
    ids, _ = K.pad_scores(z, r, 1.0, 10)  # more candidates than finite tokens
    assert ids.tolist() == [1, 2, 4, 5, 0]
    ids_out = np.zeros(8, dtype=np.int64)
    scores_out = np.zeros(8)
    assert K.pad_scores_into(z, r, 1.0, ids_out, scores_out) == 5
    assert ids_out[5:].tolist() == [-1, -1, -1]
    assert np.all(scores_out[5:] == -INF)


def test_pad_rejects_bad_candidates():
    z = np.zeros(4, dtype=np.float32)
    with pytest.raises(ValueError):
        K.pad_scores(z, z, 1.0, 0)


# ============================================================================================
# Samplers
# ============================================================================================


def test_greedy_is_argmax_with_ties_and_masks():
    rng = np.random.default_rng(0)
    for _ in range(20):
        s = np.round(rng.standard_normal(5000) * 2.0)
        s[rng.random(5000) < 0.2] = -INF
        s[rng.integers(0, 5000, 3)] = np.nan
        assert K.greedy(s) == ref_greedy(s)
    assert K.greedy(np.array([-INF, -INF])) == -1
    assert K.greedy(np.array([np.nan, -INF, -5.0])) == 2
    assert K.greedy(np.array([1.0, 2.0, 2.0])) == 1


def test_sample_temperature_zero_and_top_k_one_are_greedy():
    rng = np.random.default_rng(1)
    s = np.round(rng.standard_normal(3000) * 2.0)
    s[rng.random(3000) < 0.1] = -INF
    g = ref_greedy(s)
    for u in u_grid(50):
        assert K.sample(s, 0.0, 0, 1.0, 0.0, u) == g
        assert K.sample(s, 0.0, 40, 0.9, 0.1, u) == g
        assert K.sample(s, 1.5, 1, 1.0, 0.0, u) == g
        assert K.sample(s, 0.7, 1, 0.5, 0.3, u) == g


SAMPLER_SETTINGS = [
    # temperature, top_k, top_p, min_p
    (1.0, 0, 1.0, 0.0),
    (0.7, 0, 1.0, 0.0),
    (1.3, 10, 1.0, 0.0),
    (0.8, 0, 0.9, 0.0),
    (1.0, 40, 0.95, 0.0),
    (1.2, 20, 0.8, 0.05),
    (1.0, 0, 1.0, 0.1),
    (0.5, 0, 0.95, 0.02),
    (2.0, 0, 0.3, 0.0),
    (1.0, 7, 1.0, 0.2),
]


@pytest.mark.parametrize("setting", SAMPLER_SETTINGS)
def test_sample_frequencies_match_reference(setting):
    temperature, top_k, top_p, min_p = setting
    rng = np.random.default_rng(hash(setting) % 1000)
    s = rng.standard_normal(120) * 2.0
    s[rng.random(120) < 0.1] = -INF
    s[3] = np.nan
    dist = ref_sample_distribution(s, temperature, top_k, top_p, min_p)
    n = 20000
    counts = np.zeros(len(s))
    for u in u_grid(n):
        t = K.sample(s, temperature, top_k, top_p, min_p, u)
        counts[t] += 1
    assert np.max(np.abs(counts / n - dist)) < 1e-3
    assert np.all(counts[dist == 0] == 0)


def sample_frequencies(scores, temperature, top_k, top_p, min_p, n):
    counts = np.zeros(len(scores))
    for u in u_grid(n):
        counts[K.sample(scores, temperature, top_k, top_p, min_p, u)] += 1
    return counts / n


@pytest.mark.parametrize(
    "shape",
    ["peaked", "medium", "broad", "flat", "long-tail", "min-p-binds", "big-top-k"],
)
def test_sample_top_p_paths(shape):
    # Each shape sends top-p (without top-k) through a different shell, or another path.
    rng = np.random.default_rng(len(shape))
    v = 3000
    temperature, top_k, top_p, min_p = 1.0, 0, 0.9, 0.0
    if shape == "peaked":
        s = rng.standard_normal(v) * 4.0
    elif shape == "medium":
        s = rng.standard_normal(v) * 1.5
    elif shape == "broad":
        s = rng.standard_normal(v) * 1.2
        top_p = 0.999
    elif shape == "flat":
        s = rng.standard_normal(v) * 0.3
        top_p = 0.99
    elif shape == "long-tail":  # top_p needs tokens 17 nats below the best: no shell holds it
        s = np.full(v, -17.0)
        s[:5] = [0.0, -0.5, -1.0, -1.0, -2.0]
        top_p = 0.99999999
    elif shape == "min-p-binds":
        s = rng.standard_normal(v) * 1.5
        top_p, min_p = 0.99, 0.3
    else:
        s = rng.standard_normal(v) * 1.5
        top_k, top_p, min_p = 200, 0.8, 0.01
    s[rng.integers(0, v, 30)] = -INF
    dist = ref_sample_distribution(s, temperature, top_k, top_p, min_p)
    freq = sample_frequencies(s, temperature, top_k, top_p, min_p, 10000)
    assert np.max(np.abs(freq - dist)) < 1e-3
    assert np.all(freq[dist == 0] == 0)


def test_sample_on_unnormalised_contrast_logits_matches_logprobs():
    z_pref, z_base = masked_lanes(v=4096, seed=31)
    k = K.amulet_contrast(2.0, 2.0, 10.0, 60)
    logits = np.empty(4096)
    m = K.contrast_logits_into(z_pref, z_base, k, logits)
    logprobs = np.empty(4096)
    K.contrast_logprobs_into(z_pref, z_base, k, logprobs)
    ok = ref_joint_mask(z_pref, z_base)
    assert m == np.max(logits[ok])
    assert np.all(logits[~ok] == -INF)
    np.testing.assert_allclose(logits[ok] - m, logprobs[ok] - np.max(logprobs), atol=1e-9)
    for setting in ((0.8, 0, 1.0, 0.0), (1.0, 40, 0.9, 0.05), (1.3, 0, 0.9, 0.0)):
        a = sample_frequencies(logits, *setting, 2000)
        b = sample_frequencies(logprobs, *setting, 2000)
        assert np.max(np.abs(a - b)) < 1e-3


def test_sample_walks_token_ids_in_order():
    # u near 0 gives the lowest surviving id, u near 1 the highest, whatever the filters.
    s = np.array([0.0, 5.0, -INF, 1.0, 4.0, 3.0])
    assert K.sample(s, 1.0, 0, 1.0, 0.0, 0.0) == 0
    assert K.sample(s, 1.0, 2, 1.0, 0.0, 0.0) == 1
    assert K.sample(s, 1.0, 2, 1.0, 0.0, 0.999999) == 4
    assert K.sample(s, 1.0, 0, 1.0, 0.0, 0.999999) == 5


def test_sample_all_masked_and_bad_settings():
    s = np.array([-INF, np.nan, INF])
    assert K.sample(s, 1.0, 0, 1.0, 0.0, 0.3) == -1
    assert K.sample(s, 1.0, 5, 0.9, 0.1, 0.3) == -1
    assert K.sample(s, 0.0, 0, 1.0, 0.0, 0.3) == -1
    with pytest.raises(ValueError):
        K.sample(np.zeros(3), -1.0, 0, 1.0, 0.0, 0.5)
    with pytest.raises(ValueError):
        K.sample(np.zeros(3), 1.0, -2, 1.0, 0.0, 0.5)


def test_sample_over_pad_candidates_maps_back():
    z_policy, z_reward = random_lanes(49152, seed=2)
    ids, scores = K.pad_scores(z_policy, z_reward, 1.0, 10)
    picks = {int(ids[K.sample(scores, 0.7, 0, 1.0, 0.0, u)]) for u in u_grid(200)}
    assert picks <= set(ids.tolist())
    assert int(ids[K.greedy(scores)]) == int(ids[np.argmax(scores)])


def test_repetition_penalty_matches_reference():
    rng = np.random.default_rng(3)
    s = rng.standard_normal(1000) * 3.0
    s[5] = -INF
    s[6] = 0.0
    recent = np.array([1, 5, 6, 7, 7, 7, 999, 1, 42, 3], dtype=np.int64)
    want = ref_repetition_penalty(s, recent, 1.3)
    got = s.copy()
    K.apply_repetition_penalty(got, recent, 1.3)
    np.testing.assert_array_equal(got, want)
    same = s.copy()
    K.apply_repetition_penalty(same, recent, 1.0)
    np.testing.assert_array_equal(same, s)
    with pytest.raises(ValueError):
        K.apply_repetition_penalty(s.copy(), np.array([1000], dtype=np.int64), 1.3)


def test_kl_divergence_matches_reference():
    z_pref, z_base = random_lanes(49152, seed=12, masked=0.05)
    ok = ref_joint_mask(z_pref, z_base)
    logp = ref_log_softmax(z_pref, ok)
    logq = ref_log_softmax(z_base, ok)
    assert K.kl_divergence(logp, logq) == pytest.approx(ref_kl(logp, logq), rel=1e-10)
    assert K.kl_divergence(logp, logp) == 0.0
    assert K.kl_divergence(ref_log_softmax(z_pref), ref_log_softmax(z_base)) == INF


# ============================================================================================
# Hypothesis properties (small V)
# ============================================================================================


@st.composite
def lanes(draw, n_lanes=1):
    v = draw(st.integers(2, 64))
    out = []
    for _ in range(n_lanes):
        vals = draw(st.lists(st.floats(-50, 50), min_size=v, max_size=v))
        masked = draw(st.lists(st.integers(0, 9), min_size=v, max_size=v))
        z = np.where(np.array(masked) == 0, -INF, np.array(vals, dtype=np.float64))
        out.append(z)
    # keep at least one token finite in every lane
    i = draw(st.integers(0, v - 1))
    for z in out:
        z[i] = draw(st.floats(-50, 50))
    return out


PROPS = settings(max_examples=80, deadline=None)


@PROPS
@given(lanes())
def test_prop_log_softmax_sums_to_one(zs):
    (z,) = zs
    out = K.log_softmax(z)
    assert not np.isnan(out).any()
    assert np.all(out[~np.isfinite(z)] == -INF)
    assert abs(np.exp(out).sum() - 1.0) < 1e-12


@PROPS
@given(lanes(), st.floats(-100, 100))
def test_prop_log_softmax_shift_invariant(zs, c):
    (z,) = zs
    a = K.log_softmax(z)
    b = K.log_softmax(z + c)
    ok = np.isfinite(z)
    assert np.all(b[~ok] == -INF)
    assert np.max(np.abs(a[ok] - b[ok])) < 1e-9


@PROPS
@given(lanes(2), st.floats(0.0, 4.0), st.integers(0, 60))
def test_prop_amulet_exact_equals_loop(zs, alpha, iterations):
    z_pref, z_base = zs
    exact = K.amulet_logprobs(z_pref, z_base, alpha=alpha, iterations=iterations)
    loop = K.amulet_loop_logprobs(z_pref, z_base, alpha, 2.0, 10.0, iterations)
    ok = ref_joint_mask(z_pref, z_base)
    assert np.all(exact[~ok] == -INF) and np.all(loop[~ok] == -INF)
    sel = exact > -30
    assert np.max(np.abs(exact[sel] - loop[sel])) < 1e-6


@PROPS
@given(lanes(2))
def test_prop_contrast_zero_is_pref_log_softmax(zs):
    z_pref, z_base = zs
    out = np.empty(len(z_pref))
    K.contrast_logprobs_into(z_pref, z_base, 0.0, out)
    ok = ref_joint_mask(z_pref, z_base)
    masked_pref = np.where(ok, z_pref, -INF)
    np.testing.assert_allclose(out, K.log_softmax(masked_pref), rtol=0, atol=1e-12)


@PROPS
@given(lanes(2), st.floats(0.0, 5.0), st.integers(1, 12))
def test_prop_pad_matches_reference(zs, weight, candidates):
    z_policy, z_reward = zs
    ids, scores = K.pad_scores(z_policy, z_reward, weight, candidates)
    ref_ids, ref_scores = ref_pad(z_policy, z_reward, weight, candidates)
    np.testing.assert_array_equal(ids, ref_ids)
    np.testing.assert_allclose(scores, ref_scores, rtol=1e-12, atol=1e-9)


@PROPS
@given(
    lanes(),
    st.sampled_from([0.3, 0.7, 1.0, 2.5]),
    st.sampled_from([0, 0, 2, 5, 100]),
    st.sampled_from([1.0, 0.95, 0.8, 0.5]),
    st.sampled_from([0.0, 0.0, 0.05, 0.4]),
)
def test_prop_sample_matches_reference(zs, temperature, top_k, top_p, min_p):
    (s,) = zs
    dist = ref_sample_distribution(s, temperature, top_k, top_p, min_p)
    n = 1000
    freq = sample_frequencies(s, temperature, top_k, top_p, min_p, n)
    assert np.all(freq[dist == 0] == 0)
    assert np.max(np.abs(freq - dist)) <= 2.0 / n
    assert K.sample(s, 0.0, top_k, top_p, min_p, 0.5) == ref_greedy(s)


@PROPS
@given(
    st.lists(st.integers(-5, 5), min_size=1, max_size=200),
    st.randoms(use_true_random=False),
    st.floats(0.01, 1.0),
)
def test_prop_select_mass_is_the_top_p_prefix(values, rnd, fraction):
    # integer values: many ties, broken by id
    v = np.array(values, dtype=np.float64)
    ids = np.arange(len(v), dtype=np.int64)
    e = np.array([rnd.uniform(0.0, 1.0) for _ in values])
    e[0] = 1.0
    target = fraction * e.sum()
    order = np.lexsort((ids, -v))
    cum = np.cumsum(e[order])
    last = int(np.argmax(cum >= target)) if (cum >= target).any() else len(v) - 1
    perm = rnd.sample(range(len(v)), len(v))  # the kernel must not depend on input order
    v_thr, id_thr, mass = sampling._select_mass(v[perm].copy(), ids[perm].copy(), e[perm].copy(),
                                                target)
    assert (v_thr, id_thr) == (v[order[last]], ids[order[last]])
    assert mass == pytest.approx(cum[last], rel=1e-12)


def test_bad_settings_are_rejected():
    z = np.zeros(4, dtype=np.float32)
    with pytest.raises(ValueError):
        K.amulet_loop_logprobs(z, z, 2.0, 2.0, -1.0, 60)
    with pytest.raises(ValueError):
        K.amulet_loop_logprobs(z, z, 2.0, -2.0, 10.0, 60)
    with pytest.raises(ValueError):
        K.amulet_logprobs(z, z, iterations=2.5)
    with pytest.raises(ValueError):
        K.contrast_logprobs_into(z, z, np.inf, np.empty(4))
    with pytest.raises(ValueError):
        K.sample(np.zeros(3), 1.0, 0, 1.0, 1.5, 0.5)
    with pytest.raises(ValueError):
        K.pad_scores(z, z, np.nan, 3)
    with pytest.raises(ValueError):
        K.log_softmax(np.zeros((2, 2)))

