"""The chat app, driven with Textual's pilot on the real bundled model through llama.cpp.

Every test points the data folder at ``tmp_path`` and waits on a condition, never a fixed sleep.
Answers are kept short (``max_tokens``) so the file runs in about a minute on 2 cores.
"""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest
from textual import events
from textual.keys import _character_to_key
from textual.widgets import Button, DataTable, Input, Select, SelectionList, Static
from tui_helpers import SIZE, click, open_compare, open_from_list, run_from_palette, seed, until

import localpref
from localpref import cli
from localpref.store import Store
from tui.app import LocalprefApp
from tui.keys import APP_ACTIONS, INPUT_ACTIONS, PANEL_ACTIONS, SLIDER_ACTIONS, bindings
from tui.screens import (
    CompareScreen,
    HelpScreen,
    ModelErrorDialog,
    ModelPickerScreen,
    TextDialog,
)
from tui.screens.compare import ComparePane
from tui.widgets import ChatInput, ChatLog, ConversationList, PreferencePanel, StatusBar
from tui.widgets.strength_slider import StrengthSlider


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    """An empty data folder for this test."""
    monkeypatch.setenv("LOCALPREF_HOME", str(tmp_path))
    return tmp_path


async def send(pilot, app: LocalprefApp, text: str) -> None:
    """Type a message, press Enter, and wait for its answer to end."""
    count = len(answers(app))
    app.query_one(ChatInput).focus()
    app.query_one(ChatInput).load_text(text)
    await pilot.press("enter")
    await until(pilot, lambda: not app.busy and len(answers(app)) == count + 1)


def answers(app: LocalprefApp):
    return [view for view in app.query_one(ChatLog).views if view.role == "assistant"]


# -- chatting ------------------------------------------------------------------------------------


async def test_sent_message_streams_an_answer_that_equals_the_saved_one(model, home):
    seed(home, presets=["concise"], method="amulet", sampling={"max_tokens": 24})
    app = LocalprefApp(model=model)
    async with app.run_test(size=SIZE) as pilot:
        assert isinstance(app.focused, ChatInput)  # the message box has focus at start
        await pilot.press(*"Name", "ctrl+j", *"a color.")
        assert app.query_one(ChatInput).text == "Name\na color."
        paused = model.exclusive()  # pause the model's scheduler
        paused.__enter__()  # hold the model so the answer cannot finish before we look
        try:
            await pilot.press("enter")
            await until(pilot, lambda: app.busy)  # the answer has only started
            saved = app.store.messages(app.conversation_id)  # saved when sent, before the answer
            assert [(m.role, m.content) for m in saved[:1]] == [("user", "Name\na color.")]
            assert saved[1].role == "assistant" and saved[1].partial
        finally:
            paused.__exit__(None, None, None)
        await until(pilot, lambda: not app.busy)

        shown = answers(app)[0].text
        saved = app.store.messages(app.conversation_id)
        assert shown.strip() and shown == saved[1].content
        assert saved[1].status == "complete" and saved[1].stats["method"] == "amulet"
        status = app.query_one(StatusBar).plain
        for fact in (model.name, "amulet", "concise", "tok/s", "ms/tok", f"/{model.n_ctx}"):
            assert fact in status

        await pilot.press("up")  # history of sent messages
        assert app.query_one(ChatInput).text == "Name\na color."
        await pilot.press("f5")  # copy: nothing focused in the log, so the last answer
        assert app.clipboard == shown

        replaced = saved[1].id
        await pilot.press("ctrl+r")  # regenerate replaces the last answer
        await until(pilot, lambda: not app.busy
                    and app.store.messages(app.conversation_id)[-1].id != replaced)
        saved = app.store.messages(app.conversation_id)
        assert [m.role for m in saved] == ["user", "assistant"]
        assert saved[1].status == "complete"
        assert saved[1].content == answers(app)[0].text and len(answers(app)) == 1


async def test_a_regeneration_stopped_before_its_first_word_keeps_the_previous_answer(
    model, home
):
    seed(home, presets=["concise"], method="pref", sampling={"max_tokens": 8})
    app = LocalprefApp(model=model)
    async with app.run_test(size=SIZE) as pilot:
        await send(pilot, app, "Name a color.")
        before = [(m.id, m.content) for m in app.store.messages(app.conversation_id)]
        with model.exclusive():  # nothing is decoded: the regeneration has no word yet
            await pilot.press("ctrl+r")
            await until(pilot, lambda: app.busy and len(answers(app)) == 2)
            assert answers(app)[0].display is False  # the old answer waits, hidden
            await pilot.press("escape")
        await until(pilot, lambda: not app.busy)
        assert [(m.id, m.content) for m in app.store.messages(app.conversation_id)] == before
        assert [v.text for v in answers(app)] == [before[1][1]]
        assert answers(app)[0].display is True
        assert any("the previous answer is kept" in notice for notice in app.notices)
        assert app.chat is not None and app.chat.messages[-1]["content"] == before[1][1]


async def test_escape_mid_answer_keeps_the_partial_answer_saved_as_partial(model, home):
    seed(home, presets=["verbose"], method="pref", sampling={"max_tokens": 400})
    app = LocalprefApp(model=model)
    async with app.run_test(size=SIZE) as pilot:
        app.query_one(ChatInput).load_text("Write a long story about a dragon and a knight.")
        await pilot.press("enter")
        await until(pilot, lambda: app.busy and answers(app) and answers(app)[0].text.strip())
        # saved from its start with its model: killed now, the export still names it
        assert app.store.messages(app.conversation_id)[1].stats["model"] == model.name
        await pilot.press("escape")
        await until(pilot, lambda: not app.busy)

        view = answers(app)[0]
        saved = app.store.messages(app.conversation_id)[1]
        assert saved.partial and saved.stats["stop_reason"] == "cancelled"
        assert 0 < saved.stats["n_tokens"] < 400
        assert saved.content == view.text and view.text.strip()
        assert "stopped" in view.header()
        assert any("partial answer is kept" in notice for notice in app.notices)
        # the partial answer stays in the conversation the model sees next
        assert app.chat is not None and app.chat.messages[-1]["content"] == view.text


async def test_escape_before_the_first_word_says_so_and_shows_no_speed_of_nothing(model, home):
    seed(home, presets=["concise"], method="pref", sampling={"max_tokens": 8})
    app = LocalprefApp(model=model)
    async with app.run_test(size=SIZE) as pilot:
        await send(pilot, app, "Name a color.")
        status = app.query_one(StatusBar)
        assert status.facts["tokens_per_s"] > 0
        with model.exclusive():  # nothing is decoded: the answer has no word yet
            app.query_one(ChatInput).load_text("Name a fruit.")
            await pilot.press("enter")
            await until(pilot, lambda: app.busy and len(answers(app)) == 2)
            await pilot.press("escape")
        await until(pilot, lambda: not app.busy)
        assert "Stopped before the answer's first word." in app.notices
        assert not any("partial answer is kept" in notice for notice in app.notices)
        assert status.facts["state"] == "ready" and status.facts["tokens_per_s"] is None
        assert "tok/s" not in status.plain  # (not "0.0 tok/s")


