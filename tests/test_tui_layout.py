"""The app's layout at the widths people use: a status line that keeps the context and the
state in view, answer headers that wrap, and line breaks that stay line breaks; the real app
on the bundled model, driven with Textual's pilot."""

from __future__ import annotations

from pathlib import Path

import pytest
from textual.widgets import Markdown
from tui_helpers import until

from tui.app import LocalprefApp
from tui.widgets import ChatInput, ChatLog, StatusBar
from tui.widgets.markdown_feed import line_breaking_parser
from tui.widgets.status_bar import SEPARATOR, fitted

FACTS = [("model", "SmolLM2 135M Instruct"),
         ("method", "method recommended: amulet k=0.5 tau=0.2 ends=pref (uncalibrated default)"),
         ("preference", "preference concise"), ("speed", "14.2 tok/s"),
         ("steer", "steer 0.36 ms/tok"), ("context", "ctx 120/2048"), ("state", "ready")]


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("LOCALPREF_HOME", str(tmp_path))
    return tmp_path


def line(texts: list[str | None]) -> str:
    return " " + SEPARATOR.join(text for text in texts if text is not None)


def test_the_status_line_gives_way_from_its_names_then_its_figures() -> None:
    assert fitted(FACTS, None) == [text for _, text in FACTS]
    assert fitted(FACTS, 400) == [text for _, text in FACTS]
    for width in (160, 120, 100):
        texts = fitted(FACTS, width)
        assert len(line(texts)) == width  # shortened just enough
        assert texts[3:] == [text for _, text in FACTS[3:]]  # every figure whole
        assert texts[1].endswith("…")  # the longest first
        assert texts[0].endswith("…") is (width < 160)
    texts = fitted(FACTS, 80)  # the steering cost is left out before the speed
    assert texts[4] is None and texts[3] == "14.2 tok/s" and len(line(texts)) <= 80
    assert texts[5:] == ["ctx 120/2048", "ready"]
    texts = fitted(FACTS, 40)  # nothing more gives way: the context and state stay
    assert texts[3] is texts[4] is None and texts[5:] == ["ctx 120/2048", "ready"]
    assert [len(text) for text in texts[:3]] == [10, 12, 12]


def test_a_line_break_stays_a_line_break() -> None:
    tokens = line_breaking_parser().parse("Basil:\nwater it,\ngive it sun.\n\nDone.")
    inline = [token for token in tokens if token.type == "inline"]
    assert [child.type for child in inline[0].children] == [
        "text", "hardbreak", "text", "hardbreak", "text"]
    assert [child.type for child in inline[1].children] == ["text"]


async def test_a_two_line_message_and_the_status_at_120_columns(model, home) -> None:
    app = LocalprefApp(model=model)
    async with app.run_test(size=(120, 40)) as pilot:
        await until(pilot, lambda: app.session is not None and not app.busy)
        app.query_one(ChatInput).load_text("Name\na color.")
        await pilot.press("enter")
        await until(pilot, lambda: not app.busy and len(app.query_one(ChatLog).views) == 2)
        await pilot.pause(0.2)
        question, answer = app.query_one(ChatLog).views
        assert question.query_one(Markdown).children[0].region.height == 2  # two lines
        header = answer.query_one(".message-header")
        assert header.region.width * header.region.height >= len(answer.header())
        status = app.query_one(StatusBar)
        shown = str(status.render())
        assert len(shown) <= 120 and shown.endswith(" │ ready")
        assert f"/{model.n_ctx} │ ready" in shown and "tok/s" in shown
        assert model.name in status.plain and "uncalibrated default" in status.plain
