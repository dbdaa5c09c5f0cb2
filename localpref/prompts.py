"""Chat messages and a preference -> the token list of each lane, through the GGUF's template.

The base lane reads the conversation under the neutral system prompt; the preference lane under
the same system prompt followed by the preference sentence. A system prompt containing
``{preference}`` (the papers' prompts) gets the sentence there instead, or nothing on the base
lane. Templates without a system role get that text in front of the first user message. A lane
that reads examples (``like``) gets them as earlier exchanges before the conversation
(``examples.like_turns``).

User text (every message's content and the system text, which holds the preference, avoid and
example sentences) never becomes a control token: the template is rendered with each user text
replaced by a sentinel, the rendering is split on the sentinels, the template's own pieces are
tokenized with special-token parsing on and the user texts with it off, and the token lists are
joined (the text between two control tokens is tokenized as one run, template and user text
together, so ids change only where user text holds a control-token string). A template that
transforms the content so that the sentinels do not come back verbatim is rendered with the
real texts, their control-token strings broken by a zero-width space.

A template that can let its model think before answering (Qwen3's, GLM's, SmolLM3's read
``enable_thinking``) is rendered with thinking off: the model answers at once, so the steering
shapes the answer the user reads, not hidden thoughts, and no answer is spent on them
(llama-server's ``--reasoning-budget 0``). A template whose assistant header always opens a
``<think>`` block (DeepSeek-R1's distills') gets the block closed empty, as Qwen3's writes it.

A GGUF without a chat template (a base model) gets a plain-text format rather than a chat
format it never saw: the system text, a blank line, then one ``User: ...`` / ``Assistant: ...``
line per message, and ``Assistant:`` to answer; the answer stops where the model starts the
next ``User:`` or ``Assistant:`` line, or writes the system text's first line again
(``PromptBuilder.turn_marks``).
"""

from __future__ import annotations

import datetime
import re
import secrets
from collections.abc import Mapping, Sequence
from functools import cached_property

from jinja2 import TemplateError as JinjaTemplateError
from jinja2.sandbox import ImmutableSandboxedEnvironment

from localpref.engine import LoadedModel
from localpref.errors import SettingsError, TemplateError
from localpref.examples import like_turns

Message = Mapping[str, str]

#: ChatML, the format most instruction models share (for tests and synthetic models).
CHATML_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{{ message['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

#: Used when a GGUF carries no chat template at all: plain text a base model can continue.
PLAIN_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] == 'system' %}{{ message['content'] }}\n\n"
    "{% elif message['role'] == 'user' %}User: {{ message['content'] }}\n"
    "{% else %}Assistant: {{ message['content'] }}\n{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}Assistant:{% endif %}"
)

#: Where an answer in the plain format ends: the model starting the next turn itself.
PLAIN_STOP_STRINGS = ("\nUser:", "\nAssistant:")
#: The shortest system line that also ends a plain-format answer where the model writes it
#: again on a line of its own (a base model begins the next exchange with it); a shorter one
#: could be ordinary text.
MIN_SYSTEM_MARK = 16
#: The most of that line the mark holds: enough to be the system text, and a long line would
#: cost each token a search as long as it (``decoding.held_back``).
MAX_SYSTEM_MARK = 48

_SYSTEM_PROBE = "SYSTEM-ROLE-PROBE-7f3a"
#: What a thinking template reads to answer without thinking first (Qwen3's, GLM's, SmolLM3's
#: ``enable_thinking``); a template that does not read it renders as before.
THINKING_OFF = {"enable_thinking": False}
#: How a reasoning model's thoughts open and close.
THOUGHT_OPEN, THOUGHT_CLOSE = "<think>", "</think>"


def no_template_notice(name: str) -> str:
    """The one sentence said when a model has no chat template."""
    return (f"{name} has no chat template (a base model?), so localpref writes the "
            "conversation as plain 'User:' / 'Assistant:' lines and ends an answer at the "
            "next line that starts with 'User:' or 'Assistant:'.")


