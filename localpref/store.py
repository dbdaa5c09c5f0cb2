"""Conversation history, settings and named profiles in one SQLite file in the user data folder.

The folder is ``$LOCALPREF_HOME`` if set, else ``$XDG_DATA_HOME/localpref``, else
``~/.local/share/localpref``. The schema is versioned with ``PRAGMA user_version`` and upgraded
in place, one migration at a time, so an old history keeps working after an update.

The store never makes the app fail: a corrupt file is set aside and a new one started; a file
locked by another program, written by a newer localpref, or read-only (the file or its
folder) is copied into memory and used read-only, so this session's changes are not saved to
it. Either way ``notice`` holds one
sentence for the user. Every method is thread-safe: the chat worker saves a partial answer
while the interface reads.

This module never imports Textual (the command line exports conversations with it).
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from localpref.errors import LocalprefError
from localpref.file_lock import file_in_the_way
from localpref.paths import expanded

#: File name of the history database inside the data folder.
DATABASE_NAME = "history.sqlite3"

#: Message status: ``complete`` (the answer ended by itself) or ``partial`` (stopped, failed,
#: or still being written when the app was killed).
COMPLETE, PARTIAL = "complete", "partial"


def _text_read_whole(raw: bytes) -> str:
    """A TEXT value as a string, bytes that are not UTF-8 replaced (``text_factory``)."""
    return raw.decode("utf-8", errors="replace")


class StoreError(LocalprefError):
    """A history that cannot be read or written, explained in one sentence."""


def data_dir() -> Path:
    """The user data folder: ``$LOCALPREF_HOME``, ``$XDG_DATA_HOME/localpref`` or
    ``~/.local/share/localpref``."""
    home = os.environ.get("LOCALPREF_HOME")
    if home:
        return expanded(home)
    xdg = os.environ.get("XDG_DATA_HOME")
    base = expanded(xdg) if xdg else Path.home() / ".local" / "share"
    return base / "localpref"


def default_path() -> Path:
    """The history database in the user data folder."""
    return data_dir() / DATABASE_NAME


# -- schema ------------------------------------------------------------------------------------

#: Migration ``n`` brings a database from version ``n`` to ``n + 1``. Never edit a released
#: migration: add one. A fresh database runs them all, so every step is exercised. Ids are
#: AUTOINCREMENT so a deleted conversation's id (the one ``--export`` takes) is never reused.
MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (  # 0 -> 1: conversations and their messages
        """CREATE TABLE conversations (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            title TEXT NOT NULL,
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL)""",
        """CREATE TABLE messages (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            conversation_id INTEGER NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
            role TEXT NOT NULL,
            content TEXT NOT NULL,
            created_at TEXT NOT NULL)""",
        "CREATE INDEX messages_by_conversation ON messages(conversation_id, id)",
    ),
    (  # 1 -> 2: partial answers, what steered each answer, settings and profiles
        "ALTER TABLE messages ADD COLUMN status TEXT NOT NULL DEFAULT 'complete'",
        "ALTER TABLE messages ADD COLUMN method TEXT",
        "ALTER TABLE messages ADD COLUMN preference TEXT",
        "ALTER TABLE messages ADD COLUMN stats TEXT",
        "ALTER TABLE conversations ADD COLUMN model TEXT",
        "CREATE TABLE settings (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
        """CREATE TABLE profiles (
            name TEXT PRIMARY KEY,
            settings TEXT NOT NULL,
            updated_at TEXT NOT NULL)""",
    ),
    (  # 2 -> 3: what steering did to each answer (the trace's summary) and what it avoided
        "ALTER TABLE messages ADD COLUMN avoid TEXT",
        "ALTER TABLE messages ADD COLUMN changed_tokens INTEGER",
        "ALTER TABLE messages ADD COLUMN mean_shift REAL",
        "ALTER TABLE messages ADD COLUMN changed_spans TEXT",
    ),
)

#: The schema version this code writes.
SCHEMA_VERSION = len(MIGRATIONS)


@dataclass(frozen=True)
class Conversation:
    """One conversation's row (its messages are read separately)."""

    id: int
    title: str
    created_at: str
    updated_at: str
    model: str | None = None


