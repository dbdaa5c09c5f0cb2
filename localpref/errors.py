"""Errors the library raises for bad input: each carries one plain sentence for the user.

The command line prints ``str(error)`` on stderr and exits with code 2 (1 for
``RunFailedError``); the app shows it as a notice. Nothing else is caught that way, so a real
bug still shows its traceback.
"""

from __future__ import annotations

import inspect
import os
import warnings

#: Python's own warning format (``one_line_warning`` keeps it for other warnings).
_python_format = warnings.formatwarning


class LocalprefError(Exception):
    """Bad input or an unusable resource, explained in one sentence."""


class ModelError(LocalprefError):
    """A model file that is missing, corrupt, or cannot be fetched."""


class SettingsError(LocalprefError, ValueError):
    """A method or sampling setting outside its allowed range; ``param`` names the setting
    (the keyword of ``Model.generate``, e.g. "max_tokens") when the error is about one."""

    def __init__(self, message: str, *, param: str | None = None) -> None:
        super().__init__(message)
        self.param = param


class UnknownMethodError(SettingsError):
    """A method name that names no method (front ends with names of their own, such as the
    evaluation's columns, say theirs too)."""


class TooManyLanesError(SettingsError):
    """A request that needs more lanes at once than the model decodes (``needed`` against
    ``available``): front ends name the setting that raises the limit."""

    def __init__(self, message: str, *, needed: int, available: int) -> None:
        super().__init__(message)
        self.needed = needed
        self.available = available


class PromptTooLongError(LocalprefError):
    """A prompt that does not fit in the model's context; ``param``: the request field that
    holds it, where a front end knows (the server's ``messages`` or ``prompt``); ``blamed``:
    the settings the sentence tells to shorten (``preference``, ``avoid``, ``like``), none
    where it tells to shorten the prompt."""

    param: str | None = None

    def __init__(self, message: str, *, blamed: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.blamed = blamed


class TemplateError(LocalprefError):
    """A chat template that fails to render."""


class RunFailedError(LocalprefError):
    """A long run that the machinery under it stopped (not its input): the command line exits
    with code 1, not the 2 of bad input, so that a script can tell them apart."""

    exit_code = 1


class BusyError(LocalprefError):
    """Too many requests are waiting for lanes; try again when one has finished."""


class LocalprefWarning(UserWarning):
    """Something the user should know about a model that still works (``Model.notices``)."""


def warning_line(notice: str) -> str:
    """How the command line tells a model's notice (``Model.notices``): one line."""
    return f"localpref: warning: {notice}"


def one_line_warning(message: Warning | str, category: type[Warning], filename: str,
                     lineno: int, line: str | None = None) -> str:
    """A ``warnings.formatwarning`` for the command line: a ``LocalprefWarning`` as one
    ``localpref: warning: ...`` line, as the commands tell a model's notices (not Python's
    file, line number and source line); any other warning as Python writes it."""
    if issubclass(category, LocalprefWarning):
        return warning_line(str(message)) + "\n"
    return _python_format(message, category, filename, lineno, line)


def callers_stacklevel() -> int:
    """The ``stacklevel`` for a ``warnings.warn`` in the function that calls this one which
    names the first frame outside the localpref package: the user's line, whether they made
    a ``Model`` themselves or through ``localpref.load``."""
    package = os.path.dirname(os.path.abspath(__file__))
    frame = inspect.currentframe()
    frame = frame.f_back if frame is not None else None  # the warning's function: level 1
    level = 1
    while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(
            package + os.sep):
        frame = frame.f_back
        level += 1
    return level


def interrupted(error: BaseException | None) -> bool:
    """Whether ``error`` is a KeyboardInterrupt or was raised while one was being handled
    (Ray's wrapped errors, a C extension's ImportError when a Ctrl-C stopped its loading)."""
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, KeyboardInterrupt):
            return True
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return False
