"""Helpers shared by the tests that drive the app with Textual's pilot."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from localpref.store import Store

if TYPE_CHECKING:
    from tui.app import LocalprefApp

SIZE = (160, 50)
WAIT = 120.0  # generous: the CI machine may be shared; the waits end as soon as true


async def until(pilot, condition: Callable[[], bool], timeout: float = WAIT) -> None:
    """Let the app run until ``condition`` holds (an AssertionError after ``timeout``)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting for the app")
        await pilot.pause(0.05)


async def run_from_palette(pilot, command: str) -> None:
    """Open the command palette (Ctrl+P), type a command and run the first match."""
    await pilot.press("ctrl+p")
    await pilot.pause()
    await pilot.press(*command)
    await pilot.pause(0.5)
    await pilot.press("enter")


def seed(home: Path, **steering) -> None:
    """Save steering settings before the app starts (as a previous session would)."""
    with Store(home / "history.sqlite3") as store:
        store.set_setting("steering", steering)


async def click(pilot, app: LocalprefApp, selector: str) -> None:
    """Scroll a widget into view (the panel is taller than the screen) and click it."""
    app.screen.query_one(selector).scroll_visible(animate=False, immediate=True)
    await pilot.pause()
    assert await pilot.click(selector), f"{selector} was not clicked"


async def open_from_list(pilot, app: LocalprefApp, conversation_id: int) -> None:
    """Highlight a conversation in the list and press Enter, until it is the open one: a
    refresh of the list (the app's start, a saved answer) highlights the open conversation
    again, and on a loaded machine one came between the highlight and the key."""
    from tui.widgets.conversation_list import ConversationList

    listed = app.query_one(ConversationList)
    deadline = time.monotonic() + WAIT
    while app.conversation_id != conversation_id:
        assert time.monotonic() < deadline, "timed out opening the conversation"
        listed.focus()
        listed.index = [item.conversation_id for item in listed.children].index(
            conversation_id)
        await pilot.pause()
        await pilot.press("enter")
        for _ in range(40):  # two seconds for the key's effect, then highlight again
            if app.conversation_id == conversation_id:
                break
            await pilot.pause(0.05)


async def open_compare(pilot, app: LocalprefApp,
                       prompt: str = "Give me one tip for sleeping well.") -> None:
    """Once the model is ready, write ``prompt`` and open the comparison (F4)."""
    from tui.screens import CompareScreen
    from tui.widgets import ChatInput

    await until(pilot, lambda: app.session is not None and not app.busy)
    app.query_one(ChatInput).load_text(prompt)
    await pilot.press("f4")
    await until(pilot, lambda: isinstance(app.screen, CompareScreen))
