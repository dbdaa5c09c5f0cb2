"""The public API: ``load`` a model, then ``generate``, ``stream`` or ``chat`` with a preference.

One ``Model`` holds one copy of the weights and one llama.cpp context whose sequences are the
lanes of every generation and chat. Generations on one model run one at a time (a lock);
each takes its lanes from the context and gives them back when it ends, while a ``Chat`` keeps
its lanes, and so its KV cache, between turns.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from localpref.decoding import Generation, LaneGroup, LaneSet, MultiGeneration, Plan, Result, Track
from localpref.engine import Context, LaneState, LoadedModel
from localpref.errors import ModelError, PromptTooLongError, SettingsError
from localpref.methods import Base, Method, Sampling, avoid_error, resolve_method
from localpref.presets import (
    DEFAULT_SYSTEM_PROMPT,
    PreferenceInput,
    avoid_text,
    preference_label,
)
from localpref.presets import preference_text as combine_preferences
from localpref.prompts import Message, PromptBuilder, as_messages
from localpref.warmup import warmup

PromptInput = str | Sequence[Message]


class _Backend:
    """A loaded model with its context and prompt builder."""

    def __init__(self, loaded: LoadedModel, context: Context, system_prompt: str) -> None:
        self.loaded = loaded
        self.context = context
        self.prompts = PromptBuilder(loaded, system_prompt)

    def close(self) -> None:
        self.context.close()
        self.loaded.close()


class Model:
    """A GGUF model ready to generate with preference steering."""

    def __init__(
        self,
        path: str | Path,
        *,
        n_gpu_layers: int = 0,
        n_ctx: int | None = None,
        max_lanes: int = 4,
        n_batch: int = 512,
        n_threads: int | None = None,
        n_threads_batch: int | None = None,
        system_prompt: str = DEFAULT_SYSTEM_PROMPT,
    ) -> None:
        self._context_settings: dict[str, Any] = dict(
            n_ctx=n_ctx, max_lanes=max_lanes, n_batch=n_batch,
            n_threads=n_threads, n_threads_batch=n_threads_batch,
        )
        self.n_gpu_layers = n_gpu_layers
        self._backend = self._open_backend(Path(path), system_prompt)
        self._reward_backends: dict[str, _Backend] = {}
        self._lock = threading.Lock()
        warmup()  # the kernels' load time stays out of the first answer's figures

    def _open_backend(self, path: Path, system_prompt: str) -> _Backend:
        loaded = LoadedModel(path, n_gpu_layers=self.n_gpu_layers)
        settings = dict(self._context_settings)
        settings["n_ctx"] = settings["n_ctx"] or min(2048, loaded.n_ctx_train or 2048)
        try:
            context = Context(loaded, **settings)
        except Exception:
            loaded.close()
            raise
        return _Backend(loaded, context, system_prompt)

    # -- facts ------------------------------------------------------------------------------

    @property
    def name(self) -> str:
        """The model's name from its GGUF metadata (or its file name)."""
        return self._backend.loaded.name

    @property
    def path(self) -> Path:
        return self._backend.loaded.path

    @property
    def n_ctx(self) -> int:
        """Tokens one lane (one conversation) can hold."""
        return self._backend.context.n_ctx

    @property
    def n_threads(self) -> int:
        return self._backend.context.n_threads

    @property
    def vocabulary(self):  # noqa: ANN201 - engine type, kept out of the public signature
        return self._backend.loaded.vocabulary

    @property
    def context(self) -> Context:
        """The llama.cpp context whose sequences are the lanes (for benchmarks and tools)."""
        return self._backend.context

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
    ) -> dict[str, str]:
        """The rendered text of a two-lane method's lanes: ``{"pref": ..., "base": ...}``.

        The preference lane carries the preference sentence, the base lane the avoid sentence
        (DESIGN "Avoid"); for showing and checking what each lane reads.
        """
        messages = as_messages(prompt_or_messages)
        prompts = self._backend.prompts
        return {
            "pref": prompts.lane_text(messages, combine_preferences(preference),
                                      system_prompt=system_prompt),
            "base": prompts.lane_text(messages, avoid_text(avoid), system_prompt=system_prompt),
        }

    def count_tokens(self, prompt_or_messages: PromptInput) -> int:
        """Tokens of the prompt on the base lane (to check it fits before sending)."""
        messages = as_messages(prompt_or_messages)
        return len(self._backend.prompts.lane_tokens(messages, None))

    # -- generation ---------------------------------------------------------------------------

    def generate(
        self,
        prompt_or_messages: PromptInput,
        *,
        preference: PreferenceInput = None,
        avoid: PreferenceInput = None,
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
    ) -> Result:
        """Generate a whole answer steered toward ``preference`` (None: plain decoding).

        ``method=None`` (or ``"recommended"``) is the recommended steering
        (``methods.recommended_method()``); a method named without settings is the papers'.

        ``avoid`` (presets or free text, like ``preference``) goes into the base lane's system
        prompt, so the two-lane methods also steer away from it; neither a preference nor an
        avoid means plain decoding. ``trace=True`` fills ``Result.trace`` (``localpref.trace``).

        ``score_lanes=True`` also decodes the lane the method does not read (Base and Pref
        read one), so that ``stats`` has the fluency under both lanes (for evaluation).
        """
        return self.stream(
            prompt_or_messages, preference=preference, avoid=avoid, method=method,
            max_tokens=max_tokens, temperature=temperature, top_p=top_p, top_k=top_k,
            min_p=min_p, repeat_penalty=repeat_penalty, seed=seed,
            stop=stop, ignore_eos=ignore_eos, score_lanes=score_lanes, trace=trace,
        ).run()

    def stream(
        self,
        prompt_or_messages: PromptInput,
        *,
        preference: PreferenceInput = None,
        avoid: PreferenceInput = None,
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
    ) -> Generation:
        """Like ``generate``, as a generator of text pieces; ``close()`` it to cancel.

        The returned generation's ``result`` (text, tokens, stats) is set when it ends.
        """
        return Generation(self._start(
            as_messages(prompt_or_messages), preference, [method],
            Sampling(temperature=temperature, top_p=top_p, top_k=top_k, min_p=min_p,
                     repeat_penalty=repeat_penalty),
            max_tokens=max_tokens, seed=seed, stop=stop, ignore_eos=ignore_eos, owned_lanes=None,
            score_lanes=score_lanes, avoid=avoid, trace=trace,
        ))

    def chat(
        self,
        *,
        preference: PreferenceInput = None,
        avoid: PreferenceInput = None,
        method: Method | str | None = None,
        system_prompt: str | None = None,
        **settings: Any,
    ) -> Chat:
        """A multi-turn conversation that keeps its lanes' cache between turns."""
        return Chat(self, preference=preference, avoid=avoid, method=method,
                    system_prompt=system_prompt, **settings)

    def compare(
        self,
        prompt_or_messages: PromptInput,
        methods: Sequence[Method | str],
        *,
        preference: PreferenceInput = None,
        avoid: PreferenceInput = None,
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
    ) -> MultiGeneration:
        """Several methods answer the same prompt at once, every lane of every method in ONE
        batched decode per step; the prompt is evaluated once and copied to the other lanes.

        Yields ``(method index, text piece)``; ``run()`` returns one ``Result`` per method.
        With ``avoid``, Base and Pref may stand beside the steering methods as references:
        they read the lanes without the avoid sentence.
        """
        if not methods:
            raise SettingsError("Give at least one method to compare.")
        return self._start(
            as_messages(prompt_or_messages), preference, list(methods),
            Sampling(temperature=temperature, top_p=top_p, top_k=top_k, min_p=min_p,
                     repeat_penalty=repeat_penalty),
            max_tokens=max_tokens, seed=seed, stop=stop, ignore_eos=ignore_eos,
            owned_lanes=None, score_lanes=score_lanes, avoid=avoid, trace=trace,
        )

    def _start(
        self,
        messages: list[dict[str, str]],
        preference: PreferenceInput,
        methods: Sequence[Method | str],
        sampling: Sampling,
        *,
        max_tokens: int,
        seed: int | None,
        stop: Sequence[str] | str | None,
        ignore_eos: bool,
        owned_lanes: dict[str, tuple[Context, LaneState]] | None,
        system_prompt: str | None = None,
        score_lanes: bool = False,
        on_finish: Callable[[list[Result]], None] | None = None,
        avoid: PreferenceInput = None,
        trace: bool = False,
    ) -> MultiGeneration:
        """Validate everything and tokenize the lanes now; open lanes and decode lazily.

        ``owned_lanes`` (a chat's) keeps lanes between calls, keyed by lane kind; without
        it every track gets fresh lanes that are given back when the generation ends.
        """
        preference_sentence = combine_preferences(preference)
        avoid_sentence = avoid_text(avoid)
        chosen = [resolve_method(method) for method in methods]
        if preference_sentence is None and avoid_sentence is None:
            chosen = [Base() for _ in chosen]
        if avoid_sentence is not None:
            _check_avoid(chosen)
        if not isinstance(max_tokens, int) or max_tokens < 1:
            raise SettingsError(f"Max tokens must be a whole number, 1 or more (got {max_tokens}).")
        if isinstance(stop, str):
            stop = [stop]
        targets_by_kind: dict[tuple[str, str | None], list[int]] = {}
        for method in chosen:
            for kind in _track_lanes(method, score_lanes):
                key = _lane_key(method, kind, avoid_sentence)
                if key not in targets_by_kind:
                    sentence = preference_sentence if kind != "base" else (
                        avoid_sentence if key[1] == _AVOID else None)
                    targets_by_kind[key] = self._lane_backend(method, kind).prompts.lane_tokens(
                        messages, sentence, system_prompt=system_prompt,
                    )
        longest = max(len(target) for target in targets_by_kind.values())
        if longest + 1 >= self.n_ctx:
            raise PromptTooLongError(
                f"The prompt is {longest} tokens long; the context holds {self.n_ctx}."
            )
        # An answer stops ("length") where its lanes would leave the window of one lane.
        max_tokens = min(max_tokens, self.n_ctx - longest - 1)
        track_stats = [
            {
                "method": method.label,
                "preference": preference_label(preference),
                "avoid": preference_label(avoid),
                "model": self.name,
                "n_lanes": len(method.lanes),
                "n_prompt_tokens": longest,
                "n_threads": self.n_threads,
                "settings": {**method.settings(), **vars(sampling), "seed": seed},
            }
            for method in chosen
        ]
        held: list[bool] = []
        temporary: list[tuple[Context, LaneState]] = []

        def prepare() -> Plan:
            self._lock.acquire()
            held.append(True)
            groups: dict[int, LaneGroup] = {}
            tracks = []
            for method in chosen:
                lane_indices = []
                for kind in _track_lanes(method, score_lanes):
                    key = _lane_key(method, kind, avoid_sentence)
                    context = self._lane_backend(method, kind).context
                    if owned_lanes is None:
                        lane = context.open_lane()
                        temporary.append((context, lane))
                    else:
                        name = f"{key[0]}:{key[1]}"
                        if name not in owned_lanes:
                            owned_lanes[name] = (context, context.open_lane())
                        lane = owned_lanes[name][1]
                    group = groups.setdefault(id(context), LaneGroup(context))
                    lane_indices.append(sum(len(g.lanes) for g in groups.values()))
                    group.lanes.append(lane)
                    group.targets.append(targets_by_kind[key])
                    group.lane_indices.append(lane_indices[-1])
                kinds = _track_lanes(method, score_lanes)
                fluency = {kind: lane_indices[i] for i, kind in enumerate(kinds)
                           if kind in ("base", "pref")}
                selector = method.selector(self.vocabulary.size, sampling, seed,
                                           self.vocabulary.end_of_generation_ids)
                tracks.append(Track(selector, lane_indices[: len(method.lanes)], fluency,
                                    keep_trace=trace))
            return Plan(LaneSet(list(groups.values())), tracks)

        def finish(results: list[Result]) -> None:
            for context, lane in temporary:
                context.close_lane(lane)
            temporary.clear()
            if held:
                held.clear()
                self._lock.release()
            if on_finish is not None:
                on_finish(results)

        return MultiGeneration(
            prepare, self.vocabulary, max_tokens=max_tokens, stop=stop or (),
            ignore_eos=ignore_eos, track_stats=track_stats, on_finish=finish,
        )

    def _lane_backend(self, method: Method, kind: str) -> _Backend:
        """The backend that decodes a lane of this kind (PAD's reward lane has its own)."""
        if kind != "reward":
            return self._backend
        reward_path = getattr(method, "reward_model", None)
        if reward_path is None:
            raise SettingsError("This method has no reward model.")
        key = str(reward_path)
        if key not in self._reward_backends:
            self._reward_backends[key] = self._load_reward_backend(key)
        return self._reward_backends[key]

    def _load_reward_backend(self, spec: str) -> _Backend:
        from localpref.models import resolve_model

        backend = self._open_backend(resolve_model(spec), self.system_prompt)
        mine, theirs = self._backend.loaded.vocabulary, backend.loaded.vocabulary
        probe = range(0, mine.size, max(1, mine.size // 512))
        same = mine.size == theirs.size and all(
            mine.token_text(t) == theirs.token_text(t) for t in probe
        )
        if not same:
            backend.close()
            raise ModelError(
                f"The reward model {spec} has another vocabulary ({theirs.size} tokens against "
                f"{mine.size}); PAD needs the same tokenizer."
            )
        return backend

    def close(self) -> None:
        """Free the contexts and weights."""
        for backend in self._reward_backends.values():
            backend.close()
        self._reward_backends.clear()
        self._backend.close()

    def __enter__(self) -> Model:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Chat:
    """A conversation: each ``send`` adds a user turn and the steered answer.

    The lanes stay in the model's context between turns, so a turn evaluates only its new
    tokens. Preference, method and sampling settings may change between turns.
    """

    def __init__(
        self,
        model: Model,
        *,
        preference: PreferenceInput = None,
        avoid: PreferenceInput = None,
        method: Method | str | None = None,
        system_prompt: str | None = None,
        messages: Sequence[Message] = (),
        **settings: Any,
    ) -> None:
        self.model = model
        self.preference = preference
        self.avoid = avoid
        self.method = resolve_method(method)
        combine_preferences(preference)  # validate now
        if avoid_text(avoid) is not None:
            _check_avoid([self.method])
        self.system_prompt = system_prompt
        self.settings: dict[str, Any] = {"max_tokens": 256, **settings}
        self.messages: list[dict[str, str]] = [dict(m) for m in messages]
        self.results: list[Result] = []
        self._lanes: dict[str, tuple[Context, LaneState]] = {}

    def send(self, text: str, **overrides: Any) -> Result:
        """Add a user message and return the whole answer."""
        return self.stream(text, **overrides).run()

    def stream(self, text: str, **overrides: Any) -> Generation:
        """Add a user message and stream the answer; it joins the history when it ends,
        partial if cancelled."""
        if not text.strip():
            raise SettingsError("The message is empty.")
        conversation = [*self.messages, {"role": "user", "content": text}]
        return self._answer(conversation, overrides)

    def regenerate(self, **overrides: Any) -> Generation:
        """Answer the last user message again, replacing the last answer."""
        if self.messages and self.messages[-1]["role"] == "assistant":
            self.messages.pop()
            if self.results:
                self.results.pop()
        if not self.messages:
            raise SettingsError("There is no message to answer again.")
        return self._answer(list(self.messages), overrides)

    def _answer(self, conversation: list[dict[str, str]], overrides: dict[str, Any]) -> Generation:
        settings = {**self.settings, **overrides}
        sampling = Sampling(**{f.name: settings.pop(f.name) for f in dataclasses.fields(Sampling)
                               if f.name in settings})
        preference = settings.pop("preference", self.preference)
        avoid = settings.pop("avoid", self.avoid)
        method = settings.pop("method", self.method)

        def remember(results: list[Result]) -> None:
            if not results:
                return
            self.messages[:] = conversation
            self.messages.append({"role": "assistant", "content": results[0].text})
            self.results.append(results[0])

        return Generation(self.model._start(
            conversation, preference, [method], sampling,
            max_tokens=settings.pop("max_tokens"), seed=settings.pop("seed", None),
            stop=settings.pop("stop", None), ignore_eos=settings.pop("ignore_eos", False),
            owned_lanes=self._lanes, system_prompt=self.system_prompt, on_finish=remember,
            avoid=avoid, trace=settings.pop("trace", False),
        ))

    def close(self) -> None:
        """Give the lanes back to the model's context."""
        for context, lane in self._lanes.values():
            context.close_lane(lane)
        self._lanes.clear()


def _track_lanes(method: Method, score_lanes: bool) -> tuple[str, ...]:
    """The method's lanes, plus the other of base / pref when both are to be scored."""
    lanes = tuple(method.lanes)
    if score_lanes:
        lanes += tuple(kind for kind in ("pref", "base") if kind not in lanes)
    return lanes


_AVOID = "avoid"


def _lane_key(method: Method, kind: str, avoid: str | None) -> tuple[str, str | None]:
    """Lanes with equal keys read the same tokens: a kind, and the reward model if any, or
    ``_AVOID`` for the base lane of a two-lane method steering away from an avoid sentence
    (Base and Pref beside it in a comparison read the plain lanes)."""
    if kind == "reward":
        return (kind, getattr(method, "reward_model", None))
    if kind == "base" and avoid is not None and len(method.lanes) == 2:
        return (kind, _AVOID)
    return (kind, None)


def _check_avoid(methods: Sequence[Method]) -> None:
    """Refuse an avoid that no method would steer away from (one sentence).

    One method must be able to use it; several (a comparison) may include Base and Pref as
    references, but never PAD with a reward model, which would silently ignore it.
    """
    problems = [avoid_error(method) for method in methods]
    if len(methods) == 1 or all(problems):
        if problems[0]:
            raise SettingsError(problems[0])
    for method, problem in zip(methods, problems, strict=True):
        if problem and len(method.lanes) == 2:
            raise SettingsError(problem)


def load(
    model: str | Path | None = None,
    *,
    filename: str | None = None,
    n_gpu_layers: int = 0,
    n_ctx: int | None = None,
    max_lanes: int = 4,
    n_threads: int | None = None,
    n_threads_batch: int | None = None,
    system_prompt: str = DEFAULT_SYSTEM_PROMPT,
    progress: Callable[[int, int], None] | None = None,
) -> Model:
    """Load a GGUF: the bundled SmolLM2-135M-Instruct (None), a local path, a catalog name,
    or a Hugging Face repo (``"org/repo"`` with ``filename="*Q4_K_M.gguf"``, or
    ``"org/repo:*Q4_K_M.gguf"``), used from the local cache when it is there."""
    from localpref.models import resolve_model

    path = resolve_model(None if model is None else str(model), filename=filename,
                         progress=progress)
    return Model(path, n_gpu_layers=n_gpu_layers, n_ctx=n_ctx, max_lanes=max_lanes,
                 n_threads=n_threads, n_threads_batch=n_threads_batch,
                 system_prompt=system_prompt)
