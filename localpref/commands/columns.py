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


#: Joins the emoji after it to the one before (a family: man, ZWJ, woman, ZWJ, girl).
ZERO_WIDTH_JOINER = "\u200d"
#: Asks for the emoji form of the character before it (a heart drawn as an emoji, 2 cells).
EMOJI_PRESENTATION = "\ufe0f"
#: Skin tones: they colour the emoji before them and take no cell of their own.
SKIN_TONES = range(0x1F3FB, 0x1F400)


def width(text: str) -> int:
    """The terminal cells ``text`` takes on one line: each character's (``cells``), with an
    emoji sequence drawn as one emoji (a skin tone or a character joined by a zero-width
    joiner adds nothing, and the emoji presentation selector makes a narrow symbol 2 wide)."""
    total = previous = 0
    joined = False
    for character in text:
        if joined:
            joined = False
            if cells(character) == 2:  # an emoji joined to the one before: drawn within it
                continue
        if character == ZERO_WIDTH_JOINER:
            joined = previous == 2  # between letters it joins nothing on a terminal
            continue
        if ord(character) in SKIN_TONES and previous:
            continue
        if character == EMOJI_PRESENTATION:
            if previous == 1:
                total, previous = total + 1, 2
            continue
        previous = cells(character)
        total += previous
    return total


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
