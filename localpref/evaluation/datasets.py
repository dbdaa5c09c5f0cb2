"""Prompt sets: a JSON list whose rows each carry one prompt (``question`` or ``prompt``).

That is the shape of the papers' files (``personal_preference_eval_preference_data.json``,
``HelpSteer_train.json``, ``UltraFeedback_truthful_qa.json``, ``koala_eval_50.json``); any file
of that shape works. The files are not shipped with localpref: the user gives a path.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from localpref import json_reading
from localpref.errors import LocalprefError

#: Keys that may hold a row's prompt, in the order they are tried.
PROMPT_KEYS = ("question", "prompt", "instruction")


class DatasetError(LocalprefError):
    """A dataset file that is missing, not JSON, or not a list of prompts."""


@dataclass(frozen=True)
class PromptRow:
    """One prompt of a dataset: its position in the file, its own id if any, and its text."""

    position: int
    row_id: str
    text: str

    @property
    def digest(self) -> str:
        """A short hash of the text (part of a result's key, so an edited file is noticed)."""
        return hashlib.sha256(self.text.encode("utf-8")).hexdigest()[:12]


@dataclass(frozen=True)
class Dataset:
    """A named list of prompts (the name is the file's stem)."""

    name: str
    path: Path
    prompts: tuple[PromptRow, ...]

    def limited(self, limit: int | None) -> Dataset:
        """The first ``limit`` prompts (all of them for None)."""
        if limit is None:
            return self
        return Dataset(self.name, self.path, self.prompts[:limit])

    def shard(self, index: int, count: int) -> Dataset:
        """Every ``count``-th prompt starting at ``index`` (1-based), for split runs."""
        chosen = tuple(p for p in self.prompts if p.position % count == index - 1)
        return Dataset(self.name, self.path, chosen)


def load_dataset(path: str | Path) -> Dataset:
    """Read and check a prompt file; raise :class:`DatasetError` with one sentence if unusable."""
    path = Path(path)
    if not path.exists():
        raise DatasetError(f"Dataset file {path} does not exist.")
    if path.is_dir():
        raise DatasetError(f"Dataset {path} is a directory, not a JSON file.")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise DatasetError(f"Dataset file {path} is not UTF-8 text.") from None
    if not text.strip():
        raise DatasetError(f"Dataset file {path} is empty; give a JSON list of prompts or "
                           "JSON Lines, a row a line.")
    try:
        data = json_reading.loads(text)
    except json_reading.JSONProblem as problem:
        if problem.msg != "Extra data":
            what = "valid JSON" if problem.kind == json_reading.SYNTAX else "JSON localpref reads"
            hint = ("" if _looks_like_json(text) else
                    "; give a JSON list of prompts or JSON Lines, a row a line, not plain text")
            raise DatasetError(f"Dataset file {path} is not {what} ({problem.reason}){hint}.") \
                from None
        data = _json_lines(path, text)  # JSON Lines: a row a line
    if not isinstance(data, list) and "\n" not in text.strip():
        data = [data]  # JSON Lines of one row
    if not isinstance(data, list):
        raise DatasetError(f"Dataset file {path} must hold a JSON list of rows.")
    if not data:
        raise DatasetError(f"Dataset file {path} holds no rows.")
    prompts = []
    first_with_id: dict[str, int] = {}  # an id the file gives -> its row's position
    for position, row in enumerate(data):
        text = _prompt_of(row)
        if text is None:
            keys = " or ".join(repr(key) for key in PROMPT_KEYS[:2])
            raise DatasetError(
                f"Row {position + 1} of {path.name} (counted from 1) has no prompt: each row "
                f"needs a {keys} text."
            )
        # the row's own id ("index", else "id"; null is none), else its position
        given = next((row[key] for key in ("index", "id")
                      if isinstance(row, dict) and row.get(key) is not None), None)
        row_id = position if given is None else given
        for what, value in (("prompt", text), ("id", str(row_id))):
            if not _is_text(value):  # (JSON's "\ud800" alone: the model had loaded first)
                raise DatasetError(
                    f"The {what} of row {position + 1} of {path.name} (counted from 1) holds "
                    "half of a UTF-16 surrogate pair (an escape such as \\ud800 alone), which "
                    "is no character; write the whole character.")
        if given is not None:
            first = first_with_id.setdefault(str(row_id), position)
            if first != position:
                raise DatasetError(
                    f"Rows {first + 1} and {position + 1} of {path.name} (counted from 1) have "
                    f"the same id {str(row_id)!r}; give each row its own id.")
        prompts.append(PromptRow(position, str(row_id), text))
    return Dataset(path.stem, path, tuple(prompts))


def _is_text(value: str) -> bool:
    """Whether ``value`` is text that UTF-8 can write (no lone surrogate)."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _json_lines(path: Path, text: str) -> list[object]:
    """The rows of a JSON Lines file (blank lines skipped), or one sentence naming the line
    that is not JSON."""
    rows = []
    # lines end at "\n" alone: JSON strings may hold U+2028 and the other breaks that
    # str.splitlines also splits at (a "\r" before it is whitespace to JSON)
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            rows.append(json_reading.loads(line))
        except json_reading.JSONProblem as problem:
            reason = problem.msg if problem.kind == json_reading.SYNTAX else problem.reason
            plain = "" if _looks_like_json(line) else ", not plain text"
            raise DatasetError(f"Line {number} of {path} is not valid JSON ({reason}); give "
                               f"a JSON list of rows, or JSON Lines (a row a line){plain}.") \
                from None
    return rows


def _looks_like_json(text: str) -> bool:
    """Whether ``text`` begins as a list, an object or a string would (else it reads as plain
    text, a prompt a line, which the error then says is not what is read)."""
    return text.lstrip()[:1] in ("[", "{", '"')


def _prompt_of(row: object) -> str | None:
    """The prompt text of a row, or None when it has none."""
    if isinstance(row, str):
        return row if row.strip() else None
    if not isinstance(row, dict):
        return None
    for key in PROMPT_KEYS:
        value = row.get(key)
        if isinstance(value, str) and value.strip():
            return value
    return None