async def test_switching_method_and_preference_applies_to_the_next_answer(model, home):
    seed(home, presets=["concise"], method="amulet", sampling={"max_tokens": 12})
    app = LocalprefApp(model=model)
    async with app.run_test(size=SIZE) as pilot:
        panel = app.query_one(PreferencePanel)
        panel.query_one("#method", Select).value = "pad"
        await until(pilot, lambda: bool(panel.query("#method-weight")))
        presets = panel.query_one("#presets", SelectionList)
        presets.deselect("concise")
        presets.select("uplifting")
        panel.query_one("#custom-preference", Input).value = "mention the sea"
        await pilot.pause()
        await click(pilot, app, "#apply")
        assert app.steering.method == "pad"
        assert "uplifting" in app.query_one(StatusBar).plain

        await send(pilot, app, "Say something about Mondays.")
        stats = app.store.messages(app.conversation_id)[1].stats
        assert stats["method"].startswith("pad")
        assert stats["preference"] == "uplifting + mention the sea"
        assert "pad" in answers(app)[0].header()


async def test_apply_is_marked_while_the_form_holds_what_is_not_applied(model, home):
    """A preference ticked and not applied changed nothing, and nothing said so."""
    seed(home, presets=["concise"], method="amulet", sampling={"max_tokens": 12})
    app = LocalprefApp(model=model)
    async with app.run_test(size=SIZE) as pilot:
        panel = app.query_one(PreferencePanel)
        button = panel.query_one("#apply", Button)
        await until(pilot, lambda: app.session is not None and not app.busy)
        assert str(button.label) == "Apply" and not button.has_class("-pending")
        presets = panel.query_one("#presets", SelectionList)
        presets.select("verbose")
        await until(pilot, lambda: str(button.label) == "Apply •")
        assert button.has_class("-pending") and "not applied" in str(button.tooltip)
        presets.deselect("verbose")  # back to what is applied
        await until(pilot, lambda: str(button.label) == "Apply")
        panel.query_one("#sampling-temperature", Input).value = "0.5"
        await until(pilot, lambda: str(button.label) == "Apply •")
        await click(pilot, app, "#apply")
        await until(pilot, lambda: str(button.label) == "Apply")
        assert app.steering.sampling["temperature"] == 0.5
        panel.query_one("#sampling-temperature", Input).value = "-1"  # invalid: not applied
        await until(pilot, lambda: str(button.label) == "Apply •")


async def test_invalid_settings_are_refused_in_the_form_with_the_reason(model, home):
    seed(home, presets=["concise"], method="amulet", sampling={"max_tokens": 24})
    app = LocalprefApp(model=model)
    async with app.run_test(size=SIZE) as pilot:
        before = app.steering.to_dict()
        panel = app.query_one(PreferencePanel)
        await until(pilot, lambda: bool(panel.query("#method-eta")))
        panel.query_one("#method-eta", Input).value = "0"
        panel.query_one("#sampling-temperature", Input).value = "-1"
        await pilot.pause()
        errors = str(panel.query_one("#settings-errors").render())
        assert "Eta must be greater than 0" in errors
        assert "Temperature must be 0 or more" in errors
        assert panel.query_one("#method-eta", Input).has_class("-invalid")
        await click(pilot, app, "#apply")
        assert app.steering.to_dict() == before  # not applied
        assert any("Settings not applied" in notice for notice in app.notices)

        panel.query_one("#method-eta", Input).value = "ten"
        panel.query_one("#sampling-temperature", Input).value = "0"
        await pilot.pause()
        assert "Eta must be a number" in str(panel.query_one("#settings-errors").render())
        panel.query_one("#method-eta", Input).value = "5"
        await pilot.pause()
        await click(pilot, app, "#apply")
        assert app.steering.method_settings["amulet"]["eta"] == 5.0


async def test_message_longer_than_the_context_is_refused_with_the_limit(model, home):
    app = LocalprefApp(model=model)
    async with app.run_test(size=SIZE) as pilot:
        long_text = "word " * (model.n_ctx + 100)
        app.query_one(ChatInput).load_text(long_text)
        await pilot.press("enter")
        await pilot.pause()
        assert not app.busy
        assert any(str(model.n_ctx) in notice and "Not sent" in notice
                   for notice in app.notices)
        assert app.query_one(ChatInput).text == long_text  # kept for editing
        assert app.store.list_conversations() == []


# -- typing fast, and messages that wait ---------------------------------------------------------


def typed(text: str) -> list[events.Key]:
    """The key events a terminal sends for ``text`` (``\n`` is Enter)."""
    return [events.Key("enter", "\r") if ch == "\n" else events.Key(_character_to_key(ch), ch)
            for ch in text]


def user_messages(app: LocalprefApp) -> list[str]:
    return [m.content for m in app.store.messages(app.conversation_id) if m.role == "user"]


async def test_keys_typed_faster_than_the_app_reads_them_land_in_order(model, home):
    seed(home, presets=["concise"], method="amulet", sampling={"max_tokens": 8})
    app = LocalprefApp(model=model)
    async with app.run_test(size=SIZE) as pilot:
        # every key is queued before the app handles the first: Enter, Backspace and Ctrl+J
        # must not overtake the characters typed before (or after) them
        burst = [*typed("Why is the sky blue?\nab"), events.Key("backspace", None),
                 *typed("c"), events.Key("ctrl+j", None), *typed("d")]
        for key in burst:
            app.post_message(key)
        await until(pilot, lambda: app.conversation_id is not None and not app.busy
                    and len(answers(app)) == 1 and app.query_one(ChatInput).text == "ac\nd")
        assert user_messages(app) == ["Why is the sky blue?"]


async def test_keys_typed_fast_in_a_dialog_land_in_order(model, home):
    """A rename typed as a burst (End, Ctrl+U, the new name, Enter): Ctrl+U ran after the
    name typed behind it, which it then erased, and the rename did nothing."""
    seed(home, presets=["concise"], method="amulet", sampling={"max_tokens": 8})
    app = LocalprefApp(model=model)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press(*"Name a color.", "enter")
        await until(pilot, lambda: app.conversation_id is not None and not app.busy
                    and len(answers(app)) == 1)
        await pilot.press("f2")
        await until(pilot, lambda: isinstance(app.screen, TextDialog))
        for key in [events.Key("end", None), events.Key("ctrl+u", None), *typed("Bank ab"),
                    events.Key("backspace", None), *typed("c\n")]:
            app.post_message(key)
        await until(pilot, lambda: not isinstance(app.screen, TextDialog))
        await until(pilot, lambda: app.store.list_conversations()[0].title == "Bank ac")


