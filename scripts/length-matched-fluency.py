"""Fluency against Pref with the answers' lengths matched: does a steered answer read less
fluently than Pref's, or is it only shorter?

The evaluation's fluency is an answer's mean log-probability per token under the preference
lane (docs/steering.md, "Fluency, measured for free"). An answer's first tokens are its least
predictable (nothing is settled yet) and a long answer's later tokens its most predictable, so
a short answer's mean sits below a long one's even when neither reads worse. This script
scores stored answers again, token by token, under their preference lane (teacher forcing
through localpref's own context: the prompt, then each answer token decoded alone, as
generation decodes it; the mean equals the row's recorded ``fluency_pref``), and compares each
steered answer with Pref's answer to the same prompt two ways:

- whole answers: mean(lp_steered) - mean(lp_pref), the evaluation's figure;
- length-matched: the same over the first min(n_steered, n_pref) tokens of each.

    .venv/bin/python scripts/length-matched-fluency.py MODEL ROWS.jsonl SCORES.jsonl

ROWS.jsonl: generation rows of ``localpref eval`` (Pref and one steered setting per preference,
library prompts); SCORES.jsonl: the per-token log-probabilities, appended as they are made
(a stopped run continues). Prints a Markdown table with 95 % paired bootstrap intervals
(``evaluation.tables.bootstrap_interval``, the evaluation's own) and Pref's mean
log-probability by position.
"""

from __future__ import annotations

import collections
import json
import statistics
import sys
from pathlib import Path
from typing import Any

from localpref.api import Model
from localpref.evaluation.tables import bootstrap_interval
from localpref.kernels import controls

#: Token positions (from, to) over which Pref's mean log-probability is given; the last is open.
POSITION_BANDS = ((0, 16), (16, 64), (64, 128), (128, 256), (256, None))


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


def score_answers(model: Model, rows: list[dict[str, Any]], out: Path) -> dict[str, list[float]]:
    """Each row's per-token log-probabilities under its preference lane (kept in ``out``)."""
    scored = {row["id"]: row["lps"] for row in read_jsonl(out)}
    with out.open("a", encoding="utf-8") as handle, model.exclusive():
        context = model.context
        for row in rows:
            if row["id"] in scored:
                continue
            messages = [{"role": "user", "content": row["prompt"]}]
            prompt = model.prompts.lane_tokens(messages, row["preference_text"])
            lane = context.open_lane()
            try:
                context.prefill([lane], [prompt])
                lps = []
                for token in row["tokens"]:
                    lp, _ = controls.lane_statistics(context.logits(0), token)
                    lps.append(float(lp))
                    context.step([lane], [token])
            finally:
                context.close_lane(lane)
            scored[row["id"]] = lps
            handle.write(json.dumps({"id": row["id"], "lps": lps,
                                     "recorded": row["stats"].get("fluency_pref")}) + "\n")
            handle.flush()
    return scored


def table(rows: list[dict[str, Any]], scored: dict[str, list[float]]) -> str:
    pairs: dict[tuple[str, str], dict[int, dict[str, list[float]]]] = collections.defaultdict(
        lambda: collections.defaultdict(dict))
    for row in rows:
        lps = scored.get(row["id"])
        if lps:
            label = "pref" if row["method"] == "pref" else "steered"
            pairs[(row["preference"], row["dataset"])][row["position"]][label] = lps
    lines = ["| preference | set | n | tokens, steered / Pref | whole answers | length-matched |",
             "|---|---|---|---|---|---|"]
    for (preference, dataset), by_prompt in sorted(pairs.items()):
        whole, matched, n_steered, n_pref = [], [], [], []
        for answers in by_prompt.values():
            if "pref" not in answers or "steered" not in answers:
                continue
            steered, pref = answers["steered"], answers["pref"]
            m = min(len(steered), len(pref))
            whole.append(statistics.fmean(steered) - statistics.fmean(pref))
            matched.append(statistics.fmean(steered[:m]) - statistics.fmean(pref[:m]))
            n_steered.append(len(steered))
            n_pref.append(len(pref))
        if not whole:
            continue
        (lo, hi), (lo_m, hi_m) = bootstrap_interval(whole), bootstrap_interval(matched)
        lines.append(f"| {preference} | {dataset} | {len(whole)} | "
                     f"{statistics.fmean(n_steered):.0f} / {statistics.fmean(n_pref):.0f} | "
                     f"{statistics.fmean(whole):+.2f} [{lo:+.2f}, {hi:+.2f}] | "
                     f"{statistics.fmean(matched):+.2f} [{lo_m:+.2f}, {hi_m:+.2f}] |")
    bands: dict[tuple[int, int | None], list[float]] = collections.defaultdict(list)
    for row in rows:
        if row["method"] == "pref":
            for position, lp in enumerate(scored.get(row["id"], [])):
                band = next(band for band in POSITION_BANDS
                            if band[0] <= position and (band[1] is None or position < band[1]))
                bands[band].append(lp)
    profile = ", ".join(f"tokens {start + 1}-{end or ''}: {statistics.fmean(lps):.2f} ({len(lps)})"
                        for (start, end), lps in sorted(bands.items(), key=lambda b: b[0][0]))
    return "\n".join(lines) + f"\n\nPref's mean log-probability by position: {profile}\n"


def main(argv: list[str]) -> None:
    model_path, rows_path, out_path = argv
    rows = read_jsonl(Path(rows_path))
    for row in rows:  # older rows hold the token list as its text
        if isinstance(row["tokens"], str):
            row["tokens"] = json.loads(row["tokens"])
    with Model(model_path, n_threads=1, max_lanes=1, n_ctx=2048) as model:
        scored = score_answers(model, rows, Path(out_path))
    print(table(rows, scored), end="")


if __name__ == "__main__":
    main(sys.argv[1:])
