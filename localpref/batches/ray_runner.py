"""A batch spread over Ray actors (``localpref batch --ray``); imported only when Ray is asked for.

Each actor loads the model once (``model`` must be a path or a name every node can resolve) and
answers lines through its own scheduler, ``parallel`` at a time (a threaded actor: each call is
one line, and concurrent calls decode in one batch). The driver hands lines to whichever actor
has room and writes each answer as it comes back (``Recorder``), so the answers file, the
resume and the final sort are those of a run on one machine.

An actor that dies is restarted by Ray (``max_restarts``) and its unfinished calls are run
again (``max_task_retries``): nothing here retries by hand. Without an address a local Ray is
started with the CPUs the actors ask for, and stopped at the end.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import os
import signal
import socket
import sys
import threading
import time
import warnings
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from localpref.batches.leftovers import (
    GRACE_SECONDS,
    alive,
    descendant_pids,
    end_ray_processes,
    is_ray_process,
)
from localpref.batches.lines import BatchLine
from localpref.batches.recorder import Recorder
from localpref.engine import available_cores
from localpref.errors import (
    LocalprefError,
    ModelError,
    RunFailedError,
    SettingsError,
    interrupted,
    one_line_warning,
)
from localpref.evaluation.parallel import answer

#: How often Ray restarts one actor that died before the run gives up (the answers so far stay).
MAX_RESTARTS = 4
#: Object store of a local Ray: answers are small JSON, so the minimum is plenty.
LOCAL_OBJECT_STORE_BYTES = 128 * 1024 * 1024


@dataclass(frozen=True)
class RaySettings:
    """Where and how wide: the cluster (None: a local Ray), the actors, and each one's model."""

    address: str | None = None
    actors: int = 2
    cpus_per_actor: float = 1.0
    parallel: int = 4
    #: lanes of each actor's model (None: two for each of ``parallel`` requests)
    lanes: int | None = None
    model: str | None = None
    n_ctx: int | None = None
    n_gpu_layers: int = 0
    #: llama.cpp threads of each actor (None: its CPUs, at least 1)
    n_threads: int | None = None
    #: the model's system prompt (None: the library's default)
    system_prompt: str | None = None

    @property
    def local(self) -> bool:
        """Whether the run starts a Ray of its own on this machine: no address, or Ray's
        word ``local`` for one."""
        return not self.address or self.address.strip().lower() == "local"


class ModelActor:
    """One Ray actor: the model loaded once; ``answer`` takes a batch line, ``generate`` a
    ``Request`` (the evaluation grid's)."""

    def __init__(self, settings: RaySettings, n_threads: int) -> None:
        from localpref.api import load
        from localpref.server.batch_answer import Answerer, served_id

        warnings.formatwarning = one_line_warning  # a notice is one line in the actor's log
        self.error: str | None = None
        self.answerer: Answerer | None = None
        options: dict[str, Any] = {}
        if settings.system_prompt is not None:
            options["system_prompt"] = settings.system_prompt
        try:
            loaded = load(settings.model, n_gpu_layers=settings.n_gpu_layers,
                          n_ctx=settings.n_ctx,
                          max_lanes=settings.lanes or 2 * settings.parallel,
                          max_queued=max(16, settings.parallel), n_threads=n_threads, **options)
            self.answerer = Answerer(loaded, served_id(loaded, settings.model))
        except LocalprefError as error:
            self.error = str(error)

    def ready(self) -> str | None:
        """None once the model is loaded, else the sentence that says why it is not."""
        return self.error

    def answer(self, line: dict[str, Any]) -> dict[str, Any] | None:
        assert self.answerer is not None
        return self.answerer.answer(BatchLine.from_json(line))

    def generate(self, request: Any) -> Any:
        """The ``Result`` of one ``Request``, or the ``LocalprefError`` it raised."""
        assert self.answerer is not None
        return answer(self.answerer.model, request)


