"""JSON from users' files: every refusal one ``JSONProblem``.

Python's reader refuses some valid JSON with errors that are not ``json.JSONDecodeError``: a
number of more than 4,300 digits (a ``ValueError`` from ``int``) and arrays or objects nested
deeper than its recursion (a ``RecursionError``). A batch file or a dataset holding one gave a
traceback where a line that is not JSON gave a sentence; ``loads`` turns all three into a
``JSONProblem`` whose ``reason`` says which.
"""

from __future__ import annotations

import json
from typing import Any

#: ``JSONProblem.kind``: not JSON, a number too long for Python, nesting too deep for it.
SYNTAX, DIGITS, DEPTH = "syntax", "digits", "depth"


class JSONProblem(ValueError):
    """Why a text is not JSON that Python reads: ``kind``, ``msg`` (the reader's words for a
    syntax error, e.g. "Extra data") and ``lineno`` (1 when it names no place)."""

    def __init__(self, kind: str, msg: str, lineno: int = 1) -> None:
        super().__init__(msg)
        self.kind, self.msg, self.lineno = kind, msg, lineno

    @property
    def reason(self) -> str:
        """What is wrong, as a phrase to end a sentence with."""
        if self.kind == DIGITS:
            return "it holds a number of more than 4,300 digits"
        if self.kind == DEPTH:
            return "its arrays or objects nest too deeply"
        return f"{self.msg} at line {self.lineno}"


def loads(text: str | bytes) -> Any:
    """``json.loads``, every refusal a ``JSONProblem``."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise JSONProblem(SYNTAX, error.msg, error.lineno) from None
    except RecursionError:
        raise JSONProblem(DEPTH, "nested too deeply") from None
    except ValueError as error:  # (a UnicodeDecodeError of bytes is one too)
        kind = DIGITS if "digits" in str(error) else SYNTAX
        raise JSONProblem(kind, str(error).split(":", 1)[0]) from None
