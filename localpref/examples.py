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
    """The examples as a tuple (a single text is one example); an empty one is an error."""
    if like is None:
        return ()
    items = [like] if isinstance(like, str) else list(like)
    for item in items:
        if not isinstance(item, str) or not item.strip():
            raise SettingsError("An example (like) must be a non-empty text.")
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


def check_like_tokens(examples: Sequence[str], count: Callable[[str], int],
                      limit: int) -> int:
    """The examples' total tokens (``count`` tokenizes one text); one sentence when over
    ``limit``."""
    total = sum(count(text) for text in examples)
    if total > limit:
        raise SettingsError(f"The examples are {total} tokens together and the limit is "
                            f"{limit} (max_like_tokens); give fewer or shorter examples.")
    return total
