"""The OpenAI ``chat.completion`` and ``chat.completion.chunk`` objects, built from results.

Besides the standard fields a completion carries ``"localpref": {"method", "preference",
"avoid", "stats"}`` with the library's statistics (the last chunk of a stream carries it too).
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

from localpref.decoding import Result

#: The library's stop reasons as OpenAI finish reasons. A request cancelled by the server's
#: shutdown ends as "stop": its text so far is a complete answer to the client.
FINISH_REASONS = {"eos": "stop", "stop": "stop", "length": "length", "cancelled": "stop"}


def completion_id() -> str:
    return f"chatcmpl-{uuid.uuid4().hex}"


def finish_reason(result: Result) -> str:
    return FINISH_REASONS.get(str(result.stats.get("stop_reason")), "stop")


def usage(result: Result) -> dict[str, int]:
    """Token counts; ``prompt_tokens`` is the longest lane's prompt."""
    prompt = int(result.stats.get("n_prompt_tokens", 0))
    completion = len(result.tokens)
    return {"prompt_tokens": prompt, "completion_tokens": completion,
            "total_tokens": prompt + completion}


def localpref_extension(result: Result, avoid: Any) -> dict[str, Any]:
    """The ``localpref`` object: method, preference, avoid and stats (JSON-safe)."""
    stats = json.loads(json.dumps(result.stats, default=str))
    return {
        "method": stats.get("method"),
        "preference": stats.get("preference"),
        "avoid": stats.get("avoid", avoid),
        "stats": stats,
    }


def completion(result: Result, *, model: str, avoid: Any, ident: str, created: int) -> dict:
    """The whole answer as a ``chat.completion`` object."""
    return {
        "id": ident,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [{
            "index": 0,
            "message": {"role": "assistant", "content": result.text},
            "finish_reason": finish_reason(result),
            "logprobs": None,
        }],
        "usage": usage(result),
        "localpref": localpref_extension(result, avoid),
    }


def chunk(*, model: str, ident: str, created: int, delta: dict[str, Any] | None = None,
          finish: str | None = None, choices: bool = True, **extra: Any) -> dict:
    """One ``chat.completion.chunk``: a delta, or the finish, or (``choices=False``) usage."""
    body: dict[str, Any] = {"id": ident, "object": "chat.completion.chunk", "created": created,
                            "model": model}
    body["choices"] = [{"index": 0, "delta": delta or {}, "finish_reason": finish,
                        "logprobs": None}] if choices else []
    body.update(extra)
    return body


def now() -> int:
    return int(time.time())
