"""The streams lanes opened together take (``stream_choice.choose_streams``): checked against
a brute force over every block and every order of the lanes in it, and on the cases that
motivate the rule."""

from __future__ import annotations

import itertools

from hypothesis import given, settings
from hypothesis import strategies as st

from localpref.stream_choice import choose_streams, common_prefix, runs

NEVER = 10**9  # far_reuse that never moves a lane


def test_common_prefix_and_runs() -> None:
    assert common_prefix([1, 2, 3], [1, 2, 4, 5]) == 2
    assert common_prefix([1, 2], [1, 2, 3]) == 2
    assert common_prefix([], [1]) == 0
    assert common_prefix([7], [8]) == 0
    assert runs(set()) == 0
    assert runs({0, 1, 3}) == 2
    assert runs({2, 3, 4}) == 1


def test_without_kept_cells_lanes_take_the_lowest_streams_in_order() -> None:
    assert choose_streams(8, list(range(8)), {}, [[1, 2], None, [3]], far_reuse=64) == [0, 1, 2]
    # beside lanes on 2 and 3, a lane fills nothing below: it goes next to them
    assert choose_streams(6, [0, 1, 4, 5], {}, [[1]], far_reuse=64) == [1]
    # a gap between running lanes is filled first
    assert choose_streams(6, [0, 2, 5], {}, [[1], [2]], far_reuse=64) == [2, 0]


def test_two_kinds_of_prompt_are_kept_side_by_side() -> None:
    """Two steered requests (a preference lane and a plain lane each) after two plain
    requests that left their prompt in streams 0 and 1: the plain lanes go back there and the
    preference lanes side by side after them, so the next two plain requests find theirs in
    two adjacent streams."""
    plain, pref = [9, 1, 2, 3], [9, 1, 5, 6]
    kept = {0: plain + [40], 1: plain + [41]}
    lanes = [pref + [7], plain + [7], pref + [8], plain + [8]]  # request by request
    chosen = choose_streams(4, [0, 1, 2, 3], kept, lanes, far_reuse=NEVER)
    assert sorted(chosen) == [0, 1, 2, 3]
    assert {chosen[1], chosen[3]} == {0, 1}  # the plain lanes where plain prompts were
    assert {chosen[0], chosen[2]} == {2, 3}
    kept = {stream: lanes[i] for i, stream in enumerate(chosen)}
    after = choose_streams(4, [0, 1, 2, 3], kept, [plain + [10], plain + [11]], far_reuse=NEVER)
    assert sorted(after) == [0, 1]


def test_a_conversation_sent_again_goes_to_its_stream_despite_a_run() -> None:
    story = list(range(100, 200))
    kept = {5: story}
    assert choose_streams(8, [1, 2, 3, 4, 5, 6, 7], kept, [story + [1]], far_reuse=64) == [5]
    assert choose_streams(8, [1, 2, 3, 4, 5, 6, 7], kept, [story[:50]], far_reuse=64) == [1]


def test_a_tie_keeps_what_other_streams_kept() -> None:
    """Nothing shares the new prompt: the lane takes a stream that kept nothing, not the one
    holding a conversation."""
    assert choose_streams(3, [0, 1, 2], {0: list(range(300))}, [[5]], far_reuse=64) == [1]


prompts = st.lists(st.integers(0, 2), min_size=0, max_size=5)


@settings(max_examples=300, deadline=None)
@given(
    max_lanes=st.integers(1, 6),
    data=st.data(),
)
def test_with_nothing_running_the_choice_is_the_best_block_and_order(max_lanes, data) -> None:
    """Prompts over a three-token alphabet share prefixes often. The lanes take one block of
    consecutive streams, sharing as many kept tokens as any block and any order of the lanes
    in it can (the brute force), and the streams are distinct."""
    count = data.draw(st.integers(1, max_lanes))
    kept = {s: data.draw(prompts) for s in range(max_lanes) if data.draw(st.booleans())}
    lanes = [data.draw(prompts) for _ in range(count)]
    chosen = choose_streams(max_lanes, list(range(max_lanes)), kept, lanes, far_reuse=NEVER)

    def found(streams) -> int:
        return sum(common_prefix(kept[s], lane) if lane and s in kept else 0
                   for lane, s in zip(lanes, streams, strict=True))

    assert len(set(chosen)) == count and runs(set(chosen)) == 1
    best = max(found(order)
               for start in range(max_lanes - count + 1)
               for order in itertools.permutations(range(start, start + count)))
    assert found(chosen) == best


@settings(max_examples=300, deadline=None)
@given(max_lanes=st.integers(2, 8), data=st.data())
def test_beside_running_lanes_no_lane_adds_a_run_it_could_avoid(max_lanes, data) -> None:
    in_use = set(data.draw(st.lists(st.integers(0, max_lanes - 1), min_size=1,
                                    max_size=max_lanes - 1, unique=True)))
    free = [s for s in range(max_lanes) if s not in in_use]
    count = data.draw(st.integers(1, len(free)))
    kept = {s: data.draw(prompts) for s in free if data.draw(st.booleans())}
    lanes = [data.draw(prompts) for _ in range(count)]
    chosen = choose_streams(max_lanes, free, kept, lanes, far_reuse=NEVER)
    assert len(set(chosen)) == count and set(chosen) <= set(free)
    taken = set(in_use)
    for stream in chosen:  # each in turn: no other free stream gave fewer runs
        fewest = min(runs(taken | {s}) for s in free if s not in taken)
        assert runs(taken | {stream}) == fewest
        taken.add(stream)
