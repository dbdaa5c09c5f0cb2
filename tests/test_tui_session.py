"""The app's session without its widgets: the real bundled model through llama.cpp, no Textual.

``tui.session.ChatSession`` holds what the app knows (the open conversation, its chat, busy and
switching, the waiting messages) and makes every store write; these tests drive it as the app's
handlers do (``send``, then ``write`` as the worker would, then ``finish``) and read the store.
"""

from __future__ import annotations

import ast
import threading
import time
from pathlib import Path

import pytest

from localpref.store import Store
from tui.session import DELETED_ELSEWHERE, ChatSession, NotNow, Refused
from tui.steering import Steering

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def notices() -> list[str]:
    return []


def make_session(model, tmp_path: Path, notices: list[str], **steering) -> ChatSession:
    settings = {"presets": ["concise"], "method": "amulet", "sampling": {"max_tokens": 8}}
    settings.update(steering)
    return ChatSession(Store(tmp_path / "history.sqlite3"), Steering.from_dict(settings), model,
                       notify=lambda text, severity: notices.append(text))


def write(session: ChatSession, answer, stop_after_text: bool = False):
    """Stream ``answer`` as the app's worker does (here on the test's thread), then end it."""
    deltas: list[str] = []

    def progress(delta: str, stats: dict) -> None:
        deltas.append(delta)
        if stop_after_text and "".join(deltas).strip():
            session.stop()  # Esc, once some text is shown

    ended = session.write(answer, progress=progress, notice=lambda text, severity: None)
    session.finish()
    return ended, "".join(deltas)


def rows(session: ChatSession) -> list[tuple[str, str, str]]:
    return [(m.role, m.content, m.status) for m in session.stored_messages()]


def test_the_session_module_does_not_import_textual() -> None:
    tree = ast.parse((ROOT / "tui" / "session.py").read_text(encoding="utf-8"))
    imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import)
                for alias in node.names}
    imported |= {node.module or "" for node in ast.walk(tree)
                 if isinstance(node, ast.ImportFrom)}
    assert not [name for name in imported if name.split(".")[0] == "textual"]
    assert "localpref" in imported


def test_a_message_is_saved_when_sent_and_its_answer_when_written(model, tmp_path, notices):
    session = make_session(model, tmp_path, notices)
    try:
        assert session.conversation_id is None and not session.busy
        answer = session.send("Name a color.")
        assert session.busy and session.answer is answer
        assert session.conversation_id is not None
        conversation = session.store.get_conversation(session.conversation_id)
        assert conversation.title == "Name a color."
        assert rows(session) == [("user", "Name a color.", "complete"),
                                 ("assistant", "", "partial")]  # saved before it streams
        assert answer.method == "amulet" and answer.preference == "concise"

        ended, shown = write(session, answer)
        assert not session.busy
        assert ended.text.strip() and shown == ended.text and not ended.partial
        assert ended.sentence is None
        assert rows(session) == [("user", "Name a color.", "complete"),
                                 ("assistant", ended.text, "complete")]
        saved = session.stored_messages()[1]
        assert saved.stats["method"] == "amulet" and saved.stats["n_tokens"] <= 8
        assert session.history() == [{"role": "user", "content": "Name a color."},
                                     {"role": "assistant", "content": ended.text}]
        assert session.store.get_setting("last_conversation") == session.conversation_id
        assert session.context_used() == model.count_tokens(session.history())
        assert notices == []
    finally:
        session.close()


def test_naming_a_new_conversation_saves_it_as_a_first_message_would(model, tmp_path,
                                                                       notices):
    """F2 on a conversation not yet saved saved it without its model, and not as the one to
    open at the next start."""
    session = make_session(model, tmp_path, notices)
    try:
        session.rename("Garden notes")
        conversation = session.store.get_conversation(session.conversation_id)
        assert (conversation.title, conversation.model) == ("Garden notes", model.name)
        assert session.store.get_setting("last_conversation") == session.conversation_id
        session.rename("Garden")  # an existing one is renamed in place
        assert session.store.get_conversation(session.conversation_id).title == "Garden"
        assert len(session.store.list_conversations()) == 1 and notices == []
    finally:
        session.close()


