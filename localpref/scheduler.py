"""Many requests at once: one thread decodes every live request's lanes in one batch per step.

A model's ``Scheduler`` owns the decoding of its contexts (the model's, and a PAD reward
model's). Callers hand it ``Request``s planned into ``Job``s (lanes to open, their prompt
tokens, one ``Track`` per answer) and read the pieces from the job's ``Outbox``; the
scheduler's thread does everything that touches llama.cpp, in rounds:

1. **admit** waiting jobs, first come first served, while their lanes fit (``max_lanes``
   lanes per context); an admitted job's lanes are opened at once, so one round never admits
   more than fit and the rest wait in the queue; an idle chat's lanes, or those of a chat
   whose next turn waits behind the head, are reclaimed when the head of the queue needs
   them (its next turn evaluates its history again); an idle
   scheduler first waits ``GATHER_SECONDS`` for the requests sent with the first one, so
   that requests that arrive together start together;
2. **step**: the pending token of every lane of every running job goes into ONE batch per
   context, one ``llama_decode`` each;
3. right after, every track that was in the step does its per-token work on the fresh
   logits (``Track.step``: combine, sample, detokenize, stop) and posts its piece;
4. **prefill**: the oldest joining job evaluates one chunk of its prompt (at most
   ``n_batch`` tokens, one decode of its own), so the streams wait about one chunk per
   round, never a whole prompt; after its final prefill decode its first tokens are picked
   at once and it steps with the others from the next round. With nothing running, the
   whole prefill runs in one round.

Lanes stay bit-for-bit what they are alone whatever joins or leaves: the rows of a batch do
not interact, and each lane has a KV stream of its own (``engine.Context``).

The thread is a daemon started by the first request; it sleeps on a condition variable when
nothing is running or admissible and is woken by ``enqueue``, ``cancel``, a chat giving its
lanes back, and ``exclusive()`` ending. ``close()`` (``Model.close``, a ``weakref.finalize``
of the model, and so ``atexit``) stops it, joins it and ends every job still there.
"""

from __future__ import annotations

import collections
import contextlib
import itertools
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from localpref.decoding import End, Outbox, Piece, Result, Track, one_notice_per_step
from localpref.engine import Context, LaneState
from localpref.errors import BusyError, ModelError

#: Events kept in ``Scheduler.events`` (for tests and tools).
EVENT_LOG_SIZE = 4096
#: Seconds an idle scheduler waits after its first new request for others before it starts:
#: clients that send together (a server's parallel requests) arrive a millisecond or two
#: apart, each parsed and tokenized in turn, and start together only if they are queued
#: together (``Scheduler._prefill_together``). A lone request's first token waits this long.
GATHER_SECONDS = 0.003
#: The longest the decode thread waits for callers of ``exclusive()`` counted as waiting for
#: its lock (``Scheduler._let_exclusive_in``): a real one takes it at once.
EXCLUSIVE_WAIT_SECONDS = 1.0
#: How long closing waits for a scheduler's thread that was not yet marked started
#: (``_join_once_started``).
START_WAIT_SECONDS = 1.0


@dataclass
class LaneSpec:
    """One lane of a job: its context, its name in a chat's session, its prompt tokens."""

    context: Context
    name: str
    target: list[int]


class Session:
    """The lanes a chat keeps between turns (by name), reclaimable while it is idle."""

    def __init__(self) -> None:
        self.lanes: dict[str, tuple[Context, LaneState]] = {}
        self.busy = False
        self.closed = False
        self.idle_since = time.perf_counter()


@dataclass
class Event:
    """One decode of the scheduler: ``kind`` "prefill" (a job's chunk; ``final`` for the
    last; several jobs when they joined together) or "step" (every running job's tokens);
    ``jobs``: the ids of the jobs in it."""

    number: int
    kind: str
    jobs: tuple[int, ...]
    tokens: int
    final: bool = False


