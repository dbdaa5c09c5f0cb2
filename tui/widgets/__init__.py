"""The app's widgets: message box, messages, conversation list, status bar, preference panel."""

from tui.widgets.chat_input import ChatInput
from tui.widgets.chat_log import ChatLog, MessageView
from tui.widgets.conversation_list import ConversationList
from tui.widgets.preference_panel import PreferencePanel
from tui.widgets.status_bar import StatusBar
from tui.widgets.strength_slider import StrengthSlider

__all__ = ["ChatInput", "ChatLog", "ConversationList", "MessageView", "PreferencePanel",
           "StatusBar", "StrengthSlider"]