async def test_keys_typed_behind_a_tab_reach_the_next_field(model, home):
    """"abc", Tab, "xyz" as one burst in the panel's fields: "xyz" went into the field being
    left (Tab moved the focus only once it had bubbled up to the screen). Each field selects
    its text when focused, so what is typed replaces it."""
    app = LocalprefApp(model=model)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.session is not None and not app.busy)
        temperature = app.query_one("#sampling-temperature", Input)
        top_p = app.query_one("#sampling-top-p", Input)
        temperature.focus()
        await pilot.pause()
        for key in [*typed("abc"), events.Key("tab", None), *typed("xyz")]:
            app.post_message(key)
        await until(pilot, lambda: app.focused is top_p and top_p.value == "xyz")
        assert temperature.value == "abc"


async def test_message_sent_while_the_model_loads_waits_and_goes_once_it_is_ready(
    home, monkeypatch
):
    seed(home, presets=["concise"], method="amulet", sampling={"max_tokens": 8})
    release = threading.Event()
    real_load = localpref.load

    def held_load(*args, **kwargs):  # the real bundled model, once the test lets it load
        release.wait(120)
        return real_load(*args, **kwargs)

    monkeypatch.setattr(localpref, "load", held_load)
    app = LocalprefApp()
    async with app.run_test(size=SIZE) as pilot:
        try:
            await pilot.press(*"Name a color.", "enter")
            await pilot.press(*"Name a fruit.", "enter")
            assert app.model is None and "loading model" in app.query_one(StatusBar).plain
            assert app.query_one(ChatInput).text == ""  # the box is free for the next one
            views = app.query_one(ChatLog).views
            assert [(v.text, v.header()) for v in views] == [
                ("Name a color.", "You · waiting"), ("Name a fruit.", "You · waiting")]
            assert user_messages(app) == ["Name a color.", "Name a fruit."]  # saved at once
            assert app.notices.count("The model is still loading; your message is saved and "
                                     "goes as soon as it is ready.") == 2
        finally:
            release.set()
        await until(pilot, lambda: app.model is not None and not app.busy
                    and len(answers(app)) == 2)
        saved = app.store.messages(app.conversation_id)
        assert [(m.role, m.status) for m in saved] == [
            ("user", "complete"), ("assistant", "complete")] * 2
        assert [m.content for m in saved if m.role == "user"] == ["Name a color.",
                                                                  "Name a fruit."]
        views = app.query_one(ChatLog).views
        assert [(v.role, v.text) for v in views] == [(m.role, m.content) for m in saved]
        assert all("waiting" not in v.header() for v in views)
        assert app.chat is not None and [m["content"] for m in app.chat.messages] == [
            m.content for m in saved]  # the model read each message once, in order


async def test_message_sent_while_an_answer_is_written_waits_and_esc_lets_it_go(model, home):
    # room for thousands of tokens: on an idle machine 400 were written before the second
    # message was typed, and it then went at once instead of waiting (Esc stops this one)
    seed(home, presets=["verbose"], method="pref", sampling={"max_tokens": 4000})
    app = LocalprefApp(model=model)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press(*"Write a long story about a dragon.", "enter")
        await until(pilot, lambda: app.busy and answers(app) and answers(app)[0].text.strip())
        with model.exclusive():  # the scheduler waits: the answer is still being written
            await pilot.press(*"Now a short one.", "enter")
            # the handler adds the waiting message's view after the key press returns
            await until(pilot, lambda: app.query_one(ChatLog).views[-1].role == "user")
            assert app.busy and app.query_one(ChatInput).text == ""
            assert app.query_one(ChatLog).views[-1].header() == "You · waiting"
            saved = app.store.messages(app.conversation_id)
            assert [(m.role, m.content) for m in saved][::2] == [
                ("user", "Write a long story about a dragon."), ("user", "Now a short one.")]
            assert any("your message is saved and goes when it ends (Esc stops it)" in notice
                       for notice in app.notices)
        await pilot.press("escape")  # stops the first answer; the waiting one goes
        await until(pilot, lambda: len(answers(app)) == 2)
        assert any("partial answer is kept" in notice for notice in app.notices)
        assert app.query_one(ChatLog).views[2].header() == "You"  # no longer waiting
        await pilot.press("escape")  # and stop the second (if it has not ended yet)
        await until(pilot, lambda: not app.busy)
        saved = app.store.messages(app.conversation_id)
        assert [m.role for m in saved] == ["user", "assistant", "user", "assistant"]
        assert saved[1].stats["stop_reason"] == "cancelled" and saved[1].partial
        assert saved[2].content == "Now a short one."
        assert [v.text for v in app.query_one(ChatLog).views] == [m.content for m in saved]


async def test_a_waiting_message_the_model_refuses_goes_back_to_the_box(model, home):
    seed(home, presets=["concise"], method="pref", sampling={"max_tokens": 400})
    app = LocalprefApp(model=model)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press(*"Write a long story about a dragon.", "enter")
        await until(pilot, lambda: app.busy)
        long_text = "word " * (model.n_ctx + 100)
        app.query_one(ChatInput).load_text(long_text)
        await pilot.press("enter")
        assert app.query_one(ChatLog).views[-1].header() == "You · waiting"
        await pilot.press("escape")
        await until(pilot, lambda: not app.busy and not app.session.waiting)
        assert any("Not sent" in n and str(model.n_ctx) in n for n in app.notices)
        # too long on its own: no 'start a new conversation', which would not take it either
        assert not any("Not sent" in n and "new conversation" in n for n in app.notices)
        # kept for editing (the waiting view is removed after the text is back: wait for it)
        await until(pilot, lambda: len(app.query_one(ChatLog).views) == 2)
        assert app.query_one(ChatInput).text == long_text
        assert [m.role for m in app.store.messages(app.conversation_id)] == ["user",
                                                                             "assistant"]
        assert len(app.query_one(ChatLog).views) == 2


# -- compare -------------------------------------------------------------------------------------


