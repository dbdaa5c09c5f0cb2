"""The end-token option (issue 13): ``end_tokens="pref"`` gives end-of-generation tokens the
preference lane's probability; off (the papers') nothing changes."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from reference_helpers import np_log_softmax, replay_lanes

from localpref import PAD, Amulet, Contrastive, Pref
from localpref.api import Model
from localpref.errors import SettingsError
from localpref.kernels.controls import (
    contrast_pref_ends_greedy,
    pref_ends_greedy,
    pref_ends_into,
    pref_ends_logprob,
)
from localpref.kernels.primitives import CHUNK
from localpref.methods import Sampling, recommended_method

NEG_INF = -np.inf
PROMPT = "How do I keep basil alive?"


def np_pref_ends(scores: np.ndarray, z_pref: np.ndarray, ends: list[int]) -> np.ndarray:
    """p(e) = p_pref(e) on unmasked end tokens, (1 - p_pref(E)) p(i | not E) elsewhere."""
    scores = np.asarray(scores, np.float64)
    eligible = [e for e in ends if np.isfinite(scores[e])]
    going_on = scores.copy()
    going_on[ends] = NEG_INF
    lp_pref = np_log_softmax(z_pref)
    rest = np.ones(len(lp_pref), dtype=bool)
    rest[eligible] = False
    finite = rest & np.isfinite(lp_pref)
    top = lp_pref[finite].max() if finite.any() else 0.0
    with np.errstate(divide="ignore"):  # log(1 - p_pref(E)), summed over the others
        log_rest = top + np.log(np.exp(lp_pref[finite] - top).sum())
    out = np_log_softmax(going_on) + log_rest
    out[eligible] = lp_pref[eligible]
    return out


def np_pref_ends_greedy(scores: np.ndarray, z_pref: np.ndarray, ends: list[int]) -> int:
    """End iff the preference lane's top kept token is an end token; else the steered argmax
    over the tokens that go on (the rule's zero-temperature limit)."""
    scores = np.asarray(scores, np.float64)
    kept = np.isfinite(scores)
    top = int(np.argmax(np.where(kept, np.asarray(z_pref, np.float64), NEG_INF)))
    if top in ends:
        return top
    going_on = np.where(kept, scores, NEG_INF)
    going_on[ends] = NEG_INF
    return int(np.argmax(going_on))


def np_family(z_pref: np.ndarray, z_base: np.ndarray, k: float) -> np.ndarray:
    zp, zb = np.asarray(z_pref, np.float64), np.asarray(z_base, np.float64)
    return zp + k * (zp - zb)


# -- the kernel against NumPy ------------------------------------------------------------------


@pytest.mark.parametrize("ends", [[2], [0, 2, 4], []])
def test_pref_ends_matches_numpy(ends: list[int]) -> None:
    rng = np.random.default_rng(len(ends))
    z_pref = rng.standard_normal(5000) * 3
    z_base = z_pref + rng.standard_normal(5000)
    z_pref[4] = NEG_INF if 4 in ends else z_pref[4]  # a masked end token stays masked
    steered = np.where(np.isfinite(z_pref), np_family(z_pref, z_base, 2.0), NEG_INF)
    out = steered.copy()
    pref_ends_into(out, z_pref, np.array(ends, dtype=np.int64))
    expected = np_pref_ends(steered, z_pref, ends)
    np.testing.assert_allclose(out, expected, atol=1e-9)
    finite = np.isfinite(out)
    assert np.exp(out[finite]).sum() == pytest.approx(1.0, abs=1e-9)
    for e in ends:
        if np.isfinite(z_pref[e]):
            assert out[e] == pytest.approx(np_log_softmax(z_pref)[e], abs=1e-12)
        else:
            assert out[e] == NEG_INF


@settings(max_examples=80, deadline=None)
@given(
    values=st.lists(st.floats(-40, 40), min_size=2, max_size=200),
    seed=st.integers(0, 10_000),
    k=st.floats(0, 30),
)
def test_pref_ends_property(values: list[float], seed: int, k: float) -> None:
    z_pref = np.array(values)
    rng = np.random.default_rng(seed)
    z_base = z_pref + rng.standard_normal(z_pref.size) * 4
    ends = sorted(set(rng.integers(0, z_pref.size, size=2).tolist()))
    out = np_family(z_pref, z_base, k)
    reference = out.copy()
    pref_ends_into(out, z_pref, np.array(ends, dtype=np.int64))
    assert not np.isnan(out).any()
    np.testing.assert_allclose(out, np_pref_ends(reference, z_pref, ends), atol=1e-7)


@settings(max_examples=80, deadline=None)
@given(
    values=st.lists(st.floats(-40, 40), min_size=2, max_size=200),
    seed=st.integers(0, 10_000),
    k=st.floats(0, 30),
    n_ends=st.integers(0, 3),
)
def test_pref_ends_greedy_matches_numpy(values: list[float], seed: int, k: float,
                                        n_ends: int) -> None:
    z_pref = np.array(values)
    rng = np.random.default_rng(seed)
    z_base = z_pref + rng.standard_normal(z_pref.size) * 4
    ends = sorted(set(rng.integers(0, z_pref.size, size=n_ends).tolist()))
    scores = np_family(z_pref, z_base, k)
    scores[rng.random(z_pref.size) < 0.2] = NEG_INF  # some tokens masked (tau, PAD)
    if not np.isfinite(scores).any():
        scores[0] = 0.0
    pref_ends_into(scores, z_pref, np.array(ends, dtype=np.int64))
    pick = pref_ends_greedy(scores, z_pref, np.array(ends, dtype=np.int64))
    assert pick == np_pref_ends_greedy(scores, z_pref, ends)
    assert np.isfinite(scores[pick])


def np_masked_family(z_pref: np.ndarray, z_base: np.ndarray, k: float,
                     tau: float) -> np.ndarray:
    """The family over the tokens the plausibility mask keeps (-inf elsewhere)."""
    zp = np.asarray(z_pref, np.float64)
    keep = np.isfinite(zp) & np.isfinite(z_base)
    if tau > 0:
        keep &= zp >= zp[np.isfinite(zp)].max() + np.log(tau)
    return np.where(keep, np_family(z_pref, z_base, k), NEG_INF)


@settings(max_examples=80, deadline=None)
@given(
    values=st.lists(st.floats(-40, 40), min_size=2, max_size=200),
    seed=st.integers(0, 10_000),
    k=st.floats(0, 30),
    tau=st.sampled_from([0.0, 0.01, 0.2]),
    n_ends=st.integers(0, 3),
)
def test_the_greedy_fast_path_and_its_trace_logprob_match_numpy(
        values: list[float], seed: int, k: float, tau: float, n_ends: int) -> None:
    z_pref = np.array(values)
    rng = np.random.default_rng(seed)
    z_base = z_pref + rng.standard_normal(z_pref.size) * 4
    ends = sorted(set(rng.integers(0, z_pref.size, size=n_ends).tolist()))
    threshold = np.max(z_pref) + np.log(tau) if tau > 0 else NEG_INF
    steered = np_masked_family(z_pref, z_base, k, tau)
    ids = np.array(ends, dtype=np.int64)
    pick = contrast_pref_ends_greedy(z_pref, z_base, k, threshold, ids)
    assert pick == np_pref_ends_greedy(steered, z_pref, ends)
    # The trace's log-probability of any kept token, from the two lanes' own log-probabilities.
    rule = np_pref_ends(steered, z_pref, ends)
    lp_pref = np_log_softmax(z_pref)
    lp_steered = np_log_softmax(steered)
    for token in {pick, *ends, int(rng.integers(0, z_pref.size))}:
        if not np.isfinite(steered[token]):
            continue
        got = pref_ends_logprob(z_pref, z_base, k, threshold, ids, token, lp_pref[token],
                                lp_steered[token])
        if np.exp(rule[token]) > 1e-12:
            assert got == pytest.approx(rule[token], abs=1e-6)


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("tau", [0.05, 0.2, 0.9])
def test_the_greedy_fast_path_skips_chunks_with_nothing_plausible_exactly(seed: int,
                                                                           tau: float) -> None:
    """Over several chunks of the kernels (CHUNK tokens), the plausible tokens in one or two
    of them, the rest masked or non-finite: the same pick as NumPy's rule, end tokens in
    skipped and in kept chunks alike."""
    rng = np.random.default_rng(seed)
    size = 9 * CHUNK + 17
    z_pref = rng.standard_normal(size) * 3
    boosted = rng.choice(size // CHUNK, size=1 + seed % 2, replace=False) * CHUNK
    for start in boosted:
        z_pref[start + rng.integers(0, CHUNK, size=5)] += 20
    z_base = z_pref + rng.standard_normal(size) * 2
    z_pref[rng.integers(0, size, size=3)] = [np.nan, np.inf, NEG_INF]
    z_base[rng.integers(0, size, size=2)] = [np.nan, np.inf]
    top = int(np.nanargmax(np.where(np.isfinite(z_pref), z_pref, NEG_INF)))
    ends = sorted({top if seed % 3 == 0 else top + 1, int(rng.integers(0, size)), 3})
    finite = z_pref[np.isfinite(z_pref)]
    threshold = finite.max() + np.log(tau)
    steered = np_masked_family(np.where(np.isfinite(z_pref), z_pref, NEG_INF), z_base, 1.5,
                               tau)
    pick = contrast_pref_ends_greedy(z_pref, z_base, 1.5, threshold,
                                     np.array(ends, dtype=np.int64))
    assert pick == np_pref_ends_greedy(steered, z_pref, ends)


@pytest.mark.parametrize("seed", range(6))
def test_the_greedy_pick_is_the_rules_zero_temperature_limit(seed: int) -> None:
    """argmax of the rule applied to z / T, for a small T, is the greedy kernel's pick."""
    rng = np.random.default_rng(seed)
    z_pref = rng.standard_normal(400) * 2
    z_base = z_pref + rng.standard_normal(400)
    ends = [3, 50, 201]
    if seed % 2:  # half the cases: the preference lane's top token is an end token
        z_pref[50] = z_pref.max() + 0.05
    steered = np_family(z_pref, z_base, 1.5)
    temperature = 1e-3
    tempered = np_pref_ends(steered / temperature, z_pref / temperature, ends)
    pick = pref_ends_greedy(steered, z_pref, np.array(ends, dtype=np.int64))
    assert pick == int(np.argmax(tempered))
    assert (pick == 50) == bool(seed % 2)


# -- a hand-built pair of lanes ---------------------------------------------------------------

END = 2
#: The contrast favours the end token (d = +3 there), but the preference lane gives it 10 %.
Z_PREF = np.array([2.0, 1.0, 0.5, -1.0, -3.0], dtype=np.float32)
Z_BASE = np.array([2.0, 1.2, -2.5, -1.0, -3.0], dtype=np.float32)


def pick(method, z_pref: np.ndarray, z_base: np.ndarray, **sampling) -> int:  # noqa: ANN001
    selector = method.selector(z_pref.size, Sampling(**sampling), 0, end_ids=[END])
    return selector.pick([z_pref, z_base])


@pytest.mark.parametrize("make", [
    lambda **o: Amulet(contrast=2.0, **o),
    lambda **o: Amulet(contrast=2.0, exact=False, **o),
    lambda **o: Amulet(contrast=2.0, tau=0.01, **o),
    lambda **o: Amulet(contrast=2.0, kl_budget=50.0, **o),
    lambda **o: Contrastive(ratio=2.0, **o),
    lambda **o: PAD(weight=2.0, candidates=5, **o),
])
def test_contrast_ends_where_the_preference_lane_goes_on_and_the_option_does_not(make) -> None:  # noqa: ANN001
    # Steered as any token (the papers'): the contrast makes the end token the argmax.
    assert int(np.argmax(np_family(Z_PREF, Z_BASE, 2.0))) == END
    assert pick(make(), Z_PREF, Z_BASE) == END
    # With the option the end token keeps the preference lane's 10 %: the answer goes on.
    assert pick(make(end_tokens="pref"), Z_PREF, Z_BASE) == 0


def test_the_option_still_ends_where_the_preference_lane_wants_to_end() -> None:
    z_pref = Z_PREF.copy()
    z_pref[END] = 3.5  # the preference lane's greedy pick is now the end token (p = 0.73)
    assert np_log_softmax(z_pref)[END] > np.log(0.5)
    for method in (Amulet(contrast=2.0, end_tokens="pref"), PAD(weight=2.0, end_tokens="pref"),
                   Amulet(contrast=8.0, tau=0.2, end_tokens="pref")):
        assert pick(method, z_pref, Z_BASE) == END


#: The preference lane ranks the end token first, at p = 0.43; the contrast sends nearly all
#: the rest (0.57) to token 0, so at temperature 1 token 0 outweighs the end token.
Z_PREF_ENDING = np.array([1.6, 1.5, 2.0, -1.0, -3.0], dtype=np.float32)
Z_BASE_ENDING = np.array([0.5, 2.5, 2.0, -1.0, -3.0], dtype=np.float32)


def test_greedy_ends_where_the_preference_lanes_top_token_is_an_end_token() -> None:
    p_end = np.exp(np_log_softmax(Z_PREF_ENDING)[END])
    assert 0.4 < p_end < 0.5 and int(np.argmax(Z_PREF_ENDING)) == END
    rule = np_pref_ends(np_family(Z_PREF_ENDING, Z_BASE_ENDING, 2.0), Z_PREF_ENDING, [END])
    assert int(np.argmax(rule)) == 0  # the temperature-1 rule's argmax would go on
    for method in (Amulet(contrast=2.0, end_tokens="pref"),
                   Amulet(contrast=2.0, exact=False, end_tokens="pref"),
                   Contrastive(ratio=2.0, end_tokens="pref"),
                   PAD(weight=2.0, candidates=5, end_tokens="pref")):
        assert pick(method, Z_PREF_ENDING, Z_BASE_ENDING) == END
    # Where the preference lane's top token goes on, greedy never ends, whatever the contrast.
    assert pick(Amulet(contrast=2.0, end_tokens="pref"), Z_PREF, Z_BASE) == 0


@pytest.mark.parametrize("temperature", [0.5, 1.0, 2.0])
def test_sampling_ends_as_often_as_the_preference_lane_at_the_same_temperature(
        temperature: float) -> None:
    method = Amulet(contrast=2.0, end_tokens="pref")
    draws = 4000
    picks = np.array([
        method.selector(5, Sampling(temperature=temperature), seed, end_ids=[END])
        .pick([Z_PREF_ENDING, Z_BASE_ENDING]) for seed in range(draws)])
    expected = np.exp(np_pref_ends(
        np_family(Z_PREF_ENDING, Z_BASE_ENDING, 2.0) / temperature,
        Z_PREF_ENDING / temperature, [END]))
    counts = np.bincount(picks, minlength=5) / draws
    np.testing.assert_allclose(counts, expected, atol=4 * np.sqrt(0.25 / draws))
    p_pref_end = np.exp(np_log_softmax(Z_PREF_ENDING / temperature)[END])
    assert expected[END] == pytest.approx(p_pref_end, abs=1e-9)


def test_the_option_gives_the_end_token_exactly_the_preference_lanes_probability() -> None:
    method = Amulet(contrast=2.0, end_tokens="pref")
    selector = method.selector(Z_PREF.size, Sampling(temperature=1.0), 0, end_ids=[END])
    selector.pick([Z_PREF, Z_BASE])
    scores, _ = selector.drawn
    expected = np_pref_ends(np_family(Z_PREF, Z_BASE, 2.0), Z_PREF, [END])
    np.testing.assert_allclose(scores, expected, atol=1e-9)
    assert np.exp(scores[END]) == pytest.approx(np.exp(np_log_softmax(Z_PREF)[END]), abs=1e-9)


def test_end_tokens_setting_is_checked_and_off_by_default() -> None:
    for method in (Amulet(), Contrastive(), PAD()):
        assert method.end_tokens == "contrast"
    with pytest.raises(SettingsError, match="end_tokens"):
        Amulet(end_tokens="never")


# -- on the bundled model -----------------------------------------------------------------------


@pytest.mark.parametrize("preference", ["verbose", "concise"])
def test_option_off_is_the_papers_amulet_and_on_follows_the_rule(model: Model,
                                                                 preference: str) -> None:
    ends = sorted(model.vocabulary.end_of_generation_ids)
    for option in ("contrast", "pref"):
        method = Amulet(end_tokens=option)
        result = model.generate(PROMPT, preference=preference, method=method, max_tokens=40)
        steps = replay_lanes(model, PROMPT, result.tokens, preference=preference,
                             after_last=True)
        chosen = [*result.tokens, END] if result.stats["stop_reason"] == "eos" else result.tokens
        for token, (z_pref, z_base) in zip(chosen, steps, strict=False):
            steered = np_family(z_pref, z_base, method.effective_contrast)
            if option == "pref":
                assert token == np_pref_ends_greedy(steered, z_pref, ends)
            else:
                assert token == int(np.argmax(steered))


def test_option_keeps_the_answer_where_the_end_token_was_never_in_question(model: Model) -> None:
    """Where the contrast never made an end token the pick, the option writes the same text."""
    plain = model.generate(PROMPT, preference="verbose", method=Amulet(contrast=0.5),
                           max_tokens=24, ignore_eos=True)
    with_option = model.generate(PROMPT, preference="verbose",
                                 method=Amulet(contrast=0.5, end_tokens="pref"), max_tokens=24,
                                 ignore_eos=True)
    pref = model.generate(PROMPT, preference="verbose", method=Pref(), max_tokens=24)
    assert pref.stats["stop_reason"] == "length"
    assert with_option.tokens == plain.tokens


@pytest.mark.parametrize("preference", ["concise", "verbose"])
def test_the_recommended_greedy_answer_and_trace_follow_the_rule(model: Model,
                                                                preference: str) -> None:
    """The greedy fast path on the bundled model: every token is the rule's greedy pick and
    its trace log-probability is the rule's, replayed in NumPy."""
    method = recommended_method()
    ends = sorted(model.vocabulary.end_of_generation_ids)
    result = model.generate(PROMPT, preference=preference, method=method, max_tokens=32,
                            trace=True)
    steps = replay_lanes(model, PROMPT, result.tokens, preference=preference)
    shifts = []
    for entry, (z_pref, z_base) in zip(result.trace, steps, strict=True):
        steered = np_masked_family(z_pref, z_base, method.effective_contrast, method.tau)
        assert entry["token"] == np_pref_ends_greedy(steered, z_pref, ends)
        rule = np_pref_ends(steered, z_pref, ends)
        assert entry["logprob"] == pytest.approx(rule[entry["token"]], abs=1e-5)
        shifts.append(entry["logprob"] - entry["logprob_pref"])
    assert result.stats["mean_shift"] == pytest.approx(np.mean(shifts), abs=1e-9)
