"""Text laid out in terminal columns by its width on screen, not its length: a CJK character or
a wide emoji takes two cells, a combining mark none (Unicode's East Asian Width property, what
terminals follow), so that ``compare``'s columns line up whatever the script."""

from __future__ import annotations

import unicodedata


def cells(character: str) -> int:
    """The terminal cells one character takes: 2 wide or full-width, 0 a non-spacing or
    enclosing mark or a format character (Thai's vowel marks, a zero-width joiner), else 1."""
    if unicodedata.category(character) in ("Mn", "Me", "Cf"):
        return 0
    return 2 if unicodedata.east_asian_width(character) in ("W", "F") else 1


def width(text: str) -> int:
    """The terminal cells ``text`` takes on one line."""
    return sum(cells(character) for character in text)


def pad(text: str, columns: int) -> str:
    """``text`` with spaces after it to fill ``columns`` cells (as ``str.ljust`` by length)."""
    return text + " " * max(0, columns - width(text))


def wrap(paragraph: str, columns: int) -> list[str]:
    """The lines of ``paragraph`` at most ``columns`` cells wide: broken at spaces, and a word
    wider than a line (a CJK sentence has no spaces) broken between characters."""
    lines: list[str] = []
    line = ""
    for word in paragraph.split():
        joined = f"{line} {word}" if line else word
        if width(joined) <= columns:
            line = joined
            continue
        if line:
            lines.append(line)
        line = ""
        for character in word:
            if width(line) + cells(character) > columns and line:
                lines.append(line)
                line = ""
            line += character
    if line:
        lines.append(line)
    return lines
