"""The public API: ``load`` a model, then ``generate``, ``stream`` or ``chat`` with a preference.

One ``Model`` holds one copy of the weights and one llama.cpp context whose sequences are the
lanes of every generation and chat. Every call builds a ``Request`` (``localpref.request``)
and hands it to the model's scheduler (``localpref.scheduler``): any number of threads may
generate at once, and every live request's lanes are decoded in one batch per step. A
generation takes its lanes when it starts and gives them back when it ends, while a ``Chat``
keeps its lanes, and so its KV cache, between turns (while nobody waits for them).
"""

from __future__ import annotations

import contextlib
import os
import threading
import warnings
import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

from localpref.calibration.record import Calibration, CalibrationLookup, kept_default_summary
from localpref.decoding import Generation, MultiGeneration, Result, Track, initial_stats
from localpref.engine import (
    MAX_LANES,
    MAX_THREADS,
    MIN_CONTEXT,
    Context,
    LoadedModel,
    gpu_offload_built,
    window_problem,
)
from localpref.errors import (
    BusyError,
    LocalprefWarning,
    ModelError,
    PromptTooLongError,
    SettingsError,
    TooManyLanesError,
    callers_stacklevel,
)
from localpref.examples import (
    DEFAULT_MAX_LIKE_TOKENS,
    LikeInput,
    check_like_tokens,
    checked_like,
    like_sentence,
)
from localpref.methods import (
    Base,
    ContrastFamily,
    Method,
    avoid_error,
    is_recommended,
    opposite_error,
    resolve_method,
)
from localpref.models.bundled import display_name
from localpref.presets import (
    DEFAULT_SYSTEM_PROMPT,
    PreferenceInput,
    avoid_text,
    base_lane_text,
    preference_label,
)
from localpref.presets import preference_text as combine_preferences
from localpref.prompts import PromptBuilder, checked_messages
from localpref.request import (
    AvoidInput,
    PromptInput,
    Request,
    lone_surrogate,
    not_unicode,
    whole_number,
)
from localpref.scheduler import Job, LaneSpec, Scheduler, Session
from localpref.token_bias import LogitBiasInput
from localpref.warmup import warmup
from localpref.weights import check_weights, lane_kind, weighted_lanes, weighted_method

#: A lane's window (``n_ctx``) when none is given: the model's trained context, at most this.
DEFAULT_CONTEXT = 2048
#: The lanes a model is loaded with when ``max_lanes`` is not given.
DEFAULT_LANES = 4
#: The setting each word of a too-long prompt's sentence names (``PromptTooLongError.blamed``).
_SETTING_NAMED = {"preference": "preference", "avoid text": "avoid", "examples": "like"}


class _Backend:
    """A loaded model with its context and prompt builder."""

    def __init__(self, loaded: LoadedModel, context: Context, system_prompt: str) -> None:
        self.loaded = loaded
        self.context = context
        self.prompts = PromptBuilder(loaded, system_prompt)

    def close(self) -> None:
        self.context.close()
        self.loaded.close()


def _shut_down(scheduler: Scheduler, backends: list[_Backend]) -> None:
    """Stop and join the scheduler's thread, then free the contexts and weights (run by
    ``Model.close``, or by the model's finalizer: when it is collected, or at exit). Run by
    the garbage collector inside the scheduler's own thread, or inside a thread's call into
    the model's vocabulary (a model dropped in a reference cycle), it hands the work to a
    thread of its own: freeing here would pull the contexts and vocabulary from under the
    step or the call this thread is in the middle of. That thread is a daemon: a call a
    Ctrl-C cut short inside the vocabulary's lock never ends, and the process waited for the
    hand-off at exit for good (``localpref bench`` after Ctrl-C)."""
    if scheduler.in_own_thread() or any(backend.loaded.vocabulary.read_here()
                                        for backend in backends):
        threading.Thread(target=_shut_down, args=(scheduler, backends),
                         name="localpref-shut-down", daemon=True).start()
        return
    scheduler.close()
    for backend in reversed(backends):
        backend.close()
    backends.clear()