def closed_thought(text: str) -> str:
    """A rendered prompt whose last ``<think>`` block is left open for the answer, with that
    block closed empty: ``<think>\n\n</think>\n\n``, as Qwen3's template writes it when
    thinking is off."""
    head = text[: text.rindex(THOUGHT_OPEN) + len(THOUGHT_OPEN)]
    rest = text[len(head):]
    return (head if not rest.strip() else text + "\n") + f"\n\n{THOUGHT_CLOSE}\n\n"


def as_messages(prompt_or_messages: str | Sequence[Message]) -> list[dict[str, str]]:
    """A prompt string becomes one user message; a message list is checked and copied."""
    if isinstance(prompt_or_messages, str):
        if not prompt_or_messages.strip():
            raise SettingsError("The prompt is empty.")
        return [{"role": "user", "content": prompt_or_messages}]
    if not isinstance(prompt_or_messages, Sequence) or isinstance(prompt_or_messages, bytes):
        raise SettingsError("The prompt must be a text or a list of messages, each a "
                            f"{{role, content}} mapping (got {type(prompt_or_messages).__name__}).")
    messages = checked_messages(prompt_or_messages)
    if not any(message["role"] == "user" or (message["role"] == "system"
                                             and message["content"].strip())
               for message in messages):  # a system message alone is a task, as OpenAI's
        raise SettingsError("The conversation has no user message (nor a system message to "
                            "answer).")
    return messages


def checked_messages(messages: object) -> list[dict[str, str]]:
    """A list of messages (a chat's history, which may hold none yet) checked and copied:
    each a mapping with a role (system, user or assistant) and a text content."""
    if isinstance(messages, (str, bytes)) or not isinstance(messages, Sequence):
        raise SettingsError("The messages must be a list, each a {role, content} mapping "
                            f"(got {type(messages).__name__}).")
    checked = []
    for message in messages:
        if not isinstance(message, Mapping):
            raise SettingsError("Each message must be a {role, content} mapping "
                                f"(got {type(message).__name__}).")
        role, content = message.get("role"), message.get("content")
        if role not in ("system", "user", "assistant") or not isinstance(content, str):
            raise SettingsError(
                "Each message needs a role (system, user or assistant) and a text content."
            )
        checked.append({"role": role, "content": content})
    return checked


def system_text(system_prompt: str, preference: str | None) -> str:
    """The system text of a lane: ``{preference}`` filled, or the preference appended."""
    if "{preference}" in system_prompt:
        return system_prompt.replace("{preference}", preference or "").strip()
    if preference:
        return f"{system_prompt} {preference}".strip()
    return system_prompt


