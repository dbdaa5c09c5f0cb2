"""The app shows what steering did: changed tokens in headers and highlighted (Ctrl+T), the avoid
field, the recommended default. Driven with Textual's pilot on the real bundled model."""

from __future__ import annotations

from pathlib import Path

import pytest
from textual.widgets import Input, Markdown, Select, SelectionList, Static
from tui_helpers import SIZE, click, run_from_palette, seed, until

from localpref import Amulet
from localpref.methods import recommended_method
from tui.app import LocalprefApp
from tui.highlight import CHANGED_STYLE, changed_spans, highlighted_text
from tui.screens import CompareScreen
from tui.screens.compare import ComparePane
from tui.steering import method_description
from tui.widgets import ChatInput, ChatLog, PreferencePanel, StatusBar

PROMPT = "How do I keep basil alive?"


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("LOCALPREF_HOME", str(tmp_path))
    return tmp_path


def answers(app: LocalprefApp):
    return [view for view in app.query_one(ChatLog).views if view.role == "assistant"]


async def send(pilot, app: LocalprefApp, text: str) -> None:
    count = len(answers(app))
    app.query_one(ChatInput).focus()
    app.query_one(ChatInput).load_text(text)
    await pilot.press("enter")
    await until(pilot, lambda: not app.busy and len(answers(app)) == count + 1
                and not answers(app)[-1].streaming)


def styled_spans(text) -> list[tuple[int, int]]:  # noqa: ANN001 - rich Text
    return [(span.start, span.end) for span in text.spans if span.style == CHANGED_STYLE]


def test_changed_spans_merge_neighbours_and_follow_the_pieces() -> None:
    trace = [{"piece": "Water", "changed": False}, {"piece": " it", "changed": True},
             {"piece": " daily", "changed": True}, {"piece": ".", "changed": False},
             {"piece": " Sun", "changed": True}]
    assert changed_spans(trace) == [(5, 14), (15, 19)]
    assert changed_spans(None) is None and changed_spans([]) == []
    shown = highlighted_text("Water it daily. Sun", [(5, 14), (15, 19)])
    assert shown.plain == "Water it daily. Sun" and styled_spans(shown) == [(5, 14), (15, 19)]


async def test_highlight_key_shows_the_changed_tokens_and_they_survive_a_restart(model, home):
    # The papers' strength (k = 4.65, no mask) so that steering changes tokens in 16.
    settings = {"amulet": {"contrast": None, "tau": 0.0}}
    seed(home, presets=["concise"], method="amulet", method_settings=settings,
         sampling={"max_tokens": 16})
    app = LocalprefApp(model=model)
    async with app.run_test(size=SIZE) as pilot:
        await send(pilot, app, PROMPT)
        view = answers(app)[0]
        stats = view.stats
        assert stats["changed_tokens"] > 0
        assert f"changed {stats['changed_tokens']}/{stats['n_tokens']}" in view.header()
        spans = view.changed_spans
        assert spans and sum(end - start for start, end in spans) <= len(view.text)
        saved = app.store.messages(app.conversation_id)[1]
        assert (saved.changed_tokens, saved.mean_shift) == (stats["changed_tokens"],
                                                            stats["mean_shift"])
        assert saved.changed_spans == spans

        assert not view.highlighted and view.query_one(Markdown).display
        await pilot.press("ctrl+t")
        await until(pilot, lambda: view.highlighted)
        plain = view.query_one(".message-highlighted", Static)
        assert plain.display and not view.query_one(Markdown).display
        assert view.highlighted_plain.plain == view.text
        assert styled_spans(view.highlighted_plain) == spans
        await pilot.press("ctrl+t")
        await until(pilot, lambda: not view.highlighted)
        assert view.query_one(Markdown).display and not plain.display

        await run_from_palette(pilot, "Changes")  # the palette runs the same action
        await until(pilot, lambda: view.highlighted)
        await send(pilot, app, "And mint?")  # a new answer arrives highlighted
        assert answers(app)[1].highlighted
        assert answers(app)[1].query_one(".message-highlighted", Static).display

    # The same spans, independently: the trace of the same greedy answer from the library.
    result = model.generate(PROMPT, preference="concise", method=Amulet(), max_tokens=16,
                            trace=True)
    assert result.text == view.text and changed_spans(result.trace) == spans

    again = LocalprefApp(model=model)
    async with again.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: len(answers(again)) == 2)
        reopened = answers(again)[0]
        assert reopened.changed_spans == spans
        assert f"changed {stats['changed_tokens']}/" in reopened.header()
        await pilot.press("ctrl+t")
        await until(pilot, lambda: reopened.highlighted)
        assert styled_spans(reopened.highlighted_plain) == spans


