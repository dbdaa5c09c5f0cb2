"""The app's per-preference strength sliders and "more like this" examples, driven with
Textual's pilot on the bundled model: what the sliders and examples hold reaches the library,
the history and the profiles."""

from __future__ import annotations

from pathlib import Path

import pytest
from textual.widgets import Button, Input, Select, SelectionList
from tui_helpers import SIZE, click, open_compare, run_from_palette, seed, until

from localpref.api import Model
from localpref.cli import main
from tui.app import LocalprefApp, startup_steering
from tui.steering import Steering
from tui.widgets import ChatInput, ChatLog, PreferencePanel
from tui.widgets.strength_slider import StrengthSlider


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("LOCALPREF_HOME", str(tmp_path))
    return tmp_path


def test_weights_off_one_become_weights_and_survive_saving() -> None:
    steering = Steering(presets=["concise", "uplifting"])
    assert steering.preference == ["concise", "uplifting"]  # all at 1: the joined lane
    steering.weights = {"uplifting": 0.5}
    assert steering.preference == {"concise": 1.0, "uplifting": 0.5}
    steering.examples = ["- one\n- two"]
    overrides = steering.overrides()
    assert overrides["like"] == ("- one\n- two",)
    again = Steering.from_dict(steering.to_dict())
    assert again.weights == {"uplifting": 0.5} and again.examples == ["- one\n- two"]
    bad = Steering.from_dict({**steering.to_dict(), "weights": {"concise": -1, "x": "a"}})
    assert bad.weights == {}


def test_command_line_weights_set_the_sliders(capsys: pytest.CaptureFixture[str]) -> None:
    """`localpref chat -p concise=1 -p uplifting=0.4` as `generate` reads it: the built-in
    boxes checked, the weights on their sliders; a bad weight is one sentence, exit 2."""
    saved = Steering(presets=["formal"], weights={"formal": 2.0}).to_dict()
    steering, problems = startup_steering(saved, ["concise=1", "uplifting=0.4"], None)
    assert problems == [] and steering.presets == ["concise", "uplifting"]
    assert steering.preference == {"concise": 1.0, "uplifting": 0.4}
    steering, problems = startup_steering(saved, ["Concise", "be brief=2", "no jargon=2"], None)
    assert steering.presets == ["concise"] and steering.custom == "be brief no jargon"
    assert steering.preference == {"concise": 1.0, "be brief no jargon": 2.0}
    steering, problems = startup_steering(None, ["a=1", "b=2"], None)
    assert steering.preference == ["a b"] and len(problems) == 1
    # one preference at weight 1 is the preference itself (it was read letter by letter)
    for items, presets, custom in ((["concise=1"], ["concise"], ""),
                                   (["be kind=1.0"], [], "be kind")):
        steering, problems = startup_steering(None, items, None)
        assert (steering.presets, steering.custom, problems) == (presets, custom, [])
    for bad, words in (("concise=abc", "must be a number"), ("concise=-1", "from 0 to 1000"),
                       ("", "non-empty text"), ("  ", "non-empty text")):
        assert main(["chat", "-p", bad]) == 2
        err = capsys.readouterr().err
        assert err.startswith("localpref: ") and words in err and err.count("\n") == 1


