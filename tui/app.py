"""The localpref chat app: steer a local model's answers toward a preference, token by token.

The state (model, store, open conversation and its chat, steering settings, busy / switching,
the waiting messages) is the session's (``tui.session.ChatSession``, plain Python, tested
headless); the app owns the widgets, and its handlers (here, ``tui/answering.py`` and
``tui/conversations.py``) ask the session and show what it returns. Answers and model loading
run in thread workers that only post messages (``tui.events``). What is sent is saved before
its answer starts, and the worker saves the answer as it grows, so nothing is lost if the app
is killed. Another model (F9, the picker) is loaded once no answer is being written; the
conversation carries over and, if the new model fails to load, the current one stays.
"""

from __future__ import annotations

import asyncio
import signal
from dataclasses import replace
from pathlib import Path
from typing import Any

from textual import on, work
from textual.app import App
from textual.containers import Horizontal, Vertical
from textual.widgets import Footer, Header
from textual.worker import get_current_worker

import localpref
from localpref import LocalprefError, Model, SettingsError
from localpref.calibration.record import kept_default_summary
from localpref.methods import resolve_method
from localpref.store import Store, StoreError
from localpref.weights import Weights, parse_preference_items
from tui.answering import AnsweringHandlers
from tui.conversations import BOTH_PANELS_MIN_WIDTH, ConversationHandlers
from tui.events import ModelFailed, ModelLoaded, Notice
from tui.keys import APP_ACTIONS, bindings
from tui.palette import SteeringCommands
from tui.screens import HelpScreen, ModelErrorDialog, ModelPickerScreen, PickedModel
from tui.session import ChatSession, title_from
from tui.steering import Steering, method_description
from tui.widgets import (
    ChatInput,
    ChatLog,
    ConversationList,
    MessageView,
    PreferencePanel,
    StatusBar,
)

__all__ = ["LocalprefApp", "startup_steering", "title_from"]

#: App actions that need the chat screen in front (quit and help work everywhere).
CHAT_SCREEN_ACTIONS = frozenset(
    action.action for action in APP_ACTIONS if action.action not in ("quit", "help"))

#: Signals that quit the app as Ctrl+Q does (``LocalprefApp._quit_on_signals``).
QUIT_SIGNALS = ("SIGTERM", "SIGHUP", "SIGINT")

#: Below these widths the side panels start hidden (F3 and Ctrl+L show them; under
#: BOTH_PANELS_MIN_WIDTH one at a time).
PREFERENCES_MIN_WIDTH, CONVERSATIONS_MIN_WIDTH = BOTH_PANELS_MIN_WIDTH, 90


def startup_steering(
    saved: Any, preference: list[str] | None, method: str | None,
    avoid: list[str] | None = None, like: list[str] | None = None,
) -> tuple[Steering, list[str]]:
    """The saved settings with the command line's ``--preference``, ``--method``,
    ``--avoid`` and ``--like`` (the examples, in place of the saved ones) on top, and the
    problems found (each one sentence), the saved settings changed (``Steering.read``)
    among them."""
    steering, problems = Steering.read(saved) if saved else (Steering(), [])
    if preference:
        steering = _with_preferences(steering, preference, problems)
    if method:
        try:
            chosen = resolve_method(method)
            steering = replace(steering, method=chosen.name)
            if method.strip().lower() == "recommended":
                steering = steering.with_app_settings()
        except SettingsError as error:
            problems.append(str(error))
    if avoid:
        steering = replace(steering, avoid=" ".join(text.strip() for text in avoid))
        try:
            steering.overrides()
        except SettingsError as error:
            problems.append(str(error))
            steering = replace(steering, avoid="")
    if like:
        steering = replace(steering, examples=list(like))
    return steering, problems


def flags_problem(preference: list[str] | None, method: str | None,
                  avoid: list[str] | None = None, like: list[str] | None = None) -> str | None:
    """Why no answer could use the command line's steering flags together, whatever was
    saved (Pref or Base with weights, a one-lane method with an avoid text, a preference
    that is also the avoid text), as the library says it, or None. ``chat`` refuses such
    flags before the app opens, as ``generate`` does; the model's own limits (lanes, the
    examples' tokens) are checked once it is loaded."""
    if not (preference or method or avoid or like):
        return None
    # (from no preference: the app's default one is not a flag, and saved ones replace it)
    steering, _ = startup_steering({"presets": []}, preference, method)
    if avoid:
        steering = replace(steering, avoid=" ".join(text.strip() for text in avoid))
    if like:
        steering = replace(steering, examples=list(like))
    return steering.problem_with(None)


