"""Messages the worker threads post to the app (workers never touch a widget), and the
messages the user sent that wait for the model."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from textual.message import Message

from localpref import Model
from tui.widgets.chat_log import MessageView


class AnswerProgress(Message):
    """Text the answer gained since the last update (batched), and its live figures."""

    def __init__(self, delta: str, stats: dict[str, Any]) -> None:
        super().__init__()
        self.delta = delta
        self.stats = stats


class AnswerDone(Message):
    """The answer ended (finished, stopped, or failed with ``error``); it is saved."""

    def __init__(self, text: str, partial: bool, stats: dict[str, Any], error: str | None,
                 changed_spans: list[tuple[int, int]] | None = None):
        super().__init__()
        self.text = text
        self.partial = partial
        self.stats = stats
        self.error = error
        #: Character spans of the tokens steering changed (None without a trace).
        self.changed_spans = changed_spans


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


@dataclass
class WaitingMessage:
    """A message sent while the model loads or an answer is written: saved and shown with
    "waiting", it goes to the model as soon as the model is free (first sent, first answered)."""

    text: str
    view: MessageView
    conversation: int | None
    message_id: int | None
