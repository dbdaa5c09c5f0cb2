"""Pydantic models of the request bodies: the OpenAI chat-completions fields the server reads.

Unknown fields are ignored (clients send many), except in the ``localpref`` object; a field
of the wrong type is a 400 with the field's name (strict: "5" is not a number nor 1 a
true; a whole number is still a number). Values in range are checked by the library,
which says what is wrong.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class _Lenient(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True)


class ChatMessage(_Lenient):
    """A message: ``developer`` is treated as ``system``; content is text or a list of parts,
    which ``translate.message_text`` reads and checks (a bad part named exactly, where a
    union's error would say the content should be a string)."""

    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[Any] | None = None
    #: an assistant's calls (refused by ``translate.message_text``: no tool calling)
    tool_calls: Any = None
    function_call: Any = None  # OpenAI's deprecated name for one call


class StreamOptions(_Lenient):
    include_usage: bool | None = None  # null is false, as OpenAI reads it


class LocalprefOptions(BaseModel):
    """The ``localpref`` extension object: each field overrides the model id's
    (``preference`` as an object is weights: ``{"concise": 1, "uplifting": 0.4}``). Unlike
    OpenAI's fields, an unknown one is refused: it is this server's own object, and a
    misspelled field would leave the answer silently unsteered. Its values are strict too
    (``"opposite": "yes"`` is a 400, not true; a whole number is still a number)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    preference: str | list[str] | dict[str, Any] | None = None
    avoid: str | list[str] | None = None
    like: str | list[str] | None = None
    method: str | None = None
    strength: float | None = None
    tau: float | None = None
    kl_budget: float | None = None
    end_tokens: str | None = None
    ignore_eos: bool | None = None
    opposite: bool | None = None


class JsonSchemaFormat(_Lenient):
    """``response_format.json_schema``: the schema the answer must follow."""

    name: str | None = None
    schema_: dict[str, Any] | bool | None = Field(default=None, alias="schema")
    strict: bool | None = None


class ResponseFormat(_Lenient):
    """``response_format``: ``text``, ``json_object`` or ``json_schema``."""

    type: Literal["text", "json_object", "json_schema"]
    json_schema: JsonSchemaFormat | None = None


class GenerationFields(_Lenient):
    """The fields every generating endpoint reads (the model id, sampling, the extension)."""

    model: str
    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    stop: str | list[str] | None = None
    seed: int | None = None
    stream: bool | None = None  # null is false, as OpenAI reads it
    stream_options: StreamOptions | None = None
    n: int | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    top_k: int | None = None
    min_p: float | None = None
    repeat_penalty: float | None = None
    logit_bias: dict[str, float] | None = None
    response_format: ResponseFormat | None = None
    localpref: LocalprefOptions | None = None


class ChatCompletionRequest(GenerationFields):
    """``POST /v1/chat/completions``."""

    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: int | None = None
    logprobs: bool | None = None
    top_logprobs: int | None = None
    tools: list[Any] | None = None
    tool_choice: Any = None
    functions: list[Any] | None = None  # OpenAI's deprecated name for tools
    function_call: Any = None


class CompletionRequest(GenerationFields):
    """``POST /v1/completions`` (legacy text completions): ``prompt`` is the user's message.

    ``logprobs`` is the legacy field: how many alternatives to list per token (0 to 5)."""

    #: token ids (OpenAI's other forms) are refused by name (``translate.prompt_bodies``)
    prompt: str | list[str] | list[int] | list[list[int]]
    logprobs: int | None = None
    echo: bool | None = None
    suffix: str | None = None
    best_of: int | None = None
