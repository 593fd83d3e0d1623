"""Processes by their ``/proc`` entries: alive or zombie, their groups, signalling a group.

A zombie (exited, not yet reaped by its parent) still answers ``kill(pid, 0)``; here it
counts as dead. Linux only, as the platform's process supervision is.
"""

from __future__ import annotations

import logging
import os
import signal
import time
from pathlib import Path

log = logging.getLogger(__name__)

DEAD_STATES = (None, "Z", "X")


def proc_state(pid: int) -> str | None:
    """The process's state letter (R, S, D, Z, ...), or None when it does not exist."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    # "pid (comm) state ...": comm may hold spaces and parentheses; the state follows the last ")".
    return stat.rpartition(")")[2].split()[0]


def pgid_of(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except ProcessLookupError:
        return None


def reap(pid: int) -> None:
    """Collect ``pid``'s exit status when it is a child of this process."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def alive(pid: int) -> bool:
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            return False
    except ChildProcessError:
        pass
    return proc_state(pid) not in DEAD_STATES


def signal_group(pid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def group_members(pgid: int) -> list[int]:
    """Pids of live (not zombie) processes in process group ``pgid``."""
    members = []
    for entry in Path("/proc").glob("[0-9]*"):
        pid = int(entry.name)
        if proc_state(pid) not in DEAD_STATES and pgid_of(pid) == pgid:
            members.append(pid)
    return members


def wait_group_gone(pgid: int, timeout_s: float) -> None:
    """SIGKILL the group until none of its processes is alive, for up to ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while (left := group_members(pgid)) and time.monotonic() < deadline:
        signal_group(pgid, signal.SIGKILL)
        time.sleep(0.1)
    if left:
        log.warning("process group %d still has live processes %s after SIGKILL", pgid, left)
