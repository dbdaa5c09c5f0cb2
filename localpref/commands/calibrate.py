"""``localpref calibrate``: choose the recommended steering's strength for one model file.

Sweeps the strength (Amulet's effective contrast k), tau and the base lane (neutral or the
preferences' opposites) on the project's calibration prompts for creative, verbose, concise and
uplifting, against Pref, and stores the setting the rule picks (docs/steering.md,
"Calibration") for this model file. Progress and the time left go to stderr; Ctrl-C keeps the
finished generations and the same command continues from them.
"""

from __future__ import annotations

import argparse
import json
import math
from typing import Any

from localpref.calibration.choice import FLUENCY_BUDGET, setting_of
from localpref.calibration.prompts import CALIBRATION_PROMPTS
from localpref.calibration.record import model_key, rows_path
from localpref.calibration.record import reset as reset_calibration
from localpref.calibration.sweep import Plan
from localpref.commands import columns
from localpref.commands.interrupt import (
    interrupt_once,
    say_stopped,
    terminate_as_exit,
)
from localpref.commands.options import (
    add_model_options,
    comma_list,
    load_model,
    load_settings,
)
from localpref.commands.showing import json_line
from localpref.errors import SettingsError
from localpref.numbers import number

#: Lanes the calibration model decodes at once (eight two-lane generations).
LANES = 16


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "calibrate",
        help="choose the recommended steering's strength for this model (stored per file)",
        description="Sweep the recommended steering's strength, tau and base lane (neutral or "
        "the opposite) on the calibration prompts for creative, verbose, concise and uplifting, "
        "and store the setting that moves the most preferences past Pref within the fluency "
        "budget. Generating without a method then uses it for this model file. Ctrl-C keeps "
        "what finished; the same command continues.",
    )
    add_model_options(parser)
    parser.add_argument("--quick", action="store_true",
                        help="a small sweep (4 prompts, 48 tokens (verbose 192), k 1, 2, 4 at "
                        "tau 0.05): about 2-3 minutes for a 135M model on 2 cores, 13 or "
                        "more for a 0.5B one; the progress line estimates the rest")
    parser.add_argument("--limit", type=int, default=None, metavar="N",
                        help=f"use the first N calibration prompts (of "
                        f"{len(CALIBRATION_PROMPTS)}; default all, --quick 4)")
    parser.add_argument("--max-tokens", type=int, default=None, metavar="N",
                        help="tokens per answer (default 128, --quick 48; verbose: --long-tokens)")
    parser.add_argument("--long-tokens", type=int, default=None, metavar="N",
                        help="tokens per answer for a preference that lengthens answers "
                        "(verbose; default 4 times --max-tokens, so that an answer can grow "
                        "past what Pref writes)")
    parser.add_argument("--strengths", default=None, metavar="K,K,...",
                        help="the strengths k to try (default 0.5,1,2,4,8; --quick 1,2,4)")
    parser.add_argument("--taus", default=None, metavar="T,T,...",
                        help="the plausibility taus to try (default 0.05,0.2; --quick 0.05)")
    parser.add_argument("--budget", type=number, default=FLUENCY_BUDGET, metavar="NATS",
                        help="how far below Pref's fluency (nats per token, under the "
                        "preference lane) a setting may go (default 0.5)")
    parser.add_argument("--kl-budget", type=number, default=None, metavar="NATS",
                        help="the per-token KL guard every setting carries: at each token the "
                        "strength is cut back until the steered distribution is within NATS of "
                        "the preference lane's (default: the fluency budget)")
    parser.add_argument("--no-kl-budget", action="store_true",
                        help="sweep unguarded settings (as calibrations did before the guard)")
    parser.add_argument("--parallel", type=int, default=LANES // 2, metavar="N",
                        help=f"requests decoded together (default {LANES // 2}); on a model "
                        "whose lanes are not bit-exact beside others ('localpref bench "
                        "--exactness'), 1 makes the calibration the same on every run")
    parser.add_argument("--reset", action="store_true",
                        help="remove this model file's calibration (and its sweep) and exit")
    parser.add_argument("--json", action="store_true",
                        help="print one JSON object: model, chosen {method, settings}, rows, ...")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    parser.set_defaults(func=run)


