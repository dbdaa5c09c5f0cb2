"""One request: everything a front end asks of the model, as one frozen value.

The API's ``generate`` / ``stream`` / ``compare`` / ``Chat``, the command line, the app, the
server and the evaluation grid all build a ``Request`` (``Request.make`` takes the flat
keywords of the Contract) and hand it to ``Model.submit``; the scheduler reads nothing else.
A ``Request`` is validated when it is made, so a bad setting is one sentence in the caller's
thread, never an error inside the decoding thread.
"""

from __future__ import annotations

import dataclasses
import numbers
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from localpref.errors import SettingsError
from localpref.examples import LikeInput, checked_like
from localpref.methods import Method, Sampling, resolve_method
from localpref.presets import PreferenceInput, preference_sentences
from localpref.prompts import Message, as_messages
from localpref.token_bias import LogitBiasInput, checked_logit_bias, checked_penalty
from localpref.weights import Weights, unweighted_if_plain

PromptInput = str | Sequence[Message]
AvoidInput = str | Sequence[str] | None


def whole_number(value: object) -> bool:
    """Whether ``value`` is a whole number: an ``int`` or another integral type (NumPy's
    ``int64``, as a seed or a count from an array is), not ``True``/``False``, which Python
    counts as ints (``max_tokens=True`` would read as 1). Store ``int(value)``."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


@dataclass(frozen=True)
class Request:
    """What to write: the conversation, the steering, the sampling and when to stop.

    ``method`` is resolved when the request is made (``None`` or ``"recommended"``: the
    recommended steering). A ``preference`` mapping is weights (``localpref.weights``).
    ``avoid`` is text the base lane is told to avoid (two-lane methods; the prompt side lives
    in ``prompts``). ``system_prompt`` None is the model's.
    ``score_lanes`` also decodes the lane the method does not read (both fluency figures);
    ``trace`` records every token's lane log-probabilities; ``top_logprobs`` (with ``trace``)
    also each token's likeliest alternatives. ``opposite`` puts the opposites of
    the built-in preferences into the base lane when no avoid is given (``presets.OPPOSITES``);
    None is the steering's own choice (off unless the model's calibration chose it).
    ``like`` holds examples of the wanted style for the preference lane
    (``localpref.examples``).
    ``grammar`` (GBNF text, ``localpref.grammar``) restricts every token to what the grammar
    allows, after every other mask. ``logit_bias`` (token id -> bias from -100 to 100) and
    OpenAI's ``presence_penalty`` and ``frequency_penalty`` (-2 to 2, over the answer's
    tokens so far) are added to the lanes' logits before the method reads them
    (``localpref.token_bias``).
    """

    messages: tuple[Mapping[str, str], ...]
    preference: PreferenceInput = None
    avoid: AvoidInput = None
    method: Method = field(default=None)  # type: ignore[assignment]
    sampling: Sampling = field(default_factory=Sampling)
    max_tokens: int = 256
    seed: int | None = None
    stop: tuple[str, ...] = ()
    ignore_eos: bool = False
    system_prompt: str | None = None
    score_lanes: bool = False
    trace: bool = False
    opposite: bool | None = None
    like: tuple[str, ...] = ()
    top_logprobs: int = 0
    grammar: str | None = None
    logit_bias: tuple[tuple[int, float], ...] = ()
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0

    def __post_init__(self) -> None:
        set_field = object.__setattr__
        set_field(self, "messages", tuple(as_messages(self.messages)))
        if isinstance(self.preference, Mapping):  # a mapping is always weights
            set_field(self, "preference", unweighted_if_plain(Weights(self.preference)))
        elif isinstance(self.preference, list):
            set_field(self, "preference", tuple(self.preference))
        preference_sentences(self.preference)  # an empty preference is an error
        set_field(self, "avoid", _checked_avoid(self.avoid))
        check_not_avoided(self.preference, self.avoid)
        set_field(self, "like", checked_like(self.like))
        set_field(self, "method", resolve_method(self.method))
        if not isinstance(self.sampling, Sampling):
            raise SettingsError("The sampling settings must be a localpref.Sampling.")
        if not whole_number(self.max_tokens) or self.max_tokens < 1:
            raise SettingsError(
                f"Max tokens must be a whole number, 1 or more (got {self.max_tokens!r}).",
                param="max_tokens")
        if self.seed is not None and (not whole_number(self.seed) or self.seed < 0):
            raise SettingsError("The seed must be a whole number, 0 or more, or none for a "
                                f"random one (got {self.seed!r}).", param="seed")
        set_field(self, "max_tokens", int(self.max_tokens))
        set_field(self, "seed", None if self.seed is None else int(self.seed))
        stop = (self.stop,) if isinstance(self.stop, str) else tuple(self.stop or ())
        if not all(isinstance(item, str) for item in stop):
            raise SettingsError("Stop strings must be texts.", param="stop")
        set_field(self, "stop", tuple(item for item in stop if item))
        if self.system_prompt is not None and not isinstance(self.system_prompt, str):
            raise SettingsError("The system prompt must be a text.")
        if self.opposite is not None and not isinstance(self.opposite, bool):
            raise SettingsError(f"opposite must be true or false (got {self.opposite!r}).",
                                param="opposite")
        for name in ("ignore_eos", "score_lanes", "trace"):  # "no" would read as true
            value = getattr(self, name)
            if not isinstance(value, bool):
                raise SettingsError(f"{name} must be true or false (got {value!r}).",
                                    param=name)
        if not whole_number(self.top_logprobs) or not 0 <= self.top_logprobs <= 20:
            raise SettingsError("top_logprobs must be a whole number from 0 to 20 "
                                f"(got {self.top_logprobs!r}).", param="top_logprobs")
        set_field(self, "top_logprobs", int(self.top_logprobs))
        if self.grammar is not None and (not isinstance(self.grammar, str)
                                         or not self.grammar.strip()):
            raise SettingsError("The grammar must be a non-empty GBNF text.")
        set_field(self, "logit_bias", checked_logit_bias(self.logit_bias))
        for name in ("presence_penalty", "frequency_penalty"):
            set_field(self, name, checked_penalty(getattr(self, name), name))
        _check_unicode(self)

    @classmethod
    def make(
        cls,
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
        repeat_last_n: int = 64,
        seed: int | None = None,
        stop: Sequence[str] | str | None = None,
        ignore_eos: bool = False,
        system_prompt: str | None = None,
        score_lanes: bool = False,
        trace: bool = False,
        opposite: bool | None = None,
        like: LikeInput = None,
        logit_bias: LogitBiasInput = None,
        presence_penalty: float = 0.0,
        frequency_penalty: float = 0.0,
    ) -> Request:
        """A request from the Contract's flat keywords (the sampling ones become ``Sampling``)."""
        sampling = Sampling(temperature=temperature, top_p=top_p, top_k=top_k, min_p=min_p,
                            repeat_penalty=repeat_penalty, repeat_last_n=repeat_last_n)
        return cls(
            messages=tuple(as_messages(prompt_or_messages)), preference=preference, avoid=avoid,
            method=method, sampling=sampling, max_tokens=max_tokens, seed=seed,
            stop=_stop_strings(stop),
            ignore_eos=ignore_eos, system_prompt=system_prompt, score_lanes=score_lanes,
            trace=trace, opposite=opposite, like=checked_like(like),
            logit_bias=checked_logit_bias(logit_bias), presence_penalty=presence_penalty,
            frequency_penalty=frequency_penalty,
        )

    def replace(self, **changes: Any) -> Request:
        """A copy with some fields changed (sampling keywords such as ``temperature`` too)."""
        sampling_names = {f.name for f in dataclasses.fields(Sampling)}
        sampling_changes = {k: changes.pop(k) for k in list(changes) if k in sampling_names}
        if sampling_changes:
            changes["sampling"] = dataclasses.replace(
                changes.get("sampling", self.sampling), **sampling_changes)
        unknown = set(changes) - {f.name for f in dataclasses.fields(self)}
        if unknown:
            raise SettingsError(f"Unknown setting {sorted(unknown)[0]!r}.")
        return dataclasses.replace(self, **changes)


