"""The app's layout at the widths people use: a status line that keeps the context and the
state in view, answer headers that wrap, and line breaks that stay line breaks; the real app
on the bundled model, driven with Textual's pilot."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from rich.text import Text
from textual.pilot import Pilot
from textual.widget import Widget
from textual.widgets import DataTable, Markdown
from tui_helpers import until

from tui.app import LocalprefApp
from tui.screens import HelpScreen
from tui.widgets import ChatInput, ChatLog, PreferencePanel, StatusBar
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
    texts = fitted(FACTS, 64)  # every name at its floor: the line just fits
    assert texts[3] is texts[4] is None and texts[5:] == ["ctx 120/2048", "ready"]
    assert [len(text) for text in texts[:3]] == [10, 12, 12] and len(line(texts)) == 64
    texts = fitted(FACTS, 60)  # then the preference goes, then the method
    assert texts == [texts[0], texts[1], None, None, None, "ctx 120/2048", "ready"]
    assert len(line(texts)) <= 60
    texts = fitted(FACTS, 40)  # the context and the state stay in view
    assert texts == [texts[0], None, None, None, None, "ctx 120/2048", "ready"]
    assert len(texts[0]) == 10 and len(line(texts)) <= 40


def test_a_line_break_stays_a_line_break() -> None:
    tokens = line_breaking_parser().parse("Basil:\nwater it,\ngive it sun.\n\nDone.")
    inline = [token for token in tokens if token.type == "inline"]
    assert [child.type for child in inline[0].children] == [
        "text", "hardbreak", "text", "hardbreak", "text"]
    assert [child.type for child in inline[1].children] == ["text"]


def test_text_that_looks_like_html_stays_text() -> None:
    """Textual draws no HTML: a tag parsed as HTML vanished from a message or an answer."""
    typed = "Keep <my-key> and <b>bold</b>, Map<String, Integer> and x<y>z"
    tokens = line_breaking_parser().parse(f"{typed}\n\n<div>block</div>")
    inline = [token for token in tokens if token.type == "inline"]
    assert [[child.type for child in token.children] for token in inline] == [["text"]] * 2
    assert [token.children[0].content for token in inline] == [typed, "<div>block</div>"]


async def send(pilot, app: LocalprefApp, text: str, views: int) -> None:  # noqa: ANN001
    """Type ``text`` in the message box, send it, and wait for the chat to show ``views``
    messages."""
    app.query_one(ChatInput).load_text(text)
    await pilot.press("enter")
    await until(pilot, lambda: len(app.query_one(ChatLog).views) >= views)


async def test_a_two_line_message_and_the_status_at_120_columns(model, home) -> None:
    app = LocalprefApp(model=model)
    async with app.run_test(size=(120, 40)) as pilot:
        await until(pilot, lambda: app.session is not None and not app.busy)
        await send(pilot, app, "Name\na color.", 2)
        await until(pilot, lambda: not app.busy)
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


async def test_a_narrow_terminal_shows_one_side_panel_at_a_time(model, home) -> None:
    """At 80 columns F3 then Ctrl+L left the chat 8 columns (the message box unreadable):
    opening one panel closes the other there; at 120 both stay open."""
    app = LocalprefApp(model=model)
    async with app.run_test(size=(80, 24)) as pilot:
        await until(pilot, lambda: app.session is not None and not app.busy)
        panel, chats = app.query_one(PreferencePanel), app.query_one("#conversations")
        assert not panel.display and not chats.display  # both start hidden under 90
        await pilot.press("f3")
        await until(pilot, lambda: panel.display)
        await pilot.press("ctrl+l")
        await until(pilot, lambda: chats.display and not panel.display)
        # the focus was left in the closed panel: what was typed next went into its fields
        assert app.focused is app.query_one(ChatInput)
        await pilot.press("z", "z")
        assert app.query_one(ChatInput).text == "zz"
        await pilot.press("f3")
        await until(pilot, lambda: panel.display and not chats.display)
        await pilot.pause(0.2)
        assert app.query_one(ChatInput).region.width >= 30
        await pilot.resize_terminal(120, 30)
        await pilot.press("ctrl+l")
        await until(pilot, lambda: chats.display and panel.display)


@contextlib.asynccontextmanager
async def both_panels_open(model) -> AsyncIterator[tuple[LocalprefApp, Pilot, PreferencePanel,
                                                        Widget]]:
    """The app at 130 columns, its model loaded, both side panels open."""
    app = LocalprefApp(model=model)
    async with app.run_test(size=(130, 30)) as pilot:
        await until(pilot, lambda: app.session is not None and not app.busy)
        panel, chats = app.query_one(PreferencePanel), app.query_one("#conversations")
        assert panel.display and chats.display
        yield app, pilot, panel, chats


async def test_a_window_made_narrow_closes_one_of_two_open_panels(model, home) -> None:
    """Both panels open at 130 columns, then the window narrowed: the chat was left one
    column. The preference panel closes, or the list when the focus is in the panel (read
    on the chat screen, a dialog in front), and the focus is never left in a closed one."""
    async with both_panels_open(model) as (app, pilot, panel, chats):
        await pilot.resize_terminal(80, 24)
        await until(pilot, lambda: chats.display and not panel.display)
        await pilot.pause(0.2)
        assert app.query_one(ChatInput).region.width >= 30
        assert isinstance(app.focused, ChatInput)
        await pilot.resize_terminal(130, 30)
        await pilot.press("f3")
        await until(pilot, lambda: chats.display and panel.display)
        panel.query_one("#presets").focus()
        await pilot.press("f2")  # the rename dialog in front while the window narrows
        await until(pilot, lambda: bool(app.screen.query("#dialog-input")))
        await pilot.resize_terminal(100, 30)
        await pilot.press("escape")
        await until(pilot, lambda: panel.display and not chats.display)
        assert panel in app.focused.ancestors_with_self  # still where the user was


async def test_a_window_made_very_narrow_closes_the_panel_left_open_too(model, home) -> None:
    """Both panels open, then the window narrowed to 40 columns: the preference panel closed
    and the list stayed, leaving the chat 5 columns (a word fragment a line), where starting
    at 40 hides both. A panel the focus is in stays."""
    async with both_panels_open(model) as (app, pilot, panel, chats):
        await pilot.resize_terminal(40, 24)
        await until(pilot, lambda: not chats.display and not panel.display)
        await pilot.pause(0.2)
        assert app.query_one(ChatInput).region.width >= 30
        assert isinstance(app.focused, ChatInput)
        await pilot.resize_terminal(80, 24)
        await pilot.press("ctrl+l")  # opened at 80: the chat keeps 52 columns
        await until(pilot, lambda: chats.display)
        await pilot.resize_terminal(70, 24)
        await pilot.pause(0.2)
        assert chats.display  # 70 - 28 columns still leave the chat its 30
        chats.focus()
        await pilot.resize_terminal(45, 24)
        await pilot.pause(0.2)
        assert chats.display  # the user is in the list
        app.query_one(ChatInput).focus()
        await pilot.resize_terminal(44, 24)
        await until(pilot, lambda: not chats.display)


async def test_a_blank_line_between_paragraphs_stays_in_a_message(model, home) -> None:
    """The messages' paragraphs had no margin: a pasted blank line vanished from the chat."""
    app = LocalprefApp(model=model)
    async with app.run_test(size=(120, 40)) as pilot:
        await until(pilot, lambda: app.session is not None and not app.busy)
        await send(pilot, app, "Line one\nLine two\n\nLine four", 1)
        await pilot.pause(0.3)
        question = app.query_one(ChatLog).views[0]
        first, second = question.query_one(Markdown).children[:2]
        assert (first.region.height, second.region.height) == (2, 1)
        assert second.region.y == first.region.y + 3  # one blank line between them
        assert question.query_one(Markdown).region.height == 4  # none after the last
        # a tight list, nested too, stays tight: its items' paragraphs get no blank line
        await until(pilot, lambda: not app.busy)
        await send(pilot, app, "- apple\n  - red\n  - green\n- pear", 3)
        await pilot.pause(0.3)
        assert app.query_one(ChatLog).views[2].query_one(Markdown).region.height == 4


