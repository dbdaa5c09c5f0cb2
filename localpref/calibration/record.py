"""The stored calibration of one model file: where it lives, how the file is recognised, and
the method it gives.

A calibration is one JSON file under ``$LOCALPREF_HOME/calibrations/`` (the user data folder,
``store.data_dir()``), named by the model file's key, beside the raw rows of its sweep
(``<key>.rows.jsonl``, what a rerun resumes from). The key is the SHA-256 of the file's size,
its modification time (ns) and its first and last MiB: a file that is changed, rewritten or
replaced gets another key, so its calibration no longer matches (a copy does not match either:
calibrate the copy). Reading the head and tail costs a few milliseconds once per model.

The record holds the choice (``chosen``: ``{"method", "settings", "per_preference"}``, the
last mapping a built-in preference to its own ``{"settings", "reason"}``), whether it is a real
calibration (``calibrated``: false when no setting beat Pref within the fluency budget, and the
uncalibrated default is kept), the reason in words, the sweep table (``rows``) and
``calibrated_at``. Only a record with ``calibrated`` true changes the recommended steering.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from localpref.errors import LocalprefError
from localpref.file_digest import file_digest
from localpref.file_lock import exclusive
from localpref.methods import PREF_ENDS, Amulet, ContrastFamily, as_recommended
from localpref.presets import single_preset
from localpref.store import data_dir

#: The record's format version (a record of another version is ignored, as if absent).
RECORD_VERSION = 1
#: The settings a calibration may choose (the rest of the recommended steering stays; a record
#: made before the guard has no ``kl_budget``, and its steering stays unguarded).
CALIBRATED_FIELDS = ("contrast", "tau", "kl_budget")
#: The method a calibration steers with (``Calibration.method``).
CALIBRATED_METHOD = "amulet"


class CalibrationError(LocalprefError):
    """A calibration that cannot be read or written, in one sentence."""


def calibrations_dir() -> Path:
    """Where calibrations are kept: ``calibrations/`` in the user data folder."""
    return data_dir() / "calibrations"


def model_key(path: str | Path) -> str:
    """The key of a model file: SHA-256 of its size, mtime and first and last MiB (hex, 32)."""
    return file_digest(path, with_mtime=True)


def record_path(key: str) -> Path:
    """The calibration record of the model file with this key."""
    return calibrations_dir() / f"{key}.json"


def rows_path(key: str) -> Path:
    """The raw sweep rows (one generation a line) of the model file with this key."""
    return calibrations_dir() / f"{key}.rows.jsonl"


def lock_path(key: str) -> Path:
    """The file a calibration of this key holds locked while it runs (``held``)."""
    return calibrations_dir() / f"{key}.lock"


@contextmanager
def held(key: str) -> Iterator[None]:
    """Hold this model file's calibration lock, or raise ``CalibrationError`` at once when
    another process holds it: two sweeps of one file would both append to its rows and
    generate every unit twice, and a reset would remove the rows under a running sweep
    (``file_lock.exclusive`` on ``<key>.lock``)."""
    busy = CalibrationError("Another localpref calibrate is running on this model file; wait "
                            "for it to finish (or stop it) and run this again.")
    with exclusive(lock_path(key), busy=busy, what="the calibration"):
        yield


@dataclass(frozen=True)
class Calibration:
    """A stored calibration: the recommended steering's settings chosen for one model file,
    overall (``settings``) and for the built-in preferences that have their own
    (``per_preference``: name -> settings)."""

    settings: dict[str, Any]
    calibrated_at: str
    record: dict[str, Any]
    per_preference: dict[str, dict[str, Any]] = field(default_factory=dict)

    def settings_for(self, preference: object = None) -> dict[str, Any]:
        """The settings a request with this preference gets: its own when it names exactly one
        built-in preference that has them (``presets.single_preset``), else the overall ones."""
        name = single_preset(preference)
        return self.per_preference.get(name, self.settings) if name else self.settings

    def method(self, preference: object = None) -> ContrastFamily:
        """The recommended steering with the calibrated strength and tau for this preference
        (marked as the recommended steering, ``methods.is_recommended``)."""
        settings = self.settings_for(preference)
        values = {name: settings[name] for name in CALIBRATED_FIELDS if name in settings}
        return as_recommended(Amulet(**values, end_tokens=PREF_ENDS))

    def opposite(self, preference: object = None) -> bool:
        """Whether the calibrated steering for this preference reads the preferences'
        opposites in its base lane."""
        return bool(self.settings_for(preference).get("opposite", False))

    def summary(self, preference: object = None) -> dict[str, Any]:
        """What ``stats["calibration"]`` carries: the settings used for this preference,
        whether they are the preference's own, whether they are the uncalibrated default the
        calibration kept (no setting beat Pref for it, though one did for another
        preference), and when they were chosen."""
        settings = self.settings_for(preference)
        return {"settings": dict(settings), "calibrated_at": self.calibrated_at,
                "per_preference": settings is not self.settings,
                "default_kept": settings == self.record.get("default"),
                "method": CALIBRATED_METHOD}


def read_record(key: str) -> dict[str, Any] | None:
    """The record stored for this key, or None (absent, or ignored: ``load_record`` says why)."""
    return load_record(key)[0]


def load_record(key: str) -> tuple[dict[str, Any] | None, str | None]:
    """The record stored for this key, or None with why a record file that is there is
    ignored (it cannot be read, is of another version, or holds a setting the recommended
    steering cannot take: a hand edit, say): one clause for ``ignored_sentence``."""
    path = record_path(key)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None, None
    except OSError as error:
        return None, f"cannot be read ({error.strerror or error})"
    except UnicodeDecodeError:  # (a ValueError, raised by the read: every command failed)
        return None, "is not UTF-8 text"
    try:
        record = json.loads(text)
    except ValueError:
        return None, "is not valid JSON"
    except RecursionError:  # ("[" * 5000: every command that loaded the model ended there)
        return None, "nests too deep to be a calibration record"
    if not isinstance(record, dict):
        return None, "is not a calibration record"
    if record.get("version") != RECORD_VERSION:
        return None, f"is of another version ({record.get('version')!r})"
    problem = _settings_problem(record) or _report_problem(record)
    return (None, problem) if problem else (record, None)


def _report_problem(record: dict[str, Any]) -> str | None:
    """Why what a record says of itself cannot be reported as it stands, or None: an
    answer's ``stats["calibration"]`` repeats its method and when it was chosen, and a hand
    edit made them say what did not steer (``"pad"`` where Amulet steered)."""
    chosen = record.get("chosen")
    method = chosen.get("method", CALIBRATED_METHOD) if isinstance(chosen, dict) else None
    if method != CALIBRATED_METHOD:
        return (f"has the method {json.dumps(method)}, where a calibration steers with "
                f"{json.dumps(CALIBRATED_METHOD)}")
    when = record.get("calibrated_at")
    if not isinstance(when, str) or not when.strip():
        return "does not say when it was made (calibrated_at)"
    return None


def ignored_sentence(key: str, problem: str) -> str:
    """The one sentence said of a record file that is ignored."""
    return (f"The calibration {record_path(key)} {problem}, so it is ignored (the uncalibrated "
            "default steers); run localpref calibrate again, or localpref calibrate --reset.")


def _settings_problem(record: dict[str, Any]) -> str | None:
    """Why a record's settings cannot be used, or None. A record that kept the uncalibrated
    default (``calibrated`` false) is held to the same rule: its settings are what
    ``doctor`` and an answer's ``stats["calibration"]`` report as kept."""
    chosen = record.get("chosen")
    settings = chosen.get("settings") if isinstance(chosen, dict) else None
    if not isinstance(settings, dict):
        return "has no settings"
    found = [("", settings)]
    if isinstance(record.get("default"), dict):
        found.append((" in its default", record["default"]))
    own = chosen.get("per_preference") or {}
    if not isinstance(own, dict):
        return "has per-preference settings that are not a mapping"
    for name, mine in own.items():
        if not isinstance(mine, dict) or not isinstance(mine.get("settings"), dict):
            return f"has no settings for {name}"
        found.append((f" for {name}", mine["settings"]))
    for where, values in found:
        contrast = values.get("contrast")
        if isinstance(contrast, bool) or not isinstance(contrast, (int, float)):
            return f"has a contrast{where} of {json.dumps(contrast)}, not a number"
        if not isinstance(values.get("opposite", False), bool):
            return f"has an opposite{where} of {json.dumps(values['opposite'])}, not true or false"
        if values.get("end_tokens", PREF_ENDS) != PREF_ENDS:
            return (f"has end tokens{where} of {json.dumps(values['end_tokens'])}, not "
                    f"{json.dumps(PREF_ENDS)}")
        try:
            Amulet(**{name: values[name] for name in CALIBRATED_FIELDS if name in values})
        except (LocalprefError, TypeError) as error:
            why = str(error).rstrip(".")
            return f"has a setting{where} that cannot be used ({why[:1].lower()}{why[1:]})"
    return None