def _checked_avoid(avoid: AvoidInput) -> str | tuple[str, ...] | None:
    """``avoid`` as given (a list becomes a tuple); an empty text or list is an error."""
    if avoid is None:
        return None
    if not isinstance(avoid, (str, list, tuple)):  # a number, or weights avoid does not take
        raise SettingsError("Avoid is a text or a list of texts (it takes no weights).",
                            param="avoid")
    items = [avoid] if isinstance(avoid, str) else list(avoid)
    if not items:
        raise SettingsError("The avoid list is empty; give at least one thing to avoid.",
                            param="avoid")
    for item in items:
        if not isinstance(item, str) or not item.strip():
            raise SettingsError("What to avoid must be a non-empty text.", param="avoid")
    return avoid if isinstance(avoid, str) else tuple(items)


def check_not_avoided(preference: PreferenceInput,
                      avoid: str | Sequence[str] | None) -> None:
    """One sentence for a preference that is also what to avoid (the same text, a built-in
    name and its sentence, whatever the case): both lanes would read it, and steering toward
    and away from one thing changes nothing while calling itself steered."""
    if preference is None or avoid is None:
        return
    if isinstance(preference, Mapping):  # a preference at weight 0 is not steered toward
        items = [text for text, weight in preference.items() if weight]
    else:
        items = [preference] if isinstance(preference, str) else list(preference)
    if not items:  # every weight 0: nothing is steered toward
        return
    avoided = {sentence.casefold() for sentence in preference_sentences(avoid, noun="avoid")}
    for text, sentence in zip(items, preference_sentences(items), strict=True):
        if sentence.casefold() in avoided:
            raise SettingsError(f"{text.strip()!r} is both a preference and what to avoid; "
                                "steering toward and away from the same thing changes "
                                "nothing, so give it as one of them.", param="avoid")


