"""A Spark standalone cluster (one master, one worker) on loopback, from the pyspark install.

Used by the integration tests (and benchmarks) to run jobs against a real ``spark://`` master
instead of ``local[*]``. Each daemon runs ``spark-class`` in its own process group with its
log under ``log_dir``, so :meth:`StandaloneCluster.stop` also ends the executors the worker
started and no JVM outlives the cluster::

    with StandaloneCluster(log_dir=tmp / "spark") as cluster:
        subprocess.run(["spark-submit", "--master", cluster.master_url, "job.py"], check=True)
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import TracebackType
from typing import Any

from aimass.platform.errors import ConfigError, StageError
from aimass.platform.procs import group_members, signal_group, wait_group_gone

__all__ = ["StandaloneCluster", "group_members", "spark_class"]

log = logging.getLogger(__name__)

MASTER_CLASS = "org.apache.spark.deploy.master.Master"
WORKER_CLASS = "org.apache.spark.deploy.worker.Worker"


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def spark_class() -> str:
    """``spark-class`` of the interpreter's venv (pyspark ships it), else the one on PATH."""
    candidate = Path(sys.executable).parent / "spark-class"
    if candidate.exists():
        return str(candidate)
    found = shutil.which("spark-class")
    if found is None:
        raise ConfigError(
            f"spark-class not found next to {sys.executable} nor on PATH; install pyspark "
            "in this environment (make setup) or put a Spark distribution's bin/ on PATH"
        )
    return found


def _tail(path: Path, lines: int = 30) -> str:
    if not path.exists():
        return "(no log)"
    return "\n".join(path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])