def calibration_of(record: dict[str, Any] | None) -> Calibration | None:
    """The calibration a record gives, or None when it kept the uncalibrated default."""
    if not record or not record.get("calibrated"):
        return None
    chosen = record.get("chosen") or {}
    settings = chosen.get("settings")
    if not isinstance(settings, dict):
        return None
    own = chosen.get("per_preference")
    per_preference = {str(name): dict(mine["settings"]) for name, mine in own.items()
                      if isinstance(mine, dict) and isinstance(mine.get("settings"), dict)
                      } if isinstance(own, dict) else {}
    return Calibration(dict(settings), str(record.get("calibrated_at", "")), record,
                       per_preference)


def kept_default_summary(record: dict[str, Any] | None) -> dict[str, Any] | None:
    """What ``stats["calibration"]`` carries where the stored calibration kept the uncalibrated
    default for every preference (``calibrated`` false): that default, marked as kept, as
    ``Calibration.summary`` marks it for one preference; None without such a record (a model
    never calibrated)."""
    if not record or record.get("calibrated") or not isinstance(record.get("default"), dict):
        return None
    return {"settings": dict(record["default"]),
            "calibrated_at": str(record.get("calibrated_at", "")), "per_preference": False,
            "default_kept": True, "method": CALIBRATED_METHOD}