def _with_preferences(steering: Steering, items: list[str], problems: list[str]) -> Steering:
    """``steering`` with the command line's ``--preference`` items: the built-in ones checked,
    the free texts joined into the custom text, and ``TEXT=NUMBER`` weights on their sliders
    (the joined free text takes its texts' weight; differing ones are a problem)."""
    weighed = parse_preference_items(items)  # already checked by the command: no error here
    if isinstance(weighed, str):  # one preference at weight 1: the preference itself
        weighed = [weighed]
    pairs = [(text.strip(), weight) for text, weight in (
        weighed.items() if isinstance(weighed, Weights) else ((item, 1.0) for item in weighed))]
    names = [text.lower() for text, _ in pairs if text.lower() in localpref.PRESETS]
    weights = {text.lower(): weight for text, weight in pairs if text.lower() in names}
    free = [(text, weight) for text, weight in pairs
            if text and text.lower() not in localpref.PRESETS]
    custom = " ".join(text for text, _ in free)
    free_weights = {weight for _, weight in free}
    if len(free_weights) > 1:
        problems.append("The app weighs its free text as one preference; the free texts' "
                        "weights differ, so it weighs 1.")
    elif free_weights:
        weights[custom] = free_weights.pop()
    return replace(steering, presets=names, custom=custom,
                   weights={k: v for k, v in weights.items() if v != 1.0})


