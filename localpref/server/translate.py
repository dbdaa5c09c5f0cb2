"""A chat-completions request turned into the arguments of ``Model.stream``.

The model id gives a method and a preference (``ids``); the body's ``localpref`` object
overrides them field by field. No method named anywhere is the recommended steering
(``resolve_method(None, ...)``); a method named without settings is the papers'. No
preference is plain decoding. Every value is checked by the library's own rules, so a bad one
is a ``SettingsError`` with the library's sentence.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from localpref.api import Model
from localpref.errors import SettingsError
from localpref.methods import ContrastFamily, Method, resolve_method
from localpref.server.ids import parse_model_id
from localpref.server.schemas import ChatCompletionRequest, ChatMessage


@dataclass
class GenerationArgs:
    """The messages and the keyword arguments of one ``Model.stream`` call."""

    messages: list[dict[str, str]]
    kwargs: dict[str, Any] = field(default_factory=dict)

    @property
    def avoid(self) -> Any:
        return self.kwargs.get("avoid")


def message_text(message: ChatMessage) -> str:
    """A message's text: a string, or its text parts joined (other parts are a 400)."""
    content = message.content
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    pieces = []
    for part in content:
        if part.type != "text" or part.text is None:
            raise SettingsError(f"Only text content parts are supported (got '{part.type}').")
        pieces.append(part.text)
    return "".join(pieces)


def chat_messages(request: ChatCompletionRequest) -> list[dict[str, str]]:
    """The conversation as the library reads it (``developer`` becomes ``system``)."""
    return [
        {"role": "system" if m.role == "developer" else m.role, "content": message_text(m)}
        for m in request.messages
    ]


def requested_method(name: str | None, strength: float | None, tau: float | None,
                     kl_budget: float | None, end_tokens: str | None = None) -> Method:
    """The method: the recommended steering when unnamed, else the named one with the papers'
    settings; ``tau``, ``kl_budget`` and ``end_tokens`` replace its own, ``strength`` sets its
    one knob (methods without one, Base and Pref, ignore it, as the command line does)."""
    method = resolve_method(name, tau=tau, kl_budget=kl_budget, end_tokens=end_tokens)
    if strength is not None and isinstance(method, ContrastFamily):
        method = method.with_strength(strength)
    return method


def generation_args(request: ChatCompletionRequest, served_id: str, model: Model) -> GenerationArgs:
    """Everything ``Model.stream`` needs for ``request``; raises ``UnknownModelError`` or
    ``SettingsError``."""
    steering = parse_model_id(request.model, served_id)
    options = request.localpref
    if request.n not in (None, 1):
        raise SettingsError(f"Only n = 1 is supported (got {request.n}).")
    for name in ("presence_penalty", "frequency_penalty"):
        value = getattr(request, name)
        if value not in (None, 0):
            raise SettingsError(f"{name} is not supported; send 0 or leave it out (got {value}).")
    method_name = steering.method
    preference: Any = steering.preference
    kwargs: dict[str, Any] = {}
    if options is not None:
        fields = options.model_fields_set
        if "method" in fields and options.method is not None:
            method_name = options.method
        if "preference" in fields:
            preference = options.preference
        if options.avoid is not None:
            kwargs["avoid"] = options.avoid
        if options.like is not None:
            kwargs["like"] = options.like
    settings = ((options.strength, options.tau, options.kl_budget, options.end_tokens)
                if options else (None,) * 4)
    if options is not None and options.ignore_eos:
        kwargs["ignore_eos"] = True
    if options is not None and options.opposite is not None:
        kwargs["opposite"] = options.opposite
    kwargs["method"] = requested_method(method_name, *settings)
    kwargs["preference"] = preference
    max_tokens = request.max_completion_tokens
    if max_tokens is None:
        max_tokens = request.max_tokens
    # No max_tokens: write to an end token or the window (the library stops at the window).
    kwargs["max_tokens"] = model.n_ctx if max_tokens is None else max_tokens
    for name in ("temperature", "top_p", "top_k", "min_p", "repeat_penalty", "seed"):
        value = getattr(request, name)
        if value is not None:
            kwargs[name] = value
    if request.stop is not None:
        kwargs["stop"] = [request.stop] if isinstance(request.stop, str) else list(request.stop)
    return GenerationArgs(chat_messages(request), kwargs)
