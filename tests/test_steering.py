"""Steering controls: fluency stats, plausibility, per-token KL budget, the strength knob.

Kernels are checked against plain NumPy; the fluency stats against the lanes' own logits
replayed through llama.cpp.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from method_helpers import Gentle
from reference_helpers import np_log_softmax

from localpref import PAD, Amulet, Contrastive, Pref, Sampling
from localpref.api import Model
from localpref.errors import SettingsError
from localpref.kernels.controls import (
    contrast_kl,
    contrast_plausible_into,
    kl_budget_scale,
    plausibility_threshold,
    token_logprob,
)
from localpref.methods import METHODS, amulet_alpha_for_contrast
from localpref.request import Request

NEG_INF = -np.inf


def np_family(z_pref: np.ndarray, z_other: np.ndarray, k: float, tau: float) -> np.ndarray:
    """log softmax(z_pref + k (z_pref - z_other)) over plausible tokens, in NumPy."""
    zp, zo = np.asarray(z_pref, np.float64), np.asarray(z_other, np.float64)
    keep = np.isfinite(zp) & np.isfinite(zo)
    if tau > 0:
        keep &= zp >= zp[np.isfinite(zp)].max() + np.log(tau)
    with np.errstate(invalid="ignore"):  # -inf - -inf and NaN where not kept
        combined = np.where(keep, zp + k * (zp - zo), NEG_INF)
    return np_log_softmax(combined)


def np_kl(logp: np.ndarray, logq: np.ndarray) -> float:
    keep = np.isfinite(logp)
    return float(np.sum(np.exp(logp[keep]) * (logp[keep] - logq[keep])))


def random_lanes(seed: int, size: int = 4096) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    z_pref = (rng.standard_normal(size) * 3).astype(np.float32)
    z_base = (z_pref + rng.standard_normal(size)).astype(np.float32)
    return z_pref, z_base


# -- kernels against NumPy ------------------------------------------------------------------


@pytest.mark.parametrize("tau", [0.0, 1e-3, 0.1, 0.5])
def test_plausible_contrast_matches_numpy(tau: float) -> None:
    z_pref, z_base = random_lanes(1)
    out = np.empty(z_pref.size)
    threshold = plausibility_threshold(z_pref, tau)
    contrast_plausible_into(z_pref, z_base, 3.0, threshold, out)
    np.testing.assert_allclose(out, np_family(z_pref, z_base, 3.0, tau), atol=1e-9)


@settings(max_examples=60, deadline=None)
@given(
    values=st.lists(st.floats(-20, 20), min_size=2, max_size=64),
    shifts=st.lists(st.floats(-5, 5), min_size=64, max_size=64),
    tau=st.floats(1e-6, 0.99),
    k=st.floats(0, 50),
)
def test_plausibility_never_removes_the_preference_lanes_top_token(
    values: list[float], shifts: list[float], tau: float, k: float
) -> None:
    z_pref = np.array(values)
    z_base = z_pref + np.array(shifts[: len(values)])
    out = np.empty(z_pref.size)
    kept = contrast_plausible_into(z_pref, z_base, k, plausibility_threshold(z_pref, tau), out)
    assert kept >= 1
    assert np.isfinite(out[int(np.argmax(z_pref))])
    assert not np.isnan(out).any()


@pytest.mark.parametrize("budget", [0.01, 0.1, 0.5, 2.0])
@pytest.mark.parametrize("tau", [0.0, 0.01])
def test_kl_budget_strength_meets_its_budget(budget: float, tau: float) -> None:
    z_pref, z_base = random_lanes(2)
    k = 4.6487
    threshold = plausibility_threshold(z_pref, tau)
    scale = kl_budget_scale(z_pref, z_base, k, budget, threshold)
    reference = np_family(z_pref, z_base, 0.0, tau)
    steered_kl = np_kl(np_family(z_pref, z_base, scale * k, tau), reference)
    full_kl = np_kl(np_family(z_pref, z_base, k, tau), reference)
    assert full_kl > budget  # the budget binds in these cases
    assert steered_kl <= budget + 1e-9
    # ... and it is the largest such strength (to the search tolerance).
    assert np_kl(np_family(z_pref, z_base, min(scale + 2e-4, 1) * k, tau), reference) > budget
    assert contrast_kl(z_pref, z_base, scale * k, threshold) == pytest.approx(steered_kl,
                                                                              rel=1e-6)


def test_kl_budget_gives_the_full_strength_when_the_budget_is_large() -> None:
    z_pref, z_base = random_lanes(3)
    assert kl_budget_scale(z_pref, z_base, 4.6487, 1e6, NEG_INF) == 1.0


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 10_000), budget=st.floats(1e-3, 5.0), k=st.floats(-30, 30))
def test_kl_budget_property(seed: int, budget: float, k: float) -> None:
    z_pref, z_base = random_lanes(seed, size=64)
    scale = kl_budget_scale(z_pref, z_base, k, budget, NEG_INF)
    assert 0.0 <= scale <= 1.0
    kl = np_kl(np_family(z_pref, z_base, scale * k, 0.0), np_family(z_pref, z_base, 0.0, 0.0))
    assert kl <= budget + 1e-9


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 10_000), budget=st.floats(1e-3, 2.0), k=st.floats(0.1, 16),
       tau=st.sampled_from([0.05, 0.2]), spread=st.floats(0.5, 6.0))
def test_kl_budget_under_the_plausibility_mask_with_masked_tokens(
        seed: int, budget: float, k: float, tau: float, spread: float) -> None:
    """The calibrated settings' case: tau > 0 keeps a few tokens, and a lane may mask some
    (-inf) or give NaN; the search over the kept tokens meets the budget, is the largest such
    strength, and agrees with the KL of the NumPy family."""
    rng = np.random.default_rng(seed)
    z_pref = (rng.standard_normal(512) * spread).astype(np.float32)
    z_base = (z_pref + rng.standard_normal(512) * spread).astype(np.float32)
    z_pref[rng.integers(0, 512, 8)] = NEG_INF
    z_base[rng.integers(0, 512, 4)] = np.nan
    threshold = plausibility_threshold(z_pref, tau)
    scale = kl_budget_scale(z_pref, z_base, k, budget, threshold)
    reference = np_family(z_pref, z_base, 0.0, tau)
    assert 0.0 <= scale <= 1.0
    assert np_kl(np_family(z_pref, z_base, scale * k, tau), reference) <= budget + 1e-9
    if scale < 1.0:
        assert np_kl(np_family(z_pref, z_base, min(scale + 2e-4, 1.0) * k, tau),
                     reference) > budget
    assert contrast_kl(z_pref, z_base, k, threshold) == pytest.approx(
        np_kl(np_family(z_pref, z_base, k, tau), reference), rel=1e-9, abs=1e-12)


def test_token_logprob_matches_numpy() -> None:
    z_pref, _ = random_lanes(4)
    z_pref[7] = NEG_INF
    expected = np_log_softmax(z_pref)
    for token in (0, 11, 4000):
        assert token_logprob(z_pref, token) == pytest.approx(expected[token], abs=1e-9)


# -- the strength knob ------------------------------------------------------------------------


@pytest.mark.parametrize("contrast", [0.5, 1.0, 4.6487, 20.0])
def test_amulet_contrast_knob_equals_its_equivalent_alpha(contrast: float) -> None:
    direct = Amulet(contrast=contrast)
    alpha = direct.effective_alpha
    via_alpha = Amulet(alpha=alpha)
    assert via_alpha.effective_contrast == pytest.approx(contrast, rel=1e-9)
    z_pref, z_base = random_lanes(5)
    np.testing.assert_allclose(
        np_family(z_pref, z_base, direct.effective_contrast, 0.0),
        np_family(z_pref, z_base, via_alpha.effective_contrast, 0.0), atol=1e-7,
    )


def test_default_amulet_alpha_maps_back_to_itself() -> None:
    assert amulet_alpha_for_contrast(Amulet().effective_contrast, 2.0, 10.0, 60) == \
        pytest.approx(2.0, rel=1e-9)


def test_strength_of_each_method_is_its_one_knob() -> None:
    assert Contrastive(ratio=1.5).strength == 1.5
    assert PAD(weight=0.8).strength == 0.8
    assert Amulet().strength == pytest.approx(4.6487, abs=1e-4)
    assert Amulet().with_strength(2.0).effective_contrast == 2.0
    assert Contrastive().with_strength(0.5).ratio == 0.5


@pytest.mark.parametrize(
    "make", [lambda: Amulet(tau=1.0), lambda: Contrastive(kl_budget=0.0),
             lambda: PAD(tau=-0.1), lambda: Amulet(contrast=-1.0)],
)
def test_out_of_range_controls_are_refused(make) -> None:  # noqa: ANN001
    with pytest.raises(SettingsError):
        make()


@pytest.mark.parametrize(("make", "message"), [
    (lambda: Contrastive(ratio=1e308), "Ratio must be from 0 to 1,000,000 (got 1e+308)."),
    (lambda: Amulet(contrast=1e300),
     "The contrast must be from 0 to 1,000,000 (got 1e+300)."),
    (lambda: PAD(weight=2e6), "Weight must be from 0 to 1,000,000 (got 2000000.0)."),
    (lambda: Amulet().with_strength(1e7),
     "The contrast must be from 0 to 1,000,000 (got 10000000.0)."),
    (lambda: Amulet(alpha=1e300), "These alpha, lambda, eta and iterations give an effective "
                                  "contrast above 1,000,000 (or too large to compute); give a "
                                  "smaller alpha or eta, or fewer iterations."),
    # a contrast no alpha reaches (the alpha beside it, and the loop's, would be sought in vain)
    (lambda: Amulet(contrast=0.5, lam=1e20), "No alpha gives a contrast of 0.5 with lambda "
     "1e+20, eta 10 and 60 iteration(s) (at most 5.498e-09); give a smaller contrast, lambda, or "
     "a larger eta or more iterations."),
    (lambda: Amulet(contrast=1000, eta=1e-9, iterations=1, lam=1e-9),  # not lambda's doing
     "No alpha gives a contrast of 1000 with lambda 1e-09, eta 1e-09 and 1 iteration(s) (at most "
     "549.8); give a smaller contrast, lambda, or a larger eta or more iterations."),
])
def test_a_strength_past_a_million_is_refused(make, message) -> None:  # noqa: ANN001
    """A strength of 1e300 turned every score infinite: an empty answer that said it ended."""
    with pytest.raises(SettingsError) as refused:
        make()
    assert str(refused.value) == message


def test_the_largest_strength_still_answers(model: Model) -> None:
    for method in (Contrastive(ratio=1e6), Amulet(contrast=1e6), PAD(weight=1e6)):
        result = model.generate("Hi there", preference="concise", method=method,
                                max_tokens=4, ignore_eos=True)
        assert len(result.tokens) == 4 and result.text.strip()
        assert math.isfinite(result.stats["mean_strength"])


@pytest.mark.parametrize(("make", "message"), [
    (lambda: Amulet(tau="0.2"), "The setting tau must be a number (got '0.2')."),
    (lambda: PAD(weight=None), "The setting weight must be a number (got None)."),
    (lambda: Contrastive(kl_budget="1"), "The setting kl_budget must be a number (got '1')."),
    (lambda: Sampling(temperature=True), "The setting temperature must be a number (got True)."),
    (lambda: Sampling(top_k=2.5), "The setting top_k must be a whole number (got 2.5)."),
    (lambda: Request.make("Hi", preference=123),
     "The preference must be a text, a list of texts or texts with weights (got int)."),
    (lambda: Request.make(b"Hi"), "The prompt must be a text or a list of messages, each a "
                                  "{role, content} mapping (got bytes)."),
    (lambda: Request.make(["Hi"]), "Each message must be a {role, content} mapping (got str)."),
    (lambda: Request.make("Hi", stop=["a", 3]),
     "Stop strings must be a text or a list of texts (got ['a', 3])."),
])
def test_a_setting_of_the_wrong_type_is_one_sentence(make, message) -> None:  # noqa: ANN001
    with pytest.raises(SettingsError) as refused:
        make()
    assert str(refused.value) == message


def test_a_top_k_past_llama_cpps_int_is_refused_and_the_largest_samples(model: Model) -> None:
    """A top-k of 1e20 was taken, and the first sampled token crashed (int too big)."""
    for top_k in (10**20, 2**31):
        with pytest.raises(SettingsError) as refused:
            Sampling(top_k=top_k, temperature=1)
        assert str(refused.value) == (f"Top-k must be from 1 to 2,147,483,647, or 0 for off "
                                      f"(got {top_k}).")
        assert refused.value.param == "top_k"
    answer = model.generate("Hi", method="base", temperature=1.0, top_k=2**31 - 1, seed=3,
                            max_tokens=3, ignore_eos=True)
    assert len(answer.tokens) == 3


def test_a_temperature_past_100_is_refused_and_100_samples_with_the_end_rule(
        model: Model) -> None:
    """Temperature 1e308 was taken, and the end rule's scores scaled back by it overflowed:
    'No token could be chosen at this step.'"""
    for value in (1e308, 100.5):
        with pytest.raises(SettingsError) as refused:
            Sampling(temperature=value)
        assert str(refused.value) == f"Temperature must be 100 or less (got {value:g})."
        assert refused.value.param == "temperature"
    answer = model.generate("Hi", preference="concise", method="amulet", temperature=100,
                            seed=3, max_tokens=4, ignore_eos=True)
    assert len(answer.tokens) == 4


def test_a_numpy_nan_or_inf_is_said_to_need_a_finite_number() -> None:
    """A float32 NaN skipped the finite-number sentence: 'must be 0 or more (got nan)'."""
    for value in (np.float32("nan"), np.float64("inf"), np.float16("-inf")):
        with pytest.raises(SettingsError) as refused:
            Sampling(temperature=value)
        assert str(refused.value) == f"Temperature must be a finite number (got {value})."


def test_numbers_of_any_kind_and_an_unset_budget_are_settings() -> None:
    assert Amulet(tau=np.float32(0.25), kl_budget=None).tau == np.float32(0.25)
    assert Sampling(top_k=np.int64(3), temperature=1).top_k == 3
    assert Request.make("Hi", stop="x").stop == ("x",)


def test_controls_default_to_the_papers_behaviour() -> None:
    for method in (Amulet(), Contrastive(), PAD()):
        assert method.tau == 0.0 and method.kl_budget is None


# -- on the bundled model ---------------------------------------------------------------------

PROMPT = "How do I keep basil alive?"


def test_fluency_stats_equal_a_recomputation_from_the_lanes(model: Model) -> None:
    result = model.generate(PROMPT, preference="concise", method=Amulet(alpha=1.0),
                            max_tokens=10, ignore_eos=True)
    prompts = model.prompts
    messages = [{"role": "user", "content": PROMPT}]
    from localpref.presets import preference_text

    targets = [prompts.lane_tokens(messages, preference_text("concise")),
               prompts.lane_tokens(messages, None)]
    context = model.context
    lanes = [context.open_lane() for _ in targets]
    totals = [0.0, 0.0]
    try:
        context.prefill(lanes, targets)
        for token in result.tokens:
            for i in range(2):
                totals[i] += np_log_softmax(context.logits(i))[token]
            context.step(lanes, [token, token])
    finally:
        for lane in lanes:
            context.close_lane(lane)
    n = len(result.tokens)
    assert result.stats["fluency_pref"] == pytest.approx(totals[0] / n, abs=1e-3)
    assert result.stats["fluency_base"] == pytest.approx(totals[1] / n, abs=1e-3)


def test_score_lanes_gives_pref_a_base_fluency_without_changing_its_answer(model: Model) -> None:
    plain = model.generate(PROMPT, preference="concise", method=Pref(), max_tokens=16)
    scored = model.generate(PROMPT, preference="concise", method=Pref(), max_tokens=16,
                            score_lanes=True)
    assert plain.tokens == scored.tokens
    assert plain.stats["fluency_base"] is None
    assert scored.stats["fluency_base"] < 0 and scored.stats["fluency_pref"] < 0


def test_a_tiny_kl_budget_keeps_amulet_close_to_pref(model: Model) -> None:
    pref = model.generate(PROMPT, preference="concise", method=Pref(), max_tokens=16)
    budgeted = model.generate(PROMPT, preference="concise", method=Amulet(kl_budget=1e-4),
                              max_tokens=16)
    assert budgeted.tokens == pref.tokens
    assert budgeted.stats["mean_strength"] < Amulet().effective_contrast


def test_zero_contrast_amulet_equals_pref(model: Model) -> None:
    pref = model.generate(PROMPT, preference="verbose", method=Pref(), max_tokens=16)
    zero = model.generate(PROMPT, preference="verbose", method=Amulet(contrast=0.0),
                          max_tokens=16)
    assert zero.tokens == pref.tokens


def test_plausibility_and_budget_keep_fluency_above_the_papers_defaults(model: Model) -> None:
    wild = model.generate(PROMPT, preference="concise", method=Amulet(), max_tokens=24,
                          score_lanes=True)
    tamed = model.generate(PROMPT, preference="concise",
                           method=Amulet(tau=0.05, kl_budget=0.5), max_tokens=24,
                           score_lanes=True)
    assert tamed.stats["fluency_base"] > wild.stats["fluency_base"]


def test_a_new_two_lane_method_decodes_with_the_shared_controls(
    model: Model, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A method class the library does not have, registered in ``METHODS``, runs with the
    controls its base owns: at the same k it is Contrastive, token for token."""
    monkeypatch.setitem(METHODS, "gentle", Gentle)
    prompt = "How do I keep basil alive?"
    for controls in ({}, {"tau": 0.2, "kl_budget": 0.5, "end_tokens": "pref"}):
        gentle = model.generate(prompt, preference="concise", method=Gentle(push=20.0, **controls),
                                max_tokens=8, seed=0)
        same = model.generate(prompt, preference="concise",
                              method=Contrastive(ratio=2.0, **controls), max_tokens=8, seed=0)
        assert gentle.tokens == same.tokens and gentle.stats["method"] == "gentle"