def start_ray(settings: RaySettings) -> bool:
    """Connect to the cluster at ``settings.address``, or start a local Ray; True when this
    call started or connected it (so the run should shut it down). Ray already running in this
    process (a script's own ``ray.init``) is used as it is."""
    try:
        import ray
    except ImportError:
        raise SettingsError("--ray needs Ray: pip install 'localpref[ray]'.") from None
    if ray.is_initialized():
        return False
    check_start(settings)
    # log_to_driver off: what the actors print (their notices) stays in Ray's logs; Ray sent
    # it to this process's stdout, which is the run's
    options: dict[str, Any] = {"include_dashboard": False, "logging_level": "warning",
                               "configure_logging": False, "log_to_driver": False}
    try:
        with sigterm_kept(), interrupt_noticed(), ray_notices_quiet():
            if not settings.local:
                ray.init(address=settings.address, **options)
            else:
                ray.init(num_cpus=max(1, math.ceil(settings.actors * settings.cpus_per_actor)),
                         object_store_memory=LOCAL_OBJECT_STORE_BYTES, **options)
    except BaseException as error:
        # Whatever stopped it (Ctrl-C, a failure), a half-started Ray's processes would
        # outlive this one; a start that finished (an interrupt Python dropped in it,
        # noticed after) gives them their moment to end, as at the end of a run.
        stop_ray(settings, graceful=ray.is_initialized())
        if interrupted(error):  # Ray may wrap the KeyboardInterrupt in its own error
            raise KeyboardInterrupt from None
        if isinstance(error, ConnectionError | RuntimeError | ValueError):
            where = "a local Ray" if settings.local else settings.address
            token = (" (a cluster that asks for a token, as `ray start` does by default, "
                     "needs RAY_AUTH_MODE=token here too)" if not settings.local else "")
            raise SettingsError(f"Cannot start or reach Ray at {where}: "
                                f"{str(error).rstrip('.')}{token}.") from None
        raise
    return True


@contextlib.contextmanager
def sigterm_kept() -> Iterator[None]:
    """Around ``ray.init``, which puts Ray's own SIGTERM handler (``sys.exit(15)``, then a
    crash dump) in place of the process's: a handler the program set in Python (``localpref
    batch`` exits 143 and says it stopped, ``commands.interrupt.terminate_as_exit``) is put
    back, and a SIGTERM that came while Ray started is handed to it. A process without one
    keeps Ray's, which ends it through its ``finally`` blocks, as the default would not."""
    in_main = threading.current_thread() is threading.main_thread()
    handler = signal.getsignal(signal.SIGTERM) if in_main else None
    if not callable(handler):
        yield
        return
    try:
        yield
    except SystemExit as stop:
        signal.signal(signal.SIGTERM, handler)
        if stop.code == signal.SIGTERM:  # (the handler may have ignored SIGTERM from now on)
            handler(signal.SIGTERM, None)  # what the signal would have done had Ray left it
        raise
    except BaseException:
        signal.signal(signal.SIGTERM, handler)
        raise
    signal.signal(signal.SIGTERM, handler)


@contextlib.contextmanager
def interrupt_noticed() -> Iterator[None]:
    """Around ``ray.init``: a Ctrl-C whose KeyboardInterrupt is raised where Python drops
    exceptions ("Exception ignored in": logging's at-fork hook as Ray forks its processes) was
    lost, and the run went on to finish with status 0. The handler here notes each interrupt
    before raising it, and a start that returns after one is interrupted all the same. Only in
    the main thread, and only in place of Python's own handler."""
    in_main = threading.current_thread() is threading.main_thread()
    handler = signal.getsignal(signal.SIGINT) if in_main else None
    if handler is not signal.default_int_handler:
        yield
        return
    noticed: list[int] = []

    def note_and_interrupt(signum: int, frame: Any) -> None:
        noticed.append(signum)
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, note_and_interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, handler)
    if noticed:
        raise KeyboardInterrupt


@contextlib.contextmanager
def ray_notices_quiet() -> Iterator[None]:
    """Around ``ray.init``: Ray's logger (which ``import ray`` gives a handler of its own on
    stderr) says only errors, so a run's stderr holds its own lines (``--quiet``: the summary
    alone), not Ray's notices (that a local cluster uses token authentication)."""
    ray_logger = logging.getLogger("ray")
    level = ray_logger.level
    ray_logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        ray_logger.setLevel(level)


#: Seconds to wait for a cluster's port to answer before saying it cannot be reached (Ray's own
#: client retries for minutes).
REACH_SECONDS = 5.0


def check_start(settings: RaySettings) -> None:
    """One sentence for settings Ray could not start with: more local actors than cores
    (``check_local_actors``), or a cluster's address that is not one or where nothing listens
    (``check_reachable``); nothing when this process's Ray already runs (a script's own
    ``ray.init``, which ``start_ray`` uses as it is). Ray is not imported for it."""
    running = sys.modules.get("ray")
    if running is not None and running.is_initialized():
        return
    if settings.local:
        check_local_actors(settings.actors)
    else:
        check_reachable(str(settings.address))


def check_reachable(address: str) -> None:
    """One sentence unless ``address`` is ``HOST:PORT`` or ``ray://HOST:PORT`` with something
    listening there, or one of Ray's words, left to Ray: ``auto`` (the cluster ``RAY_ADDRESS``
    names, else the last one started on this machine) and ``local`` (a new local cluster)."""
    if address.strip().lower() in ("auto", "local"):
        return
    host, _, port = address.removeprefix("ray://").rstrip("/").rpartition(":")
    if (not host.strip("[]") or "/" in host or not port.isdigit()
            or not 0 < int(port) < 65536):
        raise SettingsError(f"A Ray address is HOST:PORT (the head's port, 6379 unless it "
                            f"was started with another), ray://HOST:PORT, auto or local, not "
                            f"'{address}'.")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=REACH_SECONDS).close()
    except OSError as error:
        reason = error.strerror or type(error).__name__
        raise SettingsError(f"Cannot reach Ray at {address}: {reason} (is the cluster's head "
                            "running, and is this its address?).") from None


