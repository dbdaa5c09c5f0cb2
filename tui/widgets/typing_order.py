"""Text fields whose keys land in the order they were typed, however busy the app is.

Textual runs a widget's bindings only once the key has bubbled back up to the app, after the
characters typed just behind it have reached the field (Ctrl+U then erased the new name typed
after it in a rename dialog while an answer streamed, Backspace the next character, and
Tab let the characters behind it into the field it left). A field that calls
:func:`ran_own_binding` first in its ``_on_key`` runs its own bindings, and the focus keys,
in the order of its queue.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from textual import events
from textual.binding import Binding
from textual.widget import Widget
from textual.widgets import Input

from tui.text import printable, typed_text

#: The keys that move the focus: run by the field itself, so that what is typed behind them
#: reaches the next field (Textual ran them once they had bubbled up to the screen, after
#: the characters typed behind them had gone into the field being left).
FOCUS_KEYS = {"tab": "focus_next", "shift+tab": "focus_previous"}


async def ran_own_binding(field: Widget, event: events.Key,
                          own: Mapping[str, Sequence[Binding]]) -> bool:
    """Run ``field``'s own binding of the key (``own``: its bindings by key), here and now;
    whether one ran (the key is then used up). A key that waited in the field's queue while
    the focus moved on goes to the widget that has it now; Tab and Shift+Tab move the focus
    here."""
    focused = field.screen.focused
    if focused is not None and focused is not field:
        focused.post_message(events.Key(event.key, event.character))
        return _used(event)
    if event.key in FOCUS_KEYS:
        getattr(field.screen, FOCUS_KEYS[event.key])()
        return _used(event)
    for binding in own.get(event.key, ()):
        if await field.app.run_action(binding.action, field):
            return _used(event)
    return False


def _used(event: events.Key) -> bool:
    """The key is used up here: no other widget sees it."""
    event.stop()
    event.prevent_default()
    return True


class OrderedInput(Input):
    """A one-line field (dialogs, the preference panel) with its keys in typing order."""

    async def _on_key(self, event: events.Key) -> None:
        if await ran_own_binding(self, event, self._bindings.key_to_bindings):
            return
        character = typed_text(event.character)  # (text Textual would drop)
        if character is None:
            await super()._on_key(event)
            return
        event.stop()
        event.prevent_default()
        if self.selection.is_empty:
            self.insert_text_at_cursor(character)
        else:
            self.replace(character, *self.selection)

    def _on_paste(self, event: events.Paste) -> None:
        """Paste without the control characters a terminal would act on (``printable``)."""
        super()._on_paste(events.Paste(printable(event.text)))
        event.stop()
        event.prevent_default()  # Textual would run Input's own handler on it next
