"""A JSON Schema ``pattern`` as llama-cpp-python's converter and llama.cpp's grammar can write
it inside a JSON string.

JSON Schema's ``pattern`` matches anywhere in a text (pydantic's ``Field(pattern=r"\\d{3}")``
comes unanchored), where the converter (0.3.36) takes only ``^...$``: the pattern is written
as a whole match of it, and a text that matches it whole matches it anywhere, so the answer
still validates. The converter copies escapes it does not know into the grammar, which
llama.cpp then refuses (``\\d``, ``\\.``), and copies a class as it is, so ``[^@]`` let the
model write a raw quote, backslash or line break inside the string, which is not JSON:

- ``\\d``, ``\\w`` and ``\\s`` become ranges (``\\s`` a space where it adds characters: a raw
  tab or line break would break the string; every whitespace character where it takes them
  away, in ``[^\\s]``), ``\\D``, ``\\W``, ``\\S`` negated classes;
- an escaped punctuation character (``\\.``, ``\\-``) becomes a class of its own;
- a negated class also leaves out what a JSON string cannot hold raw;
- a pattern that needs a quote, a backslash or a control character in the text, or whose
  brackets do not pair (a stray ``]`` made the converter loop for ever), is refused
  (``PatternError``, a sentence's end);
- a ``{n,m}`` counting above :data:`MAX_REPETITIONS` is refused too: the converter writes
  each repetition out, taking seconds and gigabytes for a count of millions;
- an empty pattern (or ``^`` or ``$`` alone) matches every text: ``None``, no constraint.
"""

from __future__ import annotations

#: What a JSON string cannot hold raw, as a grammar class's members: a quote, a backslash and
#: the control characters (llama.cpp's own JSON grammar leaves out DEL too).
_NOT_IN_JSON = '"\\\\\\x00-\\x1F\\x7F'
#: ECMAScript's ``\\s``, every whitespace character, as a grammar class's members.
_ALL_SPACE = (" \\t\\n\\r\\x0B\\x0C\\u00A0\\u1680\\u2000-\\u200A\\u2028\\u2029\\u202F\\u205F"
              "\\u3000\\uFEFF")
#: Shorthand classes: (members in a class that adds them, in one that takes them away).
_SHORTHANDS = {"d": ("0-9", "0-9"), "w": ("0-9A-Za-z_", "0-9A-Za-z_"),
               "s": (" ", _ALL_SPACE)}
#: Escapes the converter reads as the character itself (in a literal); ``\\\\`` is one, but a
#: backslash is a character JSON escapes.
_CONVERTER_ESCAPES = frozenset("[]()|{}*+?")
#: Escapes of characters JSON writes escaped: the text would need one raw.
_JSON_ESCAPED = frozenset('"\\\\nrtfv0')
#: The most repetitions of one part a schema may ask for (a pattern's ``{n,m}``, a
#: ``minLength``, ``maxItems``...): the converter writes each one out (a count of 10 million
#: took it a minute and 1.8 GB, and an answer could not hold them anyway). Above about 1,000
#: optional ones the grammar nests too deep for llama.cpp (``grammar.MAX_GRAMMAR_DEPTH``).
MAX_REPETITIONS = 10_000
#: The most repetitions a whole schema may ask for, its counts and patterns together (a
#: thousand counts of 10,000 made a 70 MB grammar in 6 s; a million, about 0.5 s).
MAX_TOTAL_REPETITIONS = 1_000_000


class PatternError(ValueError):
    """Why a pattern cannot be written: the end of a sentence ("holds a stray ']'")."""


def _escaped_in_json() -> PatternError:
    """The refusal of a pattern whose text needs a character JSON writes escaped."""
    return PatternError("needs a character JSON writes escaped (a quote, a backslash or a "
                        "control character) inside the string, which the grammar cannot write")


def _members(char: str, negated: bool) -> str:
    """What an escaped ``char`` adds to a class (negated or not)."""
    shorthand = _SHORTHANDS.get(char)
    if shorthand is not None:
        return shorthand[negated]
    if char in _JSON_ESCAPED:
        if negated:
            return ""  # (left out already: a negated class leaves out what JSON escapes)
        raise _escaped_in_json()
    if char.isalnum() or char in "DWS":
        raise PatternError(f"uses \\{char}, which localpref's grammar cannot write in a class")
    return f"\\x{ord(char):02X}" if char in "^-]\\[" else char