async def test_sliders_weigh_each_preference_and_more_like_this_adds_an_example(model, home):
    seed(home, presets=["concise", "uplifting"], sampling={"max_tokens": 8})
    app = LocalprefApp(model=model)
    async with app.run_test(size=SIZE) as pilot:
        panel = app.query_one(PreferencePanel)
        sliders = list(panel.query(".weight-slider").results(StrengthSlider))
        assert [s.item for s in sliders] == ["concise", "uplifting"]
        sliders[1].focus()
        await pilot.press("left", "left")  # 1 -> 0.75 -> 0.5
        await pilot.pause()
        await click(pilot, app, "#apply")
        await until(pilot, lambda: app.steering.weights.get("uplifting") == 0.5)
        assert app.steering.preference == {"concise": 1.0, "uplifting": 0.5}
        # a third preference gets a slider of its own, in view below the others
        panel.query_one("#presets", SelectionList).select("formal")
        await until(pilot, lambda: len(panel.query(".weight-slider")) == 3)
        await pilot.pause(0.2)
        holder = panel.query_one("#weights")
        rows = [s.region for s in panel.query(".weight-slider").results(StrengthSlider)]
        assert holder.size.height == 3 and len({row.y for row in rows}) == 3
        assert all(holder.region.contains_region(row) for row in rows)
        panel.query_one("#presets", SelectionList).deselect("formal")
        await until(pilot, lambda: len(panel.query(".weight-slider")) == 2)
        panel.query_one("#profile-name", Input).value = "mine"
        await pilot.pause()
        await click(pilot, app, "#profile-save")
        await until(pilot, lambda: "mine" in app.store.list_profiles())

        app.query_one(ChatInput).focus()
        app.query_one(ChatInput).load_text("Name a color.")
        await pilot.press("enter")
        try:
            await until(pilot, lambda: not app.busy and any(
                view.role == "assistant" for view in app.query_one(ChatLog).views))
        except AssertionError:
            raise AssertionError(f"no answer; notices: {app.notices}") from None
        answer = app.session.history()[-1]["content"]
        expected = model.generate(
            [{"role": "user", "content": "Name a color."}],
            preference={"concise": 1.0, "uplifting": 0.5}, max_tokens=8)
        assert answer == expected.text
        saved_answer = app.session.stored_messages()[-1]
        assert saved_answer.preference == "concise=1 + uplifting=0.5"  # in the history
        assert saved_answer.stats["settings"]["weights"] == [1.0, 0.5]

        method_saved = app.store.list_profiles()["mine"]["method"]
        await app.action_set_method("contrastive")  # applied, not saved in the profile
        avoid = panel.query_one("#avoid", Input)
        avoid.value = "slang"  # typed, not applied: Ctrl+O reloaded the panel over it
        app.query_one(ChatInput).focus()
        await pilot.press("ctrl+o")  # more like this, from the message box
        try:
            await until(pilot, lambda: app.steering.examples == [answer], timeout=20)
        except AssertionError:
            raise AssertionError(f"no example added; notices: {app.notices}") from None
        assert panel.query("#example-remove-0")
        assert avoid.value == "slang" and app.steering.avoid == ""
        avoid.value = ""
        saved = app.store.list_profiles()["mine"]
        assert saved["examples"] == [answer] and saved["weights"]["uplifting"] == 0.5
        assert saved["method"] == method_saved != "contrastive"  # the profile, plus the example
        assert app.steering.overrides()["like"] == (answer,)

        typed = panel.query_one("#sampling-max-tokens", Input)
        typed.value = "20"  # typed, not applied
        await pilot.pause()
        panel.query_one("#example-remove-0").press()
        await until(pilot, lambda: app.steering.examples == [])
        assert typed.value == "20" and app.steering.sampling_values()["max_tokens"] == 8
        panel.query_one("#method", Select).value = "pref"
        await pilot.pause()
        assert "two-lane method" in " ".join(panel.errors.values())


async def _first_answer(pilot, app: LocalprefApp, open_profile: str | None = None) -> str:
    """Once the app is ready (with ``open_profile`` as the profile last loaded), the answer
    to one message sent from the message box."""
    await until(pilot, lambda: app.session is not None and not app.busy)
    app.open_profile = open_profile
    app.query_one(ChatInput).text = "Name three colours."
    app.query_one(ChatInput).focus()
    await pilot.press("enter")
    await until(pilot, lambda: not app.busy and len(app.session.history()) == 2, timeout=60)
    return app.session.history()[-1]["content"]


async def test_more_like_this_past_the_examples_limit_is_refused_not_added(bundled_path, home):
    """Ctrl+O said an answer over max_like_tokens was added, and every next message was then
    refused until the example was found and removed."""
    from localpref import Model

    seed(home, presets=["concise"], examples=["Short and sweet, like this."],
         sampling={"max_tokens": 12}, method="amulet")
    with Model(bundled_path, max_like_tokens=16, n_ctx=512) as small:
        assert small.like_tokens(["Short and sweet, like this."]) <= 16
        app = LocalprefApp(model=small)
        async with app.run_test(size=SIZE) as pilot:
            answer = await _first_answer(pilot, app)
            assert small.like_tokens([answer]) > 0
            await pilot.press("ctrl+o")
            await until(pilot, lambda: any("Not added" in n for n in app.notices))
            [notice] = [n for n in app.notices if "Not added" in n]
            assert notice.startswith("Not added: The examples are ") and notice.endswith(
                "give fewer or shorter examples.")
            assert app.steering.examples == ["Short and sweet, like this."]
            assert len(app.query_one(PreferencePanel).query(".example-remove")) == 1


