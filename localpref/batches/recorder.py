"""The writing side of a batch run, the same on one machine and with Ray: which lines are still
to answer, each answer appended as it comes, the progress bar, and the summary at the end."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from localpref.batches.lines import (
    DIGEST_ID,
    BatchFileError,
    BatchLine,
    completion_tokens,
    failed,
    request_id,
)
from localpref.batches.output import AnswerFile
from localpref.evaluation.progress import Progress


@dataclass(frozen=True)
class Summary:
    """What a run did: lines answered now (``done``, of which ``failed`` are error lines),
    lines found answered already (``skipped``), tokens written and seconds spent."""

    done: int
    failed: int
    skipped: int
    tokens: int
    seconds: float
    out: str

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.seconds if self.seconds > 0 else 0.0

    def line(self) -> str:
        """The summary line printed at the end."""
        resumed = f", {self.skipped} answered before" if self.skipped else ""
        return (f"localpref: batch: {self.done} done ({self.failed} failed){resumed}; "
                f"{self.tokens} tokens in {self.seconds:.1f} s ({self.tokens_per_s:.1f} "
                f"tokens/s); answers in {self.out}")


class Recorder:
    """Opens ``out`` (resuming it), says which of ``lines`` are pending, and records answers."""

    def __init__(self, lines: list[BatchLine], out: Path, *, progress: bool = True,
                 stream: TextIO | None = None) -> None:
        self.lines = lines
        self.file = AnswerFile(out)
        changed = [line for line in lines if line.custom_id in self.file.answered
                   and not self._answers(line)]
        answered = [line for line in changed if not failed(self.file.newest[line.custom_id])]
        if answered:
            self.file.close()
            named = ", ".join(repr(line.custom_id) for line in answered[:3])
            more = f" and {len(answered) - 3} more" if len(answered) > 3 else ""
            raise BatchFileError(
                f"{out} holds answers to other requests under {len(answered)} of this file's "
                f"custom_ids ({named}{more}): those lines changed since they were answered, or "
                "the answers are another file's; give another --out, or delete those answers "
                "from it to answer the lines again.")
        retried = {line.custom_id for line in changed}  # an error line of an edited request
        self.pending = [line for line in lines
                        if line.custom_id not in self.file.answered or line.custom_id in retried]
        self.skipped = len(lines) - len(self.pending)
        self.done = 0
        self.failed = 0
        self.tokens = 0
        self.started = time.perf_counter()
        self.progress = Progress(len(lines), label="batch", enabled=progress,
                                 stream=stream if stream is not None else sys.stderr)
        self.progress.skip(self.skipped)

    def _answers(self, line: BatchLine) -> bool:
        """Whether the answers file's line for ``line``'s ``custom_id`` answers this very
        request (``lines.request_id``); one written before request ids were digests may."""
        recorded = (self.file.newest[line.custom_id].get("response") or {}).get("request_id")
        if not isinstance(recorded, str) or not DIGEST_ID.fullmatch(recorded):
            return True
        return recorded == request_id(line)

    def begin(self) -> None:
        """Start the clocks: the model is loaded and answering begins."""
        self.started = time.perf_counter()
        self.progress.started = self.started

    def record(self, answer: dict[str, Any]) -> None:
        """Write one answer line (flushed to disk) and move the bar."""
        self.file.write(answer)
        self.done += 1
        self.failed += failed(answer)
        self.tokens += completion_tokens(answer)
        elapsed = time.perf_counter() - self.started
        rate = self.tokens / elapsed if elapsed > 0 else 0.0
        self.progress.advance(f"{rate:.1f} tokens/s, {self.failed} failed")

    def finish(self, *, unordered: bool = False) -> Summary:
        """Sort the file into input order (unless ``unordered``: lines answered again then
        only replace their error lines) and sum the run up."""
        self.progress.close()
        self.file.sort(None if unordered else [line.custom_id for line in self.lines])
        return Summary(self.done, self.failed, self.skipped, self.tokens,
                       time.perf_counter() - self.started, str(self.file.path))

    def close(self) -> None:
        """Stop without sorting (an interrupted run: every written line stays; an answers file
        it made and wrote nothing to goes)."""
        self.progress.close()
        self.file.abandon()