def test_a_conversation_deleted_in_another_window_stays_deleted_and_what_follows_is_kept(
        model, tmp_path, notices):
    """Two windows on one history: B deletes what A has open. A's next message was SQLite's
    foreign-key error (nothing saved), its rename a traceback, and an answer A was writing
    meanwhile vanished without a word. The deletion stands; what A writes from then on (a
    message, the answer being written, a waiting message) goes into a new conversation, said
    once."""
    a = make_session(model, tmp_path, notices)
    other = Store(tmp_path / "history.sqlite3")  # window B
    try:
        write(a, a.send("Name a color."))
        other.delete_conversation(a.conversation_id)
        assert a.title() == ""  # (F2 reads it: a StoreError, the app's traceback)
        with pytest.raises(Refused, match="deleted in another window, so there is nothing"):
            a.regenerate()
        with pytest.raises(Refused):  # (a second one answered the deleted messages, unsaved)
            a.regenerate()
        second, _ = write(a, a.send("And a fruit?"))
        assert notices == []  # (the refusal said it)
        assert rows(a) == [("user", "And a fruit?", "complete"),
                           ("assistant", second.text, "complete")]
        assert a.history() == [{"role": "user", "content": "And a fruit?"},
                               {"role": "assistant", "content": second.text}]  # what it read
        assert a.title() == "And a fruit?"
        # deleted while an answer is written, a message waiting behind it: both kept, in order
        notices.clear()
        answer = a.send("And a tree?")
        a.wait("And a stone?")
        other.delete_conversation(a.conversation_id)
        said: list[str] = []
        third = a.write(answer, progress=lambda delta, stats: None,
                        notice=lambda text, severity: said.append(text))
        a.finish()
        assert said == [DELETED_ELSEWHERE] and notices == []
        fourth, _ = write(a, a.send_waiting())
        assert [(role, text) for role, text, _ in rows(a)] == [
            ("user", "And a tree?"), ("assistant", third.text),
            ("user", "And a stone?"), ("assistant", fourth.text)]
        assert a.stored_messages()[1].method == "amulet"  # its steering facts kept
        # reopened from the list (no chat yet), deleted, then renamed: a new conversation
        a.open(a.conversation_id)
        other.delete_conversation(a.conversation_id)
        a.rename("Stones")
        assert other.get_conversation(a.conversation_id).title == "Stones" and rows(a) == []
        assert notices == [DELETED_ELSEWHERE] and len(other.list_conversations()) == 1
    finally:
        a.close()
        other.close()


def test_stop_keeps_the_partial_answer_saved_and_in_the_chat(model, tmp_path, notices):
    session = make_session(model, tmp_path, notices, presets=["verbose"], method="pref",
                           sampling={"max_tokens": 400})
    try:
        assert session.stop() is False  # nothing to stop
        answer = session.send("Write a long story about a dragon and a knight.")
        ended, shown = write(session, answer, stop_after_text=True)
        assert ended.partial and ended.stats["stop_reason"] == "cancelled"
        assert 0 < ended.stats["n_tokens"] < 400
        assert ended.text.strip() and ended.text.startswith(shown)
        assert ended.sentence == "Stopped; the partial answer is kept."
        saved = session.stored_messages()[1]
        assert saved.partial and saved.content == ended.text
        assert saved.stats["stop_reason"] == "cancelled"
        # the partial answer stays in the conversation the model reads next
        assert session.chat is not None and session.chat.messages[-1] == {
            "role": "assistant", "content": ended.text}
    finally:
        session.close()


def test_a_stop_before_the_first_word_says_so_rather_than_a_partial_answer_kept(
    model, tmp_path, notices
):
    session = make_session(model, tmp_path, notices, method="pref")
    try:
        answer = session.send("Write a long story about a dragon and a knight.")
        assert session.stop() is True  # before the worker reads its first piece
        ended, shown = write(session, answer)
        assert (ended.text, shown, ended.stats["stop_reason"]) == ("", "", "cancelled")
        assert ended.sentence == "Stopped before the answer's first word."
    finally:
        session.close()


def test_a_second_send_while_an_answer_is_written_is_refused_and_a_waiting_one_goes_later(
    model, tmp_path, notices
):
    session = make_session(model, tmp_path, notices)
    try:
        first = session.send("Name a color.")
        with pytest.raises(NotNow) as refused:
            session.send("Name a fruit.")
        assert str(refused.value) == ("An answer is being written; wait until it ends or press "
                                      "Esc to stop it.")
        assert len(session.stored_messages()) == 2  # nothing saved for the refused one
        assert session.why_wait() == "answering"

        # what the app does instead: the messages wait, saved at once
        fruit = session.wait("Name a fruit.")
        animal = session.wait("Name an animal.")
        assert session.waiting == [fruit, animal]
        assert session.send_waiting() is None  # not while the first answer is written
        assert session.waiting_sentence("answering") == (
            "An answer is being written; your message is saved and goes when it ends "
            "(Esc stops it).")
        assert [text for _, text, _ in rows(session)] == ["Name a color.", "", "Name a fruit.",
                                                          "Name an animal."]
        write(session, first)

        second = session.send_waiting()  # the first waiting message goes; the other waits
        assert second is not None and second.waiting is fruit and session.waiting == [animal]
        write(session, second)
        third = session.send_waiting()
        assert third is not None and third.waiting is animal and session.waiting == []
        write(session, third)
        assert session.send_waiting() is None

        saved = session.stored_messages()  # message, answer, message, answer: in order
        assert [(m.role, m.status) for m in saved] == [("user", "complete"),
                                                       ("assistant", "complete")] * 3
        assert [m.content for m in saved if m.role == "user"] == [
            "Name a color.", "Name a fruit.", "Name an animal."]
        assert animal.message_id == saved[4].id  # saved again after the answer before it
        assert [m["content"] for m in session.chat.messages] == [m.content for m in saved]
    finally:
        session.close()


