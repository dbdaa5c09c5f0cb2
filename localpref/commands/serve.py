"""``localpref serve``: an OpenAI-compatible server where every request carries its own
preference (docs/server.md). The web stack is imported only when the command runs."""

from __future__ import annotations

import argparse
import os
import warnings
from typing import Any

from localpref.commands.options import (
    add_model_options,
    check_parallel,
    compile_notice,
    load_settings,
    tell_notices,
)
from localpref.errors import LocalprefWarning, SettingsError, warning_line

API_KEY_ENV = "LOCALPREF_API_KEY"


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "serve",
        help="serve the model over an OpenAI-compatible HTTP API",
        description="Serve the model at http://HOST:PORT/v1 (chat completions, models, health). "
        "Model ids: ID (plain decoding), ID:PRESET (the recommended steering toward it), "
        "ID:METHOD:PRESET (that method with the papers' settings); a 'localpref' object in the "
        "body overrides them. Ctrl-C or SIGTERM stops it.",
    )
    add_model_options(parser)
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to listen on (default 127.0.0.1: this machine only)")
    parser.add_argument("--port", type=int, default=8765, help="port (default 8765; 0: a free one)")
    parser.add_argument("--parallel", type=int, default=4, metavar="N",
                        help="requests decoded at once (default 4; the context gets the lanes "
                        "N two-lane requests need)")
    parser.add_argument("--api-key", default=None, metavar="KEY",
                        help=f"require 'Authorization: Bearer KEY' (default: ${API_KEY_ENV})")
    parser.add_argument("--cors-origin", action="append", default=None, metavar="ORIGIN",
                        help="send CORS headers for this origin (repeatable; default: none)")
    parser.add_argument("--no-prompt-cache", action="store_true",
                        help="evaluate every prompt whole instead of reusing the cells a "
                        "finished request kept: slower first tokens, but a greedy answer is "
                        "the same whatever was served before it")
    parser.set_defaults(func=run_serve_command)


def run_serve_command(args: argparse.Namespace) -> int:
    """Check the flags, then bind, load and serve until Ctrl-C or SIGTERM."""
    check_parallel(args.parallel)
    if not 0 <= args.port <= 65535:
        raise SettingsError(f"--port must be between 0 and 65535 (got {args.port}).")
    loading = load_settings(args)
    api_key = args.api_key if args.api_key is not None else os.environ.get(API_KEY_ENV)
    if api_key is not None and not api_key.strip():  # an empty key would quietly mean none
        raise SettingsError(f"The API key (--api-key or ${API_KEY_ENV}) is empty; give one, "
                            "or leave it out to serve without a key.")
    if api_key is not None and any(c.isspace() or not c.isprintable() for c in api_key):
        # (a key read from a file ends in a newline: every request was then a 401)
        raise SettingsError(f"The API key (--api-key or ${API_KEY_ENV}) holds a space, a line "
                            "break or a control character, which no client sends in its "
                            "Authorization header; remove it.")
    from localpref.server.guards import checked_origin, is_loopback_host
    from localpref.server.run import ServeSettings, serve

    origins = tuple(dict.fromkeys(checked_origin(text) for text in args.cors_origin or ()))
    notices = []
    if api_key is None and not is_loopback_host(args.host):
        notices.append(warning_line(f"serving on {args.host} without an API key: anyone who "
                                    "can reach this address can use the model; give --api-key "
                                    f"KEY (or ${API_KEY_ENV})."))
    for anyone in ("*", "null"):  # (any page can send Origin: null, from a sandboxed frame)
        if api_key is None and anyone in origins:
            notices.append(warning_line(
                f"--cors-origin {anyone} without an API key: any web page open in a browser "
                "on this machine can use the model; name the page's origin, or give --api-key "
                f"KEY (or ${API_KEY_ENV})."))
    settings = ServeSettings(host=args.host, port=args.port, api_key=api_key,
                             cors_origins=origins, bound_notices=tuple(notices))

    def load() -> tuple[Any, str]:
        from localpref.api import load as load_model
        from localpref.server.ids import served_model_id

        with warnings.catch_warnings(), compile_notice():
            warnings.simplefilter("ignore", LocalprefWarning)  # said below, as one line
            model = load_model(args.model, max_lanes=2 * args.parallel,
                               keep_cells=not args.no_prompt_cache, **loading)
        tell_notices(model)
        return model, served_model_id(args.model, model.path)

    return serve(settings, load)
