"""Text as the app shows it: in a line of limited room, and typed text without the control
characters a terminal would act on."""

from __future__ import annotations

import re
import unicodedata

#: C0 and C1 control characters and DEL, but tab and newline: a terminal acts on them (a bell,
#: a backspace, a colour) instead of showing them, and a pasted one broke the box's border.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def shortened(text: str, limit: int) -> str:
    """``text`` if it has at most ``limit`` characters, else its first ones (trailing spaces
    dropped) and "…", ``limit`` characters at most in all."""
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def printable(text: str) -> str:
    """``text`` with its line ends as newlines (``\r\n`` and ``\r``) and without other
    control characters (tabs and newlines stay)."""
    return _CONTROL.sub("", text.replace("\r\n", "\n").replace("\r", "\n"))


def typed_text(character: str | None) -> str | None:
    """The character of a key that is text though Textual does not insert it, else None:
    Textual's boxes insert only what Python calls printable, which leaves out the format
    characters (the zero-width joiner of an emoji family, the zero-width non-joiner Persian
    spelling needs, the marks of right-to-left text) and the spaces other than the space (a
    no-break space): typed, they were dropped."""
    if character is None or len(character) != 1 or character.isprintable():
        return None
    return character if unicodedata.category(character) in ("Cf", "Zs") else None
