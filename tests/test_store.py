"""The history database: schema versions and upgrades, and bad files that never lose history."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
import threading

import pytest

from localpref import store as store_module
from localpref.store import MIGRATIONS, PARTIAL, SCHEMA_VERSION, Store, StoreError


@pytest.fixture
def path(tmp_path):
    return tmp_path / "history.sqlite3"


def test_data_dir_follows_localpref_home_then_xdg(monkeypatch, tmp_path):
    monkeypatch.setenv("LOCALPREF_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert store_module.data_dir() == tmp_path / "home"
    monkeypatch.delenv("LOCALPREF_HOME")
    assert store_module.data_dir() == tmp_path / "xdg" / "localpref"
    monkeypatch.delenv("XDG_DATA_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "user"))
    assert store_module.data_dir() == tmp_path / "user" / ".local" / "share" / "localpref"
    assert store_module.default_path().name == "history.sqlite3"


def test_new_database_has_the_current_schema_version(path):
    with Store(path) as store:
        assert store.schema_version == SCHEMA_VERSION == 3
        assert store.notice is None and not store.read_only
    assert sqlite3.connect(path).execute("PRAGMA user_version").fetchone()[0] == 3


def test_conversation_round_trip_keeps_order_status_and_stats(path):
    with Store(path) as store:
        first = store.create_conversation("basil", model="smol")
        second = store.create_conversation("other")
        store.add_message(first, "user", "How do I keep basil alive?")
        answer = store.add_message(first, "assistant", "", status=PARTIAL, method="amulet",
                                   preference="concise")
        store.update_message(answer, "Water it.", status=PARTIAL)
        store.update_message(answer, "Water it often.", status="complete",
                             stats={"tokens_per_s": 60.5, "lanes": ("pref", "base")})
        store.rename_conversation(second, "renamed")
    with Store(path) as store:
        conversations = store.list_conversations()
        assert [c.id for c in conversations] == [first, second]  # most recently active first
        assert conversations[1].title == "renamed"
        messages = store.messages(first)
        assert [m.role for m in messages] == ["user", "assistant"]
        assert messages[1].content == "Water it often."
        assert messages[1].status == "complete" and not messages[1].partial
        assert messages[1].stats == {"tokens_per_s": 60.5, "lanes": ["pref", "base"]}
        assert messages[1].method == "amulet" and messages[1].preference == "concise"
        store.delete_conversation(first)
        assert [c.id for c in store.list_conversations()] == [second]
        assert store.messages(first) == []
        with pytest.raises(StoreError, match="no conversation"):
            store.get_conversation(first)


def test_settings_and_profiles_are_json_round_trips(path):
    with Store(path) as store:
        assert store.get_setting("steering", {"x": 1}) == {"x": 1}
        store.set_setting("steering", {"method": "pad", "presets": ["concise"]})
        store.set_setting("steering", {"method": "amulet"})
        store.save_profile("my writing style", {"method": "pad", "sampling": {"top_p": 0.9}})
        store.save_profile("b", {"method": "base"})
        with pytest.raises(StoreError):
            store.save_profile("  ", {})
    with Store(path) as store:
        assert store.get_setting("steering") == {"method": "amulet"}
        assert list(store.list_profiles()) == ["b", "my writing style"]
        store.delete_profile("b")
        assert store.list_profiles() == {
            "my writing style": {"method": "pad", "sampling": {"top_p": 0.9}}}


def test_a_value_damaged_outside_localpref_reads_as_missing_and_loses_nothing_else(path):
    """A row edited by hand (or by another tool) held text that is not JSON: reading it
    raised ``JSONDecodeError`` through every screen, and one damaged profile kept the app
    from starting."""
    with Store(path) as store:
        conversation = store.create_conversation("kept")
        store.add_message(conversation, "user", "hello")
        store.add_message(conversation, "assistant", "hi there", stats={"n_tokens": 2},
                          changed_spans=[(0, 2)])
        store.save_profile("good", {"method": "pad"})
        store.set_setting("steering", {"method": "amulet"})
    with sqlite3.connect(path) as conn:
        conn.execute("INSERT INTO profiles (name, settings, updated_at) VALUES "
                     "('damaged', '{oops', '0'), ('a list', '[1]', '0')")
        conn.execute("UPDATE settings SET value = 'x{' WHERE key = 'steering'")
        conn.execute("UPDATE messages SET stats = '{', changed_spans = '[[1]]' "
                     "WHERE role = 'assistant'")
    with Store(path) as store:
        assert store.list_profiles() == {"a list": None, "damaged": None,
                                         "good": {"method": "pad"}}
        assert store.get_setting("steering", {"method": "base"}) == {"method": "base"}
        store.set_setting("nothing", None)  # a saved null is a value, not the default
        assert store.get_setting("nothing", "default") is None
        messages = store.messages(conversation)
        assert [m.content for m in messages] == ["hello", "hi there"]
        assert messages[1].stats is None and messages[1].changed_spans is None
        store.save_profile("damaged", {"method": "base"})  # replaced, as any profile is
        store.delete_profile("a list")
        assert store.list_profiles() == {"damaged": {"method": "base"}, "good": {"method": "pad"}}


def test_version_1_database_is_upgraded_in_place_and_keeps_its_history(path):
    conn = sqlite3.connect(path)
    conn.executescript("""
        CREATE TABLE conversations (id INTEGER PRIMARY KEY, title TEXT NOT NULL,
            created_at TEXT NOT NULL, updated_at TEXT NOT NULL);
        CREATE TABLE messages (id INTEGER PRIMARY KEY, conversation_id INTEGER NOT NULL
            REFERENCES conversations(id) ON DELETE CASCADE, role TEXT NOT NULL,
            content TEXT NOT NULL, created_at TEXT NOT NULL);
        CREATE INDEX messages_by_conversation ON messages(conversation_id, id);
        INSERT INTO conversations VALUES (7, 'old chat', '2024-01-01', '2024-01-01');
        INSERT INTO messages VALUES (1, 7, 'user', 'hello', '2024-01-01');
        INSERT INTO messages VALUES (2, 7, 'assistant', 'hi there', '2024-01-01');
        PRAGMA user_version = 1;
    """)
    conn.close()
    with Store(path) as store:
        assert store.schema_version == SCHEMA_VERSION
        assert store.notice is None
        assert store.get_conversation(7).title == "old chat"
        messages = store.messages(7)
        assert [(m.role, m.content, m.status) for m in messages] == [
            ("user", "hello", "complete"), ("assistant", "hi there", "complete")]
        store.save_profile("works", {"method": "pref"})  # a table the upgrade created
        assert "## Assistant" in store.export_markdown(7)


def test_corrupt_file_is_kept_aside_and_a_new_database_started_with_a_notice(path):
    path.write_bytes(b"this is not a database, " * 200)
    with Store(path) as store:
        assert not store.read_only
        assert store.notice is not None and "unreadable" in store.notice
        assert store.list_conversations() == []
        conversation = store.create_conversation("fresh")
    kept = list(path.parent.glob("history.sqlite3.corrupt-*"))
    assert len(kept) == 1 and kept[0].read_bytes().startswith(b"this is not a database")
    with Store(path) as store:
        assert store.notice is None
        assert store.get_conversation(conversation).title == "fresh"


def test_locked_database_opens_read_only_with_its_history_and_a_notice(path):
    with Store(path) as store:
        conversation = store.create_conversation("kept")
        store.add_message(conversation, "user", "still here")
    blocker = sqlite3.connect(path, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")  # another program is writing
    try:
        store = Store(path, timeout=0.1)
        assert store.read_only
        assert store.notice is not None and "locked" in store.notice
        assert [m.content for m in store.messages(conversation)] == ["still here"]
        store.add_message(conversation, "user", "only in memory")  # works, not written back
        store.close()
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    with Store(path) as store:
        assert not store.read_only
        assert [m.content for m in store.messages(conversation)] == ["still here"]


def test_newer_schema_is_opened_read_only(path):
    with Store(path):
        pass
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA user_version = 99")
    conn.close()
    with Store(path) as store:
        assert store.read_only and "newer" in (store.notice or "")
    assert sqlite3.connect(path).execute("PRAGMA user_version").fetchone()[0] == 99


def test_worker_thread_can_save_while_the_interface_reads(path):
    with Store(path) as store:
        conversation = store.create_conversation("threads")
        answer = store.add_message(conversation, "assistant", "", status=PARTIAL)

        def write() -> None:
            for i in range(50):
                store.update_message(answer, "x" * i, status=PARTIAL)

        thread = threading.Thread(target=write)
        thread.start()
        for _ in range(50):
            store.messages(conversation)
        thread.join()
        assert store.messages(conversation)[0].content == "x" * 49


def test_export_markdown_marks_partial_answers_and_steering(path):
    with Store(path) as store:
        conversation = store.create_conversation("Basil", model="SmolLM2")
        store.add_message(conversation, "user", "How do I keep basil alive?")
        store.add_message(conversation, "assistant", "Water it", status=PARTIAL,
                          method="amulet", preference="concise")
        for reason in ("cancelled", "error", "app_closed"):  # the app's header tells them apart
            store.add_message(conversation, "assistant", f"Ended: {reason}", status=PARTIAL,
                              stats={"stop_reason": reason})
        # after a switch of model the answers read as the first model's
        store.add_message(conversation, "assistant", "Sun.", method="pref",
                          stats={"model": "gemma-3-270m"})
        store.add_message(conversation, "assistant", "Shade.", stats={"model": "SmolLM2"})
        store.add_message(conversation, "assistant", "One, two", stats={"stop_reason": "length"})
        store.add_message(conversation, "assistant", "Three", stats={
            "stop_reason": "length", "length_limit": "window"})  # the window left no more
        store.add_message(conversation, "assistant", "Done.", stats={"stop_reason": "eos"})
        text = store.export_markdown(conversation)
    assert "## Assistant (gemma-3-270m · pref)\n\nSun." in text
    assert "## Assistant\n\nShade." in text  # the conversation's own model: said once above
    assert text.startswith("# Basil\n")
    assert "## You\n\nHow do I keep basil alive?" in text
    endings = [line for line in text.splitlines() if line.startswith("*(")]
    assert "## Assistant (amulet · concise)\n\nWater it\n\n*(partial: still being" in text
    assert endings == [  # (no stop reason yet: being written, or the app was killed)
        "*(partial: still being written when this was exported, or the app stopped while it "
        "was)*",
        "*(stopped: the answer was stopped before the end)*",
        "*(failed: the answer stopped with an error before the end)*",
        "*(partial: the app was closed while this answer was being written)*",
        "*(cut at max tokens: the answer reached its length limit)*",  # the app's header too
        "*(cut at the context window: the conversation filled it)*"]
    assert "One, two\n\n*(cut at max tokens" in text and text.endswith("Done.\n")


def test_answers_keep_what_steering_changed_and_what_they_avoided(path):
    with Store(path) as store:
        conversation = store.create_conversation("Basil")
        answer = store.add_message(conversation, "assistant", "", status=PARTIAL,
                                   method="amulet", preference="concise", avoid="verbose")
        store.update_message(answer, "Water it", status=PARTIAL)  # no figures yet
        store.update_message(answer, "Water it often.", status="complete",
                             stats={"n_tokens": 5, "changed_tokens": 2, "mean_shift": 0.81},
                             changed_spans=[(5, 8), (8, 14)])
        plain = store.add_message(conversation, "assistant", "Hi", method="pref",
                                  stats={"n_tokens": 1})
        text = store.export_markdown(conversation)
    with Store(path) as store:
        steered, unsteered = store.messages(conversation)
    assert (steered.changed_tokens, steered.mean_shift) == (2, 0.81)
    assert steered.changed_spans == [(5, 8), (8, 14)] and steered.avoid == "verbose"
    assert steered.id == answer and unsteered.id == plain
    assert (unsteered.changed_tokens, unsteered.mean_shift, unsteered.changed_spans) == (
        None, None, None)
    assert "## Assistant (amulet · concise · avoid verbose)" in text


def test_version_2_database_gains_the_steering_columns(path):
    conn = sqlite3.connect(path)
    for statement in (s for migration in MIGRATIONS[:2] for s in migration):
        conn.execute(statement)
    conn.execute("INSERT INTO conversations (id, title, created_at, updated_at) "
                 "VALUES (3, 'before', 'x', 'x')")
    conn.execute("INSERT INTO messages (conversation_id, role, content, created_at, method) "
                 "VALUES (3, 'assistant', 'old answer', 'x', 'amulet')")
    conn.execute("PRAGMA user_version = 2")
    conn.commit()
    conn.close()
    with Store(path) as store:
        assert store.schema_version == 3
        (message,) = store.messages(3)
    assert message.content == "old answer" and message.changed_tokens is None


def test_store_and_chat_command_do_not_load_textual():
    code = ("import sys, localpref, localpref.store, localpref.commands.chat, localpref.cli; "
            "localpref.cli.build_parser(); assert 'textual' not in sys.modules, 'textual loaded'")
    subprocess.run([sys.executable, "-c", code], check=True)


AS_A_USER = (["setpriv", "--bounding-set", "-dac_override,-dac_read_search"]
             if os.geteuid() == 0 else [])

_OPENED_AS_A_USER = """
import json, sys
from localpref.store import Store, StoreError
store = Store(sys.argv[1])
try:
    store.create_conversation("new")
    saved = None
