"""`localpref generate PROMPT` and `localpref compare PROMPT`."""

from __future__ import annotations

import argparse
import itertools
import json
import shutil
import sys
import textwrap
from typing import Any

from localpref.commands.options import (
    add_method_options,
    add_model_options,
    add_preference_options,
    add_sampling_options,
    comma_list,
    load_model,
    method_from_args,
    request_from_args,
)
from localpref.decoding import Generation, Result
from localpref.errors import SettingsError


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    generate = subparsers.add_parser(
        "generate",
        help="answer one prompt, steered toward a preference",
        description="Answer one prompt, streamed to the terminal, steered toward a preference.",
    )
    generate.add_argument("prompt", help="the user message")
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
        help="print one JSON object: text, method, preference, model, stats",
    )
    generate.set_defaults(func=run_generate)

    compare = subparsers.add_parser(
        "compare",
        help="several methods answer one prompt side by side",
        description="Several methods answer one prompt at once (one batched decode per step) "
        "and are printed side by side with their tokens/s.",
    )
    compare.add_argument("prompt", help="the user message")
    compare.add_argument(
        "--methods",
        default="base,pref,amulet,pad",
        help="comma-separated methods (default base,pref,amulet,pad)",
    )
    add_model_options(compare)
    add_preference_options(compare)
    add_method_options(compare, single=False)
    add_sampling_options(compare, max_tokens=128)
    compare.add_argument("--json", action="store_true", help="print one JSON object")
    compare.set_defaults(func=run_compare)


def run_generate(args: argparse.Namespace) -> int:
    """Stream the answer (or print JSON); Ctrl-C stops and keeps what was printed."""
    request = request_from_args(args, args.prompt, method=method_from_args(args))
    model = load_model(args)
    generation = Generation(model.submit(request))
    interrupted = False
    try:
        for piece in generation:
            if not args.json:
                sys.stdout.write(piece)
                sys.stdout.flush()
    except KeyboardInterrupt:
        generation.close()
        interrupted = True
    result = generation.result
    assert result is not None
    if args.json:
        print(json.dumps(_result_json(result), ensure_ascii=False))
    else:
        sys.stdout.write("\n")
        stats = result.stats
        print(
            f"[{stats['method']} · {stats['n_tokens']} tokens · {stats['tokens_per_s']:.1f} "
            f"tokens/s · steering {stats['steer_ms_per_token']:.3f} ms/token · "
            f"{stats['stop_reason']}]",
            file=sys.stderr,
        )
    return 130 if interrupted else 0


def run_compare(args: argparse.Namespace) -> int:
    """Run every method in one batched generation and print the answers side by side."""
    names = comma_list(args.methods)
    if not 1 <= len(names) <= 8:
        raise SettingsError("Give between 1 and 8 methods, e.g. --methods base,pref,amulet,pad.")
    methods = [method_from_args(args, name) for name in names]
    request = request_from_args(args, args.prompt)
    lanes_needed = sum(len(method.lanes) for method in methods)
    model = load_model(args, max_lanes=max(4, lanes_needed))
    comparison = model.submit([request.replace(method=method) for method in methods])
    try:
        results = comparison.run()
    except KeyboardInterrupt:
        comparison.close()
        results = comparison.results
    if args.json:
        print(
            json.dumps(
                {"prompt": args.prompt, "results": [_result_json(r) for r in results]},
                ensure_ascii=False,
            )
        )
    else:
        print(side_by_side(results, shutil.get_terminal_size().columns))
    return 0


def _result_json(result: Result) -> dict[str, Any]:
    stats = result.stats
    return {
        "text": result.text,
        "method": stats["method"],
        "preference": stats["preference"],
        "model": stats["model"],
        "stats": stats,
    }


def side_by_side(results: list[Result], width: int) -> str:
    """The answers in columns, each headed by its method and tokens/s."""
    gap = 3
    column = max(16, (width - gap * (len(results) - 1)) // max(1, len(results)))
    columns = []
    for result in results:
        header = f"{result.stats['method']} ({result.stats['tokens_per_s']:.1f} tok/s)"
        lines = textwrap.wrap(header, column) + ["-" * column]
        for paragraph in result.text.strip().splitlines() or [""]:
            lines += textwrap.wrap(paragraph, column) or [""]
        columns.append(lines)
    rows = itertools.zip_longest(*columns, fillvalue="")
    return "\n".join((" " * gap).join(cell.ljust(column) for cell in row).rstrip() for row in rows)
