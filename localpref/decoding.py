"""One answer being written (``Track``) and the generators that hand its pieces to the caller.

A *track* is one answer written by one method from its lanes. Its per-token work (combine the
lanes and sample, advance the text, stop strings, fluency, statistics) runs in the model's
scheduler thread (``localpref.scheduler``) right after the decode that produced the logits;
the pieces go to an ``Outbox`` that the caller's ``Generation`` / ``MultiGeneration`` reads.

Timing follows one definition everywhere:

- ``queued_ms``: waiting for lanes; ``prefill_ms``: bringing every lane's cache to the prompt
  (first logits included), from admission;
- ``decode_ms``: wall time from the track's first step to its last (other requests decode in
  the same batches meanwhile); ``tokens_per_s = (n_tokens - 1) / decode_ms`` (the first
  token comes from the prefill's logits; 0 for an answer of one token);
- ``steer_ms_per_token``: the track's own work per token (combining the lanes, sampling,
  fluency, detokenizing, stop checks, statistics); ``llama_decode_ms``: the decodes it was in;
- ``steer_laps_ms``: that work split into named laps (``pick``, ``advance``, ``fluency``,
  ``piece``, ``stats``), read by ``localpref bench --profile``.

A request's ``grammar`` (``localpref.grammar``) is applied by the track: the grammar's allowed
tokens are computed before each pick, the selector masks its scores with them last, and the
chosen token advances the grammar. ``top_logprobs`` makes the trace keep each token's
likeliest alternatives. Both make the selector write its whole scores every step (no greedy
one-pass fast path).

Fluency comes for free from lanes decoded anyway: ``fluency_base`` / ``fluency_pref`` are the
mean log-probability (nats per token) that the base / preference lane gives the tokens chosen.
"""

from __future__ import annotations

import codecs
import collections
import threading
import time
from collections.abc import Callable, Generator, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from localpref.engine import Vocabulary
from localpref.errors import ModelError
from localpref.grammar import GrammarMask
from localpref.kernels.arguments import AllMaskedError
from localpref.methods import Selector
from localpref.token_bias import TokenBias
from localpref.trace import StepRecorder, cut_trace

#: The named laps of a track's per-token work (``stats["steer_laps_ms"]``).
LAPS = ("pick", "advance", "fluency", "piece", "stats")


@dataclass
class Result:
    """A finished (or cancelled) generation: its text, its tokens and plain-dict stats.

    ``trace`` is the per-token trace (``localpref.trace``) when asked for, else None.
    """

    text: str
    tokens: list[int]
    stats: dict[str, Any] = field(default_factory=dict)
    trace: list[dict[str, Any]] | None = None

    @property
    def wrote_nothing(self) -> bool:
        """Stopped (cancelled, or failed) before any text: not an answer at all, where an end
        token first is an empty one (a first token whose text was held back, a space or a
        stop string's first letters, wrote nothing either)."""
        return not self.text and self.stats.get("stop_reason") in ("cancelled", "error")


def initial_stats(facts: dict[str, Any]) -> dict[str, Any]:
    """A track's stats with every key present from the start (readers may copy the dict
    from another thread while it streams: its keys never change, only their values)."""
    return {
        **facts,
        "n_tokens": 0, "queued_ms": 0.0, "prefill_ms": 0.0, "prefill_tokens": 0,
        "prefill_chunks": 0, "cached_tokens": 0, "others_tokens_during_prefill": 0,
        "decode_ms": 0.0,
        "tokens_per_s": 0.0, "steer_ms_per_token": 0.0, "llama_decode_ms": 0.0,
        "batch_lanes_mean": 0.0, "fluency_base": None, "fluency_pref": None,
        "changed_tokens": None, "mean_shift": None,
        "mean_strength": None, "steer_laps_ms": dict.fromkeys(LAPS, 0.0),
        "stop_reason": "queued",
    }


