"""One request line answered exactly as ``localpref serve`` answers the same body.

The body is validated by the server's own request model, translated by the server's own
``generation_args`` and answered with the server's own completion object; every failure gets the
server's status and error object (``localpref.server.errors``). So a file that works against the
server works here and the other way round. A ``stream`` flag is ignored: an answer line holds
the whole completion. This module imports the server package (and so the web stack); the
library imports it only when a batch runs.
"""

from __future__ import annotations

import json
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError

from localpref.api import Model
from localpref.batches.lines import BatchLine, answer_line
from localpref.decoding import Generation
from localpref.errors import BusyError, LocalprefError
from localpref.scheduler import Scheduler
from localpref.server import completions
from localpref.server.errors import ApiError, from_library, validation_message
from localpref.server.guards import MAX_BODY_BYTES, body_too_large
from localpref.server.ids import served_model_id
from localpref.server.logprobs import answer_logprobs
from localpref.server.schemas import ChatCompletionRequest, CompletionRequest
from localpref.server.translate import (
    GenerationArgs,
    choices_per_prompt,
    generation_args,
    numbered,
    prompt_bodies,
    start_generation,
)


@dataclass(frozen=True)
class Route:
    """A route a batch line may name: its request model, the translation of a validated body
    into the generation's arguments, and the kind of answer built from the result."""

    schema: type[BaseModel]
    translate: Callable[[Any, str, Model], GenerationArgs]
    shape: completions.Shape = completions.CHAT

    def answer(self, result: Any, *, model: str, avoid: Any,
               logprobs: Any = None) -> dict[str, Any]:
        """The ``chat.completion`` (or ``text_completion``) object, as the server builds it."""
        return completions.completion(result, model=model, avoid=avoid,
                                      ident=self.shape.new_id(), created=completions.now(),
                                      shape=self.shape, logprobs=logprobs)


#: The routes of ``localpref serve`` that a batch line may name.
ROUTES: dict[str, Route] = {
    "/v1/chat/completions": Route(ChatCompletionRequest, generation_args),
    "/v1/completions": Route(CompletionRequest, generation_args, completions.TEXT),
}


def validated(schema: type[BaseModel], body: Any) -> Any:
    """``body`` as the server's request model; a bad field is the server's 400 (so is a
    missing or null body, as a request without one is)."""
    if not isinstance(body, dict):
        raise ApiError(400, "The request body must be a JSON object.", code="invalid_request",
                       param="body")
    try:
        return schema.model_validate(body)
    except ValidationError as error:
        # The same problems FastAPI reports, located in the body as it locates them.
        problems = [{**problem, "loc": ("body", *problem.get("loc", ()))}
                    for problem in error.errors()]
        message, param = validation_message(RequestValidationError(problems))
        raise ApiError(400, message, code="invalid_request", param=param) from None


def body_bytes(body: Any) -> int:
    """The size of ``body`` sent as compact JSON: what the server's body limit would weigh."""
    text = json.dumps(body, ensure_ascii=False, separators=(",", ":"))
    # a lone surrogate is weighed too: the body's own check then says what is wrong with it
    return len(text.encode("utf-8", "surrogatepass"))


#: How long a line waits before it asks a full queue again (``_start_when_queued``).
QUEUE_RETRY_SECONDS = 0.05
#: Refusals in a row with nothing running or queued before a line takes the refusal as its
#: answer (``_start_when_queued``): a second of them.
IDLE_REFUSALS = 20


def _start_when_queued(generation: Generation, scheduler: Scheduler) -> None:
    """Hand ``generation`` to the scheduler, waiting while the model's queue is full of work
    that will end: the batch is the model's own client, so a full queue (a loaded ``Model``
    given with a ``parallel`` above its ``max_queued``, or other threads using it) means wait,
    not a 503 line. Refused for ``IDLE_REFUSALS`` tries in a row with nothing running or
    queued, nothing will free a lane (the queue takes an idle chat's lanes as free, so this
    is a safety net, not a case known today): the ``BusyError`` is the line's answer then,
    never a wait for good. A generation cancelled meanwhile starts no more (``start`` then
    does nothing)."""
    idle_refusals = 0
    while True:
        try:
            generation.start()
            return
        except BusyError:
            # (a request that ended between the refusal and this look: try again)
            idle_refusals = 0 if scheduler.running or scheduler.queued else idle_refusals + 1
            if idle_refusals > IDLE_REFUSALS:
                raise
            time.sleep(QUEUE_RETRY_SECONDS)