def _numbers(text: str | None, flag: str, *, low: float, below: float | None = None
             ) -> list[float] | None:
    if text is None:
        return None
    values = []
    for item in comma_list(text):
        try:
            value = number(item)
        except ValueError:
            raise SettingsError(f"{flag} takes numbers separated by commas (got {item!r}).") \
                from None
        if not math.isfinite(value):
            raise SettingsError(f"{flag}: every value must be a finite number (got {item}).")
        if value < low or (below is not None and value >= below):
            bounds = f"in [{low:g}, {below:g})" if below is not None else f"{low:g} or more"
            raise SettingsError(f"{flag}: every value must be {bounds} (got {item}).")
        values.append(value)
    if not values:
        raise SettingsError(f"{flag} needs at least one number, e.g. {flag} 0.5,1.")
    return sorted(set(values))


def plan_from_args(args: argparse.Namespace) -> Plan:
    """The sweep the flags ask for, checked (one sentence for a bad value)."""
    if args.limit is not None and not 1 <= args.limit <= len(CALIBRATION_PROMPTS):
        raise SettingsError(f"--limit must be from 1 to {len(CALIBRATION_PROMPTS)} "
                            f"(got {args.limit}).")
    if args.max_tokens is not None and args.max_tokens < 1:
        raise SettingsError(f"--max-tokens must be 1 or more (got {args.max_tokens}).")
    if not 1 <= args.parallel <= LANES // 2:
        raise SettingsError(f"--parallel must be from 1 to {LANES // 2} (got {args.parallel}).")
    if args.long_tokens is not None and args.long_tokens < 1:
        raise SettingsError(f"--long-tokens must be 1 or more (got {args.long_tokens}).")
    if not math.isfinite(args.budget) or args.budget <= 0:
        raise SettingsError(f"--budget must be greater than 0 (got {args.budget}).")
    if args.kl_budget is not None and args.no_kl_budget:
        raise SettingsError("Give --kl-budget or --no-kl-budget, not both.")
    if args.kl_budget is not None and not (math.isfinite(args.kl_budget)
                                           and args.kl_budget > 0):
        raise SettingsError(f"--kl-budget must be greater than 0 (got {args.kl_budget}).")
    guard = None if args.no_kl_budget else (
        args.kl_budget if args.kl_budget is not None else args.budget)
    return Plan.make(quick=args.quick, limit=args.limit, max_tokens=args.max_tokens,
                     long_max_tokens=args.long_tokens,
                     strengths=_numbers(args.strengths, "--strengths", low=0.0),
                     taus=_numbers(args.taus, "--taus", low=0.0, below=1.0),
                     kl_budget=guard)


def run(args: argparse.Namespace) -> int:
    """Reset, or run the sweep and print the choice. Every flag is checked first, also with
    ``--reset``: a mistyped command removes nothing."""
    plan = plan_from_args(args)
    load_settings(args)  # a bad --threads or --ctx is one sentence, before the sweep
    if args.reset:
        return _reset(args)
    from localpref.calibration.run import calibrate

    model = load_model(args, max_lanes=LANES, max_queued=LANES)
    # SIGTERM (kill, systemd, a CI timeout) stops the sweep as Ctrl-C does, exit code 143
    with interrupt_once(), terminate_as_exit() as termination:
        try:
            try:
                record = calibrate(model, plan, budget=args.budget,
                                   progress=not args.no_progress, parallel=args.parallel)
            except (KeyboardInterrupt, SystemExit) as stop:
                code = termination.exit_code_of(stop)
                if code is None:
                    raise
                say_stopped(f"the finished generations are kept in "
                            f"{rows_path(model.calibration_key)}; run the same command to "
                            "continue")
                return code
        finally:
            model.close()
    if args.json:
        print(json_line(record))
    else:
        print(render(record))
    return 0


