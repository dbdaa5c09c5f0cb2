"""The app's model picker (F9), driven with Textual's pilot on real models through llama.cpp.

The Hugging Face cache is laid out in ``tmp_path``; downloads go to the fake Hub on 127.0.0.1
of ``test_models_hub`` (its fixtures ``fake_hub``, ``hub_env`` and ``tiny`` are imported; it
points ``HF_ENDPOINT`` there), which serves the bundled GGUF so the downloaded model
really loads. Waits are on conditions, never fixed sleeps.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import threading
from pathlib import Path

import pytest
from test_models_hub import (  # noqa: F401
    COMMIT,
    FakeHub,
    _leftovers,
    fake_hub,
    hub_env,
    tiny,
    write_tiny_gguf,
)
from textual.widgets import Input, OptionList, ProgressBar
from tui_helpers import SIZE, WAIT, run_from_palette, until

import tui.screens.models as picker_module
from localpref.store import Store
from tui.app import LocalprefApp
from tui.screens import ModelPickerScreen
from tui.widgets import ChatInput, ChatLog, StatusBar

REV = "c" * 40


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty data folder for this test, and the built-in catalog."""
    monkeypatch.setenv("LOCALPREF_HOME", str(tmp_path / "data"))
    monkeypatch.delenv("LOCALPREF_CATALOG", raising=False)
    return tmp_path / "data"


@pytest.fixture
def offline_cache(empty_hf_cache: Path) -> Path:
    """An empty Hugging Face cache in tmp_path, with downloads turned off."""
    return empty_hf_cache


def cache_copy(cache: Path, repo: str, name: str, source: Path) -> Path:
    """Put a copy of ``source`` in the cache as huggingface_hub does (blob + snapshot link).

    A copy (a hard link when the disk allows), not a link to ``source``: the picker treats a
    link to the loaded file as the loaded model itself.
    """
    repo_dir = cache / ("models--" + repo.replace("/", "--"))
    blob = repo_dir / "blobs" / hashlib.sha256(name.encode()).hexdigest()
    blob.parent.mkdir(parents=True)
    try:
        os.link(source, blob)
    except OSError:
        shutil.copyfile(source, blob)
    snapshot = repo_dir / "snapshots" / REV
    snapshot.mkdir(parents=True)
    (snapshot / name).symlink_to(os.path.relpath(blob, snapshot))
    (repo_dir / "refs").mkdir()
    (repo_dir / "refs" / "main").write_text(REV)
    return snapshot / name


async def open_picker(pilot, app: LocalprefApp) -> ModelPickerScreen:
    await pilot.press("f9")
    await until(pilot, lambda: isinstance(app.screen, ModelPickerScreen))
    return app.screen  # type: ignore[return-value]


async def type_model(pilot, screen: ModelPickerScreen, text: str) -> None:
    """Type a model into the picker's box and press Enter."""
    box = screen.query_one("#model-spec", Input)
    box.focus()
    box.value = text
    await pilot.press("enter")


async def say_hello(pilot, app: LocalprefApp) -> None:
    """One short exchange, so there is a conversation to keep across the switch."""
    count = len(app.query_one(ChatLog).views)
    app.query_one(ChatInput).focus()
    app.query_one(ChatInput).load_text("Hello!")
    await pilot.press("enter")
    await until(pilot, lambda: not app.busy and len(app.query_one(ChatLog).views) == count + 2)


def seed_short_answers(home: Path) -> None:
    with Store(home / "history.sqlite3") as store:
        store.set_setting("steering", {"method": "base", "sampling": {"max_tokens": 8}})


# -- listing -----------------------------------------------------------------------------------


async def test_picker_lists_the_bundled_model_the_catalog_and_the_cache(
    model, home, offline_cache, bundled_path
):
    cache_copy(offline_cache, "org/name", "name-Q4_1.gguf", bundled_path)
    app = LocalprefApp(model=model)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_picker(pilot, app)
        rows = {row.spec: row for row in screen.rows}
        assert rows["smollm2-135m-instruct"].loaded  # the bundled model is the loaded one
        assert "bundled" in rows["smollm2-135m-instruct"].detail
        catalog = rows["qwen2.5-0.5b-instruct"]
        assert not catalog.loaded and "to download" in catalog.detail
        cached = rows["org/name:name-Q4_1.gguf"]
        assert not cached.loaded and "MB" in cached.detail
        options = screen.query_one("#model-options", OptionList)
        assert options.option_count == len(screen.rows)
        shown = str(options.get_option_at_index(0).prompt)
        assert "smollm2-135m-instruct" in shown and "loaded" in shown
        assert screen.focused is options
        await pilot.press(*"/tmp/x")  # typed on the list: it goes to the path field
        box = screen.query_one("#model-spec", Input)
        assert screen.focused is box and box.value == "/tmp/x"
        await pilot.press("escape")
        await until(pilot, lambda: not isinstance(app.screen, ModelPickerScreen))
        assert app.model is model