class Model:
    """A GGUF model ready to generate with preference steering, from any number of threads.

    ``max_lanes``: lanes (llama.cpp sequences) decoded at once over every request;
    ``max_queued``: requests that may wait for lanes before the next gets ``BusyError``;
    ``max_like_tokens``: the bound on a request's examples (``like``), in tokens together;
    ``keep_cells``: a finished request's lanes keep their KV cells, and a later prompt that
    starts the same way evaluates only the rest (``localpref serve`` turns it on: a server's
    clients share a system prompt and send a conversation whole at every turn). Off by
    default: a prompt evaluated partly from another request's cells may round a logit's last
    digits differently from a fresh evaluation, and evaluations, batch files and their shards
    must give the same answers whatever ran before (docs/design.md, "Lanes and the KV cache").
    """

    def __init__(
        self,
        path: str | Path,
        *,
        n_gpu_layers: int = 0,
        n_ctx: int | None = None,
        max_lanes: int = DEFAULT_LANES,
        n_batch: int = 512,
        n_threads: int | None = None,
        n_threads_batch: int | None = None,
        system_prompt: str = DEFAULT_SYSTEM_PROMPT,
        max_queued: int = 16,
        max_like_tokens: int = DEFAULT_MAX_LIKE_TOKENS,
        keep_cells: bool = False,
    ) -> None:
        if not isinstance(path, (str, os.PathLike)) or isinstance(os.fspath(path), bytes):
            raise ModelError(f"The model path must be a text or a Path (got {path!r}); "
                             "localpref.load() also takes None for the bundled model, or a "
                             "model's name.")
        if not str(path).strip():  # Path("") is ".", a folder: "does not exist" misled
            raise ModelError("The model path is empty; give a GGUF file's path "
                             "(localpref.load() takes None for the bundled model).")
        if not whole_number(n_batch) or n_batch < 1:
            raise SettingsError(f"n_batch must be a whole number, 1 or more (got {n_batch!r}).")
        most_lanes = min(n_batch, MAX_LANES)
        if not whole_number(max_lanes) or not 1 <= max_lanes <= most_lanes:
            raise SettingsError(f"max_lanes must be a whole number from 1 to {most_lanes} "
                                f"(got {max_lanes!r}).")
        if n_ctx is not None and (not whole_number(n_ctx) or n_ctx < MIN_CONTEXT):
            raise SettingsError(f"n_ctx must be a whole number, {MIN_CONTEXT} or more, or None "
                                f"for the default (got {n_ctx!r}).")
        for name, value in (("n_threads", n_threads), ("n_threads_batch", n_threads_batch)):
            if value is not None and (not whole_number(value) or not 1 <= value <= MAX_THREADS):
                raise SettingsError(f"{name} must be a whole number from 1 to {MAX_THREADS} "
                                    f"(llama.cpp's most), or None for the default (got "
                                    f"{value!r}).")
        if not whole_number(n_gpu_layers) or n_gpu_layers < -1:
            raise SettingsError("n_gpu_layers must be a whole number, 0 or more, or -1 for all "
                                f"(got {n_gpu_layers!r}).")
        if not whole_number(max_queued) or max_queued < 0:
            raise SettingsError(f"max_queued must be 0 or more (got {max_queued!r}).")
        if not whole_number(max_like_tokens) or max_like_tokens < 1:
            raise SettingsError(f"max_like_tokens must be 1 or more (got {max_like_tokens!r}).")
        if not isinstance(system_prompt, str):
            raise SettingsError(f"The system prompt must be a text (got {system_prompt!r}); "
                                "give '' for none.")
        surrogate = lone_surrogate(system_prompt)
        if surrogate is not None:  # (a command line's bytes that are not UTF-8)
            raise SettingsError(not_unicode("system prompt", surrogate))
        if not isinstance(keep_cells, bool):
            raise SettingsError(f"keep_cells must be true or false (got {keep_cells!r}).")
        # NumPy's integers pass the checks above; ctypes and JSON want Python's
        n_batch, max_lanes, n_gpu_layers = int(n_batch), int(max_lanes), int(n_gpu_layers)
        max_queued, max_like_tokens = int(max_queued), int(max_like_tokens)
        n_ctx, n_threads, n_threads_batch = (
            None if value is None else int(value) for value in (n_ctx, n_threads,
                                                                n_threads_batch))
        #: the bound on a request's examples' total tokens (``like``)
        self.max_like_tokens = max_like_tokens
        self._context_settings: dict[str, Any] = dict(
            n_ctx=n_ctx, max_lanes=max_lanes, n_batch=n_batch,
            n_threads=n_threads, n_threads_batch=n_threads_batch,
        )
        self.n_gpu_layers = n_gpu_layers
        self._main = self._open_backend(Path(path), system_prompt)
        self._reward_backends: dict[str, _Backend] = {}
        self._reward_lock = threading.Lock()
        self._backends = [self._main]
        self._calibration = CalibrationLookup(self._main.loaded.path)
        self._name = display_name(self._main.loaded.path, self._main.loaded.name)
        self._scheduler = Scheduler(max_queued=max_queued, keep_cells=bool(keep_cells))
        self._finalizer = weakref.finalize(self, _shut_down, self._scheduler, self._backends)
        warmup()  # the kernels' load time stays out of the first answer's figures
        for notice in self.notices:
            warnings.warn(notice, LocalprefWarning, stacklevel=callers_stacklevel())

    def _open_backend(self, path: Path, system_prompt: str) -> _Backend:
        loaded = LoadedModel(path, n_gpu_layers=self.n_gpu_layers)
        settings = dict(self._context_settings)
        settings["n_ctx"] = settings["n_ctx"] or min(DEFAULT_CONTEXT,
                                                    loaded.n_ctx_train or DEFAULT_CONTEXT)
        too_wide = window_problem(settings["n_ctx"], loaded.n_ctx_train,
                                  display_name(path, loaded.name))
        if too_wide is not None:
            loaded.close()
            raise SettingsError(too_wide)
        try:
            context = Context(loaded, **settings)
        except Exception:
            loaded.close()
            raise
        return _Backend(loaded, context, system_prompt)

    @property
    def _backend(self) -> _Backend:
        """The model's weights, context and prompts, while it is open: after ``close()``
        llama.cpp's vocabulary and context are freed, and reading them would crash."""
        if self.closed:
            raise ModelError("The model is closed; load it again to use it.")
        return self._main

    @property
    def closed(self) -> bool:
        """Whether ``close()`` has run (nothing can be generated or tokenized any more)."""
        return not self._finalizer.alive

    # -- facts ------------------------------------------------------------------------------

    @property
    def name(self) -> str:
        """The model's name from its GGUF metadata (or its file name); the bundled model's
        is ``SmolLM2-135M-Instruct``, not its GGUF's training-run name."""
        return self._name

    @property
    def notices(self) -> list[str]:
        """Sentences the user should see about this model (one when the GGUF has no chat
        template and the plain-text prompt format is used, one when its stored calibration
        is there but ignored: unreadable or hand-edited, one when GPU layers were asked of a
        build without offload); also warned once on load."""
        ignored = self._calibration.ignored()
        unused_gpu = None if not self.n_gpu_layers or gpu_offload_built() else (
            "This llama-cpp-python was built without GPU offload, so the GPU layers asked for "
            "are not offloaded (`localpref doctor` says how to build it with offload).")
        return [*self._backend.prompts.notices, *([ignored] if ignored else []),
                *([unused_gpu] if unused_gpu else [])]

    @property
    def path(self) -> Path:
        return self._main.loaded.path

    @property
    def calibration(self) -> Calibration | None:
        """This model file's stored calibration (``localpref calibrate``), or None: the
        recommended steering is then the uncalibrated default."""
        return self._calibration.current()

    @property
    def calibration_record(self) -> dict[str, Any] | None:
        """The stored calibration record of this model file (with its sweep), or None."""
        return self._calibration.record()

    @property
    def calibration_key(self) -> str:
        """The key this model file's calibration is stored under (``calibration.record``)."""
        return self._calibration.key

    def calibrated_method(self) -> ContrastFamily | None:
        """The recommended steering calibrated for this model file, or None if uncalibrated
        (``recommended_method(model)`` gives the default then)."""
        calibration = self.calibration
        return calibration.method() if calibration is not None else None

    @property
    def n_ctx(self) -> int:
        """Tokens one lane (one conversation) can hold."""
        return self._backend.context.n_ctx

    @property
    def max_lanes(self) -> int:
        """Lanes decoded at once, over every request."""
        return self._backend.context.max_lanes

    @property
    def n_threads(self) -> int:
        return self._backend.context.n_threads

    @property
    def vocabulary(self):  # noqa: ANN201 - engine type, kept out of the public signature
        return self._backend.loaded.vocabulary

    @property
    def weights(self) -> LoadedModel:
        """The loaded weights (to make another context over them, e.g. a beam search's)."""
        return self._backend.loaded

    @property
    def prompts(self) -> PromptBuilder:
        """Renders and tokenizes conversations into each lane's tokens."""
        return self._backend.prompts

    @property
    def context(self) -> Context:
        """The llama.cpp context whose sequences are the lanes. Use it directly only inside
        ``exclusive()``: the scheduler decodes on it from its own thread."""
        return self._backend.context

    @property
    def scheduler(self) -> Scheduler:
        """The decode thread's state: ``queued``, ``running``, ``events``, ``counters``."""
        return self._scheduler

    @contextlib.contextmanager
    def exclusive(self) -> Iterator[Context]:
        """The context, with the scheduler paused between two steps for the duration (for
        tools that drive lanes themselves: the judge, the lane benchmark). The caller gets in
        after the round being decoded. Requests made inside the block start together when it
        ends; reading an answer inside it is refused (``ModelError``), as nothing is decoded
        there; ``close()`` inside it is fine."""
        with self._scheduler.exclusive():
            yield self._backend.context

    @property
    def system_prompt(self) -> str:
        return self._backend.prompts.system_prompt

    def lane_prompts(
        self,
        prompt_or_messages: PromptInput,
        *,
        preference: PreferenceInput = None,
        avoid: PreferenceInput = None,
        system_prompt: str | None = None,
        opposite: bool = False,
        like: LikeInput = None,
    ) -> dict[str, str]:
        """The rendered text of a two-lane method's lanes: ``{"pref": ..., "base": ...}``,
        and with weighted preferences one lane each (``"pref1"``, ``"pref2"``, ...).

        The preference lane carries the preference sentence, the base lane the avoid sentence
        (docs/design.md, "Avoid"), or with ``opposite`` and no avoid the preferences'
        opposites; for showing and checking what each lane reads.
        """
        request = Request(prompt_or_messages, preference=preference, avoid=avoid, like=like,
                          system_prompt=system_prompt, opposite=opposite)
        prompts = self._backend.prompts
        texts = {kind: prompts.lane_text(request.messages, lane.sentence,
                                         system_prompt=system_prompt, examples=lane.examples)
                 for kind, lane in _preference_lanes(request).items()}
        base = prompts.lane_text(request.messages, base_lane_text(preference, avoid, opposite),
                                 system_prompt=system_prompt)
        return {"pref": texts.pop("pref"), "base": base, **texts}

    def _count_text_tokens(self, text: str) -> int:
        return len(self.vocabulary.tokenize(text, add_special=False, parse_special=False))

    def like_tokens(self, like: LikeInput) -> int:
        """The examples' (``like``) total tokens, checked as a request checks them: an empty
        example, or more than ``max_like_tokens`` together, is one sentence
        (``SettingsError``)."""
        return check_like_tokens(checked_like(like), self._count_text_tokens,
                                 self.max_like_tokens)

    def _calibration_summary(self, request: Request,
                             calibration: Calibration | None) -> dict[str, Any] | None:
        """``stats["calibration"]`` of a request the recommended steering answers: the stored
        calibration's settings for it, the default a calibration kept for every preference,
        or None (never calibrated)."""
        if calibration is not None:
            return calibration.summary(_calibrated_preference(request))
        return kept_default_summary(self.calibration_record)

    def _too_long(self, request: Request, longest: int, base_lane: bool) -> PromptTooLongError:
        """The error for a request whose longest lane prompt (``longest`` tokens; on the base
        lane or not) does not fit the window. When the conversation alone would fit it names
        what that lane adds: the avoid text (or the preference, whose opposite the base lane
        reads), or the preference and the examples (``blamed``: their settings); else it
        blames the prompt."""
        sentence, blamed = self._too_long_sentence(request, longest, base_lane)
        return PromptTooLongError(sentence, blamed=blamed)

    def _too_long_sentence(self, request: Request, longest: int,
                           base_lane: bool) -> tuple[str, tuple[str, ...]]:
        """``_too_long``'s sentence, and the settings it blames."""
        if base_lane:
            named = ["avoid text" if avoid_text(request.avoid) is not None else "preference"]
        else:
            named = [name for name, given in (
                ("preference", combine_preferences(request.preference) is not None),
                ("examples", bool(request.like))) if given]
        bare = len(self._backend.prompts.lane_tokens(request.messages, None,
                                                     system_prompt=request.system_prompt))
        system_sentence = self._system_prompt_too_long(request, longest, bare)
        if system_sentence is not None:
            return system_sentence, ()
        if named and bare < self.n_ctx and longest - bare <= bare:
            # what the lane adds is the smaller part (a one-word preset after a long prompt):
            # shortening it would not be the way, nor may it be possible
            chat = _has_earlier_turns(request.messages)
            what, remedy = (("conversation", "start a new conversation") if chat
                            else ("prompt", "shorten the prompt"))
            return (f"With the {' and the '.join(named)} the {what} is {longest} tokens long "
                    f"and the context holds {self.n_ctx}, which leaves no room for an answer; "
                    f"{remedy} or load the model with a larger context (--ctx, n_ctx).", ())
        if (not named or bare >= self.n_ctx) and _has_earlier_turns(request.messages):
            alone = len(self._backend.prompts.lane_tokens(
                [request.messages[-1]], None, system_prompt=request.system_prompt))
            if alone >= self.n_ctx:  # a new conversation would not take it either
                return (f"The message alone is {alone} tokens long and the context holds "
                        f"{self.n_ctx}, which leaves no room for an answer; shorten it or "
                        "load the model with a larger context (--ctx, n_ctx).", ())
            return (f"The conversation is {longest} tokens long with this message and the "
                    f"context holds {self.n_ctx}, which leaves no room for an answer; start a "
                    "new conversation or load the model with a larger context (--ctx, n_ctx).",
                    ())
        if not named or bare >= self.n_ctx:
            return (f"The prompt is {longest} tokens long and the context holds {self.n_ctx}, "
                    "which leaves no room for an answer; shorten the prompt or load the "
                    "model with a larger context (--ctx, n_ctx).", ())
        it = "it" if len(named) == 1 else "them"
        # (the words "prompt is too long", which LangChain and litellm tell an overflow by)
        return (f"The prompt is too long with the {' and the '.join(named)}: {longest} tokens, "
                f"and the context holds {self.n_ctx}; shorten {it}.",
                tuple(_SETTING_NAMED[name] for name in named))

    def _system_prompt_too_long(self, request: Request, longest: int, bare: int) -> str | None:
        """The sentence when the system prompt given beside the messages (``load``'s,
        ``chat``'s or the call's) is more than half of a prompt (``longest`` tokens; ``bare``
        on the base lane alone) that fits without it, what a lane adds included (it was
        "shorten the prompt" of a prompt of one word); None otherwise: shortening it would
        not be enough, or not the most of what to shorten."""
        if any(message["role"] == "system" for message in request.messages):
            return None  # (the conversation's own: part of the prompt)
        prompts = self._backend.prompts
        system = prompts.system_prompt if request.system_prompt is None else request.system_prompt
        if not system.strip():
            return None
        system_share = bare - len(prompts.lane_tokens(request.messages, None, system_prompt=""))
        rest = longest - system_share  # (the messages and what the lane adds)
        if rest >= self.n_ctx or system_share <= rest:
            return None
        return (f"The system prompt makes the prompt {longest} tokens long and the context "
                f"holds {self.n_ctx}, which leaves no room for an answer; shorten the system "
                "prompt or load the model with a larger context (--ctx, n_ctx).")

    def count_tokens(self, prompt_or_messages: PromptInput) -> int:
        """Tokens of the prompt on the base lane (to check it fits before sending)."""
        return len(self._backend.prompts.lane_tokens(Request(prompt_or_messages).messages, None))

    # -- generation ---------------------------------------------------------------------------

    def generate(
        self,
        prompt_or_messages: PromptInput,
        *,
        preference: PreferenceInput = None,
        avoid: AvoidInput = None,
        method: Method | str | None = None,
        max_tokens: int = 256,
        temperature: float = 0.0,
        top_p: float = 1.0,
        top_k: int = 0,
        min_p: float = 0.0,
        repeat_penalty: float = 1.0,
        seed: int | None = None,
        stop: Sequence[str] | None = None,
        ignore_eos: bool = False,
        score_lanes: bool = False,
        trace: bool = False,
        opposite: bool | None = None,
        like: LikeInput = None,
        logit_bias: LogitBiasInput = None,
        presence_penalty: float = 0.0,
        frequency_penalty: float = 0.0,
    ) -> Result:
        """Generate a whole answer steered toward ``preference`` (None: plain decoding).

        ``method=None`` (or ``"recommended"``) is the recommended steering
        (``methods.recommended_method()``); a method named without settings is the papers'.

        ``score_lanes=True`` also decodes the lane the method does not read (Base and Pref
        read one), so that ``stats`` has the fluency under both lanes (for evaluation).
        ``opposite=True`` contrasts with the preferences' opposites (``Request.opposite``).
        ``logit_bias`` (token id -> -100 to 100) and ``presence_penalty`` /
        ``frequency_penalty`` (-2 to 2) are OpenAI's, added to the lanes' logits before the
        steering reads them (``localpref.token_bias``).
        """
        return self.stream(
            prompt_or_messages, preference=preference, avoid=avoid, method=method,
            max_tokens=max_tokens, temperature=temperature, top_p=top_p, top_k=top_k,
            min_p=min_p, repeat_penalty=repeat_penalty, seed=seed, stop=stop,
            ignore_eos=ignore_eos, score_lanes=score_lanes, trace=trace, opposite=opposite,
            like=like, logit_bias=logit_bias, presence_penalty=presence_penalty,
            frequency_penalty=frequency_penalty,
        ).run()

    def stream(
        self,
        prompt_or_messages: PromptInput,
        *,
        preference: PreferenceInput = None,
        avoid: AvoidInput = None,
        method: Method | str | None = None,
        max_tokens: int = 256,
        temperature: float = 0.0,
        top_p: float = 1.0,
        top_k: int = 0,
        min_p: float = 0.0,
        repeat_penalty: float = 1.0,
        seed: int | None = None,
        stop: Sequence[str] | None = None,
        ignore_eos: bool = False,
        score_lanes: bool = False,
        trace: bool = False,
        opposite: bool | None = None,
        like: LikeInput = None,
        logit_bias: LogitBiasInput = None,
        presence_penalty: float = 0.0,
        frequency_penalty: float = 0.0,
    ) -> Generation:
        """Like ``generate``, as a generator of text pieces; ``close()`` it to cancel.

        The returned generation's ``result`` (text, tokens, stats) is set when it ends.
        """
        request = Request.make(
            prompt_or_messages, preference=preference, avoid=avoid, method=method,
            max_tokens=max_tokens, temperature=temperature, top_p=top_p, top_k=top_k,
            min_p=min_p, repeat_penalty=repeat_penalty, seed=seed, stop=stop,
            ignore_eos=ignore_eos, score_lanes=score_lanes, trace=trace, opposite=opposite,
            like=like, logit_bias=logit_bias, presence_penalty=presence_penalty,
            frequency_penalty=frequency_penalty,
        )
        return Generation(self.submit(request))

    def chat(
        self,
        *,
        preference: PreferenceInput = None,
        avoid: AvoidInput = None,
        method: Method | str | None = None,
        system_prompt: str | None = None,
        like: LikeInput = None,
        **settings: Any,
    ) -> Chat:
        """A multi-turn conversation that keeps its lanes' cache between turns (so the
        examples of ``like``, at the start of the preference lane, are evaluated once)."""
        return Chat(self, preference=preference, avoid=avoid, method=method,
                    system_prompt=system_prompt, like=like, **settings)

    def compare(
        self,
        prompt_or_messages: PromptInput,
        methods: Sequence[Method | str],
        *,
        preference: PreferenceInput = None,
        avoid: AvoidInput = None,
        max_tokens: int = 256,
        temperature: float = 0.0,
        top_p: float = 1.0,
        top_k: int = 0,
        min_p: float = 0.0,
        repeat_penalty: float = 1.0,
        seed: int | None = None,
        stop: Sequence[str] | None = None,
        ignore_eos: bool = False,
        score_lanes: bool = False,
        trace: bool = False,
        opposite: bool | None = None,
        like: LikeInput = None,
        logit_bias: LogitBiasInput = None,
        presence_penalty: float = 0.0,
        frequency_penalty: float = 0.0,
    ) -> MultiGeneration:
        """Several methods answer the same prompt at once, every lane of every method in ONE
        batched decode per step; the prompt is evaluated once and copied to the other lanes.

        Yields ``(method index, text piece)``; ``run()`` returns one ``Result`` per method.
        With ``avoid``, Base and Pref may stand beside the steering methods as references:
        they read the lanes without the avoid sentence. One method (a name or an object) is a
        list of one.
        """
        if isinstance(methods, (str, Method)):  # not a list of its letters
            methods = [methods]
        if not isinstance(methods, Sequence):  # a number, a mapping: one sentence
            raise SettingsError("The methods must be a list of names or method objects (got "
                                f"{type(methods).__name__}).")
        if not methods:
            raise SettingsError("Give at least one method to compare.")
        request = Request.make(
            prompt_or_messages, preference=preference, avoid=avoid, method=methods[0],
            max_tokens=max_tokens, temperature=temperature, top_p=top_p, top_k=top_k,
            min_p=min_p, repeat_penalty=repeat_penalty, seed=seed, stop=stop,
            ignore_eos=ignore_eos, score_lanes=score_lanes, trace=trace, opposite=opposite,
            like=like, logit_bias=logit_bias, presence_penalty=presence_penalty,
            frequency_penalty=frequency_penalty,
        )
        return self.submit([request.replace(method=m) for m in methods])

    def submit(
        self,
        requests: Request | Sequence[Request],
        *,
        session: Session | None = None,
        on_finish: Callable[[list[Result]], None] | None = None,
    ) -> MultiGeneration:
        """Plan one request, or several that start together (a comparison: their prompts'
        shared prefixes are evaluated once), and return its generation.

        Everything is checked and tokenized now, in the caller's thread; the lanes are taken
        when the generation is first read (or ``start()``-ed) and given back when it ends.
        ``session`` (a chat's) keeps the lanes between calls; ``on_finish`` runs in the
        reading thread when the generation ends, whatever happened.
        """
        if isinstance(requests, Request):
            requests = [requests]
        elif isinstance(requests, (str, bytes, Mapping)) or not isinstance(requests, Iterable):
            raise SettingsError("submit takes a Request (Request.make(...)) or a list of them "
                                f"(got {type(requests).__name__}).")
        requests = list(requests)  # (a generator of requests too)
        for item in requests:
            if not isinstance(item, Request):
                raise SettingsError("submit takes a Request (Request.make(...)) or a list of "
                                    f"them (got a list holding {type(item).__name__}).")
        if not requests:
            raise SettingsError("Give at least one request.")
        if session is not None and len(requests) != 1:
            raise SettingsError("A chat answers one request at a time.")
        specs: list[LaneSpec] = []
        tracks: list[Track] = []
        tokens_cache: dict[tuple[Any, ...], list[int]] = {}
        calibration = self.calibration
        chosen = self._planned_methods(requests, calibration)
        for request, method in zip(requests, chosen, strict=True):
            if request.like:
                self.like_tokens(request.like)
            recommended = is_recommended(request.method)
            opposite = self._opposite(request, calibration)
            base_sentence = base_lane_text(request.preference, request.avoid, opposite)
            # A model without a template: its turn ends where it begins the next one,
            # unless the answer is to write on (ignore_eos) to max_tokens.
            writes_on = request.ignore_eos and request.grammar is None
            turn_marks = () if writes_on else self._backend.prompts.turn_marks(
                request.messages, request.system_prompt)
            kinds = _track_lanes(method, request.score_lanes)
            positions = []
            longest, longest_lane = 0, "base"
            for kind, key, backend, target in self._lane_targets(request, method, kinds,
                                                                 opposite, tokens_cache):
                if len(target) > longest:
                    longest, longest_lane = len(target), kind
                positions.append(len(specs))
                specs.append(LaneSpec(backend.context, f"{key[0]}:{key[1]}", target))
            if longest >= self.n_ctx:  # (a prompt of n_ctx - 1 tokens has room for one)
                raise self._too_long(request, longest, longest_lane == "base")
            # An answer stops ("length") where its lanes would leave the window of one lane:
            # the prompt and the answer fill at most its n_ctx cells.
            max_tokens = min(request.max_tokens, self.n_ctx - longest)
            stats = initial_stats({
                "method": method.label,
                "preference": preference_label(request.preference),
                "avoid": preference_label(request.avoid),
                "opposite": (request.avoid is None and base_sentence is not None
                             and _lane_key(method, "base", base_sentence)[1] == _AVOID),
                "like": len(request.like),
                "model": self.name,
                "recommended": recommended and len(method.lanes) >= 2,
                "calibration": self._calibration_summary(request, calibration)
                if recommended and len(method.lanes) >= 2 else None,
                "n_lanes": len(method.lanes),
                "n_prompt_tokens": longest,
                # what ends the answer at its length: the window, where it leaves fewer
                # tokens than max_tokens (the app says which cut an answer)
                "length_limit": "window" if max_tokens < request.max_tokens else "max_tokens",
                "n_threads": self.n_threads,
                "settings": {**method.settings(), **vars(request.sampling),
                             "seed": request.seed},
            })
            fluency = {kind: positions[i] for i, kind in enumerate(kinds)
                       if kind in ("base", "pref")}
            selector = method.selector(self.vocabulary.size, request.sampling, request.seed,
                                       self.vocabulary.end_of_generation_ids)
            tracks.append(Track(
                selector, positions[: len(method.lanes)], fluency, vocabulary=self.vocabulary,
                max_tokens=max_tokens, stop=[*request.stop, *turn_marks],
                turn_marks=turn_marks, ignore_eos=request.ignore_eos,
                plain_format=not self._backend.prompts.has_chat_template,
                stats=stats, request=request,
            ))
        job = Job(self._scheduler, specs, tracks, session)
        return MultiGeneration(job, [track.stats for track in tracks], on_finish, owner=self)

    @staticmethod
    def _opposite(request: Request, calibration: Calibration | None) -> bool:
        """Whether the base lane reads the preferences' opposites: as asked, else where the
        recommended steering's ``calibration`` (the one snapshot a plan reads) says so."""
        if request.opposite is not None:
            return request.opposite
        return bool(is_recommended(request.method) and calibration is not None
                    and calibration.opposite(_calibrated_preference(request)))

    def _lane_targets(self, request: Request, method: Method, kinds: Sequence[str],
                      opposite: bool, tokens_cache: dict[tuple[Any, ...], list[int]]
                      ) -> Iterator[tuple[str, tuple[str, str | None], _Backend, list[int]]]:
        """(kind, key, backend, prompt tokens) of each lane ``kinds`` names (the base lane
        reading the opposites when ``opposite``), tokenized once per distinct lane text across
        the requests ``tokens_cache`` is shared by."""
        preference_lanes = _preference_lanes(request)
        base_sentence = base_lane_text(request.preference, request.avoid, opposite)
        for kind in kinds:
            key = _lane_key(method, kind, base_sentence)
            backend = self._lane_backend(method, kind)
            cache_key = (key, tuple(tuple(m.items()) for m in request.messages),
                         request.preference, request.like, base_sentence,
                         request.system_prompt)
            if cache_key not in tokens_cache:
                lane = (preference_lanes.get(kind, preference_lanes["pref"]) if kind != "base"
                        else _LaneText(base_sentence if key[1] == _AVOID else None))
                tokens_cache[cache_key] = backend.prompts.lane_tokens(
                    request.messages, lane.sentence, system_prompt=request.system_prompt,
                    examples=lane.examples)
            yield kind, key, backend, tokens_cache[cache_key]

    def prompt_tokens(self, request: Request) -> int:
        """The tokens of ``request``'s longest lane prompt (each lane with what it reads: the
        preference and examples, the avoid text or opposites, the system prompt), as
        ``submit`` plans them: what must fit in the window with the answer."""
        calibration = self.calibration
        method = _weighted_methods([request], [_steered_method(request, calibration)])[0]
        kinds = _track_lanes(method, request.score_lanes)
        opposite = self._opposite(request, calibration)
        return max(len(target) for *_, target in
                   self._lane_targets(request, method, kinds, opposite, {}))

    def check(self, request: Request) -> None:
        """Refuse now what ``submit`` would refuse before tokenizing ``request``: a method
        that cannot read the avoid text or the opposite, more lanes than the model decodes at
        once (``TooManyLanesError``), a PAD reward model on disk whose header gives another
        vocabulary size (``SettingsError``; one that is not on this machine yet is checked
        when loaded). A chat checks its settings so when it is made."""
        methods = self._planned_methods([request], self.calibration, load_reward=False)
        for method in methods:
            spec = getattr(method, "reward_model", None)
            if spec is not None and str(spec) not in self._reward_backends:
                self._check_reward_vocabulary_size(str(spec))

    def _check_reward_vocabulary_size(self, spec: str) -> None:
        """The reward model's vocabulary size from its header alone (milliseconds, no
        weights loaded), where the file is already on this machine."""
        from localpref.gguf_header import read_gguf_header
        from localpref.models import resolve_model

        try:
            theirs = read_gguf_header(resolve_model(spec, download=False)).vocab_size
        except ModelError:  # not here yet, or not a model: said when it is loaded
            return
        mine = self._backend.loaded.vocabulary.size
        if theirs is not None and theirs != mine:
            raise SettingsError(_other_vocabulary(spec, theirs, mine), param="reward_model")

    def _planned_methods(self, requests: Sequence[Request], calibration: Calibration | None,
                         *, load_reward: bool = True) -> list[Method]:
        """The method each request is decoded with (the calibration's choice for the
        recommended steering, weighted preferences combined), checked against what the model
        can decode (``load_reward``: PAD's reward lanes too, which loads its reward model)."""
        chosen = [_steered_method(request, calibration) for request in requests]
        if any(request.avoid is not None for request in requests):
            _check_base_lane_use(chosen)
        # asked for (not the calibration's choice) and with a preference to oppose (without
        # one the steering is plain decoding, which the command line says)
        if any(request.opposite and request.preference is not None for request in requests):
            _check_base_lane_use(chosen, opposite_error, param="opposite")
        chosen = _weighted_methods(requests, chosen)
        self._check_lanes(requests, chosen, load_reward=load_reward)
        return chosen

    def _check_lanes(self, requests: Sequence[Request], methods: Sequence[Method], *,
                     load_reward: bool = True) -> None:
        """Refuse at once what no admission could hold, before any prompt is tokenized: more
        lanes of one context than it has (``TooManyLanesError``; a reward model's context
        only with ``load_reward``, as counting its lanes loads it)."""
        needed: dict[int, int] = {}
        contexts = {}
        for request, method in zip(requests, methods, strict=True):
            for kind in _track_lanes(method, request.score_lanes):
                if kind == "reward" and not load_reward:
                    continue
                context = self._lane_backend(method, kind).context
                contexts[id(context)] = context
                needed[id(context)] = needed.get(id(context), 0) + 1
        for key, count in needed.items():
            available = contexts[key].max_lanes
            if count > available:
                raise TooManyLanesError(
                    f"This needs {count} lanes at once and the model has {available}; "
                    "load it with a larger max_lanes.", needed=count, available=available)

    def _lane_backend(self, method: Method, kind: str) -> _Backend:
        """The backend that decodes a lane of this kind (PAD's reward lane has its own)."""
        if kind != "reward":
            return self._backend
        reward_path = getattr(method, "reward_model", None)
        if reward_path is None:
            raise SettingsError("This method has no reward model.")
        key = str(reward_path)
        with self._reward_lock:
            if key not in self._reward_backends:
                backend = self._load_reward_backend(key)
                self._reward_backends[key] = backend
                self._backends.append(backend)
            return self._reward_backends[key]

    def _load_reward_backend(self, spec: str) -> _Backend:
        from localpref.models import resolve_model

        self._check_reward_vocabulary_size(spec)  # (check()'s SettingsError, before the load)
        backend = self._open_backend(resolve_model(spec), self.system_prompt)
        mine, theirs = self._backend.loaded.vocabulary, backend.loaded.vocabulary
        # every token's text: one in 96 let a tokenizer that differs elsewhere score the
        # policy's tokens as other words
        same = mine.size == theirs.size and mine.token_texts() == theirs.token_texts()
        if not same:
            backend.close()
            raise ModelError(_other_vocabulary(spec, theirs.size, mine.size))
        return backend

    def close(self) -> None:
        """Stop the scheduler (requests still running end as cancelled), free the contexts
        and the weights. Safe to call twice."""
        self._finalizer()
        self._reward_backends.clear()

    def __enter__(self) -> Model:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _other_vocabulary(spec: str, theirs: int, mine: int) -> str:
    """The sentence for a PAD reward model whose tokenizer is not the model's: its size,
    or where the sizes are equal, its tokens' texts."""
    differs = (f"{theirs} tokens against {mine}" if theirs != mine
               else f"as many tokens, {mine}, but other texts for them")
    return (f"The reward model {spec} has another vocabulary ({differs}); PAD needs the same "
            "tokenizer.")