class Track:
    """One answer: its method's selector, the lanes it reads, and what it has written.

    ``lanes`` are positions in the request's lane list: the method's lanes in the order of
    ``method.lanes``, then any decoded only to be scored (``fluency_lanes``). ``step`` is the
    whole per-token work, called with the views of every lane of the request.
    """

    def __init__(
        self,
        selector: Selector,
        method_lanes: Sequence[int],
        fluency_lanes: dict[str, int] | None,
        *,
        vocabulary: Vocabulary,
        max_tokens: int,
        stop: Sequence[str] = (),
        turn_marks: Sequence[str] = (),
        plain_format: bool = False,
        ignore_eos: bool = False,
        stats: dict[str, Any],
        request: Any = None,
    ) -> None:
        self.selector = selector
        #: the ``localpref.request.Request`` this track answers (its ``trace``, ``avoid``)
        self.request = request
        self.method_lanes = list(method_lanes)
        #: lanes ("base", "pref") whose log-probability of each chosen token is recorded
        self.fluency_lanes = dict(fluency_lanes or {})
        #: every lane the track decodes: the method's, then any decoded only to be scored
        self.lanes = list(dict.fromkeys([*self.method_lanes, *self.fluency_lanes.values()]))
        #: per-token statistics: fluency, changed tokens, mean shift, and the trace if asked
        self.recorder = StepRecorder(selector, self.fluency_lanes,
                                     keep_trace=bool(getattr(request, "trace", False)),
                                     two_lane_method=len(self.method_lanes) >= 2)
        self.vocabulary = vocabulary
        self.max_tokens = max_tokens
        self.stop = [s for s in stop if s]
        #: a model without a chat template: the lines that begin a turn (``User:``), which are
        #: also stop strings; its answer is trimmed as a template's turn would end it
        #: (``trim_plain_turn``)
        self.turn_marks = [s for s in turn_marks if s]
        #: a model without a chat template (turn marks or not: ``ignore_eos`` writes on past
        #: them): the answer follows ``Assistant:``, whose space is the format's, not its own
        self.plain_format = plain_format or bool(self.turn_marks)
        self.ignore_eos = ignore_eos
        #: the answer's grammar (``request.grammar``): the selector's last mask every step
        self.grammar: GrammarMask | None = None
        grammar = getattr(request, "grammar", None)
        if grammar is not None:
            with vocabulary.reading():  # (made in the caller's thread: not on freed weights)
                self.grammar = GrammarMask(grammar, vocabulary.pointer, vocabulary.size)
            self.ignore_eos = False  # a complete answer ends at the end token it allows
        #: the answer's ``logit_bias`` and presence and frequency penalties
        #: (``localpref.token_bias``): added to copies of the track's lanes before anything
        #: reads them
        self.token_bias: TokenBias | None = None
        pairs = getattr(request, "logit_bias", ())
        presence = getattr(request, "presence_penalty", 0.0)
        frequency = getattr(request, "frequency_penalty", 0.0)
        if pairs or presence or frequency:
            self.token_bias = TokenBias(pairs, vocabulary.size, presence=presence,
                                        frequency=frequency)
        if self.grammar is not None:
            selector.mask = self.grammar.mask_into
            selector.full_scores = True
        #: a model without a chat template, greedy, under the end rule: the answer's turn ends
        #: where the preference lane's greedy pick begins or continues one
        #: (``_turn_end_like_pref``)
        self.turn_ends_like_pref = (bool(self.turn_marks) and self.grammar is None
                                    and selector.sampling.temperature == 0
                                    and selector.method.ends_like_pref)
        top_n = int(getattr(request, "top_logprobs", 0) or 0)
        if top_n and self.recorder.keep_trace:
            self.recorder.top_n = top_n
            selector.full_scores = True  # the alternatives are read from the whole scores
        self.stats = stats
        self.laps = stats["steer_laps_ms"]
        self.tokens: list[int] = []
        self.text = ""
        #: the whitespace a model without a template wrote before its answer (the space after
        #: ``Assistant:``): left out of ``text``, read when looking for stop strings
        self.format_space = ""
        self.emitted_chars = 0
        self.stop_reason: str | None = None
        self.decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        #: the token its lanes decode at the next step (None: nothing to decode)
        self.pending: int | None = None
        # timing, in seconds of time.perf_counter()
        self.first_step_at: float | None = None
        self.last_step_at: float | None = None
        self.steer_seconds = 0.0
        self.decode_seconds = 0.0
        self.decodes = 0
        self.batch_lanes_total = 0

    # -- the per-token work (scheduler thread, right after the decode of its logits) --------

    def step(self, views: Sequence[np.ndarray]) -> str:
        """Pick the next token from the lanes' logits and write it; returns the new visible
        text (pieces that could begin a stop string are held back). Sets ``pending`` to the
        token its lanes must decode, or None when the track has finished."""
        clock = time.perf_counter
        started = clock()
        if self.first_step_at is None:
            self.first_step_at = started
        if self.grammar is not None:
            self.grammar.allow()
        if self.token_bias is not None:
            views = self.token_bias.biased(views, self.lanes)
        lanes = [views[i] for i in self.method_lanes]
        try:
            token = self.selector.pick(lanes)
        except AllMaskedError:
            if self.grammar is None:
                _check_finite(lanes)
                raise
            self.selector.recent.append(-1)  # the pick's place, the allowed token's below
            token = -1
        if token < 0:  # the kernels' answer when every candidate is masked
            _check_finite(lanes)
            if self.grammar is None:
                raise ModelError("No token could be chosen at this step.")
        if self.turn_ends_like_pref and token >= 0:
            token = self._turn_end_like_pref(token, lanes[0])
        if self.grammar is not None:
            token = self._allowed(token, lanes)
        picked = clock()
        written = len(self.tokens)
        keep_going = self.advance(token)
        advanced = clock()
        if len(self.tokens) > written:
            self.recorder.record(views, token, len(self.text))
        measured = clock()
        piece = self.take_piece()
        pieced = clock()
        self.pending = token if keep_going else None
        laps = self.laps
        laps["pick"] += (picked - started) * 1000
        laps["advance"] += (advanced - picked) * 1000
        laps["fluency"] += (measured - advanced) * 1000
        laps["piece"] += (pieced - measured) * 1000
        self.last_step_at = pieced
        self.update_stats()
        ended = clock()
        laps["stats"] += (ended - pieced) * 1000
        self.steer_seconds += ended - started
        n_tokens = len(self.tokens)
        self.stats["steer_ms_per_token"] = self.steer_seconds * 1000 / n_tokens if n_tokens else 0.0
        return piece

    def _turn_end_like_pref(self, token: int, z_pref: np.ndarray) -> int:
        """The preference lane's greedy token in place of ``token`` where it begins or
        continues a turn (``turn_marks``, ``takes_turn``): without a chat template an answer
        ends at the next turn, which is then what an end token is to a chat template, and the
        end rule (``end_tokens="pref"``) ends the steered answer where the preference lane's
        greedy pick would end it (docs/steering.md, "End tokens"). Otherwise the contrast
        steered past the turn's newline, and a concise answer went on in a loop to
        ``max_tokens``."""
        selector = self.selector
        ending = selector.lane_pick(z_pref)  # (after the step's penalty, as the trace reads it)
        drawn = selector.drawn
        if ending == token or ending < 0 or (
                drawn is not None and drawn[1] is not None and ending not in drawn[1]):
            return token  # (a token PAD's candidates left out has no place in its trace)
        piece = self.vocabulary.piece(ending).decode("utf-8", "ignore")
        if not takes_turn(self.format_space + self.text, piece, self.turn_marks):
            return token
        selector.recent[-1] = ending
        return ending

    def _allowed(self, token: int, lanes: Sequence[np.ndarray]) -> int:
        """The token, advanced in the grammar. When the masks left no candidate (PAD's top-K
        or the plausibility mask kept only tokens the grammar forbids: the pick is then -1,
        or a forbidden token), the allowed token the method's first lane scores highest
        instead: a forbidden token never reaches the grammar, and the trace reads that lane's
        masked scores as the step's distribution. ``lanes``: the method's lanes' logits at
        this step (with the logit bias, if any)."""
        grammar = self.grammar
        assert grammar is not None
        if token < 0 or not grammar.allows(token):
            scores = np.array(lanes[0], dtype=np.float64)
            grammar.mask_into(scores)
            token = int(np.argmax(scores))
            self.selector.drawn = (scores, None)
            self.selector.recent[-1] = token
        grammar.accept(token)
        return token

    def advance(self, token: int) -> bool:
        """Add ``token``; True when its lanes must decode it (the track goes on)."""
        if not self.ignore_eos and self.vocabulary.ends_answer(token):
            self.finish("eos")
            return False
        self.tokens.append(token)
        if self.token_bias is not None:
            self.token_bias.note(token)
        self.text += self.decoder.decode(self.vocabulary.piece(token))
        if self.plain_format and not self.emitted_chars:
            answer = self.text.lstrip()  # "Assistant:" is followed by " Hello"
            self.format_space += self.text[:len(self.text) - len(answer)]
            self.text = answer
        # Stops are found in what the model wrote, the format's space included: "\nUser:"
        # as its first words is a turn it began, and " Write" a stop the client sent.
        stop_at = find_stop(self.format_space + self.text, self.stop)
        if stop_at is not None:
            self.text = self.text[:max(stop_at - len(self.format_space), 0)]
            self.finish("stop")
            return False
        if len(self.tokens) >= self.max_tokens:
            self.finish("length")
            return False
        return True

    def take_piece(self) -> str:
        """The text written since the last piece, minus what could begin a stop string (and,
        without a chat template, trailing whitespace: the end of a turn trims it)."""
        visible = len(self.text)
        if self.stop_reason is None:
            visible -= held_back(self.format_space + self.text, self.stop)
            if self.turn_marks:  # a turn may end here: trailing whitespace waits for more
                visible = len(self.text[:max(visible, 0)].rstrip())
        if visible <= self.emitted_chars:
            return ""
        piece = self.text[self.emitted_chars : visible]
        self.emitted_chars = visible
        return piece

    def note_decode(self, seconds: float, lanes_in_batch: int) -> None:
        """Count a decode this track's lanes were part of."""
        self.decode_seconds += seconds
        self.decodes += 1
        self.batch_lanes_total += lanes_in_batch

    def finish(self, reason: str) -> None:
        self.stop_reason = reason
        self.pending = None
        if reason not in ("stop", "cancelled", "error"):
            # The bytes of a character the last token began but no token finished (a cut at
            # max_tokens in an emoji) are dropped, not written as U+FFFD.
            self.decoder.errors = "ignore"
            self.text += self.decoder.decode(b"", final=True)
        if self.turn_marks:
            self.text = trim_plain_turn(self.text, self.emitted_chars, self.turn_marks)

    def update_stats(self) -> None:
        """Refresh the timing figures (frozen once the track has ended)."""
        stats = self.stats
        n_tokens = len(self.tokens)
        stats["n_tokens"] = n_tokens
        if self.first_step_at is not None and self.last_step_at is not None:
            seconds = self.last_step_at - self.first_step_at
            stats["decode_ms"] = seconds * 1000
            # the first token comes from the prefill's logits: the rate is of the tokens after
            # it, over the time between the first and the last (one token has none: 0)
            stats["tokens_per_s"] = ((n_tokens - 1) / seconds
                                     if n_tokens > 1 and seconds > 0 else 0.0)
        stats["steer_ms_per_token"] = self.steer_seconds * 1000 / n_tokens if n_tokens else 0.0
        stats["llama_decode_ms"] = self.decode_seconds * 1000
        stats["batch_lanes_mean"] = self.batch_lanes_total / self.decodes if self.decodes else 0.0
        stats.update(self.recorder.summary())
        stats["mean_strength"] = self.selector.mean_strength
        stats["stop_reason"] = self.stop_reason or "running"

    def result(self) -> Result:
        return Result(text=self.text, tokens=list(self.tokens), stats=self.stats,
                      trace=self.recorder.finish(self.text))


