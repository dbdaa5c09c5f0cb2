"""The chat session: the app's state without its widgets (plain Python, no Textual).

One ``ChatSession`` holds the model, the history store, the steering of the next answer, the
open conversation and its library ``Chat``, the messages waiting for the model, and whether an
answer is being written or another model is being loaded. Every store write the app makes goes
through it. The app and its screens call it and show what it returns; it never touches a
widget, so it is tested headless (``tests/test_tui_session.py``) on the real model.

An answer has three steps, each on the thread that may run it: ``send`` (or ``send_waiting``,
``regenerate``) saves the message and an empty partial answer and returns an ``Answer`` (the
app's thread); ``write`` streams it, saving the text as it grows (a worker thread); ``finish``
ends it (the app's thread). A comparison (the compare screen's) is ``compare`` and
``write_comparison``. ``stop`` is the one way to cancel either (Esc, leaving the comparison,
quitting).

A message sent while the model is not free waits: ``wait`` saves it at once and queues it;
``send_waiting`` sends the first waiting message once the model is free (first sent, first
answered), and the history keeps each answer right after its message.
"""

from __future__ import annotations

import inspect
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import localpref
from localpref import LocalprefError, Result
from localpref.decoding import MultiGeneration
from localpref.store import COMPLETE, PARTIAL, Store, StoredMessage, StoreError
from tui.highlight import changed_spans
from tui.steering import Steering
from tui.streaming import EngineUsers, pump
from tui.text import shortened

__all__ = ["Answer", "ChatSession", "Compared", "Ended", "NotNow", "Refused", "WaitingMessage",
           "title_from"]

#: ``notice(text, severity)``: how the session tells the user something (a store write that
#: failed). On the app's thread the app's ``notify``; ``write`` takes its own for its thread.
Notify = Callable[[str, str], None]


class NotNow(LocalprefError):
    """The session cannot do that now: an answer is being written, a message waits, another
    model is loading, or no model is loaded yet (one sentence that says which)."""


def title_from(text: str, limit: int = 48) -> str:
    """A conversation title from its first message: the first line, shortened."""
    line = next((line.strip() for line in text.splitlines() if line.strip()), "New chat")
    line = " ".join(line.split())
    return shortened(line, limit)


#: Said when the open conversation was deleted in another window of the app (the store is
#: one file): the deletion stands, and what this window writes from then on (a message, the
#: answer being written) is saved in a new conversation.
DELETED_ELSEWHERE = ("This conversation was deleted in another window; what is written from "
                     "now on is saved as a new conversation.")

#: The stop reason of an answer cut off because the app quit (shown as *partial*, not as
#: *stopped*: the user did not stop it).
APP_CLOSED = "app_closed"


@dataclass(eq=False)
class WaitingMessage:
    """A message sent while the model loads or an answer is written: saved at once, it goes to
    the model as soon as the model is free (first sent, first answered). Compared by identity,
    so a front end can key its view of the message on it."""

    text: str
    conversation: int | None
    message_id: int | None


def unanswered(stored: list[StoredMessage], conversation: int | None) -> list[WaitingMessage]:
    """The user messages after a conversation's last answer, as waiting messages: an answer
    (even an empty partial one) is saved as soon as its message goes, so these were still
    waiting when the app closed."""
    trailing: list[StoredMessage] = []
    for message in reversed(stored):
        if message.role != "user":
            break
        trailing.append(message)
    return [WaitingMessage(m.content, conversation, m.id) for m in reversed(trailing)]


@dataclass(eq=False)
class Answer:
    """An answer being written: its generation and where it is saved."""

    generation: localpref.Generation
    conversation: int | None
    #: The saved (partial, then complete) answer; None if the store refused it.
    message_id: int | None
    method: str
    preference: str | None
    avoid: str | None
    #: The user message saved by ``send`` (None for a waiting message or a regeneration).
    user_message_id: int | None = None
    #: The waiting message this answers (``send_waiting``), else None.
    waiting: WaitingMessage | None = None
    #: The saved answer a regeneration replaces once it has written something (stopped before
    #: its first word, the regeneration is dropped and this answer stays), else None.
    replaces: int | None = None