def write_record(key: str, record: dict[str, Any]) -> Path:
    """Store a record for this key (atomically: a reader sees the old or the new one)."""
    path = record_path(key)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(".json.tmp")
        partial.write_text(json.dumps({**record, "version": RECORD_VERSION}, indent=1) + "\n",
                           encoding="utf-8")
        os.replace(partial, path)
    except OSError as error:
        raise CalibrationError(f"Cannot write the calibration to {path}: "
                               f"{error.strerror or error}.") from None
    return path


def reset(key: str) -> bool:
    """Remove this key's calibration and sweep rows; whether there was anything to remove.
    Refused while a calibration of the same file runs (``held``)."""
    removed = False
    with held(key):
        for path in (record_path(key), rows_path(key)):
            try:
                path.unlink()
                removed = True
            except FileNotFoundError:
                pass
            except OSError as error:
                raise CalibrationError(f"Cannot remove {path}: "
                                       f"{error.strerror or error}.") from None
    return removed


def describe(record: dict[str, Any] | None) -> str:
    """A model's calibration state in a few words (``doctor``, ``models list``)."""
    if record is None:
        return "uncalibrated (localpref calibrate)"
    calibration = calibration_of(record)
    when = str(record.get("calibrated_at", ""))[:16].replace("T", " ")
    if calibration is None:
        return f"uncalibrated default kept (no setting beat Pref, {when})"
    own = "".join(f"; {name}: {_setting_text(settings)}"
                  for name, settings in calibration.per_preference.items())
    return f"calibrated {_setting_text(calibration.settings)}{own} ({when})"


def _setting_text(settings: dict[str, Any]) -> str:
    """``k=2 tau=0.05 kl=0.5, opposite``: one setting in a few words."""
    opposite = ", opposite" if settings.get("opposite") else ""
    guard = settings.get("kl_budget")
    guard_text = f" kl={guard:g}" if isinstance(guard, (int, float)) else ""
    return f"k={settings.get('contrast'):g} tau={settings.get('tau'):g}{guard_text}{opposite}"


def calibration_state(path: str | Path) -> dict[str, Any]:
    """A model file's calibration state for ``doctor`` and ``models list``: ``calibrated``,
    ``settings`` and ``calibrated_at`` (None when uncalibrated) and ``text`` (``describe``)."""
    try:
        record, problem = load_record(model_key(path))
    except OSError:
        return {"calibrated": False, "settings": None, "per_preference": None,
                "calibrated_at": None,
                "text": "unknown (the file cannot be read)"}
    calibration = calibration_of(record)
    return {"calibrated": calibration is not None,
            "settings": calibration.settings if calibration else None,
            "per_preference": calibration.per_preference if calibration else None,
            "calibrated_at": calibration.calibrated_at if calibration else None,
            "text": (f"ignored: its record {problem} (localpref calibrate --reset)"
                     if problem else describe(record))}


class CalibrationLookup:
    """One model file's stored calibration, read again only when its record file changes.

    ``current()`` costs one ``stat`` when nothing changed, so a model may ask at every
    request (a calibration made while a server runs is used from its next request).
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._key: str | None = None
        self._seen: tuple[str, int, int] | None = None
        self._record: dict[str, Any] | None = None
        self._problem: str | None = None
        self._lock = threading.Lock()

    @property
    def key(self) -> str:
        """The model file's key (computed once)."""
        if self._key is None:
            self._key = model_key(self.path)
        return self._key

    def record(self) -> dict[str, Any] | None:
        """The stored record for this model file, or None."""
        with self._lock:
            try:
                key = self.key
                info = record_path(key).stat()
                seen = (str(record_path(key)), info.st_mtime_ns, info.st_size)
            except OSError:
                self._seen, self._record, self._problem = None, None, None
                return None
            if seen != self._seen:
                self._record, self._problem = load_record(key)
                self._seen = seen
            return self._record

    def ignored(self) -> str | None:
        """The sentence saying that a record file that is there is ignored, or None."""
        self.record()
        problem = self._problem
        return None if problem is None else ignored_sentence(self.key, problem)

    def current(self) -> Calibration | None:
        """The calibration in force for this model file, or None (the uncalibrated default)."""
        return calibration_of(self.record())