@dataclass(frozen=True)
class StoredMessage:
    """One message as saved: ``status`` says whether an answer ended by itself."""

    id: int
    conversation_id: int
    role: str
    content: str
    created_at: str
    status: str = COMPLETE
    method: str | None = None
    preference: str | None = None
    stats: dict[str, Any] | None = None
    avoid: str | None = None
    changed_tokens: int | None = None
    """Tokens whose pick steering changed (``stats["changed_tokens"]``; None: not steered)."""
    mean_shift: float | None = None
    """Mean over the answer's tokens of log p_steered - log p_pref, in nats."""
    changed_spans: list[tuple[int, int]] | None = None
    """``(start, end)`` character offsets of the changed tokens in ``content``."""

    @property
    def partial(self) -> bool:
        return self.status == PARTIAL

    def as_chat_message(self) -> dict[str, str]:
        """The ``{"role", "content"}`` dict the library's ``Chat`` takes."""
        return {"role": self.role, "content": self.content}


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="microseconds")


def _is_locked(error: sqlite3.Error) -> bool:
    text = str(error).lower()
    return "locked" in text or "busy" in text


def _writable(path: Path) -> bool:
    """Whether this process may write the database file and make files beside it (SQLite's
    journal): a read-only file or folder is read, never taken for a damaged file."""
    return os.access(path, os.W_OK) and os.access(path.parent, os.W_OK)