def local_actor_limit() -> int:
    """The most actors a local Ray takes: the cores this process may use (2 on one core, the
    default): each actor is a process with its own copy of the model, and Ray started them
    all at once (64 on two cores took minutes and answered nothing)."""
    return max(available_cores(), RaySettings.actors)


def check_local_actors(actors: int) -> None:
    """One sentence when a local Ray is asked for more actors than ``local_actor_limit``."""
    limit = local_actor_limit()
    if actors > limit:
        cores = available_cores()
        raise SettingsError(f"A local Ray runs its actors on the {cores} "
                            f"core{'s' if cores != 1 else ''} this process may use, so "
                            f"{actors:,} actors are too many: give {limit} or fewer, or a Ray "
                            "cluster's address.")


def check_fits(cpus_per_actor: float) -> None:
    """One sentence when no node of the cluster has ``cpus_per_actor`` CPUs: Ray would wait
    for one forever."""
    import ray

    largest = max((node.get("Resources", {}).get("CPU", 0.0)
                   for node in ray.nodes() if node.get("Alive")), default=0.0)
    if largest < cpus_per_actor:
        raise SettingsError(f"No node of the Ray cluster has {cpus_per_actor:g} CPUs for an "
                            f"actor (the largest has {largest:g}); give a smaller "
                            "--ray-cpus-per-actor.")


#: Ray's unit of a resource: a CPU is 10,000 of them (its ``ray_constants`` resource unit
#: scaling), so actors of 0.1 CPU fit ten to a CPU.
RAY_CPU_UNITS = 10_000


def room_for_actors(cpus_per_actor: float) -> int:
    """How many actors of ``cpus_per_actor`` CPUs the cluster's live nodes hold together (an
    actor runs on one node): Ray waits for good for an actor it has no room for (a script's
    own ``ray.init(num_cpus=1)``, a cluster smaller than ``--ray-actors``)."""
    import ray

    def units(cpus: float) -> int:  # (Ray counts CPUs in ten-thousandths: 1.0 // 0.1 is 9.0)
        return round(cpus * RAY_CPU_UNITS)

    return sum(units(node.get("Resources", {}).get("CPU", 0.0)) // units(cpus_per_actor)
               for node in ray.nodes() if node.get("Alive"))


def shutdown_local_ray(*, graceful: bool = True) -> None:
    """Stop the Ray started here: ``ray.shutdown()``, ``GRACE_SECONDS`` for its processes to
    end (with ``graceful``: a Ray that finished starting), then ``end_ray_processes`` for
    what is left. Stopped during ``ray.init``, ``ray.shutdown()`` stops nothing (Ray has not
    recorded its processes yet), so they are ended at once."""
    import ray

    ours = [pid for pid in descendant_pids(os.getpid()) if is_ray_process(pid)]
    ray.shutdown()
    deadline = time.monotonic() + (GRACE_SECONDS if graceful else 0.0)
    while any(alive(pid) for pid in ours) and time.monotonic() < deadline:
        time.sleep(0.05)
    end_ray_processes(os.getpid())


def stop_ray(settings: RaySettings, *, graceful: bool = True) -> None:
    """Leave the Ray that ``start_ray`` started or joined: a cluster's connection is closed;
    a local Ray is shut down with every process it left (``leftovers``); ``graceful``: its
    processes get a moment to end by themselves (not for a start that was interrupted)."""
    if not settings.local:
        import ray

        ray.shutdown()
    else:
        shutdown_local_ray(graceful=graceful)


