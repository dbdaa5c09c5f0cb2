"""``localpref.batch``: answer an OpenAI batch file into an answers file, resumably, on this
machine or over Ray actors."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from localpref.batches.lines import BatchFileError, lanes_bound, read_lines
from localpref.errors import SettingsError
from localpref.file_lock import exclusive
from localpref.request import whole_number

if TYPE_CHECKING:
    from localpref.api import Model
    from localpref.batches.recorder import Recorder, Summary


#: the Ray actors and the CPUs each reserves when ``ray_actors``/``ray_cpus_per_actor`` (the
#: CLI's ``--ray-actors``/``--ray-cpus-per-actor``) are left out
RAY_ACTORS, RAY_CPUS_PER_ACTOR = 2, 1.0


def sizes_without_ray(given: Sequence[str], ray: str, give: str) -> SettingsError:
    """The sentence for Ray's actor sizes (``given``: their names) without ``ray``: they were
    ignored, and the file ran in one process; ``give``: what to do instead."""
    verb = "size" if len(given) > 1 else "sizes"
    return SettingsError(f"{' and '.join(given)} {verb} the Ray actors of {ray}; give {give}.")


def check_counts(parallel: int, ray_actors: int, ray_cpus_per_actor: float) -> None:
    """One sentence for a count out of range."""
    for name, count in (("parallel", parallel), ("ray_actors", ray_actors)):
        if not whole_number(count) or count < 1:
            raise SettingsError(f"{name} must be a whole number, 1 or more (got {count!r}).")
    if not isinstance(ray_cpus_per_actor, (int, float)) or isinstance(ray_cpus_per_actor, bool) \
            or not 0 < ray_cpus_per_actor < math.inf:
        raise SettingsError(f"ray_cpus_per_actor must be a number above 0 "
                            f"(got {ray_cpus_per_actor!r}).")


def batch(
    input_path: str | Path,
    out: str | Path,
    *,
    model: Model | str | Path | None = None,
    parallel: int = 4,
    unordered: bool = False,
    ray: bool | str = False,
    ray_actors: int | None = None,
    ray_cpus_per_actor: float | None = None,
    n_ctx: int | None = None,
    n_threads: int | None = None,
    n_gpu_layers: int = 0,
    progress: bool = True,
) -> Summary:
    """Answer every line of the OpenAI batch file ``input_path`` into ``out``.

    Each line's ``body`` is what ``localpref serve`` takes at its ``url``
    (``/v1/chat/completions``); up to ``parallel`` lines decode in one batch. Answers are
    appended as they finish and the file is sorted into input order at the end (unless
    ``unordered``). Lines whose ``custom_id`` is already in ``out`` are skipped, so calling
    again after an interruption finishes the file. ``model``: a loaded ``Model`` or what
    ``localpref.load`` takes (None: the bundled model). ``ray``: True starts a local Ray, a
    string is a cluster's address; ``ray_actors`` actors (default 2) of ``ray_cpus_per_actor``
    CPUs (default 1) then each load the model once and answer their share; without ``ray``
    they are one sentence (the file would run in one process). Returns the run's ``Summary``.
    """
    by_ray = ray is not False and ray is not None
    given = [name for name, value in (("ray_actors", ray_actors),
                                      ("ray_cpus_per_actor", ray_cpus_per_actor))
             if value is not None]
    if given and not by_ray:
        raise sizes_without_ray(given, "ray", "ray=True too (or a cluster's address), or leave "
                                "them out")
    ray_actors = RAY_ACTORS if ray_actors is None else ray_actors
    ray_cpus_per_actor = RAY_CPUS_PER_ACTOR if ray_cpus_per_actor is None else ray_cpus_per_actor
    check_counts(parallel, ray_actors, ray_cpus_per_actor)
    if by_ray:
        check_ray(ray, model, ray_actors)
    for name, value in (("input_path", input_path), ("out", out)):
        if not isinstance(value, (str, os.PathLike)):
            raise SettingsError(f"{name} must be a path (a text or a Path), not "
                                f"{type(value).__name__}.")
    input_path, out = Path(input_path), Path(out)
    if input_path.resolve() == out.resolve() or _same_file(input_path, out):
        raise SettingsError("The answers file must not be the batch file itself.")
    from localpref.batches.recorder import Recorder

    lines = read_lines(input_path)
    if (not by_ray and (model is None or isinstance(model, (str, os.PathLike)))
            and _holds_nothing(out)):
        # every line is to answer: said before a folder or lock (Ray's actors find the
        # model where they run; a finished file needs no model)
        check_model_file(model)
    busy = BatchFileError(f"Another localpref batch is writing {out}; wait for it to finish "
                          "(or stop it), or give another --out.")
    with exclusive(lock_path(out), busy=busy, what=str(out)):  # one run writes a file
        recorder = Recorder(lines, out, progress=progress)
        # 2 lanes a request, as many as the lines left could use at once: a two-line file
        # with --parallel 128 loaded 256 lanes' cells (12 GB on the bundled model)
        lanes = min(2 * parallel, max(2, lanes_bound(recorder.pending)))
        try:
            if recorder.pending and by_ray:
                from localpref.batches.ray_runner import RaySettings, run_ray

                settings = RaySettings(
                    address=ray if isinstance(ray, str) and ray else None, actors=ray_actors,
                    cpus_per_actor=ray_cpus_per_actor, parallel=parallel, lanes=lanes,
                    model=None if model is None else str(model), n_ctx=n_ctx,
                    n_gpu_layers=n_gpu_layers, n_threads=n_threads)
                run_ray(settings, recorder)
            elif recorder.pending:
                run_here(model, recorder, parallel=parallel, lanes=lanes, n_ctx=n_ctx,
                         n_threads=n_threads, n_gpu_layers=n_gpu_layers)
        except BaseException:
            recorder.close()
            raise
        return recorder.finish(unordered=unordered)


def check_ray(ray: bool | str, model: object, actors: int) -> None:
    """One sentence, before the answers file or its lock is made, for Ray settings no run
    could use: an address that is empty or not one (``ray_runner.check_reachable``), a
    loaded ``Model`` (each actor loads its own), more local actors than cores."""
    if not isinstance(ray, (bool, str)):
        raise SettingsError(f"ray must be True (a local Ray) or a cluster's address (got "
                            f"{type(ray).__name__}).")
    if isinstance(ray, str) and not ray.strip():
        raise SettingsError("ray='' is an empty address; give the cluster's address, or "
                            "ray=True for a local Ray.")
    if not isinstance(model, (str, Path)) and model is not None:
        raise SettingsError("With Ray, give the model as a path or a name every node can "
                            "load, not a loaded Model.")
    from localpref.batches.ray_runner import RaySettings, check_start

    check_start(RaySettings(address=ray if isinstance(ray, str) else None, actors=actors))


def check_model_file(model: str | os.PathLike[str] | None) -> None:
    """One sentence, before the answers file's folder or lock is made, for a model that is
    not there or not a GGUF file (``load`` would say it after them)."""
    from localpref.models import refuse_an_empty_name, resolve_model

    refuse_an_empty_name(model)
    resolve_model(None if model is None else os.fspath(model))  # (its header read too)


def lock_path(out: Path) -> Path:
    """The lock file a run holds while it writes ``out``: ``.NAME.lock`` beside it (two runs
    appending to one answers file, one sorting it under the other, would lose lines)."""
    real = Path(os.path.realpath(out))
    return real.with_name(f".{real.name}.lock")


def _holds_nothing(out: Path) -> bool:
    """Whether the answers file is not there yet, or empty."""
    try:
        return out.stat().st_size == 0
    except OSError:
        return True


def _same_file(first: Path, second: Path) -> bool:
    """Whether both paths name one file (a hard link too); False when either is missing."""
    try:
        return os.path.samefile(first, second)
    except OSError:
        return False


def run_here(model: Model | str | Path | None, recorder: Recorder, *, parallel: int,
             lanes: int, n_ctx: int | None, n_threads: int | None, n_gpu_layers: int) -> None:
    """Answer the pending lines with ``model`` (loaded here with ``lanes`` lanes unless it is
    a ``Model``)."""
    from localpref.api import Model, load
    from localpref.batches.local import run_local
    from localpref.server.batch_answer import Answerer, served_id

    if isinstance(model, Model):
        run_local(Answerer(model, served_id(model, str(model.path))), recorder, parallel)
        return
    spec = None if model is None else str(model)
    with load(spec, n_gpu_layers=n_gpu_layers, n_ctx=n_ctx, max_lanes=lanes,
              max_queued=max(16, parallel), n_threads=n_threads) as loaded:
        run_local(Answerer(loaded, served_id(loaded, spec)), recorder, parallel)