# ------------------------------------------------------------------------------------------
# From the scheduler thread to the caller
# ------------------------------------------------------------------------------------------


@dataclass
class Piece:
    """New text of one track; ``n_tokens``: the track's tokens when it was written."""

    track: int
    text: str
    n_tokens: int


@dataclass
class End:
    """The request has ended: one result per track, and the error that ended it, if any."""

    results: list[Result]
    error: BaseException | None = None


class _StepEnd(threading.local):
    """The callbacks waiting for the end of the step the calling thread is in (None: the
    thread is in no step)."""

    callbacks: dict[Callable[[], None], None] | None = None


_step_end = _StepEnd()


def _check_finite(lanes: Sequence[np.ndarray]) -> None:
    """Refuse a step whose lanes hold no finite logit at all (a corrupt model file): the
    kernels would pick no token, and a token id of -1 aborts llama.cpp."""
    if not any(np.isfinite(lane).any() for lane in lanes):
        raise ModelError("The model gave no finite score for any token; its file may be "
                         "corrupt.")


@contextmanager
def one_notice_per_step() -> Iterator[None]:
    """Around one decoding step's per-token work (the scheduler's thread): a callback given to
    ``at_step_end`` meanwhile runs once, when the step's last piece is out.

    An event-loop reader (the server) is woken by a write to the loop's self-pipe, and the
    loop then holds the GIL while it frames and sends what is ready, so a wake-up at each
    track's piece made the step wait for the loop once per track; one wake-up after the step
    waits once (docs/performance.md, "Twice more on an idle machine").
    """
    outer = _step_end.callbacks
    pending: dict[Callable[[], None], None] = {}
    _step_end.callbacks = pending
    try:
        yield
    finally:
        _step_end.callbacks = outer
        for callback in pending:
            callback()


