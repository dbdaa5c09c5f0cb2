"""Text as the app shows it in a line of limited room."""

from __future__ import annotations


def shortened(text: str, limit: int) -> str:
    """``text`` if it has at most ``limit`` characters, else its first ones (trailing spaces
    dropped) and "…", ``limit`` characters at most in all."""
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"