class ChatTemplate:
    """The model's Jinja chat template, rendered in a sandbox."""

    def __init__(self, source: str | None, *, bos_token: str = "", eos_token: str = "") -> None:
        environment = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
        environment.globals["raise_exception"] = _raise_template_exception
        environment.globals["strftime_now"] = _strftime_now
        try:
            self._template = environment.from_string(source or PLAIN_TEMPLATE)
        except JinjaTemplateError as error:
            message = f"The model's chat template does not parse: {_clause(error)}."
            raise TemplateError(message) from None
        self.bos_token = bos_token
        self.eos_token = eos_token

    def render(self, messages: Sequence[Message], *, add_generation_prompt: bool = True) -> str:
        """The conversation as the model expects it, assistant header added; a thought the
        header opens is closed empty (``opens_thought``): the model answers at once."""
        text = self._render(messages, add_generation_prompt)
        if add_generation_prompt and self.opens_thought:
            text = closed_thought(text)
        return text

    def _render(self, messages: Sequence[Message], add_generation_prompt: bool) -> str:
        try:
            return self._template.render(
                messages=list(messages),
                add_generation_prompt=add_generation_prompt,
                bos_token=self.bos_token,
                eos_token=self.eos_token,
                **THINKING_OFF,
            )
        except Exception as error:  # a template may raise anything
            message = f"The model's chat template failed to render: {_clause(error)}."
            raise TemplateError(message) from None

    @cached_property
    def has_system_role(self) -> bool:
        """Whether a system message reaches the rendered text (Gemma's does not)."""
        probe = [{"role": "system", "content": _SYSTEM_PROBE}, {"role": "user", "content": "hi"}]
        try:
            return _SYSTEM_PROBE in self.render(probe)
        except TemplateError:
            return False

    @cached_property
    def default_system(self) -> str:
        """The system text the template writes when a conversation has none (SmolLM2's "You
        are a helpful AI assistant named SmolLM, ...", Qwen2.5's "You are Qwen, ..."): what a
        rendering without a system message holds where a rendering with one holds its text;
        "" when the two differ anywhere else (the template writes none there)."""
        user = {"role": "user", "content": "hi"}
        try:
            with_probe = self.render([{"role": "system", "content": _SYSTEM_PROBE}, user])
            without = self.render([user])
        except TemplateError:
            return ""
        before, found, after = with_probe.partition(_SYSTEM_PROBE)
        if (not found or len(without) < len(before) + len(after)
                or not without.startswith(before) or not without.endswith(after)):
            return ""
        return without[len(before):len(without) - len(after)]

    @cached_property
    def opens_thought(self) -> bool:
        """Whether the template's assistant header opens a ``<think>`` block that thinking
        off does not close (DeepSeek-R1's distills': every answer would start with thoughts);
        ``render`` then closes it."""
        probe = [{"role": "user", "content": _SYSTEM_PROBE}]
        try:
            tail = self._render(probe, True).rpartition(_SYSTEM_PROBE)[2]
        except TemplateError:
            return False
        return tail.rfind(THOUGHT_OPEN) > tail.rfind(THOUGHT_CLOSE)

    def render_with_system(self, system: str, messages: Sequence[Message]) -> str:
        """Render ``messages`` under ``system``, folding it into the first user message when
        the template has no system role. A system message in ``messages`` is replaced."""
        return self.render(self._with_system(system, messages))

    def _with_system(self, system: str, messages: Sequence[Message]) -> list[dict[str, str]]:
        conversation = [dict(m) for m in messages if m["role"] != "system"]
        if not system:
            return conversation
        if not any(message["role"] == "user" for message in conversation):
            # a system text alone is the task: the user's turn, which every template renders
            # (Gemma 3's folds a system text into a first user turn that is not there, and
            # Qwen3's refuses a conversation without a user message)
            return [{"role": "user", "content": system}, *conversation]
        if self.has_system_role:
            return [{"role": "system", "content": system}, *conversation]
        for message in conversation:
            if message["role"] == "user":
                message["content"] = f"{system}\n\n{message['content']}"
                break
        return conversation

    def render_pieces(
        self, system: str, messages: Sequence[Message]
    ) -> list[tuple[str, bool]] | None:
        """``render_with_system`` as ``(text, is_user_text)`` pieces, user texts apart from the
        template's markup; None when the template transforms user text (a sentinel standing
        for it does not come back, or the pieces do not join to the real rendering)."""
        nonce = secrets.token_hex(8)
        texts: list[str] = []

        def sentinel(text: str) -> str:
            if not text:
                return text
            texts.append(text)
            return f"LPQ{nonce}S{len(texts) - 1}E"

        marked = [{"role": m["role"], "content": sentinel(m["content"])} for m in messages
                  if m["role"] != "system"]
        rendered = self.render(self._with_system(sentinel(system), marked))
        # split on the sentinels' fixed start (a regex with the fresh nonce in it would be
        # compiled again for every request)
        head, *parts = rendered.split(f"LPQ{nonce}S")
        pieces: list[tuple[str, bool]] = [(head, False)] if head else []
        seen: set[int] = set()
        for part in parts:
            number, end, rest = part.partition("E")
            if not end or not number.isdecimal() or int(number) >= len(texts):
                return None
            seen.add(int(number))
            pieces.append((texts[int(number)], True))
            if rest:
                pieces.append((rest, False))
        if len(seen) != len(texts):
            return None
        if "".join(text for text, _ in pieces) != self.render_with_system(system, messages):
            return None
        return pieces