def at_step_end(callback: Callable[[], None]) -> bool:
    """Run ``callback`` once when the calling thread's step ends (``one_notice_per_step``);
    False, and nothing done, outside a step: the caller runs it now."""
    pending = _step_end.callbacks
    if pending is None:
        return False
    pending[callback] = None
    return True


class Outbox:
    """A thread-safe queue of ``Piece`` and ``End`` items from the scheduler to one caller.

    ``quiet`` (set by ``run()``): the caller only waits for the end, so pieces do not wake it.
    ``listener`` (set by a caller that must not block, such as an event loop): called in the
    scheduler's thread after every item, so it must return at once.
    """

    def __init__(self) -> None:
        self._items: collections.deque[Piece | End] = collections.deque()
        self._ready = threading.Condition(threading.Lock())
        self.quiet = False
        self.ended = False
        self.listener: Callable[[], None] | None = None

    def put(self, item: Piece | End) -> None:
        with self._ready:
            self._items.append(item)
            if isinstance(item, End):
                self.ended = True
                self._ready.notify_all()
            elif not self.quiet:
                self._ready.notify_all()
        listener = self.listener
        if listener is not None:
            listener()

    def has_items(self) -> bool:
        """Whether ``get`` would return at once."""
        with self._ready:
            return bool(self._items)

    def get(self, timeout: float | None = None) -> Piece | End | None:
        """The next item (blocking; None after ``timeout`` seconds)."""
        with self._ready:
            if self.quiet:
                self._ready.wait_for(lambda: self.ended, timeout)
            else:
                self._ready.wait_for(lambda: self._items, timeout)
            return self._items.popleft() if self._items else None


