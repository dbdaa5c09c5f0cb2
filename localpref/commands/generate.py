"""`localpref generate PROMPT` and `localpref compare PROMPT`."""

from __future__ import annotations

import argparse
import itertools
import os
import shutil
import sys
from collections.abc import Sequence
from typing import Any

from localpref.commands import columns as columns_text
from localpref.commands.interrupt import (
    cancel_on_interrupt,
    closed_uninterrupted,
    say_stopped,
    terminate_as_exit,
)
from localpref.commands.options import (
    add_method_options,
    add_model_options,
    add_preference_options,
    add_sampling_options,
    check_settings_taken,
    comma_list,
    lanes_needed,
    like_from_args,
    load_model,
    method_from_args,
    preference_from_args,
    sampling_kwargs,
    steering_flags_given,
    tell_unsteered,
)
from localpref.commands.showing import (
    avoid_from_args,
    check_avoid,
    check_stdout_open,
    generation_kwargs,
    highlighted,
    json_line,
    steering_label,
    steering_line,
    stop_words,
    window_cut,
)
from localpref.decoding import Result
from localpref.errors import SettingsError


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    generate = subparsers.add_parser(
        "generate",
        help="answer one prompt, steered toward a preference",
        description="Answer one prompt, streamed to the terminal, steered toward a preference.",
    )
    generate.add_argument("prompt", help="the user message; - reads it from standard input")
    add_model_options(generate)
    add_preference_options(generate)
    add_method_options(generate)
    add_sampling_options(generate)
    generate.add_argument(
        "--ignore-eos", action="store_true", help="keep generating to --max-tokens (for benchmarks)"
    )
    generate.add_argument(
        "--json",
        action="store_true",
        help="print one JSON object: text, method, preference, avoid, model, stats",
    )
    add_steering_display_options(generate)
    generate.set_defaults(func=run_generate)

    compare = subparsers.add_parser(
        "compare",
        help="several methods answer one prompt side by side",
        description="Several methods answer one prompt at once (one batched decode per step) "
        "and are printed side by side with their tokens/s.",
    )
    compare.add_argument("prompt", help="the user message; - reads it from standard input")
    compare.add_argument(
        "--methods",
        default="base,pref,recommended,pad",
        help="comma-separated methods; recommended is the recommended steering "
        "(default base,pref,recommended,pad)",
    )
    add_model_options(compare)
    add_preference_options(compare)
    add_method_options(compare, single=False)
    add_sampling_options(compare, max_tokens=128)
    compare.add_argument("--json", action="store_true", help="print one JSON object")
    add_steering_display_options(compare, colour=False)
    compare.set_defaults(func=run_compare)


def check_display_options(args: argparse.Namespace) -> None:
    """--trace adds to --json's object, --show-steering is for a reader: each alone where
    it does something (one sentence where it would be silently dropped)."""
    if args.trace and not args.json:
        raise SettingsError("--trace adds each token's record to the JSON object: give it "
                            "with --json (--show-steering shows the changes as text).")
    if args.show_steering and args.json:
        raise SettingsError("--show-steering prints the answer for reading; with --json, "
                            "--trace gives each token's record instead.")


def add_steering_display_options(parser: argparse.ArgumentParser, *,
                                  colour: bool = True) -> None:
    """--show-steering and --trace (``colour``: on a terminal the marks are colour; compare's
    columns are wrapped, so its marks are always ``[[...]]``)."""
    marks = "colour on a terminal, [[...]] otherwise" if colour else "in [[...]]"
    parser.add_argument(
        "--show-steering", action="store_true",
        help=f"print the answer with the tokens steering changed highlighted ({marks}) and a "
        "last line with how many and the mean shift")
    parser.add_argument(
        "--trace", action="store_true",
        help="with --json: add \"trace\", one object per token (piece, logprobs under the "
        "steered distribution and each lane, each lane's greedy pick, changed)")


def run_generate(args: argparse.Namespace) -> int:
    """Stream the answer (or print JSON); Ctrl-C or SIGTERM stops and keeps what was printed
    (a SIGTERM before the answer or after it ends the command with exit code 143, as in
    ``batch``). Once a SIGTERM came, Ctrl-C and SIGTERM are ignored until the process ends,
    as in ``batch``: ``main()`` returns 143 for the process to exit with.

    With --show-steering the answer is printed once it ends, highlighted from its trace.
    """
    with terminate_as_exit():
        return _generate(args)