async def test_every_example_and_its_remove_button_are_in_view(model, home):
    """Two examples at 120 columns: the second was not drawn, each row was a screen tall,
    and no Remove button was in view (one was removed unseen)."""
    examples = ["A pirate's first tip, matey! " * 4, "Blast it out, pirate!"]
    seed(home, presets=["concise"], examples=examples)
    app = LocalprefApp(model=model)
    async with app.run_test(size=(120, 40)) as pilot:
        await until(pilot, lambda: app.session is not None and not app.busy)
        panel = app.query_one(PreferencePanel)  # shown from 120 columns on
        await until(pilot, lambda: panel.display and len(panel.query(".example-remove")) == 2)
        for index in range(2):
            button = panel.query_one(f"#example-remove-{index}")
            button.scroll_visible(animate=False)
            await pilot.pause(0.2)
            row = button.parent
            assert row.region.height <= 5  # its 60 characters wrap beside the button
            assert panel.region.contains_region(button.region) and button.region.width >= 6


async def test_checking_a_preference_while_a_field_is_invalid_keeps_the_sliders(model, home):
    """With a method setting invalid (not applied), checking one more preference took the
    sliders back to their applied weights (a moved one lost its value) and gave the new
    preference no slider."""
    seed(home, presets=["concise", "uplifting"], method="amulet",
         weights={"concise": 1.5, "uplifting": 0.75})
    app = LocalprefApp(model=model)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.session is not None and not app.busy)
        panel = app.query_one(PreferencePanel)
        panel.query_one("#method-eta", Input).value = "0"  # invalid, not applied
        await pilot.pause()
        assert panel.errors
        sliders = {s.item: s for s in panel.query(".weight-slider").results(StrengthSlider)}
        sliders["concise"].focus()
        await pilot.press("right")  # 1.5 -> 2
        await until(pilot, lambda: panel.weights()["concise"] == 2.0)
        panel.query_one("#presets", SelectionList).select("formal")
        await until(pilot, lambda: len(panel.query(".weight-slider")) == 3)
        assert panel.weights() == {"concise": 2.0, "uplifting": 0.75, "formal": 1.0}


async def test_your_own_preference_keeps_its_weight_while_its_text_is_edited(model, home):
    """Weights are kept by text: typing " often" after "mention the sea" made a new
    preference at weight 1 with every key, and the weight set on its slider was gone."""
    seed(home, presets=["concise"], method="amulet")
    app = LocalprefApp(model=model)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.session is not None and not app.busy)
        panel = app.query_one(PreferencePanel)
        own = panel.query_one("#custom-preference", Input)
        own.value = "mention the sea"
        await until(pilot, lambda: len(panel.query(".weight-slider")) == 2)
        sliders = {s.item: s for s in panel.query(".weight-slider").results(StrengthSlider)}
        sliders["mention the sea"].focus()
        await pilot.press("right", "right")  # 1 -> 1.5 -> 2
        await until(pilot, lambda: panel.weights()["mention the sea"] == 2.0)
        for typed in ("mention the sea ", "mention the sea o", "mention the sea often"):
            own.value = typed
            await pilot.pause()
        await until(pilot, lambda: "mention the sea often" in panel.weights())
        assert panel.weights() == {"concise": 1.0, "mention the sea often": 2.0}
        own.value = ""  # no text, no slider; a new text starts at 1
        await until(pilot, lambda: len(panel.query(".weight-slider")) == 1)
        own.value = "rhyme"
        await until(pilot, lambda: "rhyme" in panel.weights())
        assert panel.weights() == {"concise": 1.0, "rhyme": 1.0}


