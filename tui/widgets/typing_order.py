"""Text fields whose keys land in the order they were typed, however busy the app is.

Textual runs a widget's bindings only once the key has bubbled back up to the app, after the
characters typed just behind it have reached the field (Ctrl+U then erased the new name typed
after it in a rename dialog while an answer streamed, and Backspace the next character). A
field that calls :func:`ran_own_binding` first in its ``_on_key`` runs its own bindings in
the order of its queue.
"""

from __future__ import annotations

from textual import events
from textual.widget import Widget
from textual.widgets import Input


async def ran_own_binding(field: Widget, event: events.Key) -> bool:
    """Run ``field``'s own binding of the key, here and now; whether one ran (the key is then
    used up)."""
    for binding in field._bindings.key_to_bindings.get(event.key, ()):
        if await field.app.run_action(binding.action, field):
            event.stop()
            event.prevent_default()
            return True
    return False


class OrderedInput(Input):
    """A one-line field (dialogs, the preference panel) with its keys in typing order."""

    async def _on_key(self, event: events.Key) -> None:
        if not await ran_own_binding(self, event):
            await super()._on_key(event)