class Store:
    """The history database, opened (and upgraded) when made; see the module docstring."""

    def __init__(self, path: str | Path | None = None, *, timeout: float = 5.0) -> None:
        self.path = Path(path) if path is not None else default_path()
        self.timeout = timeout
        #: True when changes are kept in memory only (the file is locked, newer or unusable).
        self.read_only = False
        #: One sentence for the user when the file could not be used as is, else None.
        self.notice: str | None = None
        #: Why nothing of the file could be read (the history shown is empty), else None.
        self.unread: str | None = None
        self._lock = threading.RLock()
        self._conn = self._open()

    # -- opening -------------------------------------------------------------------------------

    def _open(self) -> sqlite3.Connection:
        """The connection to use, falling back as the module docstring says."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            blocker = file_in_the_way(self.path.parent)
            return self._in_memory(
                f"The data folder {self.path.parent} cannot be made: {blocker} is a file, not "
                "a folder" if blocker is not None else
                f"The data folder {self.path.parent} cannot be made ({error.strerror})")
        if self.path.exists() and not _writable(self.path):
            return self._read_only_copy(
                f"The history database {self.path} cannot be written (the file or its folder "
                "is read-only); it is open read-only and this session's changes will not be "
                "saved.")
        try:
            return self._open_file()
        except sqlite3.Error as error:
            if _is_locked(error):
                return self._read_only_copy(
                    f"The history database {self.path} is locked by another program; it is "
                    "open read-only and this session's changes will not be saved."
                )
            if isinstance(error, sqlite3.OperationalError) and "unable to open" in str(error):
                return self._in_memory(f"The history database {self.path} cannot be opened")
            return self._start_over()
        except _NewerSchema as newer:
            return self._read_only_copy(
                f"The history database {self.path} was written by a newer localpref (schema "
                f"{newer.version}, this one knows {SCHEMA_VERSION}); it is open read-only."
            )

    def _connect(self, target: str, **kwargs: Any) -> sqlite3.Connection:
        conn = sqlite3.connect(target, timeout=self.timeout, isolation_level=None,
                               check_same_thread=False, **kwargs)
        conn.row_factory = sqlite3.Row
        # Text that is not UTF-8 (a hand edit, another tool) reads with U+FFFD in its place:
        # one such value failed the whole query, and the app could not open its history. A
        # damaged JSON value then reads as missing (``_loaded``), a message as its text.
        conn.text_factory = _text_read_whole
        conn.execute("PRAGMA foreign_keys = ON")
        return conn

    def _open_file(self) -> sqlite3.Connection:
        conn = self._connect(str(self.path))
        try:
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            conn.execute("SELECT count(*) FROM sqlite_master").fetchone()  # reads page 1
            if version > SCHEMA_VERSION:
                raise _NewerSchema(version)
            conn.execute("PRAGMA journal_mode = WAL")  # readers never wait for the writer
            conn.execute("BEGIN IMMEDIATE")  # fails now, not mid-chat, if another writer holds it
            conn.execute("ROLLBACK")
            _migrate(conn)
            if version and conn.execute("PRAGMA quick_check").fetchone()[0] != "ok":
                raise sqlite3.DatabaseError("database disk image is malformed")
        except BaseException:
            conn.close()
            raise
        return conn

    def _start_over(self) -> sqlite3.Connection:
        """Move an unreadable file aside (it is never deleted) and create a new database."""
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        kept = self.path.with_name(f"{self.path.name}.corrupt-{stamp}")
        try:
            self.path.replace(kept)
            for suffix in ("-wal", "-shm"):
                side = self.path.with_name(self.path.name + suffix)
                if side.exists():
                    side.replace(kept.with_name(kept.name + suffix))
            conn = self._open_file()
        except (OSError, sqlite3.Error, _NewerSchema):
            return self._in_memory(f"The history database {self.path} is unreadable and could "
                                   "not be replaced")
        self.notice = (f"The history database was unreadable; it was kept as {kept.name} and a "
                       "new one was started.")
        return conn

    def _read_only_copy(self, notice: str) -> sqlite3.Connection:
        """The file's content copied into memory: readable, and never written back."""
        memory = self._connect(":memory:")
        try:
            whole = self._copy_into(memory)
        except sqlite3.Error:
            memory.close()
            return self._in_memory(f"The history database {self.path} cannot be read (locked "
                                   "or damaged)")
        self.read_only = True
        self.notice = notice if whole else (
            f"{notice} What was written last, still in {self.path.name}-wal, cannot be read "
            "from this read-only folder, so the newest messages may be missing.")
        if memory.execute("PRAGMA user_version").fetchone()[0] <= SCHEMA_VERSION:
            _migrate(memory)
        return memory

    def _copy_into(self, memory: sqlite3.Connection) -> bool:
        """Copy the file into ``memory``, read-only; False when what its WAL file holds was
        left out. A database in WAL mode whose folder is read-only and holds no
        shared-memory file cannot make the one a reader needs: it is then read as an
        immutable file, which is what its last checkpoint holds."""
        try:
            source = self._connect(f"{self.path.absolute().as_uri()}?mode=ro", uri=True)
            try:
                source.backup(memory)
                return True
            finally:
                source.close()
        except sqlite3.Error:
            if _writable(self.path):
                raise
        source = self._connect(f"{self.path.absolute().as_uri()}?mode=ro&immutable=1", uri=True)
        try:
            source.backup(memory)
        finally:
            source.close()
        wal = self.path.with_name(self.path.name + "-wal")
        return not (wal.exists() and wal.stat().st_size > 0)

    def _in_memory(self, problem: str) -> sqlite3.Connection:
        """An empty history in memory, for a file that cannot be read at all (``problem``, a
        clause: why): the app goes on without saving, and ``unread`` says why there is
        nothing to list or export."""
        memory = self._connect(":memory:")
        _migrate(memory)
        self.read_only = True
        self.notice = f"{problem}; history is not saved this session."
        self.unread = f"{problem}, so there is no history to read."
        return memory

    # -- plumbing ------------------------------------------------------------------------------

    @property
    def schema_version(self) -> int:
        with self._lock:
            return int(self._conn.execute("PRAGMA user_version").fetchone()[0])

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction; SQLite errors become a ``StoreError`` sentence."""
        with self._lock:
            try:
                self._conn.execute("BEGIN IMMEDIATE")
                try:
                    yield self._conn
                except BaseException:
                    self._conn.execute("ROLLBACK")
                    raise
                self._conn.execute("COMMIT")
            except sqlite3.Error as error:
                raise StoreError(f"The history could not be saved ({error}).") from error

    def _query(self, sql: str, parameters: tuple[Any, ...] = ()) -> list[sqlite3.Row]:
        with self._lock:
            try:
                return self._conn.execute(sql, parameters).fetchall()
            except sqlite3.Error as error:
                raise StoreError(f"The history could not be read ({error}).") from error

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- conversations -------------------------------------------------------------------------

    def list_conversations(self) -> list[Conversation]:
        """Every conversation, the most recently active first."""
        rows = self._query("SELECT id, title, created_at, updated_at, model FROM conversations "
                           "ORDER BY updated_at DESC, id DESC")
        return [Conversation(**dict(row)) for row in rows]

    def get_conversation(self, conversation_id: int) -> Conversation:
        rows = (self._query("SELECT id, title, created_at, updated_at, model FROM conversations "
                            "WHERE id = ?", (conversation_id,))
                if -2**63 <= conversation_id < 2**63 else [])  # (SQLite's integers)
        if not rows:
            raise StoreError(f"There is no conversation {conversation_id} in {self.path}.")
        return Conversation(**dict(rows[0]))

    def has_conversation(self, conversation_id: int) -> bool:
        """Whether the conversation is (still) there: another window may delete it."""
        try:
            self.get_conversation(conversation_id)
        except StoreError:
            return False
        return True

    def create_conversation(self, title: str, model: str | None = None) -> int:
        now = _now()
        with self._transaction() as conn:
            cursor = conn.execute(
                "INSERT INTO conversations (title, created_at, updated_at, model) "
                "VALUES (?, ?, ?, ?)", (title, now, now, model))
            return int(cursor.lastrowid or 0)

    def rename_conversation(self, conversation_id: int, title: str) -> None:
        with self._transaction() as conn:
            conn.execute("UPDATE conversations SET title = ? WHERE id = ?",
                         (title, conversation_id))

    def delete_conversation(self, conversation_id: int) -> None:
        """Delete a conversation and its messages."""
        with self._transaction() as conn:
            conn.execute("DELETE FROM conversations WHERE id = ?", (conversation_id,))

    # -- messages ------------------------------------------------------------------------------

    def messages(self, conversation_id: int) -> list[StoredMessage]:
        """A conversation's messages in the order they were written."""
        rows = self._query(
            "SELECT id, conversation_id, role, content, created_at, status, method, preference, "
            "stats, avoid, changed_tokens, mean_shift, changed_spans FROM messages "
            "WHERE conversation_id = ? ORDER BY id", (conversation_id,))
        return [
            StoredMessage(**{
                **dict(row),
                "stats": _loaded(row["stats"], dict),
                "changed_spans": _spans(_loaded(row["changed_spans"], list)),
            })
            for row in rows
        ]

    def add_message(
        self,
        conversation_id: int,
        role: str,
        content: str,
        *,
        status: str = COMPLETE,
        method: str | None = None,
        preference: str | None = None,
        stats: dict[str, Any] | None = None,
        avoid: str | None = None,
        changed_spans: list[tuple[int, int]] | None = None,
    ) -> int:
        """Save a message now (a user's when sent; an answer as ``partial`` when it starts).

        ``changed_tokens`` and ``mean_shift`` are taken from ``stats`` when it has them."""
        now = _now()
        changed, shift = _steering_figures(stats)
        with self._transaction() as conn:
            cursor = conn.execute(
                "INSERT INTO messages (conversation_id, role, content, created_at, status, method, "
                "preference, stats, avoid, changed_tokens, mean_shift, changed_spans) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (conversation_id, role, content, now, status, method, preference,
                 _dump(stats), avoid, changed, shift, _dump(changed_spans)))
            conn.execute("UPDATE conversations SET updated_at = ? WHERE id = ?",
                         (now, conversation_id))
            return int(cursor.lastrowid or 0)

    def update_message(
        self,
        message_id: int,
        content: str,
        *,
        status: str,
        stats: dict[str, Any] | None = None,
        changed_spans: list[tuple[int, int]] | None = None,
        replacing: int | None = None,
    ) -> None:
        """Save an answer's progress (``partial``) or its end (``complete``), with what
        steering changed once it is known; ``replacing``: the message it replaces (a
        regeneration's old answer), deleted in the same transaction, so that no moment (a
        kill) leaves both or neither."""
        changed, shift = _steering_figures(stats)
        with self._transaction() as conn:
            conn.execute("UPDATE messages SET content = ?, status = ?, stats = coalesce(?, stats), "
                         "changed_tokens = coalesce(?, changed_tokens), "
                         "mean_shift = coalesce(?, mean_shift), "
                         "changed_spans = coalesce(?, changed_spans) WHERE id = ?",
                         (content, status, _dump(stats), changed, shift, _dump(changed_spans),
                          message_id))
            if replacing is not None:
                conn.execute("DELETE FROM messages WHERE id = ?", (replacing,))

    def delete_message(self, message_id: int) -> None:
        with self._transaction() as conn:
            conn.execute("DELETE FROM messages WHERE id = ?", (message_id,))

    # -- settings and profiles -----------------------------------------------------------------

    def get_setting(self, key: str, default: Any = None) -> Any:
        """A JSON value saved with ``set_setting``, or ``default``."""
        rows = self._query("SELECT value FROM settings WHERE key = ?", (key,))
        if not rows:
            return default
        value = _loaded(rows[0]["value"], object, damaged=_DAMAGED)
        return default if value is _DAMAGED else value

    def set_setting(self, key: str, value: Any) -> None:
        with self._transaction() as conn:
            conn.execute("INSERT INTO settings (key, value) VALUES (?, ?) ON CONFLICT(key) "
                         "DO UPDATE SET value = excluded.value",
                         (key, json.dumps(value, default=str)))

    def list_profiles(self) -> dict[str, dict[str, Any]]:
        """Named steering profiles ("my writing style"), by name; None for one whose saved
        settings cannot be read (damaged outside localpref), so that it can still be seen,
        replaced and deleted."""
        rows = self._query("SELECT name, settings FROM profiles ORDER BY name COLLATE NOCASE")
        return {row["name"]: _loaded(row["settings"], dict) for row in rows}

    def save_profile(self, name: str, settings: dict[str, Any]) -> None:
        if not name.strip():
            raise StoreError("A profile needs a name.")
        with self._transaction() as conn:
            conn.execute(
                "INSERT INTO profiles (name, settings, updated_at) VALUES (?, ?, ?) "
                "ON CONFLICT(name) DO UPDATE SET settings = excluded.settings, "
                "updated_at = excluded.updated_at", (name.strip(), _dump(settings), _now()))

    def delete_profile(self, name: str) -> None:
        with self._transaction() as conn:
            conn.execute("DELETE FROM profiles WHERE name = ?", (name,))

    # -- export --------------------------------------------------------------------------------

    def export_markdown(self, conversation_id: int) -> str:
        """A conversation as a Markdown document."""
        return conversation_markdown(self.get_conversation(conversation_id),
                                     self.messages(conversation_id))