async def test_paper_settings_keep_the_preferences_typed_while_a_field_is_invalid(model, home):
    """F7 with a method setting invalid started from the applied steering: the avoid text
    and the preferences typed were thrown away."""
    seed(home, presets=["concise", "formal"], method="amulet", avoid="jargon")
    app = LocalprefApp(model=model)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.session is not None and not app.busy)
        panel = app.query_one(PreferencePanel)
        panel.query_one("#presets", SelectionList).deselect("formal")
        panel.query_one("#avoid", Input).value = "slang"
        panel.query_one("#method-alpha", Input).value = "x"  # invalid
        await pilot.pause()
        assert panel.errors
        panel.query_one("#avoid", Input).focus()  # F7 is the panel's key
        await pilot.pause()
        await pilot.press("f7")
        await until(pilot, lambda: app.steering.avoid == "slang")
        assert app.steering.presets == ["concise"] and app.steering.method == "amulet"
        assert app.steering.method_object().settings() == (
            app.steering.with_paper_settings().method_object().settings())


async def test_a_lambda_no_alpha_answers_is_marked_while_typed(model, home):
    """The slider's alpha note sought the alpha of the recommended contrast while lambda was
    typed: at 1e20 there is none, and the app died with a traceback."""
    app = LocalprefApp(model=model)  # the recommended steering: Amulet at a set contrast
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.session is not None and not app.busy)
        panel = app.query_one(PreferencePanel)
        field = panel.query_one("#method-lam", Input)
        field.value = "99999999999999999999"
        await pilot.pause()
        assert "give a smaller contrast, lambda," in panel.errors["contrast"]
        field.value = "2"
        await pilot.pause()
        assert not panel.errors


async def test_a_comparison_past_the_lanes_says_what_to_do_in_the_app(model, home):
    """Three weighted preferences give each steered method 5 lanes: base, amulet and
    contrastive need 11 of the 8 the app decodes. The library's advice (a larger max_lanes)
    is nothing the app can take; the notice says what can."""
    seed(home, presets=["concise", "uplifting", "formal"], method="amulet",
         weights={"concise": 1.5, "uplifting": 0.75, "formal": 2.0})
    app = LocalprefApp(model=model)
    async with app.run_test(size=SIZE) as pilot:
        await open_compare(pilot, app)
        app.screen.query_one("#compare-methods", SelectionList).select("contrastive")
        await pilot.pause()
        await pilot.click("#run")
        await until(pilot, lambda: any("Cannot compare" in n or "tick fewer" in n
                                       for n in app.notices))
        assert app.notices[-1] == (
            "These 3 methods need 11 lanes at once with the preferences as weighed and the app "
            "decodes 8: tick fewer methods, or set the sliders back to 1 (one lane for every "
            "preference).")


async def test_a_compare_without_weights_that_needs_more_lanes_names_no_slider(
        bundled_path, home):
    """The notice told to set the sliders back to 1 when every slider was at 1 (a model of
    4 lanes, an avoid text and four methods of 1, 1, 2 and 2 lanes)."""
    seed(home, presets=["concise"], avoid="verbose", sampling={"max_tokens": 4})
    with Model(bundled_path, max_lanes=4, n_ctx=512, n_threads=1) as small:
        app = LocalprefApp(model=small)
        async with app.run_test(size=SIZE) as pilot:
            await open_compare(pilot, app)
            methods = app.screen.query_one("#compare-methods", SelectionList)
            methods.deselect_all()
            for name in ("base", "pref", "amulet", "pad"):
                methods.select(name)
            await pilot.pause()
            await pilot.click("#run")
            await until(pilot, lambda: any("tick fewer" in n for n in app.notices))
            assert app.notices[-1] == ("These 4 methods need 6 lanes at once and the app "
                                       "decodes 4: tick fewer methods.")


def test_a_method_of_more_lanes_than_loaded_names_the_method_not_the_sliders(
        bundled_path) -> None:
    """Every slider at 1 and a model of one lane: the sentence told to set the sliders back
    to 1, or (with examples) to use none, neither of which frees a lane."""
    with Model(bundled_path, max_lanes=1, n_ctx=256, n_threads=1) as one_lane:
        for examples in ([], ["An example answer."]):
            steering = Steering(presets=["concise"], method="amulet", examples=examples)
            assert steering.problem_with(one_lane) == (
                "The method amulet needs 2 lanes at once and the app decodes 1: choose a "
                "method of fewer lanes.")


