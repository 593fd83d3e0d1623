"""Start, check and stop the services: Airflow, MLflow and the model server, and in the
production profile (``aimass.stack.cluster``) PostgreSQL, Redis, S3, Spark, the Celery
workers and the supervisor that restarts what dies.

Everything binds to the configured host (127.0.0.1 by default). Each service runs in its
own process group with its log under ``<var>/logs`` and a pid file under ``<var>/run``,
so `make stop` (and test fixtures) can stop exactly what was started, children included.
Services start with umask 077, so the databases, users and logs they create are theirs
alone; MLflow needs a login (``aimass.stack.mlflow_auth``), and Airflow encrypts the
connections it stores with a Fernet key made for this install.
"""

from __future__ import annotations

import fcntl
import logging
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import NoReturn

from aimass.platform.errors import ConfigError, StageError
from aimass.platform.settings import Settings
from aimass.platform.waiting import poll_until
from aimass.stack import cluster, mlflow_auth, processes
from aimass.stack.environment import ADMIN_USER as ADMIN_USER
from aimass.stack.environment import USERS as USERS
from aimass.stack.environment import admin_password as admin_password
from aimass.stack.environment import airflow_env, base_env
from aimass.stack.environment import airflow_home as airflow_home
from aimass.stack.environment import airflow_secrets_path as airflow_secrets_path
from aimass.stack.environment import user_password as user_password
from aimass.stack.processes import Service as Service
from aimass.stack.state import SERVICE_UMASK, make_private

log = logging.getLogger(__name__)

SERVICES = (
    "mlflow",
    "model-server",
    "airflow-api-server",
    "airflow-scheduler",
    "airflow-dag-processor",
    "airflow-triggerer",
)


# The production profile (aimass.stack.cluster): its stores and Spark first, Celery workers last.
CLUSTER_SERVICES = (
    *cluster.STORES,
    *cluster.SPARK,
    *SERVICES,
    *cluster.CELERY_WORKERS,
    cluster.SUPERVISOR,
)


def service_names(settings: Settings) -> tuple[str, ...]:
    """The services of this var dir's profile, in start order."""
    return CLUSTER_SERVICES if cluster.profile(settings) == "cluster" else SERVICES


def _bin(name: str) -> str:
    """An executable from the interpreter's own venv (never whatever is first on PATH)."""
    candidate = Path(sys.executable).parent / name
    return str(candidate) if candidate.exists() else name


def run_dir(settings: Settings) -> Path:
    return settings.var_dir / "run"


def definitions(settings: Settings) -> dict[str, Service]:
    embedded = _embedded(settings)
    if cluster.profile(settings) == "cluster":
        return cluster.definitions(settings, embedded, base_env(settings))
    return embedded


def _embedded(settings: Settings) -> dict[str, Service]:
    # The scheduler and triggerer would serve task logs on 0.0.0.0:8793; with a
    # LocalExecutor the API server reads the log files directly, so they are told not to.
    host = settings.host
    af = airflow_env(settings)
    airflow = _bin("airflow")
    mlflow_dir = settings.mlflow_dir
    return {
        "mlflow": Service(
            "mlflow",
            [
                _bin("mlflow"),
                "server",
                *mlflow_auth.SERVER_FLAGS,
                "--host",
                host,
                "--port",
                str(settings.mlflow_port),
                "--backend-store-uri",
                f"sqlite:///{mlflow_dir / 'mlflow.db'}",
                "--artifacts-destination",
                str(settings.mlflow_artifacts),
                "--workers",
                "1",
            ],
            # AI Mass does not use MLflow's server-side job runner (GenAI evaluation); it would
            # add eight huey worker processes on a two-core machine.
            {
                "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
                **base_env(settings),
                **mlflow_auth.server_env(settings),
            },
            f"http://{host}:{settings.mlflow_port}/health",
        ),
        "model-server": Service(
            "model-server",
            [
                sys.executable,
                "-m",
                "aimass.serving.server",
                "--model_config_file",
                str(settings.serving_config),
                "--host",
                host,
                "--port",
                str(settings.serving_grpc_port),
                "--rest_api_port",
                str(settings.serving_rest_port),
                # Sampled features of served requests, for aimass_monitor's drift checks.
                "--request_log_dir",
                str(settings.requests_dir),
                "--request_log_sample",
                str(settings.request_log_sample),
                "--request_log_rows",
                str(settings.request_log_rows),
                # HandleReloadConfigRequest may only name base paths under the serving folder.
                "--model_base_root",
                str(settings.serving_base),
            ],
            base_env(settings),
            f"http://{host}:{settings.serving_rest_port}/v1/models/__health__",
        ),
        "airflow-api-server": Service(
            "airflow-api-server",
            [
                airflow,
                "api-server",
                "--host",
                host,
                "--port",
                str(settings.airflow_port),
                "--workers",
                "1",
            ],
            af,
            f"http://{host}:{settings.airflow_port}/api/v2/monitor/health",
        ),
        "airflow-scheduler": Service(
            "airflow-scheduler", [airflow, "scheduler", "--skip-serve-logs"], af
        ),
        "airflow-dag-processor": Service("airflow-dag-processor", [airflow, "dag-processor"], af),
        "airflow-triggerer": Service(
            "airflow-triggerer", [airflow, "triggerer", "--skip-serve-logs"], af
        ),
    }


