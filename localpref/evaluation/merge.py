"""Merge the output folders of several runs (shards) into one, and summarise it."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from localpref.errors import LocalprefError
from localpref.evaluation.records import (
    GENERATION_FIELDS,
    GENERATIONS,
    RUN_LOCK,
    SCORE_FIELDS,
    SCORES,
    make_output_folder,
    read_rows,
    write_rows,
)
from localpref.evaluation.report import DEFAULT_REFERENCE, write_report
from localpref.evaluation.scorers import Scorer, score_text
from localpref.evaluation.tables import bootstrap_resamples_error
from localpref.file_lock import exclusive


def merge_outputs(
    folders: Sequence[str | Path],
    out_dir: str | Path,
    *,
    scorers: Sequence[Scorer] = (),
    reference: str | None = None,
    resamples: int = 2000,
    fluency_budget: float = 0.5,
) -> Path:
    """Union of the folders' rows (each id once) written to ``out_dir`` with a new summary.

    Answers that have no scores yet (a run stopped between the two writes) are scored with
    ``scorers``. ``out_dir`` may be one of the folders. ``reference``: the method the
    win/tie/lose tables compare (one of the runs'; None: amulet, where the runs have it).
    """
    if not (math.isfinite(fluency_budget) and fluency_budget >= 0):
        raise LocalprefError(f"The fluency budget must be 0 or more nats (got {fluency_budget}).")
    too_few = bootstrap_resamples_error(resamples)
    if too_few is not None:
        raise LocalprefError(too_few)
    sources = [Path(folder) for folder in folders]
    if not sources:
        raise LocalprefError("Give at least one folder to merge.")
    for folder in sources:
        if not folder.exists():
            raise LocalprefError(f"{folder} does not exist: give the --out folders of eval "
                                 "runs.")
        if not folder.is_dir():
            raise LocalprefError(f"{folder} is not a folder: give the --out folders of eval "
                                 "runs.")
        if not (folder / GENERATIONS).is_file():
            raise LocalprefError(f"{folder} holds no {GENERATIONS}: it is not an eval output.")
    target = Path(out_dir)
    busy = LocalprefError(f"A localpref eval is writing {target}; wait for it to finish (or "
                          "stop it), or give merge another --out.")
    if target.is_dir():  # an eval may be writing it: held from the reading on, or the rows it
        # wrote between this reading and the writing would be lost
        make_output_folder(target)
        with exclusive(target / RUN_LOCK, busy=busy, what=str(target)):
            rows = _merged_rows(sources, scorers, reference)
            return _write(target, *rows, reference, resamples, fluency_budget)
    rows = _merged_rows(sources, scorers, reference)
    make_output_folder(target)
    with exclusive(target / RUN_LOCK, busy=busy, what=str(target)):  # rows replaced under it
        return _write(target, *rows, reference, resamples, fluency_budget)


_Rows = tuple[list[dict[str, Any]], dict[str, dict[str, Any]], list[dict[str, Any]]]


def _merged_rows(sources: Sequence[Path], scorers: Sequence[Scorer],
                 reference: str | None) -> _Rows:
    """The folders' generations (each id once, in order), their metrics (scoring what has
    none yet) and judgements."""
    generations: dict[str, dict[str, Any]] = {}
    metrics: dict[str, dict[str, Any]] = {}
    judgements: dict[str, dict[str, Any]] = {}
    for folder in sources:
        for row in read_rows(folder / GENERATIONS, GENERATION_FIELDS):
            _keep(generations, row)
        for row in read_rows(folder / SCORES, SCORE_FIELDS):
            if row.get("kind") == "metrics":
                metrics[row["id"]] = {**metrics.get(row["id"], {}), **(row.get("metrics") or {})}
            elif row.get("kind") == "judge":
                _keep(judgements, row)
    _check_one_prompt_per_place(generations.values())
    wanted = [m for s in scorers for m in s.metrics]
    for identifier, row in generations.items():
        have = metrics.get(identifier, {})
        if not row.get("error") and any(m not in have for m in wanted):
            metrics[identifier] = {**have, **score_text(scorers, row["text"], row["tokens"])}
    methods = sorted({row["method"] for row in generations.values()})
    if reference is not None and reference not in methods:
        raise LocalprefError(f"--reference {reference} is not among the runs' methods "
                             f"({', '.join(methods)}).")
    ordered = sorted(generations.values(),
                     key=lambda r: (r["dataset"], r["position"], r["preference"], r["method"],
                                    r["id"]))
    return ordered, metrics, sorted(judgements.values(), key=lambda j: j["id"])


def _place(row: dict[str, Any]) -> tuple[str, int]:
    return str(row["dataset"]), int(row["position"])


def _prompt_digest(row: dict[str, Any]) -> str | None:
    return (row.get("key") or {}).get("prompt_sha")


def _check_one_prompt_per_place(rows: Iterable[dict[str, Any]]) -> None:
    """Rows are paired by dataset and position: different prompts at one place (runs of two
    prompt files of one name, or of a file edited between runs, in one folder or two) would
    pair answers to different questions, so they are one sentence instead. Which of them is
    current is not in the rows (the last written is not: an edit undone writes nothing), so
    none is guessed."""
    prompts: dict[tuple[str, int], str] = {}
    for row in rows:
        digest, place = _prompt_digest(row), _place(row)
        if digest is not None and prompts.setdefault(place, digest) != digest:
            raise LocalprefError(
                f"The rows hold different prompts as prompt {place[1] + 1} (counted from 1) "
                f"of dataset {place[0]!r} (prompt files of the same name, or one edited "
                "between runs into a folder), whose answers cannot be paired; merge runs of "
                "the same prompts (a run into a new folder has only its file's), or give the "
                "other file another name.")


def _write(target: Path, ordered: list[dict[str, Any]], metrics: dict[str, dict[str, Any]],
           judgements: list[dict[str, Any]], reference: str | None, resamples: int,
           fluency_budget: float) -> Path:
    """Replace the target's rows with the merged ones and write its summary (under its
    lock)."""
    score_rows = [{"id": r["id"], "kind": "metrics", "metrics": metrics[r["id"]]}
                  for r in ordered if r["id"] in metrics]
    write_rows(target / GENERATIONS, ordered)
    write_rows(target / SCORES, score_rows + judgements)
    return write_report(target, ordered, metrics, judgements,
                        reference=reference or DEFAULT_REFERENCE, resamples=resamples,
                        fluency_budget=fluency_budget)


def _keep(kept: dict[str, dict[str, Any]], row: dict[str, Any]) -> None:
    """Keep the first row of each id, but a later one that succeeded over one that failed
    (an eval run tries a failed answer again and appends its new row)."""
    before = kept.get(row["id"])
    if before is None or (before.get("error") and not row.get("error")):
        kept[row["id"]] = row