@dataclass(eq=False)
class Job:
    """A planned request (or a comparison: several tracks started together)."""

    scheduler: Scheduler
    lane_specs: list[LaneSpec]
    tracks: list[Track]
    session: Session | None = None
    id: int = 0
    outbox: Outbox = field(default_factory=Outbox)
    # runtime, touched by the scheduler thread only
    lanes: list[LaneState | None] = field(default_factory=list)
    views: list[np.ndarray | None] = field(default_factory=list)
    state: str = "new"  # new, queued, prefill, running, done
    submitted_at: float = 0.0
    admitted_at: float = 0.0
    prefill_tokens: int = 0
    prefill_chunks: int = 0
    #: tokens of the longest lane's prompt found in its cache (kept cells, a chat's history)
    cached_tokens: int = 0
    prefills: list[tuple[list[int], Iterator[tuple[int, bool]]]] = field(default_factory=list)
    _cancelled: threading.Event = field(default_factory=threading.Event)

    def enqueue(self, *, continuing: bool = False) -> None:
        """Hand the job to the scheduler (``BusyError`` if too many wait already, unless it
        is ``continuing`` a request already accepted: ``Scheduler.enqueue``)."""
        self.scheduler.enqueue(self, continuing=continuing)

    def cancel(self) -> None:
        """End the job at the next round (any thread)."""
        self._cancelled.set()
        self.scheduler.wake()

    @property
    def cancelled(self) -> bool:
        return self._cancelled.is_set()

    def can_wait(self) -> bool:
        """Whether the calling thread may wait for this job's end (not the scheduler's own,
        nor one inside the model's ``exclusive()`` block, which nothing is decoded in)."""
        return not (self.scheduler.in_own_thread() or self.scheduler.paused_by_caller())

    def wait_problem(self) -> str | None:
        """Why the calling thread cannot wait for this job's pieces, or None: inside the
        model's ``exclusive()`` block (a generation there waited for good). Queuing there is
        fine: the jobs start together when the block ends."""
        if self.scheduler.paused_by_caller():
            return ("This thread is inside the model's exclusive() block, where nothing is "
                    "decoded: read the answer after the block ends.")
        return None

    def cancelled_results(self) -> list[Result]:
        """Results of a job that never ran."""
        for track in self.tracks:
            if track.stop_reason is None:
                track.finish("cancelled")
            track.update_stats()
        return [track.result() for track in self.tracks]

    def needs(self) -> dict[Context, int]:
        """New lanes this job must open, per context (a chat's kept lanes are not new)."""
        counts: dict[Context, int] = collections.Counter()
        for spec in self.lane_specs:
            if self.session is None or spec.name not in self.session.lanes:
                counts[spec.context] += 1
        return counts

    def stale_lanes(self) -> list[tuple[str, Context, LaneState]]:
        """The lanes its chat kept that this turn does not read (the preference or avoid text
        changed between turns): its own to give back for the lanes it opens."""
        if self.session is None:
            return []
        named = {spec.name for spec in self.lane_specs}
        return [(name, context, lane) for name, (context, lane) in self.session.lanes.items()
                if name not in named]

    def spare_lanes(self) -> collections.Counter[Context]:
        """``stale_lanes`` per context."""
        return collections.Counter(context for _, context, _ in self.stale_lanes())