class StandaloneCluster:
    """One Spark standalone master and ``workers`` workers bound to ``host``.

    Args:
        log_dir: Folder for ``master.log``, ``worker.log`` and the worker's ``work/`` dir
            (application and executor logs).
        host: Address every daemon binds to (also exported as ``SPARK_LOCAL_IP``).
        master_port, webui_port, worker_port, worker_webui_port: Ports; ``None`` picks
            a free one.
        worker_cores, worker_memory: What each worker offers to applications.
        workers: How many workers (``worker``, ``worker-2``, ...; each its own process group,
            its executors inside it).
        daemon_memory: Heap of the master and worker JVMs (``SPARK_DAEMON_MEMORY``).
        python: Interpreter for PySpark executors (default: this one).
    """

    def __init__(
        self,
        log_dir: Path,
        *,
        host: str = "127.0.0.1",
        master_port: int | None = None,
        webui_port: int | None = None,
        worker_port: int | None = None,
        worker_webui_port: int | None = None,
        worker_cores: int = 1,
        worker_memory: str = "1g",
        daemon_memory: str = "512m",
        python: str = sys.executable,
        workers: int = 1,
    ) -> None:
        if worker_cores < 1:
            raise ConfigError(f"worker_cores={worker_cores} must be at least 1")
        if workers < 1:
            raise ConfigError(f"workers={workers} must be at least 1")
        self.log_dir = Path(log_dir)
        self.host = host
        self.master_port = master_port or _free_port(host)
        self.webui_port = webui_port or _free_port(host)
        self.worker_port = worker_port or _free_port(host)
        self.worker_webui_port = worker_webui_port or _free_port(host)
        self.worker_cores = worker_cores
        self.worker_memory = worker_memory
        self.daemon_memory = daemon_memory
        self.python = python
        self.workers = workers
        self._procs: dict[str, subprocess.Popen[bytes]] = {}
        # Pids (= process group ids) of the last start(), kept after stop() for checks.
        self.pids: dict[str, int] = {}
        self._argv: dict[str, list[str]] = {}

    @property
    def master_url(self) -> str:
        return f"spark://{self.host}:{self.master_port}"

    @property
    def webui_url(self) -> str:
        return f"http://{self.host}:{self.webui_port}"

    def log_path(self, name: str) -> Path:
        return self.log_dir / f"{name}.log"

    def env(self) -> dict[str, str]:
        """Environment of the daemons (executors inherit it from the worker)."""
        env = dict(os.environ)
        env.update(
            {
                "SPARK_LOCAL_IP": self.host,
                "SPARK_DAEMON_MEMORY": self.daemon_memory,
                "PYSPARK_PYTHON": self.python,
                # The master's REST submission server would take the fixed port 6066; jobs
                # are submitted in client mode through the master port, so it stays off.
                "SPARK_MASTER_OPTS": "-Dspark.master.rest.enabled=false",
                "PATH": str(Path(self.python).parent) + os.pathsep + env.get("PATH", ""),
            }
        )
        # Keep application and executor files out of the pyspark install (SPARK_HOME/work).
        env["SPARK_WORKER_DIR"] = str(self.log_dir / "work")
        return env

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> StandaloneCluster:
        """Start the master, then the worker registering with it; returns self."""
        if self._procs:
            raise StageError(f"spark cluster {self.master_url} is already started")
        self.pids = {}
        self.log_dir.mkdir(parents=True, exist_ok=True)
        (self.log_dir / "work").mkdir(exist_ok=True)
        launcher = spark_class()
        h = self.host
        self._spawn(
            "master",
            [launcher, MASTER_CLASS, "--host", h, "--port", str(self.master_port)]
            + ["--webui-port", str(self.webui_port)],
        )
        for index, name in enumerate(self.worker_names):
            port = self.worker_port if index == 0 else _free_port(h)
            webui = self.worker_webui_port if index == 0 else _free_port(h)
            work = self.log_dir / "work" / name if index else self.log_dir / "work"
            work.mkdir(parents=True, exist_ok=True)
            self._spawn(
                name,
                [launcher, WORKER_CLASS, "--host", h, "--port", str(port)]
                + ["--webui-port", str(webui)]
                + ["--cores", str(self.worker_cores), "--memory", self.worker_memory]
                + ["--work-dir", str(work), self.master_url],
            )
        return self

    @property
    def worker_names(self) -> list[str]:
        return ["worker", *(f"worker-{i}" for i in range(2, self.workers + 1))]

    def kill_worker(self, name: str = "worker") -> None:
        """SIGKILL a worker and its executors (its process group): a machine lost mid-job."""
        proc = self._procs.pop(name)
        signal_group(proc.pid, signal.SIGKILL)
        proc.wait()
        wait_group_gone(proc.pid, timeout_s=10.0)
        log.warning("killed spark %s (pid %d) and its executors", name, proc.pid)

    def _spawn(self, name: str, argv: list[str]) -> None:
        with open(self.log_path(name), "ab") as logfile:
            proc = subprocess.Popen(
                argv,
                env=self.env(),
                stdout=logfile,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=self.log_dir,
                start_new_session=True,
            )
        self._procs[name] = proc
        self.pids[name] = proc.pid
        self._argv[name] = argv
        log.info("started spark %s (pid %d), log %s", name, proc.pid, self.log_path(name))

    @property
    def running(self) -> bool:
        return bool(self._procs)

    def state(self) -> dict[str, Any]:
        """The master's JSON status (``aliveworkers``, ``activeapps``, ``completedapps`` ...)."""
        with urllib.request.urlopen(f"{self.webui_url}/json/", timeout=5) as resp:
            data: dict[str, Any] = json.load(resp)
        return data

    def _check_alive(self) -> None:
        for name, proc in self._procs.items():
            code = proc.poll()
            if code is not None:
                raise StageError(
                    f"spark {name} `{' '.join(self._argv[name])}` exited {code} "
                    f"during start-up; last lines of {self.log_path(name)}:\n"
                    f"{_tail(self.log_path(name))}"
                )

    def wait_ready(self, timeout_s: float = 120.0, workers: int | None = None) -> None:
        """Wait until the master reports ``workers`` (default: all) alive workers.

        Raises:
            StageError: a daemon exited (with its command, exit code and log tail) or the
                workers did not register within ``timeout_s``.
        """
        if not self._procs:
            raise StageError(f"spark cluster {self.master_url} was not started; call start()")
        workers = self.workers if workers is None else workers
        deadline = time.monotonic() + timeout_s
        last: object = None
        while True:
            self._check_alive()
            try:
                alive = int(self.state().get("aliveworkers", 0))
                last = alive
                if alive >= workers:
                    log.info(
                        "spark master %s ready with %d worker(s), UI %s",
                        self.master_url,
                        alive,
                        self.webui_url,
                    )
                    return
            except (OSError, urllib.error.URLError, ValueError) as exc:
                last = exc
            if time.monotonic() > deadline:
                raise StageError(
                    f"spark master {self.master_url} did not report {workers} alive worker(s) "
                    f"at {self.webui_url}/json/ within {timeout_s:.0f}s (last: {last!r}); "
                    f"master log:\n{_tail(self.log_path('master'))}\n"
                    f"worker log:\n{_tail(self.log_path('worker'))}"
                )
            time.sleep(0.5)

    def stop(self, timeout_s: float = 20.0) -> None:
        """SIGTERM each daemon's process group (worker first), then SIGKILL what is left."""
        for name in [*reversed(self.worker_names), "master"]:
            proc = self._procs.pop(name, None)
            if proc is None:
                continue
            signal_group(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                log.warning("spark %s (pid %d) ignored SIGTERM; killing it", name, proc.pid)
            # Also ends executors the worker started, which share its process group.
            signal_group(proc.pid, signal.SIGKILL)
            proc.wait()
            wait_group_gone(proc.pid, timeout_s=10.0)
            log.info("stopped spark %s (pid %d, exit %s)", name, proc.pid, proc.returncode)
        self._argv.clear()

    def __enter__(self) -> StandaloneCluster:
        try:
            self.start()
            self.wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