class Chat:
    """A conversation: each ``send`` adds a user turn and the steered answer.

    The lanes stay in the model's context between turns, so a turn evaluates only its new
    tokens, unless a waiting request reclaimed them (the next turn then evaluates the whole
    history again). Preference, method, system prompt and sampling settings may change between
    turns: the keywords of ``send``, ``stream`` and ``regenerate`` apply to that turn only.

    ``trim_history``: when the conversation no longer leaves the answer room for its
    ``max_tokens`` in the window (or a quarter of the window, if less), the oldest exchanges
    are left out of what the model reads (whole, from the first user message; the system
    prompt stays), down to the last message; ``left_out`` says how many messages the last
    answer did not read. The history keeps them.
    Without it, a conversation that does not fit is refused (``PromptTooLongError``).
    """

    def __init__(
        self,
        model: Model,
        *,
        preference: PreferenceInput = None,
        avoid: AvoidInput = None,
        method: Method | str | None = None,
        system_prompt: str | None = None,
        messages: Sequence[Any] = (),
        like: LikeInput = None,
        trim_history: bool = False,
        **settings: Any,
    ) -> None:
        if not isinstance(trim_history, bool):
            raise SettingsError(f"trim_history must be true or false (got {trim_history!r}).")
        if model.closed:  # as every other call on a closed model
            raise ModelError("The model is closed; load it again to use it.")
        self.model = model
        self.trim_history = trim_history
        #: Messages of the history the last answer did not read (``trim_history``).
        self.left_out = 0
        self.preference = preference
        self.like = like
        self.avoid = avoid
        self.method = resolve_method(method)
        if avoid_text(avoid) is not None:
            _check_base_lane_use([self.method])
        self.system_prompt = system_prompt
        self.settings: dict[str, Any] = {"max_tokens": 256, **settings}
        # validate now: the settings, and what the model can decode with them
        model.check(self._make_request([{"role": "user", "content": "check"}], {}))
        self.messages: list[dict[str, str]] = checked_messages(messages)
        self.results: list[Result] = []
        self._session = Session()
        #: the answer made and not yet ended (read, run or closed): the next turn waits
        self._answering: weakref.ref[Generation] | None = None
        #: held from reading the history to handing the answer over, so that two threads
        #: cannot both answer one history (the second overwrote the first's turn)
        self._turn_lock = threading.Lock()

    @property
    def holds_lanes(self) -> bool:
        """Whether the chat's lanes (its cached history) are still in the context."""
        return bool(self._session.lanes)

    def send(self, text: str, **overrides: Any) -> Result:
        """Add a user message and return the whole answer."""
        return self.stream(text, **overrides).run()

    def stream(self, text: str, **overrides: Any) -> Generation:
        """Add a user message and stream the answer; it joins the history when it ends,
        partial if cancelled."""
        if not isinstance(text, str):
            raise SettingsError(f"A message is a text (got {type(text).__name__}).")
        if not text.strip():
            raise SettingsError("The message is empty.")
        with self._turn_lock:
            self._check_free()
            conversation = [*self.messages, {"role": "user", "content": text}]
            return self._answer(conversation, overrides)

    def regenerate(self, **overrides: Any) -> Generation:
        """Answer the last user message again; the new answer replaces the last one when it
        ends (a regeneration refused, or closed before it wrote anything, changes nothing)."""
        with self._turn_lock:
            self._check_free()
            conversation = list(self.messages)
            replaces = bool(conversation) and conversation[-1]["role"] == "assistant"
            if replaces:
                conversation.pop()
            if not conversation:
                raise SettingsError("There is no message to answer again.")
            return self._answer(conversation, overrides, replaces=replaces)

    def _check_free(self) -> None:
        """``BusyError`` while the last answer has not ended and joined the history (one
        turn at a time: its result appears only once it joined, so a history read after
        this check holds it)."""
        answering = self._answering() if self._answering is not None else None
        if answering is not None and answering.result is None:  # made, not ended
            raise BusyError("This chat is already answering; read or close that answer "
                            "first.")

    def _make_request(self, conversation: list[dict[str, str]],
                      overrides: dict[str, Any]) -> Request:
        settings = {**self.settings, **overrides}
        known = Request.make.__kwdefaults__ or {}
        unknown = sorted(name for name in settings if name not in known)
        if unknown:
            raise SettingsError(f"Unknown chat setting {', '.join(map(repr, unknown))}; use "
                                f"one of {', '.join(sorted(known))}.")
        # the chat's own fields are its defaults; a turn's overrides win for that turn only
        for name in ("preference", "avoid", "method", "like", "system_prompt"):
            settings.setdefault(name, getattr(self, name))
        return Request.make(conversation, **settings)

    def _answer(self, conversation: list[dict[str, str]], overrides: dict[str, Any], *,
                replaces: bool = False) -> Generation:
        """The answer to ``conversation`` (the history and the new message), which joins the
        history when it ends (``replaces``: in place of the last answer). Called under
        ``_turn_lock`` after ``_check_free``."""

        def remember(results: list[Result]) -> None:  # once it ran, even cancelled
            if not results or (replaces and results[0].wrote_nothing):
                return  # (a regeneration stopped while it waited leaves the last answer)
            if replaces and self.results:
                self.results.pop()
            self.messages[:] = conversation
            self.messages.append({"role": "assistant", "content": results[0].text})
            self.results.append(results[0])

        request = self._make_request(conversation, overrides)
        read = self._window(request)
        while True:
            try:
                multi = self.model.submit(request.replace(messages=read), session=self._session,
                                          on_finish=remember)
            except PromptTooLongError:  # a preference or examples make a lane longer
                shorter = without_oldest_exchange(read) if self.trim_history else None
                if shorter is None:
                    raise
                read = shorter
                continue
            self.left_out = len(conversation) - len(read)
            generation = Generation(multi)
            self._answering = weakref.ref(generation)  # one dropped unread ends, as closed
            return generation

    def _window(self, request: Request) -> list[dict[str, str]]:
        """What the model reads of the request's conversation: all of it, or with
        ``trim_history`` its last exchanges that leave the answer its ``max_tokens`` in the
        window, or a quarter of it if less (at least the last message), measured on the
        longest lane (the preference lane reads the preference, examples and system prompt
        too)."""
        read = [dict(message) for message in request.messages]
        room = min(request.max_tokens, self.model.n_ctx // 4)
        while (self.trim_history and self.model.prompt_tokens(request.replace(messages=read))
               + room > self.model.n_ctx):
            shorter = without_oldest_exchange(read)
            if shorter is None:
                break
            read = shorter
        return read

    def close(self) -> None:
        """Give the lanes back to the model's context."""
        self.model.scheduler.release_session(self._session)


def without_oldest_exchange(messages: list[dict[str, str]]) -> list[dict[str, str]] | None:
    """``messages`` without their oldest exchange: the system messages at the start stay, the
    first message after them goes, and the ones after it up to the next user message; None
    when that would leave no message to answer."""
    start = 0
    while start < len(messages) and messages[start].get("role") == "system":
        start += 1
    end = start + 1
    while end < len(messages) and messages[end].get("role") != "user":
        end += 1
    if end >= len(messages):
        return None
    return [*messages[:start], *messages[end:]]


def _has_earlier_turns(messages: Sequence[Mapping[str, Any]]) -> bool:
    """Whether the conversation holds an answer before its last message (then it, not the
    message, fills the window)."""
    return any(message.get("role") == "assistant" for message in messages[:-1])


def _track_lanes(method: Method, score_lanes: bool) -> tuple[str, ...]:
    """The method's lanes, plus the other of base / pref when both are to be scored."""
    lanes = tuple(method.lanes)
    if score_lanes:
        lanes += tuple(kind for kind in ("pref", "base") if kind not in lanes)
    return lanes


def _steered_method(request: Request, calibration: Calibration | None) -> Method:
    """The method that answers ``request``: plain decoding when it names neither a preference,
    an avoid nor examples; the model's calibrated setting when it asks for the recommended steering
    (``methods.is_recommended``) and the model has one; else the request's own method. The
    one place a model's calibration replaces the recommended steering."""
    if (combine_preferences(request.preference) is None and avoid_text(request.avoid) is None
            and not request.like):
        return Base()
    if calibration is not None and is_recommended(request.method):
        return calibration.method(_calibrated_preference(request))
    return request.method


def _calibrated_preference(request: Request) -> object:
    """The preference a calibration's per-preference settings are looked up by: the
    request's, unless examples join it in the preference lane (then the overall setting)."""
    return None if request.like else request.preference


def _weighted_methods(requests: Sequence[Request], methods: Sequence[Method]) -> list[Method]:
    """The methods that steer with the requests' weighted preferences (``localpref.weights``),
    after refusing weights that no method would use (one sentence)."""
    lanes = [weighted_lanes(request.preference, like_sentence(request.like))
             for request in requests]
    weighted = [method for method, found in zip(methods, lanes, strict=True) if found]
    if weighted:
        check_weights(weighted, next(found for found in lanes if found))
    return [weighted_method(method, found) for method, found in zip(methods, lanes, strict=True)]


class _LaneText(NamedTuple):
    """What one lane reads beside the conversation: the sentence its system prompt gets, and
    the examples it reads as earlier exchanges (``examples.like_turns``)."""

    sentence: str | None
    examples: tuple[str, ...] = ()


def _preference_lanes(request: Request) -> dict[str, _LaneText]:
    """What each preference-side lane reads: ``"pref"`` (every preference, then the examples:
    the anchor), and with weights one per preference (``weights.lane_kind``; the examples are
    one more, the last)."""
    examples = like_sentence(request.like)
    anchor = " ".join(filter(None, [combine_preferences(request.preference), examples]))
    lanes = {"pref": _LaneText(anchor or None, request.like)}
    weighted = weighted_lanes(request.preference, examples) or []
    for index, lane in enumerate(weighted):
        reads_examples = bool(request.like) and index == len(weighted) - 1
        lanes[lane_kind(index)] = _LaneText(lane.sentence, request.like if reads_examples else ())
    return lanes


_AVOID = "avoid"


def _lane_key(method: Method, kind: str, avoid: str | None) -> tuple[str, str | None]:
    """Lanes with equal keys read the same tokens: a kind, and the reward model if any, or
    ``_AVOID`` for the base lane of a method of two lanes or more (weighted preferences decode
    n + 2) steering away from an avoid sentence or the preferences' opposites (Base and Pref
    beside it in a comparison read the plain lanes)."""
    if kind == "reward":
        return (kind, getattr(method, "reward_model", None))
    if kind == "base" and avoid is not None and len(method.lanes) >= 2:
        return (kind, _AVOID)
    return (kind, None)


def _check_base_lane_use(methods: Sequence[Method],
                         problem_of: Callable[[Method], str | None] = avoid_error,
                         param: str = "avoid") -> None:
    """Refuse what goes into the base lane (an avoid, or with ``opposite_error`` an opposite
    asked for) when no method would read it (one sentence, ``problem_of``'s; ``param``: the
    field, which the server names).

    One method must be able to use it; several (a comparison) may include Base and Pref as
    references, but never PAD with a reward model, which would silently ignore it.
    """
    problems = [problem_of(method) for method in methods]
    if len(methods) == 1 or all(problems):
        if problems[0]:
            raise SettingsError(problems[0], param=param)
    for method, problem in zip(methods, problems, strict=True):
        if problem and len(method.lanes) == 2:
            raise SettingsError(problem, param=param)


def load(
    model: str | Path | None = None,
    *,
    filename: str | None = None,
    n_gpu_layers: int = 0,
    n_ctx: int | None = None,
    max_lanes: int = DEFAULT_LANES,
    max_queued: int = 16,
    max_like_tokens: int = DEFAULT_MAX_LIKE_TOKENS,
    n_threads: int | None = None,
    n_threads_batch: int | None = None,
    system_prompt: str = DEFAULT_SYSTEM_PROMPT,
    progress: Callable[[int, int], None] | None = None,
    keep_cells: bool = False,
) -> Model:
    """Load a GGUF: the bundled SmolLM2-135M-Instruct (None), a local path, a catalog name,
    or a Hugging Face repo (``"org/repo"`` with ``filename="*Q4_K_M.gguf"``, or
    ``"org/repo:*Q4_K_M.gguf"``), used from the local cache when it is there.

    ``max_lanes`` lanes are decoded at once over every request; ``max_queued`` requests may
    wait for lanes, and the next one gets ``BusyError``; ``max_like_tokens`` bounds a
    request's examples (``like``); ``keep_cells`` keeps a finished request's cells for a
    prompt that starts the same way (``Model``). An empty name is refused: a script's unset
    variable would silently be the bundled model."""
    from localpref.models import refuse_an_empty_name, resolve_model

    refuse_an_empty_name(model)
    path = resolve_model(None if model is None else str(model), filename=filename,
                         progress=progress)
    return Model(path, n_gpu_layers=n_gpu_layers, n_ctx=n_ctx, max_lanes=max_lanes,
                 max_queued=max_queued, max_like_tokens=max_like_tokens,
                 n_threads=n_threads, n_threads_batch=n_threads_batch,
                 system_prompt=system_prompt, keep_cells=keep_cells)