class Scheduler:
    """One decode thread for a model's contexts; see the module's docstring."""

    def __init__(self, *, max_queued: int = 16, keep_cells: bool = False,
                 gather_s: float = GATHER_SECONDS) -> None:
        self.max_queued = max_queued
        #: how long an idle scheduler waits for more requests after the first (``_gather``)
        self.gather_s = gather_s
        #: whether finished lanes keep their cells for a prompt that starts the same way
        #: (``Context.close_lane(keep=True)``; ``Model(keep_cells=...)`` says when)
        self.keep_cells = keep_cells
        self._cond = threading.Condition(threading.RLock())
        #: held by the thread for each round; ``exclusive()`` takes it to use a context
        self._work = threading.RLock()
        self._queue: collections.deque[Job] = collections.deque()
        self._live: list[Job] = []
        self._sessions: list[Session] = []
        self._thread: threading.Thread | None = None
        #: the thread inside ``exclusive()`` (None: none), and the callers waiting to enter it
        self._exclusive_owner: threading.Thread | None = None
        self._exclusive_waiting = 0
        self._stopping = False
        self._ids = itertools.count(1)
        self._decodes = itertools.count(1)
        #: the last decodes, oldest first (``Event``)
        self.events: collections.deque[Event] = collections.deque(maxlen=EVENT_LOG_SIZE)
        #: every decode since the start, by kind
        self.counters: collections.Counter[str] = collections.Counter()

    # -- any thread ---------------------------------------------------------------------

    def enqueue(self, job: Job, *, continuing: bool = False) -> None:
        """Queue ``job`` (``BusyError`` when more than ``max_queued`` would wait for lanes).
        A ``continuing`` job continues a request already accepted (a server's later choice of
        ``n``, queued when an earlier one ends): it is never refused for the queue's length,
        which requests sent after that one may have filled meanwhile (it waits its turn)."""
        with self._cond:
            if self._stopping:
                raise ModelError("The model is closed; load it again to generate.")
            waiting = self._waiting_for_lanes([*self._queue, job])  # this one included
            if waiting > self.max_queued and not continuing:  # (the free lanes' never waits)
                raise BusyError(
                    f"{waiting - 1} requests are already waiting for this model "
                    "(max_queued); try again when one has finished." if self.max_queued else
                    "Every lane of this model is busy and it keeps no request waiting "
                    "(max_queued 0); try again when one has finished."
                )
            job.id = next(self._ids)
            job.state = "queued"
            job.submitted_at = time.perf_counter()
            for track in job.tracks:
                track.stats["stop_reason"] = "queued"
            if job.session is not None:
                if job.session.busy:
                    raise BusyError("This chat is already answering; wait for its answer.")
                job.session.busy = True
                if job.session not in self._sessions:
                    self._sessions.append(job.session)
            self._queue.append(job)
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name="localpref-scheduler",
                                                daemon=True)
                self._thread.start()
            self._cond.notify_all()

    def _waiting_for_lanes(self, queue: Sequence[Job]) -> int:
        """The jobs of ``queue`` that the free lanes cannot take at the next admission (under
        _cond): jobs queued a moment ago, before the scheduler's thread ran (a burst, the
        gathering window), start as soon as it does, so they do not count against
        ``max_queued``. FIFO as ``_admit``: behind the first head that does not fit, every
        job waits. The admission is played out as ``_fits`` makes it: a head takes back the
        lanes of the chats ``_reclaimable_sessions`` names (idle, or whose turn waits behind
        it), a whole chat at a time, and a chat whose lanes went opens them all again."""
        running = {live.session for live in self._live if live.session is not None}
        turn_at = {job.session: index for index, job in reversed(list(enumerate(queue)))
                   if job.session is not None}
        kept = {session: collections.Counter(context for context, _ in session.lanes.values())
                for session in self._sessions if session.lanes and session not in running}
        taken: set[Session] = set()  # chats whose lanes an earlier head took back
        free: dict[Context, int] = collections.defaultdict(int)
        for context in {spec.context for job in queue for spec in job.lane_specs}:
            free[context] = context.free_lanes
        for index, job in enumerate(queue):
            if job.session in taken:
                needs = collections.Counter(spec.context for spec in job.lane_specs)
            else:
                needs = job.needs()
                for context, count in job.spare_lanes().items():  # its stale lanes, given back
                    free[context] += count
            kept.pop(job.session, None)  # (admitted, it answers: its lanes are its own)
            behind = sorted((session for session in kept
                             if not session.busy or turn_at.get(session, -1) > index),
                            key=lambda session: (session.busy, session.idle_since))
            for context, count in needs.items():
                for session in behind:
                    if free[context] >= count:
                        break
                    if kept.get(session, {}).get(context):
                        for lane_context, lanes in kept.pop(session).items():
                            free[lane_context] += lanes
                        taken.add(session)
                if free[context] < count:
                    return len(queue) - index
                free[context] -= count
        return 0

    def in_own_thread(self) -> bool:
        """Whether the caller runs in the scheduler's thread (a finalizer run by the GC)."""
        return self._thread is not None and self._thread is threading.current_thread()

    def wake(self) -> None:
        with self._cond:
            self._cond.notify_all()

    def release_session(self, session: Session) -> None:
        """Give a chat's lanes back (now if it is idle, else when its answer ends)."""
        with self._work, self._cond:
            session.closed = True
            if not session.busy:
                self._close_session_lanes(session)
            self._cond.notify_all()

    @contextlib.contextmanager
    def exclusive(self) -> Iterator[None]:
        """Nothing is decoded while the caller uses a context directly (between rounds).

        The caller gets in after the round being decoded: the thread waits for it before
        taking the next round (``_loop``). Without that, the thread took the lock again as
        soon as it let it go, and a caller waited until every request had ended."""
        waiting = [True]  # this caller is in _exclusive_waiting (until it has the lock)
        with self._cond:
            self._exclusive_waiting += 1
        try:
            # A with-statement, not acquire() then try: a KeyboardInterrupt raised the moment
            # the lock is taken (``_thread.interrupt_main`` sets a flag that is read there)
            # still releases it; between the two it kept the lock, and nothing was decoded
            # again. A Ctrl-C during the wait ends the wait, as it did.
            with self._work:
                self._stop_waiting(waiting)
                outer, self._exclusive_owner = self._exclusive_owner, threading.current_thread()
                try:
                    yield
                finally:
                    self._exclusive_owner = outer
        finally:
            self._stop_waiting(waiting)
        self.wake()

    def _stop_waiting(self, waiting: list[bool]) -> None:
        """Count an ``exclusive()`` caller out of the waiting ones, once."""
        with self._cond:
            if waiting[0]:
                waiting[0] = False
                self._exclusive_waiting = max(self._exclusive_waiting - 1, 0)
                self._cond.notify_all()

    def paused_by_caller(self) -> bool:
        """Whether the calling thread is inside ``exclusive()``: it cannot wait for an answer
        (``Job.wait_problem``), and ``close`` must not wait for a decode thread that waits for
        that block (it did, for good)."""
        return self._exclusive_owner is threading.current_thread()

    @property
    def queued(self) -> int:
        """Requests waiting for lanes."""
        with self._cond:
            return len(self._queue)

    @property
    def running(self) -> int:
        """Requests admitted and not finished (prefilling or stepping)."""
        with self._cond:
            return len(self._live)

    def close(self) -> None:
        """Stop the thread, join it, and end every job still waiting or running."""
        with self._cond:
            self._stopping = True
            thread = self._thread
            self._cond.notify_all()
        # (closed inside exclusive(), the caller holds what the thread waits for: it ends when
        # the block does, touching nothing; see _loop)
        if (thread is not None and thread is not threading.current_thread()
                and not self.paused_by_caller()):
            _join_once_started(thread)
        with self._work:
            with self._cond:
                jobs = [*self._live, *self._queue]
                self._live.clear()
                self._queue.clear()
            for job in jobs:
                self._end(job, "cancelled")
            for session in self._sessions:
                session.closed = True
                self._close_session_lanes(session)
            self._sessions.clear()

    # -- the thread ---------------------------------------------------------------------

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._stopping and not self._live and not self._admissible():
                    self._cond.wait()
                if not self._live:
                    self._gather()
                self._let_exclusive_in()
                if self._stopping:
                    return
            with self._work:
                if self._stopping:  # closed meanwhile, inside exclusive(): contexts may be gone
                    return
                self._round()

    def _let_exclusive_in(self) -> None:
        """Wait (under _cond) while callers of ``exclusive()`` wait for the lock, free until the
        next round: they take it within microseconds. A count still there after
        ``EXCLUSIVE_WAIT_SECONDS`` is a caller that is gone (a Ctrl-C between its count and
        the lock): it is dropped, rather than stop every round for good."""
        deadline = time.monotonic() + EXCLUSIVE_WAIT_SECONDS
        while self._exclusive_waiting > 0 and not self._stopping:
            left = deadline - time.monotonic()
            if left <= 0:
                self._exclusive_waiting = 0
                return
            self._cond.wait(left)

    def _gather(self) -> None:
        """Starting from idle: wait ``gather_s`` for the requests sent with the first one
        (called under _cond, which the wait releases), so that they are admitted in one round
        and, when short, prefilled in one decode instead of each waiting for the previous
        one's prefill and first step."""
        started = time.perf_counter()
        while not self._stopping:
            left = started + self.gather_s - time.perf_counter()
            if left <= 0:
                return
            self._cond.wait(left)

    def _admissible(self) -> bool:
        """Whether the head of the queue can start (or must be dropped) now."""
        if not self._queue:
            return False
        if any(job.cancelled for job in self._queue):
            return True
        return self._fits(self._queue[0], reclaim=False, dry_run=True)

    def _round(self) -> None:
        with self._cond:
            self._admit()
        for job in [job for job in self._live if job.cancelled]:
            self._end(job, "cancelled")
        stepped = self._step()
        self._prefill(any_running=stepped > 0)

    # -- admission ----------------------------------------------------------------------

    def _admit(self) -> list[Job]:
        """Move queue heads whose lanes fit to the live list and open their lanes (FIFO;
        called under _cond). The lanes each admitted job will take are counted before the
        next head is weighed, so the free lanes ``_fits`` weighs are always what is really
        left; the jobs admitted together open their lanes together (``_open``)."""
        admitted: list[Job] = []
        promised: collections.Counter[Context] = collections.Counter()
        for job in [job for job in self._queue if job.cancelled]:  # wherever they wait
            self._queue.remove(job)
            self._end(job, "cancelled")
        while self._queue:
            head = self._queue[0]
            if not self._fits(head, reclaim=True, dry_run=False, promised=promised):
                break
            self._queue.popleft()
            head.state = "prefill"
            head.admitted_at = time.perf_counter()
            self._live.append(head)
            admitted.append(head)
            promised.update(head.needs())
        if admitted:
            self._open(admitted)
        return admitted

    def _fits(self, job: Job, *, reclaim: bool, dry_run: bool,
              promised: Mapping[Context, int] | None = None) -> bool:
        """Whether the job's new lanes fit, counting the lanes of chats that are not running
        (``_reclaimable_sessions``) as reclaimable and the lanes ``promised`` to jobs admitted
        before it as taken; with ``reclaim`` (and not ``dry_run``) those chats' lanes are
        taken back."""
        promised = promised or {}
        needs, own = job.needs(), job.spare_lanes()
        if reclaim and not dry_run:
            self._close_stale_lanes(job)
            own.clear()
        idle = self._reclaimable_sessions(job)
        for context, count in needs.items():
            count += promised.get(context, 0)
            free = context.free_lanes + own[context]
            reclaimable = [s for s in idle if any(c is context for c, _ in s.lanes.values())]
            if free >= count:
                continue
            if dry_run or not reclaim:
                spare = sum(sum(1 for c, _ in s.lanes.values() if c is context)
                            for s in reclaimable)
                if free + spare < count:
                    return False
                continue
            for session in reclaimable:
                self._close_session_lanes(session)
                if context.free_lanes >= count:
                    break
            if context.free_lanes < count:
                return False
        return True

    def _reclaimable_sessions(self, job: Job) -> list[Session]:
        """The chats whose lanes ``job`` may take back, in the order they are taken: the idle
        ones, longest idle first, then those whose next turn waits in the queue behind it
        (that turn then evaluates its history again). Chats whose kept lanes the head cannot
        take while their own turns wait behind it would wait for each other for ever; only a
        running chat's lanes are never taken."""
        running = {live.session for live in self._live if live.session is not None}
        return sorted((s for s in self._sessions
                       if s.lanes and s is not job.session and s not in running),
                      key=lambda s: (s.busy, s.idle_since))

    def _close_stale_lanes(self, job: Job) -> None:
        """Give back the lanes ``job``'s chat kept that this turn does not read: a chat whose
        preference changed waited for ever for lanes its own last turn held."""
        if job.session is None:
            return
        for name, context, lane in job.stale_lanes():
            context.close_lane(lane, keep=self.keep_cells)
            del job.session.lanes[name]

    def _close_session_lanes(self, session: Session, *, keep: bool = True) -> None:
        """Give back an idle or closed chat's lanes, their cells kept (with ``keep_cells``)
        for a request that starts the same way (``Context.close_lane``)."""
        for context, lane in session.lanes.values():
            context.close_lane(lane, keep=keep and self.keep_cells)
        session.lanes.clear()
        if session.closed and session in self._sessions:
            self._sessions.remove(session)

    def _open(self, jobs: Sequence[Job]) -> None:
        """Open (or reuse) the lanes of jobs admitted together and start their prefills: the
        new lanes of a context are opened in one call, so that their streams are chosen
        together (``Context.open_lanes``)."""
        wanted: dict[Context, list[tuple[Job, int]]] = {}
        for job in jobs:
            job.lanes = [None] * len(job.lane_specs)
            for position, spec in enumerate(job.lane_specs):
                if job.session is not None and spec.name in job.session.lanes:
                    job.lanes[position] = job.session.lanes[spec.name][1]
                else:
                    wanted.setdefault(spec.context, []).append((job, position))
        failed: dict[Job, BaseException] = {}
        for context, places in wanted.items():
            prefixes = [job.lane_specs[p].target if self.keep_cells else None
                        for job, p in places]
            try:
                lanes = context.open_lanes(prefixes)
            except Exception as error:  # noqa: BLE001 - reaches these jobs' callers only
                failed.update((job, error) for job, _ in places)
                continue
            for (job, position), lane in zip(places, lanes, strict=True):
                job.lanes[position] = lane
                if job.session is not None:
                    job.session.lanes[job.lane_specs[position].name] = (context, lane)
        for job in jobs:
            if job in failed:
                self._end(job, "error", failed[job])
            else:
                self._start_prefill(job)

    def _start_prefill(self, job: Job) -> None:
        """The job's prefill generators, one per context, over its opened lanes."""
        try:
            job.views = [None] * len(job.lanes)
            longest = max(range(len(job.lanes)), key=lambda p: len(job.lane_specs[p].target))
            job.cached_tokens = Context.cached_tokens(job.lanes[longest],
                                                      job.lane_specs[longest].target)
            by_context: dict[Context, list[int]] = {}
            for position, spec in enumerate(job.lane_specs):
                by_context.setdefault(spec.context, []).append(position)
            job.prefills = [
                (positions, context.prefill_steps([job.lanes[p] for p in positions],
                                                  [job.lane_specs[p].target for p in positions]))
                for context, positions in by_context.items()
            ]
            for track in job.tracks:
                track.stats["queued_ms"] = (job.admitted_at - job.submitted_at) * 1000
                track.stats["stop_reason"] = "prefill"
        except Exception as error:  # noqa: BLE001 - reaches this job's caller only
            self._end(job, "error", error)

    # -- decoding -----------------------------------------------------------------------

    def _step(self) -> int:
        """One decode per context with every running track's pending token, then every such
        track's per-token work. Returns the number of tracks stepped."""
        batches: dict[Context, list[tuple[Job, int, int]]] = {}
        #: the tracks with a lane in each context's decode (a track once per context)
        tracks_on: dict[Context, dict[Track, None]] = {}
        stepping: list[tuple[Job, Track]] = []
        for job in self._live:
            if job.state != "running":
                continue
            for track in job.tracks:
                if track.pending is None:
                    continue
                stepping.append((job, track))
                for position in track.lanes:
                    context = job.lane_specs[position].context
                    batches.setdefault(context, []).append((job, position, track.pending))
                    tracks_on.setdefault(context, {})[track] = None
        if not stepping:
            return 0
        failed: list[tuple[Job, BaseException]] = []
        lanes_in_step = sum(len(batch) for batch in batches.values())
        for context, batch in batches.items():
            started = time.perf_counter()
            try:
                context.step([job.lanes[p] for job, p, _ in batch],  # type: ignore[misc]
                             [token for _, _, token in batch])
            except Exception as error:  # noqa: BLE001 - every job in this batch fails
                failed += [(job, error) for job, _, _ in batch]
                continue
            seconds = time.perf_counter() - started
            for output, (job, position, _) in enumerate(batch):
                job.views[position] = context.logits(output)
            for track in tracks_on[context]:
                track.note_decode(seconds, lanes_in_step)
        self._log("step", tuple(dict.fromkeys(job.id for job, _ in stepping)), lanes_in_step)
        for job, error in failed:
            if job.state != "done":
                self._end(job, "error", error)
        for other in self._live:  # tokens written while a joining prompt is evaluated
            if other.state == "prefill" and other.prefill_chunks > 0:
                for track in other.tracks:
                    track.stats["others_tokens_during_prefill"] += len(stepping)
        with one_notice_per_step():  # a reader's wake-up once, after every track's piece
            for job, track in stepping:
                if job.state == "running":
                    self._work_on(job, [track])
        return len(stepping)

    def _work_on(self, job: Job, tracks: Sequence[Track]) -> None:
        """The per-token work of ``tracks`` on the job's fresh logits; ends finished ones."""
        try:
            for track in tracks:
                index = job.tracks.index(track)
                piece = track.step(job.views)  # type: ignore[arg-type]
                if piece:
                    job.outbox.put(Piece(index, piece, len(track.tokens)))
                if track.pending is None and job.session is None:
                    self._give_back(job, track)
        except Exception as error:  # noqa: BLE001 - reaches this job's caller only
            self._end(job, "error", error)
            return
        if all(track.pending is None for track in job.tracks):
            self._end(job, "done")

    def _give_back(self, job: Job, track: Track) -> None:
        """Close a finished track's lanes (not a chat's) so that waiting jobs can start."""
        still_used = {p for other in job.tracks if other.pending is not None
                      for p in other.lanes}
        for position in track.lanes:
            lane = job.lanes[position]
            if lane is not None and position not in still_used:
                job.lane_specs[position].context.close_lane(lane, keep=self.keep_cells)
                job.lanes[position] = None

    def _prefill(self, *, any_running: bool) -> None:
        """One prefill decode of the oldest joining job (all of it when nothing runs), or of
        the jobs that joined together when one small decode holds them all."""
        if self._prefill_together():
            return
        while True:
            if self._stopping:  # closed: a long prompt stops at the next chunk, as cancelled
                return
            job = next((j for j in self._live if j.state == "prefill"), None)
            if job is None:
                return
            if job.cancelled:  # between chunks: a long prompt stops at the next one
                self._end(job, "cancelled")
                continue
            try:
                positions, steps = job.prefills[0]
                count, final = next(steps)
            except StopIteration:  # not reached: the final decode ends each generator
                job.prefills.pop(0)
                continue
            except Exception as error:  # noqa: BLE001 - reaches this job's caller only
                self._end(job, "error", error)
                continue
            job.prefill_tokens += count
            job.prefill_chunks += 1
            self._log("prefill", (job.id,), count, final)
            if final:
                context = job.lane_specs[positions[0]].context
                for output, position in enumerate(positions):
                    # a copy: another context's prefill or a step may decode before the pick
                    job.views[position] = context.logits(output).copy()
                job.prefills.pop(0)
                if not job.prefills:
                    self._start_running(job)
                    return  # it steps from the next round: the next joiner waits its turn
            if any_running:
                return

    def _prefill_together(self) -> bool:
        """Prefill the oldest joining jobs in ONE decode when none has started and their new
        rows together stay under ``ROW_BY_ROW_LIMIT`` (so each row is computed as alone, and
        every logit is what the jobs' own decodes give): requests that arrive together start
        together, as llama-server batches its slots' prompts, instead of the second waiting
        for the first one's prefill and first step. Returns whether it did."""
        group: list[tuple[Job, list[int], int]] = []  # job, its lanes' positions, new rows
        context: Context | None = None
        rows = 0
        for job in self._live:
            if job.state != "prefill":
                continue
            if job.prefill_chunks > 0 or len(job.prefills) != 1:
                break
            positions, _ = job.prefills[0]
            job_context = job.lane_specs[positions[0]].context
            new = sum(len(job.lane_specs[p].target)
                      - Context.cached_tokens(job.lanes[p], job.lane_specs[p].target)
                      for p in positions)  # type: ignore[arg-type]
            if context is not None and job_context is not context:
                break
            if rows + new > job_context.joined_rows_limit:
                break
            context, rows = job_context, rows + new
            group.append((job, positions, new))
        if context is None or len(group) < 2:
            return False
        lanes: list[LaneState] = []
        targets: list[list[int]] = []
        for job, positions, _ in group:
            _, steps = job.prefills.pop(0)
            steps.close()  # never started: it evaluated nothing
            lanes += [job.lanes[p] for p in positions]  # type: ignore[misc]
            targets += [job.lane_specs[p].target for p in positions]
        before = context.decodes
        try:
            context.prefill(lanes, targets)
        except Exception as error:  # noqa: BLE001 - the decode held every job of the group
            for job, _, _ in group:
                self._end(job, "error", error)
            return True
        output = 0
        for job, positions, new in group:
            for position in positions:
                # a copy: the next decode overwrites the logits
                job.views[position] = context.logits(output).copy()
                output += 1
            job.prefill_tokens += new
            job.prefill_chunks += context.decodes - before
        self._log("prefill", tuple(job.id for job, _, _ in group), rows, True)
        for job, _, _ in group:
            self._start_running(job)
        return True

    def _start_running(self, job: Job) -> None:
        now = time.perf_counter()
        for track in job.tracks:
            track.stats["prefill_ms"] = (now - job.admitted_at) * 1000
            track.stats["prefill_tokens"] = job.prefill_tokens
            track.stats["prefill_chunks"] = job.prefill_chunks
            track.stats["cached_tokens"] = job.cached_tokens
            track.stats["stop_reason"] = "running"
        job.state = "running"
        self._work_on(job, job.tracks)

    def _end(self, job: Job, outcome: str, error: BaseException | None = None) -> None:
        """Finish the job's tracks, give its lanes back, post its results."""
        if job.state == "done":
            return
        was_prefilling = job.state == "prefill"
        job.state = "done"
        for _, steps in job.prefills:
            steps.close()
        job.prefills = []
        now = time.perf_counter()
        for track in job.tracks:
            if track.stop_reason is None:
                track.finish("error" if outcome == "error" else "cancelled")
            if was_prefilling and job.admitted_at:
                track.stats["prefill_ms"] = (now - job.admitted_at) * 1000
                track.stats["prefill_tokens"] = job.prefill_tokens
                track.stats["prefill_chunks"] = job.prefill_chunks
                track.stats["cached_tokens"] = job.cached_tokens
            if job.submitted_at and not job.admitted_at:
                track.stats["queued_ms"] = (now - job.submitted_at) * 1000
            track.update_stats()
        # A prefill stopped halfway may leave a copy from another lane pending until the next
        # decode (``Context._copy_prefix``): such cells are not kept, nor an erring job's.
        keep = self.keep_cells and outcome != "error" and not was_prefilling
        if job.session is not None:
            job.session.busy = False
            job.session.idle_since = now
            if job.session.closed:
                self._close_session_lanes(job.session, keep=keep)
        else:
            for position, lane in enumerate(job.lanes):
                if lane is not None:
                    job.lane_specs[position].context.close_lane(lane, keep=keep)
                    job.lanes[position] = None
        with self._cond:
            if job in self._live:
                self._live.remove(job)
            self._cond.notify_all()
        job.outbox.put(End([track.result() for track in job.tracks], error))

    def _log(self, kind: str, jobs: tuple[int, ...], tokens: int, final: bool = False) -> None:
        self.events.append(Event(next(self._decodes), kind, jobs, tokens, final))
        self.counters[kind] += 1


def _join_once_started(thread: threading.Thread) -> None:
    """``thread.join()`` for the scheduler's thread, whose ``start()`` a Ctrl-C may have cut
    short in ``enqueue``: ``join`` raises until the thread marks itself started, which one
    that runs does in a moment (the model's close raised ``RuntimeError`` where the command
    was to exit 130), and one that never ran is not waited for past ``START_WAIT_SECONDS``."""
    deadline = time.monotonic() + START_WAIT_SECONDS
    while True:
        try:
            thread.join()
            return
        except RuntimeError:  # "cannot join thread before it is started"
            if time.monotonic() > deadline:
                return
            time.sleep(0.005)


def describe(scheduler: Scheduler) -> dict[str, Any]:
    """A plain summary of the scheduler's state (for tools)."""
    return {"queued": scheduler.queued, "running": scheduler.running,
            "decodes": dict(scheduler.counters)}
