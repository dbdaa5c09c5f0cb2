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

import math
import sys
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from localpref.batches.lines import BatchLine
from localpref.batches.recorder import Recorder
from localpref.errors import LocalprefError, ModelError, SettingsError

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
    model: str | None = None
    n_ctx: int | None = None
    n_gpu_layers: int = 0
    #: llama.cpp threads of each actor (None: its CPUs, at least 1)
    n_threads: int | None = None


class BatchActor:
    """One Ray actor: the model loaded once, answering one line per call."""

    def __init__(self, model: str | None, parallel: int, n_threads: int, n_ctx: int | None,
                 n_gpu_layers: int) -> None:
        from localpref.api import load
        from localpref.batches.answer import Answerer, served_id

        self.error: str | None = None
        self.answerer: Answerer | None = None
        try:
            loaded = load(model, n_gpu_layers=n_gpu_layers, n_ctx=n_ctx,
                          max_lanes=2 * parallel, max_queued=max(16, parallel),
                          n_threads=n_threads)
            self.answerer = Answerer(loaded, served_id(loaded, model))
        except LocalprefError as error:
            self.error = str(error)

    def ready(self) -> str | None:
        """None once the model is loaded, else the sentence that says why it is not."""
        return self.error

    def answer(self, line: dict[str, Any]) -> dict[str, Any] | None:
        assert self.answerer is not None
        return self.answerer.answer(BatchLine.from_json(line))


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
    options: dict[str, Any] = {"include_dashboard": False, "logging_level": "warning",
                               "configure_logging": False}
    try:
        if settings.address:
            ray.init(address=settings.address, **options)
        else:
            ray.init(num_cpus=max(1, math.ceil(settings.actors * settings.cpus_per_actor)),
                     object_store_memory=LOCAL_OBJECT_STORE_BYTES, **options)
    except (ConnectionError, RuntimeError, ValueError) as error:
        where = settings.address or "a local Ray"
        raise SettingsError(f"Cannot start or reach Ray at {where}: {error}".rstrip(".")
                            + ".") from None
    return True


def make_actors(settings: RaySettings) -> list[Any]:
    """The actors, each loading the model; ``ModelError`` with the first actor's sentence if
    they cannot."""
    import ray

    actor_class = ray.remote(
        num_cpus=settings.cpus_per_actor, max_restarts=MAX_RESTARTS, max_task_retries=-1,
        max_concurrency=settings.parallel,
    )(BatchActor)
    threads = settings.n_threads or max(1, int(settings.cpus_per_actor))
    actors = [actor_class.remote(settings.model, settings.parallel, threads, settings.n_ctx,
                                 settings.n_gpu_layers) for _ in range(settings.actors)]
    problems = [problem for problem in ray.get([a.ready.remote() for a in actors]) if problem]
    if problems:
        for actor in actors:
            ray.kill(actor)
        raise ModelError(f"The Ray actors could not load the model: {problems[0]}")
    return actors


def run_ray(settings: RaySettings, recorder: Recorder,
            callback: Callable[[Recorder, list[Any]], None] | None = None) -> None:
    """Answer ``recorder``'s pending lines on Ray actors; ``callback(recorder, actors)`` runs
    in this thread after each answer is written (tests kill an actor there)."""
    started = start_ray(settings)
    import ray
    from ray.exceptions import RayActorError

    actors: list[Any] = []
    try:
        actors = make_actors(settings)
        recorder.begin()
        todo: deque[BatchLine] = deque(recorder.pending)
        load = [0] * len(actors)
        in_flight: dict[Any, tuple[int, BatchLine]] = {}

        def fill() -> None:
            for index, actor in enumerate(actors):
                while todo and load[index] < settings.parallel:
                    line = todo.popleft()
                    in_flight[actor.answer.remote(line.to_json())] = (index, line)
                    load[index] += 1

        fill()
        while in_flight:
            done, _ = ray.wait(list(in_flight), num_returns=1, timeout=1.0)
            for ref in done:
                index, line = in_flight.pop(ref)
                load[index] -= 1
                try:
                    answer = ray.get(ref)
                except RayActorError:
                    raise LocalprefError(
                        f"A Ray actor died more than {MAX_RESTARTS} times; the answers so far "
                        "are kept: run the same command again to finish.") from None
                if answer is None:  # cancelled inside the actor: answer it again
                    todo.append(line)
                else:
                    recorder.record(answer)
                    if callback is not None:
                        callback(recorder, actors)
            fill()
    finally:
        for actor in actors:
            try:
                ray.kill(actor)
            except Exception as error:  # noqa: BLE001 - already gone
                print(f"localpref: could not stop a Ray actor: {error}", file=sys.stderr)
        if started:
            ray.shutdown()