@pytest.mark.parametrize("size", [(120, 40), (80, 24), (60, 20)])
async def test_the_help_wraps_each_description_inside_its_box(model, home, size) -> None:
    """F1's descriptions ended mid-word at the box's edge (one line a row, wider than the
    box): each now wraps within it, whole."""
    app = LocalprefApp(model=model)
    async with app.run_test(size=size) as pilot:
        await until(pilot, lambda: app.session is not None and not app.busy)
        await pilot.press("f1")
        await until(pilot, lambda: isinstance(app.screen, HelpScreen))
        await pilot.pause(0.2)
        table = app.screen.query_one(DataTable)
        assert table.virtual_size.width <= table.region.width  # nothing past the edge
        # one scroll bar, the table's: the box's own took a column from the last one
        assert not app.screen.query_one("#help-box").show_vertical_scrollbar
        close = app.screen.query_one("#close").region
        assert close.height == 1 and close.bottom <= size[1]
        widths = [column.width for column in table.columns.values()]
        assert widths[2] >= 20  # at 60 columns the keys and places wrap instead
        for row_key in table.rows:
            cells = [cell.plain for cell in table.get_row(row_key)]
            lines = [len(Text(cell).wrap(app.console, width))
                     for cell, width in zip(cells, widths, strict=True)]
            assert table.rows[row_key].height == max(lines)