def _clause(error: Exception) -> str:
    """An error message ready to end a sentence."""
    return str(error).strip().rstrip(".") or type(error).__name__


def _raise_template_exception(message: str) -> None:
    raise TemplateError(message)


def _strftime_now(format_string: str) -> str:
    return datetime.datetime.now().strftime(format_string)


class PromptBuilder:
    """Renders and tokenizes the lanes of one model."""

    def __init__(self, model: LoadedModel, system_prompt: str) -> None:
        vocabulary = model.vocabulary
        self.model = model
        self.system_prompt = system_prompt
        self._bos_text = vocabulary.token_text(vocabulary.bos_id) if vocabulary.bos_id >= 0 else ""
        eos_text = vocabulary.token_text(vocabulary.eos_id) if vocabulary.eos_id >= 0 else ""
        self.template = ChatTemplate(
            model.chat_template, bos_token=self._bos_text, eos_token=eos_text
        )
        #: whether the GGUF has its own chat template (else the plain-text format is used)
        self.has_chat_template = bool(model.chat_template)
        #: sentences to tell the user about this model's prompts (no chat template)
        self.notices: list[str] = (
            [] if self.has_chat_template else [no_template_notice(model.name)]
        )
        self._control_strings: re.Pattern[str] | None = None
        self._markup: dict[str, list[int]] = {}

    def turn_marks(self, messages: Sequence[Message], system_prompt: str | None = None
                   ) -> tuple[str, ...]:
        """Where an answer in the plain format ends (none with a chat template): the next
        ``User:`` or ``Assistant:`` line, and the system text's first line (its first
        ``MAX_SYSTEM_MARK`` characters) written again on a line of its own, which is how a base
        model begins the next exchange (the preference lane's system text starts with the
        same line)."""
        if self.has_chat_template:
            return ()
        first_line = self._system(messages, None, system_prompt).strip().split("\n", 1)[0]
        mark = first_line.strip()[:MAX_SYSTEM_MARK].rstrip()
        if len(mark) < MIN_SYSTEM_MARK:
            return PLAIN_STOP_STRINGS
        return (*PLAIN_STOP_STRINGS, f"\n{mark}")

    def _system(
        self, messages: Sequence[Message], preference: str | None, system_prompt: str | None
    ) -> str:
        """The system text of a lane: the conversation's own (its system messages, wherever
        they stand, joined by blank lines), else the given one ("" for none, as a system
        message "" is), else the default, with the lane's sentence. Where the base lane's text
        is "" (no system prompt, or a ``{preference}`` slot alone) it reads what the template
        writes for none (``ChatTemplate.default_system``), so the preference lane reads that
        text too, the sentence after it (a period ending it first): the lanes differ by the
        sentence alone."""
        own_system = [m["content"] for m in messages if m["role"] == "system"]
        base_system = ("\n\n".join(own_system) if own_system
                       else self.system_prompt if system_prompt is None else system_prompt)
        identity = self.template.default_system.rstrip()
        if preference and identity and not system_text(base_system, None):
            ended = identity if identity.endswith((".", "!", "?")) else f"{identity}."
            return system_text(ended, preference)
        return system_text(base_system, preference)

    def lane_text(
        self,
        messages: Sequence[Message],
        preference: str | None,
        *,
        system_prompt: str | None = None,
        examples: Sequence[str] = (),
    ) -> str:
        """The rendered text of one lane (``preference`` None for the base lane); a lane that
        reads ``examples`` gets them as earlier exchanges (``examples.like_turns``)."""
        return self.template.render_with_system(
            self._system(messages, preference, system_prompt),
            [*like_turns(examples), *messages],
        )

    def tokenize(self, text: str) -> list[int]:
        """Tokens of a rendered prompt, BOS added once when the model wants one."""
        vocabulary = self.model.vocabulary
        add_bos = vocabulary.adds_bos and not (self._bos_text and text.startswith(self._bos_text))
        return vocabulary.tokenize(text, add_special=add_bos, parse_special=True)

    def lane_tokens(
        self,
        messages: Sequence[Message],
        preference: str | None,
        *,
        system_prompt: str | None = None,
        examples: Sequence[str] = (),
    ) -> list[int]:
        """The token list of one lane (``lane_text``); user text is tokenized as text, never
        as control tokens (see the module's docstring)."""
        system = self._system(messages, preference, system_prompt)
        messages = [*like_turns(examples), *messages]
        pieces = self.template.render_pieces(system, messages)
        if pieces is None:
            neutral = [{"role": m["role"], "content": self.neutralise(m["content"])}
                       for m in messages]
            return self.tokenize(
                self.template.render_with_system(self.neutralise(system), neutral)
            )
        vocabulary = self.model.vocabulary
        tokens: list[int] = []
        for text, is_markup in self._runs(pieces):
            if is_markup:  # a control-token string: the same few in every prompt
                tokens += self._markup_tokens(text)
            else:
                tokens += vocabulary.tokenize(text, add_special=False, parse_special=False)
        if vocabulary.adds_bos and vocabulary.bos_id >= 0 and tokens[:1] != [vocabulary.bos_id]:
            tokens.insert(0, vocabulary.bos_id)
        return tokens

    def _runs(self, pieces: Sequence[tuple[str, bool]]) -> list[tuple[str, bool]]:
        """The pieces as llama.cpp's tokenizer splits a string: ``(control-token string, True)``
        from the template's pieces, and ``(text, False)`` runs between them, each joining the
        template's text with the user text beside it. A run is tokenized as a whole, as it would
        be in the rendered string, so a prompt without control-token strings in its user text
        gets exactly the tokens of the rendered string (no seams, SentencePiece's leading space
        included)."""
        runs: list[tuple[str, bool]] = []
        for text, is_user_text in pieces:
            parts = [(text, False)] if is_user_text else [
                (part, index % 2 == 1)
                for index, part in enumerate(self._control_pattern().split(text)) if part
            ]
            for part, is_markup in parts:
                if not is_markup and runs and not runs[-1][1]:
                    runs[-1] = (runs[-1][0] + part, False)
                else:
                    runs.append((part, is_markup))
        return runs

    def _markup_tokens(self, text: str) -> list[int]:
        """The tokens of a control-token string (tokenized once, then remembered)."""
        tokens = self._markup.get(text)
        if tokens is None:
            tokens = self.model.vocabulary.tokenize(text, add_special=False, parse_special=True)
            self._markup[text] = tokens
        return list(tokens)

    def _control_pattern(self) -> re.Pattern[str]:
        """A regex matching any control-token string, longest first (one capturing group)."""
        if self._control_strings is None:
            vocabulary = self.model.vocabulary
            strings = sorted({vocabulary.token_text(t) for t in vocabulary.control_ids} - {""},
                             key=len, reverse=True)
            self._control_strings = re.compile(
                "(" + ("|".join(re.escape(s) for s in strings) if strings else "(?!)") + ")"
            )
        return self._control_strings

    def neutralise(self, text: str) -> str:
        """``text`` with every control-token string (``<|im_end|>``...) broken by a zero-width
        space after its first character, so that no tokenizer reads it as the control token."""
        return self._control_pattern().sub(lambda m: f"{m[0][0]}\u200b{m[0][1:]}", text)