def served_id(model: Model, spec: str | None) -> str:
    """The id request bodies name the model by, as ``localpref serve`` would serve it."""
    return served_model_id(spec, model.path)


def route_path(url: str) -> str:
    """The route a line's ``url`` names, as the server finds it: its path without a query
    (``?x=1``, which the server's routes ignore) and without one trailing slash (which the
    server redirects to the route)."""
    path = url.split("?", 1)[0]
    return path[:-1] if path.endswith("/") and len(path) > 1 else path


class Answerer:
    """Answers request lines with ``model`` served as ``served_id`` (thread-safe: any number
    of threads may answer at once; the model's scheduler decodes them in one batch)."""

    def __init__(self, model: Model, served_id: str) -> None:
        self.model = model
        self.served_id = served_id

    def checked(self, line: BatchLine) -> tuple[Route, list[Any], list[GenerationArgs], int]:
        """Check ``line``: its route, its bodies (one per prompt of a text completion with
        several, and ``n`` of each with ``n`` > 1, each answered as if sent alone, as the
        server does), the generations' arguments and the choices per prompt (``n``), every
        body checked before any is decoded; raises ``ApiError`` or the library's."""
        route = ROUTES.get(route_path(line.url))
        if line.wrong_type is not None:
            example = "/v1/chat/completions" if line.wrong_type == "url" else "POST"
            raise ApiError(400, f"The request's {line.wrong_type} must be a string, such as "
                           f"\"{example}\".", param=line.wrong_type, code="invalid_request")
        if not line.url:
            raise ApiError(400, "The request has no url; give /v1/chat/completions or "
                           "/v1/completions.", param="url", code="missing_required_parameter")
        if route is None:
            raise ApiError(404, f"There is no route {line.method} {line.url}.",
                           code="not_found")
        if line.method != "POST":
            raise ApiError(405, f"{line.url} does not accept {line.method}.",
                           code="method_not_allowed")
        if body_bytes(line.body) > MAX_BODY_BYTES:
            raise body_too_large()
        body = validated(route.schema, line.body)
        requests = prompt_bodies(body)
        per_prompt = choices_per_prompt(body)
        every_args = numbered([route.translate(one, self.served_id, self.model)
                               for one in requests], per_prompt)
        return route, requests, every_args, per_prompt

    def answer(self, line: BatchLine, *, on_piece: Callable[[str], None] | None = None,
               on_start: Callable[[Generation], None] | None = None) -> dict[str, Any] | None:
        """The answer line of ``line``; None when its generation was cancelled (``on_start``
        gets each generation, whose ``cancel()`` stops it: a cancelled answer is never kept).
        A text completion with several prompts, or ``n`` > 1, answers them one after
        another."""
        generation: Generation | None = None
        try:
            route, requests, every_args, per_prompt = self.checked(line)
            results = []
            for args in every_args:
                generation = start_generation(self.model, args)
                if on_start is not None:
                    on_start(generation)
                _start_when_queued(generation, self.model.scheduler)
                for piece in generation:
                    if on_piece is not None:
                        on_piece(piece)
                result = generation.result
                generation.close()
                generation = None
                if result is None or result.stats.get("stop_reason") == "cancelled":
                    return None
                results.append(result)
            build = answer_logprobs(every_args[0], self.model.vocabulary, route.shape)
            logprobs = [build(result) for result in results] if build is not None else None
            if len(results) > 1:
                body = completions.several(results, model=requests[0].model,
                                           avoid=every_args[0].avoid,
                                           created=completions.now(), shape=route.shape,
                                           per_prompt=per_prompt,
                                           logprobs=logprobs)
            else:
                body = route.answer(results[0], model=requests[0].model,
                                    avoid=every_args[0].avoid,
                                    logprobs=logprobs[0] if logprobs else None)
            return answer_line(line, 200, body)
        except Exception as error:  # noqa: BLE001 - every failure becomes an error line
            if not isinstance(error, (LocalprefError, ApiError)):  # a bug: keep its traceback
                traceback.print_exc(file=sys.stderr)
            failure = from_library(error)
            return answer_line(line, failure.status, failure.body())
        finally:
            if generation is not None:
                generation.close()
