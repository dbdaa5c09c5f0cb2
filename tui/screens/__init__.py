"""Screens over the chat: help, dialogs, and the side-by-side comparison."""

from tui.screens.compare import CompareScreen, KeptAnswer
from tui.screens.dialogs import ConfirmDialog, ModelErrorDialog, TextDialog
from tui.screens.help import HelpScreen

__all__ = ["CompareScreen", "ConfirmDialog", "HelpScreen", "KeptAnswer", "ModelErrorDialog",
           "TextDialog"]