async def test_the_palette_refuses_a_one_lane_method_for_weighted_preferences(model, home):
    """Base from the palette was taken beside weights, and every message then refused (and
    the setting saved for the next start): now it is refused as the panel's Apply refuses it."""
    seed(home, presets=["concise", "uplifting"], weights={"uplifting": 0.5},
         sampling={"max_tokens": 4})
    app = LocalprefApp(model=model)
    async with app.run_test(size=SIZE) as pilot:
        before = app.steering
        assert before.preference == {"concise": 1.0, "uplifting": 0.5}
        for method in ("Method: Base", "Method: Pref"):
            await run_from_palette(pilot, method)
            await until(pilot, lambda: any(notice.startswith("Not applied: Weighted")
                                           for notice in app.notices))
            assert app.steering == before and app.steering.method == before.method
            app.notices.clear()
        await run_from_palette(pilot, "Method: Contrastive")  # a two-lane method is taken
        await until(pilot, lambda: app.steering.method == "contrastive")
        app.query_one(ChatInput).load_text("Name a color.")
        app.query_one(ChatInput).focus()
        await pilot.press("enter")
        await until(pilot, lambda: not app.busy and app.session.history()[-1]["role"]
                    == "assistant")
        assert not any(notice.startswith("Not sent") for notice in app.notices)


@pytest.mark.parametrize("profile_state", ["full", "damaged"])
async def test_more_like_this_leaves_a_profile_it_cannot_take_as_it_was(bundled_path, home,
                                                                      profile_state):
    """Ctrl+O checked the steering's examples against max_like_tokens but not the open
    profile's: the profile went over the limit and refused every message once loaded. A
    profile damaged on disk made Ctrl+O stop the app with a traceback."""
    import sqlite3

    from localpref import Model
    from localpref.store import Store

    profile = {"presets": ["concise"], "examples": ["Short and sweet, like this. " * 3],
               "method": "amulet"}
    seed(home, presets=["concise"], sampling={"max_tokens": 12}, method="amulet")
    with Store(home / "history.sqlite3") as store:
        store.save_profile("p", profile)
    if profile_state == "damaged":
        with sqlite3.connect(home / "history.sqlite3") as database:
            database.execute("UPDATE profiles SET settings = '{oops' WHERE name = 'p'")
    with Model(bundled_path, n_ctx=512) as small:
        app = LocalprefApp(model=small)
        async with app.run_test(size=SIZE) as pilot:
            answer = await _first_answer(pilot, app, open_profile="p")
            # the limit between the answer alone and the answer beside the profile's example
            small.max_like_tokens = small.like_tokens([answer]) + 1
            await pilot.press("ctrl+o")
            await until(pilot, lambda: any("Added the last answer" in n for n in app.notices))
            assert app.steering.examples == [answer]  # the steering takes it either way
            added = next(n for n in app.notices if "Added the last answer" in n)
            assert "to profile" not in added
            if profile_state == "full":
                assert any(n.startswith("Not added to profile “p”: The examples are ")
                           for n in app.notices)
                assert app.session.profile("p").examples == profile["examples"]
            else:
                assert any(n.startswith("The profile “p” cannot be read") for n in app.notices)


def test_saved_settings_of_the_wrong_types_are_their_defaults() -> None:
    """A method or a preset saved as a list, or a weight too large for a float, stopped the
    app before it opened (TypeError, OverflowError), and the same in a profile on loading."""
    default = Steering()
    for damaged in ({"method": ["amulet"]}, {"presets": [["x"], {"a": 1}, "concise"]},
                    {"weights": {"concise": 10 ** 400, "formal": 2000, "warm": 0.5}},
                    {"method": {"a": 1}}):
        steering = Steering.from_dict(damaged)
        assert steering.method == default.method
    assert Steering.from_dict({"presets": [["x"], "concise"]}).presets == ["concise"]
    assert Steering.from_dict({"weights": {"concise": 10 ** 400, "formal": 2000,
                                           "warm": 0.5}}).weights == {"warm": 0.5}