def _generate(args: argparse.Namespace) -> int:
    check_stdout_open()
    check_display_options(args)
    method = method_from_args(args)
    check_settings_taken(args, [method])
    avoid = avoid_from_args(args)
    check_avoid(method, avoid)
    sampling = sampling_kwargs(args)
    prompt = prompt_from_args(args)
    want_trace = args.trace or args.show_steering
    preference, like = preference_from_args(args), like_from_args(args)
    model = load_model(args, max_lanes=max(4, lanes_needed([method], preference, like)))
    with closed_uninterrupted(model):
        generation = model.stream(
            prompt,
            preference=preference,
            like=like,
            method=method,
            ignore_eos=args.ignore_eos,
            **generation_kwargs(avoid, want_trace, args.opposite),
            **sampling,
        )
        tell_unsteered([args.method], preference, avoid, like,  # the request checked: it runs
                       opposite=args.opposite, settings=steering_flags_given(args))
        streaming = not (args.json or args.show_steering)
        exit_code = 130  # unless the answer ends without a Ctrl-C
        try:
            with cancel_on_interrupt(generation.cancel) as interrupt:
                for piece in generation:
                    if streaming:
                        sys.stdout.write(piece)
                        sys.stdout.flush()
            exit_code = interrupt.exit_code
        except KeyboardInterrupt:  # a second Ctrl-C, or one before the handler was set
            generation.close()
        result = generation.result
        assert result is not None
        # ended here, before the figures: its ``__del__`` ran at the function's end, where a
        # SIGTERM sent after the figures' line raised inside it ("Exception ignored")
        generation.close()
        del generation
        stats = result.stats
        if args.json:
            print(json_line(_result_json(result, model.path, trace=args.trace)))
            return exit_code
        if args.show_steering:
            sys.stdout.write(_shown(result, ansi=colour_wanted()))
            sys.stdout.write("\n" + steering_line(stats) + "\n")
        elif result.text:  # the answer's line ends (nothing was written: no empty line)
            sys.stdout.write("\n")
        print(
            f"[{steering_label(stats)} · {stats['n_tokens']} token"
            f"{'' if stats['n_tokens'] == 1 else 's'} · {stats['tokens_per_s']:.1f} "
            f"tokens/s · steering {stats['steer_ms_per_token']:.3f} ms/token · "
            f"{stop_words(stats)}]",
            file=sys.stderr,
        )
        return exit_code


def colour_wanted() -> bool:
    """Whether the changed tokens are coloured: on a terminal that shows colour, unless the
    user said no (``NO_COLOR``, no-color.org; ``TERM=dumb``); otherwise ``[[...]]``."""
    return (sys.stdout.isatty() and not os.environ.get("NO_COLOR")
            and os.environ.get("TERM") != "dumb")


def _shown(result: Result, *, ansi: bool) -> str:
    """The answer highlighted from its trace (the plain text if it has none)."""
    trace = getattr(result, "trace", None)
    return highlighted(trace, ansi=ansi) if trace else result.text


def run_compare(args: argparse.Namespace) -> int:
    """Run every method in one batched generation and print the answers side by side (what
    each wrote so far after Ctrl-C or SIGTERM, as ``run_generate``)."""
    with terminate_as_exit():
        return _compare(args)


def _compare(args: argparse.Namespace) -> int:
    check_stdout_open()
    check_display_options(args)
    names = comma_list(args.methods)
    if not 1 <= len(names) <= 8:
        raise SettingsError("Give between 1 and 8 methods, e.g. --methods base,pref,amulet,pad.")
    methods = [method_from_args(args, name) for name in names]
    check_settings_taken(args, methods)
    for later, method in enumerate(methods):  # the same answer twice, decoded twice
        earlier = methods.index(method)
        if earlier < later:
            same = (f"{names[later].strip()} twice" if names[earlier].strip().casefold()
                    == names[later].strip().casefold() else
                    f"the same method twice ({names[earlier].strip()} and "
                    f"{names[later].strip()})")
            raise SettingsError(f"--methods names {same}; give each method once.")
    avoid = avoid_from_args(args)
    if avoid and not any(len(m.lanes) == 2 and "base" in m.lanes for m in methods):
        check_avoid(methods[0], avoid)
    sampling = sampling_kwargs(args)
    prompt = prompt_from_args(args)
    want_trace = args.trace or args.show_steering
    preference, like = preference_from_args(args), like_from_args(args)
    model = load_model(args, max_lanes=max(4, lanes_needed(methods, preference, like)))
    with closed_uninterrupted(model):
        comparison = model.compare(prompt, methods, preference=preference, like=like,
                                   **generation_kwargs(avoid, want_trace, args.opposite),
                                   **sampling)
        tell_unsteered(names, preference, avoid, like,  # the request checked: it runs
                       opposite=args.opposite)
        exit_code = 130  # unless the run ends without a Ctrl-C
        try:
            with cancel_on_interrupt(comparison.cancel) as interrupt:
                results = comparison.run()
            exit_code = interrupt.exit_code
        except KeyboardInterrupt:  # a second Ctrl-C
            comparison.close()
            results = comparison.results
        comparison.close()  # (ended before the answers are shown, as generate's: see there)
        del comparison
        if args.json:
            print(json_line({"prompt": prompt,
                             "results": [{**_result_json(result, model.path, trace=args.trace),
                                          "requested": name.strip()}
                                         for result, name in zip(results, names, strict=False)]}))
        else:
            print(side_by_side(results, shutil.get_terminal_size().columns,
                               show_steering=args.show_steering, requested=names))
        cut = [steering_label(result.stats) for result in results if window_cut(result.stats)]
        if cut:
            print(f"localpref: the context window ended the answer{'s' if len(cut) > 1 else ''} "
                  f"of {', '.join(cut)} before --max-tokens (a larger --ctx, or a shorter prompt, "
                  "leaves more room).", file=sys.stderr)
        if exit_code:
            say_stopped("the answers are as far as each method had written")
        return exit_code