@dataclass
class Ended:
    """How an answer ended (finished, stopped, or failed with ``error``); it is saved."""

    text: str
    partial: bool
    stats: dict[str, Any]
    error: str | None = None
    #: Character spans of the tokens steering changed (None without a trace).
    changed_spans: list[tuple[int, int]] | None = None
    #: A regeneration that ended before its first word: nothing was saved, and the answer it
    #: was to replace is still the conversation's.
    kept_previous: bool = False

    @property
    def sentence(self) -> str | None:
        """What to tell the user about the end, if anything (a failure or a stop)."""
        if self.kept_previous:
            reason = f": {self.error}" if self.error else ""
            return f"Stopped before the new answer began{reason}; the previous answer is kept."
        if self.error:
            return f"The answer stopped: {self.error}"
        if self.stats.get("stop_reason") == "cancelled":
            if not self.text:
                return "Stopped before the answer's first word."
            return "Stopped; the partial answer is kept."
        return None


@dataclass
class Compared:
    """How a comparison ended: one result per method (the text each wrote, kept when it was
    stopped), and the failure's sentence if it failed."""

    results: list[Result]
    error: str | None = None


class Refused(LocalprefError):
    """The library refused a message (invalid settings, too long for the context, a template
    that fails, nothing to answer again): its sentence, the ``error`` itself, and the waiting
    message it was (which then left the conversation and the store), if it was one."""

    def __init__(self, error: LocalprefError, entry: WaitingMessage | None = None) -> None:
        super().__init__(str(error))
        self.error = error
        self.entry = entry


