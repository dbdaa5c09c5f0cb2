"""The real app (`localpref chat`) in a real pseudo-terminal, typed into at full speed
(``terminal_helpers``): what was sent is read back from the SQLite history."""

from __future__ import annotations

import signal

import pytest
from terminal_helpers import CTRL_N, CTRL_Q, ENTER, answered, chat_terminal, history
from tui_helpers import seed

from localpref.store import Store

FIRST = "Why is the sky blue in the day and orange when the sun sets?"
SECOND = "What should I cook tonight with rice, eggs and a few carrots"
THIRD = "Give me three tips for keeping basil alive on a sunny window"


def test_keys_typed_at_full_speed_all_land_in_order(tmp_path):
    path = tmp_path / "history.sqlite3"
    # short, one-lane answers so the test stays quick
    seed(tmp_path, presets=["verbose"], method="pref", sampling={"max_tokens": 32})
    with chat_terminal(tmp_path) as term:
        term.send_first_message(FIRST)
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
        assert term.finish() == 0


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGTERM, 143), (signal.SIGHUP, 129),
                                              (signal.SIGINT, 130)])  # (SIGINT exited 0)
def test_a_terminating_signal_quits_as_ctrl_q_and_gives_the_terminal_back(tmp_path, signum,
                                                                           code):
    """SIGTERM and SIGHUP ended the process at once: the terminal was left in the app's
    screen and mouse modes, and the answer being written was not saved."""
    path = tmp_path / "history.sqlite3"
    seed(tmp_path, presets=["verbose"], method="pref", sampling={"max_tokens": 400})
    with chat_terminal(tmp_path) as term:
        term.send_first_message(FIRST)
        term.child.kill(signum)
        assert term.finish() == code
        assert b"\x1b[?1049l" in term.tail  # the alternate screen left
        assert b"\x1b[?1000l" in term.tail  # mouse reporting off
    (conversation,) = history(path)
    assert conversation[0] == ("user", FIRST, "complete")
    role, text, status = conversation[1]
    assert role == "assistant" and status in ("partial", "complete")
    if status == "partial":  # stopped by the signal, saved as Ctrl+Q saves it
        with Store(path) as store:
            answer = store.messages(store.list_conversations()[0].id)[1]
        assert answer.stats["stop_reason"] == "app_closed"