@pytest.mark.parametrize(("steering", "note"), [
    ({"presets": [], "avoid": "verbose"},
     "No preference; avoid: verbose (Base and Pref do not read it). Choose 2 to 4 methods; "
     "settings and sampling come from the preference panel."),
    ({"presets": ["concise"], "examples": ["Short.", "Brief."]},
     "Preference: concise; 2 examples. Choose 2 to 4 methods; settings and sampling come "
     "from the preference panel."),
    ({"presets": [], "examples": ["Short."]},  # (the panel's note said "plainly" too)
     "No preference; 1 example. Choose 2 to 4 methods; settings and sampling come from the "
     "preference panel."),
    ({"presets": []}, "No preference chosen: every method decodes plainly (base)."),
])
async def test_the_comparison_says_what_its_methods_steer_by(model, home, steering, note):
    """An avoid text alone steers the methods that contrast with the base lane, and the note
    said that every method decoded plainly."""
    seed(home, method="amulet", **steering)
    app = LocalprefApp(model=model)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("f4")
        await until(pilot, lambda: isinstance(app.screen, CompareScreen))
        assert str(app.screen.query_one("#compare-note", Static).render()) == note
        panel_note = str(app.screen_stack[0].query_one("#method-note", Static).render())
        assert ("decodes plainly" in panel_note) == ("plainly" in note)


async def test_compare_two_methods_side_by_side_and_keep_one(model, home):
    seed(home, presets=["concise"], method="amulet", sampling={"max_tokens": 16})
    app = LocalprefApp(model=model)
    async with app.run_test(size=SIZE) as pilot:
        app.query_one(ChatInput).load_text("Give me one tip for sleeping well.")
        await pilot.press("f4")
        await until(pilot, lambda: isinstance(app.screen, CompareScreen))
        screen = app.screen
        assert list(screen.query_one("#compare-methods", SelectionList).selected) == [
            "base", "amulet"]
        await pilot.click("#run")
        await until(pilot, lambda: screen.runs_done == 1)
        assert not screen.running
        panes = list(screen.query(ComparePane))
        assert [pane.stats["method"] for pane in panes] == ["base", "amulet"]
        for pane in panes:
            assert pane.text.strip()
            assert pane.stats["tokens_per_s"] > 0
            assert "tok/s" in str(pane.query_one(".pane-stats").render())

        kept_text = panes[1].text
        await pilot.click("#keep-1")
        await until(pilot, lambda: not isinstance(app.screen, CompareScreen))
        await until(pilot, lambda: len(app.query_one(ChatLog).views) == 2)
        saved = app.store.messages(app.conversation_id)
        assert [(m.role, m.content) for m in saved] == [
            ("user", "Give me one tip for sleeping well."), ("assistant", kept_text)]
        assert saved[1].method == "amulet"
        assert answers(app)[0].text == kept_text


async def test_a_compare_stopped_before_its_first_word_offers_nothing_to_keep(model, home):
    """Esc before any word left every pane empty with Keep enabled, which saved an empty
    answer to the conversation."""
    seed(home, presets=["concise"], method="amulet", sampling={"max_tokens": 16})
    app = LocalprefApp(model=model)
    async with app.run_test(size=SIZE) as pilot:
        await open_compare(pilot, app)
        screen = app.screen
        with model.exclusive():  # nothing is decoded: no pane has a word yet
            await pilot.click("#run")
            await until(pilot, lambda: screen.running)
            await pilot.press("escape")  # (the scheduler ends the queued job once free)
        await until(pilot, lambda: not screen.running)
        panes = list(screen.query(ComparePane))
        assert [pane.text for pane in panes] == ["", ""]
        assert all(pane.query_one(Button).disabled for pane in panes)
        # an answer that ended empty by itself (its end token) is kept, as the chat keeps it
        await panes[0].finish("", {**panes[0].stats, "stop_reason": "eos"})
        assert not panes[0].query_one(Button).disabled
        await pilot.press("escape")
        await until(pilot, lambda: not isinstance(app.screen, CompareScreen))
        assert app.conversation_id is None or app.store.messages(app.conversation_id) == []


@pytest.mark.parametrize("size", [(40, 12), (12, 5)])
async def test_every_screen_opens_on_a_tiny_terminal(model, home, size):
    """F1, F3, F4 and F9 on a terminal far under the layout's widths: each screen opens and
    closes; none ends the app (a text area 0 cells wide did, with a traceback from rich)."""
    app = LocalprefApp(model=model)
    async with app.run_test(size=size) as pilot:
        await until(pilot, lambda: app.session is not None and not app.busy)
        for key, opened in (("f1", HelpScreen), ("f4", CompareScreen),
                            ("f9", ModelPickerScreen)):
            await pilot.press(key)
            await until(pilot, lambda opened=opened: isinstance(app.screen, opened))
            await pilot.pause(0.2)  # drawn at this size
            await pilot.press("escape")
            await until(pilot, lambda opened=opened: not isinstance(app.screen, opened))
        panel, states = app.query_one(PreferencePanel), []
        for _ in range(2):  # F3 twice: the panel is shown (and drawn) once either way
            shown = panel.display
            await pilot.press("f3")
            await until(pilot, lambda shown=shown: panel.display != shown)
            await pilot.pause(0.2)
            states.append(panel.display)
        assert True in states and app.is_running and app.return_code is None
        await pilot.press("ctrl+c")  # Textual's hint, without its markup showing
        await until(pilot, lambda: "to quit the app" in app.notices[-1])
        assert app.notices[-1] == "Press ctrl+q to quit the app."


# -- persistence, export, conversations ------------------------------------------------------------


async def test_reopened_app_finds_the_conversation_and_its_settings(model, home):
    seed(home, presets=["concise"], method="contrastive", sampling={"max_tokens": 12})
    first = LocalprefApp(model=model)
    async with first.run_test(size=SIZE) as pilot:
        await send(pilot, first, "What is a haiku?")
        conversation = first.conversation_id
        answer = answers(first)[0].text

    second = LocalprefApp(model=model)
    async with second.run_test(size=SIZE) as pilot:
        assert second.conversation_id == conversation
        listed = second.query_one(ConversationList)
        assert [item.conversation_id for item in listed.children] == [conversation]
        views = second.query_one(ChatLog).views
        assert [(v.role, v.text) for v in views] == [
            ("user", "What is a haiku?"), ("assistant", answer)]
        assert second.steering.method == "contrastive"  # settings came back too
        assert second.session.history() == [  # what the next answer will read
            {"role": "user", "content": "What is a haiku?"},
            {"role": "assistant", "content": answer}]
        # Up recalls the messages sent before the app opened again (it recalled nothing),
        # and after them what is sent now; past the oldest it stays there
        await send(pilot, second, "And a limerick?")
        box = second.query_one(ChatInput)
        box.focus()
        recalled = []
        for _ in range(3):
            await pilot.press("up")
            recalled.append(box.text)
        assert recalled == ["And a limerick?", "What is a haiku?", "What is a haiku?"]


