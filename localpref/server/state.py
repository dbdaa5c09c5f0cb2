"""What a running server holds: the model once it is loaded, its id, and the jobs in flight."""

from __future__ import annotations

import collections
import threading
import time
from dataclasses import dataclass, field

from localpref.api import Model
from localpref.decoding import Result
from localpref.server.jobs import GenerationJob


@dataclass
class ServerState:
    """The served model (None while it loads), its id, and every generation in flight.

    ``shutdown()`` refuses new generations and cancels the running ones (each stream still
    sends its text so far and ``[DONE]``).
    """

    model_id: str | None = None
    model: Model | None = None
    #: when the model was served from (Unix seconds): ``/v1/models``' ``created``, the same
    #: in every answer as OpenAI's is
    served_since: int = 0
    closing: bool = False
    jobs: set[GenerationJob] = field(default_factory=set)
    #: the results of the last generations that ended, newest last (for inspection)
    finished: collections.deque[Result] = field(
        default_factory=lambda: collections.deque(maxlen=32))
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def ready(self) -> bool:
        return self.model is not None and self.model_id is not None

    def set_model(self, model: Model, model_id: str) -> None:
        self.model_id = model_id
        self.model = model
        self.served_since = int(time.time())

    def add(self, job: GenerationJob) -> None:
        with self._lock:
            self.jobs.add(job)

    def remove(self, job: GenerationJob) -> None:
        with self._lock:
            self.jobs.discard(job)
            if job.result is not None:
                self.finished.append(job.result)

    def shutdown(self) -> None:
        """Refuse new requests and cancel those in flight."""
        self.closing = True
        with self._lock:
            running = list(self.jobs)
        for job in running:
            job.cancel()

    def wait_for_jobs(self, timeout: float = 30.0) -> None:
        """Wait until the scheduler has ended the cancelled jobs (before the model is
        closed)."""
        with self._lock:
            running = list(self.jobs)
        for job in running:
            job.join(timeout)
