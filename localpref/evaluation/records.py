"""JSON-lines files that survive interruption: each row is appended and flushed on its own.

A process killed mid-write leaves at most one torn last line; readers skip lines that do not
parse, and the next writer cuts it off (a last line that is a whole row, its line end left off,
is kept and ended), so every line is a row again for any JSON-lines reader.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from localpref import json_reading
from localpref.errors import LocalprefError

GENERATIONS = "generations.jsonl"
SCORES = "scores.jsonl"
#: The files an evaluation writes in its output folder (beside its charts).
SUMMARY = "summary.md"
#: The charts the summary shows (each written when it has something to show).
SCORES_CHART, SPEED_CHART, JUDGE_CHART = "scores.png", "speed.png", "judge.png"
OUTPUT_FILES = (GENERATIONS, SCORES, SUMMARY, SCORES_CHART, SPEED_CHART, JUDGE_CHART)
#: The lock file of a folder an evaluation or a merge is writing (empty, left in place).
RUN_LOCK = ".lock"


def row_id(key: dict[str, Any]) -> str:
    """A stable id for a row key: a hash of its canonical JSON."""
    text = json.dumps(key, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:20]


def _clean(value: Any) -> Any:
    """NaN and infinities become None (JSON has no NaN)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


def dumps(row: dict[str, Any]) -> str:
    """One row as a JSON line (no newline)."""
    return json.dumps(_clean(row), ensure_ascii=False, default=str)


def read_rows(path: Path, required: tuple[str, ...] = ()) -> Iterator[dict[str, Any]]:
    """The complete rows of a JSON-lines file (none if it does not exist). A row without one
    of the ``required`` fields is one sentence: the file is not what the caller reads."""
    if not path.exists():
        return
    with path.open(encoding="utf-8", errors="replace") as handle:
        for number, line in enumerate(handle, start=1):
            line = line.strip()
            if not line:
                continue
            try:
                row = json_reading.loads(line)
            except json_reading.JSONProblem:
                continue  # a torn line from an interrupted write
            if not isinstance(row, dict):
                continue
            missing = next((name for name in required if name not in row), None)
            if missing is not None:
                raise LocalprefError(f"{path} line {number} has no '{missing}': it is not "
                                     "what localpref eval writes.")
            yield row


#: The fields every row of ``GENERATIONS`` and of ``SCORES`` has.
GENERATION_FIELDS = ("id", "key", "dataset", "position", "preference", "method")
SCORE_FIELDS = ("id", "kind")


def check_output_folder(out_dir: Path) -> None:
    """An output folder that exists must be a folder (one sentence otherwise)."""
    if out_dir.exists() and not out_dir.is_dir():
        raise LocalprefError(f"Output {out_dir} exists and is not a folder.")


def make_output_folder(out_dir: Path) -> None:
    """Make the output folder (and its parents) and check that files can be written in it, or
    say in one sentence why not."""
    check_output_folder(out_dir)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise LocalprefError(f"Cannot make the output folder {out_dir}: "
                             f"{error.strerror or error}.") from None
    try:
        with tempfile.TemporaryFile(dir=out_dir):
            pass
    except OSError as error:
        raise LocalprefError(f"Cannot write in the output folder {out_dir}: "
                             f"{error.strerror or error}.") from None
    for name in OUTPUT_FILES:  # a folder of that name would fail the run at its end
        path = out_dir / name
        if path.exists() and not path.is_file():
            raise LocalprefError(f"{path} is in the way: the evaluation writes a file there; "
                                 "move it away or give another --out.")


def missing_folders(out_dir: Path) -> list[Path]:
    """``out_dir`` and the folders above it that are not there yet, deepest first: what
    ``make_output_folder`` will make, for ``remove_unused_folders``."""
    return [folder for folder in (out_dir, *out_dir.parents) if not folder.exists()]


def remove_unused_folders(made: list[Path]) -> None:
    """Remove the folders a run refused before it wrote anything made (``missing_folders``):
    the output folder if it holds nothing but an empty run lock, then each one above it
    while it is empty; anything else in one keeps it and those above it."""
    if not made:
        return
    out_dir = made[0]
    try:
        names = os.listdir(out_dir)
        lock = out_dir / RUN_LOCK
        if set(names) - {RUN_LOCK} or (names and lock.stat().st_size):
            return
        lock.unlink(missing_ok=True)
        out_dir.rmdir()
    except FileNotFoundError:  # gone already
        pass
    except OSError:  # not ours to remove: left as it is
        return
    for parent in made[1:]:
        try:
            parent.rmdir()  # (only when empty)
        except OSError:
            return


def save_chart(figure: Any, path: Path, dpi: int) -> None:
    """Write a matplotlib figure to ``path``, or say in one sentence why it cannot be (a
    folder in its place: the rows are written by then and kept)."""
    try:
        figure.savefig(path, dpi=dpi)
    except OSError as error:
        raise LocalprefError(f"Cannot write the chart {path}: {error.strerror or error}; "
                             "the answers are kept: move it away and run the same command "
                             "again.") from None


def ends_inside_a_line(path: Path) -> bool:
    """Whether a JSON-lines file ends without a newline (its last row cut by a kill or a full
    disk), so that the next row must start a line of its own; False for a file that is not
    there or empty."""
    try:
        with path.open("rb") as handle:
            handle.seek(0, os.SEEK_END)
            if handle.tell() == 0:
                return False
            handle.seek(-1, os.SEEK_END)
            return handle.read(1) != b"\n"
    except FileNotFoundError:
        return False


def cut_a_torn_last_line(path: Path) -> bool:
    """Cut off the last line of a file that ends inside a line when it is not a whole row (a
    write cut by a kill or a full disk); False, nothing cut, when it is one."""
    data = path.read_bytes()
    start = data.rfind(b"\n") + 1
    try:
        row = json_reading.loads(data[start:].decode("utf-8"))
    except (UnicodeDecodeError, json_reading.JSONProblem):
        row = None
    if isinstance(row, dict):
        return False
    with path.open("r+b") as handle:
        handle.truncate(start)
    return True


class RowWriter:
    """Appends rows to a JSON-lines file, one flushed write per row; a torn last line left
    by an interrupted writer is cut off first."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        needs_newline = ends_inside_a_line(path) and not cut_a_torn_last_line(path)
        self._handle = path.open("a", encoding="utf-8")
        if needs_newline:
            self._handle.write("\n")
            self._handle.flush()

    def write(self, row: dict[str, Any]) -> None:
        self._handle.write(dumps(row) + "\n")
        self._handle.flush()

    def close(self) -> None:
        self._handle.close()

    def __enter__(self) -> RowWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def write_rows(path: Path, rows: Iterable[dict[str, Any]]) -> None:
    """Replace a file with these rows (written beside it, then renamed over it)."""
    temporary = path.with_name(path.name + ".tmp")
    with temporary.open("w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(dumps(row) + "\n")
    temporary.replace(path)
