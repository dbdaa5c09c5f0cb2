"""Helpers of the tests that run the real app (`localpref chat`) in a real pseudo-terminal.

pexpect runs the command on a pseudo-terminal and writes keys as a terminal would; pyte, a
terminal emulator, renders what the app draws, so a test waits for what a person would see.
Every wait is on a condition with a generous timeout (the machine may be loaded), never a fixed
sleep. What was sent is read back from the SQLite history.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pexpect
import pyte

from localpref.store import Store

COLUMNS, LINES = 200, 50
WAIT = 300.0  # seconds; each wait ends as soon as its condition holds
CTRL_N, CTRL_Q, ENTER = "\x0e", "\x11", "\r"

#: Terminal escape sequences (colours, cursor moves, modes), to read printed text out of them.
ESCAPES = re.compile(r"\x1b(\[[0-?]*[ -/]*[@-~]|\][^\x07]*\x07|[()][A-Za-z0-9]|[=>])")


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


    def send_first_message(self, text: str) -> None:
        """Once the app is on the screen (the model may still be loading), send ``text`` and
        wait for its answer to start."""
        self.wait(lambda: "Message (Enter sends" in self.text, "the app to start")
        self.type(text + ENTER)
        self.wait(lambda: "writing…" in self.text, "the first answer to start")

    def finish(self) -> int:
        """Wait for the app to end; its exit status (what it printed last is in ``tail``)."""
        self.child.expect(pexpect.EOF, timeout=WAIT)
        self.tail: bytes = self.child.before or b""
        self.child.close()
        return int(self.child.exitstatus)


@contextlib.contextmanager
def chat_terminal(home: Path, *arguments: str, columns: int = COLUMNS) -> Iterator[Terminal]:
    """``localpref chat ARGUMENTS`` on a pseudo-terminal ``columns`` wide, its data folder
    ``home``; killed afterwards if it still runs."""
    env = {**os.environ, "LOCALPREF_HOME": str(home), "TERM": "xterm-256color",
           "PYTHONPATH": os.pathsep.join(sys.path)}
    env.pop("NO_COLOR", None)
    child = pexpect.spawn(sys.executable, ["-m", "localpref.cli", "chat", *arguments], env=env,
                          dimensions=(LINES, columns), cwd=str(home))
    try:
        yield Terminal(child)
    finally:
        if child.isalive():
            child.terminate(force=True)


def printed(output: bytes) -> str:
    """The words a program printed on the terminal: escape sequences out, white space folded."""
    return " ".join(ESCAPES.sub("", output.decode("utf-8", errors="replace")).split())


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