class Job(Protocol):
    """What a generation needs from the scheduler's side of a request."""

    outbox: Outbox

    def enqueue(self, *, continuing: bool = False) -> None: ...

    def cancel(self) -> None: ...

    def can_wait(self) -> bool: ...

    def wait_problem(self) -> str | None: ...

    def cancelled_results(self) -> list[Result]: ...


class MultiGeneration(Generator[tuple[int, str], None, None]):
    """Several tracks decoded together; yields ``(track index, text piece)``.

    The request is handed to the scheduler when the first piece is asked for (or at
    ``start()``), so an unused generation holds nothing. ``results`` holds one ``Result``
    per track once it ends; each track's ``stats`` are updated every step, so a user
    interface can show tokens/s while it streams. ``cancel()`` may be called from any
    thread: nothing more is yielded, the request ends at the next step (or between prefill
    chunks), and each result keeps the text that was yielded (read with ``run()``, which
    yields nothing, the text written). ``on_finish`` runs in the
    caller's thread when the generation ends, whatever happened, once it was handed to the
    scheduler (not for one cancelled or closed before that).

    Its reading state is a ``_Reading`` that the generator inside refers to, never the
    generation itself: the generation is in no reference cycle, so a generation dropped
    unread (a ``for`` loop left with ``break``) is closed the moment its last reference
    goes, ending the request and giving its lanes back, not whenever the cycle collector
    runs.
    """

    def __init__(
        self,
        job: Job,
        track_stats: Sequence[dict[str, Any]],
        on_finish: Callable[[list[Result]], None] | None = None,
        owner: object = None,
    ) -> None:
        self.track_stats = list(track_stats)
        self._owner = owner  # the model: kept alive while its generation may be read
        self._reading = _Reading(job, len(self.track_stats), on_finish)
        self._inner = self._reading.pieces()
        #: held by the thread inside ``next()`` or ``close()``: a ``close()`` from another
        #: thread while none reads closes it whole (the results set before it returns, and a
        #: reader's next ``next()`` waits for that), and one while a thread reads cancels
        self._turn = threading.RLock()

    @property
    def results(self) -> list[Result]:
        return self._reading.results

    def start(self, *, continuing: bool = False) -> MultiGeneration:
        """Hand the request to the scheduler now (``BusyError`` if its queue is full).

        ``continuing``: it continues a request already accepted (the server's later choices
        of ``n``, queued as the earlier ones end): it is never refused for the queue's
        length, which requests sent after that one may have filled (it waits its turn)."""
        self._reading.start(continuing=continuing)
        return self

    def cancel(self) -> None:
        """End the generation at the next step; what was yielded is kept. Any thread."""
        self._reading.cancel()

    def on_ready(self, callback: Callable[[], None]) -> None:
        """Have ``callback`` called whenever a piece or the end arrives, for a reader that
        must not block (an event loop): it then calls ``next()`` while ``ready()``. The
        callback runs in the scheduler's thread and must return at once
        (``loop.call_soon_threadsafe``). Set it before ``start()``."""
        self._reading.job.outbox.listener = callback

    @property
    def ended(self) -> bool:
        """Whether the request has ended on the scheduler's side (its lanes are given back;
        ``next()`` may still give pieces written before)."""
        return self._reading.job.outbox.ended

    def ready(self) -> bool:
        """Whether ``next()`` returns now, without waiting: a piece or the end has arrived
        (once cancelled, only the end: the pieces before it are skipped; cancelled before
        ``start()``, at once)."""
        reading = self._reading
        outbox = reading.job.outbox
        if reading.cancelled.is_set():
            return not reading.started or outbox.ended
        return reading.started and outbox.has_items()

    def send(self, value: None) -> tuple[int, str]:
        self.check_turn()
        with self._turn:
            return self._inner.send(value)

    def throw(self, *args: Any) -> tuple[int, str]:  # type: ignore[override]
        with self._turn:
            return self._inner.throw(*args)

    def check_turn(self) -> None:
        """``ModelError`` before a read that would wait while the calling thread cannot:
        inside the model's ``exclusive()`` block nothing is decoded. A read waits when the
        answer has nothing new for it yet, or when another thread is reading (that read
        waits for a step: both hung). Refused here, outside the generator, the answer goes
        on and is read after the block (refused inside, it was cancelled); a read with
        something to give (a piece, the end) is not refused."""
        reading = self._reading
        if not reading.started:
            return  # (``pieces`` refuses it before anything is queued)
        other_reader = not self._turn.acquire(blocking=False)
        if not other_reader:
            self._turn.release()
        outbox = reading.job.outbox
        if other_reader or not (outbox.has_items() or outbox.ended):
            if (problem := reading.job.wait_problem()) is not None:
                raise ModelError(problem)

    def close(self) -> None:
        """Cancel (if it runs) and end the generation; ``results`` keep what was yielded
        (cancelled results when it never started). From another thread while one is inside
        ``next()``, it is ``cancel()``: the reader sees the end. From another thread between
        a reader's pieces, it ends the generation here, and the reader's next ``next()``
        ends (``results`` set; it raised "generator already executing", or ended before
        ``results`` were)."""
        if not self._turn.acquire(blocking=False):  # a thread is inside next()
            self.cancel()
            return
        try:
            if not self._reading.reading:  # never read: end it, as cancel() then run() would
                self._reading.cancelled.set()
                for _ in self._inner:
                    pass
            self._inner.close()
        except ValueError:  # "generator already executing": closed from inside its own read
            self.cancel()
        finally:
            self._turn.release()

    def __del__(self) -> None:
        self.close()

    def run(self) -> list[Result]:
        """Consume the whole generation and return one result per track."""
        self._reading.job.outbox.quiet = True
        for _ in self:
            pass
        return self.results


