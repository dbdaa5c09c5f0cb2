"""The OpenAI answer objects built from results: ``chat.completion`` / ``chat.completion.chunk``
for chat, ``text_completion`` (whole and streamed) for legacy text completions.

Besides the standard fields an answer carries ``"localpref": {"method", "preference",
"avoid", "stats"}`` with the library's statistics (the last chunk of a stream carries it too).
``Shape`` says which kind of object an endpoint answers with, so that the routes and the
stream share one code path.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass
from typing import Any

from localpref.decoding import Result

#: The library's stop reasons as OpenAI finish reasons. A request cancelled by the server's
#: shutdown ends as "length", OpenAI's reason for an answer cut short: its text so far is the
#: client's, and it is not told the answer ended of itself.
FINISH_REASONS = {"eos": "stop", "stop": "stop", "length": "length", "cancelled": "length"}


@dataclass(frozen=True)
class Shape:
    """What an endpoint answers with: ``chat`` (messages and deltas) or ``text``."""

    kind: str  # "chat" or "text"

    @property
    def chat(self) -> bool:
        return self.kind == "chat"

    def new_id(self) -> str:
        return f"chatcmpl-{uuid.uuid4().hex}" if self.chat else f"cmpl-{uuid.uuid4().hex}"

    @property
    def object(self) -> str:
        return "chat.completion" if self.chat else "text_completion"

    @property
    def chunk_object(self) -> str:
        return "chat.completion.chunk" if self.chat else "text_completion"

    def choice(self, text: str | None, *, whole: bool, finish: str | None,
               logprobs: Any = None, role: bool = False, index: int = 0) -> dict[str, Any]:
        """One choice: the whole ``message`` / a ``delta`` (chat) or its ``text``."""
        if not self.chat:
            return {"index": index, "text": text or "", "logprobs": logprobs,
                    "finish_reason": finish}
        if whole:
            return {"index": index, "message": {"role": "assistant", "content": text},
                    "finish_reason": finish, "logprobs": logprobs}
        delta: dict[str, Any] = {}
        if role:
            delta["role"] = "assistant"
        if text is not None:
            delta["content"] = text
        return {"index": index, "delta": delta, "finish_reason": finish, "logprobs": logprobs}


CHAT = Shape("chat")
TEXT = Shape("text")


def finish_reason(result: Result) -> str:
    return FINISH_REASONS.get(str(result.stats.get("stop_reason")), "stop")


def usage(result: Result) -> dict[str, Any]:
    """Token counts; ``prompt_tokens`` is the longest lane's prompt, and its
    ``prompt_tokens_details.cached_tokens`` the part of it found in the cache (a finished
    request's kept cells, as OpenAI's prompt caching reports it)."""
    prompt = int(result.stats.get("n_prompt_tokens", 0))
    completion = len(result.tokens)
    cached = int(result.stats.get("cached_tokens", 0))
    return {"prompt_tokens": prompt, "completion_tokens": completion,
            "total_tokens": prompt + completion,
            "prompt_tokens_details": {"cached_tokens": cached}}


def localpref_extension(result: Result, avoid: Any) -> dict[str, Any]:
    """The ``localpref`` object: method, preference, avoid and stats (JSON-safe)."""
    stats = json.loads(json.dumps(result.stats, default=str))
    return {
        "method": stats.get("method"),
        "preference": stats.get("preference"),
        "avoid": stats.get("avoid", avoid),
        "stats": stats,
    }


def completion(result: Result, *, model: str, avoid: Any, ident: str, created: int,
               shape: Shape = CHAT, logprobs: Any = None) -> dict:
    """The whole answer as a ``chat.completion`` (or ``text_completion``) object."""
    return {
        "id": ident,
        "object": shape.object,
        "created": created,
        "model": model,
        "choices": [shape.choice(result.text, whole=True, finish=finish_reason(result),
                                 logprobs=logprobs)],
        "usage": usage(result),
        "localpref": localpref_extension(result, avoid),
    }


def several(results: list[Result], *, model: str, avoid: Any, created: int,
            shape: Shape = TEXT, per_prompt: int = 1, logprobs: list[Any] | None = None
            ) -> dict:
    """The answers to one request's several prompts (a text completion's list) or ``n`` >
    1 choices (``per_prompt`` results a prompt, in OpenAI's order): choice i is result i,
    with its own ``localpref`` object; the completion tokens are their sum, the prompt
    tokens each prompt's once (as OpenAI counts ``n`` choices), and the top-level
    ``localpref`` object the first answer's."""
    choices = []
    for index, result in enumerate(results):
        choice = shape.choice(result.text, whole=True, finish=finish_reason(result),
                              logprobs=logprobs[index] if logprobs else None, index=index)
        choice["localpref"] = localpref_extension(result, avoid)
        choices.append(choice)
    return {"id": shape.new_id(), "object": shape.object, "created": created, "model": model,
            "choices": choices, "usage": several_usage(results, per_prompt),
            "localpref": localpref_extension(results[0], avoid)}


def several_usage(results: list[Result], per_prompt: int = 1) -> dict[str, Any]:
    """The usage of several answers, ``per_prompt`` a prompt: the completion tokens summed,
    each prompt's tokens (and cached tokens) once."""
    prompts = [usage(result) for result in results[::per_prompt]]
    prompt = sum(one["prompt_tokens"] for one in prompts)
    written = sum(len(result.tokens) for result in results)
    return {"prompt_tokens": prompt, "completion_tokens": written,
            "total_tokens": prompt + written,
            "prompt_tokens_details": {"cached_tokens": sum(
                one["prompt_tokens_details"]["cached_tokens"] for one in prompts)}}


def chunk(*, model: str, ident: str, created: int, delta: dict[str, Any] | None = None,
          finish: str | None = None, choices: bool = True, shape: Shape = CHAT,
          logprobs: Any = None, index: int = 0, **extra: Any) -> dict:
    """One streamed chunk of choice ``index``: a delta (``{"role"?, "content"?}``), or the
    finish, or (``choices=False``) usage."""
    body: dict[str, Any] = {"id": ident, "object": shape.chunk_object, "created": created,
                            "model": model}
    delta = delta or {}
    body["choices"] = [shape.choice(delta.get("content"), whole=False, finish=finish,
                                    logprobs=logprobs, role="role" in delta,
                                    index=index)] if choices else []
    body.update(extra)
    return body


def now() -> int:
    return int(time.time())