def _reset(args: argparse.Namespace) -> int:
    from localpref.models import resolve_model

    path = resolve_model(args.model)
    removed = reset_calibration(model_key(path))
    if args.json:
        print(json.dumps({"model": str(path), "reset": removed}))
    elif removed:
        print(f"Removed the calibration of {path.name}: the recommended steering is the "
              "uncalibrated default again.")
    else:
        print(f"{path.name} had no calibration.")
    return 0


def _cell(value: Any, digits: int = 2) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{value:+.{digits}f}" if isinstance(value, float) else str(value)


def _pairs(row: dict[str, Any], prompts: int) -> str:
    """The prompts a row's difference is over, of the sweep's ``prompts``: ``6/8`` when two
    gave none (both answers cut at the token cap, which a length score says nothing of, or a
    score with no value, such as the MTLD of too short an answer)."""
    paired = row.get("n", 0)
    return f"{paired}/{prompts}" if paired < prompts else str(paired)


def _verdict(row: dict[str, Any]) -> str:
    if row.get("moved"):
        return "past Pref"
    return "wrong way" if row.get("wrong_way") else "no different"


def render(record: dict[str, Any]) -> str:
    """The sweep table and the choice, as text."""
    plan = record["plan"]
    long_tokens = plan.get("long_max_tokens")
    lengths = f"{plan['max_tokens']} tokens" + (
        f", verbose {long_tokens}" if long_tokens and long_tokens != plan["max_tokens"] else "")
    guard = plan.get("kl_budget")
    guard_text = (f", every setting guarded at a KL of {guard:g} nats a token"
                  if isinstance(guard, (int, float)) else "")
    prompts = f"{plan['prompts']} prompt{'' if plan['prompts'] == 1 else 's'}"
    lines = [f"Calibration of {record['model']} ({prompts}, {lengths}; "
             f"fluency budget {record['budget']:g} nats under the preference lane{guard_text})",
             ""]
    shown = [(setting_of(row).label, row) for row in record["rows"] if row["method"] != "pref"]
    # each text column as wide as its longest cell (content_words, a free-text preference)
    wide = {name: 1 + max([len(name)] + [columns.width(str(row[name])) for _, row in shown])
            for name in ("preference", "metric")}
    wide_setting = max([32] + [len(label) for label, _ in shown]) + 1
    header = (f"{'setting':<{wide_setting}}{'preference':<{wide['preference']}}"
              f"{'metric':<{wide['metric']}}{'d score':>9}{'effect':>8}"
              f"{'d fl.pref':>10}{'d fl.base':>10}{'pairs':>7}  verdict")
    lines += [header, "-" * len(header)]
    for setting, row in shown:
        lines.append(f"{setting:<{wide_setting}}"
                     f"{columns.pad(str(row['preference']), wide['preference'])}"
                     f"{row['metric']:<{wide['metric']}}"
                     f"{_cell(row['delta']):>9}{_cell(row['effect']):>8}"
                     f"{_cell(row['fluency_pref_delta']):>10}"
                     f"{_cell(row['fluency_base_delta']):>10}{_pairs(row, plan['prompts']):>7}  "
                     f"{_verdict(row)}")
    settings = record["chosen"]["settings"]
    chosen_guard = settings.get("kl_budget")
    chosen = (f"k={settings['contrast']:g} tau={settings['tau']:g} "
              + (f"kl={chosen_guard:g} " if isinstance(chosen_guard, (int, float)) else "")
              + f"{'opposite' if settings.get('opposite') else 'neutral'} base lane")
    lines += ["", f"Reason: {record['reason']}."]
    if record["calibrated"]:
        lines.append(f"Chosen for this model file: {record['chosen']['method']} {chosen}.")
    else:
        lines.append(f"Kept the uncalibrated default: {record['chosen']['method']} {chosen}.")
    for name, own in (record["chosen"].get("per_preference") or {}).items():
        lines.append(f"  {name}, named alone: {own['reason']}.")
    return "\n".join(lines)