def _outside(char: str) -> str:
    """An escaped ``char`` outside a class, as the converter and the grammar read it."""
    shorthand = _SHORTHANDS.get(char)
    if shorthand is not None:
        return f"[{shorthand[0]}]" if char != "s" else " "
    negated = _SHORTHANDS.get(char.lower())
    if char in "DWS" and negated is not None:
        return f"[^{negated[1]}{_NOT_IN_JSON}]"
    if char in _CONVERTER_ESCAPES:
        return "\\" + char
    if char in _JSON_ESCAPED:
        raise _escaped_in_json()
    if not char.isascii() or char.isalnum():
        raise PatternError(f"uses \\{char}, which localpref's grammar cannot write")
    return f"[{_members(char, negated=False)}]"


def _check_raw(char: str, in_class: bool, negated: bool) -> None:
    if (char in '"\\\x7f' or ord(char) < 0x20) and not (in_class and negated):
        raise _escaped_in_json()  # a raw quote, backslash or control character (\x5C, \u005C)


def writable(pattern: str) -> str | None:
    """``pattern`` as a whole match the grammar writes inside a JSON string (the module's
    docstring says how); None when it matches every text. Raises ``PatternError``."""
    return _scanned(pattern)[0]


def repetitions(pattern: str) -> int:
    """How many repetitions the converter writes out for ``pattern``'s ``{n,m}`` (each
    one's ``m``, else its ``n``), added up. Raises ``PatternError``."""
    return sum(_scanned(pattern)[1])


def _scanned(pattern: str) -> tuple[str | None, list[int]]:
    """``writable(pattern)``, and the count each of its ``{n,m}`` writes out."""
    written: list[str] = []
    counts: list[int] = []
    bars: list[int] = []  # where in ``written`` a top-level ``|`` is
    in_class = negated = braced = False
    class_start = count_start = depth = index = 0
    while index < len(pattern):
        char = pattern[index]
        index += 1
        if char == "\\":
            if index == len(pattern):
                raise PatternError("ends in a lone backslash")
            char = pattern[index]
            index += 1
            if char == "u":  # \uXXXX (a surrogate pair one character): the character itself
                point, index = _code_point(pattern, index)
                _check_raw(chr(point), in_class, negated)
                member = f"\\U{point:08X}"  # (the converter split \u0041| as "\u004" "1")
                written.append(member if in_class else f"[{member}]")
            elif char == "U":  # as the converter copies it
                written.append("\\" + char)
            elif char == "x":  # \xHH: the character itself
                digits = pattern[index:index + 2]
                if not _hexadecimal(digits, 2):
                    raise PatternError("holds a \\x that two hexadecimal digits do not follow")
                _check_raw(chr(int(digits, 16)), in_class, negated)
                index += 2
                member = f"\\x{int(digits, 16):02X}"
                written.append(member if in_class else f"[{member}]")
            else:
                written.append(_members(char, negated) if in_class else _outside(char))
            continue
        _check_raw(char, in_class, negated)
        if in_class:
            if char == "]" and index - 1 == class_start:
                written.append("\\x5D")  # a class's first ']' is one (after [^, ours is not)
                continue
            if char == "]":
                in_class = False
            elif char == "^" and index - 1 == class_start and not negated:
                negated = True
                class_start += 1
                written.append(char + _NOT_IN_JSON)
                continue
            written.append(char)
            continue
        if char == "[":
            in_class, negated, class_start = True, False, index
        elif char == "]":
            raise PatternError("holds a ']' that closes no '['")
        elif char == "{":
            braced, count_start = True, index
        elif char == "}":
            if not braced:
                raise PatternError("holds a '}' that closes no '{'")
            braced = False
            counts.append(_written_count(pattern[count_start:index - 1]))
        elif char == "(":
            depth += 1
            if pattern.startswith("?:", index):  # a group that captures nothing: a group
                index += 2
        elif char == ")":
            depth -= 1
            if depth < 0:
                raise PatternError("holds a ')' that closes no '('")
        elif char == "|" and depth == 0:
            bars.append(len(written))
        written.append(char)
    if in_class or depth or braced:
        raise PatternError("leaves a '[', '(' or '{' open")
    if bars:
        return _alternatives(written, bars), counts
    return _anchored(pattern, "".join(written)), counts


