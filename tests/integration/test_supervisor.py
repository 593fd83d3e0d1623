"""The supervisor (aimass.stack.services) with real processes: a service that forks workers,
as the scheduler's LocalExecutor does, is killed with SIGKILL and left a zombie.

What used to happen: the zombie counted as alive ("already running"), nothing came back,
and `make stop` left the dead leader's workers running.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

import pytest

from aimass.platform.settings import Settings
from aimass.stack import processes, services

pytestmark = pytest.mark.integration

# A leader that starts two workers (children in its process group) and waits.
FORKING = """
import subprocess, sys, time
workers = [subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"]) for _ in range(2)]
print("workers", *[w.pid for w in workers], flush=True)
time.sleep(600)
"""


def _service(settings: Settings) -> dict[str, services.Service]:
    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(settings.var_dir)}
    return {"worker-pool": services.Service("worker-pool", [sys.executable, "-c", FORKING], env)}


def _workers(settings: Settings, leader: int, timeout_s: float = 30.0) -> list[int]:
    """The worker pids the leader printed to its log."""
    log = settings.logs_dir / "worker-pool.log"
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for line in log.read_text().splitlines() if log.exists() else []:
            if line.startswith("workers"):
                pids = [int(p) for p in line.split()[1:]]
                if all(os.getpgid(p) == leader for p in pids):
                    return pids
        time.sleep(0.1)
    raise AssertionError(f"the service printed no workers: {log.read_text()}")


def test_a_killed_leader_is_restarted_and_stop_ends_every_group(settings: Settings) -> None:
    defs = _service(settings)
    mark = services.stack_id(settings)
    try:
        services.start(settings, ["worker-pool"], defs=defs)
        first = services.pid_of(settings, "worker-pool")
        assert first is not None
        old_workers = _workers(settings, first)

        os.kill(first, signal.SIGKILL)
        # This test process started it and does not reap it: a zombie, as under a parent
        # that never waits. It still answers kill(pid, 0).
        deadline = time.monotonic() + 10
        while processes.proc_state(first) != "Z" and time.monotonic() < deadline:
            time.sleep(0.05)
        assert processes.proc_state(first) == "Z"
        os.kill(first, 0)

        assert services.pid_of(settings, "worker-pool") is None  # a zombie is not running
        services.start(settings, ["worker-pool"], defs=defs)
        second = services.pid_of(settings, "worker-pool")
        assert second is not None and second != first
        new_workers = _workers(settings, second)
        # The dead leader's workers were left to finish; both groups carry the mark.
        groups = processes.stack_processes(mark)
        assert set(old_workers) <= set(groups[first])
        assert {second, *new_workers} <= set(groups[second])

        assert services.stop(settings, ["worker-pool"], timeout_s=5) == ["worker-pool"]
        assert processes.stack_processes(mark) == {}
        for pid in [*old_workers, second, *new_workers]:
            assert not processes.alive(pid), pid
        assert not list(Path(services.run_dir(settings)).glob("worker-pool.*"))
    finally:
        for pgid in processes.stack_processes(mark):
            processes.signal_group(pgid, signal.SIGKILL)


def test_stopping_the_whole_stack_ends_marked_processes_outside_any_service_group(
    settings: Settings,
) -> None:
    import subprocess

    mark = services.stack_id(settings)
    stray = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(600)"],
        env={**os.environ, processes.STACK_ENV: mark},
        start_new_session=True,
    )
    unmarked = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(600)"], start_new_session=True
    )
    try:
        deadline = time.monotonic() + 10
        while stray.pid not in processes.stack_processes(mark) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert processes.stack_processes(mark) == {stray.pid: [stray.pid]}

        assert services.stop(settings, timeout_s=5) == []  # no service was running

        stray.wait(timeout=10)  # (stop reaped it already: it was this process's child)
        assert processes.proc_state(stray.pid) is None
        assert unmarked.poll() is None  # not this install's: left alone
    finally:
        for proc in (stray, unmarked):
            proc.kill()
            proc.wait()