async def test_command_palette_opens_the_picker(model, home, offline_cache):
    app = LocalprefApp(model=model)
    async with app.run_test(size=SIZE) as pilot:
        await run_from_palette(pilot, "Pick model")
        await until(pilot, lambda: isinstance(app.screen, ModelPickerScreen))


# -- switching -----------------------------------------------------------------------------------


async def test_a_cached_repo_is_loaded_offline_after_the_answer_and_the_chat_is_kept(
    model, home, offline_cache, bundled_path
):
    seed_short_answers(home)
    cached = cache_copy(offline_cache, "org/name", bundled_path.name, bundled_path)
    app = LocalprefApp(model=model)
    async with app.run_test(size=SIZE) as pilot:
        app.query_one(ChatInput).load_text("Hello!")
        paused = model.exclusive()  # pause the model's scheduler
        paused.__enter__()  # hold the model: the answer is being written during the pick
        try:
            await pilot.press("enter")
            await until(pilot, lambda: app.busy)
            screen = await open_picker(pilot, app)
            await type_model(pilot, screen, "org/name:*.gguf")
            await until(pilot, lambda: not isinstance(app.screen, ModelPickerScreen))
            assert app.session.switching == "org/name:*.gguf" and app.model is model  # it waits
            state = app.query_one(StatusBar).facts["state"]
            assert state == "loading org/name:*.gguf after the answer being written…"
            app.query_one(ChatInput).load_text("Another question")
            await pilot.press("enter")  # waits for the new model
            assert "your message is saved and goes as soon as it is ready" in app.notices[-1]
            assert app.query_one(ChatInput).text == ""
            assert app.query_one(ChatLog).views[-1].header() == "You · waiting"
        finally:
            paused.__exit__(None, None, None)
        await until(pilot, lambda: app.model is not model)
        assert app.model.path == cached  # the snapshot file, found with HF_HUB_OFFLINE=1
        assert any("Now using" in notice and "org/name:*.gguf" in notice
                   for notice in app.notices)
        status = app.query_one(StatusBar)
        assert status.facts["model"] == app.model.name
        assert app.sub_title == app.model.name

        # nothing in the conversation is lost, and the waiting message went to the new model
        # (it starts as soon as the switch ends; the status is "ready" once it is answered)
        await until(pilot, lambda: not app.busy and len(app.query_one(ChatLog).views) == 4)
        await until(pilot, lambda: status.facts["state"] == "ready")
        views = app.query_one(ChatLog).views
        assert [v.role for v in views] == ["user", "assistant"] * 2 and views[1].text.strip()
        assert app.chat is not None and app.chat.model is app.model
        assert app.chat.messages == [{"role": "user", "content": "Hello!"},
                                     {"role": "assistant", "content": views[1].text},
                                     {"role": "user", "content": "Another question"},
                                     {"role": "assistant", "content": views[3].text}]
        await say_hello(pilot, app)
        assert len(app.store.messages(app.conversation_id)) == 6
        assert app.store.get_setting("model") == str(cached)
    # the app never closes a model it was given: the session's model still works
    assert model.count_tokens([{"role": "user", "content": "Hello!"}]) > 0

    # with no --model, the next start opens the model picked last time
    reopened = LocalprefApp()
    async with reopened.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: reopened.model is not None)
        assert reopened.model.path == cached and reopened.model is not model
    cached.unlink()  # gone from the disk: the start falls back to the bundled model
    fallback = LocalprefApp()
    async with fallback.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: fallback.model is not None)
        assert fallback.model.path.resolve() == bundled_path.resolve()


async def test_a_download_shows_its_progress_then_loads_the_model(
    model, home, fake_hub: FakeHub, hub_env: Path, bundled_path, monkeypatch  # noqa: F811
):
    import huggingface_hub.constants as constants

    monkeypatch.setattr(constants, "DOWNLOAD_CHUNK_SIZE", 1 << 20)  # ~100 progress calls
    content = bundled_path.read_bytes()
    fake_hub.add("org/smol-GGUF", "smol-Q4_1.gguf", content)
    fake_hub.add("org/smol-GGUF", "smol-Q8_0.gguf", b"not this one")
    app = LocalprefApp(model=model)
    async with app.run_test(size=SIZE) as pilot:
        await say_hello(pilot, app)
        assert app.query_one(StatusBar).facts["tokens_per_s"] > 0
        screen = await open_picker(pilot, app)
        bar = screen.query_one("#model-progress", ProgressBar)
        await type_model(pilot, screen, "org/smol-GGUF:*Q4_1.gguf")
        await until(pilot, lambda: screen.downloading or app.model is not model)
        await until(pilot, lambda: app.model is not model)
        assert bar.total == len(content) and bar.progress == len(content)
        expected = hub_env / "models--org--smol-GGUF" / "snapshots" / COMMIT / "smol-Q4_1.gguf"
        assert app.model.path == expected and expected.read_bytes() == content
        facts = app.query_one(StatusBar).facts
        assert facts["model"] == app.model.name
        # the last answer's speed was the old model's: not shown beside the new one's name
        assert facts["tokens_per_s"] is None and facts["steer_ms_per_token"] is None


