"""The calibration's choice rule and sweep table, on hand-made rows (no model)."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from localpref.calibration.choice import (
    EFFECT_LIMIT,
    PREFERENCE_SCORES,
    Setting,
    choose,
    choose_per_preference,
    standardized,
    summary_rows,
    verdict,
)
from localpref.calibration.sweep import LENGTHENING_ROOM, Plan, lengthens

PREFERENCES = {"creative": ("mtld", 1), "verbose": ("content_words", 1), "concise": ("words", -1),
               "uplifting": ("vader", 1)}


def rows_for(strength: float, moves: dict[str, float], fluency: dict[str, float] | float = 0.0,
             *, tau: float = 0.2, opposite: bool = False,
             effect: float | dict[str, float] = 1.0) -> list[dict]:
    """One setting's rows: ``moves`` the raw delta per preference (its sign with the
    preference's direction is the verdict: past Pref, or the wrong way; 0 neither),
    ``fluency`` the fluency delta under the preference lane."""
    found = []
    for preference, delta in moves.items():
        metric, direction = PREFERENCES[preference]
        drop = fluency if isinstance(fluency, (int, float)) else fluency.get(preference, 0.0)
        size = effect if isinstance(effect, (int, float)) else effect[preference]
        found.append({
            "method": "amulet", "strength": strength, "tau": tau, "opposite": opposite,
            "preference": preference, "metric": metric, "direction": direction, "n": 4,
            "delta": delta, "effect": size if direction * delta > 0 else -size,
            "fluency_pref_delta": drop, "fluency_base_delta": drop - 0.3,
            "moved": direction * delta > 0, "wrong_way": direction * delta < 0,
        })
    return found


PREF_ROWS = [{"method": "pref", "preference": p, "metric": m, "direction": d, "n": 4,
              "score": 1.0, "fluency_pref": -1.0, "fluency_base": -1.5}
             for p, (m, d) in PREFERENCES.items()]


def test_the_setting_moving_the_most_preferences_wins() -> None:
    table = PREF_ROWS + rows_for(0.5, {"creative": 2.0, "verbose": 5.0, "concise": 3.0,
                                       "uplifting": 0.1}) \
        + rows_for(1.0, {"creative": 2.0, "verbose": 5.0, "concise": -3.0, "uplifting": 0.1},
                   effect=5.0)
    choice = choose(table)
    # concise's words went up at k = 0.5 (wrong way), down at k = 1: k = 1 moves all four
    assert choice.setting == Setting(1.0, 0.2, False) and choice.moved == 4
    assert "moves 4 of 4 preferences" in choice.reason


def test_the_fluency_budget_rules_a_setting_out_under_the_preference_lane() -> None:
    strong = rows_for(2.0, {"creative": 3.0, "verbose": 9.0, "concise": -9.0, "uplifting": 0.3},
                      fluency={"creative": -0.2, "verbose": -0.6})
    mild = rows_for(0.5, {"creative": 1.0, "verbose": 2.0, "concise": 1.0, "uplifting": 0.1},
                    fluency=-0.4)
    choice = choose(PREF_ROWS + strong + mild)
    assert choice.setting == Setting(0.5, 0.2, False) and choice.moved == 3
    # A wider budget lets the strong one in; the base lane's figure is never guarded.
    assert choose(strong + mild, budget=0.7).setting == Setting(2.0, 0.2, False)
    # mild sits 0.7 nats below Pref under the base lane and is chosen all the same
    assert all(row["fluency_base_delta"] < -0.5 for row in mild)


def test_no_setting_qualifies_keeps_the_default_and_says_why() -> None:
    wrong_way = rows_for(1.0, {"creative": -1.0, "verbose": -2.0, "concise": 2.0,
                               "uplifting": -0.1})
    choice = choose(PREF_ROWS + wrong_way)
    assert choice.setting is None and "no setting moved more preferences" in choice.reason
    too_far = rows_for(4.0, {"creative": 5.0, "verbose": 5.0, "concise": -5.0,
                             "uplifting": 0.5}, fluency=-1.2)
    choice = choose(PREF_ROWS + too_far)
    assert choice.setting is None and "stayed within 0.5 nats" in choice.reason
    unknown = rows_for(1.0, {"creative": 1.0}, fluency=math.nan)
    assert choose(unknown).setting is None  # no fluency figure: not within the budget
    assert choose(PREF_ROWS).setting is None


def test_ties_go_to_the_larger_effect_then_the_smaller_strength() -> None:
    moves = {"creative": 1.0, "verbose": 1.0, "concise": -1.0, "uplifting": -0.1}
    weak = rows_for(0.5, moves, effect=0.5)
    strong = rows_for(1.0, moves, effect=2.0)
    assert choose(weak + strong).setting == Setting(1.0, 0.2, False)
    same_a = rows_for(2.0, moves, effect=1.0)
    same_b = rows_for(0.25, moves, effect=1.0)
    same_c = rows_for(0.25, moves, effect=1.0, opposite=True)
    assert choose(same_a + same_c + same_b).setting == Setting(0.25, 0.2, False)
    assert choose(same_a + same_c).setting == Setting(0.25, 0.2, True)


def test_the_opposite_base_lane_can_win() -> None:
    neutral = rows_for(1.0, {"creative": 1.0, "verbose": 1.0, "concise": 1.0, "uplifting": 0.1})
    opposite = rows_for(1.0, {"creative": 1.0, "verbose": 1.0, "concise": -1.0,
                              "uplifting": 0.1}, opposite=True)
    choice = choose(neutral + opposite)
    assert choice.setting == Setting(1.0, 0.2, True)
    assert choice.setting.settings() == {"contrast": 1.0, "tau": 0.2, "opposite": True,
                                         "kl_budget": None}


def test_a_guarded_setting_is_its_own_row_and_wins_a_tie() -> None:
    moves = {"creative": 1.0, "verbose": 1.0, "concise": -1.0, "uplifting": 0.1}
    unguarded = rows_for(2.0, moves)
    guarded = [{**row, "kl_budget": 0.5} for row in rows_for(2.0, moves)]
    choice = choose(unguarded + guarded)
    assert choice.setting == Setting(2.0, 0.2, False, 0.5)
    assert choice.setting.settings()["kl_budget"] == 0.5
    assert "kl=0.5" in choice.reason
    own = choose_per_preference(guarded + unguarded)
    assert {name: mine.setting for name, mine in own.items()} == {
        name: Setting(2.0, 0.2, False, 0.5) for name in moves}
    # a larger effect still wins over the guard
    stronger = rows_for(2.0, moves, effect=3.0)
    assert choose(guarded + stronger).setting == Setting(2.0, 0.2, False)


def test_summary_rows_pair_each_prompt_with_pref() -> None:
    raw = []
    for prompt, (pref_words, steered_words) in enumerate([(40, 30), (50, 20), (60, 61)]):
        common = {"prompt": prompt, "preference": "concise", "n_tokens": 10}
        raw.append({**common, "method": "pref", "score": pref_words, "fluency_pref": -1.0,
                    "fluency_base": -1.2})
        raw.append({**common, "method": "amulet", "strength": 1.0, "tau": 0.2,
                    "opposite": False, "score": steered_words, "fluency_pref": -1.3,
                    "fluency_base": -2.0})
    raw.append({"prompt": 3, "preference": "concise", "method": "amulet", "strength": 1.0,
                "tau": 0.2, "opposite": False, "score": 5.0, "fluency_pref": -1.0,
                "fluency_base": -1.0, "n_tokens": 3})  # no Pref answer: not paired
    rows = summary_rows(raw)
    pref, steered = rows
    assert pref["method"] == "pref" and pref["score"] == pytest.approx(50.0)
    differences = [-10.0, -30.0, 1.0]
    assert steered["n"] == 3
    assert steered["delta"] == pytest.approx(sum(differences) / 3)
    assert steered["moved"] is True  # fewer words: concise's direction
    assert steered["effect"] == pytest.approx(standardized(differences, -1))
    assert steered["effect"] > 0
    assert steered["fluency_pref_delta"] == pytest.approx(-0.3)
    assert steered["fluency_base_delta"] == pytest.approx(-0.8)


def test_standardized_effect() -> None:
    assert standardized([], 1) == 0.0 and standardized([0.0, 0.0], 1) == 0.0
    assert standardized([-33.0], 1) == 0.0  # one prompt: no sd, no effect (not -10)
    assert standardized([2.0, 2.0], 1) == EFFECT_LIMIT
    assert standardized([2.0, 2.0], -1) == -EFFECT_LIMIT
    assert standardized([1.0, 3.0], 1) == pytest.approx(2.0 / math.sqrt(2.0))


def test_a_setting_that_sends_preferences_the_wrong_way_pays_for_them() -> None:
    # k = 2 moves 3 past Pref and sends uplifting and a fifth preference the wrong way
    # (net 1); k = 0.5 moves 2 and none the wrong way (net 2): k = 0.5 wins
    mixed = rows_for(2.0, {"creative": 5.0, "verbose": 5.0, "concise": -5.0,
                           "uplifting": -0.3}, effect=9.0)
    mixed.append({**mixed[3], "preference": "humorous"})
    clean = rows_for(0.5, {"creative": 1.0, "verbose": 0.0, "concise": -1.0, "uplifting": 0.0})
    choice = choose(PREF_ROWS + mixed + clean)
    assert choice.setting == Setting(0.5, 0.2, False) and choice.moved == 2
    assert "none the wrong way" in choice.reason
    # as many the wrong way as past Pref: no qualifying setting
    even = rows_for(1.0, {"creative": 1.0, "verbose": -1.0, "concise": 0.0, "uplifting": 0.0})
    assert choose(PREF_ROWS + even).setting is None


def raw_pairs(preference: str, pairs: list[tuple[float, float]], *,
              capped: set[int] = frozenset()) -> list[dict]:
    """Pref's and one setting's raw results for ``preference``: ``pairs`` (Pref's score, the
    setting's) per prompt; the prompts in ``capped`` stopped at the token cap in both."""
    raw = []
    for prompt, (pref_score, steered_score) in enumerate(pairs):
        common = {"prompt": prompt, "preference": preference, "n_tokens": 48,
                  "fluency_pref": -1.0, "fluency_base": -1.0,
                  "stop_reason": "length" if prompt in capped else "eos"}
        raw.append({**common, "method": "pref", "score": pref_score})
        raw.append({**common, "method": "amulet", "strength": 1.0, "tau": 0.2,
                    "opposite": False, "score": steered_score})
    return raw


def test_a_mean_within_a_standard_error_of_zero_is_no_move() -> None:
    # +5 words on one prompt, -4 on the other: the mean (+0.5) is in verbose's direction, but
    # within one standard error (4.5): neither past Pref nor the wrong way
    (_, row) = summary_rows(raw_pairs("verbose", [(40, 45), (50, 46)]))
    assert row["delta"] == pytest.approx(0.5)
    assert row["moved"] is False and row["wrong_way"] is False
    (_, row) = summary_rows(raw_pairs("verbose", [(40, 48), (50, 57)]))
    assert row["moved"] is True and row["wrong_way"] is False
    (_, row) = summary_rows(raw_pairs("creative", [(40, 30), (50, 41)]))
    assert row["moved"] is False and row["wrong_way"] is True
    (_, row) = summary_rows(raw_pairs("creative", [(40, 60)]))  # one prompt: no verdict
    assert row["n"] == 1 and row["moved"] is False and row["wrong_way"] is False


def test_length_scores_leave_out_prompts_where_both_answers_hit_the_cap() -> None:
    # verbose at a 48-token cap: +1 word on every prompt where both were cut says nothing
    raw = raw_pairs("verbose", [(40, 41), (42, 43), (30, 38), (31, 36)], capped={0, 1})
    (_, row) = summary_rows(raw)
    assert row["n"] == 2 and row["n_capped"] == 2
    assert row["delta"] == pytest.approx(6.5) and row["moved"] is True
    all_capped = raw_pairs("verbose", [(40, 41), (42, 43)], capped={0, 1})
    (_, row) = summary_rows(all_capped)
    assert row["n"] == 0 and row["moved"] is False
    assert choose(summary_rows(all_capped)).setting is None
    # MTLD and VADER are not lengths: capped prompts stay in
    (_, row) = summary_rows(raw_pairs("creative", [(40, 45), (42, 49)], capped={0, 1}))
    assert row["n"] == 2 and row["n_capped"] == 0 and row["moved"] is True


def test_verdict_is_one_standard_error_either_side() -> None:
    assert verdict([], 1) == 0 and verdict([3.0], 1) == 0
    assert verdict([2.0, 2.0], 1) == 1 and verdict([2.0, 2.0], -1) == -1
    assert verdict([0.0, 0.0], 1) == 0
    # mean 1, sd sqrt(2), se 1: exactly one standard error is not more than one
    assert verdict([0.0, 2.0], 1) == 0
    assert verdict([1.9, 2.1], 1) == 1 and verdict([1.9, 2.1], -1) == -1
    assert verdict([-0.1, 2.0, 2.2], 1) == 1  # two moved, one a little the other way


@settings(max_examples=300, deadline=None)
@given(st.floats(1e-6, 1e6) | st.floats(-1e6, -1e-6), st.integers(2, 40), st.data())
def test_one_moved_prompt_is_never_past_pref(value: float, n: int,
                                             data: st.DataObject) -> None:
    """With one difference of n non-zero, the mean equals the standard error exactly: which
    side of it the rounding falls on must not decide (at least two prompts must move)."""
    differences = [0.0] * n
    differences[data.draw(st.integers(0, n - 1))] = value
    assert verdict(differences, 1) == verdict(differences, -1) == 0


def test_each_preference_gets_the_setting_that_moves_it_most() -> None:
    table = PREF_ROWS \
        + rows_for(1.0, {"creative": -2.0, "verbose": 0.0, "concise": -3.0, "uplifting": 0.1},
                   effect={"creative": 1.0, "verbose": 1.0, "concise": 2.0, "uplifting": 0.5},
                   tau=0.05, opposite=True) \
        + rows_for(4.0, {"creative": -2.0, "verbose": 0.0, "concise": -1.0, "uplifting": 0.3},
                   fluency={"concise": -0.7}, tau=0.05,
                   effect={"creative": 1.0, "verbose": 1.0, "concise": 3.0, "uplifting": 0.9})
    overall = choose(table).setting
    assert overall == Setting(1.0, 0.05, True)
    own = choose_per_preference(table)
    # uplifting: k = 4 moves it most; concise: k = 4 moves it more but past the budget
    assert own["uplifting"].setting == Setting(4.0, 0.05, False)
    assert own["uplifting"].effect == 0.9 and "moves it past Pref" in own["uplifting"].reason
    assert own["concise"].setting == Setting(1.0, 0.05, True)
    # creative (sent the wrong way) and verbose (never moved): the uncalibrated default, not
    # the overall choice
    for name in ("creative", "verbose"):
        assert own[name].setting is None and "uncalibrated default" in own[name].reason


def test_per_preference_ties_go_to_the_smaller_strength_then_neutral() -> None:
    table = PREF_ROWS + rows_for(2.0, {"uplifting": 0.2}, opposite=True) \
        + rows_for(2.0, {"uplifting": 0.2}) + rows_for(1.0, {"uplifting": 0.2}, opposite=True)
    own = choose_per_preference(table)
    assert own["uplifting"].setting == Setting(1.0, 0.2, True)
    own = choose_per_preference(PREF_ROWS + rows_for(2.0, {"uplifting": 0.2}, opposite=True)
                                + rows_for(2.0, {"uplifting": 0.2}))
    assert own["uplifting"].setting == Setting(2.0, 0.2, False)


def test_the_grids_reach_the_low_tau_the_third_pass_chose() -> None:
    quick, full = Plan.make(quick=True), Plan.make()
    assert quick.taus == (0.05,) and quick.strengths == (1.0, 2.0, 4.0)
    assert len(quick.units()) == 4 * 4 * (1 + 3 * 2)  # no slower than the old quick grid
    assert full.taus == (0.05, 0.2) and full.strengths[-1] == 8.0
    assert Plan.make(quick=True, taus=[0.2]).taus == (0.2,)


def test_verbose_is_measured_with_room_to_grow() -> None:
    """At the cap every answer is as long as the cap allows: a lengthening preference gets
    LENGTHENING_ROOM times the cap (or --long-tokens), the others the cap."""
    plan = Plan.make(limit=2, max_tokens=32)
    caps = {unit.preference: unit.max_tokens for unit in plan.units()}
    assert caps == {"creative": 32, "concise": 32, "uplifting": 32, "verbose": 32 * 4}
    assert plan.describe()["long_max_tokens"] == 128 == LENGTHENING_ROOM * 32
    assert Plan.make(quick=True).tokens_for("verbose") == 4 * 48
    given = Plan.make(limit=2, max_tokens=32, long_max_tokens=100)
    assert given.tokens_for("verbose") == 100 and given.tokens_for("concise") == 32
    # a verbose row measured at another cap is not reused (the key has the cap)
    assert {u.key for u in plan.units() if u.preference == "verbose"}.isdisjoint(
        u.key for u in given.units())
    assert [name for name in PREFERENCE_SCORES if lengthens(name)] == ["verbose"]
