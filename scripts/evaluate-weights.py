"""The evaluation of weighted preferences behind docs/results/2026-12-by-example/weights-*.md.

Concise and uplifting together, under the recommended steering: the joined-sentence lane (one
preference lane, today's ``-p concise -p uplifting``) against weighted combinations
``{"concise": wc, "uplifting": wu}``, with each weight swept over 0, 0.5, 1, 2 while the other
stays 1. Scores: words (concise, lower) and VADER (uplifting, higher), per prompt; the table
gives means and 95 % paired bootstrap intervals of the difference from the joined lane.

    PYTHONPATH=. python scripts/evaluate-weights.py DATASET LIMIT OUT.md [MODEL] [--threads N]
        [--strength K] [--tau T] [--concurrent N]

``--strength`` and ``--tau`` set the recommended steering's strength and plausibility tau (a
model's calibrated setting; default today's uncalibrated one); the base lane stays neutral.
``--concurrent N`` writes N configurations of a prompt at once (one batched decode; the model
gets 4N lanes). A run writes OUT.md and OUT.jsonl (one row per answer) and resumes from
OUT.jsonl.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

import localpref
from localpref.evaluation import load_dataset
from localpref.evaluation.scorers import LengthScorer, SentimentScorer
from localpref.evaluation.tables import bootstrap_interval

WEIGHTS = (0.0, 0.5, 1.0, 2.0)
JOINED = "joined"


def configs() -> dict[str, object]:
    """Name -> preference: the joined lane, then every weighted combination of the sweeps."""
    found: dict[str, object] = {JOINED: ["concise", "uplifting"]}
    for wc in WEIGHTS:
        found[f"concise={wc:g},uplifting=1"] = {"concise": wc, "uplifting": 1.0}
    for wu in WEIGHTS:
        found[f"concise=1,uplifting={wu:g}"] = {"concise": 1.0, "uplifting": wu}
    return found


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("dataset")
    parser.add_argument("limit", type=int)
    parser.add_argument("out")
    parser.add_argument("model", nargs="?", default=None)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--strength", type=float, default=None)
    parser.add_argument("--tau", type=float, default=None)
    parser.add_argument("--concurrent", type=int, default=1)
    args = parser.parse_args()
    method = localpref.recommended_method()
    if args.strength is not None:
        method = method.with_strength(args.strength)
    if args.tau is not None:
        method = dataclasses.replace(method, tau=args.tau)
    out = Path(args.out)
    rows_path = out.with_suffix(".jsonl")
    done = {}
    if rows_path.exists():
        for line in rows_path.read_text().splitlines():
            row = json.loads(line)
            done[(row["config"], row["position"])] = row
    prompts = load_dataset(args.dataset).limited(args.limit).prompts
    length, sentiment = LengthScorer(), SentimentScorer()
    model = localpref.load(args.model, max_lanes=4 * args.concurrent, n_threads=args.threads,
                           max_queued=4 * args.concurrent)

    def answer(position: int, text: str, name: str, preference: object) -> dict:
        result = model.generate(text, preference=preference, method=method, opposite=False,
                                max_tokens=args.max_tokens)
        return {"config": name, "position": position, "text": result.text,
                **length.score(result.text, result.tokens), **sentiment.score(result.text),
                "fluency_pref": result.stats["fluency_pref"], "n_lanes": result.stats["n_lanes"]}

    with rows_path.open("a") as sink, ThreadPoolExecutor(args.concurrent) as pool:
        for position, prompt in enumerate(prompts):
            todo = [(name, preference) for name, preference in configs().items()
                    if (name, position) not in done]
            for row in pool.map(lambda job, p=position, t=prompt.text: answer(p, t, *job), todo):
                sink.write(json.dumps(row) + "\n")
                sink.flush()
                done[(row["config"], position)] = row
    out.write_text(report(done, model.name, len(prompts), args.max_tokens, method.strength,
                           method.tau))
    print(out.read_text())
    return 0


def report(rows: dict, model: str, n_prompts: int, max_tokens: int, strength: float,
           tau: float) -> str:
    """The markdown table: per configuration, means and paired intervals against joined."""
    names = list(configs())
    lines = [f"# Weighted preferences: {model}", "",
             f"{n_prompts} prompts, {max_tokens} new tokens, greedy, the recommended steering "
             f"at k = {strength:g}, tau {tau:g}, neutral base lane. "
             "Δ: paired difference from the joined-sentence lane (`-p concise -p uplifting`), "
             "mean [95 % bootstrap interval over prompts].", "",
             "| configuration | lanes | words | Δ words | VADER | Δ VADER | fluency (pref) |",
             "|---|---|---|---|---|---|---|"]
    for name in names:
        mine = [rows.get((name, p)) for p in range(n_prompts)]
        joined = [rows.get((JOINED, p)) for p in range(n_prompts)]
        pairs = [(a, b) for a, b in zip(mine, joined, strict=True) if a and b]
        if not pairs:
            continue
        cells = [name, str(pairs[0][0]["n_lanes"])]
        for metric in ("words", "vader"):
            values = [a[metric] for a, _ in pairs]
            cells.append(f"{np.mean(values):.3g}")
            if name == JOINED:
                cells.append("")
                continue
            diffs = [a[metric] - b[metric] for a, b in pairs]
            low, high = bootstrap_interval(diffs)
            cells.append(f"{np.mean(diffs):+.3g} [{low:+.3g}, {high:+.3g}]")
        fluency = [a["fluency_pref"] for a, _ in pairs if a["fluency_pref"] is not None
                   and math.isfinite(a["fluency_pref"])]
        cells.append(f"{np.mean(fluency):.3f}" if fluency else "")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
