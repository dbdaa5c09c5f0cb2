#!/usr/bin/env python3
"""Join `localpref eval` output folders into one folder for `scripts/against-pref-tables.py`.

    python scripts/join-eval-folders.py OUT FOLDER... [--drop FIELD ...]

Copies every folder's generations.jsonl and scores.jsonl (plain or .gz) into OUT, removing
the named fields from each answer's ``key`` (default: ``calibration`` and ``score_lanes``),
each answer once: the first one with its id, or with its key once the fields are removed (a
rerun without ``--score-lanes`` answers the same prompts again under another id). Those two
fields only split one column into several in the tables: ``calibration`` is the time the
record was stored, which a rerun of the same calibration changes with its settings unchanged
(the settings stay in the key), and ``score_lanes`` only says whether the fluency lanes were
decoded, which a single-lane Pref does not need. Used to extend a run to more prompts with
rows from an earlier run of the same settings (docs/results/2026-12-more-prompts/README.md).
"""

from __future__ import annotations

import argparse
import gzip
import json
from pathlib import Path

#: Key fields that name no setting of the answer (module docstring).
DEFAULT_DROPPED = ("calibration", "score_lanes")


def _lines(path: Path) -> list[str]:
    for name in (path, path.with_name(path.name + ".gz")):
        if name.is_file():
            opener = gzip.open if name.suffix == ".gz" else open
            with opener(name, "rt", encoding="utf-8") as handle:
                return [line for line in handle if line.strip()]
    return []


def join(out: Path, folders: list[Path], dropped: tuple[str, ...]) -> tuple[int, int]:
    """Write OUT's two files; the answers and score lines written."""
    out.mkdir(parents=True, exist_ok=True)
    seen: set[str] = set()  # ids and keys (as JSON) already written
    answers = scores = 0
    with (out / "generations.jsonl").open("w", encoding="utf-8") as generations, \
            (out / "scores.jsonl").open("w", encoding="utf-8") as scored:
        for folder in folders:
            for line in _lines(folder / "generations.jsonl"):
                row = json.loads(line)
                key = {k: v for k, v in (row.get("key") or {}).items() if k not in dropped}
                same = json.dumps(key, sort_keys=True)
                if row["id"] in seen or same in seen:
                    continue
                seen.update((row["id"], same))
                generations.write(json.dumps({**row, "key": key}, ensure_ascii=False) + "\n")
                answers += 1
            for line in _lines(folder / "scores.jsonl"):
                scored.write(line if line.endswith("\n") else line + "\n")
                scores += 1
    return answers, scores


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("folders", nargs="+", type=Path)
    parser.add_argument("--drop", action="append", default=None, metavar="FIELD",
                        help="a key field to remove (repeat; default: calibration, score_lanes)")
    args = parser.parse_args()
    missing = [str(folder) for folder in args.folders
               if not _lines(folder / "generations.jsonl")]
    if missing:
        raise SystemExit(f"No generations.jsonl in {', '.join(missing)}.")
    answers, scores = join(args.out, args.folders, tuple(args.drop or DEFAULT_DROPPED))
    print(f"{answers} answers and {scores} score lines in {args.out}")


if __name__ == "__main__":
    main()
