"""``localpref chat``: open the chat app, or export / list saved conversations.

The app (package ``tui``) is imported only inside the handler, so ``import localpref`` and the
other commands never load Textual.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path
from typing import Any

from localpref.commands.models import add_model_options
from localpref.commands.options import (
    add_avoid_option,
    add_like_option,
    like_from_args,
    load_settings,
)
from localpref.commands.showing import avoid_from_args, check_stdout_open
from localpref.errors import LocalprefError, LocalprefWarning, SettingsError
from localpref.methods import resolve_method
from localpref.presets import preference_sentences
from localpref.store import Store, data_dir, default_path
from localpref.weights import parse_preference_items


def add_parser(subparsers: Any) -> None:
    """Register ``chat``."""
    parser = subparsers.add_parser(
        "chat",
        help="chat in the terminal with live preference steering (the app)",
        description="Open the chat app. History, settings and profiles are kept in "
        "$LOCALPREF_HOME (default: $XDG_DATA_HOME/localpref or ~/.local/share/localpref).",
    )
    add_model_options(parser)
    parser.add_argument("--preference", "-p", action="append", metavar="TEXT[=WEIGHT]",
                        help="a built-in preference name or free text (repeatable); "
                        "TEXT=NUMBER sets its strength slider (-p concise=1 -p uplifting=0.4)")
    add_avoid_option(parser)
    add_like_option(parser)
    parser.add_argument("--method", metavar="NAME",
                        help="recommended, base, pref, contrastive, amulet or pad (default: "
                        "the last used); unlike generate's --method, it keeps the app's "
                        "settings of that method (the recommended strength unless changed "
                        "in the panel, whose Paper button gives the papers')")
    instead = parser.add_mutually_exclusive_group()  # each does one thing instead of the app
    instead.add_argument("--export", metavar="ID", type=int,
                         help="write conversation ID as Markdown instead of opening the app")
    parser.add_argument("--output", "-o", metavar="FILE",
                        help="with --export: the file to write (default: standard output)")
    instead.add_argument("--list", action="store_true",
                         help="list saved conversations (ID, messages, last updated, title) "
                              "and exit")
    instead.add_argument("--where", action="store_true",
                         help="print the data folder and the history file, and exit")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Export, list, show paths, or run the app."""
    if args.output is not None and not args.output.strip():
        raise LocalprefError("--output needs a file name (leave it out for standard output).")
    if args.output and args.export is None:
        raise LocalprefError("--output goes with --export ID.")
    if args.where:
        print(f"data folder: {data_dir()}")
        print(f"history: {data_dir() / 'history.sqlite3'}")
        return 0
    if args.export is not None:
        return _export(args.export, args.output)
    if args.list:
        return _list()
    warnings.simplefilter("ignore", LocalprefWarning)  # the app shows them as notices
    app = app_from_args(args)
    # Textual draws on standard error and takes the screen's size from standard output
    streams = (sys.stdin, sys.stdout, sys.__stderr__)
    if not all(stream is not None and stream.isatty() for stream in streams):
        raise LocalprefError("The chat app needs a terminal (its input, output and standard "
                             "error); for an answer in a script use localpref generate, or "
                             "chat --list / --export for the saved conversations.")
    app.run()
    if app.exit_sentence:  # (after the terminal is restored, unwrapped)
        print(app.exit_sentence, file=sys.stderr)
    return app.return_code or 0


def app_from_args(args: argparse.Namespace, **app_options: Any) -> Any:
    """The chat app of the command line's flags (``app_options``, such as an already loaded
    ``model``, go to ``LocalprefApp`` too). A bad method name or ``--like`` file, or flags no
    answer could use together (Pref with weights, Base with an avoid text), is one sentence
    here, before the app opens; examples over ``max_like_tokens`` make the app exit with code
    2 and that sentence once the model is loaded."""
    if args.method:
        resolve_method(args.method)  # a bad name is one sentence and exit 2, before the app
    preference_sentences(parse_preference_items(args.preference))  # so is a bad weight or text
    avoid = avoid_from_args(args)
    like = like_from_args(args)
    from tui.app import LocalprefApp, flags_problem  # lazily: the rest never loads Textual

    problem = flags_problem(args.preference, args.method, avoid, like)
    if problem is not None:  # (the app opened, and refused every message)
        raise SettingsError(problem)
    extra = {"avoid": avoid} if avoid else {}
    if like:
        extra["like"] = like
    return LocalprefApp(model_spec=args.model, model_file=args.model_file,
                        **load_settings(args), preference=args.preference,
                        method=args.method, **extra, **app_options)


def _export(conversation_id: int, output: str | None) -> int:
    if not output:
        check_stdout_open()
    nothing_saved = _no_history()
    if nothing_saved is not None:  # (opening the store would create it)
        raise LocalprefError(f"There is no conversation {conversation_id}: nothing is saved "
                             f"yet ({nothing_saved} does not exist).")
    with Store() as store:
        _say_what_was_read(store)
        text = store.export_markdown(conversation_id)
    if output:
        try:
            Path(output).write_text(text, encoding="utf-8")
        except OSError as error:
            raise LocalprefError(f"Cannot write {output}: {error.strerror}.") from error
        print(f"wrote conversation {conversation_id} to {output}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0


def _say_what_was_read(store: Store) -> None:
    """Refuse (one sentence, exit 2) when nothing of the history could be read; else say how
    it was read where that is worth a line (a read-only copy: the app's notice)."""
    if store.unread is not None:
        raise LocalprefError(store.unread)
    if store.notice:
        print(f"localpref: {store.notice}", file=sys.stderr)


def _list() -> int:
    nothing_saved = _no_history()
    if nothing_saved is not None:  # (opening the store would create it)
        print(f"localpref: no saved conversations ({nothing_saved} does not exist yet).",
              file=sys.stderr)
        return 0
    with Store() as store:
        _say_what_was_read(store)
        conversations = store.list_conversations()
        for conversation in conversations:
            count = len(store.messages(conversation.id))
            print(f"{conversation.id:>5}  {count:>4} messages  {conversation.updated_at[:16]}  "
                  f"{one_line(conversation.title)}")
        if not conversations:
            print(f"localpref: no saved conversations in {store.path}.", file=sys.stderr)
    return 0


def _no_history() -> Path | None:
    """The history's path when there is no file there yet, which reading would create (the
    data folder with it), else None (a file there, or a path that cannot be a folder's or
    looked at: the store says why)."""
    path = default_path()
    try:
        if path.exists():
            return None
        existing = next(folder for folder in path.parents if folder.exists())
        return path if existing.is_dir() else None
    except OSError:
        return None


def one_line(text: str) -> str:
    """``text`` on one line of a terminal: a line break is a space, and any other control
    character (an escape that would colour or move the terminal) is shown escaped."""
    return "".join(" " if character in "\r\n\t" else
                   character if character.isprintable() else
                   character.encode("unicode_escape").decode("ascii")
                   for character in text)