def _pid_file(settings: Settings, name: str) -> Path:
    return run_dir(settings) / f"{name}.pid"


def _stale_file(settings: Settings, name: str) -> Path:
    """Process groups of earlier runs of ``name`` whose leader died (one pgid a line)."""
    return run_dir(settings) / f"{name}.stale"


def stack_id(settings: Settings) -> str:
    """The mark every process this install starts carries in its environment."""
    return str(settings.var_dir.resolve())


def pid_of(settings: Settings, name: str) -> int | None:
    """The pid of the running service ``name``; None when it is not running.

    A leader that exited, a zombie (exited, not reaped yet: it still answers ``kill 0``)
    and a pid reused by a process this install did not start all count as not running.
    """
    path = _pid_file(settings, name)
    if not path.exists():
        return None
    try:
        pid = int(path.read_text().strip())
    except ValueError:
        path.unlink(missing_ok=True)
        return None
    if processes.is_ours(pid, stack_id(settings), unmarked=True):
        return pid
    state = processes.proc_state(pid)
    processes.reap(pid)
    if state == "Z":
        log.warning("%s (pid %d) is a zombie: it exited and counts as stopped", name, pid)
    # Its group may outlive it (a LocalExecutor's workers): remembered for `make stop`.
    with _stale_file(settings, name).open("a") as fh:
        fh.write(f"{pid}\n")
    path.unlink(missing_ok=True)
    return None


def prepare(settings: Settings) -> None:
    """One-off state: folders, the serving config, the Airflow DB schema; what holds secrets
    or databases made private (0700 folders, 0600 files)."""
    settings.var_dir.mkdir(parents=True, exist_ok=True)
    make_private(settings)
    chosen = cluster.profile(settings)
    cluster.remember_profile(settings, chosen)
    if chosen == "cluster":
        # PostgreSQL, Redis and S3 first, with their databases and bucket: `airflow db
        # migrate` and MLflow's first start need them.
        cluster.init_postgres(settings)
        start(settings, cluster.STORES)
        wait_ready(settings, cluster.STORES, timeout_s=120)
        cluster.create_databases(settings)
        cluster.create_bucket(settings)
    for folder in (settings.serving_base, settings.mlflow_artifacts):
        folder.mkdir(parents=True, exist_ok=True)
    if not settings.serving_config.exists():
        from aimass.serving.config import server_config, write_config

        write_config(settings.serving_config, server_config([]))
    log.info("migrating the Airflow metadata DB under %s", airflow_home(settings))
    proc = subprocess.run(
        [_bin("airflow"), "db", "migrate"],
        env=airflow_env(settings),
        capture_output=True,
        text=True,
        umask=SERVICE_UMASK,
    )
    if proc.returncode != 0:
        raise StageError(f"`airflow db migrate` exited {proc.returncode}: {proc.stderr[-3000:]}")
    # The secrets files and airflow.db exist now; an older install's are tightened too.
    make_private(settings)


def start(
    settings: Settings,
    names: Iterable[str] | None = None,
    defs: Mapping[str, Service] | None = None,
) -> None:
    """Start the named services that are not running yet (each in its own process group).

    A service whose process died, or is a zombie, is started again. ``defs``: the
    services' definitions (default: ``definitions(settings)``).
    """
    defs = definitions(settings) if defs is None else defs
    names = service_names(settings) if names is None else names
    make_private(settings)
    for folder in (run_dir(settings), settings.logs_dir):
        folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        with _start_lock(settings):  # the supervisor may be starting it too
            _start_one(settings, name, defs[name])


