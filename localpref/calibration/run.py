"""A whole calibration of one loaded model: resume the sweep, finish it, choose, store.

The raw rows (one generation a line) are appended to ``record.rows_path(key)`` as they finish,
so Ctrl-C keeps them and the next run skips them (matched by ``sweep.Unit.key``: the same
prompt, preference, setting and answer length). When every unit of the plan has a row, the
sweep table is built (``choice.summary_rows``), the rule picks a setting (``choice.choose``),
and the record is stored (``record.write_record``) with the table beside the choice.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, TextIO

from localpref.calibration.choice import (
    FLUENCY_BUDGET,
    PREFERENCE_SCORES,
    Setting,
    choose,
    choose_per_preference,
    summary_rows,
)
from localpref.calibration.record import (
    CALIBRATED_METHOD,
    CalibrationError,
    held,
    rows_path,
    write_record,
)
from localpref.calibration.sweep import Plan, Scoring, run_units
from localpref.evaluation.progress import Progress
from localpref.evaluation.records import ends_inside_a_line
from localpref.methods import recommended_method
from localpref.request import whole_number

if TYPE_CHECKING:
    from localpref.api import Model


def stored_rows(key: str) -> Iterator[dict[str, Any]]:
    """The raw rows kept for this model file (a line cut short by a kill, or one that is
    not UTF-8, is skipped: it is generated again)."""
    try:
        lines = rows_path(key).read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return
    for line in lines:
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if _usable_row(row):
            yield row


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _usable_row(row: Any) -> bool:
    """Whether a stored row holds what the sweep's table reads, of the kinds it reads them
    (a hand edit's ``"strength": "x"`` or ``"unit": [1]`` ended the next run with a
    traceback): one that does not is generated again."""
    if not isinstance(row, dict):
        return False
    if not (isinstance(row.get("unit"), str) and isinstance(row.get("preference"), str)
            and whole_number(row.get("prompt")) and row.get("method") in ("pref", "amulet")):
        return False
    measured = all(row.get(name) is None or _is_number(row.get(name))
                   for name in ("score", "fluency_pref", "fluency_base", "n_tokens"))
    if row["method"] == "pref":
        return measured
    return (measured and _is_number(row.get("strength")) and _is_number(row.get("tau"))
            and isinstance(row.get("opposite"), bool)
            and (row.get("kl_budget") is None or _is_number(row.get("kl_budget"))))


def default_settings() -> dict[str, Any]:
    """The uncalibrated recommended steering's settings, as a calibration stores them."""
    method = recommended_method()
    return {"contrast": method.contrast, "tau": method.tau, "kl_budget": method.kl_budget,
            "end_tokens": method.end_tokens, "opposite": False}


def calibrate(model: Model, plan: Plan, *, budget: float = FLUENCY_BUDGET,
              progress: bool = True, stream: TextIO | None = None,
              parallel: int | None = None) -> dict[str, Any]:
    """Run (or finish) the sweep of ``plan`` on ``model``, choose, store; the record.

    ``parallel`` requests decode together (None: one per two of the model's lanes); on a
    model whose lanes are not bit-exact beside others, 1 gives the same rows on every run.

    ``KeyboardInterrupt`` leaves the finished rows stored and no record written. Another
    calibration of the same model file running meanwhile is a ``CalibrationError`` before any
    generation (``record.held``).
    """
    with held(model.calibration_key):
        return _calibrate(model, plan, budget=budget, progress=progress, stream=stream,
                          parallel=parallel)


def _calibrate(model: Model, plan: Plan, *, budget: float, progress: bool,
               stream: TextIO | None, parallel: int | None) -> dict[str, Any]:
    key = model.calibration_key
    units = plan.units()
    wanted = {unit.key for unit in units}
    # A row scored with another metric than its preference's today (verbose before it was
    # scored by its distinct sentences) is generated again.
    done = {row["unit"]: row for row in stored_rows(key)
            if row["unit"] in wanted and row.get("metric") == _metric(row.get("preference"))}
    todo = [unit for unit in units if unit.key not in done]
    bar = Progress(len(units), label="calibrate", stream=stream or sys.stderr, enabled=progress)
    bar.skip(len(done))
    path = rows_path(key)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        torn = ends_inside_a_line(path)
        with path.open("a", encoding="utf-8") as handle:
            if torn:  # a kill tore the last row: the next starts a line of its own
                handle.write("\n")

            def keep(row: dict[str, Any]) -> None:
                handle.write(json.dumps(row) + "\n")
                handle.flush()
                done[row["unit"]] = row
                bar.advance()

            run_units(model, todo, keep, scoring=Scoring(), parallel=parallel)
    except OSError as error:
        raise CalibrationError(f"Cannot write the calibration rows to {path}: "
                               f"{error.strerror or error}.") from None
    finally:
        bar.close()
    rows = summary_rows(done[unit.key] for unit in units)
    choice = choose(rows, budget)
    default = default_settings()

    def stored(setting: Setting | None) -> dict[str, Any]:
        """A chosen setting as the record stores it: the default's fields, then its own."""
        return {**default, **(setting.settings() if setting else {})}

    settings = stored(choice.setting)
    own = choose_per_preference(rows, budget)
    per_preference = {name: {"settings": stored(mine.setting), "reason": mine.reason}
                      for name, mine in own.items()}
    calibrated = choice.setting is not None or any(m.setting for m in own.values())
    record = {
        "model": model.name,
        "path": str(model.path),
        "key": key,
        "calibrated_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "calibrated": calibrated,
        "chosen": {"method": CALIBRATED_METHOD, "settings": settings,
                   "per_preference": per_preference},
        "reason": (choice.reason if choice.setting is not None else
                   f"{choice.reason}: the uncalibrated default is kept"
                   + (" where no preference's own setting applies" if calibrated else "")),
        "moved": choice.moved,
        "effect": choice.effect,
        "budget": budget,
        "default": default,
        "plan": plan.describe(),
        "rows": [_json_safe(row) for row in rows],
    }
    write_record(key, record)
    return record


def _metric(preference: object) -> str | None:
    """The score a preference's rows are made with today (``choice.PREFERENCE_SCORES``)."""
    found = PREFERENCE_SCORES.get(preference) if isinstance(preference, str) else None
    return found[0] if found else None


def _json_safe(row: dict[str, Any]) -> dict[str, Any]:
    """NaN becomes None (JSON has no NaN)."""
    return {k: (None if isinstance(v, float) and v != v else v) for k, v in row.items()}
