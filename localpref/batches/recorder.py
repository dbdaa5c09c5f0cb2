"""The writing side of a batch run, the same on one machine and with Ray: which lines are still
to answer, each answer appended as it comes, the progress bar, and the summary at the end."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from localpref.batches.lines import BatchLine, completion_tokens, failed
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
        self.pending = [line for line in lines if line.custom_id not in self.file.answered]
        self.skipped = len(lines) - len(self.pending)
        self.done = 0
        self.failed = 0
        self.tokens = 0
        self.started = time.perf_counter()
        self.progress = Progress(len(lines), label="batch", enabled=progress,
                                 stream=stream if stream is not None else sys.stderr)
        self.progress.skip(self.skipped)

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