@contextmanager
def _start_lock(settings: Settings) -> Iterator[None]:
    with (run_dir(settings) / "start.lock").open("a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _start_one(settings: Settings, name: str, svc: Service) -> None:
    had_pid = _pid_file(settings, name).exists()
    if pid := pid_of(settings, name):
        log.info("%s already running (pid %s)", name, pid)
        return
    if had_pid:
        left = sum(len(pids) for pids in _stale_groups(settings, name).values())
        log.warning(
            "%s had died: starting it again%s",
            name,
            f" ({left} processes of its old group finish what they run; `make stop` ends them)"
            if left
            else "",
        )
    fd = os.open(settings.logs_dir / f"{name}.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    with os.fdopen(fd, "ab") as logfile:
        proc = subprocess.Popen(
            svc.argv,
            env={**svc.env, processes.STACK_ENV: stack_id(settings)},
            stdout=logfile,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=svc.cwd or settings.root,
            start_new_session=True,
            umask=SERVICE_UMASK,
            user=svc.user,
        )
    _pid_file(settings, name).write_text(str(proc.pid))
    log.info("started %s (pid %d), log %s", name, proc.pid, settings.logs_dir / f"{name}.log")


def wait_ready(
    settings: Settings, names: Iterable[str] | None = None, timeout_s: float = 300.0
) -> None:
    """Wait until each service with a health URL answers (MLflow: and its service user is
    provisioned); fail with its log tail if it died. A first start on two busy cores took
    165 s, 135 s of it waiting for MLflow."""
    defs = definitions(settings)
    names = service_names(settings) if names is None else names
    deadline = time.monotonic() + timeout_s
    for name in names:
        url = defs[name].ready_url
        check = defs[name].ready

        def ready(
            name: str = name, url: str | None = url, check: Callable[[], bool] | None = check
        ) -> bool | None:
            if pid_of(settings, name) is None:
                raise StageError(
                    f"{name} exited during start-up; last log lines:\n{log_tail(settings, name)}"
                )
            if check is not None:
                return True if check() else None
            return True if url is None or _answers(url) else None

        def timed_out(name: str = name, url: str | None = url) -> NoReturn:
            raise StageError(
                f"{name} did not answer {url} within {timeout_s:.0f}s; log:\n{log_tail(settings, name)}"
            )

        # One deadline for all services, as before: each waits only for what is left of it.
        left = max(deadline - time.monotonic(), 0.0)
        poll_until(ready, timeout_s=left, interval_s=1.0, on_timeout=timed_out)
        if name == "mlflow":
            # Ready for the platform once its own user can log in.
            mlflow_auth.provision_stack(settings, f"http://{settings.host}:{settings.mlflow_port}")
        log.info("%s is ready%s", name, f" at {url}" if url else "")


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=3) as resp:
            return resp.status < 500
    except urllib.error.HTTPError as exc:
        return exc.code < 500
    except (OSError, urllib.error.URLError):
        return False


def log_tail(settings: Settings, name: str, lines: int = 30) -> str:
    path = settings.logs_dir / f"{name}.log"
    if not path.exists():
        return "(no log)"
    return "\n".join(path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])


def _stale_groups(settings: Settings, name: str) -> dict[int, list[int]]:
    """The live processes of ``name``'s earlier groups (their leader died), by group."""
    path = _stale_file(settings, name)
    if not path.exists():
        return {}
    pgids = {int(line) for line in path.read_text().split() if line.isdigit()}
    return {
        g: pids for g, pids in processes.stack_processes(stack_id(settings)).items() if g in pgids
    }


def stop(
    settings: Settings, names: Iterable[str] | None = None, timeout_s: float = 20.0
) -> list[str]:
    """End each named service's process group, and what is left of its earlier groups.

    SIGTERM to the group, then SIGKILL to what is left after ``timeout_s``; a group whose
    leader died (its children are left) is ended the same way. Stopping every service also
    ends any other process this install started (found by the mark in its environment).
    Returns the names stopped.
    """
    names = list(CLUSTER_SERVICES if names is None else names)  # whichever profile ran
    try:
        stop_signals = {n: d.stop_signal for n, d in definitions(settings).items()}
    except ConfigError:  # e.g. a profile whose programs were removed: SIGTERM, as ever
        stop_signals = {}
    stopped = []
    for name in reversed(names):
        pid = pid_of(settings, name)
        groups = _stale_groups(settings, name)
        if pid is not None:
            groups[pid] = [pid]
        if groups:
            first = stop_signals.get(name, signal.SIGTERM)
            processes.end_groups(stack_id(settings), groups, timeout_s, first)
            stopped.append(name)
            log.info("stopped %s (process groups %s)", name, sorted(groups))
        _pid_file(settings, name).unlink(missing_ok=True)
        _stale_file(settings, name).unlink(missing_ok=True)
    if set(names) >= set(CLUSTER_SERVICES) and (
        left := processes.stack_processes(stack_id(settings))
    ):
        log.warning("ending %d more processes the stack started", sum(map(len, left.values())))
        processes.end_groups(stack_id(settings), left, timeout_s)
    return stopped


def status(settings: Settings) -> dict[str, int | None]:
    return {name: pid_of(settings, name) for name in service_names(settings)}
