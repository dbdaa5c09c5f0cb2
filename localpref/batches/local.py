"""A batch answered on this machine: ``parallel`` worker threads each answer one line at a time
through the model's scheduler, which decodes every live line in one batch per step.

Answers come back to the calling thread, which alone writes the file (``Recorder``). Ctrl-C
cancels the generations in flight; their partial answers are dropped, so a re-run answers them
again from the start.
"""

from __future__ import annotations

import queue
import threading
from typing import TYPE_CHECKING, Any

from localpref.batches.lines import BatchLine
from localpref.batches.recorder import Recorder
from localpref.decoding import Generation

if TYPE_CHECKING:  # the answering side is the server's (``localpref.server.batch_answer``)
    from localpref.server.batch_answer import Answerer

_DONE = object()


class LocalWorkers:
    """``parallel`` threads answering lines from a shared queue."""

    def __init__(self, answerer: Answerer, lines: list[BatchLine], parallel: int) -> None:
        self.answerer = answerer
        self.todo: queue.SimpleQueue[BatchLine] = queue.SimpleQueue()
        for line in lines:
            self.todo.put(line)
        self.answers: queue.Queue[Any] = queue.Queue()
        self.stopping = threading.Event()
        #: each thread's latest generation (cancelling a finished one does nothing)
        self._current: dict[int, Generation] = {}
        self._lock = threading.Lock()
        self.threads = [threading.Thread(target=self._work, name=f"localpref-batch-{i}",
                                         daemon=True) for i in range(max(1, parallel))]

    def start(self) -> None:
        for thread in self.threads:
            thread.start()

    def _started(self, generation: Generation) -> None:
        with self._lock:
            self._current[threading.get_ident()] = generation
        if self.stopping.is_set():
            generation.cancel()

    def _work(self) -> None:
        try:
            while not self.stopping.is_set():
                try:
                    line = self.todo.get_nowait()
                except queue.Empty:
                    return
                answer = self.answerer.answer(line, on_start=self._started)
                if answer is not None and not self.stopping.is_set():
                    self.answers.put(answer)
        finally:
            self.answers.put(_DONE)

    def stop(self) -> None:
        """Cancel every generation in flight and wait for the threads."""
        self.stopping.set()
        with self._lock:
            running = list(self._current.values())
        for generation in running:
            generation.cancel()
        for thread in self.threads:
            thread.join(60)


def run_local(answerer: Answerer, recorder: Recorder, parallel: int) -> None:
    """Answer every pending line of ``recorder`` with ``parallel`` lines decoded at once."""
    workers = LocalWorkers(answerer, recorder.pending, parallel)
    recorder.begin()
    workers.start()
    running = len(workers.threads)
    try:
        while running:
            try:
                answer = workers.answers.get(timeout=0.5)
            except queue.Empty:
                continue
            if answer is _DONE:
                running -= 1
            else:
                recorder.record(answer)
    finally:
        if running:  # interrupted (Ctrl-C): nothing half-done is written
            workers.stop()
