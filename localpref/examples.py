"""Preference by example: texts in the style the user wants, shown to the preference lane.

``like=[text, ...]`` puts the examples, quoted, into the preference lane's system prompt after
one sentence that asks to write like them (and after any named preference); the base lane stays
neutral, so the contrast steers toward what the examples share. With weighted preferences the
examples are one more weighted lane at weight 1 (``localpref.weights``). Their total length is
bounded (``Model(max_like_tokens=...)``): examples are read on every lane that carries them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from localpref.errors import SettingsError

#: The default bound on the examples' total tokens (``Model(max_like_tokens=...)``).
DEFAULT_MAX_LIKE_TOKENS = 1024

#: The sentence in front of the quoted examples.
LIKE_INSTRUCTION = ("Write your answer in the same style as the following examples: their "
                    "form, length and tone, not their content.")

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
    """The text the preference lane's system prompt gets for ``examples`` (None for none):
    the instruction, then each example between triple quotes."""
    if not examples:
        return None
    quoted = "\n\n".join(f'Example {number}:\n"""\n{text}\n"""'
                         for number, text in enumerate(examples, start=1))
    return f"{LIKE_INSTRUCTION}\n\n{quoted}"


def check_like_tokens(examples: Sequence[str], count: Callable[[str], int],
                      limit: int) -> int:
    """The examples' total tokens (``count`` tokenizes one text); one sentence when over
    ``limit``."""
    total = sum(count(text) for text in examples)
    if total > limit:
        raise SettingsError(f"The examples are {total} tokens together and the limit is "
                            f"{limit} (max_like_tokens); give fewer or shorter examples.")
    return total