#: The most of standard input read as a prompt (``-``): more than the largest model window
#: (a million tokens, about 4 MiB of text) holds.
MAX_PROMPT_BYTES = 16 * 2**20


def prompt_from_args(args: argparse.Namespace) -> str:
    """The prompt argument, or all of standard input when it is ``-``
    (``cat notes.txt | localpref generate - -p concise``)."""
    if args.prompt != "-":
        return args.prompt
    if sys.stdin is None:  # started with it closed (``<&-``)
        raise SettingsError("The prompt is - but standard input is closed; pipe the prompt "
                            "in, e.g. cat notes.txt | "
                            f"{getattr(args, 'command_prog', 'localpref generate')} -.")
    stream = getattr(sys.stdin, "buffer", None)
    try:  # up to the limit: `yes |` or `< /dev/zero` never ends (it filled the memory)
        data = (stream.read(MAX_PROMPT_BYTES + 1) if stream is not None
                else sys.stdin.read(MAX_PROMPT_BYTES + 1))
        if len(data) > MAX_PROMPT_BYTES:
            raise SettingsError(f"Standard input is over {MAX_PROMPT_BYTES // 2**20} MiB; a "
                                "prompt must fit in the model's window, far less than that.")
        # (a byte-order mark, which Windows editors write, is no part of the prompt)
        text = (data.decode("utf-8-sig") if isinstance(data, bytes)
                else data.removeprefix("\ufeff")).strip()
    except UnicodeDecodeError:
        raise SettingsError("Standard input is not UTF-8 text.") from None
    if not text:
        command = getattr(args, "command_prog", "localpref generate")
        raise SettingsError("The prompt is - but standard input held no text; pipe the prompt "
                            f"in, e.g. cat notes.txt | {command} -.")
    return text


def _result_json(result: Result, model_path: Any, *, trace: bool = False) -> dict[str, Any]:
    """The ``--json`` object of one answer (docs/design.md, "The `--json` objects")."""
    stats = result.stats
    payload = {
        "text": result.text,
        "method": stats["method"],
        "preference": stats["preference"],
        "avoid": stats.get("avoid"),
        "model": stats["model"],
        "model_path": str(model_path),
        "stats": stats,
    }
    if trace:
        payload["trace"] = getattr(result, "trace", None)
    return payload


#: The narrowest column of ``compare``'s answers, and the spaces between two columns.
MIN_COLUMN, COLUMN_GAP = 16, 3


def side_by_side(results: list[Result], width: int, *, show_steering: bool = False,
                 requested: Sequence[str] = ()) -> str:
    """The answers in columns, each headed by what ran and its tokens/s (and, where a method
    of ``requested`` ran as plain decoding for want of a preference, its name: four columns
    all headed "base greedy" did not say which was which); with ``show_steering`` the changed
    tokens are in ``[[...]]`` (columns are wrapped, so no colour) and a last line per column
    says how many. As many columns a band as ``width`` holds at ``MIN_COLUMN`` cells each
    (four answers on 40 columns: two bands of two), so no line is wider than the terminal."""
    per_band = max(1, min(len(results), (width + COLUMN_GAP) // (MIN_COLUMN + COLUMN_GAP)))
    column = max(MIN_COLUMN if per_band > 1 else 1,
                 (width - COLUMN_GAP * (per_band - 1)) // per_band)
    columns = []
    # (results of a comparison stopped early may be fewer than the names requested)
    names = itertools.chain(requested, itertools.repeat(""))
    for result, name in zip(results, names, strict=False):
        header = f"{steering_label(result.stats)} ({result.stats['tokens_per_s']:.1f} tok/s)"
        ran = str(result.stats.get("method", "")).split(" ")[0]
        if name.strip() and ran == "base" and name.strip().casefold() != "base":
            header = f"{name.strip()}, nothing to steer toward: {header}"
        lines = columns_text.wrap(header, column) + ["-" * column]
        text = _shown(result, ansi=False) if show_steering else result.text
        for paragraph in text.strip().splitlines() or [""]:
            lines += columns_text.wrap(paragraph, column) or [""]
        if show_steering:
            lines += ["-" * column, *columns_text.wrap(steering_line(result.stats), column)]
        columns.append(lines)
    bands = []
    for start in range(0, len(columns), per_band):
        rows = itertools.zip_longest(*columns[start:start + per_band], fillvalue="")
        bands.append("\n".join((" " * COLUMN_GAP).join(columns_text.pad(cell, column)
                                                        for cell in row).rstrip()
                                for row in rows))
    return "\n\n".join(bands)