#: How long a reader waits for the scheduler before it looks for a signal: a KeyboardInterrupt
#: that another thread raises (``_thread.interrupt_main``, a timer's ``signal.raise_signal``)
#: only sets a flag, which a thread blocked in a wait without a timeout never reads, so
#: ``generate()`` was interrupted only when its whole answer was written.
SIGNAL_CHECK_SECONDS = 0.1


class _Reading:
    """What reading one ``MultiGeneration`` needs: its job, whether it was started or
    cancelled, the text yielded per track, and the results once it ends."""

    def __init__(self, job: Job, tracks: int,
                 on_finish: Callable[[list[Result]], None] | None) -> None:
        self.job = job
        self.on_finish = on_finish
        self.started = False
        self.reading = False
        self.cancelled = threading.Event()
        self.shown = [""] * tracks
        self.shown_tokens = [0] * tracks
        self.results: list[Result] = []

    def start(self, *, continuing: bool = False) -> None:
        if not self.started and not self.cancelled.is_set():
            self.job.enqueue(continuing=continuing)
            self.started = True

    def cancel(self) -> None:
        self.cancelled.set()
        if self.started:
            self.job.cancel()

    def pieces(self) -> Iterator[tuple[int, str]]:
        """The generation's pieces, ``(track index, text)``; its end sets ``results``."""
        self.reading = True
        end: End | None = None
        try:
            if self.cancelled.is_set():
                return
            if not self.started and (problem := self.job.wait_problem()) is not None:
                raise ModelError(problem)  # refused before it is queued: nothing to undo
            self.start()
            while True:
                item = self.job.outbox.get(timeout=SIGNAL_CHECK_SECONDS)
                if isinstance(item, End):
                    end = item
                    break
                if item is None and (problem := self.job.wait_problem()) is not None:
                    raise ModelError(problem)  # nothing more comes: it would wait for good
                if item is None or self.cancelled.is_set():
                    continue  # cancelled: nothing more is shown; wait for the end
                self.shown[item.track] += item.text
                self.shown_tokens[item.track] = item.n_tokens
                yield item.track, item.text
            if end.error is not None:
                raise end.error
        finally:
            early = end is None
            if early and self.started:
                self.job.cancel()  # closed or interrupted: end it and wait for the lanes
                while end is None and self.job.can_wait():
                    item = self.job.outbox.get(timeout=5.0)
                    if isinstance(item, End):
                        end = item
                    elif item is None and not _scheduler_can_answer():
                        break
            results = self.results_kept(end, early or self.cancelled.is_set())
            try:
                if self.on_finish is not None and self.started:  # never handed over: none
                    self.on_finish(results)
            finally:  # (after on_finish: a chat's next turn waits until this one is kept)
                self.results = results

    def results_kept(self, end: End | None, cut: bool) -> list[Result]:
        """The results; cut to what was yielded when the caller stopped reading early or
        the request failed (read by ``run()``, which yields nothing, a cancelled result keeps
        all it wrote)."""
        if end is None:
            return self.job.cancelled_results()
        results = end.results
        if (not cut and end.error is None) or self.job.outbox.quiet:
            return results  # ``run()``: nothing was yielded, all the text so far is kept
        for index, result in enumerate(results):
            if result.text != self.shown[index]:
                result.text = self.shown[index]
                result.tokens = result.tokens[: self.shown_tokens[index]]
                result.stats["n_tokens"] = len(result.tokens)
                if not result.tokens:  # none kept: no rate (it was the dropped tokens')
                    result.stats["tokens_per_s"] = 0.0
                if result.trace is not None:
                    result.trace = cut_trace(result.trace[: len(result.tokens)], result.text)
                if result.stats.get("stop_reason") != "error":
                    result.stats["stop_reason"] = "cancelled"
        return results


