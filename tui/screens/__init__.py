"""Screens over the chat: help, dialogs, the model picker, and the side-by-side comparison."""

from tui.screens.compare import CompareScreen, KeptAnswer
from tui.screens.dialogs import ConfirmDialog, ModelErrorDialog, TextDialog
from tui.screens.help import HelpScreen
from tui.screens.models import ModelPickerScreen, PickedModel

__all__ = ["CompareScreen", "ConfirmDialog", "HelpScreen", "KeptAnswer", "ModelErrorDialog",
           "ModelPickerScreen", "PickedModel", "TextDialog"]
