"""The `localpref` console script: one sub-command per module, one error policy for all.

Every sub-command module exposes ``add_parser(subparsers)``, which registers its parser and sets
``func`` (``args -> int`` exit code) as a default. Bad input raises ``LocalprefError``: it is
printed here as one sentence on stderr with exit code 2, never as a traceback.
"""

from __future__ import annotations

import argparse
import errno
import importlib
import os
import sys
import warnings
from typing import Any, NoReturn

from localpref.errors import LocalprefError, interrupted, one_line_warning

#: Modules that each contribute sub-commands, in the order `--help` lists them.
COMMAND_MODULES = (
    "localpref.commands.chat",
    "localpref.commands.generate",
    "localpref.commands.models",
    "localpref.commands.evaluate",
    "localpref.commands.calibrate",
    "localpref.commands.bench",
    "localpref.commands.serve",
    "localpref.commands.batch",
    "localpref.commands.doctor",
)


class CommandLineParser(argparse.ArgumentParser):
    """argparse whose errors are one line, as every other bad input's (its sub-commands'
    parsers are of this class too: ``add_subparsers`` makes them so)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # the innermost command parsed (``localpref eval merge``) names itself in the namespace
        self.set_defaults(command_prog=self.prog)

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"localpref: {message} (see {self.prog} --help).\n")


def build_parser() -> argparse.ArgumentParser:
    """The whole command line, assembled from the command modules that are present."""
    parser = CommandLineParser(
        prog="localpref",
        description="Personalise what a local GGUF model writes, token by token (Amulet, PAD).",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module_name in COMMAND_MODULES:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as error:
            if error.name == module_name:
                continue
            raise
        module.add_parser(subparsers)
    return parser


#: A write that failed because of where the output goes (a full disk, a device gone).
WRITE_ERRORS = frozenset({errno.ENOSPC, errno.EIO, errno.EDQUOT, errno.EFBIG, errno.EROFS})
#: The exit code of a command whose output's reader went away (128 + SIGPIPE, as a shell
#: reports a process that a closed pipe ended).
BROKEN_PIPE_EXIT = 141


def main(argv: list[str] | None = None) -> int:
    """Run one command; return its exit code (2 for bad input, 1 for a run the machinery under
    it stopped (``RunFailedError``), 130 for Ctrl-C, 141 when the reader of its output went
    away). A Ctrl-C while the command's modules load (NumPy, Numba,
    the engine: ``import localpref`` itself loads none of them) is a cancelled command too."""
    _replace_what_stdout_cannot_encode()
    warnings.formatwarning = one_line_warning
    try:
        return _run(argv)
    except LocalprefError as error:
        print(f"localpref: {error}", file=sys.stderr)
        return getattr(error, "exit_code", 2)
    except KeyboardInterrupt:
        print("", file=sys.stderr)
        return 130
    except ImportError as error:
        if not interrupted(error):
            raise
        # a C extension that a Ctrl-C stopped while it loaded says so as an ImportError
        # ("numba._devicearray failed to import"), with the KeyboardInterrupt as its cause
        print("", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader went away (`localpref generate ... | head`): nothing more can be shown.
        # Python would complain again when it flushes stdout at exit, so stdout goes nowhere.
        _quiet_stdout()
        return BROKEN_PIPE_EXIT
    except OSError as error:
        if error.errno not in WRITE_ERRORS:
            raise
        # the output's disk is full (`> /dev/full`) or gone: what was not written is lost
        _quiet_stdout()
        print(f"localpref: Cannot write the output: {error.strerror}.", file=sys.stderr)
        return 2


def _run(argv: list[str] | None) -> int:
    """Parse the command line and run its command (``main`` turns what it raises into an exit
    code)."""
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown:  # said here, where the sub-command is known, not by the top parser
        print(f"localpref: unrecognized arguments: {' '.join(unknown)} (see "
              f"{args.command_prog} --help).", file=sys.stderr)
        return 2
    if not getattr(args, "func", None):  # no command: the commands, on stderr (exit code 2)
        parser.print_help(sys.stderr)
        return 2
    return int(args.func(args) or 0)


def _quiet_stdout() -> None:
    """Send what is left of stdout nowhere (Python flushes it again at exit)."""
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


def _replace_what_stdout_cannot_encode() -> None:
    """Under an encoding other than UTF-8 (``PYTHONIOENCODING=ascii``), a character the
    terminal cannot show is written as ``?`` instead of ending the command."""
    for stream in (sys.stdout, sys.stderr):
        encoding = (getattr(stream, "encoding", None) or "").lower().replace("-", "")
        if encoding != "utf8" and hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="replace")


if __name__ == "__main__":
    sys.exit(main())
