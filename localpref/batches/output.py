"""The answers file: appended one flushed line at a time, resumed, and sorted at the end.

Every answer is one ``write`` of a whole line followed by ``flush`` and ``fsync``, so a run
killed at any moment (Ctrl-C, a crash, SIGKILL, a reboot) leaves whole lines and at most one
half-written last line. Opening the file again cuts that half line off (a last line that
is a whole answer, its line end left off by an editor, is kept) and reads which
``custom_id``s are answered: a re-run skips them, so nothing is lost or written twice. The final
sort writes a new file beside it and renames it over the old one, so it is never half-sorted.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any, TextIO

from localpref import json_reading
from localpref.batches.lines import BatchFileError, json_line

#: How every answer line starts (``lines.answer_line`` puts ``id`` first).
ANSWER_LINE_START = b'{"id": '


def _answer(raw: str) -> dict[str, Any] | None:
    """The answer line ``raw`` holds, or None when it holds none (a request file's line, say)."""
    try:
        line = json_reading.loads(raw)
    except json_reading.JSONProblem:
        return None
    if (not isinstance(line, dict) or not isinstance(line.get("custom_id"), str)
            or "response" not in line or "id" not in line):
        return None
    return line


def _parse_answers(data: bytes, path: Path) -> list[dict[str, Any]]:
    answers = []
    for number, raw in enumerate(data.decode("utf-8", errors="replace").split("\n"), 1):
        if not raw.strip():
            continue
        line = _answer(raw)
        if line is None:
            raise BatchFileError(f"Line {number} of {path} is not an answer line; move the "
                                 "file away or give another --out.")
        answers.append(line)
    return answers


#: Error codes that say how the run was started, not what the line asked: a run with other
#: flags (``--parallel``, ``--ctx``) can answer the line, so it is answered again (as are
#: server errors, status 500 and over). The window a line was refused with is not in its
#: error line, so a prompt no window can hold is refused again by every run.
RETRIED_ERROR_CODES = frozenset({"too_many_lanes", "context_length_exceeded"})


def answered_for_good(line: dict[str, Any]) -> bool:
    """Whether an answer line is final: an answer, or an error the same body would get
    again; not a server error or an error of the run's flags (answered again next run)."""
    status = (line.get("response") or {}).get("status_code", 200)
    code = (line.get("error") or {}).get("code")
    return not (isinstance(status, int) and status >= 500) and code not in RETRIED_ERROR_CODES


class AnswerFile:
    """``OUT.jsonl`` open for appending; ``answered`` holds the ``custom_id``s already in it
    for good (``answered_for_good``): the others are answered again, and the sort keeps the
    newest line of a ``custom_id``."""

    def __init__(self, path: Path) -> None:
        # A symbolic link is followed: the sort's rename then replaces the file it names.
        self.path = Path(os.path.realpath(path))
        if self.path.exists() and not self.path.is_file():
            raise BatchFileError(f"{path} is not a regular file; give a file's path as --out.")
        data = b""
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            pass
        except OSError as error:
            raise BatchFileError(f"Cannot read {path}: {error.strerror}.") from None
        whole = data[: data.rfind(b"\n") + 1]
        answers = _parse_answers(whole, path)  # refused before anything is cut: not ours
        tail = data[len(whole):]
        last = _answer(tail.decode("utf-8", errors="replace")) if tail.strip() else None
        if last is not None:  # a whole answer whose line end an editor left off: kept
            answers.append(last)
            with open(self.path, "ab") as handle:
                handle.write(b"\n")
        elif tail:
            # The last line was being written when the run stopped: it never counted. Only an
            # answer line's start is cut (a file of one line without its end may be anyone's).
            if tail.strip() and not (tail.startswith(ANSWER_LINE_START)
                                     or ANSWER_LINE_START.startswith(tail)):
                raise BatchFileError(f"The last line of {path} is not an answer line; move "
                                     "the file away or give another --out.")
            with open(self.path, "r+b") as handle:
                handle.truncate(len(whole))
        #: each ``custom_id``'s newest line (the one the sort keeps)
        self.newest: dict[str, dict[str, Any]] = {line["custom_id"]: line for line in answers}
        #: the ``custom_id``s whose newest line answers them for good (an older final line
        #: does not: an edited request's retried error is newer)
        self.answered: set[str] = {custom_id for custom_id, line in self.newest.items()
                                   if answered_for_good(line)}
        #: this run made the file (an interrupted or failed run that wrote nothing removes it)
        self._made_here = not self.path.exists()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._handle: TextIO = open(self.path, "a", encoding="utf-8")  # noqa: SIM115
        except OSError as error:
            raise BatchFileError(f"Cannot write {path}: {error.strerror}.") from None

    def write(self, line: dict[str, Any]) -> None:
        """Append one answer line, on disk before this returns."""
        self._handle.write(json_line(line))
        self._handle.flush()
        os.fsync(self._handle.fileno())
        self.answered.add(line["custom_id"])

    def close(self) -> None:
        if not self._handle.closed:
            self._handle.close()

    def abandon(self) -> None:
        """Close the file of a run that stopped (interrupted, or Ray unreachable): every line
        written stays; a file this run made and wrote nothing to is removed."""
        self.close()
        if self._made_here:
            with contextlib.suppress(OSError):
                if self.path.stat().st_size == 0:  # nothing written (each line ends in \n)
                    self.path.unlink()

    def sort(self, order: Iterable[str] | None) -> None:
        """Rewrite the file with its lines in ``order`` of ``custom_id`` (ids not in ``order``
        after them, as they were), atomically; with ``order`` None the lines keep the order
        they were written in and the file is rewritten only to drop a line answered again."""
        self.close()
        answers = _parse_answers(self.path.read_bytes(), self.path)
        kept: dict[str, dict[str, Any]] = {}
        for line in answers:  # a line answered again replaces the error line before it
            kept.pop(line["custom_id"], None)
            kept[line["custom_id"]] = line
        if order is None:
            if len(kept) == len(answers):
                return
            lines = list(kept.values())
        else:
            rank = {custom_id: place for place, custom_id in enumerate(order)}
            lines = sorted(kept.values(),
                           key=lambda line: rank.get(line["custom_id"], len(rank)))
        temporary = self.path.with_name(self.path.name + ".sorting")
        try:
            with open(temporary, "w", encoding="utf-8") as handle:
                for line in lines:
                    handle.write(json_line(line))
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temporary, self.path)
        except OSError as error:
            with contextlib.suppress(OSError):
                if temporary.is_file():  # a half-written copy of ours
                    temporary.unlink()
            raise BatchFileError(
                f"Every answer is in {self.path}, but it could not be rewritten in the batch "
                f"file's order ({error.strerror or error}); run again once its folder is "
                "writable, or pass --unordered.") from None
