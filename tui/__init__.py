"""The localpref chat app (Textual). ``localpref chat`` imports this lazily; the library never
imports it."""

from tui.app import LocalprefApp

__all__ = ["LocalprefApp"]
