"""A chat that outgrows the model's window (the bundled model at 256 tokens): refused with a
sentence about the conversation, or, with ``trim_history`` (as the app runs it), answered from
its last exchanges that leave the answer room, the history kept whole."""

from __future__ import annotations

from pathlib import Path

import pytest

from localpref.api import Chat, Model, without_oldest_exchange
from localpref.errors import PromptTooLongError
from localpref.request import Request

FIRST, SECOND = "Tell me about the history of Rome.", "And Greece?"
SETTINGS = {"method": "base", "max_tokens": 224, "ignore_eos": True}


def test_the_oldest_exchange_goes_first_and_the_system_prompt_stays() -> None:
    system = {"role": "system", "content": "Be brief."}
    user1, answer1 = {"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}
    user2, answer2 = {"role": "user", "content": "c"}, {"role": "assistant", "content": "d"}
    user3 = {"role": "user", "content": "e"}
    assert without_oldest_exchange([system, user1, answer1, user2, answer2, user3]) == [
        system, user2, answer2, user3]
    assert without_oldest_exchange([user2, answer2, user3]) == [user3]
    assert without_oldest_exchange([system, user3]) is None
    assert without_oldest_exchange([user3]) is None


def test_a_full_window_reads_the_last_exchanges_or_says_the_conversation_fills_it(
        bundled_path: Path) -> None:
    with Model(bundled_path, n_ctx=256, max_lanes=2) as small:
        strict = Chat(small, **SETTINGS)
        first = strict.send(FIRST)
        assert first.stats["n_prompt_tokens"] + len(first.tokens) > 240  # the window is full
        with pytest.raises(PromptTooLongError) as refused:
            strict.send(SECOND)
        assert str(refused.value).startswith("The conversation is ")
        assert "start a new conversation" in str(refused.value)
        assert len(strict.messages) == 2  # nothing added by the refusal
        # a message that fills the window alone: a new conversation would not take it either
        huge = "word " * 300
        with pytest.raises(PromptTooLongError) as refused:
            strict.send(huge)
        alone = small.count_tokens([{"role": "user", "content": huge}])
        assert str(refused.value) == (
            f"The message alone is {alone} tokens long and the context holds 256, which "
            "leaves no room for an answer; shorten it or load the model with a larger context "
            "(--ctx, n_ctx).")
        assert len(strict.messages) == 2

        trimming = Chat(small, messages=strict.messages, trim_history=True, **SETTINGS)
        second = trimming.send(SECOND, max_tokens=24)
        assert trimming.left_out == 2
        assert second.stats["n_prompt_tokens"] == small.count_tokens(SECOND)
        assert [m["content"] for m in trimming.messages] == [FIRST, first.text, SECOND,
                                                             second.text]
        short = trimming.send("Thanks.", max_tokens=8)  # fits beside the last exchange
        assert trimming.left_out == 2 and short.stats["n_prompt_tokens"] == small.count_tokens(
            trimming.messages[2:5])


def test_the_window_is_measured_on_the_preference_lane(bundled_path: Path) -> None:
    """A long preference makes the preference lane the longer one: trimming measured the
    base lane, so answers were cut short of max_tokens though nothing was left out."""
    preference = "Write in a warm, friendly, encouraging tone and mention gardening. " * 8
    with Model(bundled_path, n_ctx=256, max_lanes=2) as small:
        chat = Chat(small, preference=preference, method="amulet", max_tokens=40,
                    trim_history=True, ignore_eos=True)
        for turn in range(4):
            answer = chat.send(f"Question {turn}: tell me about the number {turn}. "
                               + "padding " * 10)
            assert len(answer.tokens) == 40  # the room it asked for, every turn
            assert answer.stats["n_prompt_tokens"] + 40 < small.n_ctx
        assert chat.left_out > 0 and len(chat.messages) == 8  # the history kept whole
        request = Request.make("Hi", preference=preference, method="amulet")
        assert small.prompt_tokens(request) > small.count_tokens("Hi") + 100
        assert small.prompt_tokens(Request.make("Hi", method="base")) == small.count_tokens("Hi")


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("LOCALPREF_HOME", str(tmp_path))
    return tmp_path


async def test_the_app_goes_on_with_the_last_exchanges_and_says_so(bundled_path: Path,
                                                                   home: Path) -> None:
    """A saved conversation longer than the window (reopened at start-up): the next message is
    answered from what fits, a notice says how many messages it left out, the history keeps
    them all."""
    from tui_helpers import seed, until

    from localpref.store import Store
    from tui.app import LocalprefApp
    from tui.widgets import ChatInput

    long_answer = " ".join(["Rome grew from a village into an empire."] * 40)  # ~400 tokens
    with Store(home / "history.sqlite3") as store:
        conversation = store.create_conversation("Rome")
        store.add_message(conversation, "user", FIRST)
        store.add_message(conversation, "assistant", long_answer, method="base")
        store.set_setting("last_conversation", conversation)  # open when the app last quit
    seed(home, presets=[], method="base", sampling={"max_tokens": 16})
    with Model(bundled_path, n_ctx=256, max_lanes=2) as small:
        app = LocalprefApp(model=small)
        async with app.run_test(size=(160, 50)) as pilot:
            await until(pilot, lambda: app.session is not None and not app.busy)
            assert app.conversation_id == conversation
            app.query_one(ChatInput).load_text(SECOND)
            await pilot.press("enter")
            await until(pilot, lambda: not app.busy and len(app.store.messages(conversation))
                        == 4 and app.store.messages(conversation)[3].status == "complete")
            saved = app.store.messages(conversation)
            assert [m.content for m in saved[:3]] == [FIRST, long_answer, SECOND]
            assert saved[3].content.strip()
            assert saved[3].stats["n_prompt_tokens"] == small.count_tokens(SECOND)
            assert any(n.startswith("The conversation no longer fits the model's window (256 "
                                    "tokens): this answer reads it without its first 2 messages")
                       for n in app.notices)


def test_the_prompt_and_the_answer_fill_the_whole_window(bundled_path: Path) -> None:
    """--ctx is one conversation's window: an answer stopped a token short of it ("length"
    where the model's whole answer and its end token fit), and a prompt one token shorter than
    the window, which leaves room for one, was refused as leaving none."""
    with Model(bundled_path, n_ctx=64, max_lanes=2) as small:
        prompt = small.count_tokens("Hi")
        filled = small.generate("Hi", method="base", max_tokens=200, ignore_eos=True)
        assert prompt + len(filled.tokens) == 64 and filled.stats["stop_reason"] == "length"
        # a word a token: the prompt that leaves one cell, then the one that leaves none
        words = next(n for n in range(1, 64) if small.count_tokens("word " * n) == 63)
        one = small.generate("word " * words, method="base", max_tokens=8, ignore_eos=True)
        assert len(one.tokens) == 1 and one.stats["stop_reason"] == "length"
        assert small.count_tokens("word " * (words + 1)) == 64
        with pytest.raises(PromptTooLongError, match="is 64 tokens long and the context holds "
                                                     "64, which leaves no room"):
            small.generate("word " * (words + 1), method="base", max_tokens=8)


def test_a_system_prompt_that_fills_the_window_is_named_not_the_prompt(
        bundled_path: Path) -> None:
    """A system prompt given to load() or chat() that left no room was "shorten the prompt"
    of a one-word prompt."""
    said = ("The system prompt makes the prompt {} tokens long and the context holds 256, "
            "which leaves no room for an answer; shorten the system prompt or load the model "
            "with a larger context (--ctx, n_ctx).")
    long_system = "You are helpful. " * 80
    with Model(bundled_path, n_ctx=256, max_lanes=2, n_threads=1,
               system_prompt=long_system) as model:
        for call in (lambda: model.generate("hi", max_tokens=2),
                     lambda: model.generate("hi", max_tokens=2, preference="concise")):
            with pytest.raises(PromptTooLongError) as refused:
                call()
            assert str(refused.value) == said.format(refused.value.args[0].split()[6])
            assert int(refused.value.args[0].split()[6]) > 256
        # a base lane that fits, the preference's lane not: still the system prompt's doing
        fitting = next(system for system in ("Be helpful. " * n for n in range(40, 120))
                       if 246 <= model.count_tokens([{"role": "system", "content": system},
                                                     {"role": "user", "content": "hi"}]) < 254)
        chat = model.chat(system_prompt=fitting, preference="concise", max_tokens=2)
        try:
            with pytest.raises(PromptTooLongError, match="^The system prompt makes the prompt"):
                chat.send("hi")  # (it was "With the preference ...; shorten the prompt")
        finally:
            chat.close()
        # without the system prompt it would not fit either: not the system prompt's sentence
        chat = model.chat(system_prompt="banana " * 150, preference="cherry " * 130,
                          max_tokens=2)
        try:
            with pytest.raises(PromptTooLongError) as both:
                chat.send("apple " * 100)
            assert not str(both.value).startswith("The system prompt")
        finally:
            chat.close()
        chat = model.chat(system_prompt="", max_tokens=2)  # (a fitting one of its own)
        try:
            assert chat.send("hi").stats["n_tokens"] >= 1
        finally:
            chat.close()
        # the conversation's own system message is part of the prompt: as before
        with pytest.raises(PromptTooLongError, match="^The prompt is "):
            model.generate([{"role": "system", "content": long_system},
                            {"role": "user", "content": "hi"}], max_tokens=2)