async def test_a_small_terminal_keeps_every_field_and_button_in_reach(model, home) -> None:
    """At 60x20 the model picker's path field and buttons were below the screen (no way to
    see them) and the comparison's buttons cut at the right edge: a dialog now scrolls what
    does not fit, a focused field scrolls into view, and narrow buttons keep inside."""
    from textual.widgets import Button, Input

    from tui.screens import CompareScreen
    from tui.screens.models import ModelPickerScreen

    def inside(region, size) -> bool:  # noqa: ANN001
        return region.x >= 0 and region.y >= 0 and region.right <= size.width \
            and region.bottom <= size.height

    app = LocalprefApp(model=model)
    async with app.run_test(size=(60, 20)) as pilot:
        await until(pilot, lambda: app.session is not None and not app.busy)
        await pilot.press("f9")
        await until(pilot, lambda: isinstance(app.screen, ModelPickerScreen))
        picker = app.screen
        for widget in (picker.query_one("#model-spec", Input),
                       picker.query_one("#model-load", Button),
                       picker.query_one("#model-close", Button)):
            widget.focus()
            await pilot.pause(0.2)
            assert inside(widget.region, app.size), (widget.id, widget.region)
        await pilot.press("escape")
        await until(pilot, lambda: not isinstance(app.screen, ModelPickerScreen))
        await pilot.press(*"Hi")
        await pilot.press("f4")
        await until(pilot, lambda: isinstance(app.screen, CompareScreen))
        compare = app.screen
        await pilot.press("ctrl+r")
        await until(pilot, lambda: all(not keep.disabled for keep in compare.query(".keep")),
                    timeout=120)
        await pilot.pause(0.3)
        for button in compare.query(Button):  # Run, Back and each answer's Keep
            assert inside(button.region, app.size), (button.id, button.region)
            assert str(button.label) and button.region.width >= len(str(button.label))
        for pane in compare.query(".compare-pane"):  # the answer's figures are not cut
            stats = pane.query_one(".pane-stats")
            assert stats.region.bottom <= pane.query_one(".keep").region.y
            assert pane.query_one(".pane-body").region.height >= 2