def test_switching_conversations_is_refused_while_an_answer_is_written(
    model, tmp_path, notices
):
    session = make_session(model, tmp_path, notices)
    try:
        answer = session.send("What is a haiku?")
        conversation = session.conversation_id
        assert session.refusal("open another conversation") == (
            "An answer is being written; press Esc to stop it before you open another "
            "conversation.")
        with pytest.raises(NotNow, match="press Esc to stop it before you start a new"):
            session.check("start a new conversation")
        assert session.conversation_id == conversation
        ended, _ = write(session, answer)

        assert session.refusal("open another conversation") is None
        assert session.open(None) == [] and session.conversation_id is None
        assert session.chat is None and session.history() == []
        assert session.open(conversation)[1].content == ended.text
        assert session.last_conversation() == conversation
        assert session.history() == [{"role": "user", "content": "What is a haiku?"},
                                     {"role": "assistant", "content": ended.text}]

        session.switching = "org/name:*.gguf"  # a model picked in the app is loading
        assert session.refusal("compare methods") == (
            "Loading org/name:*.gguf; wait until it is ready to compare methods.")
        assert session.why_wait() == "switching"
    finally:
        session.close()


def test_regenerate_replaces_the_saved_answer(model, tmp_path, notices):
    session = make_session(model, tmp_path, notices, method="base")
    try:
        with pytest.raises(Refused, match="no message to answer again"):
            session.regenerate()
        write(session, session.send("Name a color."))
        replaced = session.stored_messages()[1].id
        ended, _ = write(session, session.regenerate())
        saved = session.stored_messages()
        assert [m.role for m in saved] == ["user", "assistant"] and saved[1].id != replaced
        assert saved[1].content == ended.text and saved[1].method == "base"
        assert len(session.chat.messages) == 2
    finally:
        session.close()


def test_a_regeneration_stopped_before_its_first_word_changes_nothing(model, tmp_path, notices):
    session = make_session(model, tmp_path, notices, method="base")
    try:
        first, _ = write(session, session.send("Name a color."))
        before = rows(session)
        answer = session.regenerate()
        assert len(rows(session)) == 3  # the new answer is saved beside the old one
        session.stop()  # Esc before a word
        ended, shown = write(session, answer)
        assert ended.kept_previous and shown == "" and ended.text == ""
        assert ended.sentence == ("Stopped before the new answer began; the previous answer "
                                  "is kept.")
        assert rows(session) == before == [("user", "Name a color.", "complete"),
                                           ("assistant", first.text, "complete")]
        assert session.chat.messages[-1]["content"] == first.text
        old = session.stored_messages()[1].id
        ended, _ = write(session, session.regenerate(), stop_after_text=True)
        assert not ended.kept_previous and ended.text.strip()  # stopped after a word: replaced
        assert rows(session)[:1] + [row[:2] for row in rows(session)[1:]] == [
            ("user", "Name a color.", "complete"), ("assistant", ended.text)]
        assert session.stored_messages()[1].id != old
    finally:
        session.close()


def test_a_regeneration_replaces_the_saved_answer_once_its_first_words_are_saved(
        model, tmp_path, notices):
    """The old answer was deleted only when the regeneration ended: an app killed while it
    wrote left both answers in the history, one after the other."""
    session = make_session(model, tmp_path, notices, method="base",
                           sampling={"max_tokens": 400})
    try:
        write(session, session.send("Write a long story about a dragon."))
        old = session.stored_messages()[1].id
        answer = session.regenerate()
        writer = threading.Thread(target=write, args=(session, answer))
        writer.start()
        deadline = time.monotonic() + 120
        while not session.store.messages(session.conversation_id)[-1].content:
            assert writer.is_alive() and time.monotonic() < deadline, "nothing was saved"
            time.sleep(0.02)
        saved = session.store.messages(session.conversation_id)  # as a kill would leave it
        assert [m.role for m in saved] == ["user", "assistant"] and old not in [
            m.id for m in saved]
        session.stop()
        writer.join(60)
        assert [m.role for m in session.stored_messages()] == ["user", "assistant"]
    finally:
        session.close()


