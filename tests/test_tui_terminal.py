"""The real app (`localpref chat`) in a real pseudo-terminal, typed into at full speed.

pexpect runs the command on a pseudo-terminal and writes keys as a terminal would, each
question in one write; pyte, a terminal emulator, renders what the app draws, so the test
waits for what a person would see. Every wait is on a condition with a generous timeout (the
machine may be loaded), never a fixed sleep. What was sent is read back from the SQLite
history.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pexpect
import pyte

from localpref.store import Store

COLUMNS, LINES = 200, 50
WAIT = 300.0  # seconds; each wait ends as soon as its condition holds
CTRL_N, CTRL_Q, ENTER = "\x0e", "\x11", "\r"

FIRST = "Why is the sky blue in the day and orange when the sun sets?"
SECOND = "What should I cook tonight with rice, eggs and a few carrots"
THIRD = "Give me three tips for keeping basil alive on a sunny window"


class Terminal:
    """The app's pseudo-terminal and the screen pyte renders from what the app writes."""

    def __init__(self, child: pexpect.spawn) -> None:
        self.child = child
        self.screen = pyte.Screen(COLUMNS, LINES)
        self.stream = pyte.ByteStream(self.screen)

    @property
    def text(self) -> str:
        return "\n".join(self.screen.display)

    def type(self, keys: str) -> None:
        """Write keys in one go, as fast as a terminal can deliver them."""
        self.child.send(keys.encode())

    def wait(self, condition: Callable[[], bool], what: str) -> None:
        """Read the app's output into the screen until ``condition()`` holds."""
        deadline = time.monotonic() + WAIT
        while not condition():
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}; the screen:\n{self.text}")
            try:
                self.stream.feed(self.child.read_nonblocking(65536, timeout=0.2))
            except pexpect.TIMEOUT:
                pass


def history(path: Path) -> list[list[tuple[str, str, str]]]:
    """Every conversation, oldest first, as (role, text, status) triples."""
    with Store(path) as store:
        conversations = sorted(store.list_conversations(), key=lambda c: c.id)
        return [[(m.role, m.content, m.status) for m in store.messages(c.id)]
                for c in conversations]


def answered(conversation: list[tuple[str, str, str]], questions: int) -> bool:
    """The conversation holds ``questions`` messages, each with a finished answer."""
    return (len(conversation) == 2 * questions
            and all(status == "complete" for _, _, status in conversation))


def test_keys_typed_at_full_speed_all_land_in_order(tmp_path):
    path = tmp_path / "history.sqlite3"
    with Store(path) as store:  # short, one-lane answers so the test stays quick
        store.set_setting("steering", {"presets": ["verbose"], "method": "pref",
                                       "sampling": {"max_tokens": 32}})
    env = {**os.environ, "LOCALPREF_HOME": str(tmp_path), "TERM": "xterm-256color",
           "PYTHONPATH": os.pathsep.join(sys.path)}
    env.pop("NO_COLOR", None)
    child = pexpect.spawn(sys.executable, ["-m", "localpref.cli", "chat"], env=env,
                          dimensions=(LINES, COLUMNS), cwd=str(tmp_path))
    term = Terminal(child)
    try:
        # the moment the app is on the screen (the model may still be loading)
        term.wait(lambda: "Message (Enter sends" in term.text, "the app to start")
        term.type(FIRST + ENTER)
        term.wait(lambda: "writing…" in term.text, "the first answer to start")
        term.type(SECOND + ENTER)  # while the first answer streams
        term.wait(lambda: len(history(path)) == 1 and answered(history(path)[0], 2),
                  "both answers of the first conversation")
        term.type(CTRL_N + THIRD + ENTER)  # right after Ctrl+N, in the same write
        term.wait(lambda: len(history(path)) == 2 and answered(history(path)[1], 1),
                  "the answer in the new conversation")
        term.wait(lambda: THIRD in term.text, "the third message on the screen")

        first, second = history(path)
        assert [(role, text) for role, text, _ in first][::2] == [("user", FIRST),
                                                                  ("user", SECOND)]
        assert [(role, text) for role, text, _ in second][::2] == [("user", THIRD)]
        assert all(role == "assistant" and text.strip()
                   for role, text, _ in first[1::2] + second[1::2])

        term.type(CTRL_Q)
        child.expect(pexpect.EOF, timeout=WAIT)
        child.close()
        assert child.exitstatus == 0
    finally:
        if child.isalive():
            child.terminate(force=True)
