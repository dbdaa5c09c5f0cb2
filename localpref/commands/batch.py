"""``localpref batch IN.jsonl --out OUT.jsonl``: an OpenAI batch file answered line by line as
``localpref serve`` answers each body, resumably, here or over Ray (docs/batch.md)."""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from localpref.batches.run import RAY_ACTORS, RAY_CPUS_PER_ACTOR, sizes_without_ray
from localpref.commands.interrupt import (
    TERMINATED_EXIT,
    Termination,
    interrupt_once,
    say_stopped,
    terminate_as_exit,
)
from localpref.commands.options import add_model_options, check_parallel, load_settings
from localpref.errors import SettingsError
from localpref.numbers import number


class _LocalRay(str):
    """``--ray`` given alone: argparse hands its constant to the type function too, and only
    this object, not a typed ``--ray ""``, stands for a local Ray."""


LOCAL_RAY = _LocalRay("")


def ray_address(text: str) -> str:
    """``--ray``'s value: an address, or ``LOCAL_RAY`` when none is given; an empty one (a
    script's unset ``$RAY_ADDRESS``) would silently start a local Ray, so it is refused."""
    if text is not LOCAL_RAY and not text.strip():
        raise argparse.ArgumentTypeError("an empty address; give the cluster's address, or "
                                          "--ray alone for a local Ray")
    if text.strip().lower() == "local":  # Ray's word for a new local Ray: --ray alone
        return LOCAL_RAY
    return text


@contextlib.contextmanager
def ray_notices_dropped() -> Iterator[None]:
    """Around a command's ``--ray`` run: Ray's driver prints on stdout each call it retries
    and each worker that died ("(raylet) Task ... will be retried", with advice about the
    out-of-memory killer), lines a run that goes on needs not show and that its stdout,
    which the run does not use, should not hold (Ray's logs keep them). What stops the run
    is still its one sentence on stderr. Only here: a script's own ``localpref.batch`` keeps
    its stdout."""
    with open(os.devnull, "w", encoding="utf-8") as nowhere, \
            contextlib.redirect_stdout(nowhere):
        yield


def add_ray_options(parser: argparse.ArgumentParser, *, what: str) -> None:
    """--ray [ADDRESS], --ray-actors and --ray-cpus-per-actor."""
    group = parser.add_argument_group("Ray")
    group.add_argument("--ray", nargs="?", const=LOCAL_RAY, default=None, type=ray_address,
                       metavar="ADDRESS",
                       help=f"spread {what} over Ray actors, each loading the model once: a "
                       "cluster's address (ray://HOST:10001 or HOST:6379), or nothing to start "
                       "a local Ray (needs the 'localpref[ray]' extra)")
    group.add_argument("--ray-actors", type=int, default=None, metavar="N",
                       help=f"Ray actors (default {RAY_ACTORS})")
    group.add_argument("--ray-cpus-per-actor", type=number, default=None, metavar="C",
                       help="CPUs each actor reserves, and its llama.cpp threads unless --threads "
                       f"says otherwise (default {RAY_CPUS_PER_ACTOR:g})")


