"""The FastAPI application: ``/health`` (GET, HEAD), ``/v1/models`` (and ``/v1/models/{id}``),
``/v1/chat/completions`` and ``/v1/completions``.

A thin front end: each request becomes one generation run by a ``GenerationJob``;
the library decides how requests share the model (one at a time under its lock, or batched by
its scheduler) and checks every value. The contract is in docs/server.md.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse

from localpref.errors import LocalprefError
from localpref.methods import Base
from localpref.server import completions
from localpref.server.errors import (
    RETRY_AFTER_SECONDS,
    ApiError,
    from_library,
    install_error_handlers,
    unavailable,
)
from localpref.server.guards import (
    ApiKeyCheck,
    BodyLimit,
    CorsWithErrors,
    HostCheck,
    TrailingSlash,
)
from localpref.server.ids import listed_ids, parse_model_id, path_is_utf8
from localpref.server.jobs import Event, GenerationJob
from localpref.server.logprobs import answer_logprobs
from localpref.server.schemas import ChatCompletionRequest, CompletionRequest, GenerationFields
from localpref.server.state import ServerState
from localpref.server.streaming import ChoiceEvent, sse_choices, sse_events
from localpref.server.translate import (
    MANY_CHOICES,
    choice_count,
    choices_per_prompt,
    converts_a_schema,
    generation_args,
    numbered,
    prompt_bodies,
    refuse_what_base_ignores,
    requested_method,
    start_generation,
)

#: How often a waiting non-streamed request checks that its client is still there (seconds).
DISCONNECT_POLL_SECONDS = 0.25
#: The headers of a streamed answer (no proxy buffers or caches its events).
STREAM_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def create_app(state: ServerState, *, api_key: str | None = None,
               cors_origins: tuple[str, ...] = (), check_host: bool = True) -> FastAPI:
    """The application serving ``state``'s model. ``check_host``: refuse non-loopback Host
    headers (set when bound to a loopback address); CORS headers only for ``cors_origins``."""
    app = FastAPI(title="localpref", docs_url=None, redoc_url=None, openapi_url=None,
                  redirect_slashes=False)
    install_error_handlers(app)

    @app.exception_handler(LocalprefError)
    async def _library_error(request: Request, error: LocalprefError) -> JSONResponse:
        return from_library(error).response()

    app.add_middleware(BodyLimit)
    if api_key:
        app.add_middleware(ApiKeyCheck, key=api_key)
    if cors_origins:
        # a page from a named origin may call the server on this machine: Chromium's
        # private-network preflight is answered for those origins (and refused for others)
        app.add_middleware(CorsWithErrors, allow_origins=list(cors_origins),
                           allow_methods=["GET", "POST", "OPTIONS"], allow_headers=["*"],
                           allow_private_network=True)
    if check_host:
        app.add_middleware(HostCheck)

    def served() -> tuple[Any, str]:
        if state.closing:
            raise unavailable("The server is shutting down.", "shutting_down")
        if not state.ready:
            raise unavailable("The model is still loading; try again in a moment.",
                              "model_loading")
        return state.model, state.model_id

    @app.api_route("/health", methods=["GET", "HEAD"])
    async def health() -> JSONResponse:
        if state.ready and not state.closing:
            return JSONResponse({"status": "ok"})
        status = "closing" if state.closing else "loading"
        return JSONResponse({"status": status}, status_code=503,
                            headers={"Retry-After": str(RETRY_AFTER_SECONDS)})

    @app.api_route("/v1/models", methods=["GET", "HEAD"])
    async def list_models() -> dict[str, Any]:
        _, model_id = served()
        return {"object": "list", "data": [model_entry(ident, state.served_since)
                                           for ident in listed_ids(model_id)]}

    @app.api_route("/v1/models/{requested:path}", methods=["GET", "HEAD"])
    async def retrieve_model(requested: str, request: Request) -> dict[str, Any]:
        _, model_id = served()
        if not path_is_utf8(request.scope.get("raw_path")):  # decoded, it read U+FFFD
            raise ApiError(404, f"The model id '{requested}' has percent-encoded bytes that "
                           "are not UTF-8 text, so it names no model here.",
                           code="model_not_found", param="model")
        try:
            steering = parse_model_id(requested, model_id)
            if isinstance(requested_method(steering.method, None, None, None), Base):
                refuse_what_base_ignores(steering.preference, None, "model")
        except LocalprefError as error:
            raise ApiError(404, str(error), code="model_not_found", param="model") from None
        return model_entry(requested, state.served_since)

    @app.post("/v1/chat/completions")
    async def chat_completions(body: ChatCompletionRequest, request: Request) -> Any:
        return await generate(body, request, completions.CHAT)

    @app.post("/v1/completions")
    async def text_completions(body: CompletionRequest, request: Request) -> Any:
        return await generate(body, request, completions.TEXT)

    async def generate(body: GenerationFields, request: Request,
                       shape: completions.Shape) -> Any:
        model, model_id = served()
        count = choice_count(body)
        if count > 1:
            return await answer_several(body, count, request, model, model_id, shape)
        args = (await asyncio.to_thread(generation_args, body, model_id, model)
                if converts_a_schema(body) else generation_args(body, model_id, model))
        job, first = await started(args, request)
        logprobs = answer_logprobs(args, model.vocabulary, shape)
        if body.stream:
            include_usage = bool(body.stream_options and body.stream_options.include_usage)
            return StreamingResponse(
                sse_events(job, first, model=body.model, avoid=args.avoid,
                           include_usage=include_usage, shape=shape, logprobs=logprobs),
                media_type="text/event-stream", headers=STREAM_HEADERS,
            )
        result = await ended(job, first, request)
        return completions.completion(result, model=body.model, avoid=args.avoid,
                                      ident=shape.new_id(), created=completions.now(),
                                      shape=shape,
                                      logprobs=logprobs(result) if logprobs else None)

    async def started(args: Any, request: Request,
                      continuing: bool = False) -> tuple[GenerationJob, Event]:
        """The generation queued, and its first event (an error before any text raised, so
        that it is an HTTP error status). ``continuing``: a later choice of a request whose
        first is queued, never refused for the queue's length (``Scheduler.enqueue``)."""
        job = GenerationJob(lambda: start_generation(state.model, args),
                            asyncio.get_running_loop(), on_end=state.remove,
                            continuing=continuing)
        state.add(job)
        if args.big:
            await job.begin_in_worker()
        else:
            job.begin()
        first = await next_event(job, request)
        if first[0] == "error":
            raise from_library(first[1])
        if first[0] == "done" and state.closing and not first[1].tokens:
            # cancelled by the shutdown before it wrote anything (it waited in the queue): a
            # 503 the client may retry elsewhere, not an empty answer it would take as final
            raise unavailable("The server is shutting down.", "shutting_down")
        return job, first

    async def ended(job: GenerationJob, event: Event, request: Request) -> Any:
        """The job's result, read from ``event`` on."""
        while event[0] == "piece":
            event = await next_event(job, request)
        if event[0] == "error":
            raise from_library(event[1])
        return event[1]

    async def answer_several(body: GenerationFields, count: int, request: Request,
                             model: Any, model_id: str, shape: completions.Shape) -> Any:
        """Several prompts in one text completion (what LangChain's ``OpenAI.batch`` sends),
        or ``n`` > 1 choices (``prompt_bodies``): choice i answers as a request of its own
        would, at most as many at once as the server runs two-lane requests, so that one
        body never fills the queue alone. Every body is checked before any is queued; a
        failure cancels the others. The ``n`` choices of one prompt may be streamed. The
        choices of a body with many (up to 128 for each of its prompts) are made in a worker
        thread, as a big request is: the streams already running go on meanwhile. The body's
        first round (as many choices as run at once) is queued as one request is, checked
        against ``max_queued``; a later choice, queued as an earlier one ends, is never refused
        for the queue's length, which requests sent after the body may have filled meanwhile
        (an n = 3 stream ended in queue_full after 200 and two choices).
        ``count``: how many choices (``choice_count``)."""
        per_prompt = choices_per_prompt(body)
        if body.stream and count > per_prompt:
            raise ApiError(400, "Several prompts are answered only without streaming; send "
                           "stream false, or one prompt per request.", param="prompt",
                           code="invalid_value")

        def made() -> list[Any]:
            return numbered([generation_args(one, model_id, model)
                             for one in prompt_bodies(body)], per_prompt)

        every_args = (await asyncio.to_thread(made)
                      if count > MANY_CHOICES or converts_a_schema(body) else made())
        lanes = max(1, model.max_lanes // 2)
        logprobs = answer_logprobs(every_args[0], model.vocabulary, shape)
        if body.stream:
            return await stream_choices(body, every_args, request, asyncio.Semaphore(lanes),
                                        shape, logprobs)
        results: list[Any] = [None] * len(every_args)
        waiting = iter(enumerate(every_args))

        async def answer_in_turn() -> None:  # a task per lane, not one per choice
            continuing = False  # the first round is the body's own: checked, as one request
            for index, args in waiting:
                job, first = await started(args, request, continuing=continuing)
                results[index] = await ended(job, first, request)
                continuing = True  # the next is queued as this one ended

        tasks = [asyncio.ensure_future(answer_in_turn()) for _ in range(lanes)]
        try:
            await asyncio.gather(*tasks)
        except BaseException:
            for task in tasks:
                task.cancel()  # a cancelled handler cancels its job (``next_event``)
            await asyncio.gather(*tasks, return_exceptions=True)
            raise
        return completions.several(results, model=body.model, avoid=every_args[0].avoid,
                                   created=completions.now(), shape=shape,
                                   per_prompt=per_prompt,
                                   logprobs=[logprobs(r) for r in results] if logprobs
                                   else None)

    async def stream_choices(body: GenerationFields, every_args: list[Any], request: Request,
                             window: asyncio.Semaphore, shape: completions.Shape,
                             logprobs: Any) -> StreamingResponse:
        """The ``n`` choices of one prompt streamed as one completion (``sse_choices``),
        each generation's events forwarded, tagged with its index, into one queue. Every
        choice's request is checked before any is queued, and an error before the first
        piece of any is an HTTP error status, as for one choice."""
        for args in every_args:
            try:
                args.request()
            except LocalprefError as error:
                raise from_library(error) from None
        events: asyncio.Queue[ChoiceEvent] = asyncio.Queue()
        ended_choices = 0  # a choice queued after one ended continues the accepted body

        async def forward(index: int, args: Any) -> None:
            nonlocal ended_choices
            async with window:
                try:
                    job, event = await started(args, request, continuing=ended_choices > 0)
                except Exception as error:  # noqa: BLE001 - the stream sends it, or its status
                    events.put_nowait((index, ("error", error)))
                    return
                while True:
                    events.put_nowait((index, event))
                    if event[0] != "piece":
                        ended_choices += 1  # (before the window lets the next one in)
                        return
                    event = await next_event(job, request)

        tasks = [asyncio.ensure_future(forward(index, args))
                 for index, args in enumerate(every_args)]

        def close() -> None:
            for task in tasks:
                task.cancel()  # a cancelled handler cancels its job (``next_event``)

        try:
            first = await events.get()
        except BaseException:
            close()
            raise
        if first[1][0] == "error":
            close()
            raise from_library(first[1][1])
        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        return StreamingResponse(
            sse_choices(events, first, len(every_args), model=body.model,
                        avoid=every_args[0].avoid, include_usage=include_usage,
                        on_close=close, shape=shape, logprobs=logprobs),
            media_type="text/event-stream", headers=STREAM_HEADERS,
        )

    # a route with trailing slashes is that route (the last middleware added runs first)
    paths = [str(getattr(route, "path", "")) for route in app.routes]
    app.add_middleware(TrailingSlash,
                       paths=frozenset(path for path in paths if "{" not in path),
                       prefixes=tuple(path.split("{", 1)[0] for path in paths if "{" in path))
    return app


def model_entry(ident: str, created: int) -> dict[str, Any]:
    """One model object of ``/v1/models``."""
    return {"id": ident, "object": "model", "created": created, "owned_by": "localpref"}


async def next_event(job: GenerationJob, request: Request) -> Event:
    """The job's next event; a client that went away meanwhile cancels the job."""
    getter = asyncio.ensure_future(job.events.get())
    try:
        while True:
            done, _ = await asyncio.wait({getter}, timeout=DISCONNECT_POLL_SECONDS)
            # Asked also while events keep coming: the scheduler writes without waiting for
            # the client, so a gone client would otherwise be noticed only at the end.
            due = time.monotonic() - job.disconnect_checked_at >= DISCONNECT_POLL_SECONDS
            if (not done or due) and not job.cancelled:
                job.disconnect_checked_at = time.monotonic()
                if await request.is_disconnected():
                    job.cancel()
            if done:
                return getter.result()
    finally:
        if not getter.done():  # this handler was cancelled: so is the job
            getter.cancel()
            job.cancel()
