"""Methods the library does not have, for the tests that show a new field or a new method class
reaches the command line, the app and the sweep without a change there (issue 15)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from localpref.methods import ContrastFamily, Contrastive


@dataclass(frozen=True)
class WiderContrastive(Contrastive):
    """Contrastive with one setting more, as if the library had added it to the method."""

    spread: float = field(default=1.0, metadata={"help": "how wide it reaches (default 1.0)"})


@dataclass(frozen=True)
class Gentle(ContrastFamily):
    """A two-lane method the library does not have: Contrastive at a tenth of its push."""

    name: ClassVar[str] = "gentle"
    title: ClassVar[str] = "Gentle"
    lanes: ClassVar[tuple[str, ...]] = ("pref", "base")
    strength_field: ClassVar[str] = "push"
    strength_name: ClassVar[str] = "push"
    strength_symbol: ClassVar[str] = "p"
    push: float = field(default=1.0, metadata={"help": "how hard it pushes (default 1.0)"})
    quiet: bool = field(default=False, metadata={"help": "a switch (default off)"})
    internal: int = field(default=3, metadata={"flag": False})

    def pick(self, selector, lane_logits):  # noqa: ANN001, ANN201
        return self.pick_contrast(selector, lane_logits[0], lane_logits[1], self.push / 10)