def check_ray_options(args: argparse.Namespace) -> None:
    """``--ray-actors`` and ``--ray-cpus-per-actor`` checked, their defaults filled in; given
    without ``--ray`` they are one sentence (they size Ray's actors, and were ignored)."""
    given = [flag for flag, value in (("--ray-actors", args.ray_actors),
                                      ("--ray-cpus-per-actor", args.ray_cpus_per_actor))
             if value is not None]
    if given and args.ray is None:
        raise sizes_without_ray(given, "--ray", "--ray too (a cluster's address, or nothing "
                                "for a local Ray)")
    if args.ray_actors is None:
        args.ray_actors = RAY_ACTORS
    if args.ray_cpus_per_actor is None:
        args.ray_cpus_per_actor = RAY_CPUS_PER_ACTOR
    if args.ray_actors < 1:
        raise SettingsError(f"--ray-actors must be 1 or more (got {args.ray_actors}).")
    if not 0 < args.ray_cpus_per_actor < math.inf:
        raise SettingsError(f"--ray-cpus-per-actor must be a number above 0 "
                            f"(got {args.ray_cpus_per_actor}).")
    if args.ray == "":  # a local Ray: checked before anything loads (start_ray checks too)
        from localpref.batches.ray_runner import check_local_actors

        check_local_actors(args.ray_actors)


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "batch",
        help="answer an OpenAI batch file (JSONL) into an answers file, resumably",
        # the file is required (run_batch_command says so), though optional to argparse
        usage="%(prog)s IN.jsonl --out OUT.jsonl [options]",
        description="Answer every line of an OpenAI batch file (custom_id, method, url, body; "
        "the body as 'localpref serve' takes it at /v1/chat/completions or /v1/completions) "
        "into OUT, one line "
        "per answer (id, custom_id, response, error), written as each finishes and sorted into "
        "input order at the end. Running it again with the same --out skips the custom_ids "
        "already answered.",
    )
    # optional to argparse: `--ray IN.jsonl --out OUT.jsonl` hands the file to --ray's address
    parser.add_argument("input", metavar="IN.jsonl", nargs="?", help="the batch file")
    parser.add_argument("--out", required=True, metavar="OUT.jsonl",
                        help="the answers file (resumed when it exists)")
    add_model_options(parser)
    parser.add_argument("--parallel", type=int, default=4, metavar="N",
                        help="requests decoded at once (default 4; per actor with --ray)")
    parser.add_argument("--unordered", action="store_true",
                        help="leave the answers in the order they finished")
    parser.add_argument("--quiet", action="store_true",
                        help="no progress bar (the summary line is still printed)")
    add_ray_options(parser, what="the lines")
    parser.set_defaults(func=run_batch_command)


def run_batch_command(args: argparse.Namespace) -> int:
    """Check the flags, answer the file, print the summary line; 0 when every line has an
    answer (error lines included)."""
    if args.input is None:
        if not (args.ray and Path(args.ray).is_file()):
            raise SettingsError("Give the batch file: localpref batch IN.jsonl --out OUT.jsonl.")
        args.input, args.ray = args.ray, ""  # --ray (a local Ray) took the file for its address
    if not args.out.strip():  # (it read as the current folder: ". is not a regular file")
        raise SettingsError("--out needs a file name (OUT.jsonl).")
    loading = load_settings(args)
    check_parallel(args.parallel)
    check_ray_options(args)
    from localpref.batches.run import batch

    termination = Termination()  # (the one the handler sets is bound below)
    try:
        # With Ray, Ctrl-C is pressed until Ray's start lets one through; its exit is below.
        # SIGTERM (kill, systemd, a CI timeout) stops the run as Ctrl-C does, exit code 143.
        with (interrupt_once() if args.ray is None else ray_notices_dropped(),
              terminate_as_exit() as termination):
            ray_sizes = {} if args.ray is None else {
                "ray_actors": args.ray_actors, "ray_cpus_per_actor": args.ray_cpus_per_actor}
            summary = batch(args.input, args.out, model=args.model, parallel=args.parallel,
                            unordered=args.unordered,
                            ray=False if args.ray is None else (args.ray or True),
                            **ray_sizes, **loading, progress=not args.quiet)
    except (KeyboardInterrupt, SystemExit) as stop:
        code = (130 if isinstance(stop, KeyboardInterrupt)
                else TERMINATED_EXIT if termination.came else stop.code)
        if code not in (130, TERMINATED_EXIT):
            raise
        _say_stopped(Path(args.out))
        if args.ray is not None:
            # Ray stopped and its processes ended, the answers file closed: only the
            # interpreter's own exit is left, which Ray's threads crashed after an interrupted
            # start (3 runs in 11 died of SIGSEGV instead of exiting 130).
            sys.stdout.flush()
            os._exit(code)
        return code  # (said: not raised on, for ``main`` to end the line of a ^C again)
    print(summary.line(), file=sys.stderr, flush=True)
    return 0


def _say_stopped(out: Path) -> None:
    """The sentence of a stopped run: what it kept, and how to finish."""
    try:
        kept = out.stat().st_size > 0
    except OSError:  # an empty file this run made is removed (AnswerFile.abandon)
        kept = False
    said = (f"the answers written are kept in {out}: run the same command again to finish"
            if kept else "no answer was written yet")
    say_stopped(said)