def conversation_markdown(conversation: Conversation, messages: list[StoredMessage]) -> str:
    """A conversation as Markdown: a title, then one section per message."""
    lines = [f"# {conversation.title}", ""]
    started = conversation.created_at[:16].replace("T", " ")
    facts = [f"conversation {conversation.id}", f"started {started} UTC"]
    if conversation.model:
        facts.append(f"model {conversation.model}")
    lines += [f"*{', '.join(facts)}*", ""]
    for message in messages:
        if message.role == "user":
            heading = "You"
        else:
            avoid = f"avoid {message.avoid}" if message.avoid else None
            # an answer of a model the conversation was switched to read as the first one's
            model = (message.stats or {}).get("model")
            other_model = model if isinstance(model, str) and model != conversation.model else None
            steering = " · ".join(part for part in (other_model, message.method,
                                                    message.preference, avoid) if part)
            heading = message.role.capitalize() + (f" ({steering})" if steering else "")
        lines += [f"## {heading}", "", message.content.rstrip() or "*(empty)*", ""]
        if message.partial:
            lines += [f"*({_how_it_ended(message.stats)})*", ""]
        elif (stats := message.stats or {}).get("stop_reason") == "length":  # as the app says
            lines += ["*(cut at the context window: the conversation filled it)*"
                      if stats.get("length_limit") == "window" else
                      "*(cut at max tokens: the answer reached its length limit)*", ""]
    return "\n".join(lines).rstrip() + "\n"


