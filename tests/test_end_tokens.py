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
from localpref.kernels.controls import pref_ends_into
from localpref.methods import Sampling

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
                steered = np_pref_ends(steered, z_pref, ends)
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
