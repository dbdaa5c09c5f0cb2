"""The command palette (Ctrl+P): every action by name, plus methods and preferences.

Actions come from ``tui.keys`` (the same table as the bindings), so the palette shows each
action's key; choosing a method or a preference here applies it to the next answer.
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import partial

from textual.command import DiscoveryHit, Hit, Hits, Provider

from localpref import PRESETS
from localpref.methods import METHODS
from tui.keys import APP_ACTIONS
from tui.steering import RECOMMENDED_METHOD, method_description, method_title


class SteeringCommands(Provider):
    """Actions, methods and built-in preferences for the command palette."""

    def _entries(self) -> Iterator[tuple[str, str, str]]:
        """(text shown, help, action to run) for every entry."""
        for action in APP_ACTIONS:
            if action.palette:
                yield (action.description, f"{action.help} ({action.key_display})",
                       action.action)
        yield (f"Method: Recommended ({method_description(RECOMMENDED_METHOD)})",
               "The recommended steering, as the command line and the API use it when no "
               "method is named.", "set_method('recommended')")
        for name in METHODS:
            yield (f"Method: {method_title(name)}",
                   "Decode the next answers with this method.", f"set_method('{name}')")
        for name, sentence in PRESETS.items():
            yield (f"Preference: toggle {name}", sentence, f"toggle_preset('{name}')")

    async def discover(self) -> Hits:
        for text, help_text, action in self._entries():
            yield DiscoveryHit(text, partial(self.app.run_action, action), help=help_text)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for text, help_text, action in self._entries():
            score = matcher.match(text)
            if score > 0:
                yield Hit(score, matcher.highlight(text), partial(self.app.run_action, action),
                          text=text, help=help_text)
