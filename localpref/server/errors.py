"""OpenAI-shaped errors: ``{"error": {"message", "type", "param", "code"}}`` for every failure.

The library's ``LocalprefError`` sentences about the request become 400s; ``BusyError`` (the
queue is full) is a 503 with ``Retry-After``, a ``ModelError`` (the engine or the model file
failing, never the client's doing) a 500 with its sentence, an unknown model id a 404.
FastAPI's 422 validation errors become 400s and its own 404 and 405 take the same shape. An
unexpected exception is a 500 whose message names no internals: its traceback goes to the
server's log, never to the client.
"""

from __future__ import annotations

import difflib
import json
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from localpref import json_reading
from localpref.engine import MAX_LANES
from localpref.errors import (
    BusyError,
    LocalprefError,
    ModelError,
    PromptTooLongError,
    TooManyLanesError,
)
from localpref.server.ids import UnknownModelError
from localpref.server.schemas import LocalprefOptions

#: Seconds a client is told to wait before trying again (loading, or a full queue).
RETRY_AFTER_SECONDS = 2

_TYPES = {400: "invalid_request_error", 401: "authentication_error", 404: "not_found_error",
          405: "invalid_request_error", 413: "invalid_request_error",
          415: "invalid_request_error", 503: "server_error"}


class ApiError(Exception):
    """An error answer: HTTP status, one sentence, and the OpenAI fields."""

    def __init__(self, status: int, message: str, *, code: str | None = None,
                 param: str | None = None, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.param = param
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return error_body(self.status, self.message, code=self.code, param=self.param)

    def response(self) -> JSONResponse:
        return JSONResponse(self.body(), status_code=self.status, headers=self.headers)


def error_body(status: int, message: str, *, code: str | None = None,
               param: str | None = None) -> dict[str, Any]:
    """The JSON of an error answer (a lone surrogate the message repeats from the request,
    which UTF-8 cannot write, as U+FFFD)."""
    return {"error": {"message": _writable(message), "type": _TYPES.get(status, "server_error"),
                      "param": param, "code": code}}


def _writable(text: str) -> str:
    """``text`` with each surrogate code point as U+FFFD (a Python text holds only lone ones:
    JSON's escaped pairs are read as one character)."""
    return "".join("\ufffd" if "\ud800" <= char <= "\udfff" else char for char in text)


#: The start of a too-long prompt's message: LangChain (``ContextOverflowError``) and litellm
#: (``ContextWindowExceededError``) tell an overflow by the words "prompt is too long" in it,
#: not by its ``code``, since the openai SDK 3 reports the message alone.
TOO_LONG = "The prompt is too long for the model's context:"


def unavailable(message: str, code: str) -> ApiError:
    """A 503 with ``Retry-After``."""
    return ApiError(503, message, code=code, headers={"Retry-After": str(RETRY_AFTER_SECONDS)})


#: The library's settings that a request sends in its ``localpref`` object (the others, such as
#: ``temperature``, are OpenAI's own fields of the same name; an unknown ``method`` is named by
#: ``translate.generation_args``, which knows where it came from).
LIBRARY_ONLY_FIELDS = frozenset({"preference", "avoid", "like", "opposite"})


def from_library(error: Exception) -> ApiError:
    """The answer to an exception raised while preparing or running a generation."""
    if isinstance(error, ApiError):
        return error
    if isinstance(error, UnknownModelError):
        return ApiError(404, str(error), code="model_not_found", param="model")
    if isinstance(error, BusyError):
        return unavailable(str(error), "queue_full")
    if isinstance(error, ModelError):
        return ApiError(500, str(error), code="model_error")
    if isinstance(error, PromptTooLongError):  # OpenAI's code, which clients look for
        message = str(error)
        if "prompt is too long" not in message:  # the words LangChain and litellm match
            said = message.removeprefix("The prompt is ")
            message = (f"{TOO_LONG} it is {said}" if said != message
                       else f"{TOO_LONG} {message[:1].lower()}{message[1:]}")
        return ApiError(400, message, code="context_length_exceeded", param=error.param)
    if isinstance(error, TooManyLanesError):
        # A request's own lanes: a choice of ``n`` runs as a request of its own, so what
        # adds lanes to one is its weighted preferences (a lane each, and one for examples)
        parallel = -(-error.needed // 2)
        if error.needed > MAX_LANES:
            return ApiError(400, f"This request needs {error.needed} lanes at once, more than a "
                            f"llama.cpp context holds ({MAX_LANES}); give fewer weighted "
                            "preferences.", code="too_many_lanes", param="localpref.preference")
        # (said by `serve` and by `batch`, whose --parallel sizes the model the same way)
        return ApiError(400, f"This request needs {error.needed} lanes at once and the model "
                        f"decodes {error.available}; run with --parallel {parallel} or more "
                        "(each --parallel request is two lanes).", code="too_many_lanes",
                        param="localpref.preference")
    if isinstance(error, LocalprefError):  # a SettingsError names its field (``param``)
        param = getattr(error, "param", None)
        return ApiError(400, str(error), code="invalid_value",
                        param=f"localpref.{param}" if param in LIBRARY_ONLY_FIELDS else param)
    return ApiError(500, "The server failed while generating; see its log.", code="internal_error")


#: What Starlette's ``Request.json()`` says of a body it cannot decode.
BODY_PARSE_DETAIL = "There was an error parsing the body"


def why_not_json(body: bytes) -> str:
    """Why ``body`` did not decode, in one sentence: Python's JSON reader also refuses valid
    JSON (``json_reading``)."""
    try:
        json_reading.loads(body)
    except json_reading.JSONProblem as problem:
        if problem.kind == json_reading.DEPTH:
            return "The request body's JSON nests arrays or objects too deeply."
        if problem.kind == json_reading.DIGITS:
            return "A number in the request body has more than 4,300 digits."
    return "The request body is not valid JSON."


def unknown_localpref_field(name: str) -> str:
    """The sentence for a field the ``localpref`` object does not have (a misspelled one
    would otherwise be ignored and the answer silently unsteered)."""
    fields = list(LocalprefOptions.model_fields)
    close = difflib.get_close_matches(name, fields, n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    return (f"localpref.{name} is not a field of the localpref object; {hint}"
            f"it takes {', '.join(fields)}.")


#: The names pydantic gives the members of a union in an error's location (``stop.str``).
_TYPE_TAGS = frozenset({"str", "int", "float", "bool", "none", "dict", "list"})


def field_path(location: list[object]) -> str | None:
    """A field's path as the error's ``param`` writes it: ``messages[0].role``,
    ``localpref.tau`` (None for the body itself)."""
    path = ""
    for part in location:
        path += f"[{part}]" if isinstance(part, int) else f".{part}" if path else str(part)
    return path or None


def _is_field(part: object) -> bool:
    """Whether a part of a validation error's location names a field or an index (not the
    body, nor a union member such as ``str``, ``list[str]`` or a model's class name)."""
    if isinstance(part, int):
        return True
    text = str(part)
    return (text != "body" and text not in _TYPE_TAGS and text.islower()
            and text.replace("_", "").isalnum())


def validation_message(error: RequestValidationError) -> tuple[str, str | None]:
    """The first validation problem as one sentence, and the field it is about."""
    problems = error.errors()
    if not problems:
        return "The request body is not valid.", None
    first = problems[0]
    location = [part for part in first.get("loc", ()) if _is_field(part)]
    param = field_path(location)
    kind = first.get("type")
    if kind == "json_invalid":
        return "The request body is not valid JSON.", None
    if kind == "extra_forbidden" and len(location) == 2 and location[0] == "localpref":
        return unknown_localpref_field(str(location[1])), param
    if param is None and kind == "missing":
        return "The request body is empty; send a JSON object.", None
    if param is None and kind in ("model_attributes_type", "dict_type", "model_type"):
        return _not_an_object(first.get("input")), None
    if (kind == "literal_error" and len(location) == 3 and location[0] == "messages"
            and location[2] == "role" and first.get("input") in ("tool", "function")):
        return (f"{param}: {first['input']} messages are not supported (no tool calling); "
                "send the conversation without tool results."), param
    union = _union_kinds(problems)
    if union is not None:
        base, kinds = union
        whole = [problem["input"] for problem in problems
                 if _union_word(tuple(problem.get("loc", ()))[-1]) is not None]
        got = f" (got {shown_json(whole[0])})" if whole else ""
        return f"{base} must be {_joined(kinds)}{got}.", base
    if kind == "too_short" and param is not None:
        least = first.get("ctx", {}).get("min_length", 1)
        return f"{param} must hold at least {least} item{'s' if least != 1 else ''}.", param
    text = str(first.get("msg", "is not valid"))
    return (f"{param}: {text}." if param else f"{text}.").replace("..", "."), param


#: The words for the members of a union as pydantic tags them in a location.
_UNION_WORDS = {"str": "a text", "list[str]": "a list of texts", "dict[str,any]": "an object",
                "int": "a whole number", "float": "a number", "bool": "true/false"}


def _union_word(tag: object) -> str | None:
    """The words for a union member's tag (``list[...]`` of another kind: "a list")."""
    if not isinstance(tag, str):
        return None
    word = _UNION_WORDS.get(tag)
    if word is None and tag.startswith("list["):
        return "a list"
    if word is None and tag.startswith("dict["):
        return "an object"
    return word


def _union_kinds(problems: list[dict[str, Any]]) -> tuple[str, list[str]] | None:
    """Where the first problem is a value that fits none of a field's kinds (``str | list``:
    pydantic reports one error per member, and the first alone, "Input should be a valid
    string", hid that a list would do): the field's path and the words for its kinds."""
    def split(location: tuple[object, ...]) -> tuple[str | None, str | None]:
        for index, part in enumerate(location):
            if _union_word(part) is not None:
                return field_path([p for p in location[:index] if _is_field(p)]), str(part)
        return None, None

    base, _ = split(tuple(problems[0].get("loc", ())))
    if base is None:
        return None
    kinds = []
    for problem in problems:
        where, tag = split(tuple(problem.get("loc", ())))
        word = _union_word(tag)
        if where == base and word is not None and word not in kinds:
            kinds.append(word)
    if "a list" in kinds and any(kind.startswith("a list of") for kind in kinds):
        kinds.remove("a list")  # (a prompt's token ids, refused later by a sentence of its own)
    return (base, kinds) if len(kinds) > 1 else None


def _joined(words: list[str]) -> str:
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + f" or {words[-1]}"


#: The JSON name of each kind of value a parsed body may be instead of an object.
_JSON_KINDS = ((bool, "true or false"), (str, "a string"), (int, "a number"),
               (float, "a number"), (list, "an array"), (type(None), "null"))


def _not_an_object(body: object) -> str:
    """Why a body that is not a JSON object was refused: the bytes of a body not sent as
    JSON (no ``Content-Type: application/json``), or what the JSON is instead."""
    kind = next((name for type_, name in _JSON_KINDS if isinstance(body, type_)), None)
    if kind is None:
        return ("The request body must be a JSON object sent with Content-Type: "
                "application/json (curl -d needs -H 'Content-Type: application/json').")
    return f"The request body must be a JSON object, not {kind}."


def shown_json(value: object) -> str:
    """A value as JSON, cut to 40 characters: what an error sentence says it got."""
    text = json.dumps(value, default=str)
    return text if len(text) <= 40 else text[:39] + "…"


def install_error_handlers(app: FastAPI) -> None:
    """Give every error FastAPI or the library raises the OpenAI shape."""

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, error: ApiError) -> JSONResponse:
        return error.response()

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, error: RequestValidationError) -> JSONResponse:
        message, param = validation_message(error)
        return ApiError(400, message, code="invalid_request", param=param).response()

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, error: StarletteHTTPException) -> JSONResponse:
        if error.status_code == 404:
            message = f"There is no route {request.method} {request.url.path}."
            code = "not_found"
        elif error.status_code == 405:
            message = f"{request.url.path} does not accept {request.method}."
            code = "method_not_allowed"
        elif error.status_code == 400 and isinstance(error.__cause__, ClientDisconnect):
            # the client went away before its whole body came: nobody reads this answer,
            # and reading the body again would only fail again (in the server's log)
            message, code = "The request's body ended before its Content-Length.", None
        elif error.status_code == 400 and error.detail == BODY_PARSE_DETAIL:
            # Starlette's words for a body it could not decode: said as what it is
            message, code = why_not_json(await request.body()), "invalid_request"
        else:
            message, code = str(error.detail), None
        return ApiError(error.status_code, message, code=code,
                        headers=dict(error.headers or {})).response()

    @app.exception_handler(Exception)
    async def _crash(request: Request, error: Exception) -> JSONResponse:
        return from_library(error).response()
