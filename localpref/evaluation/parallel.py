"""An evaluation's answers written several at once on the one loaded model (``eval --parallel``).

The grid hands ``local_generations(model, n)`` a chunk of requests; it keeps ``n`` of them in
flight, so the model's scheduler decodes their lanes in one batch per step (docs/design.md,
"Lanes and the KV cache"), and yields each ``(request, result)`` as it finishes. A request's
``LocalprefError`` is its value, as on Ray (``batches.ray_runner.ModelActor.generate``), so one
bad prompt becomes an error row and the rest go on.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import Any

from localpref.errors import LocalprefError
from localpref.request import Request

Generations = Callable[[list[Request]], Iterator[tuple[Request, Any]]]


def answer(model: Any, request: Request) -> Any:
    """The ``Result`` of one request on ``model`` (``api.Model``), or the error it raised."""
    try:
        return model.submit(request).run()[0]
    except LocalprefError as error:
        return error


def local_generations(model: Any, parallel: int) -> Generations:
    """``generations(requests)`` for ``Evaluation``: ``parallel`` requests in flight at once on
    ``model``, each ``(request, result or LocalprefError)`` yielded in the order they finish."""

    def generations(requests: Sequence[Request]) -> Iterator[tuple[Request, Any]]:
        todo = list(reversed(requests))
        with ThreadPoolExecutor(max_workers=parallel,
                                thread_name_prefix="eval-parallel") as pool:
            running: dict[Future[Any], Request] = {}
            while todo or running:
                while todo and len(running) < parallel:
                    request = todo.pop()
                    running[pool.submit(answer, model, request)] = request
                finished, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in finished:
                    yield running.pop(future), future.result()

    return generations