def _scheduler_can_answer() -> bool:
    """False while the interpreter shuts down (no thread will answer any more)."""
    import sys

    return not sys.is_finalizing()


class Generation(Generator[str, None, None]):
    """One answer as a generator of text pieces; ``close()`` it to cancel.

    ``result`` is set once it ends (finished, stopped or cancelled, the partial text kept);
    ``stats`` is updated every step. Once first read, the answer is written on the
    scheduler's side whether or not it is read on: a loop left early ends it only when the
    generation goes with it (no name holds it); one kept in a name is ended by ``close()``,
    or by leaving a ``with`` block around it.
    """

    def __init__(self, multi: MultiGeneration) -> None:
        self._multi = multi
        self.stats: dict[str, Any] = multi.track_stats[0]
        self._pieces = (piece for _, piece in multi)

    @property
    def result(self) -> Result | None:
        return self._multi.results[0] if self._multi.results else None

    def __enter__(self) -> Generation:
        return self

    def __exit__(self, *exc: object) -> None:
        """Leaving the block ends the answer where it is (``close``)."""
        self.close()

    def start(self, *, continuing: bool = False) -> Generation:
        """Hand the request to the scheduler now (``BusyError`` if its queue is full;
        ``continuing``: ``MultiGeneration.start``)."""
        self._multi.start(continuing=continuing)
        return self

    def send(self, value: None) -> str:
        self._multi.check_turn()
        with self._multi._turn:  # (the same lock: a close between pieces is waited for)
            return self._pieces.send(value)

    def throw(self, *args: Any) -> str:  # type: ignore[override]
        with self._multi._turn:
            return self._pieces.throw(*args)

    def close(self) -> None:
        """End the answer (``MultiGeneration.close``; from another thread while one is
        inside ``next()``, ``cancel()``)."""
        turn = self._multi._turn
        if not turn.acquire(blocking=False):  # a thread is inside next()
            self.cancel()
            return
        try:
            self._pieces.close()
            self._multi.close()
        except ValueError:  # "generator already executing": closed from inside its own read
            self.cancel()
        finally:
            turn.release()

    def cancel(self) -> None:
        """End the answer at the next step or prefill chunk; safe from any thread."""
        self._multi.cancel()

    def on_ready(self, callback: Callable[[], None]) -> None:
        """``MultiGeneration.on_ready``: a callback for each piece or the end."""
        self._multi.on_ready(callback)

    def ready(self) -> bool:
        """``MultiGeneration.ready``: whether ``next()`` returns without waiting."""
        return self._multi.ready()

    @property
    def ended(self) -> bool:
        """``MultiGeneration.ended``: whether the request has ended on the scheduler's side."""
        return self._multi.ended

    def run(self) -> Result:
        """Consume the whole generation and return its result."""
        self._multi.run()
        assert self.result is not None
        return self.result