# -- bad input -------------------------------------------------------------------------------------


async def test_bad_choices_show_one_sentence_and_keep_the_model(
    model, home, fake_hub: FakeHub, hub_env: Path, tiny: bytes  # noqa: F811
):
    seed_short_answers(home)
    fake_hub.add("org/many", "m-Q4_1.gguf", tiny)
    fake_hub.add("org/many", "m-Q8_0.gguf", tiny)
    text_file = home.parent / "notes.gguf"
    text_file.write_text("just some notes")
    app = LocalprefApp(model=model)
    async with app.run_test(size=SIZE) as pilot:
        await say_hello(pilot, app)
        screen = await open_picker(pilot, app)
        expected = {
            "org/many:*Q5_K_M.gguf": "No GGUF file of org/many matches '*Q5_K_M.gguf' (it has "
                                     "m-Q4_1.gguf, m-Q8_0.gguf).",
            "org/many": "'*.gguf' matches 2 files of org/many on the Hub "
                        "(m-Q4_1.gguf, m-Q8_0.gguf);",
            "org/nothing": "The repository org/nothing was not found on the Hugging Face Hub",
            str(text_file): "notes.gguf is not a GGUF file",
        }
        for typed, sentence in expected.items():
            count = len(app.notices)
            await type_model(pilot, screen, typed)
            await until(pilot, lambda c=count: len(app.notices) > c and screen.running is None)
            notice = app.notices[-1]
            assert sentence in notice and "Traceback" not in notice and "\n" not in notice
            assert isinstance(app.screen, ModelPickerScreen)  # fix the text and try again
            assert sentence in str(screen.query_one("#model-picker-status").render())
        assert app.model is model
        assert _leftovers(hub_env) == []
        await pilot.press("escape")
        await until(pilot, lambda: not isinstance(app.screen, ModelPickerScreen))
        assert len(app.query_one(ChatLog).views) == 2 and app.chat.model is model


async def test_a_model_llama_cpp_refuses_is_a_notice_and_the_current_model_stays(
    model, home, offline_cache, tmp_path
):
    seed_short_answers(home)
    odd = tmp_path / "odd.gguf"
    write_tiny_gguf(odd)  # a well-formed header, but no model llama.cpp can run
    app = LocalprefApp(model=model)
    async with app.run_test(size=SIZE) as pilot:
        await say_hello(pilot, app)
        screen = await open_picker(pilot, app)
        await type_model(pilot, screen, str(odd))
        await until(pilot, lambda: any("could not load" in n for n in app.notices))
        assert app.notices[-1] == (  # llama.cpp's own reason, its log kept out of the app
            f"llama.cpp could not load {odd}: error loading model hyperparameters: key not "
            "found in model: llama.attention.layer_norm_rms_epsilon.")
        assert app.session.switching is None and not isinstance(app.screen, ModelPickerScreen)
        assert app.model is model and app.chat.model is model
        assert app.query_one(StatusBar).facts["model"] == model.name
        await say_hello(pilot, app)  # the conversation goes on with the current model
        assert len(app.store.messages(app.conversation_id)) == 4


async def test_escape_cancels_a_download_and_keeps_nothing(
    model, home, fake_hub: FakeHub, hub_env: Path, tiny: bytes, monkeypatch  # noqa: F811
):
    fake_hub.add("org/slow", "slow.gguf", tiny)
    downloading, resume = threading.Event(), threading.Event()
    real_resolve = picker_module.resolve_model

    def held_after_the_first_chunk(spec, *, progress=None, **options):
        """The real download, held after its first chunk until the test has pressed Esc."""

        def hook(done: int, total: int) -> None:
            progress(done, total)  # the picker's hook: raises once Esc was pressed
            downloading.set()
            resume.wait(WAIT)

        return real_resolve(spec, progress=hook, **options)

    monkeypatch.setattr(picker_module, "resolve_model", held_after_the_first_chunk)
    app = LocalprefApp(model=model)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_picker(pilot, app)
        await type_model(pilot, screen, "org/slow")
        await until(pilot, lambda: downloading.is_set() and screen.downloading)
        await pilot.press("escape")
        assert "Cancelling" in str(screen.query_one("#model-picker-status").render())
        resume.set()
        await until(pilot, lambda: not isinstance(app.screen, ModelPickerScreen))
        assert "The download of slow.gguf from org/slow was cancelled; nothing was kept." in (
            app.notices)
        assert app.model is model and app.session.switching is None
        assert _leftovers(hub_env) == []