def _how_it_ended(stats: dict[str, Any] | None) -> str:
    """Why a partial answer is partial, as the app's header says it (docs/app.md)."""
    reason = (stats or {}).get("stop_reason")
    if reason == "cancelled":
        return "stopped: the answer was stopped before the end"
    if reason == "error":
        return "failed: the answer stopped with an error before the end"
    if reason == "app_closed":
        return "partial: the app was closed while this answer was being written"
    return ("partial: still being written when this was exported, or the app stopped while "
            "it was")


class _NewerSchema(Exception):
    def __init__(self, version: int) -> None:
        super().__init__(version)
        self.version = version


def _migrate(conn: sqlite3.Connection) -> None:
    """Run the migrations the database lacks, each in its own transaction."""
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    for target in range(version + 1, SCHEMA_VERSION + 1):
        conn.execute("BEGIN IMMEDIATE")
        try:
            for statement in MIGRATIONS[target - 1]:
                conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {target}")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")


def _steering_figures(stats: dict[str, Any] | None) -> tuple[int | None, float | None]:
    """``changed_tokens`` and ``mean_shift`` of an answer's stats (None where absent)."""
    if not stats:
        return None, None
    changed, shift = stats.get("changed_tokens"), stats.get("mean_shift")
    return (None if changed is None else int(changed),
            None if shift is None else float(shift))


#: What ``_loaded`` gives for a damaged setting (a saved null is a value).
_DAMAGED = object()


def _loaded(text: str | None, kind: type, damaged: Any = None) -> Any:
    """A value saved with ``_dump``: None where there is none, ``damaged`` where it is not
    JSON of that kind. One damaged value (an edit outside localpref) never stops the history
    from opening, where ``json.loads`` raised through every screen that read it."""
    try:
        value = json.loads(text) if text else None
    except ValueError:
        return damaged
    return value if value is None or isinstance(value, kind) else damaged


def _spans(value: list[Any] | None) -> list[tuple[int, int]] | None:
    """Saved ``changed_spans`` as pairs; None where they are not pairs of numbers."""
    if value is None or not all(
            isinstance(span, list) and len(span) == 2
            and all(isinstance(end, int) for end in span) for span in value):
        return None
    return [(start, end) for start, end in value]


def _dump(value: Any) -> str | None:
    return None if value is None else json.dumps(value, default=str)
