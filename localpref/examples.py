"""Preference by example: texts in the style the user wants, shown to the preference lane.

``like=[text, ...]`` shows the examples to the preference lane as its own earlier answers: one
exchange per example (a user turn asking for an answer in the style the user likes, the example
as the assistant's answer) before the conversation, and one sentence in the lane's system prompt
(after any named preference) that asks to write like them. The base lane stays neutral, so the
contrast steers toward what the examples share. Why turns and not quotes in the system prompt:
a model continues the form of its own earlier answers far more than it follows quoted examples
(docs/steering.md, "Preference by example"; on Qwen2.5-Coder-0.5B the first token of an answer
starts in lower case with probability 0.06 after three lower-case examples quoted in the system
prompt, 0.75 after the same three as earlier answers, 0.03 with none).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from localpref.errors import SettingsError

#: The default bound on the examples' total tokens (``Model(max_like_tokens=...)``).
DEFAULT_MAX_LIKE_TOKENS = 1024

#: The sentence the preference lane's system prompt gets for examples.
LIKE_INSTRUCTION = ("Write your answer in the same style as your earlier answers in this "
                    "conversation: their form, length and tone, not their content.")

#: The user turn in front of each example (the example is the assistant's answer to it).
LIKE_REQUEST = "Write an answer in the style I like."

LikeInput = str | Sequence[str] | None


def checked_like(like: LikeInput) -> tuple[str, ...]:
    """The examples as a tuple (a single text is one example; an empty list none); an empty
    example, or anything but a text or a list of texts, is one sentence."""
    if like is None:
        return ()
    if not isinstance(like, (str, list, tuple)):  # a dict's keys, a set's order: never meant
        raise SettingsError("Examples (like) are a text or a list of texts.", param="like")
    items = [like] if isinstance(like, str) else list(like)
    for item in items:
        if not isinstance(item, str) or not item.strip():
            raise SettingsError("An example (like) must be a non-empty text.", param="like")
    return tuple(item.strip() for item in items)


def like_sentence(examples: Sequence[str]) -> str | None:
    """The sentence the preference lane's system prompt gets for ``examples`` (None for
    none); the examples themselves are the lane's earlier turns (``like_turns``)."""
    return LIKE_INSTRUCTION if examples else None


def like_turns(examples: Sequence[str]) -> list[dict[str, str]]:
    """The exchanges in front of the conversation on a lane that reads ``examples``: for each,
    a user turn (``LIKE_REQUEST``) and the example as the assistant's answer."""
    return [turn for text in examples
            for turn in ({"role": "user", "content": LIKE_REQUEST},
                         {"role": "assistant", "content": text})]


#: Characters of an example tokenized to tell that it is over the limit on its own, per token
#: of the limit: a long text is refused from its start, not tokenized whole (a 50 MB file took
#: 18 s and 3 GB). A token of an ordinary text is a few characters; one that fits the limit
#: only with longer tokens (a run of spaces) is then tokenized whole.
_PREFIX_CHARS_PER_TOKEN = 64


def check_like_tokens(examples: Sequence[str], count: Callable[[str], int],
                      limit: int) -> int:
    """The examples' total tokens (``count`` tokenizes one text); one sentence when over
    ``limit``."""
    total = 0
    prefix_chars = max(limit, 1) * _PREFIX_CHARS_PER_TOKEN
    for text in examples:
        if len(text) > prefix_chars and count(text[:prefix_chars]) > limit:
            raise SettingsError(f"The examples are more than {limit} tokens together, the "
                                "limit (max_like_tokens); give fewer or shorter examples.",
                                param="like")
        total += count(text)
    if total > limit:
        raise SettingsError(f"The examples are {total} tokens together and the limit is "
                            f"{limit} (max_like_tokens); give fewer or shorter examples.",
                            param="like")
    return total
