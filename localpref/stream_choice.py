"""Which free KV streams the lanes opened together take (``Context.open_lanes``).

Each lane of a context has a KV stream of its own (``engine.Context``), and a stream given
back may keep the cells of the request that used it (``close_lane(keep=True)``): a later lane
whose prompt starts the same way evaluates only the rest. Two costs pull on the choice:

- **Runs of streams.** llama.cpp 0.3.36 computes a decode as one graph per run of consecutive
  streams in it (``split_equal``), and its attention reads the streams from the lowest to the
  highest the decode holds. Lanes spread over the streams cost every step of every lane
  (docs/performance.md, "A graph per run of streams").
- **Cells kept.** A lane on a stream that kept its prompt's first tokens skips their prefill,
  about 3 ms a row of the bundled model on 2 cores; one that lands on a stream whose cells do
  not match throws them away.

The rule, in this order: the fewest runs of streams in use; then the most prompt tokens found
in kept cells; then the fewest kept cells thrown away; then the lowest streams. When nothing
runs in the context, the lanes take a block of consecutive streams, chosen and assigned
together (two steered requests after two others leave one kind of prompt in every other
stream; taking them one by one, each lane's partner would land on the wrong kind). When lanes
run, each new lane in turn takes a stream that adds no run where one does. Either way a lane
goes to a stream further off when its kept cells hold ``far_reuse`` more tokens of the prompt
than the chosen one (a conversation sent whole again), at the price of a run.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence


def common_prefix(first: Sequence[int], second: Sequence[int]) -> int:
    """Length of the longest common prefix of two token lists."""
    limit = min(len(first), len(second))
    for i in range(limit):  # faster than NumPy on lists, which it would first copy
        if first[i] != second[i]:
            return i
    return limit


def runs(streams: set[int]) -> int:
    """How many runs of consecutive numbers ``streams`` holds ({0, 1, 3}: two)."""
    return sum(1 for stream in streams if stream - 1 not in streams)


def choose_streams(
    max_lanes: int,
    free: Sequence[int],
    kept: Mapping[int, Sequence[int]],
    prefixes: Sequence[Sequence[int] | None],
    *,
    far_reuse: int,
) -> list[int]:
    """A free stream for each of ``prefixes`` (the prompts of lanes opened together; None for a
    lane that starts empty), by the module's rule. ``kept``: the tokens each free stream kept.
    """
    if len(prefixes) > len(free):
        raise ValueError("More lanes than free streams.")
    shared = {(lane, stream): common_prefix(kept[stream], prefix)
              if prefix and stream in kept else 0
              for lane, prefix in enumerate(prefixes) for stream in free}
    lost = {stream: len(kept.get(stream, ())) for stream in free}
    in_use = set(range(max_lanes)) - set(free)
    if in_use:
        chosen = _one_by_one(in_use, free, shared, lost, len(prefixes))
    else:
        chosen = _block(free, shared, lost, len(prefixes))
    return _far_reuse(chosen, free, shared, far_reuse)


def _one_by_one(in_use: set[int], free: Sequence[int], shared: Mapping[tuple[int, int], int],
                lost: Mapping[int, int], count: int) -> list[int]:
    """Beside lanes that run: each lane in turn takes the stream that adds the fewest runs,
    then shares the most, then throws away the fewest kept cells, then the lowest."""
    taken = set(in_use)
    chosen = []
    for lane in range(count):
        stream = min((s for s in free if s not in taken),
                     key=lambda s: (runs(taken | {s}), -shared[lane, s],
                                    lost[s] - shared[lane, s], s))
        taken.add(stream)
        chosen.append(stream)
    return chosen


def _block(free: Sequence[int], shared: Mapping[tuple[int, int], int],
           lost: Mapping[int, int], count: int) -> list[int]:
    """Nothing runs: the block of ``count`` consecutive streams, and the lanes' places in it,
    that share the most, then throw away the fewest kept cells, then start lowest."""
    best: tuple[tuple[int, int, int], list[int]] | None = None
    for start in range(len(free) - count + 1):  # every stream is free
        block = list(free[start:start + count])
        assigned = _assign(block, shared, count)
        found = sum(shared[lane, s] for lane, s in enumerate(assigned))
        thrown = sum(lost[s] for s in block) - found
        score = (-found, thrown, start)
        if best is None or score < best[0]:
            best = (score, assigned)
    assert best is not None  # count <= len(free)
    return best[1]


def _assign(block: list[int], shared: Mapping[tuple[int, int], int], count: int) -> list[int]:
    """Each lane's stream in ``block``: the pairs that share most first (ties: the earlier
    lane, the lower stream), so that lanes in the order given fill it from its start."""
    pairs = sorted(((lane, s) for lane in range(count) for s in block),
                   key=lambda pair: (-shared[pair], pair[0], pair[1]))
    assigned: dict[int, int] = {}
    used: set[int] = set()
    for lane, stream in pairs:
        if lane not in assigned and stream not in used:
            assigned[lane] = stream
            used.add(stream)
    return [assigned[lane] for lane in range(count)]


def _far_reuse(chosen: list[int], free: Sequence[int], shared: Mapping[tuple[int, int], int],
               far_reuse: int) -> list[int]:
    """A lane moves to an unchosen stream whose kept cells hold ``far_reuse`` more tokens of
    its prompt than the chosen one's."""
    chosen = list(chosen)
    for lane, stream in enumerate(chosen):
        others = [s for s in free if s not in chosen]
        if not others:
            break
        best = max(others, key=lambda s: (shared[lane, s], -s))
        if shared[lane, best] - shared[lane, stream] >= far_reuse:
            chosen[lane] = best
    return chosen
