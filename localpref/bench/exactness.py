"""Are lanes decoded together bit-for-bit what they are alone? (``localpref bench --exactness``)

Each of ``max(batch_sizes)`` prompts is first decoded alone (one lane in the context):
``steps`` greedy steps, keeping every step's logits. Then the first N prompts are decoded as N
lanes in ONE decode per step (different prompts, so the lanes sit at different positions), fed
the alone run's tokens (teacher forcing), and every lane's logits are compared with its alone
run's at the same step: ``max_abs_diff`` is the largest ``|z_batched - z_alone|`` over the
vocabulary and the steps, ``greedy_disagreements`` the steps whose argmax differs, and
``first_disagreement`` the first of them (where a free-running greedy answer would start to
differ: until then both runs see the same tokens). On CPU the engine keeps lanes exact
(``Context`` parks released cells); GPU matrix kernels may depend on the batch's size.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from localpref.bench.settings import Progress

#: Lanes decoded together, compared with the same lanes alone.
EXACTNESS_BATCHES = (2, 4, 8)
#: One prompt per lane, of different lengths (the lanes sit at different positions).
EXACTNESS_PROMPTS = (
    "How do I keep basil alive?",
    "Write a haiku about the sea.",
    "Explain what a hash table is, in two sentences.",
    "List three uses of vinegar in a kitchen.",
    "Why is the sky blue? Answer for a child of seven.",
    "Translate 'good morning' into French, Spanish and German.",
    "What should I pack for a weekend of hiking in the mountains in October?",
    "Summarise the plot of Hamlet.",
)


def bench_exactness(model: Any, steps: int, progress: Progress,
                    batch_sizes: tuple[int, ...] = EXACTNESS_BATCHES) -> dict[str, Any]:
    """Compare each lane of mixed batches with the same lane decoded alone (see the module)."""
    if max(batch_sizes) > len(EXACTNESS_PROMPTS):
        raise ValueError(f"At most {len(EXACTNESS_PROMPTS)} lanes can be compared.")
    with model.exclusive() as context:
        vocabulary = model.vocabulary
        prompts = [vocabulary.tokenize(text, add_special=True)
                   for text in EXACTNESS_PROMPTS[: max(batch_sizes)]]
        steps = max(1, min(steps, context.n_ctx - max(len(p) for p in prompts) - 1))
        alone = []
        for index, prompt in enumerate(prompts):
            progress(f"exactness: lane {index + 1}/{len(prompts)} alone, {steps} steps")
            alone.append(_decode_alone(context, prompt, steps))
        batches: dict[str, Any] = {}
        for size in batch_sizes:
            progress(f"exactness: {size} lanes in one decode, {steps} steps")
            batches[str(size)] = _compare_batched(context, prompts[:size], alone[:size], steps)
    return {
        "steps": steps,
        "prompts": list(EXACTNESS_PROMPTS[: max(batch_sizes)]),
        "gpu_layers": model.n_gpu_layers,
        "batches": batches,
        "bit_exact": all(row["bit_exact"] for row in batches.values()),
        "max_abs_diff": max(row["max_abs_diff"] for row in batches.values()),
        "greedy_disagreements": sum(row["greedy_disagreements"] for row in batches.values()),
    }


def _decode_alone(context: Any, prompt: list[int], steps: int) -> tuple[np.ndarray, list[int]]:
    """One lane alone: the logits of every step (float32, steps x V) and its greedy tokens."""
    logits = np.empty((steps, context.vocab_size), dtype=np.float32)
    tokens: list[int] = []
    lane = context.open_lane()
    try:
        context.prefill([lane], [prompt])
        for step in range(steps):
            logits[step] = context.logits(0)
            tokens.append(int(np.argmax(logits[step])))
            if step + 1 < steps:
                context.step([lane], [tokens[-1]])
    finally:
        context.close_lane(lane)
    return logits, tokens


def _compare_batched(context: Any, prompts: list[list[int]],
                     alone: list[tuple[np.ndarray, list[int]]], steps: int) -> dict[str, Any]:
    """The lanes in one decode per step, fed the alone runs' tokens, compared step by step."""
    count = len(prompts)
    max_diff = [0.0] * count
    differing = [0] * count
    disagreements = [0] * count
    first: list[int | None] = [None] * count
    lanes = context.open_lanes([None] * count)  # all or none
    try:
        context.prefill(lanes, prompts)
        for step in range(steps):
            for index in range(count):
                batched = context.logits(index)
                reference, tokens = alone[index]
                diff = float(np.max(np.abs(batched - reference[step])))
                if not np.array_equal(batched, reference[step]):
                    differing[index] += 1
                    max_diff[index] = max(max_diff[index], diff if diff == diff else np.inf)
                if int(np.argmax(batched)) != tokens[step]:
                    disagreements[index] += 1
                    if first[index] is None:
                        first[index] = step
            if step + 1 < steps:
                context.step(lanes, [alone[i][1][step] for i in range(count)])
    finally:
        for lane in lanes:
            context.close_lane(lane)
    return {
        "bit_exact": not any(differing),
        "max_abs_diff": max(max_diff),
        "greedy_disagreements": sum(disagreements),
        "lanes": [
            {"max_abs_diff": max_diff[i], "differing_steps": differing[i],
             "greedy_disagreements": disagreements[i], "first_disagreement": first[i]}
            for i in range(count)
        ],
    }


def format_exactness(report: dict[str, Any]) -> str:
    """The exactness check as a few plain lines."""
    lines = [f"lanes in one decode against the same lane alone, {report['steps']} greedy steps "
             f"(teacher-forced), --gpu-layers {report['gpu_layers']}:"]
    for size, row in report["batches"].items():
        if row["bit_exact"]:
            lines.append(f"  {size} lanes: bit-exact")
            continue
        firsts = [lane["first_disagreement"] for lane in row["lanes"]
                  if lane["first_disagreement"] is not None]
        where = f", first at step {min(firsts)}" if firsts else ""
        lines.append(
            f"  {size} lanes: NOT bit-exact, largest |difference| {row['max_abs_diff']:.3g}; "
            f"greedy token differs on {row['greedy_disagreements']} of "
            f"{int(size) * report['steps']} lane-steps{where}"
        )
    return "\n".join(lines)
