"""Messages the worker threads post to the app (workers never touch a widget)."""

from __future__ import annotations

from typing import Any

from textual.message import Message

from localpref import Model
from tui.session import Ended


class AnswerProgress(Message):
    """Text the answer gained since the last update (batched), and its live figures."""

    def __init__(self, delta: str, stats: dict[str, Any]) -> None:
        super().__init__()
        self.delta = delta
        self.stats = stats


class AnswerDone(Message):
    """The answer ended (finished, stopped, or failed); it is saved (``ChatSession.write``)."""

    def __init__(self, ended: Ended) -> None:
        super().__init__()
        self.ended = ended


class ModelLoaded(Message):
    def __init__(self, model: Model) -> None:
        super().__init__()
        self.model = model


class ModelFailed(Message):
    """The model could not be loaded: ``reason`` is one sentence."""

    def __init__(self, reason: str, spec: str | None) -> None:
        super().__init__()
        self.reason = reason
        self.spec = spec


class Notice(Message):
    """Something the user should read (e.g. a save that failed in the worker)."""

    def __init__(self, text: str, severity: str = "warning") -> None:
        super().__init__()
        self.text = text
        self.severity = severity