class LocalprefApp(ConversationHandlers, AnsweringHandlers, App[None]):
    """Chat with a local GGUF model whose every token is steered toward your preference."""

    TITLE = "localpref"
    CSS_PATH = "app.tcss"
    BINDINGS = bindings(APP_ACTIONS)
    COMMANDS = App.COMMANDS | {SteeringCommands}

    def __init__(
        self,
        *,
        model: Model | None = None,
        model_spec: str | None = None,
        model_file: str | None = None,
        n_gpu_layers: int = 0,
        n_threads: int | None = None,
        n_ctx: int | None = None,
        store_path: str | Path | None = None,
        preference: list[str] | None = None,
        method: str | None = None,
        max_lanes: int = 8,
        avoid: list[str] | None = None,
        like: list[str] | None = None,
    ) -> None:
        """``model``: an already loaded model (the app then never closes it); otherwise
        ``model_spec`` (None: the bundled model; ``model_file`` picks a Hub repo's file) is
        loaded in the background. ``like``: the examples of ``--like``, checked against the
        model's bound once it is loaded (over it, the app exits with code 2 and the
        sentence, as the command line does)."""
        super().__init__()
        self.model_spec = model_spec
        self.model_file = model_file
        self.n_gpu_layers = n_gpu_layers
        #: llama.cpp threads and the conversation's window (None: localpref's defaults)
        self.load_settings = {"n_threads": n_threads, "n_ctx": n_ctx}
        self.max_lanes = max_lanes
        #: The profile last loaded or saved: "more like this" adds its examples there too.
        self.open_profile: str | None = None
        store = Store(store_path)
        steering, self._startup_problems = startup_steering(
            store.get_setting("steering"), preference, method, avoid, like)
        #: The command line's examples, until the first model has checked their length.
        self._startup_like = list(like or ())
        #: The state: model, store, open conversation and chat, busy / switching, waiting.
        self.session = ChatSession(store, steering, model,
                                   notify=lambda text, severity: self.notify(
                                       text, severity=severity))
        #: Every notice shown, oldest first (the user's log; tests read it).
        self.notices: list[str] = []
        #: why the app exited with code 2, for ``localpref chat`` to print (``_exit_with``)
        self.exit_sentence: str | None = None
        #: The context the conversation uses, in tokens (the status bar's figure).
        self._context_used = 0
        self._model_failure = ""
        #: the signals this app's loop handles while it runs (given back when it ends)
        self._signals_taken: list[int] = []

    # -- the session's state, read-only on the app (the pilot tests read it here) --------------

    @property
    def model(self) -> Model | None:
        return self.session.model

    @property
    def store(self) -> Store:
        return self.session.store

    @property
    def steering(self) -> Steering:
        return self.session.steering

    @property
    def chat(self) -> localpref.Chat | None:
        return self.session.chat

    @property
    def conversation_id(self) -> int | None:
        return self.session.conversation_id

    @property
    def busy(self) -> bool:
        return self.session.busy

    # -- layout and lifecycle ------------------------------------------------------------------

    def compose(self):  # noqa: ANN201 - Textual's ComposeResult
        yield Header()
        with Horizontal(id="main"):
            yield ConversationList(id="conversations")
            with Vertical(id="chat-column"):
                yield ChatLog(id="chat-log")
                yield ChatInput(id="chat-input")
            yield PreferencePanel(self.steering, id="preferences")
        yield StatusBar(id="status")
        yield Footer()

    async def on_mount(self) -> None:
        self._quit_on_signals()
        if self.store.notice:
            self.notify(self.store.notice, severity="warning", timeout=20)
        for problem in self._startup_problems:
            self.notify(problem, severity="error")
        self.query_one(PreferencePanel).checker = lambda steering: steering.problem_with(
            self.session.model)
        self.query_one("#preferences").display = self.size.width >= PREFERENCES_MIN_WIDTH
        self.query_one("#conversations").display = self.size.width >= CONVERSATIONS_MIN_WIDTH
        self._refresh_profiles()
        await self._open_conversation(self.session.last_conversation(), resume=True)
        if self.session.model is None:
            self._show_status(state="loading model…")
            if self.model_spec is None:  # no --model: the one picked last time, if still there
                self.model_spec = _remembered_model(self.store.get_setting("model"))
            self._load_model(self.model_spec, self.model_file)
        else:
            self._model_ready()
        self.query_one(ChatInput).focus()

    def _quit_on_signals(self) -> None:
        """SIGTERM (``kill``, a system's shutdown) and SIGHUP (the terminal closed) quit as
        Ctrl+Q does, with the exit code of a process that signal ends (128 + its number): they
        ended the process at once, leaving the terminal in the app's screen and mouse modes
        and the answer being written unsaved. Where the loop cannot take signals (not the main
        thread, Windows) nothing changes."""
        loop = asyncio.get_running_loop()
        for name in QUIT_SIGNALS:
            signum = getattr(signal, name, None)
            if signum is None:
                continue
            try:
                loop.add_signal_handler(signum, self._quit_on_signal, signum)
            except (NotImplementedError, RuntimeError, ValueError):
                continue
            self._signals_taken.append(signum)

    def _quit_on_signal(self, signum: int) -> None:
        self.session.quit()
        self.exit(return_code=128 + signum)

    async def on_unmount(self) -> None:
        """Stop an answer (it is saved as partial), then free the lanes and the model."""
        self.session.quit()
        await asyncio.to_thread(self.session.users.wait_idle, 30.0)
        self.session.close()
        # given back last: a second signal while the answer stops would have ended the
        # process at once, the terminal not restored (the loop may run on: a test's)
        loop = asyncio.get_running_loop()
        for signum in self._signals_taken:
            loop.remove_signal_handler(signum)
        self._signals_taken.clear()

    def action_quit(self) -> None:  # type: ignore[override]
        """Quit; a running answer stops first and is saved as partial (see ``on_unmount``)."""
        self.session.quit()
        self.exit()

    def notify(self, message: str, *, title: str = "", severity: str = "information",
               timeout: float | None = None, markup: bool = False) -> None:
        """Show a notice and keep it in ``notices``. Notices are plain text, never markup,
        whatever a caller asks (a screen's ``notify`` asks for markup): they quote what the
        user typed, and ``[/b]`` in a name stopped the app."""
        self.notices.append(message)
        super().notify(message, title=title, severity=severity,  # type: ignore[arg-type]
                       timeout=timeout, markup=False)

    def action_help_quit(self) -> None:
        """Ctrl+C: say how to quit, as Textual does, in plain text (a notice here is never
        markup, and Textual's own sentence showed its ``[b]`` tags)."""
        for key, active in self.active_bindings.items():
            if active.binding.action in ("quit", "app.quit"):
                self.notify(f"Press {key} to quit the app.", title="Do you want to quit?")
                return

    @on(Notice)
    def _notice(self, event: Notice) -> None:
        self.notify(event.text, severity=event.severity)

    def _show_status(self, **facts: Any) -> None:
        status = self.query_one(StatusBar)
        if self.model is not None:
            facts.setdefault("model", self.model.name)
        status.show(
            method=self._method_label(),
            preference=self.steering.preference_label,
            context_size=self.model.n_ctx if self.model else None,
            context_used=self._context_used,
            history="history not saved (read-only)" if self.store.read_only else "",
            **facts,
        )

    def _method_label(self) -> str:
        """The steering's label, saying for the recommended steering whether it is calibrated
        for this model (and then with the calibrated settings) or the uncalibrated default."""
        label = self.steering.method_label
        if not label.startswith("recommended: ") or self.model is None:
            return label
        calibration = self.model.calibration
        if calibration is None:
            kept = kept_default_summary(self.model.calibration_record) is not None
            return f"{label} (uncalibrated default{': the calibration kept it' if kept else ''})"
        calibrated = calibration.method(self.steering.preference)
        kept = calibration.summary(self.steering.preference)["default_kept"]
        note = ("uncalibrated default: the calibration kept it" if kept
                else "calibrated for this model")
        return f"recommended: {method_description(calibrated)} ({note})"

    def _show_live(self, stats: dict[str, Any], **facts: Any) -> None:
        """The status bar with an answer's figures (context used; speed and steering cost once
        it has two tokens, the first coming with the prompt: no "0.0 tok/s" of nothing)."""
        self._context_used = stats.get("n_prompt_tokens", 0) + stats.get("n_tokens", 0)
        if stats.get("n_tokens", 0) >= 2:
            facts = {"tokens_per_s": stats.get("tokens_per_s"),
                     "steer_ms_per_token": stats.get("steer_ms_per_token"), **facts}
        self._show_status(**facts)

    def _show_ready(self) -> None:
        """The status bar once the model is free, with the open conversation's context."""
        self._context_used = self.session.context_used()
        self._show_status(state="ready")

    async def _refresh_conversations(self) -> None:
        await self.query_one(ConversationList).show(self.store.list_conversations(),
                                                    self.session.conversation_id)

    def _list_if_new(self, before: int | None) -> None:
        """Refresh the conversation list if the open conversation is another than ``before``:
        saved for the first time (a message sent, kept or waiting saves it), or a new one
        because another window deleted it."""
        if self.session.conversation_id != before:
            self.call_later(self._refresh_conversations)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """Chat actions act on the chat screen only (not under the comparison or a dialog)."""
        if action in CHAT_SCREEN_ACTIONS and len(self.screen_stack) > 1:
            return False
        return True

    # -- the model -----------------------------------------------------------------------------

    @work(thread=True, exclusive=True, group="load")
    def _load_model(self, spec: str | None, filename: str | None = None,
                    wait_idle: bool = False) -> None:
        """Load a GGUF in the background; any failure becomes a dialog or a notice, never a crash.

        With ``wait_idle`` (a switch), the load starts once no answer is being written.
        """
        worker = get_current_worker()
        try:
            model = self.session.load(spec, filename, max_lanes=self.max_lanes,
                                      n_gpu_layers=self.n_gpu_layers, wait_idle=wait_idle,
                                      **self.load_settings,
                                      cancelled=lambda: worker.is_cancelled)
        except Exception as error:  # a user's file can fail in many ways: say why, offer another
            reason = str(error) if isinstance(error, LocalprefError) else (
                f"{type(error).__name__}: {error}")
            self.post_message(ModelFailed(reason, spec))
            return
        if model is not None:
            self.post_message(ModelLoaded(model))

    @on(ModelLoaded)
    def _model_loaded(self, event: ModelLoaded) -> None:
        """Use the new model; the open conversation carries over to it, word for word."""
        switched = self.session.use_model(event.model)
        if switched is not None:  # the last answer's speed was another model's
            self._show_status(tokens_per_s=None, steer_ms_per_token=None)
        self._model_ready()
        if switched is not None:
            self.notify(f"Now using {event.model.name} ({switched}).")
        self.call_later(self._send_waiting)

    def _model_ready(self) -> None:
        assert self.session.model is not None
        if self._startup_like:
            like, self._startup_like = self._startup_like, []
            try:
                self.session.model.like_tokens(like)
            except SettingsError as error:
                self._exit_with(f"localpref: {error}")
                return
        self.sub_title = self.session.model.name
        for notice in getattr(self.session.model, "notices", ()):
            self.notify(notice, severity="warning", timeout=15)
        problem = self.steering.problem_with(self.session.model)
        if problem is not None:  # saved settings, or ones another model could use
            self.notify(f"The steering settings cannot answer with this model: {problem} "
                        "Change them in the panel (F3).", severity="warning", timeout=15)
        self._show_ready()

    @on(ModelFailed)
    def _model_failed(self, event: ModelFailed) -> None:
        if self.model is not None:  # a switch failed: the current model stays
            self.session.switch_failed()
            self.notify(event.reason, severity="error")
            self._show_status(state="ready")
            self.call_later(self._send_waiting)
            return
        self.notices.append(event.reason)  # shown in the dialog rather than as a toast
        self._model_failure = event.reason
        self._show_status(model="no model", state="model failed to load")
        self.push_screen(ModelErrorDialog(event.reason, event.spec, _local_models()),
                         callback=self._model_chosen)

    def _exit_with(self, sentence: str) -> None:
        """Exit with code 2; ``localpref chat`` prints ``sentence`` on standard error once the
        terminal is restored (``exit_sentence``: Textual's own exit message is wrapped at the
        screen's width, a line break inside the sentence)."""
        self.exit_sentence = sentence
        self.exit(return_code=2)

    def _model_chosen(self, spec: str | None) -> None:
        if spec is None:  # Quit: exit code 2 and the reason, as the command line does
            self._exit_with(f"localpref: {self._model_failure}")
            return
        self.model_spec, self.model_file = spec, None
        self._show_status(model=Path(spec).name, state="loading model…")
        self._load_model(spec)

    def action_pick_model(self) -> None:
        """Open the model picker (F9 or the command palette)."""
        if self.model is None:
            self.notify("The model is still loading.", severity="warning")
            return
        if self.session.switching is not None:
            self.notify(f"Already switching to {self.session.switching}.", severity="warning")
            return
        self.push_screen(ModelPickerScreen(self.model.path, self.model.name),
                         callback=self._model_picked)

    def _model_picked(self, picked: PickedModel | None) -> None:
        """Load the picked file once no answer is being written; the current one stays till then."""
        if picked is None or self.model is None:
            return
        if picked.path.resolve() == self.model.path.resolve():
            self.notify(f"{self.model.name} is already loaded.")
            return
        self.session.switch_to(picked.spec)
        after = " after the answer being written" if self.session.busy else ""
        self._show_status(state=f"loading {picked.spec}{after}…")
        self._load_model(str(picked.path), wait_idle=True)

    # -- steering ------------------------------------------------------------------------------

    def _apply(self, steering: Steering, announce: bool = True) -> None:
        self.session.apply(steering)
        self._show_status()
        if announce:
            self.notify(f"Next answer: {steering.method_label}, preference "
                        f"{steering.preference_label}.")

    @on(PreferencePanel.Applied)
    def _applied(self, event: PreferencePanel.Applied) -> None:
        self._apply(event.steering)

    async def action_set_method(self, name: str) -> None:
        """Decode the next answers with method ``name`` (``recommended``: the recommended
        steering, at its settings)."""
        steering = (self.steering.with_app_settings() if name == "recommended"
                    else replace(self.steering, method=name))
        await self._apply_checked(steering)

    async def action_toggle_preset(self, name: str) -> None:
        presets = [p for p in self.steering.presets if p != name]
        if name not in self.steering.presets:
            presets.append(name)
        await self._apply_checked(replace(self.steering, presets=presets))

    async def _apply_checked(self, steering: Steering) -> None:
        """Apply settings chosen in the palette, as the panel's Apply does: refused, with the
        reason, when the next answer could not use them (Base with weighted preferences was
        taken, and then every message refused), the settings in force kept."""
        problem = steering.problem_with(self.session.model)
        if problem is not None:
            self.notify(f"Not applied: {problem}", severity="error", title="Invalid setting")
            return
        await self.query_one(PreferencePanel).load(steering)
        self._apply(steering)

    async def action_more_like_this(self) -> None:
        """Add the last answer to the examples (``like``) of the steering, and of the open
        profile (the last one loaded or saved) if any."""
        answers = [m["content"] for m in self.session.history() if m["role"] == "assistant"]
        if not answers or not answers[-1].strip():
            self.notify("There is no answer yet to take as an example.", severity="warning")
            return
        if answers[-1] in self.steering.examples:
            self.notify("That answer is already an example.", severity="warning")
            return
        steering = replace(self.steering, examples=[*self.steering.examples, answers[-1]])
        # (checked again at send with the model then): over max_like_tokens, or one lane more
        # than the app has, every next message would be refused
        problem = steering.problem_with(self.session.model)
        if problem is not None:
            self.notify(f"Not added: {problem}", severity="error", title="Cannot add it")
            return
        await self.query_one(PreferencePanel).set_examples(steering.examples)  # edits kept
        self._apply(steering, announce=False)
        saved = ""
        if self.open_profile is not None and self.open_profile in self.session.profile_names():
            saved = self._add_to_profile(self.open_profile, answers[-1])
        self.notify(f"Added the last answer to the examples{saved} "
                    f"({len(steering.examples)}): the next answers follow its style.")

    def _add_to_profile(self, name: str, example: str) -> str:
        """Add ``example`` to the profile as saved (not the settings on screen now); the words
        the notice adds (`` and to profile “p”``), or "" with a notice of its own where the
        profile cannot be read or written, or the model could not answer with it then (its
        examples over the model's limit, one lane too many: it would not load)."""
        try:
            problem = self.session.add_profile_example(name, example)
            if problem is not None:
                self.notify(f"Not added to profile “{name}”: {problem}", severity="error",
                            title="Cannot add it")
                return ""
        except StoreError as error:
            self.notify(str(error), severity="error")
            return ""
        return f" and to profile “{name}”"

    def _refresh_profiles(self) -> None:
        self.query_one(PreferencePanel).set_profiles(self.session.profile_names())

    @on(PreferencePanel.ProfileRequest)
    async def _profile(self, event: PreferencePanel.ProfileRequest) -> None:
        try:
            if event.action == "save" and event.steering is not None:
                replaced = event.name in self.session.profile_names()
                self.session.save_profile(event.name, event.steering)
                self.open_profile = event.name
                self.notify(f"Profile “{event.name}” "
                            + ("replaced with these settings." if replaced else "saved."))
            elif event.action == "delete":
                self.session.delete_profile(event.name)
                if self.open_profile == event.name:
                    self.open_profile = None
                self.notify(f"Profile “{event.name}” deleted.")
            elif event.action == "load":
                steering, changed = self.session.read_profile(event.name)
                problem = steering.problem_with(self.session.model)
                if problem is not None:  # (it was applied, and every message then refused)
                    self.notify(f"Profile “{event.name}” not loaded: {problem}",
                                severity="error", title="Cannot use this profile")
                    self._refresh_profiles()
                    return
                self.open_profile = event.name
                await self.query_one(PreferencePanel).load(steering)
                self._apply(steering, announce=False)
                if changed:  # (the profile's file keeps what was saved)
                    self.notify(" ".join(changed), severity="warning", timeout=15,
                                title=f"Profile “{event.name}” loaded with changes")
                self.notify(f"Profile “{event.name}” loaded: {steering.method_label}, "
                            f"preference {steering.preference_label}.")
        except StoreError as error:
            self.notify(str(error), severity="error")
        self._refresh_profiles()

    # -- copy, help ----------------------------------------------------------------------

    def action_copy_message(self) -> None:
        node = self.focused
        while node is not None and not isinstance(node, MessageView):
            node = node.parent  # type: ignore[assignment]
        view = node if isinstance(node, MessageView) else next(
            (v for v in reversed(self.query_one(ChatLog).views) if v.role == "assistant"), None)
        if view is None:
            self.notify("There is no message to copy yet.")
            return
        self.copy_to_clipboard(view.text)
        self.notify(f"Copied the message ({len(view.text)} characters).")

    def action_help(self) -> None:
        self.push_screen(HelpScreen())

    def action_toggle_highlight(self) -> None:
        """Ctrl+T: highlight the changed tokens of the open chat's answers, or stop."""
        log = self.query_one(ChatLog)
        shown = log.set_highlight(not log.highlight)
        if not log.highlight:
            self.notify("Answers shown as Markdown again.")
        elif shown:
            self.notify(f"Tokens changed by steering highlighted in {shown} answer(s); Ctrl+T "
                        "shows Markdown again.")
        else:
            self.notify("No answer here records which tokens steering changed yet.")


def _remembered_model(saved: Any) -> str | None:
    """The model file picked in an earlier session, if it is still on disk (else the bundled
    model: None)."""
    if isinstance(saved, str) and Path(saved).is_file():
        return saved
    return None


def _local_models() -> list[Path]:
    """GGUF files the model dialog can offer: the bundled one, the Hugging Face cache, and the
    models ollama and LM Studio keep."""
    from localpref import models

    found: list[Path] = []
    try:
        found.append(models.bundled_model_path())
    except LocalprefError:
        pass
    try:
        found += [Path(item.path) for item in models.cached_models()]
    except (LocalprefError, OSError):
        pass
    try:
        found += [stored.path for stored in models.stored_models()]
    except (LocalprefError, OSError):
        pass
    return found
