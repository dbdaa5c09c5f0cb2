"""What the command line shows about steering: which method ran with which settings, and which
tokens steering changed (``--show-steering``).

A result names what ran in ``stats["method"]`` and ``stats["settings"]``; ``steering_label``
turns that into one short line (``amulet k=0.5 tau=0.2 ... (recommended, uncalibrated
default)``), so the recommended steering (calibrated for the model or not), a named method and
``--paper`` are told apart in every text output. The trace (``Result.trace``, one
dict per token with ``piece`` and ``changed``; docs/design.md, "Trace") gives the highlighted
answer.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from collections.abc import Sequence
from typing import Any

from localpref.errors import SettingsError
from localpref.methods import METHODS, ContrastFamily, Method, avoid_error
from localpref.presets import PRESETS
from localpref.weights import split_weight

#: ANSI styles of a changed token on a terminal (bold yellow) and the reset after it.
ANSI_CHANGED, ANSI_RESET = "\x1b[1;33m", "\x1b[0m"
#: Markers around changed tokens when standard output is not a terminal.
PLAIN_OPEN, PLAIN_CLOSE = "[[", "]]"


def _number(value: Any) -> str:
    return f"{float(value):.3g}"


def steering_label(stats: dict[str, Any], *, sampling: bool = True) -> str:
    """``amulet k=0.5 tau=0.2``: the method that ran and the settings that shape it.

    Amulet shows its effective contrast k (and alpha, lambda, eta, T when k comes from them),
    PAD its weight and candidates, Contrastive (and any other two-lane method) its strength by
    its symbol (``ContrastFamily.strength_symbol``); then the plausibility mask, the KL budget,
    the end-token rule and (with ``sampling``) greedy or the temperature. Base and Pref show
    their name alone.
    """
    name = str(stats.get("method") or "?")
    settings = stats.get("settings") or {}
    parts = [name]
    # the method's class, from its label's first word ("pad (prompt-contrast reward)")
    method_class = METHODS.get(name.split(" ")[0])
    if name.startswith("amulet"):
        k = settings.get("effective_contrast", settings.get("contrast"))
        if k is not None:
            parts.append(f"k={_number(k)}")
        if settings.get("contrast") is None and "alpha" in settings:
            parts.append(f"(alpha={_number(settings['alpha'])} lambda={_number(settings['lam'])}"
                         f" eta={_number(settings['eta'])} T={settings['iterations']})")
    elif name.startswith("pad") and "weight" in settings:
        parts.append(f"w={_number(settings['weight'])} top-{settings.get('candidates', 10)}")
    elif (method_class is not None and issubclass(method_class, ContrastFamily)
          and settings.get(method_class.strength_field) is not None):
        # Contrastive's ratio=2, and any other two-lane method's strength by its symbol
        strength = settings[method_class.strength_field]
        parts.append(f"{method_class.strength_symbol}={_number(strength)}")
    if settings.get("tau"):
        parts.append(f"tau={_number(settings['tau'])}")
    if settings.get("kl_budget") is not None:
        parts.append(f"kl-budget={_number(settings['kl_budget'])}")
    if settings.get("end_tokens") not in (None, "contrast"):
        parts.append(f"ends={settings['end_tokens']}")
    if stats.get("opposite"):
        parts.append("opposite")
    if sampling:
        temperature = settings.get("temperature") or 0.0
        parts.append(f"temperature={_number(temperature)}" if temperature else "greedy")
    note = calibration_note(stats)
    return " ".join(parts) + (f" ({note})" if note else "")


def window_cut(stats: dict[str, Any]) -> bool:
    """Whether the context window ended the answer (its ``length_limit``), not its
    ``--max-tokens``."""
    return stats.get("stop_reason") == "length" and stats.get("length_limit") == "window"


def stop_words(stats: dict[str, Any]) -> str:
    """How an answer ended, for its figures' line: its ``stop_reason``, and for a length the
    context window cut (``window_cut``) what to change."""
    if window_cut(stats):
        return "length: the context window ended it (a larger --ctx, or a shorter prompt)"
    return str(stats.get("stop_reason"))


def calibration_note(stats: dict[str, Any]) -> str:
    """``recommended, calibrated for this model`` or ``recommended, uncalibrated default`` for
    the recommended steering (``stats["recommended"]``; the latter also where the model's
    calibration kept the default for this preference); empty for a method named explicitly."""
    if not stats.get("recommended"):
        return ""
    calibration = stats.get("calibration")
    if calibration and not calibration.get("default_kept"):
        return "recommended, calibrated for this model"
    if calibration:
        return "recommended, uncalibrated default: the calibration kept it"
    return "recommended, uncalibrated default"


def check_stdout_open() -> None:
    """Refuse, before any work, a command whose answer goes to a standard output that was
    closed (``>&-``: Python's ``sys.stdout`` is then None, and the first write a traceback)."""
    if sys.stdout is None:
        raise SettingsError("Cannot write the output: standard output is closed; redirect it "
                            "to a file instead.")


def json_line(value: Any) -> str:
    """``value`` as JSON for stdout: its text as it is on a UTF-8 stdout, else escaped
    (``\u2615``), so that nothing becomes ``?`` where the encoding has no such character."""
    encoding = (getattr(sys.stdout, "encoding", None) or "").lower().replace("-", "")
    return json.dumps(value, ensure_ascii=encoding != "utf8")


def highlighted(trace: Sequence[dict[str, Any]], *, ansi: bool) -> str:
    """The answer with every run of changed tokens marked: ANSI colour, or ``[[...]]``.

    The trace's pieces join to the answer, so removing the marks gives the text back.
    """
    opening, closing = (ANSI_CHANGED, ANSI_RESET) if ansi else (PLAIN_OPEN, PLAIN_CLOSE)
    out: list[str] = []
    inside = False
    carried = False  # a changed token whose piece is empty, marked with the next piece
    for step in trace:
        piece = str(step.get("piece", ""))
        if not piece:
            # the first bytes of a character the next token completes (marked with it), or a
            # token a stop string cut away (nothing follows): never an empty [[]]
            carried = carried or bool(step.get("changed"))
            continue
        changed = bool(step.get("changed")) or carried
        carried = False
        if changed and not inside and not piece.strip():  # a space alone: marked with the next
            out.append(piece)
            carried = True
            continue
        if changed and not inside:
            # the piece's leading space stays outside the mark: a line broken there leaves no
            # "[[" at the end of the line above its word
            spaces = piece[:len(piece) - len(piece.lstrip())]
            out.append(spaces)
            piece = piece[len(spaces):]
            out.append(opening)
        elif inside and not changed:
            out.append(closing)
        inside = changed
        out.append(piece)
    if inside:
        out.append(closing)
    return "".join(out)


def steering_line(stats: dict[str, Any], n_tokens: int | None = None) -> str:
    """``steering changed 17 of 96 tokens (mean shift 0.81 nats)``; for a one-lane method
    (no ``changed_tokens`` in its stats), says that nothing was steered."""
    total = stats.get("n_tokens", 0) if n_tokens is None else n_tokens
    tokens = "token" if total == 1 else "tokens"
    changed = stats.get("changed_tokens")
    if changed is None:
        return f"steering changed 0 of {total} {tokens} ({stats.get('method')} is not steered)"
    shift = stats.get("mean_shift")
    shift_text = f"{float(shift):.2f}" if shift is not None else "n/a"
    return f"steering changed {changed} of {total} {tokens} (mean shift {shift_text} nats)"


def avoid_from_args(args: argparse.Namespace) -> list[str] | None:
    """The ``--avoid`` texts (None when not given); an empty one is one sentence."""
    avoid = getattr(args, "avoid", None)
    if not avoid:
        return None
    for text in avoid:
        if not text.strip():
            raise SettingsError("--avoid needs a text, e.g. --avoid verbose or --avoid "
                                "'jargon and long words'.")
        name, equals, _ = text.partition("=")
        if equals and name.strip().lower() in PRESETS:  # "verbose=2": -p's weight, mistyped
            try:
                weighted = split_weight(text)[1] is not None
            except SettingsError:  # the weight is not a number: free text after all
                weighted = False
            if weighted:  # the base lane would read "verbose=2"; free text may hold "="
                raise SettingsError(f"--avoid takes no weights ({text.strip()!r}); give the "
                                    f"text alone, e.g. --avoid {name.strip()}.")
    return [text.strip() for text in avoid]


def check_avoid(method: Method, avoid: Sequence[str] | None) -> None:
    """Avoid steers through the base lane: refuse it for a method without one (Base, Pref,
    PAD with a reward model), in one sentence, before the model is loaded."""
    problem = avoid_error(method) if avoid else None
    if problem:
        raise SettingsError(problem)


def generation_kwargs(avoid: Sequence[str] | None, trace: bool,
                      opposite: bool | None = None) -> dict[str, Any]:
    """``avoid``, ``trace`` and ``opposite`` for ``Model.generate`` / ``stream`` / ``compare``,
    given only when used, so the calls stay the plain ones without them."""
    kwargs: dict[str, Any] = {}
    if avoid:
        kwargs["avoid"] = list(avoid)
    if opposite is not None:
        kwargs["opposite"] = opposite
    if trace:
        kwargs["trace"] = True
    return kwargs


def with_settings(method: Method, settings: dict[str, Any]) -> Method:
    """``method`` with the given dataclass fields replaced (the ones it has)."""
    fields = {f.name for f in dataclasses.fields(method) if f.init}
    usable = {k: v for k, v in settings.items() if k in fields and v is not None}
    return dataclasses.replace(method, **usable) if usable else method
