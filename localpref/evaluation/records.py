"""JSON-lines files that survive interruption: each row is appended and flushed on its own.

A process killed mid-write leaves at most one torn last line; readers skip lines that do not
parse, and the next writer starts on a fresh line, so every complete row stays valid.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

GENERATIONS = "generations.jsonl"
SCORES = "scores.jsonl"


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


def read_rows(path: Path) -> Iterator[dict[str, Any]]:
    """The complete rows of a JSON-lines file (none if it does not exist)."""
    if not path.exists():
        return
    with path.open(encoding="utf-8", errors="replace") as handle:
        for line in handle:
            line = line.strip()
            if not line:
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue  # a torn line from an interrupted write
            if isinstance(row, dict):
                yield row


class RowWriter:
    """Appends rows to a JSON-lines file, one flushed write per row."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        needs_newline = False
        if path.exists() and path.stat().st_size > 0:
            with path.open("rb") as handle:
                handle.seek(-1, os.SEEK_END)
                needs_newline = handle.read(1) != b"\n"
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
