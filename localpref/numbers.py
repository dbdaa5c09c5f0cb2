"""Numbers as people type them: ASCII digits, a point and an exponent.

Python's ``float()`` reads more: ``"1_0"`` (10, a digit grouping), full-width and other
Unicode digits (``"２"``), which a mistyped flag or field would then take without a word. The
command line, the app's fields and ``TEXT=NUMBER`` weights read this instead.
"""

from __future__ import annotations

import re

#: A decimal number: ``2``, ``-0.5``, ``.5``, ``1.``, ``5e-1``.
DECIMAL = r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?"
#: A number as typed: a decimal, or inf / infinity / nan in any case (which the range checks
#: then refuse by name, rather than as "not a number").
NUMBER = re.compile(rf"{DECIMAL}|[+-]?(?:inf|infinity|nan)", re.IGNORECASE)


def number(text: str) -> float:
    """``text`` as a float when it is a number as typed (``NUMBER``, spaces around it
    allowed), else ``ValueError`` (argparse's "invalid number value: '1_0'")."""
    if not NUMBER.fullmatch(text.strip()):
        raise ValueError(f"not a number: {text!r}")
    return float(text)