async def test_a_message_left_waiting_at_quit_goes_when_the_app_opens_again(model, home):
    seed(home, presets=["concise"], method="contrastive", sampling={"max_tokens": 6})
    with Store() as store:  # what a quit leaves: an answer, then a message that waited
        conversation = store.create_conversation("Colors")
        store.add_message(conversation, "user", "Name a color.")
        store.add_message(conversation, "assistant", "Blue.", method="contrastive",
                          preference="concise")
        store.add_message(conversation, "user", "Name a fruit.")
        store.set_setting("last_conversation", conversation)
    app = LocalprefApp(model=model)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: len(app.query_one(ChatLog).views) == 4
                    and not app.session.busy and not app.session.waiting)
        views = app.query_one(ChatLog).views
        assert [(v.role, v.waiting) for v in views] == [
            ("user", False), ("assistant", False), ("user", False), ("assistant", False)]
        assert views[3].text  # answered now, after the message that waited
        saved = app.store.messages(conversation)
        assert [(m.role, m.status) for m in saved][-2:] == [("user", "complete"),
                                                          ("assistant", "complete")]


def test_export_writes_a_conversation_as_markdown(home, capsys):
    with Store() as store:
        conversation = store.create_conversation("Basil care")
        store.add_message(conversation, "user", "How do I keep basil alive?")
        store.add_message(conversation, "assistant", "Sun and water.", method="amulet",
                          preference="concise")
    out = home / "basil.md"
    assert cli.main(["chat", "--export", str(conversation), "--output", str(out)]) == 0
    text = out.read_text()
    assert text.startswith("# Basil care\n")
    assert "## You\n\nHow do I keep basil alive?" in text
    assert "## Assistant (amulet · concise)\n\nSun and water." in text

    assert cli.main(["chat", "--export", "999"]) == 2
    assert "no conversation 999" in capsys.readouterr().err
    # an id past SQLite's integers was a traceback; an empty --output wrote to standard output
    huge = "9" * 23
    assert cli.main(["chat", "--export", huge]) == 2
    assert capsys.readouterr().err.startswith(f"localpref: There is no conversation {huge} in ")
    assert cli.main(["chat", "--export", str(conversation), "-o", ""]) == 2
    assert capsys.readouterr().err == ("localpref: --output needs a file name (leave it out for "
                                       "standard output).\n")
    assert cli.main(["chat", "--list"]) == 0
    assert "Basil care" in capsys.readouterr().out


def test_a_history_that_cannot_be_read_at_all_is_one_sentence_to_list_or_export(
        tmp_path, monkeypatch, capsys):
    """A data folder that is a file listed nothing with exit 0, and an export said there was
    no conversation 1 in a database that cannot exist."""
    blocker = tmp_path / "afile"
    blocker.write_text("hello", encoding="utf-8")
    for home in (blocker, blocker / "sub"):
        monkeypatch.setenv("LOCALPREF_HOME", str(home))
        for argv in (["--list"], ["--export", "1"]):
            assert cli.main(["chat", *argv]) == 2
            captured = capsys.readouterr()
            assert captured.out == "" and captured.err == (
                f"localpref: The data folder {home} cannot be made: {blocker} is a file, not a "
                "folder, so there is no history to read.\n")
    with Store(blocker / "history.sqlite3") as store:  # the app goes on, saving nothing
        assert store.read_only and store.notice == (
            f"The data folder {blocker} cannot be made: {blocker} is a file, not a folder; "
            "history is not saved this session.")


def test_listing_or_exporting_before_anything_is_saved_creates_nothing(tmp_path, monkeypatch,
                                                                      capsys):
    """chat --list and --export made the data folder and an empty history, and the list
    said nothing at all."""
    home = tmp_path / "new" / "home"
    monkeypatch.setenv("LOCALPREF_HOME", str(home))
    assert cli.main(["chat", "--list"]) == 0
    assert capsys.readouterr() == ("", "localpref: no saved conversations "
                                       f"({home / 'history.sqlite3'} does not exist yet).\n")
    assert cli.main(["chat", "--export", "1"]) == 2
    assert capsys.readouterr().err == (
        "localpref: There is no conversation 1: nothing is saved yet "
        f"({home / 'history.sqlite3'} does not exist).\n")
    assert not (tmp_path / "new").exists()
    with Store() as store:  # saved, then emptied: said so
        store.delete_conversation(store.create_conversation("gone"))
    assert cli.main(["chat", "--list"]) == 0
    assert capsys.readouterr() == ("", "localpref: no saved conversations in "
                                       f"{home / 'history.sqlite3'}.\n")


def test_the_list_shows_each_conversation_on_one_line_without_escapes(home, capsys):
    """A title with a line break or a terminal escape (from a pasted message) took two lines
    and coloured the terminal."""
    with Store() as store:
        store.create_conversation("\x1b[31mred\nline two\tend")
    assert cli.main(["chat", "--list"]) == 0
    out = capsys.readouterr().out
    assert out.count("\n") == 1 and "\x1b" not in out
    assert out.rstrip("\n").endswith("\\x1b[31mred line two end")
    with pytest.raises(SystemExit) as both:  # one of them was silently dropped
        cli.main(["chat", "--list", "--export", "1"])
    assert both.value.code == 2 and "not allowed with argument" in capsys.readouterr().err


async def test_a_conversation_deleted_in_another_window_leaves_the_list(model, home):
    """The list kept showing (and opening) the deleted conversation, not the new one what
    the window wrote next went into."""
    app = LocalprefApp(model=model)
    async with app.run_test(size=SIZE) as pilot:
        await send(pilot, app, "Name a color.")
        deleted = app.conversation_id
        with Store() as other:  # another window
            other.delete_conversation(deleted)
        await send(pilot, app, "And a fruit?")
        listed = app.query_one(ConversationList)
        await until(pilot, lambda: [item.conversation_id for item in listed.children] == [
            app.conversation_id])
        assert app.conversation_id != deleted
        assert any("deleted in another window" in notice for notice in app.notices)


async def test_up_recalls_the_open_conversations_messages_then_those_sent_since(model, home):
    """Each conversation opened put its messages at the front of the recall for the rest of
    the session: B recalled A's old messages, and a new conversation both."""
    with Store() as store:
        first = store.create_conversation("A")
        for text in ("a-first", "a-second"):
            store.add_message(first, "user", text)
        second = store.create_conversation("B")
        for text in ("b-first", "b-second"):
            store.add_message(second, "user", text)
        store.set_setting("last_conversation", first)
    app = LocalprefApp(model=model)

    async def recalled(count: int) -> list[str]:
        box = app.query_one(ChatInput)
        box.focus()
        texts = []
        for _ in range(count):
            await pilot.press("up")
            texts.append(box.text)
        box.clear()
        return texts

    async with app.run_test(size=SIZE) as pilot:
        assert app.conversation_id == first
        assert await recalled(3) == ["a-second", "a-first", "a-first"]
        await open_from_list(pilot, app, second)
        assert await recalled(3) == ["b-second", "b-first", "b-first"]
        await pilot.press("ctrl+n")
        await until(pilot, lambda: app.conversation_id is None)
        assert await recalled(1) == [""]  # nothing sent here, nor since the app opened


