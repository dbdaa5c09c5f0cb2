#!/usr/bin/env python3
"""The Against-Pref tables of docs/steering.md from the folders of `scripts/evaluate-calibrated.sh`.

    python scripts/against-pref-tables.py FOLDER... [--limit N] [--resamples 2000] [--budget 0.5]

Reads each folder's generations.jsonl and scores.jsonl (plain or .gz), names a row's base-lane
avoid "opposite" when it is its preference's opposite sentence (so every preference's
with-opposite rows fall into one column), and prints one Markdown table: rows set x
preference, one column per variant, each cell the verdict (✓ beats, ✗ loses, · the interval
holds zero), the mean paired difference from Pref [95% bootstrap interval], the fluency
difference from Pref under the preference lane ("fl") and under the base lane ("base"; with an
opposite it reads the opposite's lane, so only the preference lane is comparable), and n.
The arithmetic is the eval summary's own (`localpref.evaluation.versus_pref.comparisons`).
Rows scored before a length metric existed (``content_words``) are scored from their text.
"""

from __future__ import annotations

import argparse
import gzip
import json
import math
from pathlib import Path

from localpref.evaluation.markdown import format_value
from localpref.evaluation.scorers import LengthScorer
from localpref.evaluation.tables import collect
from localpref.evaluation.versus_pref import comparisons

#: The opposites' sentences (localpref/presets.py, OPPOSITES), as the runs' --avoid gave them.
OPPOSITES = {
    "concise": "Your answer should be as detailed and thorough as possible.",
    "verbose": "Your answer should be as short and to the point as possible.",
    "creative": "Your answer should be as conventional and predictable as possible.",
    "uplifting": "Your answer should be as bleak and gloomy as possible.",
}
SETS = {"HelpSteer_train": "HelpSteer", "UltraFeedback_truthful_qa": "TruthfulQA",
        "personal_preference_eval_preference_data": "Personal"}


def _rows(path: Path) -> list[dict]:
    for name in (path, path.with_name(path.name + ".gz")):
        if name.is_file():
            opener = gzip.open if name.suffix == ".gz" else open
            with opener(name, "rt", encoding="utf-8") as handle:
                return [json.loads(line) for line in handle if line.strip()]
    return []


def load(folders: list[Path], limit: int | None = None,
         ignored: tuple[str, ...] = ()) -> tuple[list[dict], dict[str, dict]]:
    """Every folder's rows (of the first ``limit`` prompts), each id once, with the opposite's
    avoid renamed and the ``ignored`` key fields removed; with fields removed, each key once
    too (the first folder's answer wins: a run made again under another id)."""
    rows: dict[str, dict] = {}
    keys: set[str] = set()
    metrics: dict[str, dict] = {}
    for folder in folders:
        generations = _rows(folder / "generations.jsonl")
        if not generations:
            raise SystemExit(f"{folder} holds no generations.jsonl")
        for row in generations:
            if limit is not None and int(row["position"]) >= limit:
                continue
            key = {name: value for name, value in (row.get("key") or {}).items()
                   if name not in ignored}
            avoid = key.get("avoid")
            if avoid:
                text = " ".join(avoid)
                key["avoid"] = "opposite" if text == OPPOSITES.get(row["preference"]) else text
            same = json.dumps(key, sort_keys=True)
            if row["id"] in rows or (ignored and same in keys):
                continue
            keys.add(same)
            rows[row["id"]] = {**row, "key": key}
        for score in _rows(folder / "scores.jsonl"):
            if score.get("kind") == "metrics":
                metrics[score["id"]] = {**metrics.get(score["id"], {}),
                                        **(score.get("metrics") or {})}
    return list(rows.values()), metrics


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", nargs="+", type=Path)
    parser.add_argument("--limit", type=int, default=None, help="the first N prompts only")
    parser.add_argument("--resamples", type=int, default=2000)
    parser.add_argument("--budget", type=float, default=0.5)
    parser.add_argument("--verbose-by-words", action="store_true",
                        help="score verbose by all its words, as before December 4th, instead "
                        "of the words of its distinct sentences")
    parser.add_argument("--ignore-key", action="append", default=[], metavar="FIELD",
                        help="a key field that names no setting, so that rows differing only "
                        "in it are one column (repeat): calibration (the time a record was "
                        "stored, which a rerun of the same calibration changes), score_lanes "
                        "(whether the fluency lanes were decoded)")
    args = parser.parse_args()
    rows, metrics = load(args.folders, args.limit, tuple(args.ignore_key))
    length = LengthScorer()
    for row in rows:  # runs older than a length metric are scored from their text
        have = metrics.setdefault(row["id"], {})
        if "content_words" not in have and not row.get("error"):
            have.update(length.score(row["text"], row.get("tokens") or ()))
        if args.verbose_by_words and "words" in have:
            have["content_words"] = have["words"]
    found = comparisons(collect(rows, metrics), resamples=args.resamples)
    labels = [label for label in dict.fromkeys(c.label for c in found)
              if not label.startswith("base")]
    short = [label.replace("recommended (amulet)", "recommended").replace(
        "avoid=default", "neutral base lane").replace("avoid=opposite", "opposite")
        for label in labels]
    print("| set | preference | " + " | ".join(short) + " |")
    print("|---|---|" + "---|" * len(labels))
    for group in dict.fromkeys((c.dataset, c.preference, c.metric) for c in found):
        cells = []
        for label in labels:
            match = [c for c in found if (c.dataset, c.preference, c.metric, c.label)
                     == (*group, label)]
            if not match or not match[0].n_prompts:
                cells.append("–")
                continue
            c = match[0]
            mark = {"beats": "✓", "loses": "✗"}.get(c.verdict, "·")
            fluent = "" if c.fluent(args.budget, lane="pref") is not False else " **not fluent**"
            base = (f", base {c.fluency_delta:+.2f}" if math.isfinite(c.fluency_delta) else "")
            cells.append(f"{mark} {format_value(c.metric, c.delta)} "
                         f"[{format_value(c.metric, c.delta_low)}, "
                         f"{format_value(c.metric, c.delta_high)}], "
                         f"fl {c.pref_fluency_delta:+.2f}{fluent}{base}, n={c.n_prompts}")
        metric = "words" if args.verbose_by_words and group[2] == "content_words" else group[2]
        print(f"| {SETS.get(group[0], group[0])} | {group[1]} ({metric}) | "
              + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
