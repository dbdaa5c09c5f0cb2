"""A request body turned into the library's ``Request`` (importable on its own: the batch
runner reads the same bodies).

The model id gives a method and a preference (``ids``); the body's ``localpref`` object
overrides them field by field. No method named anywhere is the recommended steering
(``resolve_method(None, ...)``); a method named without settings is the papers'. No
preference is plain decoding. Every value is checked by the library's own rules, so a bad one
is a ``SettingsError`` with the library's sentence; a field the server does not honour is a
``FieldError`` naming it. A chat body's messages are the conversation; a text-completion
body's ``prompt`` is the user's message (the chat template and the preference apply as in a
chat).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from localpref.api import Model
from localpref.decoding import Generation
from localpref.errors import PromptTooLongError, SettingsError
from localpref.grammar import json_grammar
from localpref.methods import Base, ContrastFamily, Method, resolve_method, setting_fields
from localpref.presets import preference_sentences
from localpref.request import Request
from localpref.server.errors import shown_json
from localpref.server.ids import parse_model_id
from localpref.server.schemas import (
    ChatCompletionRequest,
    ChatMessage,
    CompletionRequest,
    GenerationFields,
)

#: The most alternatives ``top_logprobs`` may ask for per token (OpenAI's limit).
MAX_TOP_LOGPROBS = 20
#: The most alternatives the legacy ``logprobs`` field may ask for per token.
MAX_LEGACY_LOGPROBS = 5
#: The highest ``temperature`` a body may send (OpenAI's range is 0 to 2; the library takes
#: up to ``methods.MAX_TEMPERATURE``, and past 2 a small model writes noise).
MAX_TEMPERATURE = 2.0
#: The sentence for a text completion's prompt sent as token ids (OpenAI's other form).
TOKEN_ID_PROMPT = ("A prompt of token ids is not supported; send the prompt as text (a "
                   "string, or a list of strings).")


#: A method setting that the ``localpref`` object sends under its own name; every other
#: setting of a method is its strength (``localpref.strength``).
LOCALPREF_FIELDS = {"tau": "tau", "kl_budget": "kl_budget", "end_tokens": "end_tokens"}
#: The ``localpref`` fields that set how the steering steers, in ``requested_method``'s order.
STEERING_SETTINGS = ("strength", "tau", "kl_budget", "end_tokens")


class FieldError(SettingsError):
    """A body field the server refuses; ``param`` names it (the error's ``param``)."""

    def __init__(self, param: str, message: str) -> None:
        super().__init__(message, param=param)


#: A request with more messages or characters than these is made in a worker thread. Making a
#: request costs about 150 µs a message and 0.5 µs a character here (the template, then the
#: tokenizer): 25,000 one-word messages held the event loop, and every stream, for 4 s, while
#: an ordinary request (a few milliseconds) is made faster in the loop than a thread hop.
BIG_REQUEST_MESSAGES = 64
BIG_REQUEST_CHARACTERS = 16_384


@dataclass
class GenerationArgs:
    """The messages and keyword arguments of one generation, and what the answer reports."""

    messages: list[dict[str, str]]
    kwargs: dict[str, Any] = field(default_factory=dict)
    #: per-token log-probabilities in the answer (``logprobs``), and how many alternatives
    logprobs: bool = False
    top_logprobs: int = 0
    #: the GBNF grammar the answer follows (``response_format``), or None
    grammar: str | None = None
    #: the body field a library keyword came from where the names differ (``max_tokens``
    #: sent as ``max_completion_tokens``): an error's ``param`` names what the client sent
    body_fields: dict[str, str] = field(default_factory=dict)
    #: the body field that holds the prompt (a prompt too long for the window names it)
    prompt_field: str = "messages"

    @property
    def avoid(self) -> Any:
        return self.kwargs.get("avoid")

    @property
    def big(self) -> bool:
        """Whether rendering and tokenizing it would hold a thread for long (more than
        ``BIG_REQUEST_MESSAGES`` messages, or ``BIG_REQUEST_CHARACTERS`` characters of text
        with the preference, avoid and example texts), so that the server makes it in a
        worker thread, not in its event loop (``GenerationJob.begin_in_worker``)."""
        if len(self.messages) > BIG_REQUEST_MESSAGES:
            return True
        characters = sum(len(message.get("content") or "") for message in self.messages)
        characters += sum(len(str(self.kwargs.get(name) or ""))
                          for name in ("preference", "avoid", "like", "system_prompt"))
        return characters > BIG_REQUEST_CHARACTERS

    def request(self) -> Request:
        """The library's ``Request`` (validated: a bad value is a ``SettingsError`` whose
        ``param`` is the body's field)."""
        try:
            request = Request.make(self.messages, **self.kwargs)
        except SettingsError as error:
            error.param = self.body_fields.get(error.param or "", error.param)
            raise
        extra: dict[str, Any] = {}
        if self.logprobs:
            extra["trace"] = True
        if self.top_logprobs:
            extra["top_logprobs"] = self.top_logprobs
        if self.grammar is not None:
            extra["grammar"] = self.grammar
        return request.replace(**extra) if extra else request


def start_generation(model: Model, args: GenerationArgs) -> Generation:
    """The generation of ``args`` on ``model`` (not started). A prompt too long for the
    window names in ``param`` what its sentence tells to shorten: the preference, avoid or
    examples (``localpref.like``) text that pushes it past, else the prompt."""
    try:
        return Generation(model.submit(args.request()))
    except PromptTooLongError as error:
        error.param = (f"localpref.{_longest_setting(error.blamed, args.kwargs)}"
                       if error.blamed else args.prompt_field)
        raise


def _longest_setting(blamed: tuple[str, ...], settings: dict[str, Any]) -> str:
    """The one of the ``blamed`` settings (``preference``, ``avoid``, ``like``) holding the
    most text, built-in preference names counted as their sentences."""
    def length(name: str) -> int:
        value = settings.get(name)
        if name == "like":
            return sum(map(len, value or ()))
        return sum(map(len, preference_sentences(value, noun=name))) if value else 0
    return max(blamed, key=length)


def message_text(message: ChatMessage, index: int) -> str:
    """A message's text: a string, or its text parts joined by line breaks, as llama-server
    and vLLM join them (an instruction part and a context part stay apart; an assistant's
    refusal parts read as text; other parts are a 400, and so is a user or system message
    with no content: only an assistant's may be null, and tool calls, which no tool calling
    here could read)."""
    for name in ("tool_calls", "function_call"):
        # an assistant's call, dropped, would leave the model a conversation it never read
        if message.role == "assistant" and getattr(message, name) not in (None, []):
            param = f"messages[{index}].{name}"
            raise FieldError(param, f"{param}: an assistant's tool calls are not supported "
                             "(no tool calling); send the conversation without them.")
    content = message.content
    field = f"messages[{index}].content"
    if content is None:
        if message.role != "assistant":
            raise FieldError(field, f"A {message.role} message needs its content (a text, or "
                             "text parts).")
        return ""
    if isinstance(content, str):
        return content
    if not content:  # as OpenAI: a list of parts has at least one
        raise FieldError(field, "A message's content parts are an empty list; send a text or "
                         "at least one text part.")
    return "\n".join(part_text(part, f"{field}[{number}]", message.role)
                   for number, part in enumerate(content))


def part_text(part: object, where: str, role: str) -> str:
    """One content part's text (``where``: its place, ``messages[0].content[1]``): a text
    part's, or an assistant's refusal part's (OpenAI's history may hold one)."""
    if not isinstance(part, dict):
        raise FieldError(where, 'A content part must be an object such as {"type": "text", '
                         f'"text": "..."}} (got {shown_json(part)}).')
    kind = part.get("type")
    if not isinstance(kind, str):
        raise FieldError(f"{where}.type", 'A content part needs its "type" as a string '
                         '("text").')
    name = "refusal" if kind == "refusal" and role == "assistant" else "text"
    if kind != name:
        raise FieldError(f"{where}.type", f"Only text content parts are supported (got "
                         f"'{kind}').")
    text = part.get(name)
    if not isinstance(text, str):
        raise FieldError(f"{where}.{name}", f'A {name} content part needs its "{name}" as a '
                         f'string ({{"type": "{name}", "{name}": "..."}}).')
    return text


def chat_messages(request: ChatCompletionRequest) -> list[dict[str, str]]:
    """The conversation as the library reads it (``developer`` becomes ``system``)."""
    return [
        {"role": "system" if m.role == "developer" else m.role, "content": message_text(m, i)}
        for i, m in enumerate(request.messages)
    ]


#: The most choices one request may ask for (``n``; OpenAI's own limit).
MAX_CHOICES = 128


def choices_per_prompt(request: GenerationFields) -> int:
    """The request's ``n`` (1 when left out); raises ``FieldError`` outside 1 to
    ``MAX_CHOICES``, or above a text completion's ``best_of``."""
    n = 1 if request.n is None else request.n
    if not 1 <= n <= MAX_CHOICES:
        raise FieldError("n", f"n must be 1 to {MAX_CHOICES} (got {n}).")
    best_of = request.best_of if isinstance(request, CompletionRequest) else None
    if best_of is not None and n > best_of:  # (OpenAI's rule: of best_of answers, n)
        raise FieldError("best_of", f"best_of must be at least n (got best_of {best_of} and "
                         f"n {n}); leave best_of out for n choices.")
    return n


#: A body answered as more choices than this (prompts times ``n``) is made in a worker
#: thread: 128,000 choices (1,000 prompts, n 128) held the event loop, and every stream, for
#: 8 s while their arguments were made.
MANY_CHOICES = BIG_REQUEST_MESSAGES


def choice_count(request: GenerationFields) -> int:
    """How many answers the request asks for: its prompts (a text completion's list) times
    ``n`` (``prompt_bodies`` makes them)."""
    prompts = 1
    if isinstance(request, CompletionRequest) and isinstance(request.prompt, list):
        if any(not isinstance(prompt, str) for prompt in request.prompt):
            raise FieldError("prompt", TOKEN_ID_PROMPT)  # token ids are not prompts to count
        prompts = max(len(request.prompt), 1)
    return prompts * choices_per_prompt(request)


def prompt_bodies(request: GenerationFields) -> list[GenerationFields]:
    """The bodies a request is answered as, each answered as if sent alone (the server and
    ``localpref batch`` alike): itself; for a text completion with several prompts (what
    LangChain's ``OpenAI.batch`` sends) one copy per prompt; and with ``n`` > 1, ``n`` copies
    of each prompt's (choice ``i * n + j`` is prompt ``i``'s ``j``-th, as OpenAI orders
    them), the ``j``-th with ``seed + j`` where a seed is given (a sampled answer's choices
    differ, and each is the same again with the same seed)."""
    n = choices_per_prompt(request)
    bodies: list[GenerationFields] = [request]
    if isinstance(request, CompletionRequest) and not isinstance(request.prompt, str):
        prompts = request.prompt
        if any(not isinstance(prompt, str) for prompt in prompts):
            raise FieldError("prompt", TOKEN_ID_PROMPT)
        if len(prompts) > 1:
            for number, prompt in enumerate(prompts):
                if not prompt.strip():  # named here: each copy below is prompt[0] of its own
                    raise FieldError(f"prompt[{number}]", "The prompt is empty.")
            bodies = [request.model_copy(update={"prompt": [prompt]}) for prompt in prompts]
    if n == 1:
        return bodies
    seed = request.seed
    return [body.model_copy(update={
        "n": 1, "seed": seed + copy if seed is not None and seed >= 0 else seed})
        for body in bodies for copy in range(n)]


def numbered(every_args: list[GenerationArgs], per_prompt: int = 1) -> list[GenerationArgs]:
    """The arguments of a text completion's several prompts (``prompt_bodies``, ``per_prompt``
    copies of each), each naming its prompt by index where one is too long for the window
    (``prompt[i]``)."""
    if len(every_args) > per_prompt:
        for number, args in enumerate(every_args):
            args.prompt_field = f"prompt[{number // per_prompt}]"
    return every_args


def prompt_messages(request: CompletionRequest) -> list[dict[str, str]]:
    """A text completion's prompt as the user's message (a list of several is answered prompt
    by prompt, ``prompt_bodies``)."""
    prompt = request.prompt
    if isinstance(prompt, list):
        if len(prompt) != 1:
            raise FieldError("prompt", "Send at least one prompt (a string, or a list of "
                             "strings).")
        prompt = prompt[0]
    if not isinstance(prompt, str):
        raise FieldError("prompt", TOKEN_ID_PROMPT)
    if not prompt.strip():
        raise FieldError("prompt", "The prompt is empty.")
    return [{"role": "user", "content": prompt}]


def requested_method(name: str | None, strength: float | None, tau: float | None,
                     kl_budget: float | None, end_tokens: str | None = None) -> Method:
    """The method: the recommended steering when unnamed, else the named one with the papers'
    settings; ``tau``, ``kl_budget`` and ``end_tokens`` replace its own, ``strength`` sets its
    one knob. A setting the method does not take (any of them, for Base and Pref) is refused
    by name, as the command line refuses its flag: it was dropped without a word."""
    method = resolve_method(name, tau=tau, kl_budget=kl_budget, end_tokens=end_tokens)
    taken = {setting.name for setting in setting_fields(type(method))}
    given = {"tau": tau, "kl_budget": kl_budget, "end_tokens": end_tokens}
    for name_given, value in given.items():
        if value is not None and name_given not in taken:
            raise FieldError(f"localpref.{name_given}", f"localpref.{name_given} is a setting "
                             "of the steering methods (contrastive, amulet, pad); the method "
                             f"{method.name} does not take it.")
    if strength is not None:
        if not isinstance(method, ContrastFamily):
            raise FieldError("localpref.strength", "localpref.strength sets a steering "
                             f"method's strength; the method {method.name} does not take it.")
        try:
            method = method.with_strength_set_by(strength, "localpref.strength")
        except SettingsError as error:
            raise FieldError("localpref.strength", str(error)) from None
    return method


def refuse_what_base_ignores(preference: Any, like: Any, param: str) -> None:
    """Base writes without a preference: one sent with it (by the model id or the localpref
    object, or examples of it) would be dropped without a word while the response named it,
    so it is a 400 that says which id to send (as a steering method sent with nothing to steer
    toward is). An avoid is the library's to refuse: no one-lane method steers away."""
    given = "preference" if preference else "like" if like else None
    if given is not None:
        raise FieldError(param, f"The method base writes without a preference, so the "
                         f"request's {given} would be ignored; send the method pref to put "
                         "the preference in the system prompt, or leave the method out for "
                         "the recommended steering.")


def generation_args(request: GenerationFields, served_id: str, model: Model) -> GenerationArgs:
    """Everything a generation needs for a chat or text-completion body; raises
    ``UnknownModelError`` or ``SettingsError`` (``FieldError`` for a refused field)."""
    steering = parse_model_id(request.model, served_id)
    options = request.localpref
    method_name = steering.method
    method_sent = False  # named in the localpref object (else by the model id, or unnamed)
    preference: Any = steering.preference
    kwargs: dict[str, Any] = {}
    if options is not None:
        fields = options.model_fields_set
        if "method" in fields and options.method is not None:
            method_name, method_sent = options.method, True
        if options.preference is not None:  # null: not given, as for method, avoid, like
            preference = options.preference
        if options.avoid is not None:
            kwargs["avoid"] = options.avoid
        if options.like is not None:
            if not options.like:  # [] as avoid's []: a client that meant examples sent none
                raise FieldError("localpref.like", "localpref.like needs at least one example "
                                 "(a non-empty text), or leave it out.")
            kwargs["like"] = options.like
    settings = tuple(getattr(options, name) if options else None for name in STEERING_SETTINGS)
    if options is not None and options.ignore_eos:
        kwargs["ignore_eos"] = True
    if options is not None and options.opposite is not None:
        kwargs["opposite"] = options.opposite
    try:
        kwargs["method"] = requested_method(method_name, *settings)
    except SettingsError as error:  # the method's own field -> the localpref field sent
        if isinstance(error, FieldError):  # named already
            raise
        if error.param is not None:
            error.param = f"localpref.{LOCALPREF_FIELDS.get(error.param, 'strength')}"
        elif method_sent:  # an unknown name in the localpref object
            error.param = "localpref.method"
        elif method_name is not None:  # an unknown name in the model id
            error.param = "model"
        raise
    kwargs["preference"] = preference
    if method_sent and not (preference or kwargs.get("avoid") or kwargs.get("like")) \
            and not isinstance(kwargs["method"], Base):
        raise FieldError("localpref.method", f"localpref.method {method_name!r} steers toward "
                         "a preference and the request gives none; send localpref.preference "
                         "(or avoid, or like), or a model id NAME:PREFERENCE.")
    given = [name for name, value in zip(STEERING_SETTINGS, settings, strict=True)
             if value is not None]
    if given and method_name is None and all(
            value is None for value in (preference, kwargs.get("avoid"), kwargs.get("like"))):
        # the recommended steering with nothing to steer toward is plain decoding (an empty
        # one sent is the library's to refuse, more precisely)
        raise FieldError(f"localpref.{given[0]}", f"localpref.{given[0]} sets how the steering "
                         "steers, and the request gives nothing to steer toward; send "
                         "localpref.preference (or avoid, or like), or a model id "
                         "NAME:PREFERENCE, or leave it out.")
    if isinstance(kwargs["method"], Base):
        refuse_what_base_ignores(preference, kwargs.get("like"),
                                 "localpref.method" if method_sent else "model")
    if kwargs.get("opposite") and not preference:
        raise FieldError("localpref.opposite", "localpref.opposite gives the base lane the "
                         "opposite of the preference, and the request gives none; send "
                         "localpref.preference or a model id NAME:PREFERENCE, or leave it "
                         "out.")
    max_tokens, body_fields = request.max_tokens, {}
    if isinstance(request, ChatCompletionRequest) and request.max_completion_tokens is not None:
        max_tokens = request.max_completion_tokens
        body_fields["max_tokens"] = "max_completion_tokens"
    # No max_tokens: write to an end token or the window (the library stops at the window).
    kwargs["max_tokens"] = model.n_ctx if max_tokens is None else max_tokens
    for name in ("temperature", "top_p", "top_k", "min_p", "repeat_penalty",
                 "presence_penalty", "frequency_penalty", "logit_bias"):
        value = getattr(request, name)
        if value is not None:
            kwargs[name] = value
    if request.temperature is not None and request.temperature > MAX_TEMPERATURE:
        raise FieldError("temperature", f"Temperature must be between 0 and "
                         f"{MAX_TEMPERATURE:g} (got {request.temperature:g}).")
    if request.seed is not None and request.seed >= 0:  # negative: random (llama.cpp's way)
        kwargs["seed"] = request.seed
    if request.stop is not None:
        kwargs["stop"] = [request.stop] if isinstance(request.stop, str) else list(request.stop)
    grammar = response_grammar(request)
    if grammar is not None:
        if request.localpref is not None and request.localpref.ignore_eos:
            raise FieldError("response_format", "response_format and ignore_eos do not go "
                             "together: a JSON answer ends when it is complete.")
    if isinstance(request, ChatCompletionRequest):
        args = GenerationArgs(chat_messages(request), kwargs)
        _chat_fields(request, args)
    else:
        args = GenerationArgs(prompt_messages(request), kwargs, prompt_field="prompt")
        _completion_fields(request, args)
    args.grammar = grammar
    args.body_fields = body_fields
    return args


def converts_a_schema(request: GenerationFields) -> bool:
    """Whether ``request`` sends a JSON schema for ``response_format``: llama-cpp-python's
    converter is Python that takes seconds on some schemas within the limits checked first
    (``allOf`` items that merge the same definitions level after level, hundreds of
    optional properties), so the server converts it in a thread of its own."""
    form = request.response_format
    return form is not None and form.type == "json_schema"


def response_grammar(request: GenerationFields) -> str | None:
    """The GBNF of ``response_format`` (``json_object``: any JSON object; ``json_schema``: one
    that follows the schema), or None for plain text."""
    form = request.response_format
    if form is None or form.type == "text":
        return None
    if form.type == "json_object":
        return json_grammar()
    if form.json_schema is None or form.json_schema.schema_ is None:
        raise FieldError("response_format", "response_format json_schema needs "
                         "json_schema.schema, the JSON schema of the answer.")
    try:
        return json_grammar(form.json_schema.schema_)
    except SettingsError as error:
        raise FieldError("response_format", str(error)) from None


#: What OpenAI's chat completions take as ``tool_choice`` and ``function_call``.
_TOOL_CHOICES = '"none", "auto", "required" or an object naming a function'
_FUNCTION_CALLS = '"none", "auto" or an object naming a function'


def _chat_fields(request: ChatCompletionRequest, args: GenerationArgs) -> None:
    """``tools``, ``logprobs`` / ``top_logprobs`` of a chat body."""
    if request.tools and request.tool_choice != "none":
        raise FieldError("tools", "tools are not supported yet (no tool calling); leave "
                         "tools out or send tool_choice \"none\".")
    if request.functions and request.function_call != "none":
        raise FieldError("functions", "functions are not supported (no function calling); "
                         "leave them out or send function_call \"none\".")
    for name, choice, words in (("tool_choice", request.tool_choice, _TOOL_CHOICES),
                                ("function_call", request.function_call, _FUNCTION_CALLS)):
        if choice in (None, "none", "auto"):
            continue
        if choice == "required" and name == "tool_choice" or isinstance(choice, dict):
            raise FieldError(name, f"{name} asks for a call, and there is no tool calling "
                             "yet; send \"none\" or \"auto\", or leave it out.")
        raise FieldError(name, f"{name} must be {words} (got {shown_json(choice)}).")
    top = request.top_logprobs
    if top is not None:
        if not request.logprobs:
            raise FieldError("top_logprobs", "top_logprobs needs logprobs: true.")
        if not 0 <= top <= MAX_TOP_LOGPROBS:
            raise FieldError("top_logprobs", f"top_logprobs must be between 0 and "
                             f"{MAX_TOP_LOGPROBS} (got {top}).")
    args.logprobs = bool(request.logprobs)
    args.top_logprobs = top or 0


def _completion_fields(request: CompletionRequest, args: GenerationArgs) -> None:
    """``echo``, ``suffix``, ``best_of`` and the legacy ``logprobs`` of a completion body."""
    if request.echo:
        raise FieldError("echo", "echo is not supported; send false or leave it out.")
    if request.suffix:
        raise FieldError("suffix", "suffix (insertion) is not supported; leave it out.")
    if request.best_of not in (None, 1):
        raise FieldError("best_of", f"Only best_of = 1 is supported (got {request.best_of}).")
    if request.logprobs is not None:
        if not 0 <= request.logprobs <= MAX_LEGACY_LOGPROBS:
            raise FieldError("logprobs", f"logprobs must be between 0 and "
                             f"{MAX_LEGACY_LOGPROBS} (got {request.logprobs}).")
        args.logprobs = True
        args.top_logprobs = request.logprobs
