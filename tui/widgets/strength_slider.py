"""A one-line slider for a method's strength knob (Contrastive ratio, Amulet contrast k, PAD
weight). Textual has no slider: this one is focusable, moves between fixed stops with
Left/Right (Home/End for the ends), and jumps to a stop when one of its cells is clicked.
It shows its value and a note (for Amulet, the equivalent alpha)."""

from __future__ import annotations

import bisect
from typing import Any

from textual import events
from textual.message import Message
from textual.reactive import reactive
from textual.widget import Widget

from tui.keys import SLIDER_ACTIONS, bindings

#: The values the slider stops at: mild to the papers' strengths (4.65 is Amulet's default k).
STOPS: tuple[float, ...] = (0.0, 0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 4.0, 4.65, 6.0, 8.0,
                            10.0)


class StrengthSlider(Widget, can_focus=True):
    """Edits one strength value; posts :class:`StrengthSlider.Changed` when the user moves it."""

    DEFAULT_CSS = """
    StrengthSlider {
        height: 1;
        width: 1fr;
    }
    StrengthSlider:focus {
        background: $accent 25%;
    }
    """

    BINDINGS = bindings(SLIDER_ACTIONS)

    value: reactive[float] = reactive(1.0)
    note: reactive[str] = reactive("")

    class Changed(Message):
        """The user moved the slider to ``value``."""

        def __init__(self, slider: StrengthSlider, value: float) -> None:
            super().__init__()
            self.slider = slider
            self.value = value

        @property
        def control(self) -> StrengthSlider:
            return self.slider

    def __init__(self, value: float, *, label: str = "strength",
                 stops: tuple[float, ...] = STOPS, **kwargs: Any) -> None:
        super().__init__(markup=False, **kwargs)  # a preference's own text is its label
        self.stops = tuple(sorted(stops))
        self.label = label
        self.set_reactive(StrengthSlider.value, float(value))

    # -- geometry ---------------------------------------------------------------------------

    @property
    def bar_start(self) -> int:
        """Cells before the bar: the label and a space and the opening bracket."""
        return len(self.label) + 2

    def position(self) -> int:
        """Index of the last stop at or below the value (0 below the first)."""
        return max(bisect.bisect_right(self.stops, self.value + 1e-12) - 1, 0)

    def render(self) -> str:
        filled = self.position()
        bar = "".join("█" if i <= filled else "─" for i in range(len(self.stops)))
        note = f"  {self.note}" if self.note else ""
        return f"{self.label} ▕{bar}▏ {self.value:g}{note}"

    # -- changing -----------------------------------------------------------------------------

    def set_value(self, value: float) -> None:
        """Show ``value`` without announcing it (the form changed it)."""
        self.value = float(value)

    def _move_to(self, value: float) -> None:
        if value != self.value:
            self.value = value
            self.post_message(self.Changed(self, value))

    def action_step(self, delta: int) -> None:
        """The next stop above (``delta`` 1) or below (-1) the value."""
        if delta > 0:
            above = [s for s in self.stops if s > self.value + 1e-12]
            target = above[0] if above else self.stops[-1]
        else:
            below = [s for s in self.stops if s < self.value - 1e-12]
            target = below[-1] if below else self.stops[0]
        self._move_to(target)

    def action_end(self, which: int) -> None:
        self._move_to(self.stops[-1] if which else self.stops[0])

    def on_click(self, event: events.Click) -> None:
        index = event.x - self.bar_start
        if 0 <= index < len(self.stops):
            self.focus()
            self._move_to(self.stops[index])
