"""The processes a local Ray leaves running when it is stopped while it starts.

``ray.shutdown()`` stops the Ray that ``ray.init`` started here (its GCS server and raylet),
and the raylet's agents (``ray::DashboardAgent``, ``ray::RuntimeEnvAgent``) normally follow.
Stopped during its start (Ctrl-C a second into ``localpref batch --ray``), ``ray.shutdown()``
stops nothing, because ``ray.init`` has not recorded its processes yet; they end later, but
the agents the raylet spawned meanwhile stay, orphaned, ignoring SIGTERM (Ray 2.60).
``ray_runner.shutdown_local_ray`` ends whatever Ray processes run below this one after the
shutdown (and its grace period), with ``end_ray_processes``. Linux only (``/proc``);
elsewhere it is ``ray.shutdown()`` alone. This module never imports Ray.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

PROC = Path("/proc")
#: How long Ray's processes get to end by themselves after ``ray.shutdown()``.
GRACE_SECONDS = 2.0


def _stat_fields(pid: int) -> list[str] | None:
    """The fields of ``/proc/PID/stat`` after the process's name (the state first, then the
    parent's id); None once it has ended."""
    try:
        stat = (PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    return stat.rpartition(")")[2].split()  # the name, in parentheses, may hold spaces


def parent_pid(pid: int) -> int | None:
    """The id of ``pid``'s parent (1 for an orphan init adopted); None once it has ended."""
    fields = _stat_fields(pid)
    return int(fields[1]) if fields else None


def descendant_pids(root: int) -> list[int]:
    """The processes below ``root`` (children, theirs, ...), from ``/proc``; [] without it."""
    if not PROC.is_dir():
        return []
    children: dict[int, list[int]] = {}
    for entry in PROC.iterdir():
        if not entry.name.isdigit():
            continue
        parent = parent_pid(int(entry.name))
        if parent is not None:
            children.setdefault(parent, []).append(int(entry.name))
    found, todo = [], [root]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def is_ray_process(pid: int) -> bool:
    """Whether ``pid`` runs Ray (its command line names Ray's package or a ``ray::`` role)."""
    try:
        command = (PROC / str(pid) / "cmdline").read_bytes()
    except OSError:
        return False
    return command.startswith(b"ray::") or b"/ray/" in command


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie has ended; its parent has not collected it yet)."""
    fields = _stat_fields(pid)
    return fields is not None and fields[0] != "Z"


def end_ray_processes(root: int) -> None:
    """SIGKILL every Ray process below ``root``. They are stopped first (SIGSTOP), again
    until no new one appears, because a raylet still starting spawns its agents meanwhile,
    and an agent spawned after the listing would be orphaned and missed."""
    stopped: set[int] = set()
    for _ in range(10):
        found = {pid for pid in descendant_pids(root) if is_ray_process(pid) and alive(pid)}
        if not found - stopped:
            break
        for pid in found - stopped:
            _send(pid, signal.SIGSTOP)
        stopped |= found
    for pid in stopped:
        _send(pid, signal.SIGKILL)


def _send(pid: int, number: signal.Signals) -> None:
    try:
        os.kill(pid, number)
    except ProcessLookupError:  # it ended meanwhile
        pass
