"""The processes of a running stack: which are alive, which are ours, ending their groups.

Every service starts with ``STACK_ENV`` set to the install's mark (its var dir), and its
children inherit it, so the processes the stack started are found by reading
``/proc/<pid>/environ`` even when their group leader died. A zombie (exited, not yet
reaped by its parent) still answers ``kill(pid, 0)``; here it counts as dead.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from aimass.platform.procs import (
    DEAD_STATES,
    alive,
    pgid_of,
    proc_state,
    reap,
    signal_group,
)

__all__ = [
    "STACK_ENV",
    "alive",
    "end_groups",
    "is_ours",
    "proc_state",
    "reap",
    "signal_group",
    "stack_processes",
]

# Set in every service's environment (inherited by its children): marks what `make stop` ends.
STACK_ENV = "AIMASS_STACK"


def is_ours(pid: int, mark: str, *, unmarked: bool = False) -> bool:
    """Whether ``pid`` is a live (not zombie) process with ``mark``; with ``unmarked``, a
    live process with no mark at all counts too (a service started before marks existed)."""
    if proc_state(pid) in DEAD_STATES:
        return False
    try:
        environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return False
    if f"{STACK_ENV}={mark}".encode() in environ:
        return True
    return unmarked and not any(v.startswith(f"{STACK_ENV}=".encode()) for v in environ)


def stack_processes(mark: str) -> dict[int, list[int]]:
    """Every live process with ``mark`` (services and their children), by process group."""
    me = os.getpid()
    groups: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == me:
            continue
        pid = int(entry.name)
        if is_ours(pid, mark) and (pgid := pgid_of(pid)) is not None:
            groups.setdefault(pgid, []).append(pid)
    return groups


def end_groups(
    mark: str,
    groups: dict[int, list[int]],
    timeout_s: float,
    first: signal.Signals = signal.SIGTERM,
) -> None:
    """``first`` (SIGTERM) to each group, wait up to ``timeout_s`` for its processes, SIGKILL
    the rest."""
    for pgid in groups:
        signal_group(pgid, first)
    deadline = time.monotonic() + timeout_s
    pids = [p for members in groups.values() for p in members]
    while time.monotonic() < deadline and any(alive(p) and is_ours(p, mark) for p in pids):
        time.sleep(0.2)
    for pgid in groups:
        signal_group(pgid, signal.SIGKILL)
    for pid in pids:
        reap(pid)


@dataclass(frozen=True)
class Service:
    """One long-running program of the stack: how to start it, and how to tell it is ready."""

    name: str
    argv: list[str]
    env: dict[str, str]
    ready_url: str | None = None
    # Readiness where there is no URL to ask (PostgreSQL, Redis).
    ready: Callable[[], bool] | None = None
    user: str | None = None  # run as (PostgreSQL refuses root)
    cwd: Path | None = None
    stop_signal: signal.Signals = signal.SIGTERM  # PostgreSQL: SIGINT, its fast shutdown
