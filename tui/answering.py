"""Answer handlers of the app: send, wait, regenerate, stream in a worker, stop, and compare.

Each handler asks the session (``tui.session.ChatSession``, which holds the state and saves
everything) and shows what it returns. The worker never touches a widget: it runs
``ChatSession.write`` and posts batched text (``AnswerProgress``) and the end (``AnswerDone``).

A message sent while the model loads or an answer is being written waits: it is saved and
shown at once ("You · waiting") and goes to the model as soon as the model is ready or the
answer ends (Esc stops that answer; the waiting message then goes).
"""

from __future__ import annotations

from textual import work

from localpref import SettingsError
from tui.events import AnswerDone, AnswerProgress, Notice
from tui.screens import CompareScreen, KeptAnswer
from tui.session import Answer, ChatSession, NotNow, Refused
from tui.widgets import ChatInput, ChatLog, MessageView


class AnsweringHandlers:
    """The answer handlers of ``LocalprefApp``, mixed into it (``query_one``, ``notify``,
    ``_show_status``, ``_show_live``, ``_show_ready`` and ``_list_if_new`` are the app's).
    Their only state is the views of the answer being written and of the one a regeneration
    replaces; everything else is the session's."""

    session: ChatSession
    _answer_view: MessageView | None = None
    #: the answer a regeneration replaces: hidden while it writes, shown again when it is
    #: stopped before its first word
    _replaced_view: MessageView | None = None

    def _waiting_views(self) -> list[MessageView]:
        """The views of the waiting messages, in the order they wait (those the session
        popped just now first): the log shows them in the order they were sent."""
        return [view for view in self.query_one(ChatLog).views if view.waiting]

    def _refused(self, error: Refused) -> None:
        title = "Invalid setting" if isinstance(error.error, SettingsError) else "Message refused"
        self.notify(f"Not sent: {error}", severity="error", title=title)

    async def on_chat_input_submitted(self, event: ChatInput.Submitted) -> None:
        """Enter in the message box: save the message, then stream its answer (or, while the
        model is not free, save and show it as waiting; it goes when the model is)."""
        text = event.text.strip("\n")
        before = self.session.conversation_id
        reason = self.session.why_wait()
        if reason is not None:
            entry = self.session.wait(text)
            await self.query_one(ChatLog).add(
                MessageView("user", text, message_id=entry.message_id, waiting=True))
            self.notify(self.session.waiting_sentence(reason))
        else:
            try:
                answer = self.session.send(text)
            except (Refused, NotNow) as error:  # the text goes back in the box
                if isinstance(error, Refused):
                    self._refused(error)
                else:
                    self.notify(str(error), severity="warning")
                event.chat_input.restore(event.text)
                return
            await self.query_one(ChatLog).add(
                MessageView("user", text, message_id=answer.user_message_id))
            await self._show_answer(answer)
        self._list_if_new(before)

    async def _send_waiting(self) -> None:
        """Send the first waiting message if the model is free (called whenever it becomes
        free: loaded, switched, or an answer ended)."""
        while True:
            try:
                answer = self.session.send_waiting()
            except Refused as refused:  # out of the conversation, back in the box
                self._refused(refused)
                assert refused.entry is not None
                self.query_one(ChatInput).restore(refused.entry.text)
                views = self._waiting_views()
                if views:
                    await views[0].remove()
                continue
            if answer is None:
                return
            views = self._waiting_views()  # the one answered now, then the others
            view = views[0] if views else None
            if view is not None:
                view.stop_waiting()
            for entry, later in zip(self.session.waiting, views[1:], strict=False):
                later.message_id = entry.message_id  # saved again after the answer
            await self._show_answer(answer, after=view)
            return

    async def action_regenerate(self) -> None:
        try:
            answer = self.session.regenerate()
        except NotNow as error:
            self.notify(str(error), severity="warning")
            return
        except SettingsError as error:
            self.notify(str(error), severity="error", title="Invalid setting")
            return
        except Refused as error:
            self.notify(str(error), severity="warning")
            return
        views = self.query_one(ChatLog).views
        if views and views[-1].role == "assistant":  # hidden until the new one writes
            self._replaced_view = views[-1]
            self._replaced_view.display = False
        await self._show_answer(answer)

    async def _show_answer(self, answer: Answer, after: MessageView | None = None) -> None:
        """Show the answer just started (after ``after``, else last) and stream into it from
        a worker."""
        left_out = self.session.chat.left_out if self.session.chat is not None else 0
        if left_out:
            self.notify(f"The conversation no longer fits the model's window ({self.model.n_ctx} "
                        f"tokens): this answer reads it without its first {left_out} messages "
                        "(they stay in the history). Ctrl+N starts a new conversation.",
                        title="Earlier messages left out")
        view = MessageView("assistant", "", message_id=answer.message_id, method=answer.method,
                           preference=answer.preference, avoid=answer.avoid)
        await self.query_one(ChatLog).add(view, after=after)
        view.start_streaming()
        self._answer_view = view
        self._show_status(state="writing… (Esc stops)", tokens_per_s=None,
                          steer_ms_per_token=None)
        self._answer_worker(answer)

    @work(thread=True, exclusive=True, group="answer")
    def _answer_worker(self, answer: Answer) -> None:
        """Stream one answer: batched updates to the app, the text saved every second."""
        ended = self.session.write(
            answer,
            progress=lambda delta, stats: self.post_message(AnswerProgress(delta, stats)),
            notice=lambda text, severity: self.post_message(Notice(text, severity)))
        self.post_message(AnswerDone(ended))

    async def on_answer_progress(self, event: AnswerProgress) -> None:
        if self._answer_view is not None:
            await self._answer_view.append(event.delta)
        self._show_live(event.stats)

    async def on_answer_done(self, event: AnswerDone) -> None:
        ended = event.ended
        view, self._answer_view = self._answer_view, None
        replaced, self._replaced_view = self._replaced_view, None
        if view is not None and not self.session.closing:  # (closing: the views may be gone)
            if ended.kept_previous:
                await view.remove()
                if replaced is not None:
                    replaced.display = True
            else:
                await view.finish(ended.text, partial=ended.partial, stats=ended.stats,
                                  changed_spans=ended.changed_spans)
                if replaced is not None:
                    await replaced.remove()
        answering = self.session.answer
        self.session.finish()
        # (its conversation deleted in another window while it was written: saved in a new one)
        self._list_if_new(answering.conversation if answering is not None else None)
        if ended.kept_previous and replaced is not None and replaced.stats:
            self._show_live(replaced.stats, state="ready")  # the answer that stays
        elif ended.kept_previous:
            self._show_ready()
        else:
            self._show_live(ended.stats, state="ready")
        if ended.sentence is not None:
            self.notify(ended.sentence, severity="error" if ended.error else "information")
        await self._send_waiting()

    def action_stop(self) -> None:
        """Esc: stop the answer being written (its partial text is kept), else back to the
        message box."""
        if self.session.stop():
            self._show_status(state="stopping…")
        else:
            self.query_one(ChatInput).focus()

    # -- compare -------------------------------------------------------------------------------

    def action_compare(self) -> None:
        try:
            self.session.check("compare methods", needs_model=True)
        except NotNow as error:
            self.notify(str(error), severity="warning")
            return
        screen = CompareScreen(self.session, self.query_one(ChatInput).text.strip())
        self.push_screen(screen, callback=self._kept)

    async def _kept(self, kept: KeptAnswer | None) -> None:
        """Add the prompt and the answer kept from a comparison to the conversation."""
        if kept is None:
            return
        before = self.session.conversation_id
        user_id, answer_id = self.session.keep(
            kept.prompt, kept.text, method=kept.method, preference=kept.preference,
            stats=kept.stats, partial=kept.partial, changed_spans=kept.changed_spans)
        self._list_if_new(before)
        preference = None if kept.method == "base" else kept.preference
        avoid = kept.stats.get("avoid") if kept.method != "base" else None
        log = self.query_one(ChatLog)
        await log.add(MessageView("user", kept.prompt, message_id=user_id))
        await log.add(MessageView("assistant", kept.text, message_id=answer_id,
                                  partial=kept.partial, method=kept.method,
                                  preference=preference, stats=kept.stats, avoid=avoid,
                                  changed_spans=kept.changed_spans))
        chat_input = self.query_one(ChatInput)
        if chat_input.text.strip() == kept.prompt:
            chat_input.remember(chat_input.text)
        self._show_live(kept.stats, state="ready")
        self.notify(f"Kept the {kept.method} answer in the conversation.")
        chat_input.focus()
