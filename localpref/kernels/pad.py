"""PAD's token scores over the policy's top-k candidates (Chen et al., ICLR 2025)."""

from __future__ import annotations

import math

import numpy as np
from numba import njit
from numpy.typing import ArrayLike

from localpref.kernels.arguments import AllMaskedError, as_int, as_pair
from localpref.kernels.primitives import NEG_INF, fmax, is_finite
from localpref.kernels.topk import topk_into


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
    if not is_finite(weight):
        raise ValueError("the PAD weight must be finite")
    n = topk_into(z_policy, z_reward, ids_out, scores_out)
    for j in range(n, ids_out.shape[0]):
        ids_out[j] = -1
        scores_out[j] = NEG_INF
    if n > 0:
        _pad_rescore(z_reward, weight, ids_out, scores_out, n)
    return n


@njit(cache=True)
def _pad_rescore(z_reward, weight, ids, scores, n):
    """scores[j] (policy logits of the n candidates, best first) += weight * r, with
    r = log_softmax_K(z_reward) - log_softmax_K(z_policy) over the candidates: PAD's
    token-level personalised reward (Chen et al., ICLR 2025; docs/design.md, "The methods"),
    with a prompted reward lane and both normalised over the K candidates."""
    m_pol = scores[0]
    m_rew = NEG_INF
    for j in range(n):
        m_rew = fmax(m_rew, np.float64(z_reward[ids[j]]))
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


def pad_scores(z_policy: ArrayLike, z_reward: ArrayLike, weight: float,
               candidates: int) -> tuple[np.ndarray, np.ndarray]:
    """PAD scores (see ``pad_scores_into``) as new arrays: (candidate_ids int64[K], scores[K]).

    K = min(candidates, tokens finite in both lanes); candidates in policy order. Raises
    AllMaskedError if every token is masked, ValueError if candidates < 1.
    """
    zp, zr = as_pair(z_policy, z_reward)
    k = as_int(candidates, "candidates")
    if k < 1:
        raise ValueError("candidates must be at least 1")
    ids = np.empty(min(k, max(zp.shape[0], 1)), dtype=np.int64)
    scores = np.empty(ids.shape[0], dtype=np.float64)
    n = pad_scores_into(zp, zr, float(weight), ids, scores)
    if n == 0:
        raise AllMaskedError()
    return ids[:n], scores[:n]