def _alternatives(written: list[str], bars: list[int]) -> str:
    """A pattern of alternatives at its top level (``^\\d{5}$|^\\d{5}-\\d{4}$``) as a
    whole match of one of them: ``^(a|b)$``, each alternative's own anchors left out. The
    converter strips only the outer ``^`` and ``$`` and writes the string's quotes beside
    the whole, which bound the first and the last alternative only: an answer could end the
    string with ``12345$`` and no quote (not JSON). An alternative matched whole matches the
    pattern, anchored or not, so the answer still validates."""
    parts = [written[start + 1 if start else 0:end]
             for start, end in zip([0, *bars], [*bars, len(written)], strict=True)]
    cores = ["".join(part[1 if part[:1] == ["^"] else 0:
                          -1 if part[-1:] == ["$"] and len(part) > 1 else len(part)])
             for part in parts]
    return f"^({'|'.join(cores)})$"


def joined_surrogates(high: int, low: int) -> int:
    """The code point a UTF-16 surrogate pair stands for (RFC 2781, 2.2):
    ``0x10000 + (high - 0xD800) * 0x400 + (low - 0xDC00)``."""
    return 0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00)


def _hexadecimal(digits: str, count: int) -> bool:
    """Whether ``digits`` is ``count`` hexadecimal digits."""
    return len(digits) == count and all(d in "0123456789abcdefABCDEF" for d in digits)


def _code_point(pattern: str, index: int) -> tuple[int, int]:
    """The code point of the ``\\uXXXX`` whose digits begin at ``index`` (a high surrogate
    and the ``\\uXXXX`` of a low one after it: the character they stand for), and where the
    pattern goes on. Raises ``PatternError``."""
    digits = pattern[index:index + 4]
    if not _hexadecimal(digits, 4):
        raise PatternError("holds a \\u that four hexadecimal digits do not follow")
    point, index = int(digits, 16), index + 4
    low = pattern[index + 2:index + 6] if pattern.startswith("\\u", index) else ""
    if 0xD800 <= point < 0xDC00 and _hexadecimal(low, 4) and 0xDC00 <= int(low, 16) < 0xE000:
        return joined_surrogates(point, int(low, 16)), index + 6
    if 0xD800 <= point < 0xE000:  # (written raw, bytes that are not UTF-8, nor JSON)
        raise PatternError(f"holds \\u{digits}, half of a surrogate pair without the other "
                           "half, which is no character")
    return point, index


def _written_count(counts: str) -> int:
    """The repetitions a ``{n,m}`` (``counts``: what is between the braces) writes out, its
    ``m`` or else its ``n``, each read as the converter reads it (``int`` of the stripped
    text, so ``1_000`` is a thousand); a ``PatternError`` above :data:`MAX_REPETITIONS`."""
    largest = 0
    for number in counts.split(","):
        number = number.strip()
        try:
            value = int(number) if len(number) <= 16 else MAX_REPETITIONS + 1
        except ValueError:  # not a count: the converter's own sentence says so
            continue
        if value > MAX_REPETITIONS:
            shown = counts if len(counts) <= 24 else counts[:20] + "..."
            raise PatternError(f"repeats a part {{{shown}}} times, more than the "
                               f"{MAX_REPETITIONS:,} localpref's grammar writes; lower the count")
        largest = max(largest, value)
    return largest


def _anchored(pattern: str, written: str) -> str | None:
    """``written`` (``pattern`` rewritten) as a whole match: ``^(...)$`` around what the
    pattern's own anchors leave; None for a pattern that anchors nothing."""
    starts = pattern.startswith("^")
    trailing = len(pattern[:-1]) - len(pattern[:-1].rstrip("\\"))
    ends = pattern.endswith("$") and trailing % 2 == 0
    if starts and ends and len(pattern) > 1:
        return written
    core = written[1 if starts else 0: len(written) - 1 if ends else len(written)]
    return f"^({core})$" if core else None
