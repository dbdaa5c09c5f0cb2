"""Answering: send, regenerate, stream in a worker, stop, and compare (a part of the app class).

The worker never touches a widget: it posts batched text (``AnswerProgress``) and the end
(``AnswerDone``), and saves the answer as it grows so a killed app keeps the partial text.

A message sent while the model loads or an answer is being written waits: it is saved and
shown at once ("You · waiting") and goes to the model as soon as the model is ready or the
answer ends (Esc stops that answer; the waiting message then goes). Messages wait in the order
they were sent, and the history keeps each answer right after its message.
"""

from __future__ import annotations

import threading
from typing import Any

from textual import work

import localpref
from localpref import LocalprefError, SettingsError
from localpref.store import COMPLETE, PARTIAL, Store, StoreError
from tui.events import AnswerDone, AnswerProgress, Notice, WaitingMessage
from tui.highlight import changed_spans
from tui.screens import CompareScreen, KeptAnswer
from tui.steering import Steering
from tui.streaming import EngineUsers, pump
from tui.widgets import ChatInput, ChatLog, MessageView


class AnsweringMixin:
    """Answer actions of ``LocalprefApp`` (methods only; the app holds the state)."""

    store: Store
    model: localpref.Model | None
    chat: localpref.Chat | None
    conversation_id: int | None
    steering: Steering
    busy: bool
    closing: bool
    cancel: threading.Event
    users: EngineUsers
    _answer_view: MessageView | None
    _context_used: int
    _switching: str | None
    _waiting: list[WaitingMessage]
    _generation: localpref.Generation | None = None  # the answer being written, if any

    def _ready_to_answer(self) -> dict[str, Any] | None:
        """The settings for an answer now, or None (with a notice) if one cannot start."""
        if self.model is None:
            self.notify("The model is still loading.", severity="warning")
            return None
        if not self._can_change("send another message"):
            return None
        try:
            return self.steering.overrides()
        except SettingsError as error:
            self.notify(str(error), severity="error", title="Invalid setting")
            return None

    def _chat(self) -> localpref.Chat:
        if self.chat is None:
            assert self.model is not None
            self.chat = localpref.Chat(self.model, messages=self._history())
        return self.chat

    async def on_chat_input_submitted(self, event: ChatInput.Submitted) -> None:
        """Enter in the message box: save the message, then stream its answer (or, while the
        model is not free, save and show it as waiting; it goes when the model is)."""
        text = event.text.strip("\n")
        reason = self._why_wait()
        if reason is not None:
            await self._wait_with(text, reason)
            return
        generation = self._stream_reply(text)
        if generation is None:  # refused with a notice: the text goes back in the box
            event.chat_input.restore(event.text)
            return
        conversation = self._ensure_conversation(text)
        user_id = self._store_message(conversation, "user", text)
        await self.query_one(ChatLog).add(MessageView("user", text, message_id=user_id))
        await self._start_answer(generation, conversation)

    def _why_wait(self) -> str | None:
        """Why a message sent now has to wait (None: it can go at once)."""
        if self.model is None:
            return "loading"
        if self._switching is not None:
            return "switching"
        if self.busy:
            return "answering"
        if self._waiting:  # first sent, first answered
            return "answering"
        return None

    def _stream_reply(self, text: str) -> localpref.Generation | None:
        """The answer to ``text`` with the current settings, or None (with a notice) if it
        cannot start: invalid settings, too long for the context, a template that fails."""
        try:
            overrides = self.steering.overrides()
        except SettingsError as error:
            self.notify(f"Not sent: {error}", severity="error", title="Invalid setting")
            return None
        try:
            return self._chat().stream(text, **overrides)
        except LocalprefError as error:
            self.notify(f"Not sent: {error}", severity="error", title="Message refused")
            return None

    async def _wait_with(self, text: str, reason: str) -> None:
        """Save and show a message that goes once the model is free, and say when."""
        conversation = self._ensure_conversation(text)
        message_id = self._store_message(conversation, "user", text)
        view = await self.query_one(ChatLog).add(
            MessageView("user", text, message_id=message_id, waiting=True))
        self._waiting.append(WaitingMessage(text, view, conversation, message_id))
        when = {
            "loading": "The model is still loading; your message is saved and goes as soon as "
                       "it is ready.",
            "switching": f"Loading {self._switching}; your message is saved and goes as soon "
                         "as it is ready.",
            "answering": "An answer is being written; your message is saved and goes when it "
                         "ends (Esc stops it).",
        }[reason]
        self.notify(when)

    async def _send_waiting(self) -> None:
        """Send the first waiting message if the model is free (called whenever it becomes
        free: loaded, switched, or an answer ended)."""
        while (self._waiting and self.model is not None and self._switching is None
               and not self.busy and not self.closing):
            entry = self._waiting[0]
            generation = self._stream_reply(entry.text)  # the entry is left out of the history
            self._waiting.pop(0)
            if generation is None:  # refused: out of the conversation, back in the box
                await self._withdraw(entry)
                continue
            entry.view.stop_waiting()
            await self._start_answer(generation, entry.conversation, after=entry.view)
            self._keep_after_the_answer(self._waiting)
            return

    async def _withdraw(self, entry: WaitingMessage) -> None:
        """A waiting message the model refused leaves the conversation; its text goes back in
        the message box for editing."""
        if entry.message_id is not None:
            try:
                self.store.delete_message(entry.message_id)
            except StoreError as error:
                self.notify(str(error), severity="error")
        await entry.view.remove()
        self.query_one(ChatInput).restore(entry.text)

    def _keep_after_the_answer(self, waiting: list[WaitingMessage]) -> None:
        """Saved messages are ordered by id: the messages still waiting are saved again after
        the answer just started, so the history reads message, answer, message, answer."""
        for entry in waiting:
            if entry.message_id is None or entry.conversation is None:
                continue
            try:
                self.store.delete_message(entry.message_id)
                entry.message_id = self.store.add_message(entry.conversation, "user", entry.text)
            except StoreError as error:
                self.notify(str(error), severity="error")
                return
            entry.view.message_id = entry.message_id

    async def action_regenerate(self) -> None:
        overrides = self._ready_to_answer()
        if overrides is None:
            return
        stored = self._stored_messages()
        try:
            generation = self._chat().regenerate(**overrides)
        except LocalprefError as error:
            self.notify(str(error), severity="warning")
            return
        views = self.query_one(ChatLog).views
        if views and views[-1].role == "assistant":
            await views[-1].remove()
        if stored and stored[-1].role == "assistant":
            try:
                self.store.delete_message(stored[-1].id)
            except StoreError as error:
                self.notify(str(error), severity="error")
        await self._start_answer(generation, self.conversation_id)

    def _store_message(self, conversation: int | None, role: str, text: str,
                       **fields: Any) -> int | None:
        if conversation is None:
            return None
        try:
            return self.store.add_message(conversation, role, text, **fields)
        except StoreError as error:
            self.notify(str(error), severity="error")
            return None

    async def _start_answer(self, generation: localpref.Generation,
                            conversation: int | None, after: MessageView | None = None) -> None:
        """Save an empty partial answer, show it (after ``after``, else last), and stream into
        it from a worker."""
        self.busy = True  # from now: a message sent meanwhile waits for this answer
        method, preference = generation.stats["method"], generation.stats["preference"]
        preference = None if method == "base" else preference  # base never reads it
        avoid = None if method == "base" else (
            generation.stats.get("avoid") or self.steering.avoid_label)
        answer_id = self._store_message(conversation, "assistant", "", status=PARTIAL,
                                        method=method, preference=preference, avoid=avoid)
        view = MessageView("assistant", "", message_id=answer_id, method=method,
                           preference=preference, avoid=avoid)
        await self.query_one(ChatLog).add(view, after=after)
        view.start_streaming()
        self._answer_view = view
        self._generation = generation  # Esc cancels it, even during its prefill
        self.busy = True
        self.cancel.clear()
        self._show_status(state="writing… (Esc stops)", tokens_per_s=None,
                          steer_ms_per_token=None)
        self._answer_worker(generation, answer_id)

    @work(thread=True, exclusive=True, group="answer")
    def _answer_worker(self, generation: localpref.Generation, answer_id: int | None) -> None:
        """Stream one answer: batched updates to the app, the text saved every second."""

        def save(text: str, status: str, stats: dict[str, Any] | None = None,
                 spans: list[tuple[int, int]] | None = None) -> None:
            if answer_id is None:
                return
            try:
                self.store.update_message(answer_id, text, status=status, stats=stats,
                                          changed_spans=spans)
            except StoreError as failure:
                self.post_message(Notice(str(failure), "error"))

        error: str | None = None
        spans: list[tuple[int, int]] | None = None
        with self.users.using():
            try:
                pump(((0, piece) for piece in generation), 1, cancel=self.cancel,
                     close=generation.close,
                     flush=lambda deltas: self.post_message(
                         AnswerProgress(deltas[0], dict(generation.stats))),
                     save=lambda texts: save(texts[0], PARTIAL))
            except LocalprefError as failure:
                error = str(failure)
            finally:
                result = generation.result
                text = result.text if result is not None else ""
                stats = dict(result.stats if result is not None else generation.stats)
                partial = error is not None or stats.get("stop_reason") in ("cancelled", "error")
                spans = changed_spans(getattr(result, "trace", None))
                save(text, PARTIAL if partial else COMPLETE, stats, spans)
        self.post_message(AnswerDone(text, partial, stats, error, spans))

    async def on_answer_progress(self, event: AnswerProgress) -> None:
        if self._answer_view is not None:
            await self._answer_view.append(event.delta)
        self._show_live(event.stats)

    def _show_live(self, stats: dict[str, Any], **facts: Any) -> None:
        self._context_used = stats.get("n_prompt_tokens", 0) + stats.get("n_tokens", 0)
        self._show_status(tokens_per_s=stats.get("tokens_per_s"),
                          steer_ms_per_token=stats.get("steer_ms_per_token"), **facts)

    async def on_answer_done(self, event: AnswerDone) -> None:
        view, self._answer_view = self._answer_view, None
        self._generation = None
        if view is not None and not self.closing:  # (closing: the views may be gone)
            await view.finish(event.text, partial=event.partial, stats=event.stats,
                              changed_spans=event.changed_spans)
        self.busy = False
        self._show_live(event.stats, state="ready")
        if event.error:
            self.notify(f"The answer stopped: {event.error}", severity="error")
        elif event.stats.get("stop_reason") == "cancelled":
            self.notify("Stopped; the partial answer is kept.")
        await self._send_waiting()

    def action_stop(self) -> None:
        if self.busy:
            self.cancel.set()
            if self._generation is not None:
                self._generation.cancel()
            self._show_status(state="stopping…")
        else:
            self.query_one(ChatInput).focus()

    # -- compare -------------------------------------------------------------------------------

    def action_compare(self) -> None:
        if self.model is None:
            self.notify("The model is still loading.", severity="warning")
            return
        if not self._can_change("compare methods"):
            return
        history = self._history()
        if self.chat is not None:
            self.chat.close()  # frees its lanes for the comparison; reopened next turn
        screen = CompareScreen(self.model, history, self.steering,
                               self.query_one(ChatInput).text.strip(), self.users)
        self.push_screen(screen, callback=self._kept)

    async def _kept(self, kept: KeptAnswer | None) -> None:
        """Add the prompt and the answer kept from a comparison to the conversation."""
        if kept is None:
            return
        preference = None if kept.method == "base" else kept.preference
        conversation = self._ensure_conversation(kept.prompt)
        log = self.query_one(ChatLog)
        user_id = self._store_message(conversation, "user", kept.prompt)
        avoid = kept.stats.get("avoid") if kept.method != "base" else None
        answer_id = self._store_message(
            conversation, "assistant", kept.text, status=PARTIAL if kept.partial else COMPLETE,
            method=kept.method, preference=preference, stats=kept.stats, avoid=avoid,
            changed_spans=kept.changed_spans)
        await log.add(MessageView("user", kept.prompt, message_id=user_id))
        await log.add(MessageView("assistant", kept.text, message_id=answer_id,
                                  partial=kept.partial, method=kept.method,
                                  preference=preference, stats=kept.stats, avoid=avoid,
                                  changed_spans=kept.changed_spans))
        if self.chat is not None:
            self.chat.messages += [{"role": "user", "content": kept.prompt},
                                   {"role": "assistant", "content": kept.text}]
        chat_input = self.query_one(ChatInput)
        if chat_input.text.strip() == kept.prompt:
            chat_input.remember(chat_input.text)
        self._show_live(kept.stats, state="ready")
        self.notify(f"Kept the {kept.method} answer in the conversation.")
        chat_input.focus()
