"""Requests answered several at once on the one loaded model, each handed back as it finishes.

``answers_as_they_finish(model, requests, n)`` keeps ``n`` requests in flight (one thread each
waits for its answer; the model's scheduler decodes all their lanes in one batch per step,
docs/design.md, "Lanes and the KV cache") and yields each ``(request, result)`` in the order
they finish. A request's ``LocalprefError`` is its value, as on Ray
(``batches.ray_runner.ModelActor.generate``), so one bad prompt does not stop the rest. Leaving
early (Ctrl-C, an error in the caller, closing the iterator) cancels what is in flight and
waits for its lanes. ``eval --parallel`` (``local_generations``) and ``localpref calibrate``
(``calibration.sweep.run_units``) use it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import Any

from localpref.errors import LocalprefError
from localpref.request import Request

Generations = Callable[[Sequence[Request]], Iterator[tuple[Request, Any]]]


def answer(model: Any, request: Request) -> Any:
    """The ``Result`` of one request on ``model`` (``api.Model``), or the error it raised."""
    try:
        return model.submit(request).run()[0]
    except LocalprefError as error:
        return error


def answers_as_they_finish(model: Any, requests: Iterable[Request],
                           parallel: int) -> Iterator[tuple[Request, Any]]:
    """``(request, result or LocalprefError)`` for each of ``requests`` (read lazily),
    ``parallel`` in flight at once on ``model``, in the order they finish."""
    live: set[Any] = set()
    lock = threading.Lock()
    stop = threading.Event()

    def run(request: Request) -> Any:
        try:
            generation = model.submit(request)
            with lock:
                if stop.is_set():
                    generation.cancel()
                live.add(generation)
            try:
                return generation.run()[0]
            finally:
                with lock:
                    live.discard(generation)
        except LocalprefError as error:
            return error

    pending = iter(requests)
    pool = ThreadPoolExecutor(max_workers=parallel, thread_name_prefix="localpref-answers")
    running: dict[Future[Any], Request] = {}
    try:
        for request in pending:
            running[pool.submit(run, request)] = request
            if len(running) >= parallel:
                break
        while running:
            finished, _ = wait(list(running), return_when=FIRST_COMPLETED)
            for future in finished:
                yield running.pop(future), future.result()
                following = next(pending, None)
                if following is not None:
                    running[pool.submit(run, following)] = following
    finally:
        if running:  # left early: end what runs, keep nothing of it
            stop.set()
            with lock:
                for generation in list(live):
                    generation.cancel()
        pool.shutdown(wait=True, cancel_futures=True)


def local_generations(model: Any, parallel: int) -> Generations:
    """``generations(requests)`` for ``Evaluation`` (``eval --parallel``): the requests
    ``parallel`` at a time on ``model``."""

    def generations(requests: Sequence[Request]) -> Iterator[tuple[Request, Any]]:
        return answers_as_they_finish(model, requests, parallel)

    return generations