async def test_new_rename_and_delete_conversations(model, home):
    with Store() as store:
        older = store.create_conversation("older")
        store.add_message(older, "user", "old question")
        newer = store.create_conversation("newer")
        store.set_setting("last_conversation", newer)
    app = LocalprefApp(model=model)
    async with app.run_test(size=SIZE) as pilot:
        assert app.conversation_id == newer
        await pilot.press("ctrl+n")
        assert app.conversation_id is None and app.query_one(ChatLog).views == []

        await open_from_list(pilot, app, older)
        assert [v.text for v in app.query_one(ChatLog).views] == ["old question"]

        await pilot.press("f2")
        await until(pilot, lambda: bool(app.screen.query("#dialog-input")))
        app.screen.query_one("#dialog-input", Input).value = "   "  # OK on an empty name
        await pilot.press("enter")
        await until(pilot, lambda: any("The name is empty" in n for n in app.notices))
        assert app.screen.query("#dialog-input")  # still asking
        app.screen.query_one("#dialog-input", Input).value = "Renamed"
        await pilot.press("enter")
        await until(pilot, lambda: app.store.get_conversation(older).title == "Renamed")

        await pilot.press("f8")
        await until(pilot, lambda: bool(app.screen.query("#yes")))
        await pilot.click("#yes")
        await until(pilot, lambda: app.conversation_id == newer)
        assert [c.id for c in app.store.list_conversations()] == [newer]


async def test_profiles_are_saved_and_loaded_by_name(model, home):
    app = LocalprefApp(model=model)
    async with app.run_test(size=SIZE) as pilot:
        panel = app.query_one(PreferencePanel)
        panel.query_one("#method", Select).value = "contrastive"
        await until(pilot, lambda: bool(panel.query("#method-ratio")))
        panel.query_one("#method-ratio", Input).value = "3.5"
        panel.query_one("#profile-name", Input).value = "my writing style"
        await pilot.pause()
        await click(pilot, app, "#profile-save")
        await until(pilot, lambda: "my writing style" in app.store.list_profiles())

        panel.query_one("#method", Select).value = "base"
        await pilot.pause()
        await click(pilot, app, "#apply")
        assert app.steering.method == "base"
        panel.query_one("#profile-select", Select).value = "my writing style"
        await pilot.pause()
        await click(pilot, app, "#profile-load")
        await until(pilot, lambda: app.steering.method == "contrastive")
        assert app.steering.method_settings["contrastive"]["ratio"] == 3.5
        assert panel.query_one("#method-ratio", Input).value == "3.5"


async def test_saved_settings_the_app_changed_are_a_notice_and_the_rest_is_kept(model, home,
                                                                                tmp_path):
    """A saved reward model gone from disk was dropped without a word, at start and when its
    profile was loaded, and the sampling went back to the defaults with it."""
    from localpref.store import Store

    gone = str(tmp_path / "gone.gguf")
    said = (f"The saved reward model {gone!r} is not there any more, so PAD scores with the "
            "prompt-contrast reward.")
    seed(home, presets=["concise"], method="pad", sampling={"max_tokens": 7, "seed": 42},
         method_settings={"pad": {"weight": 0.5, "reward_model": gone}})
    with Store(home / "history.sqlite3") as store:
        store.save_profile("rmgone", {"presets": ["humorous"], "method": "pad",
                                      "sampling": {"max_tokens": 9, "temperature": 0.9},
                                      "method_settings": {"pad": {"reward_model": gone}}})
    app = LocalprefApp(model=model)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: said in app.notices)
        assert app.steering.sampling == {"max_tokens": 7, "seed": 42}
        assert app.steering.method_settings["pad"] == {"weight": 0.5}
        panel = app.query_one(PreferencePanel)
        panel.query_one("#profile-select", Select).value = "rmgone"
        await pilot.pause()
        await click(pilot, app, "#profile-load")
        await until(pilot, lambda: app.steering.presets == ["humorous"])
        await until(pilot, lambda: app.notices.count(said) == 2)
        assert app.steering.sampling == {"max_tokens": 9, "temperature": 0.9}
        saved = app.store.list_profiles()["rmgone"]  # the profile keeps what was saved
        assert saved["method_settings"]["pad"] == {"reward_model": gone}


async def test_a_reward_model_of_another_vocabulary_is_said_at_start_and_refused_on_load(
        model, home, tmp_path):
    """Its vocabulary was checked only when a message was sent: the app opened (or loaded a
    profile) without a word, and every message was then refused."""
    from localpref.synthetic import SyntheticShape, write_synthetic_llama

    other = str(write_synthetic_llama(tmp_path / "other.gguf", SyntheticShape(vocab_size=300)))
    wrong = (f"The reward model {other} has another vocabulary (300 tokens against 49152); "
             "PAD needs the same tokenizer.")
    seed(home, presets=["concise"], method="pad", method_settings={"pad": {"reward_model": other}})
    app = LocalprefApp(model=model)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: any("cannot answer" in n for n in app.notices))
        assert (f"The steering settings cannot answer with this model: {wrong} Change them in "
                "the panel (F3).") in app.notices
    seed(home, presets=["concise"], method="amulet")
    with Store(home / "history.sqlite3") as store:
        store.save_profile("other", {"presets": ["concise"], "method": "pad",
                                     "method_settings": {"pad": {"reward_model": other}}})
    app = LocalprefApp(model=model)
    async with app.run_test(size=SIZE) as pilot:
        before = app.steering
        panel = app.query_one(PreferencePanel)
        panel.query_one("#profile-select", Select).value = "other"
        await pilot.pause()
        await click(pilot, app, "#profile-load")
        await until(pilot, lambda: any(n.startswith("Profile") for n in app.notices))
        assert app.notices[-1].startswith(f"Profile “other” not loaded: {wrong}")
        assert app.steering == before


async def test_a_damaged_profile_is_a_notice_and_the_app_opens(model, home):
    """One profile whose saved settings are not JSON stopped the app at start-up with a
    traceback; it is listed, loading it is a notice, and saving over it replaces it."""
    seed(home, method="base")
    with sqlite3.connect(home / "history.sqlite3") as conn:
        conn.execute("INSERT INTO profiles (name, settings, updated_at) VALUES "
                     "('damaged', '{oops', '0')")
    app = LocalprefApp(model=model)
    async with app.run_test(size=SIZE) as pilot:
        panel = app.query_one(PreferencePanel)
        panel.query_one("#profile-select", Select).value = "damaged"
        await pilot.pause()
        await click(pilot, app, "#profile-load")
        await until(pilot, lambda: any("“damaged” cannot be read" in n for n in app.notices))
        assert app.steering.method == "base"
        panel.query_one("#profile-name", Input).value = "damaged"
        await pilot.pause()
        await click(pilot, app, "#profile-save")
        await until(pilot, lambda: app.store.list_profiles()["damaged"] is not None)


