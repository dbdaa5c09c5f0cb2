"""``localpref bench``: tokens/s of every method, steering cost, kernels, chat and compare."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from localpref.commands.interrupt import TERMINATED_EXIT, say_stopped, terminate_as_exit
from localpref.commands.options import (
    add_model_options,
    comma_list,
    load_model,
    load_settings,
)
from localpref.commands.showing import check_stdout_open
from localpref.errors import LocalprefError, ModelError, SettingsError

#: localpref.synthetic.SHAPES, without importing gguf
SYNTHETIC_SHAPES = ("tiny", "135m", "1b", "262k")


def add_parser(subparsers: Any) -> None:
    from localpref.bench import BENCH_METHODS

    parser = subparsers.add_parser(
        "bench",
        help="measure tokens/s and the steering cost of every method",
        description="Tokens/s of every method (interleaved, medians over repeats) and its ratio "
        "to Base and Contrastive, the steering cost per token, the kernels alone, a chat's "
        "time to first token on turns 1 and 10, and batched against one-after-another "
        "comparison. Fixed-length greedy runs (end tokens ignored).",
    )
    add_model_options(parser)
    parser.add_argument(
        "--synthetic", choices=SYNTHETIC_SHAPES, default=None,
        help="benchmark a random-weight llama model of this shape (Q4_0; 135m: SmolLM2-135M's "
        "shape; 1b: 1.2B parameters, V = 49k, ~0.7 GB; 262k: 0.9B parameters, V = 262k; "
        "written once to --synthetic-dir, which takes a few minutes) instead of --model",
    )
    parser.add_argument(
        "--synthetic-dir", type=Path, default=None, metavar="DIR",
        help="where synthetic models are kept (default: <temp>/localpref-synthetic)",
    )
    parser.add_argument("--max-tokens", type=int, default=96, help="tokens per run (default 96)")
    parser.add_argument("--repeat", type=int, default=None,
                        help=f"repeats; medians (default {REPEAT})")
    parser.add_argument(
        "--methods", default=None,
        help=f"comma-separated, among {','.join(BENCH_METHODS)} (default all; base and "
        "contrastive are always measured for the ratios)",
    )
    parser.add_argument(
        "--kernel-sizes", default=None, metavar="V,...",
        help="vocabulary sizes of the kernel timings (default 49152,151936,262144)",
    )
    parser.add_argument("--prompt", default=None, help="the user message")
    parser.add_argument("--preference", "-p", default=None,
                        help="the preference (default concise)")
    # the benches other than the default one: one at a time (each ran alone, the others
    # dropped without a word)
    mode = parser.add_mutually_exclusive_group()
    parser.add_argument(
        "--concurrent", default=None, metavar="N,...",
        help="also measure N Amulet requests at once against N one after another, and the "
        "time to first token of one joining N-1 streams (e.g. 1,2,4)",
    )
    mode.add_argument(
        "--profile", action="store_true",
        help="instead: time every piece of a decoding step for each of --methods (where the "
        "time that is not llama_decode goes)",
    )
    mode.add_argument(
        "--exactness", action="store_true",
        help="instead: each lane's logits in 2, 4 and 8 lanes decoded together against the "
        "same lane decoded alone, over --max-tokens greedy steps: bit-exact, or the largest "
        "difference and the steps whose greedy token differs",
    )
    mode.add_argument(
        "--server", action="store_true",
        help="instead: localpref serve (Base, steered) against llama.cpp servers (Base) with "
        "1, 2 and 4 concurrent streaming clients (8 too with llama-server): tokens/s and time "
        "to first token",
    )
    parser.add_argument(
        "--baseline", default=None, metavar="NAME,...",
        help="with --server: the servers to measure against, among llama-cpp-python (the "
        "default) and llama-server (built once by scripts/build-llama-server.sh; adds the "
        "long-prompt stall)",
    )
    parser.add_argument(
        "--llama-server", default=None, metavar="PATH",
        help="with --baseline llama-server: the llama-server binary (default: the build "
        "script's cached one)",
    )
    parser.add_argument(
        "--clients", default=None, metavar="N,...",
        help="with --server: the numbers of concurrent clients (default 1,2,4; 1,2,4,8 with "
        "llama-server)",
    )
    mode.add_argument(
        "--batch", nargs="?", type=int, const=64, default=None, metavar="N",
        help="instead: N steered requests (default 64) of --max-tokens tokens answered by "
        "`localpref batch` one after another, 4 at once, and with --ray (one actor of 1 CPU "
        "per thread: 2 on 2 cores; when Ray is installed): aggregate tokens/s",
    )
    parser.add_argument("--quiet", "-q", action="store_true", help="no progress on stderr")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.set_defaults(func=run_bench_command)


def run_bench_command(args: argparse.Namespace) -> int:
    """Parse, load the model, run every measurement, print the table or the JSON. A
    SIGTERM ends it as Ctrl-C does: the servers and processes it started are stopped, and a
    line says that no figures are printed (a Ctrl-C ended it with a blank line)."""
    check_stdout_open()  # (its figures go nowhere else)
    try:
        with terminate_as_exit():
            return _run_bench(args)
    except KeyboardInterrupt:
        say_stopped("a bench cut short prints no figures")
        return 130
    except SystemExit as stop:
        if stop.code == TERMINATED_EXIT:
            say_stopped("a bench cut short prints no figures")
        raise


def _run_bench(args: argparse.Namespace) -> int:
    if args.concurrent is not None and (args.server or args.exactness or args.profile
                                        or args.batch is not None):
        raise SettingsError("--concurrent goes with the default bench, not with --server, "
                            "--exactness, --profile or --batch.")
    if args.synthetic and (args.server or args.batch is not None):  # (it measured --model)
        raise SettingsError("--synthetic goes with the default bench, --profile or "
                            "--exactness; --server and --batch measure --model.")
    check_flags_read(args)
    if args.server:
        from localpref.server.bench import run_server_bench_command

        args.baseline = _names(args.baseline, "--baseline") if args.baseline is not None else None
        args.clients = (tuple(_clients(item) for item in _names(args.clients, "--clients"))
                        if args.clients is not None else None)
        return run_server_bench_command(args)
    for flag, value in (("--baseline", args.baseline), ("--llama-server", args.llama_server),
                        ("--clients", args.clients)):
        if value is not None:
            raise SettingsError(f"{flag} goes with --server.")
    if args.batch is not None:
        return run_batch_bench(args)
    from localpref.bench import (
        EXACTNESS_BATCHES,
        BenchSettings,
        bench_exactness,
        format_exactness,
        format_profile,
        format_report,
        profile_steps,
        run_bench,
    )

    settings = BenchSettings(
        max_tokens=args.max_tokens,
        repeat=args.repeat,
        methods=_names(args.methods, "--methods"),
        prompt=args.prompt,
        preference=args.preference,
        kernel_sizes=tuple(_size(item) for item in _names(args.kernel_sizes, "--kernel-sizes")),
        chat_tokens=min(24, args.max_tokens) if isinstance(args.max_tokens, int) else 24,
        concurrent=tuple(_count(item) for item in _names(args.concurrent, "--concurrent"))
        if args.concurrent is not None else (),
    )
    load_settings(args)  # a bad --threads or --ctx is one sentence before anything runs

    def progress(message: str) -> None:
        if not args.quiet:
            print(f"bench: {message}", file=sys.stderr, flush=True)

    if args.synthetic:
        if args.model:
            raise SettingsError("Give either --model or --synthetic, not both.")
        args.model = str(synthetic_model(args.synthetic, args.synthetic_dir, progress))
    # Lanes: as many as the comparison decodes at once. Context: a 10-turn chat or one run;
    # synthetic models spell English byte by byte, so their chat needs twice the room.
    n_ctx = max(4096 if args.synthetic else 2048, args.max_tokens + 512)
    trained = _trained_context(args.model)
    if trained:  # never a window past what the model was trained for (Model refuses it)
        n_ctx = min(n_ctx, trained)
    lanes = max(settings.lanes_needed, *EXACTNESS_BATCHES) if args.exactness \
        else settings.lanes_needed
    model = load_model(args, max_lanes=lanes, n_ctx=n_ctx)
    try:
        if args.exactness:
            report = {"model": model.name, "model_path": str(model.path),
                      **bench_exactness(model, args.max_tokens, progress)}
        elif args.profile:
            report = profile_steps(model, settings, progress)
        else:
            report = run_bench(model, settings, progress)
    finally:
        model.close()
    if args.json:
        print(json.dumps(report))
    elif args.exactness:
        print(format_exactness(report))
    else:
        print(format_profile(report) if args.profile else format_report(report))
    return 0


#: the repeats when --repeat is left out
REPEAT = 3

#: the flags each of the other benches reads among those the default bench reads (given to
#: one that does not read it, a flag was silently ignored)
READ_BY = {
    "--profile": ("--methods", "--prompt", "--preference", "--repeat", "--gpu-layers", "--ctx"),
    "--exactness": ("--gpu-layers", "--ctx"),
    # (on the CPU: the servers take --ctx as each request's window; the batch runs their own)
    "--server": ("--prompt", "--preference", "--repeat", "--ctx"),
    "--batch": ("--preference",),
}


def check_flags_read(args: argparse.Namespace) -> None:
    """One sentence for a flag the chosen bench would ignore; then the defaults filled in."""
    from localpref.bench import BENCH_METHODS, DEFAULT_PREFERENCE, DEFAULT_PROMPT, KERNEL_SIZES

    given = {flag: value for flag, value in (
        ("--methods", args.methods), ("--kernel-sizes", args.kernel_sizes),
        ("--prompt", args.prompt), ("--preference", args.preference),
        ("--repeat", args.repeat), ("--gpu-layers", args.gpu_layers or None),
        ("--ctx", args.ctx)) if value is not None}
    mode = ("--profile" if args.profile else "--exactness" if args.exactness
            else "--server" if args.server else "--batch" if args.batch is not None else None)
    if mode is not None:
        for flag in given:
            if flag not in READ_BY[mode]:
                raise SettingsError(f"bench {mode} does not read {flag}; leave it out.")
    if args.synthetic_dir is not None and not args.synthetic:
        raise SettingsError("--synthetic-dir goes with --synthetic.")
    args.methods = ",".join(BENCH_METHODS) if args.methods is None else args.methods
    args.kernel_sizes = (",".join(str(size) for size in KERNEL_SIZES)
                         if args.kernel_sizes is None else args.kernel_sizes)
    args.prompt = DEFAULT_PROMPT if args.prompt is None else args.prompt
    args.preference = DEFAULT_PREFERENCE if args.preference is None else args.preference
    args.repeat = REPEAT if args.repeat is None else args.repeat


def run_batch_bench(args: argparse.Namespace) -> int:
    """``bench --batch N``: the batch row alone."""
    import importlib.util

    from localpref.bench.batch_files import bench_batch, format_batch

    if args.batch < 1:
        raise SettingsError(f"--batch must be 1 or more (got {args.batch}).")
    if args.max_tokens < 1:
        raise SettingsError(f"--max-tokens must be 1 or more (got {args.max_tokens}).")
    loading = load_settings(args)

    def progress(message: str) -> None:
        if not args.quiet:
            print(f"bench: {message}", file=sys.stderr, flush=True)

    with_ray = importlib.util.find_spec("ray") is not None
    if not with_ray:
        progress("Ray is not installed: no --ray row (pip install 'localpref[ray]')")
    report = bench_batch(args.model, requests=args.batch, max_tokens=args.max_tokens,
                         ray=with_ray, n_threads=loading["n_threads"],
                         preference=args.preference, progress=progress)
    print(json.dumps(report) if args.json else format_batch(report))
    return 0


def synthetic_model(shape: str, directory: Path | None, progress: Any) -> Path:
    """The synthetic model's file, written (in a child process, so that writing does not
    count in this process's peak memory) when it is not there yet."""
    from localpref.synthetic import synthetic_file_name

    folder = directory or Path(tempfile.gettempdir()) / "localpref-synthetic"
    if folder.exists() and not folder.is_dir():
        raise ModelError(f"--synthetic-dir {folder} exists and is not a folder.")
    target = folder / synthetic_file_name(shape)
    if target.is_file():
        return target
    progress(f"writing the synthetic {shape} model to {target} (once)")
    done = subprocess.run(
        [sys.executable, "-m", "localpref.synthetic", str(folder), "--shape", shape],
        capture_output=True, text=True, check=False,
    )
    if done.returncode != 0 or not target.is_file():
        lines = (done.stderr or "").strip().splitlines() or ["no output"]
        raise ModelError(f"Could not write the synthetic model: {lines[-1]}")
    return target


def _names(text: str, flag: str) -> tuple[str, ...]:
    names = tuple(item.lower() for item in comma_list(text))
    if not names:
        raise SettingsError(f"{flag} needs at least one value.")
    return names


def _size(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise SettingsError(f"A kernel size must be a whole number (got {text!r}).") from None


def _clients(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise SettingsError(f"--clients takes whole numbers (got {text!r}).") from None


def _count(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise SettingsError(f"--concurrent takes whole numbers (got {text!r}).") from None


def _trained_context(spec: str | None) -> int | None:
    """The context the model of ``--model`` was trained for, from its GGUF header, when the
    file is here already (None otherwise: loading it will say what is wrong)."""
    from localpref.gguf_header import read_gguf_header
    from localpref.models import resolve_model

    try:
        return read_gguf_header(resolve_model(spec, download=False)).context_length
    except (LocalprefError, OSError):
        return None