def test_history_text_that_is_not_utf8_reads_as_damaged_not_as_a_locked_history(
        tmp_path) -> None:
    """One value of bytes that are not UTF-8 failed every query that read it: the app could
    not open (its steering, a profile, a conversation's title or message)."""
    import sqlite3

    from localpref.store import Store

    path = tmp_path / "history.sqlite3"
    with Store(path) as store:
        store.set_setting("steering", {"presets": ["concise"]})
        store.save_profile("p", {"presets": ["concise"]})
    with sqlite3.connect(path) as database:
        database.execute("UPDATE settings SET value = CAST(x'7bff22' AS TEXT) "
                         "WHERE key = 'steering'")
        database.execute("UPDATE profiles SET settings = CAST(x'7bff22' AS TEXT)")
    with Store(path) as store:
        assert store.get_setting("steering", "default") == "default"  # damaged: missing
        assert store.list_profiles() == {"p": None}  # listed, to be replaced or deleted


_NINE_LANES = ("These preferences as weighed need 9 lanes at once and the app decodes 8: "
               "untick some, or set the sliders back to 1 (one lane for every preference).")


async def test_a_slider_moved_while_preferences_are_ticked_keeps_its_weight(model, home):
    """Each tick rebuilt every slider from weights read before its own awaits: a slider
    moved while the ticks' rebuilds were still queued went back to 1 (Apply then applied
    plain preferences)."""
    seed(home, presets=["concise"], method="amulet", sampling={"max_tokens": 4})
    app = LocalprefApp(model=model)
    async with app.run_test(size=SIZE) as pilot:
        panel = app.query_one(PreferencePanel)
        for name in ["creative", "verbose", "uplifting", "formal", "pleasant", "humorous"]:
            panel.query_one("#presets", SelectionList).select(name)
        await until(pilot, lambda: len(panel.query(".weight-slider")) >= 2)
        concise = next(slider for slider in panel.query(".weight-slider").results(StrengthSlider)
                       if slider.item == "concise")
        concise.action_step(1)  # concise 1 -> 1.5, the other ticks' rebuilds still to come
        await until(pilot, lambda: len(panel.query(".weight-slider")) == 7)
        for _ in range(5):
            await pilot.pause(0.1)
        assert panel.weights() == {"concise": 1.5, "creative": 1.0, "verbose": 1.0,
                                   "uplifting": 1.0, "formal": 1.0, "pleasant": 1.0,
                                   "humorous": 1.0}
        concise.action_step(1)  # the slider moved is still the one shown
        await until(pilot, lambda: panel.weights()["concise"] == 2.0)


async def test_settings_no_answer_could_use_are_refused_where_they_are_chosen(model, home):
    """Seven preferences, one weighed, take 9 lanes of the app's 8: Apply took them, a
    profile loaded them, and every message was then refused with the library's advice (a
    larger max_lanes), which the app cannot take. A profile of Pref with weights, or examples
    over the limit, loaded too."""
    from localpref.store import Store

    seven = ["concise", "creative", "verbose", "uplifting", "formal", "pleasant", "humorous"]
    with Store(home / "history.sqlite3") as store:
        store.save_profile("nine", {"presets": seven, "weights": {"concise": 2.0},
                                    "method": "amulet"})
        store.save_profile("pref-weighed", {"presets": ["concise", "uplifting"],
                                            "weights": {"uplifting": 0.5}, "method": "pref"})
        store.save_profile("long", {"presets": ["concise"], "method": "amulet",
                                    "examples": ["word " * 1500]})
    seed(home, presets=["concise"], method="amulet", sampling={"max_tokens": 4})
    app = LocalprefApp(model=model)
    async with app.run_test(size=SIZE) as pilot:
        before = app.steering
        panel = app.query_one(PreferencePanel)
        for name in seven[1:]:
            panel.query_one("#presets", SelectionList).select(name)
        await until(pilot, lambda: len(panel.query(".weight-slider")) == 7)
        concise = next(slider for slider in panel.query(".weight-slider").results(StrengthSlider)
                       if slider.item == "concise")
        concise.action_step(1)  # (what Right does on it) concise 1 -> 1.5
        await until(pilot, lambda: panel.weights().get("concise") == 1.5)
        # pressed, not clicked: in two loaded clean-clone runs neither of two clicks on
        # Apply was seen (clicks on it are the panel tests' own; this one is the refusal's)
        apply_button = panel.query_one("#apply", Button)
        await until(pilot, lambda: not apply_button.has_class("-active"))
        apply_button.press()
        try:
            await until(pilot, lambda: any("not applied" in n for n in app.notices))
        except AssertionError:
            raise AssertionError(f"Apply was not refused: notices {app.notices}, weights "
                                 f"{panel.weights()}, steering {app.steering}") from None
        assert app.notices[-1] == f"Settings not applied: {_NINE_LANES}"
        assert app.steering == before
        for name, words in (("nine", _NINE_LANES),
                            ("pref-weighed", "Weighted preferences steer through a two-lane"),
                            ("long", "The examples are 1500 tokens together")):
            app.notices.clear()
            app.clear_notifications()
            panel.query_one("#profile-select", Select).value = name
            # (a button takes no click while it shows the last one, 0.2 s)
            await until(pilot, lambda: not panel.query_one("#profile-load").has_class("-active"))
            await click(pilot, app, "#profile-load")
            await until(pilot, lambda: bool(app.notices))
            assert app.notices[-1].startswith(f"Profile “{name}” not loaded: {words}")
            assert app.steering == before and app.open_profile is None
    seed(home, presets=seven, weights={"concise": 2.0}, method="amulet")
    reopened = LocalprefApp(model=model)  # saved settings no answer could use: said at start
    async with reopened.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: any("cannot answer" in n for n in reopened.notices))
        assert (f"The steering settings cannot answer with this model: {_NINE_LANES} Change "
                "them in the panel (F3).") in reopened.notices