# -- keys, help, bad input --------------------------------------------------------------------


async def test_help_lists_every_declared_key(model, home):
    app = LocalprefApp(model=model)
    async with app.run_test(size=SIZE) as pilot:
        bound = {binding.key for binding in app.BINDINGS}
        assert {action.key for action in APP_ACTIONS} == bound
        await pilot.press("f1")
        await until(pilot, lambda: isinstance(app.screen, HelpScreen))
        table = app.screen.query_one(DataTable)
        keys = [str(table.get_row_at(i)[0]) for i in range(table.row_count)]
        for action in (*APP_ACTIONS, *INPUT_ACTIONS, *PANEL_ACTIONS, *SLIDER_ACTIONS):
            assert action.key_display in keys  # F7 and the sliders' keys were missing
        assert PreferencePanel.BINDINGS == bindings(PANEL_ACTIONS)
        assert StrengthSlider.BINDINGS == bindings(SLIDER_ACTIONS)
        assert "Ctrl+Q" in keys and "Shift+Enter or Ctrl+J" in keys
        await pilot.press("escape")
        await until(pilot, lambda: not isinstance(app.screen, HelpScreen))


async def test_command_palette_switches_the_method(model, home):
    seed(home, presets=["concise"], method="amulet")
    app = LocalprefApp(model=model)
    async with app.run_test(size=SIZE) as pilot:
        await run_from_palette(pilot, "Method: Contrastive")
        await until(pilot, lambda: app.steering.method == "contrastive")
        assert app.query_one(PreferencePanel).query_one("#method", Select).value == "contrastive"


async def test_model_that_fails_to_load_shows_why_and_another_file_can_be_picked(
    home, bundled_path
):
    broken = home / "broken.gguf"
    broken.write_bytes(b"not a gguf file at all")
    app = LocalprefApp(model_spec=str(broken))
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: isinstance(app.screen, ModelErrorDialog)
                    and bool(app.screen.query("#model-error-reason")))
        reason = str(app.screen.query_one("#model-error-reason").render())
        assert reason.strip() and "Traceback" not in reason
        app.screen.query_one("#model-path", Input).value = str(bundled_path)
        await pilot.click("#load")
        await until(pilot, lambda: app.model is not None)
        assert not isinstance(app.screen, ModelErrorDialog)
        assert app.model.path == bundled_path


async def test_corrupt_history_database_starts_a_new_one_and_says_so(model, home):
    (home / "history.sqlite3").write_bytes(b"garbage " * 100)
    app = LocalprefApp(model=model)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        assert any("unreadable" in notice for notice in app.notices)
        assert not app.store.read_only
    assert list(home.glob("history.sqlite3.corrupt-*"))


# -- strength slider and the paper preset ----------------------------------------------------------


async def test_strength_slider_edits_the_strength_and_paper_preset_restores_the_papers(
    model, home
):
    from localpref import Amulet
    from tui.steering import APP_METHOD_SETTINGS
    from tui.widgets import StrengthSlider

    seed(home, presets=["concise"], method="amulet", sampling={"max_tokens": 8})
    app = LocalprefApp(model=model)
    async with app.run_test(size=SIZE) as pilot:
        panel = app.query_one(PreferencePanel)
        await until(pilot, lambda: bool(panel.query("#strength-slider")))
        slider = panel.query_one("#strength-slider", StrengthSlider)
        default = APP_METHOD_SETTINGS["amulet"]["contrast"]
        tau = APP_METHOD_SETTINGS["amulet"]["tau"]
        ends = APP_METHOD_SETTINGS["amulet"]["end_tokens"]  # the recommended end-token rule
        assert app.steering.method_object() == Amulet(contrast=default, tau=tau, end_tokens=ends)
        assert slider.value == default and "alpha" in slider.note
        assert slider.note == f"= alpha {Amulet(contrast=default).effective_alpha:.3g}"

        slider.focus()
        await pilot.press("right")
        await until(pilot, lambda: panel.query_one("#method-contrast", Input).value == "0.75")
        await click(pilot, app, "#apply")
        assert app.steering.method_object() == Amulet(contrast=0.75, tau=tau, end_tokens=ends)

        # a click on a cell of the bar jumps to that stop (the 3rd stop is 0.25)
        slider.scroll_visible(animate=False, immediate=True)
        await pilot.pause()
        assert await pilot.click("#strength-slider", offset=(slider.bar_start + 2, 0))
        await until(pilot, lambda: panel.query_one("#method-contrast", Input).value == "0.25")
        assert slider.value == 0.25

        # typing in the field moves the slider
        panel.query_one("#method-contrast", Input).value = "2"
        await until(pilot, lambda: slider.value == 2.0)

        # F7 in the panel: the papers' exact Amulet, applied at once
        slider.focus()
        await pilot.press("f7")
        await until(pilot, lambda: app.steering.method_object() == Amulet())
        slider = panel.query_one("#strength-slider", StrengthSlider)
        assert slider.value == Amulet().effective_contrast
        assert slider.note == "= alpha 2"
        assert panel.query_one("#method-contrast", Input).value == ""
        assert panel.query_one("#method-tau", Input).value == "0.0"

        await click(pilot, app, "#preset-app")
        await until(pilot, lambda: app.steering.method_object() == Amulet(
            contrast=default, tau=tau, end_tokens=ends))


async def test_slider_follows_the_method_and_sets_pad_weight(model, home):
    from localpref import PAD
    from tui.widgets import StrengthSlider

    seed(home, presets=["uplifting"], method="base", sampling={"max_tokens": 8})
    app = LocalprefApp(model=model)
    async with app.run_test(size=SIZE) as pilot:
        panel = app.query_one(PreferencePanel)
        await pilot.pause()
        assert not panel.query("#strength-slider")  # base has no strength
        panel.query_one("#method", Select).value = "pad"
        await until(pilot, lambda: bool(panel.query("#strength-slider")))
        slider = panel.query_one("#strength-slider", StrengthSlider)
        assert slider.label == "weight" and slider.note == ""
        slider.focus()
        await pilot.press("end")
        await until(pilot, lambda: panel.query_one("#method-weight", Input).value == "10.0")
        await click(pilot, app, "#apply")
        assert app.steering.method_object() == PAD(weight=10.0, tau=0.2)  # the app's tau