class ChatSession:
    """The app's state and its store writes; see the module docstring.

    Run every method on one thread (the app's), except ``write`` (a worker's) and ``stop``
    (any thread).
    """

    def __init__(self, store: Store, steering: Steering | None = None,
                 model: localpref.Model | None = None, *,
                 notify: Notify = lambda text, severity: None) -> None:
        """``model``: an already loaded model, which the session never closes (one it loads,
        ``use_model``, it does); ``notify(text, severity)``: how it tells the user that a
        store write failed."""
        self.store = store
        self.steering = steering if steering is not None else Steering()
        self.model = model
        #: Whether the session closes ``model`` (it loaded it) or the caller does.
        self.owns_model = False
        self.notify = notify
        self.conversation_id: int | None = None
        #: The open conversation's library chat (made from the saved messages when needed).
        self.chat: localpref.Chat | None = None
        #: What the session is switching to (a model picked), None when no switch is under way.
        self.switching: str | None = None
        #: True once the app is quitting: no waiting message starts an answer then.
        self.closing = False
        #: Messages sent while the model was not free, oldest first.
        self.waiting: list[WaitingMessage] = []
        #: The answer being written, if any.
        self.answer: Answer | None = None
        #: The comparison being written (the compare screen's), if any.
        self.comparison: MultiGeneration | None = None
        #: The worker threads using the model (closing it waits until none does).
        self.users = EngineUsers()
        self._cancel = threading.Event()  # the pump's; ``stop`` sets it

    # -- state ---------------------------------------------------------------------------------

    @property
    def busy(self) -> bool:
        """True from ``send`` until ``finish``: an answer is being written."""
        return self.answer is not None

    def refusal(self, doing: str) -> str | None:
        """Why the user cannot ``doing`` now (one sentence), or None: not while another model
        loads, an answer is being written or a message waits."""
        if self.switching is not None:
            return f"Loading {self.switching}; wait until it is ready to {doing}."
        if self.busy:
            return f"An answer is being written; press Esc to stop it before you {doing}."
        if self.waiting:
            return f"A message is waiting to be sent; wait until it is answered to {doing}."
        return None

    def check(self, doing: str, *, needs_model: bool = False) -> None:
        """Raise ``NotNow`` with the sentence of ``refusal`` (or, with ``needs_model``, while
        the model loads)."""
        if needs_model and self.model is None:
            raise NotNow("The model is still loading.")
        reason = self.refusal(doing)
        if reason is not None:
            raise NotNow(reason)

    def why_wait(self) -> str | None:
        """Why a message sent now has to wait: ``loading``, ``switching``, ``answering``
        (an answer is written, or earlier messages wait), or None: it can go at once."""
        if self.model is None:
            return "loading"
        if self.switching is not None:
            return "switching"
        if self.busy or self.waiting:  # first sent, first answered
            return "answering"
        return None

    def stored_messages(self) -> list[StoredMessage]:
        """The open conversation's saved messages ([] for a new one)."""
        if self.conversation_id is None:
            return []
        return self.store.messages(self.conversation_id)

    def history(self) -> list[dict[str, str]]:
        """The conversation the model has answered so far (waiting messages are not in it
        yet: each joins when it is sent)."""
        if self.chat is not None:
            return list(self.chat.messages)
        waiting = {entry.message_id for entry in self.waiting}
        return [m.as_chat_message() for m in self.stored_messages() if m.id not in waiting]

    def context_used(self) -> int:
        """Tokens the conversation so far takes in the model's context (0 without a model)."""
        history = self.history()
        return self.model.count_tokens(history) if self.model is not None and history else 0

    # -- store writes --------------------------------------------------------------------------

    def save_setting(self, key: str, value: Any) -> None:
        try:
            self.store.set_setting(key, value)
        except StoreError as error:
            self.notify(str(error), "error")

    def apply(self, steering: Steering) -> None:
        """Use ``steering`` for the next answers, and save it for the next session."""
        self.steering = steering
        self.save_setting("steering", steering.to_dict())

    def _store_message(self, conversation: int | None, role: str, text: str,
                       **fields: Any) -> int | None:
        if conversation is None:
            return None
        try:
            return self.store.add_message(conversation, role, text, **fields)
        except StoreError as error:
            self.notify(str(error), "error")
            return None

    def _delete_message(self, message_id: int | None, notice: Notify | None = None) -> None:
        """Delete a saved message; a failure is told through ``notice`` (a worker's), else
        the session's ``notify``."""
        if message_id is None:
            return
        try:
            self.store.delete_message(message_id)
        except StoreError as error:
            (notice or self.notify)(str(error), "error")

    def ensure_conversation(self, first_text: str) -> int | None:
        """The open conversation's id, saving a new one (titled from ``first_text``) if it is
        not saved yet, or if another window deleted it (None if the store refused)."""
        self._notice_deletion()
        return self._saved(title_from(first_text))

    def _gone(self, conversation: int | None = None) -> bool:
        """Whether ``conversation`` (the open one by default) was saved and is no longer in
        the store: another window deleted it."""
        conversation = self.conversation_id if conversation is None else conversation
        return conversation is not None and not self.store.has_conversation(conversation)

    def _notice_deletion(self, notice: Notify | None = None, *, drop_chat: bool = False) -> None:
        """When another window deleted the open conversation: the next write starts a new
        one, and the user is told once; with ``drop_chat`` (nothing being written) the
        model no longer reads the deleted messages either."""
        if not self._gone():
            return
        self.conversation_id = None
        if drop_chat:
            self.close_chat()
        (notice or self.notify)(DELETED_ELSEWHERE, "warning")

    def _rehome(self, entry: WaitingMessage) -> bool:
        """A waiting message whose conversation another window deleted: saved again in the
        open conversation (a new one). Whether it was."""
        if not self._gone(entry.conversation):
            return False
        entry.conversation = self.ensure_conversation(entry.text)
        entry.message_id = self._store_message(entry.conversation, "user", entry.text)
        return True

    def _saved(self, title: str) -> int | None:
        """The open conversation's id, saving a new one titled ``title`` with the model, as
        the one to open at the next start, if it is not saved yet (None if the store
        refused)."""
        if self.conversation_id is None:
            try:
                self.conversation_id = self.store.create_conversation(
                    title, model=self.model.name if self.model else None)
            except StoreError as error:
                self.notify(str(error), "error")
                return None
            self.save_setting("last_conversation", self.conversation_id)
        return self.conversation_id

    def save_profile(self, name: str, steering: Steering) -> None:
        """Save ``steering`` as the profile ``name`` (``StoreError`` if the store refuses)."""
        self.store.save_profile(name, steering.to_dict())

    def delete_profile(self, name: str) -> None:
        """Delete the profile ``name`` (``StoreError`` if the store refuses)."""
        self.store.delete_profile(name)

    def profile(self, name: str) -> Steering:
        """The settings saved as the profile ``name`` (``StoreError`` if they cannot be read)."""
        return self.read_profile(name)[0]

    def read_profile(self, name: str) -> tuple[Steering, list[str]]:
        """``profile`` and a sentence for each saved setting it had to change
        (``Steering.read``)."""
        return Steering.read(self._saved_profile(name))

    def add_profile_example(self, name: str, example: str) -> str | None:
        """Add ``example`` to the profile ``name`` as saved, every other saved value kept as
        it was (a copy read through ``Steering.read`` would save what it changed: a reward
        model gone from disk, left out, would be gone from the profile too);
        why the model could not answer with the profile then (``Steering.problem_with``), and
        nothing saved, or None."""
        saved = self._saved_profile(name)
        kept = saved.get("examples")
        examples = [e for e in kept if isinstance(e, str)] if isinstance(kept, list) else []
        updated = {**saved, "examples": examples if example in examples
                   else [*examples, example]}
        problem = Steering.from_dict(updated).problem_with(self.model)
        if problem is None:
            self.store.save_profile(name, updated)
        return problem

    def _saved_profile(self, name: str) -> dict[str, Any]:
        saved = self.store.list_profiles().get(name)
        if not isinstance(saved, dict):
            raise StoreError(f"The profile “{name}” cannot be read (its saved settings are "
                             "damaged); save the settings you want under its name, or delete "
                             "it.")
        return saved

    def profile_names(self) -> list[str]:
        return list(self.store.list_profiles())

    # -- conversations -------------------------------------------------------------------------

    def last_conversation(self) -> int | None:
        """The conversation open when the previous session ended, if it is still saved."""
        last = self.store.get_setting("last_conversation")
        return last if last in [c.id for c in self.store.list_conversations()] else None

    def open(self, conversation_id: int | None, *, resume: bool = False) -> list[StoredMessage]:
        """Open a saved conversation (None: a new, not yet saved one); its saved messages.
        With ``resume`` (the conversation open when the app last quit), the user messages
        after its last answer were waiting when it quit: they wait again, and go once the
        model is free. A conversation opened from the list starts nothing by itself."""
        self.close_chat()
        self.conversation_id = conversation_id
        self.save_setting("last_conversation", conversation_id)
        stored = self.stored_messages()
        self.waiting = unanswered(stored, conversation_id) if resume else []
        return stored

    def rename(self, title: str) -> None:
        """Rename the open conversation (saving it first if it is new, as a first message
        does)."""
        self._notice_deletion()
        if self.conversation_id is None:
            self._saved(title)
            return
        try:
            self.store.rename_conversation(self.conversation_id, title)
        except StoreError as error:
            self.notify(str(error), "error")

    def delete(self) -> bool:
        """Delete the open conversation and open the newest left (or a new one); False if the
        store refused."""
        if self.conversation_id is None:
            return False
        try:
            self.store.delete_conversation(self.conversation_id)
        except StoreError as error:
            self.notify(str(error), "error")
            return False
        remaining = self.store.list_conversations()
        self.open(remaining[0].id if remaining else None)
        return True

    def title(self) -> str:
        """The open conversation's title ("" while it is not saved, or once another window
        deleted it)."""
        if self.conversation_id is None or self._gone():
            return ""
        return self.store.get_conversation(self.conversation_id).title

    def ensure_chat(self) -> localpref.Chat:
        """The open conversation's library chat, made from its history when first needed."""
        if self.chat is None:
            if self.model is None:
                raise NotNow("The model is still loading.")
            # a long conversation goes on with its last exchanges that fit the window
            self.chat = localpref.Chat(self.model, messages=self.history(), trim_history=True)
        return self.chat

    def release_lanes(self) -> None:
        """Give the chat's lanes back to the model (a comparison needs them); the next turn
        evaluates the history again."""
        if self.chat is not None:
            self.chat.close()

    def close_chat(self) -> None:
        if self.chat is not None:
            self.chat.close()
            self.chat = None

    def keep(self, prompt: str, text: str, *, method: str, preference: str | None,
             stats: dict[str, Any], partial: bool,
             changed_spans: list[tuple[int, int]] | None) -> tuple[int | None, int | None]:
        """Add a prompt and an answer written elsewhere (a comparison) to the conversation;
        the ids they are saved under."""
        preference = None if method == "base" else preference
        avoid = stats.get("avoid") if method != "base" else None
        conversation = self.ensure_conversation(prompt)
        user_id = self._store_message(conversation, "user", prompt)
        answer_id = self._store_message(
            conversation, "assistant", text, status=PARTIAL if partial else COMPLETE,
            method=method, preference=preference, stats=stats, avoid=avoid,
            changed_spans=changed_spans)
        if self.chat is not None:
            self.chat.messages += [{"role": "user", "content": prompt},
                                   {"role": "assistant", "content": text}]
        return user_id, answer_id

    # -- the model -----------------------------------------------------------------------------

    def load(self, spec: str | None, filename: str | None = None, *, max_lanes: int = 8,
             n_gpu_layers: int = 0, n_threads: int | None = None,
             n_ctx: int | None = None, wait_idle: bool = False,
             cancelled: Callable[[], bool] = lambda: False) -> localpref.Model | None:
        """Load a model (from a worker thread); None if ``cancelled`` while waiting.

        With ``wait_idle`` (a switch), the load starts once no worker uses the current model:
        an answer being written ends first (new ones wait while switching). Raises whatever
        loading raises.
        """
        while wait_idle and not self.users.wait_idle(0.25):
            if cancelled():  # the app is closing
                return None
        with self.users.using():  # quitting waits for the load before closing anything
            return localpref.load(spec, filename=filename, max_lanes=max_lanes,
                                  n_gpu_layers=n_gpu_layers, n_threads=n_threads, n_ctx=n_ctx)

    def switch_to(self, spec: str) -> None:
        """A model picked (``spec``) is to be loaded once no answer is being written: until
        then, sending waits and changes are refused (``refusal``)."""
        self.switching = spec

    def switch_failed(self) -> None:
        """The picked model could not be loaded: the current one stays."""
        self.switching = None

    def use_model(self, model: localpref.Model) -> str | None:
        """Use a model just loaded (the session closes it later); the open conversation
        carries over to it, word for word. Returns what was being switched to, if any."""
        previous, owned = self.model, self.owns_model
        if self.chat is not None:  # its lanes live in the previous model's context
            messages = list(self.chat.messages)
            self.chat.close()
            self.chat = localpref.Chat(model, messages=messages)
        self.model, self.owns_model = model, True
        if previous is not None and owned and previous is not model:
            previous.close()
        switched, self.switching = self.switching, None
        if switched is not None:
            self.save_setting("model", str(model.path))  # the next start opens it
        return switched

    # -- answering -----------------------------------------------------------------------------

    def _begin(self, generation: localpref.Generation, conversation: int | None,
               **links: Any) -> Answer:
        """Save an empty partial answer to ``generation`` and mark the session busy."""
        method, preference = generation.stats["method"], generation.stats["preference"]
        preference = None if method == "base" else preference  # base never reads it
        avoid = None if method == "base" else (
            generation.stats.get("avoid") or self.steering.avoid_label)
        # the model from the start: an answer the app was killed in still names it (export)
        started = {"model": generation.stats["model"]} if "model" in generation.stats else None
        answer_id = self._store_message(conversation, "assistant", "", status=PARTIAL,
                                        method=method, preference=preference, avoid=avoid,
                                        stats=started)
        self.answer = Answer(generation, conversation, answer_id, method, preference, avoid,
                             **links)
        self._cancel.clear()
        return self.answer

    def send(self, text: str) -> Answer:
        """Save ``text`` and an empty partial answer to it, and return that answer (stream it
        with ``write``). Raises ``NotNow`` unless the model is free, and ``Refused`` for
        invalid settings or a message the library refuses (too long for the context, a
        template that fails); nothing is saved then."""
        reason = self.why_wait()
        if reason is not None:
            raise NotNow({
                "loading": "The model is still loading.",
                "switching": f"Loading {self.switching}; wait until it is ready to send.",
                "answering": "An answer is being written; wait until it ends or press Esc to "
                             "stop it.",
            }[reason])
        self._notice_deletion(drop_chat=True)
        try:
            generation = self.ensure_chat().stream(text, **self.steering.overrides())
        except NotNow:
            raise
        except LocalprefError as error:
            raise Refused(error) from error
        conversation = self.ensure_conversation(text)
        user_id = self._store_message(conversation, "user", text)
        return self._begin(generation, conversation, user_message_id=user_id)

    def wait(self, text: str) -> WaitingMessage:
        """Save a message that goes once the model is free (``send_waiting``)."""
        conversation = self.ensure_conversation(text)
        message_id = self._store_message(conversation, "user", text)
        entry = WaitingMessage(text, conversation, message_id)
        self.waiting.append(entry)
        return entry

    def waiting_sentence(self, reason: str) -> str:
        """What to tell the user about a message that waits for ``reason`` (``why_wait``)."""
        return {
            "loading": "The model is still loading; your message is saved and goes as soon as "
                       "it is ready.",
            "switching": f"Loading {self.switching}; your message is saved and goes as soon "
                         "as it is ready.",
            "answering": "An answer is being written; your message is saved and goes when it "
                         "ends (Esc stops it).",
        }[reason]

    def send_waiting(self) -> Answer | None:
        """Start the answer to the first waiting message if the model is free (None: none
        can go now). A waiting message the model refuses leaves the conversation and the
        store, raised as ``Refused`` (with the entry); call again for the next one."""
        if (not self.waiting or self.model is None or self.switching is not None
                or self.busy or self.closing):
            return None
        entry = self.waiting[0]
        self._rehome(entry)
        try:  # the entry is still waiting, so it is left out of the history
            generation = self.ensure_chat().stream(entry.text, **self.steering.overrides())
        except LocalprefError as error:
            self.waiting.pop(0)
            self._delete_message(entry.message_id)
            raise Refused(error, entry) from error
        self.waiting.pop(0)
        answer = self._begin(generation, entry.conversation, waiting=entry)
        self._keep_after_the_answer()
        return answer

    def _keep_after_the_answer(self) -> None:
        """Saved messages are ordered by id: the messages still waiting are saved again after
        the answer just started, so the history reads message, answer, message, answer."""
        for entry in self.waiting:
            if entry.message_id is None or entry.conversation is None:
                continue
            if self._rehome(entry):  # (its conversation was deleted: saved anew, in order)
                continue
            try:
                self.store.delete_message(entry.message_id)
                entry.message_id = self.store.add_message(entry.conversation, "user", entry.text)
            except StoreError as error:
                self.notify(str(error), "error")
                return

    def regenerate(self) -> Answer:
        """Answer the last user message again with the current settings; the last saved
        answer is deleted once the new one has written something (``write``). Raises
        ``NotNow``, ``SettingsError`` for invalid settings and ``Refused`` when there is nothing
        to answer again or the library refuses it."""
        self.check("answer again", needs_model=True)
        if self._gone():
            self.conversation_id = None
            self.close_chat()  # (kept, a second Ctrl+R answered the deleted messages again)
            raise Refused(LocalprefError(
                "This conversation was deleted in another window, so there is nothing to "
                "answer again here; send a message to go on in a new conversation."))
        overrides = self.steering.overrides()
        stored = self.stored_messages()
        try:
            generation = self.ensure_chat().regenerate(**overrides)
        except LocalprefError as error:
            raise Refused(error) from error
        replaces = stored[-1].id if stored and stored[-1].role == "assistant" else None
        return self._begin(generation, self.conversation_id, replaces=replaces)

    def write(self, answer: Answer, *, progress: Callable[[str, dict[str, Any]], None],
              notice: Notify) -> Ended:
        """Stream ``answer`` (on a worker thread): ``progress(delta, stats)`` gets the text in
        batches, the text is saved every second and at the end; how it ended."""
        generation = answer.generation

        def save(text: str, status: str, stats: dict[str, Any] | None = None,
                 spans: list[tuple[int, int]] | None = None, final: bool = False) -> None:
            if answer.message_id is None:
                return
            # its first words (or its end): the old answer goes with them, in one transaction
            # (the app may be killed later)
            replacing = answer.replaces if text or final else None
            try:
                self.store.update_message(answer.message_id, text, status=status, stats=stats,
                                          changed_spans=spans, replacing=replacing)
            except StoreError as failure:
                notice(str(failure), "error")
                return
            if replacing is not None:
                answer.replaces = None

        error: str | None = None
        with self.users.using():
            try:
                pump(((0, piece) for piece in generation), 1, cancel=self._cancel,
                     close=generation.close,
                     flush=lambda deltas: progress(deltas[0], dict(generation.stats)),
                     save=lambda texts: save(texts[0], PARTIAL))
            except LocalprefError as failure:
                error = str(failure)
            finally:
                result = generation.result
                text = result.text if result is not None else ""
                stats = dict(result.stats if result is not None else generation.stats)
                partial = error is not None or stats.get("stop_reason") in ("cancelled", "error")
                if self.closing and stats.get("stop_reason") == "cancelled":
                    stats["stop_reason"] = APP_CLOSED  # not stopped by the user: left partial
                spans = changed_spans(getattr(result, "trace", None))
                kept_previous = answer.replaces is not None and (
                    result is None or result.wrote_nothing)  # (None once it wrote, ``save``)
                if kept_previous:  # stopped before its first word: the old answer stays
                    self._delete_message(answer.message_id, notice)
                elif self._gone(answer.conversation):  # deleted in another window meanwhile
                    self._save_exchange(answer, text, partial, stats, spans, notice)
                else:
                    save(text, PARTIAL if partial else COMPLETE, stats, spans, final=True)
        return Ended(text, partial, stats, error, spans, kept_previous)

    def _save_exchange(self, answer: Answer, text: str, partial: bool, stats: dict[str, Any],
                       spans: list[tuple[int, int]] | None, notice: Notify) -> None:
        """An answer whose conversation another window deleted while it was written: it and
        the message it answers go to the open conversation (a new one, said once), before
        the messages still waiting."""
        asked = self.chat.messages if self.chat is not None else []
        if len(asked) < 2 or asked[-2]["role"] != "user":
            return
        self._notice_deletion(notice)
        conversation = self._saved(title_from(asked[-2]["content"]))
        self._store_message(conversation, "user", asked[-2]["content"])
        self._store_message(conversation, "assistant", text,
                            status=PARTIAL if partial else COMPLETE, method=answer.method,
                            preference=answer.preference, stats=stats, avoid=answer.avoid,
                            changed_spans=spans)
        self._keep_after_the_answer()

    def finish(self) -> None:
        """The answer being written has ended (after ``write`` returned): no longer busy."""
        self.answer = None

    # -- comparing -----------------------------------------------------------------------------

    def compare(self, prompt: str, names: list[str]) -> MultiGeneration:
        """Start the methods ``names`` on the conversation so far plus ``prompt``, with the
        current settings, every lane in one batched decode (stream it with
        ``write_comparison``). Raises ``NotNow`` or the library's sentence."""
        self.check("compare methods", needs_model=True)
        assert self.model is not None
        overrides = self.steering.overrides()
        methods = [self.steering.method_object(name) for name in names]
        accepted = inspect.signature(self.model.compare).parameters
        self.release_lanes()  # the comparison needs them; the next turn takes them back
        multi = self.model.compare(
            [*self.history(), {"role": "user", "content": prompt}], methods,
            **{key: value for key, value in overrides.items()
               if key in accepted and key != "methods"})
        self.comparison = multi
        self._cancel.clear()
        return multi

    def write_comparison(self, multi: MultiGeneration, n_tracks: int, *,
                         progress: Callable[[list[str], list[dict[str, Any]]], None]) -> Compared:
        """Decode a comparison (on a worker thread): ``progress(deltas, stats)`` gets each
        method's text in batches; it has ended once this returns. Nothing is saved (a kept
        answer is, with ``keep``)."""
        error: str | None = None
        with self.users.using():
            try:
                pump(multi, n_tracks, cancel=self._cancel, close=multi.close,
                     flush=lambda deltas: progress(
                         deltas, [dict(stats) for stats in multi.track_stats]))
            except LocalprefError as failure:
                error = str(failure)
            finally:
                results = list(multi.results)
                if self.comparison is multi:  # ended: nothing left for ``stop`` to cancel
                    self.comparison = None
        return Compared(results, error)

    # -- stopping ------------------------------------------------------------------------------

    def stop(self) -> bool:
        """Cancel the answer or the comparison being written (the text so far is kept); safe
        from any thread, also during the prompt's prefill. False if nothing is being written."""
        answer, comparison = self.answer, self.comparison
        self._cancel.set()
        if answer is not None:
            answer.generation.cancel()
        if comparison is not None:
            comparison.cancel()
        return answer is not None or comparison is not None

    def quit(self) -> None:
        """The app is quitting: stop an answer (it is saved as partial); no waiting message
        starts an answer any more."""
        self.closing = True
        self.stop()

    def close(self, timeout: float = 30.0) -> None:
        """``quit``, wait (up to ``timeout`` seconds) for the workers using the model, then free
        the lanes, the model if the session loaded it, and the store."""
        self.quit()
        self.users.wait_idle(timeout)
        self.close_chat()
        if self.owns_model and self.model is not None:
            self.model.close()
        self.store.close()