async def test_more_like_this_one_lane_past_the_apps_is_refused_naming_the_examples(model, home):
    """Six preferences, one weighed, take the app's 8 lanes and answer; an example takes one
    lane more. Ctrl+O's refusal blamed the preferences alone, and it added the example to the
    open profile, which then would not load."""
    from localpref.store import Store

    six = ["concise", "creative", "verbose", "uplifting", "formal", "pleasant"]
    weighed = {"presets": six, "weights": {"concise": 2.0}, "method": "amulet"}
    with Store(home / "history.sqlite3") as store:
        store.save_profile("six", weighed)
    seed(home, **weighed, sampling={"max_tokens": 4})
    app = LocalprefApp(model=model)
    async with app.run_test(size=SIZE) as pilot:
        await _first_answer(pilot, app, open_profile="six")
        await pilot.press("ctrl+o")
        await until(pilot, lambda: any(n.startswith("Not added") for n in app.notices))
        assert app.notices[-1] == (
            "Not added: These preferences as weighed, with the examples, need 9 lanes at once "
            "and the app decodes 8: untick a preference, set the sliders back to 1 (one lane "
            "for every preference), or use no examples.")
        assert app.steering.examples == [] and app.session.profile("six").examples == []
        # five preferences leave the steering room for the example, not the profile
        await app.action_toggle_preset("pleasant")
        app.notices.clear()
        await pilot.press("ctrl+o")
        await until(pilot, lambda: any("Added the last answer" in n for n in app.notices))
        assert len(app.steering.examples) == 1
        assert any(n.startswith("Not added to profile “six”: These preferences as weighed, "
                                "with the examples, need 9 lanes") for n in app.notices)
        assert app.session.profile("six").examples == []


async def test_more_like_this_keeps_the_rest_of_the_open_profile_as_saved(model, home,
                                                                         tmp_path):
    """Ctrl+O saved the profile as the app read it: a setting it could not use (a reward
    model gone from disk) read as the defaults, and those were saved over the reward model
    and the sampling."""
    from localpref.store import Store

    saved = {"presets": ["concise"], "method": "pad",
             "method_settings": {"pad": {"reward_model": str(tmp_path / "gone.gguf")}},
             "sampling": {"temperature": 0.3}}
    with Store(home / "history.sqlite3") as store:
        store.save_profile("p", saved)
    seed(home, presets=["concise"], method="amulet", sampling={"max_tokens": 6})
    app = LocalprefApp(model=model)
    async with app.run_test(size=SIZE) as pilot:
        answer = await _first_answer(pilot, app, open_profile="p")
        await pilot.press("ctrl+o")
        await until(pilot, lambda: any("Added the last answer" in n for n in app.notices))
        assert "to profile “p”" in app.notices[-1]
        assert app.store.list_profiles()["p"] == {**saved, "examples": [answer]}