class RayPool:
    """Ray started (or joined) and ``settings.actors`` actors with the model loaded; ``map``
    runs items on them, ``settings.parallel`` at a time on each. A context manager: leaving it
    stops the actors (and the Ray it started)."""

    def __init__(self, settings: RaySettings) -> None:
        if settings.local and settings.model and Path(settings.model).exists():
            # A local Ray's workers need not share this process's working directory.
            settings = dataclasses.replace(settings, model=str(Path(settings.model).resolve()))
        self.settings = settings
        self.actors: list[Any] = []
        #: the calls ``map`` is waiting for: (the actor's index, the item) by Ray's reference
        self.in_flight: dict[Any, tuple[int, Any]] = {}
        self._started = False

    def __enter__(self) -> RayPool:
        if round(self.settings.cpus_per_actor * RAY_CPU_UNITS) < 1:  # (Ray would refuse it)
            raise SettingsError(f"An actor needs at least {1 / RAY_CPU_UNITS:g} CPU, the "
                                "least Ray counts (got "
                                f"{self.settings.cpus_per_actor:g}); give a larger "
                                "--ray-cpus-per-actor.")
        self._started = start_ray(self.settings)
        try:
            check_fits(self.settings.cpus_per_actor)
            room = room_for_actors(self.settings.cpus_per_actor)
            if room < self.settings.actors:  # (Ray would wait for the others' CPUs forever)
                print(f"localpref: the Ray cluster's nodes have room for {room} actor"
                      f"{'s' if room != 1 else ''} of {self.settings.cpus_per_actor:g} CPU"
                      f"{'s' if self.settings.cpus_per_actor != 1 else ''}, not "
                      f"{self.settings.actors}; running {room}.", file=sys.stderr)
                self.settings = dataclasses.replace(self.settings, actors=room)
            self.actors = self._make_actors()
        except BaseException:
            self.__exit__()
            raise
        return self

    def _make_actors(self) -> list[Any]:
        import ray
        from ray.exceptions import RayActorError

        settings = self.settings
        actor_class = ray.remote(
            num_cpus=settings.cpus_per_actor, max_restarts=MAX_RESTARTS, max_task_retries=-1,
            max_concurrency=settings.parallel,
        )(ModelActor)
        threads = settings.n_threads or max(1, int(settings.cpus_per_actor))
        actors = [actor_class.remote(settings, threads) for _ in range(settings.actors)]
        self.actors = actors
        try:
            problems = [p for p in ray.get([a.ready.remote() for a in actors]) if p]
        except RayActorError:  # one died before it ran (Ray's words are pages long)
            where = "a local Ray" if settings.local else settings.address
            raise ModelError(f"The Ray actors died before they could load the model on "
                             f"{where}; `ray status` and Ray's logs say why.") from None
        if problems:
            raise ModelError(f"The Ray actors could not load the model: {problems[0]}")
        return actors

    def map(self, items: Iterable[Any], method: str) -> Iterator[tuple[Any, Any]]:
        """``(item, actor.method(item))`` for every item, in the order they finish; each actor
        holds at most ``parallel`` calls, so the next item goes to whichever has room."""
        import ray
        from ray.exceptions import RayActorError

        todo = deque(items)
        load = [0] * len(self.actors)
        in_flight = self.in_flight = {}
        while todo or in_flight:
            for index, actor in enumerate(self.actors):
                while todo and load[index] < self.settings.parallel:
                    item = todo.popleft()
                    in_flight[getattr(actor, method).remote(item)] = (index, item)
                    load[index] += 1
            done, _ = ray.wait(list(in_flight), num_returns=1, timeout=1.0)
            for ref in done:
                index, item = in_flight.pop(ref)
                load[index] -= 1
                try:
                    value = ray.get(ref)
                except RayActorError:
                    raise RunFailedError(
                        f"A Ray actor died more than {MAX_RESTARTS} times; the answers so far "
                        "are kept: run the same command again to finish.") from None
                yield item, value

    def __exit__(self, *exc: object) -> None:
        """Cancel the calls still running (a run stopped mid-way) and stop the actors: with
        the Ray this pool started or joined (``ray.shutdown``, which ends the actors this
        process owns), or one by one in a Ray the caller started. Killed one by one first with
        their calls running, the calls were retried, and Ray printed a line for each on this
        process's stdout and stderr."""
        import ray

        for call in self.in_flight:  # (a stopped run's): cancelled, they are not retried
            try:
                ray.cancel(call)
            except Exception:  # noqa: BLE001 - it ended meanwhile, or Ray is gone
                pass
        self.in_flight = {}
        if self._started:
            self.actors = []
            stop_ray(self.settings)
            self._started = False
            return
        for actor in self.actors:
            try:
                ray.kill(actor)
            except Exception as error:  # noqa: BLE001 - already gone
                print(f"localpref: could not stop a Ray actor: {error}", file=sys.stderr)
        self.actors = []


def run_ray(settings: RaySettings, recorder: Recorder,
            callback: Callable[[Recorder, list[Any]], None] | None = None) -> None:
    """Answer ``recorder``'s pending lines on Ray actors; ``callback(recorder, actors)`` runs
    in this thread after each answer is written (tests kill an actor there)."""
    with RayPool(settings) as pool:
        recorder.begin()
        todo = [line.to_json() for line in recorder.pending]
        while todo:
            again = []
            for line, answer in pool.map(todo, "answer"):
                if answer is None:  # cancelled inside the actor: answer it again
                    again.append(line)
                    continue
                recorder.record(answer)
                if callback is not None:
                    callback(recorder, pool.actors)
            todo = again
