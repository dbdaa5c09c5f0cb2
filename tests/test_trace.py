"""The per-token trace and the steering statistics (issue 12): the fused kernel against NumPy,
and every trace field against the lanes' logits replayed through llama.cpp."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from reference_helpers import np_log_softmax, replay_lanes

from localpref import PAD, Amulet, Base, Contrastive, Pref
from localpref.api import Model
from localpref.kernels.controls import (
    lane_normaliser,
    lane_statistics,
    logprob_from_normaliser,
    step_statistics,
)
from localpref.methods import Sampling

NEG_INF = -np.inf
PROMPT = "How do I keep basil alive?"
FIELDS = {"token", "piece", "logprob", "logprob_base", "logprob_pref", "top_base", "top_pref",
          "changed"}


def np_family(z_pref: np.ndarray, z_other: np.ndarray, k: float, threshold: float) -> np.ndarray:
    zp, zo = np.asarray(z_pref, np.float64), np.asarray(z_other, np.float64)
    keep = np.isfinite(zp) & np.isfinite(zo) & (zp >= threshold)
    with np.errstate(invalid="ignore"):
        return np.where(keep, zp + k * (zp - zo), NEG_INF)


def np_argmax(z: np.ndarray) -> int:
    z = np.where(np.isfinite(z), z, NEG_INF)
    return int(np.argmax(z)) if np.isfinite(z).any() else -1


# -- the fused kernel ------------------------------------------------------------------------


def check_step_statistics(z_pref: np.ndarray, z_other: np.ndarray, k: float, threshold: float,
                          token: int) -> None:
    lp, lo, ls, tp, to, ts = step_statistics(z_pref, z_other, k, threshold, token)
    family = np_family(z_pref, z_other, k, threshold)
    expected = (np_log_softmax(z_pref)[token], np_log_softmax(z_other)[token],
                np_log_softmax(family)[token])
    for got, want in zip((lp, lo, ls), expected, strict=True):
        if np.isfinite(want):
            assert got == pytest.approx(want, abs=1e-9)
        else:
            assert got == NEG_INF
    assert (tp, to, ts) == (np_argmax(z_pref), np_argmax(z_other), np_argmax(family))


@pytest.mark.parametrize("size", [1, 7, 512, 513, 4096, 49152])
@pytest.mark.parametrize("k", [0.0, 0.5, 4.6487])
def test_step_statistics_match_numpy(size: int, k: float) -> None:
    rng = np.random.default_rng(size)
    z_pref = (rng.standard_normal(size) * 4).astype(np.float32)
    z_other = (z_pref + rng.standard_normal(size)).astype(np.float32)
    if size > 10:
        z_pref[3] = NEG_INF
        z_other[5] = np.nan
    threshold = float(np.nanmax(z_pref[np.isfinite(z_pref)])) + np.log(0.2)
    for token in {0, size // 2, size - 1}:
        check_step_statistics(z_pref, z_other, k, NEG_INF, token)
        check_step_statistics(z_pref, z_other, k, threshold, token)


@settings(max_examples=80, deadline=None)
@given(
    values=st.lists(st.floats(-30, 30) | st.just(float("-inf")), min_size=1, max_size=1200),
    seed=st.integers(0, 1000),
    k=st.floats(-2, 20),
    tau=st.sampled_from([0.0, 0.05, 0.5]),
)
def test_step_statistics_property(values: list[float], seed: int, k: float, tau: float) -> None:
    z_pref = np.array(values)
    rng = np.random.default_rng(seed)
    z_other = z_pref + rng.standard_normal(z_pref.size) * 3
    finite = z_pref[np.isfinite(z_pref)]
    threshold = finite.max() + np.log(tau) if tau > 0 and finite.size else NEG_INF
    token = int(rng.integers(z_pref.size))
    check_step_statistics(z_pref, z_other, k, threshold, token)


def test_lane_statistics_match_numpy() -> None:
    rng = np.random.default_rng(9)
    z = (rng.standard_normal(3000) * 5).astype(np.float32)
    z[10] = NEG_INF
    for token in (0, 10, 2999):
        lp, top = lane_statistics(z, token)
        want = np_log_softmax(z)[token]
        assert (lp == NEG_INF) if not np.isfinite(want) else lp == pytest.approx(want, abs=1e-9)
        assert top == np_argmax(z)


def test_lane_normaliser_matches_numpy_and_gives_lane_statistics_bit_for_bit() -> None:
    rng = np.random.default_rng(11)
    z = (rng.standard_normal(5000) * 5).astype(np.float32)
    z[[7, 4999]] = [NEG_INF, np.nan]
    top, m, s = lane_normaliser(z)
    finite = z[np.isfinite(z)].astype(np.float64)
    assert (top, m) == (np_argmax(z), finite.max())
    assert s == pytest.approx(np.exp(finite - finite.max()).sum(), rel=1e-12)
    for token in (0, 7, 4999, top):
        assert logprob_from_normaliser(z, token, m, s) == lane_statistics(z, token)[0]
    masked = np.full(9, NEG_INF, dtype=np.float32)
    top, m, _ = lane_normaliser(masked)
    assert (top, m) == (-1, NEG_INF)
    assert lane_statistics(masked, 3) == (NEG_INF, -1)


@pytest.mark.parametrize("method", [Base(), Pref()])
def test_a_one_lane_greedy_pick_leaves_its_normaliser_for_the_trace(method) -> None:  # noqa: ANN001
    z = (np.random.default_rng(5).standard_normal(3000) * 4).astype(np.float32)
    z[np.argmax(z) + 1] = z.max()  # a tie: the lowest id wins, as kernels.greedy
    greedy = method.selector(z.size, Sampling(), seed=0)
    assert greedy.pick([z]) == np_argmax(z)
    assert greedy.normaliser is not None and greedy.normaliser[0] is z
    assert greedy.drawn is not None and greedy.drawn[0] is z
    # a penalty or a temperature draws from other scores: no normaliser to share
    for sampling in (Sampling(repeat_penalty=1.3), Sampling(temperature=0.7)):
        other = method.selector(z.size, sampling, seed=0)
        other.recent.append(int(np_argmax(z)))
        other.pick([z])
        assert other.normaliser is None


# -- on the bundled model --------------------------------------------------------------------


@pytest.mark.parametrize("method", [Base(), Pref(), Amulet(), PAD(), Contrastive()])
def test_trace_pieces_join_to_the_text_and_have_every_field(model: Model, method) -> None:  # noqa: ANN001
    result = model.generate(PROMPT, preference="creative", method=method, max_tokens=40,
                            trace=True)
    assert len(result.trace) == len(result.tokens) == result.stats["n_tokens"]
    assert "".join(entry["piece"] for entry in result.trace) == result.text
    assert [entry["token"] for entry in result.trace] == result.tokens
    for entry in result.trace:
        assert set(entry) == FIELDS
        assert entry["logprob"] <= 0.0


def test_trace_pieces_join_to_the_text_cut_by_a_stop_string(model: Model) -> None:
    result = model.generate("Count from 1 to 20, separated by commas.", preference="verbose",
                            method=Amulet(contrast=0.5), max_tokens=80, stop=["7"], trace=True)
    assert result.stats["stop_reason"] == "stop"
    assert "".join(entry["piece"] for entry in result.trace) == result.text
    assert len(result.trace) == len(result.tokens)


def test_trace_pieces_join_for_characters_split_over_tokens(model: Model) -> None:
    result = model.generate("Reply with three emoji about the sea, nothing else.",
                            method="base", max_tokens=24, trace=True, ignore_eos=True)
    assert "".join(entry["piece"] for entry in result.trace) == result.text


def test_trace_pieces_join_to_a_cancelled_answer(model: Model) -> None:
    generation = model.stream("Write a long story about a dragon.", preference="verbose",
                              method="amulet", max_tokens=100, ignore_eos=True, trace=True)
    for _ in range(4):
        next(generation)
    generation.close()
    result = generation.result
    assert "".join(entry["piece"] for entry in result.trace) == result.text


def test_no_trace_unless_asked_and_stats_whenever_two_lanes_are_decoded(model: Model) -> None:
    steered = model.generate(PROMPT, preference="concise", method="amulet", max_tokens=8)
    assert steered.trace is None
    assert isinstance(steered.stats["changed_tokens"], int)
    assert isinstance(steered.stats["mean_shift"], float)
    alone = model.generate(PROMPT, preference="concise", method="pref", max_tokens=8)
    assert alone.stats["changed_tokens"] is None and alone.stats["mean_shift"] is None
    scored = model.generate(PROMPT, preference="concise", method="pref", max_tokens=8,
                            score_lanes=True)
    assert scored.stats["changed_tokens"] == 0
    assert scored.stats["mean_shift"] == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize("method", [Base(), Pref()])
def test_one_lane_methods_never_change_a_token(model: Model, method) -> None:  # noqa: ANN001
    result = model.generate(PROMPT, preference="uplifting", method=method, max_tokens=40,
                            score_lanes=True, trace=True, temperature=0.9, seed=3)
    assert not any(entry["changed"] for entry in result.trace)
    assert result.stats["changed_tokens"] == 0
    # Both lanes are decoded for scoring, so the other lane's figures are there too.
    assert all(entry["logprob_base"] is not None and entry["logprob_pref"] is not None
               for entry in result.trace)
    # Base's tokens are often not the preference lane's greedy pick: still not "changed".
    if isinstance(method, Base):
        assert any(entry["token"] != entry["top_pref"] for entry in result.trace)


@pytest.mark.parametrize("method", [Amulet(contrast=0.0), Contrastive(ratio=0.0),
                                    PAD(weight=0.0)])
def test_strength_zero_changes_no_token(model: Model, method) -> None:  # noqa: ANN001
    result = model.generate(PROMPT, preference="verbose", method=method, max_tokens=40,
                            trace=True)
    assert not any(entry["changed"] for entry in result.trace)
    assert result.stats["changed_tokens"] == 0
    assert result.stats["mean_shift"] == pytest.approx(0.0, abs=1e-9) or isinstance(method, PAD)


@pytest.mark.parametrize("method", [Amulet(), Amulet(contrast=1.0, tau=0.2)])
def test_greedy_amulet_trace_matches_the_lanes_logits(model: Model, method: Amulet) -> None:
    result = model.generate(PROMPT, preference="concise", method=method, max_tokens=48,
                            trace=True)
    steps = replay_lanes(model, PROMPT, result.tokens, preference="concise")
    k = method.effective_contrast
    changed = []
    for entry, (z_pref, z_base) in zip(result.trace, steps, strict=True):
        threshold = z_pref.max() + np.log(method.tau) if method.tau > 0 else NEG_INF
        family = np_family(z_pref, z_base, k, threshold)
        token = entry["token"]
        assert token == np_argmax(family)
        assert entry["top_pref"] == np_argmax(z_pref)
        assert entry["top_base"] == np_argmax(z_base)
        assert entry["changed"] == (np_argmax(family) != np_argmax(z_pref))
        assert entry["logprob_pref"] == pytest.approx(np_log_softmax(z_pref)[token], abs=2e-3)
        assert entry["logprob_base"] == pytest.approx(np_log_softmax(z_base)[token], abs=2e-3)
        assert entry["logprob"] == pytest.approx(np_log_softmax(family)[token], abs=2e-3)
        changed.append(entry["changed"])
    assert any(changed) and not all(changed)
    assert result.stats["changed_tokens"] == sum(changed)
    shifts = [entry["logprob"] - entry["logprob_pref"] for entry in result.trace]
    assert result.stats["mean_shift"] == pytest.approx(np.mean(shifts), abs=1e-9)


def test_pad_trace_log_probability_is_over_its_candidates(model: Model) -> None:
    method = PAD()
    result = model.generate(PROMPT, preference="concise", method=method, max_tokens=24,
                            trace=True)
    steps = replay_lanes(model, PROMPT, result.tokens, preference="concise")
    for entry, (z_pref, z_base) in zip(result.trace, steps, strict=True):
        ids = np.argsort(-z_pref, kind="stable")[: method.candidates]
        lsk_pref, lsk_base = np_log_softmax(z_pref[ids]), np_log_softmax(z_base[ids])
        scores = z_pref[ids] + method.weight * (lsk_pref - lsk_base)
        position = int(np.flatnonzero(ids == entry["token"])[0])
        assert entry["token"] == ids[np_argmax(scores)]
        assert entry["logprob"] == pytest.approx(np_log_softmax(scores)[position], abs=2e-3)
        assert entry["changed"] == (entry["token"] != np_argmax(z_pref))


def test_changed_is_judged_after_the_repetition_penalty(model: Model) -> None:
    penalty = 1.5
    method = Amulet(contrast=1.0)
    prompt = "Repeat the word 'basil' ten times."
    result = model.generate(prompt, preference="concise", method=method, max_tokens=30,
                            repeat_penalty=penalty, ignore_eos=True, trace=True)
    steps = replay_lanes(model, prompt, result.tokens, preference="concise")

    def penalised(z: np.ndarray, recent: list[int]) -> np.ndarray:
        z = z.copy()
        for token in set(recent):
            z[token] = z[token] / penalty if z[token] > 0 else z[token] * penalty
        return z

    for i, (entry, (z_pref, z_base)) in enumerate(zip(result.trace, steps, strict=True)):
        recent = result.tokens[max(0, i - 64):i]
        family = penalised(np_family(z_pref, z_base, method.effective_contrast, NEG_INF), recent)
        top_pref = np_argmax(penalised(z_pref, recent))
        assert entry["token"] == np_argmax(family)
        assert entry["top_pref"] == top_pref
        assert entry["changed"] == (np_argmax(family) != top_pref)
        assert entry["logprob"] == pytest.approx(np_log_softmax(family)[entry["token"]],
                                                 abs=2e-3)
        assert entry["logprob_pref"] == pytest.approx(np_log_softmax(z_pref)[entry["token"]],
                                                      abs=2e-3)


def test_sampled_trace_records_the_steered_greedy_pick(model: Model) -> None:
    method = Amulet(contrast=1.0)
    result = model.generate(PROMPT, preference="creative", method=method, max_tokens=32,
                            temperature=1.2, seed=5, trace=True)
    steps = replay_lanes(model, PROMPT, result.tokens, preference="creative")
    for entry, (z_pref, z_base) in zip(result.trace, steps, strict=True):
        family = np_family(z_pref, z_base, method.effective_contrast, NEG_INF)
        assert entry["changed"] == (np_argmax(family) != np_argmax(z_pref))
        # log-probability before temperature: the steered distribution itself
        assert entry["logprob"] == pytest.approx(np_log_softmax(family)[entry["token"]],
                                                 abs=2e-3)


def test_compare_traces_each_method(model: Model) -> None:
    results = model.compare(PROMPT, [Pref(), Amulet()], preference="concise", max_tokens=16,
                            trace=True).run()
    alone = model.generate(PROMPT, preference="concise", method=Amulet(), max_tokens=16,
                           trace=True)
    assert results[1].trace == alone.trace
    assert not any(entry["changed"] for entry in results[0].trace)


def test_chat_traces_a_turn(model: Model) -> None:
    chat = model.chat(preference="concise", method=Amulet(contrast=1.0), max_tokens=12)
    first = chat.send("Name a herb.", trace=True)
    assert "".join(entry["piece"] for entry in first.trace) == first.text
    second = chat.send("And a spice?")
    assert second.trace is None
    chat.close()