def _check_unicode(request: Request) -> None:
    """One sentence when a text of the request cannot be written as UTF-8: a lone surrogate
    (U+D800 to U+DFFF), as JSON's ``\\ud800`` escapes or bytes a terminal could not decode
    give, would otherwise fail deep in tokenizing."""
    preference = request.preference
    texts: list[tuple[str, object]] = [
        ("message", message.get("content")) for message in request.messages]
    if isinstance(preference, Mapping):
        texts += [("preference", name) for name in preference]
    elif isinstance(preference, (tuple, list)):
        texts += [("preference", item) for item in preference]
    else:
        texts.append(("preference", preference))
    texts += [("avoid", item) for item in request.avoid or ()]
    texts += [("example", item) for item in request.like]
    texts += [("stop string", item) for item in request.stop]
    texts += [("system prompt", request.system_prompt), ("grammar", request.grammar)]
    fields = {"message": "messages", "preference": "preference", "avoid": "avoid",
              "example": "like", "stop string": "stop"}  # the field a client would fix
    for what, text in texts:
        code = lone_surrogate(text) if isinstance(text, str) else None
        if code is not None:
            raise SettingsError(not_unicode(what, code), param=fields.get(what))


def not_unicode(what: str, code: int) -> str:
    """The sentence for a text holding the lone surrogate ``code`` (``lone_surrogate``). One
    from U+DC80 to U+DCFF is most likely a byte Python could not read as UTF-8 (a command
    line's, a file name's: ``surrogateescape``), which the sentence then names (a JSON body's
    ``\\udce9`` is the same code point, so the sentence says what it may be, not that it is)."""
    byte = (f", what a byte 0x{code - 0xDC00:02X} that is not UTF-8 becomes when read as text"
            if 0xDC80 <= code <= 0xDCFF else "")
    return (f"The {what} is not valid Unicode text: it holds a lone surrogate "
            f"(U+{code:04X}{byte}); send UTF-8 text.")


def lone_surrogate(text: str) -> int | None:
    """The code point of the first lone surrogate in ``text`` (U+D800 to U+DFFF, which UTF-8
    cannot write), or None when ``text`` can be written as UTF-8."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as error:
        return ord(text[error.start])
    return None


def _stop_strings(stop: Sequence[str] | str | None) -> tuple[str, ...]:
    """``stop`` as a tuple of strings: one text or a list of texts."""
    items = [stop] if isinstance(stop, str) else stop or ()
    if not isinstance(items, Sequence) or not all(isinstance(item, str) for item in items):
        raise SettingsError(f"Stop strings must be a text or a list of texts (got {stop!r}).")
    return tuple(items)