def find_stop(text: str, stops: Sequence[str]) -> int | None:
    """Index where the earliest stop string starts in ``text``, or None."""
    found = [index for index in (text.find(stop) for stop in stops) if index >= 0]
    return min(found) if found else None


def trim_plain_turn(text: str, emitted: int, turn_marks: Sequence[str]) -> str:
    """An answer without a chat template, once it has ended: what follows its ``emitted``
    characters loses the start of a next turn the cut left (``"\nUser"`` at max_tokens)
    and its trailing whitespace, as a template's end token would have ended the turn. What
    was emitted stays (a stream cannot take it back)."""
    said, tail = text[:emitted], text[emitted:]
    while True:  # "\nUser \n": the newline, the space, then the next turn's start
        trimmed = tail[:max(len(tail) - held_back(said + tail, turn_marks), 0)].rstrip()
        if trimmed == tail:
            return said + tail
        tail = trimmed


def takes_turn(text: str, piece: str, turn_marks: Sequence[str]) -> bool:
    """Whether ``piece``, written after ``text``, begins a turn (newlines alone, ``"\\n"`` or
    ``"\\n\\n"``: a model may begin its next turn after either), takes one past its first
    word (``"\\nUser"``, ``"\\nYou"`` of the system line's ``"\\nYou are ..."``) or further,
    or completes one. A line's first letters alone (``"As"`` of ``"\\nAssistant:"``) do not:
    ordinary lines begin with them too."""
    if not piece:
        return False
    written = text + piece
    if find_stop(written, turn_marks) is not None:
        return True
    for mark in turn_marks:
        matched = _begun(written, mark)
        if matched and (not piece.strip("\n") or matched >= _first_word_end(mark)):
            return True
    return False


def _first_word_end(mark: str) -> int:
    """The length of a turn mark's newline and first word (``"\\nUser"`` of ``"\\nUser:"``)."""
    body = mark.lstrip("\n")
    word = len(body) - len(body.lstrip(" ")) + len(body.lstrip(" ").split(" ")[0].rstrip(":"))
    return len(mark) - len(body) + word


def held_back(text: str, stops: Sequence[str]) -> int:
    """How many trailing characters could still begin a stop string (not shown yet)."""
    return max((_begun(text, stop) for stop in stops), default=0)


def _begun(text: str, stop: str) -> int:
    """The length of the longest beginning of ``stop`` (not all of it) that ``text`` ends
    with; 0 for none."""
    return next((length for length in range(min(len(stop) - 1, len(text)), 0, -1)
                 if text.endswith(stop[:length])), 0)