async def test_avoid_field_steers_away_and_is_kept_everywhere(model, home):
    seed(home, presets=["concise"], method="amulet", sampling={"max_tokens": 12})
    app = LocalprefApp(model=model)
    async with app.run_test(size=SIZE) as pilot:
        panel = app.query_one(PreferencePanel)
        await pilot.pause()
        panel.query_one("#avoid", Input).value = "verbose"
        await click(pilot, app, "#apply")
        await until(pilot, lambda: app.steering.avoid == "verbose")
        assert app.steering.overrides()["avoid"] == "verbose"

        await send(pilot, app, PROMPT)
        view = answers(app)[0]
        assert view.stats["avoid"] == "verbose"
        assert "avoid verbose" in view.header()
        saved = app.store.messages(app.conversation_id)[1]
        assert saved.avoid == "verbose"
        assert "avoid verbose" in app.store.export_markdown(app.conversation_id)

        panel.query_one("#profile-name", Input).value = "no waffle"
        await pilot.pause()
        await click(pilot, app, "#profile-save")
        await until(pilot, lambda: "no waffle" in app.store.list_profiles())
        assert app.store.list_profiles()["no waffle"]["avoid"] == "verbose"

        # A one-lane method cannot steer away: the field says why and Apply refuses.
        panel.query_one("#method", Select).value = "pref"
        await until(pilot, lambda: "avoid" in panel.errors)
        assert panel.query_one("#avoid", Input).has_class("-invalid")
        assert "reads one lane" in str(panel.query_one("#settings-errors", Static).render())
        assert not panel.apply()
        assert app.steering.method == "amulet"

        panel.query_one("#avoid", Input).value = ""
        await until(pilot, lambda: not panel.errors)
        assert panel.apply()
        await until(pilot, lambda: app.steering.method == "pref" and not app.steering.avoid)
        panel.query_one("#profile-select", Select).value = "no waffle"
        await pilot.pause()
        await click(pilot, app, "#profile-load")
        await until(pilot, lambda: app.steering.avoid == "verbose")
        assert panel.query_one("#avoid", Input).value == "verbose"


async def test_the_status_line_names_the_recommended_steering(model, home):
    app = LocalprefApp(model=model)  # nothing saved: no method chosen yet
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        assert app.steering.method_object() == recommended_method()
        status = app.query_one(StatusBar).plain
        assert f"method recommended: {method_description(recommended_method())}" in status
        assert method_description(recommended_method()).startswith("amulet k=")
        panel = app.query_one(PreferencePanel)
        panel.query_one("#method", Select).value = "pad"
        await until(pilot, lambda: bool(panel.query("#method-weight")))
        await click(pilot, app, "#apply")
        await until(pilot, lambda: app.steering.method == "pad")
        assert "recommended" not in app.query_one(StatusBar).plain
        await click(pilot, app, "#preset-app")  # "Recommended": back to the default
        await until(pilot, lambda: app.steering.method_object() == recommended_method())
        assert "method recommended:" in app.query_one(StatusBar).plain
        await run_from_palette(pilot, "Method: PAD")
        await until(pilot, lambda: app.steering.method == "pad")
        await run_from_palette(pilot, "Method: Recommended")
        await until(pilot, lambda: app.steering.is_recommended)


async def test_compare_highlights_the_changed_tokens_per_pane(model, home):
    seed(home, presets=["concise"], method="amulet",
         method_settings={"amulet": {"contrast": None, "tau": 0.0}}, sampling={"max_tokens": 12})
    app = LocalprefApp(model=model)
    async with app.run_test(size=SIZE) as pilot:
        app.query_one(ChatInput).load_text(PROMPT)
        await pilot.press("f4")
        await until(pilot, lambda: isinstance(app.screen, CompareScreen))
        screen = app.screen
        methods = screen.query_one("#compare-methods", SelectionList)
        methods.deselect("base")
        methods.select("pref")
        await pilot.click("#run")
        await until(pilot, lambda: screen.runs_done == 1)
        panes = {pane.stats["method"]: pane for pane in screen.query(ComparePane)}
        pref, amulet = panes["pref"], panes["amulet"]
        assert amulet.label.startswith("amulet k=4.65") and pref.label == "pref"
        assert pref.changed_spans == [] and amulet.changed_spans
        assert amulet.highlighted and not amulet.query_one(Markdown).display
        assert "changed " in str(amulet.query_one(".pane-stats").render())
        shown = highlighted_text(amulet.text, amulet.changed_spans)
        assert styled_spans(shown) == amulet.changed_spans
        await pilot.press("ctrl+t")
        await until(pilot, lambda: not amulet.highlighted)
        assert amulet.query_one(Markdown).display