except StoreError as error:
    saved = str(error)
print(json.dumps({"read_only": store.read_only, "notice": store.notice, "saved": saved,
                  "titles": [c.title for c in store.list_conversations()]}))
"""


@pytest.mark.skipif(bool(AS_A_USER) and shutil.which("setpriv") is None,
                    reason="root without setpriv writes every file")
@pytest.mark.parametrize("read_only", ["folder", "file", "folder, no WAL files"])
def test_a_history_that_cannot_be_written_is_shown_read_only_never_called_damaged(
        tmp_path, read_only: str) -> None:
    """A read-only data folder was taken for a damaged file ("unreadable and could not be
    replaced": an empty history), and a read-only file was opened as writable, each save then
    SQLite's sentence: both are read into memory, the history shown, said once (docs/app.md,
    "History, settings and profiles"). Run in a process that writes as a user does."""
    folder = tmp_path / "data"
    folder.mkdir()
    path = folder / "history.sqlite3"
    kept = Store(path)
    kept.create_conversation("Keep me")
    if read_only == "folder, no WAL files":
        kept.close()  # (the last connection closed checkpoints and removes them)
    locked = folder if read_only.startswith("folder") else path
    locked.chmod(0o555 if locked == folder else 0o444)
    try:
        run = subprocess.run([*AS_A_USER, sys.executable, "-c", _OPENED_AS_A_USER, str(path)],
                             capture_output=True, text=True, timeout=120)
    finally:
        locked.chmod(0o755 if locked == folder else 0o644)
        kept.close()
    assert run.returncode == 0, run.stderr
    opened = json.loads(run.stdout)
    assert opened == {
        "read_only": True, "saved": None, "titles": ["new", "Keep me"],
        "notice": f"The history database {path} cannot be written (the file or its folder is "
                  "read-only); it is open read-only and this session's changes will not be "
                  "saved."}
    assert [c.title for c in Store(path).list_conversations()] == ["Keep me"]  # nothing lost


@pytest.mark.skipif(bool(AS_A_USER) and shutil.which("setpriv") is None,
                    reason="root without setpriv writes every file")
def test_a_read_only_folder_whose_wal_cannot_be_read_says_the_newest_may_be_missing(
        tmp_path) -> None:
    """A WAL file left without its shared-memory file (a process killed) in a folder that
    is now read-only: only what the last checkpoint holds can be read, which is said."""
    folder = tmp_path / "data"
    folder.mkdir()
    path = folder / "history.sqlite3"
    killed = subprocess.run([sys.executable, "-c", f"""
import os, sqlite3
from localpref.store import Store
store = Store({str(path)!r})
store.create_conversation("Checkpointed")
sqlite3.connect({str(path)!r}).execute("PRAGMA wal_checkpoint(TRUNCATE)")
store.create_conversation("Only in WAL")
os._exit(0)
"""], capture_output=True, text=True, timeout=120)
    assert killed.returncode == 0, killed.stderr
    path.with_name(path.name + "-shm").unlink()
    folder.chmod(0o555)
    try:
        run = subprocess.run([*AS_A_USER, sys.executable, "-c", _OPENED_AS_A_USER, str(path)],
                             capture_output=True, text=True, timeout=120)
    finally:
        folder.chmod(0o755)
    assert run.returncode == 0, run.stderr
    opened = json.loads(run.stdout)
    assert opened["titles"] == ["new", "Checkpointed"] and opened["read_only"]
    assert opened["notice"].endswith(
        "What was written last, still in history.sqlite3-wal, cannot be read from this "
        "read-only folder, so the newest messages may be missing.")
    assert [c.title for c in Store(path).list_conversations()] == ["Only in WAL", "Checkpointed"]