def test_a_message_longer_than_the_context_is_refused_and_nothing_is_saved(
    model, tmp_path, notices
):
    session = make_session(model, tmp_path, notices)
    try:
        with pytest.raises(Refused) as refused:
            session.send("word " * (model.n_ctx + 100))
        assert str(model.n_ctx) in str(refused.value)
        assert not session.busy and session.conversation_id is None
        assert session.store.list_conversations() == []
    finally:
        session.close()


def test_a_comparison_decodes_every_method_and_stop_ends_it(model, tmp_path, notices):
    session = make_session(model, tmp_path, notices, sampling={"max_tokens": 6})
    try:
        write(session, session.send("Name a color."))
        multi = session.compare("Name a fruit.", ["base", "amulet"])
        assert session.comparison is multi and not session.busy
        assert session.chat is not None and not session.chat.holds_lanes  # freed for it
        compared = session.write_comparison(multi, 2, progress=lambda deltas, stats: None)
        assert compared.error is None and session.comparison is None
        assert [r.stats["method"] for r in compared.results] == ["base", "amulet"]
        assert all(r.text.strip() and r.stats["n_tokens"] <= 6 for r in compared.results)
        assert len(session.stored_messages()) == 2  # a comparison saves nothing by itself

        long = make_session(model, tmp_path / "long", notices, method="pref",
                            sampling={"max_tokens": 400})
        try:
            multi = long.compare("Write a long story about a dragon.", ["base", "pref"])
            shown: list[str] = []

            def progress(deltas: list[str], stats: list[dict]) -> None:
                shown.extend(deltas)
                if "".join(shown).strip():
                    assert long.stop() is True  # Esc on the compare screen

            stopped = long.write_comparison(multi, 2, progress=progress)
            reasons = [r.stats["stop_reason"] for r in stopped.results]
            assert "cancelled" in reasons  # (a track may have ended on its own first)
            assert all(r.stats["n_tokens"] < 400 for r in stopped.results)
            assert long.stop() is False  # nothing left to stop
        finally:
            long.close()
    finally:
        session.close()


def test_kept_comparison_answer_joins_the_conversation_and_the_store(model, tmp_path, notices):
    session = make_session(model, tmp_path, notices)
    try:
        user_id, answer_id = session.keep(
            "One tip for sleep?", "Keep a schedule.", method="amulet", preference="concise",
            stats={"method": "amulet", "avoid": None}, partial=False, changed_spans=[(0, 4)])
        saved = session.stored_messages()
        assert [m.id for m in saved] == [user_id, answer_id]
        assert saved[1].method == "amulet" and saved[1].preference == "concise"
        assert saved[1].changed_spans == [(0, 4)] and not saved[1].partial
        assert session.history() == [{"role": "user", "content": "One tip for sleep?"},
                                     {"role": "assistant", "content": "Keep a schedule."}]
    finally:
        session.close()


def test_quitting_leaves_the_answer_partial_and_the_waiting_message_goes_after_reopening(
    model, tmp_path, notices
):
    session = make_session(model, tmp_path, notices, sampling={"max_tokens": 200})
    first = session.send("Write a long story about a fox.")
    waiting = session.wait("Name a fruit.")

    def progress(delta: str, stats: dict) -> None:
        if delta.strip():
            session.quit()  # Ctrl+Q while the answer streams

    ended = session.write(first, progress=progress, notice=lambda text, severity: None)
    session.finish()
    conversation = session.conversation_id
    session.close()
    assert ended.partial and ended.stats["stop_reason"] == "app_closed"  # not "stopped"
    store = Store(tmp_path / "history.sqlite3")
    saved = store.messages(conversation)
    store.close()
    assert [(m.role, m.status) for m in saved] == [
        ("user", "complete"), ("assistant", "partial"), ("user", "complete")]
    assert saved[1].stats["stop_reason"] == "app_closed"

    reopened = make_session(model, tmp_path, notices)
    try:
        reopened.open(conversation)  # from the list: nothing starts by itself
        assert reopened.waiting == []
        reopened.open(conversation, resume=True)  # at start-up: the waiting message waits
        assert [(entry.text, entry.message_id) for entry in reopened.waiting] == [
            ("Name a fruit.", waiting.message_id)]
        assert [m["content"] for m in reopened.history()] == [
            "Write a long story about a fox.", ended.text]  # the waiting one is not in it yet
        answer = reopened.send_waiting()
        assert answer is not None and reopened.waiting == []
        write(reopened, answer)
        assert [(m.role, m.status) for m in reopened.stored_messages()] == [
            ("user", "complete"), ("assistant", "partial"), ("user", "complete"),
            ("assistant", "complete")]
    finally:
        reopened.close()