async def test_a_new_method_class_is_offered_with_its_title_and_strength(model, home,
                                                                         monkeypatch):
    from method_helpers import Gentle

    from localpref.methods import METHODS
    from tui.widgets import StrengthSlider

    monkeypatch.setitem(METHODS, "gentle", Gentle)
    seed(home, presets=["concise"], method="gentle", sampling={"max_tokens": 8})
    app = LocalprefApp(model=model)
    async with app.run_test(size=SIZE) as pilot:
        panel = app.query_one(PreferencePanel)
        await until(pilot, lambda: bool(panel.query("#strength-slider")))
        assert panel.query_one("#method", Select).value == "gentle"
        assert str(panel.query_one("#method #label").render()) == "Gentle"  # its title
        slider = panel.query_one("#strength-slider", StrengthSlider)
        assert slider.label == "push" and slider.value == 1.0
        assert panel.query_one("#method-quiet").value is False  # a bool field: a checkbox
        slider.focus()
        await pilot.press("end")
        await until(pilot, lambda: panel.query_one("#method-push", Input).value == "10.0")
        await click(pilot, app, "#apply")
        assert app.steering.method_object() == Gentle(push=10.0)


async def test_a_paste_loses_the_control_characters_a_terminal_would_act_on(model, home):
    """A pasted bell, backspace or colour code went to the screen raw (the box's border broke)
    and into the message, the model's prompt and the conversation's title."""
    from tui.widgets.typing_order import OrderedInput

    app = LocalprefApp(model=model)
    async with app.run_test(size=SIZE) as pilot:
        box = app.query_one(ChatInput)
        box.focus()
        app.post_message(events.Paste("F\x01G\x02H\x07I\x08J K\r\nL\x1b[1mM\x7f\tN\x9b"))
        await pilot.pause()
        assert box.text == "FGHIJ K\nL[1mM\tN"
        field = app.query(OrderedInput).first()
        field.focus()
        field.value = ""
        app.post_message(events.Paste("con\x07cise\x08\nsecond line"))  # as the terminal
        await pilot.pause()
        assert field.value == "concise"


async def test_joiners_and_other_unprintable_text_characters_are_typed(model, home):
    """Textual inserts only what Python calls printable: a typed zero-width joiner (an emoji
    family), non-joiner (Persian spelling), right-to-left mark or no-break space was dropped;
    a control character typed still is."""
    from tui.widgets.typing_order import OrderedInput

    typed = ["م", "ی", "\u200c", "خ", " ", "👨", "\u200d", "👩", "\u200e", "\xa0", "x"]
    app = LocalprefApp(model=model)
    async with app.run_test(size=SIZE) as pilot:
        box = app.query_one(ChatInput)
        box.focus()
        for character in [*typed, "\x07"]:
            box.post_message(events.Key(character, character))
        await pilot.pause()
        assert box.text == "".join(typed)
        field = app.query(OrderedInput).first()
        field.focus()
        field.value = ""
        for character in typed:
            field.post_message(events.Key(character, character))
        await pilot.pause()
        assert field.value == "".join(typed)


MARKUP_LIKE = "What does [/b] close? [bold]x[/i]"


async def test_text_that_looks_like_markup_is_shown_as_typed_everywhere(model, home):
    """Titles, profile names, a preference of one's own, examples and messages are drawn as
    text: '[/b]' in a conversation's title stopped the app at F8's dialog, in a profile's name
    when it was picked, and in one's own preference as soon as its slider was drawn."""
    from tui.screens.dialogs import ConfirmDialog

    seed(home, presets=["concise"], sampling={"max_tokens": 6})
    app = LocalprefApp(model=model)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.session is not None and not app.busy)
        panel = app.query_one(PreferencePanel)
        panel.query_one("#custom-preference", Input).value = MARKUP_LIKE
        await until(pilot, lambda: MARKUP_LIKE in panel.weights())
        panel.query_one("#avoid", Input).value = "[/i] slang"
        await pilot.pause()
        assert panel.apply()
        box = app.query_one(ChatInput)
        box.text = MARKUP_LIKE
        box.focus()
        await pilot.press("enter")
        await until(pilot, lambda: not app.busy and len(app.session.history()) == 2)
        header = str(app.query(".message-header").last().render())
        assert "[/i] slang" in header  # the answer's header names the avoid text as typed
        await pilot.press("ctrl+o")  # the answer as an example, listed in the panel
        await until(pilot, lambda: len(app.steering.examples) == 1)
        await pilot.press("f8")  # the delete dialog quotes the title
        await until(pilot, lambda: isinstance(app.screen, ConfirmDialog))
        question = str(app.screen.query_one(".dialog-title").render())
        assert "[/b] close? [bold]x[/i]" in question
        await pilot.press("escape")
        await until(pilot, lambda: not isinstance(app.screen, ConfirmDialog))
        panel.query_one("#profile-name", Input).value = "mine [/b]"
        await click(pilot, app, "#profile-save")
        await until(pilot, lambda: "mine [/b]" in app.session.profile_names())
        name = panel.query_one("#profile-name", Input)
        name.value = "mine [/b]"
        name.focus()
        await pilot.press("enter")  # saved again: it says it replaced the profile
        try:
            await until(pilot, lambda: "Profile “mine [/b]” replaced with these settings."
                        in app.notices, timeout=20)
        except AssertionError:
            raise AssertionError(f"notices: {app.notices}") from None
        assert app.notices.count("Profile “mine [/b]” saved.") == 1
        select = panel.query_one("#profile-select", Select)
        select.value = "mine [/b]"  # picked (drawn in the list and the box), then loaded
        await pilot.pause()
        await click(pilot, app, "#profile-load")
        await until(pilot, lambda: any("“mine [/b]” loaded" in n for n in app.notices))
        assert app.is_running


def test_an_answer_the_context_window_cut_says_so_not_max_tokens(model):
    """An answer whose prompt left the window fewer tokens than max_tokens was labelled
    "cut at max tokens" (the examples and a long message filled a 512-token window); a
    comparison's pane said "length" for both."""
    from tui.screens.compare import stats_line
    from tui.widgets.chat_log import MessageView

    words = next(n for n in range(model.n_ctx - 40, model.n_ctx)
                 if model.count_tokens("word " * n) >= model.n_ctx - 6)
    cut = model.generate("word " * words, max_tokens=64, ignore_eos=True)
    whole = model.generate("Hi", max_tokens=2, ignore_eos=True)
    assert (cut.stats["stop_reason"], cut.stats["length_limit"]) == ("length", "window")
    assert cut.stats["n_tokens"] < 64
    assert (whole.stats["stop_reason"], whole.stats["length_limit"]) == ("length", "max_tokens")
    assert MessageView("assistant", cut.text, stats=cut.stats).header().endswith(
        " · cut at the context window")
    assert MessageView("assistant", whole.text, stats=whole.stats).header().endswith(
        " · cut at max tokens")
    for result, said in ((cut, "cut at the context window"), (whole, "cut at max tokens")):
        assert stats_line(result.stats).endswith(f" tokens · {said}")  # the comparison's
    assert stats_line({**whole.stats, "stop_reason": "eos"}).endswith(" tokens · eos")
