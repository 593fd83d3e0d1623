"""Training launcher: N local TensorFlow worker processes under MultiWorkerMirroredStrategy.

``train()`` starts ``workers`` processes of ``python -m models.tabular.train`` on
127.0.0.1, each with its own ``TF_CONFIG`` (and ``TF_USE_LEGACY_KERAS=1``),
forwards their output to this module's logger prefixed ``[worker i]``, and
waits. The first worker that fails stops the others and raises ``StageError``
with its exit code and last log lines. Whatever happens (error, timeout,
KeyboardInterrupt, SIGTERM) no worker outlives the call: each worker runs in
its own process group, which is terminated and then killed; a worker whose
launcher dies anyway exits by itself (``models.tabular.train`` watches its parent).

The spec reaches the workers as a YAML file, ``<run_dir>/spec.yaml``, written
from the ``DatasetSpec`` (so an in-memory spec works and the run keeps the exact
spec it trained with).

``launch()`` is what the pipeline calls: it runs ``train()`` here, or the same workers as
Kubernetes pods (``aimass.k8s_launcher``) when ``AIMASS_TRAIN_LAUNCHER=kubernetes``.
"""

from __future__ import annotations

import collections
import json
import logging
import os
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import yaml

from aimass.errors import ConfigError, StageError
from aimass.spec import DatasetSpec, load_spec

if TYPE_CHECKING:
    from aimass.config import Settings

logger = logging.getLogger(__name__)

ENTRY_MODULE = "models.tabular.train"
SPEC_FILE = "spec.yaml"
EXPORT_DIR = "export"
METRICS_FILE = "metrics.json"
PARENT_PID_ENV = "AIMASS_TRAIN_PARENT_PID"
LOG_TAIL_LINES = 20
STOP_GRACE_S = 5.0
_POLL_S = 0.2


@dataclass(frozen=True)
class TrainResult:
    """What a finished training run left in its run dir."""

    saved_model_dir: Path
    metrics_path: Path
    history: dict[str, list[float]]
    params: dict[str, Any]
    workers: int
    holdout: dict[str, float] = field(default_factory=dict)


def spec_to_dict(spec: DatasetSpec) -> dict[str, Any]:
    """The YAML mapping that ``DatasetSpec.from_dict`` turns back into ``spec``."""
    return spec.to_dict()


def free_ports(count: int, host: str = "127.0.0.1") -> list[int]:
    """``count`` distinct TCP ports that are free on ``host`` right now."""
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sockets.append(sock)
            sock.bind((host, 0))
        return [int(s.getsockname()[1]) for s in sockets]
    finally:
        for sock in sockets:
            sock.close()


def tf_config(hosts: Sequence[str], index: int) -> str:
    """The ``TF_CONFIG`` JSON for worker ``index`` of a cluster of ``hosts`` (worker 0 is the chief)."""
    return json.dumps(
        {"cluster": {"worker": list(hosts)}, "task": {"type": "worker", "index": index}}
    )


@dataclass(frozen=True)
class RunRequest:
    """A checked training request: resolved hyperparameters and the run dir laid out."""

    spec: DatasetSpec
    data: Path
    run_dir: Path
    epochs: int
    batch_size: int
    learning_rate: float
    mixed_precision: bool = False

    @property
    def spec_path(self) -> Path:
        return self.run_dir / SPEC_FILE

    @property
    def metrics_path(self) -> Path:
        return self.run_dir / METRICS_FILE

    @property
    def worker_args(self) -> list[str]:
        """The arguments of ``python -m models.tabular.train``, the same for every worker."""
        return [
            f"--spec={self.spec_path}",
            f"--data={self.data}",
            f"--run-dir={self.run_dir}",
            f"--epochs={self.epochs}",
            f"--batch-size={self.batch_size}",
            f"--learning-rate={self.learning_rate}",
            *(["--mixed-precision"] if self.mixed_precision else []),
        ]


def prepare_run(
    spec: DatasetSpec | str | Path,
    *,
    data: Path,
    run_dir: Path,
    workers: int,
    epochs: int | None,
    batch_size: int | None,
    learning_rate: float | None,
    timeout_s: float | None,
    mixed_precision: bool = False,
) -> RunRequest:
    """Check a training request and lay out its run dir; shared by every launcher.

    Resolves the spec's hyperparameters, checks them and the data folder, writes
    ``spec.yaml`` (the spec the workers read) and removes an old ``metrics.json`` (a result
    must come from this run).

    Raises:
        ConfigError: a bad argument, named with its fix.
    """
    spec = spec if isinstance(spec, DatasetSpec) else load_spec(spec)
    t = spec.training
    epochs = t.epochs if epochs is None else epochs
    batch_size = t.batch_size if batch_size is None else batch_size
    learning_rate = t.learning_rate if learning_rate is None else learning_rate
    if workers < 1:
        raise ConfigError(f"workers={workers}; use 1 or more workers")
    if epochs < 1:
        raise ConfigError(f"epochs={epochs}; use 1 or more")
    if batch_size < 1:
        raise ConfigError(f"batch_size={batch_size}; use 1 or more rows per worker")
    if not 0 < learning_rate < 1:
        raise ConfigError(f"learning_rate={learning_rate}; use a value in (0, 1)")
    if timeout_s is not None and timeout_s <= 0:
        raise ConfigError(f"timeout_s={timeout_s}; use a positive number of seconds or None")
    data, run_dir = Path(data), Path(run_dir)
    if not data.is_dir():
        raise ConfigError(
            f"training data {data} is not a folder; pass the clean partition (…/clean/<dataset>/ds=<ds>/)"
        )
    request = RunRequest(spec, data, run_dir, epochs, batch_size, learning_rate, mixed_precision)
    run_dir.mkdir(parents=True, exist_ok=True)
    request.spec_path.write_text(
        yaml.safe_dump(spec_to_dict(spec), sort_keys=False), encoding="utf-8"
    )
    request.metrics_path.unlink(missing_ok=True)
    return request


def read_result(request: RunRequest, workers: int, *, missing_hint: str) -> TrainResult:
    """The ``TrainResult`` of a finished run, from the chief's ``metrics.json``.

    Raises:
        StageError: the workers finished but the chief wrote no ``metrics.json``.
    """
    if not request.metrics_path.exists():
        raise StageError(
            f"training workers exited 0 but the chief wrote no {request.metrics_path}; "
            f"{missing_hint}"
        )
    metrics = json.loads(request.metrics_path.read_text(encoding="utf-8"))
    return TrainResult(
        saved_model_dir=request.run_dir / EXPORT_DIR,
        metrics_path=request.metrics_path,
        history=metrics["history"],
        params=metrics["params"],
        workers=workers,
        holdout=metrics.get("holdout", {}),
    )


def train(
    spec: DatasetSpec | str | Path,
    *,
    data: Path,
    run_dir: Path,
    workers: int = 1,
    epochs: int | None = None,
    batch_size: int | None = None,
    learning_rate: float | None = None,
    timeout_s: float | None = None,
    mixed_precision: bool = False,
) -> TrainResult:
    """Train the tabular model on a clean partition with ``workers`` local processes.

    Args:
        spec: a ``DatasetSpec``, or a spec name / YAML path (resolved by ``load_spec``).
        data: clean partition folder (Parquet with the label and ``split`` columns).
        run_dir: output folder; gets ``export/`` (SavedModel), ``metrics.json`` and ``spec.yaml``,
            and ``checkpoints/`` while training: a call on a run dir that holds a checkpoint of
            the same run (a retry) resumes after its last finished epoch; the chief deletes
            ``checkpoints/`` once the export is written.
        workers: number of worker processes (worker 0 is the chief).
        epochs, batch_size, learning_rate: override the spec's ``training``; ``batch_size``
            is per worker, the global batch is ``batch_size * workers``.
        timeout_s: stop the workers and fail after this many seconds (None: no limit).
        mixed_precision: float16 compute where the workers see a GPU (float32 on CPU).

    Returns:
        A ``TrainResult`` read from the chief's ``metrics.json``.

    Raises:
        ConfigError: a bad argument (named in the message).
        StageError: a worker failed (exit code and last log lines) or the run timed out.
    """
    request = prepare_run(
        spec,
        data=data,
        run_dir=run_dir,
        workers=workers,
        epochs=epochs,
        batch_size=batch_size,
        learning_rate=learning_rate,
        timeout_s=timeout_s,
        mixed_precision=mixed_precision,
    )
    spec, data, run_dir = request.spec, request.data, request.run_dir
    hosts = [f"127.0.0.1:{port}" for port in free_ports(workers)]
    command = [sys.executable, "-m", ENTRY_MODULE, *request.worker_args]
    base_env = {
        **os.environ,
        "TF_USE_LEGACY_KERAS": "1",
        "PYTHONUNBUFFERED": "1",
        PARENT_PID_ENV: str(os.getpid()),
    }
    base_env.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")
    envs = [{**base_env, "TF_CONFIG": tf_config(hosts, i)} for i in range(workers)]
    logger.info(
        "training %s on %s with %d worker(s) at %s -> %s", spec.name, data, workers, hosts, run_dir
    )
    started = time.monotonic()
    run_workers([command] * workers, envs, timeout_s=timeout_s)
    logger.info("training finished in %.1f s", time.monotonic() - started)

    return read_result(request, workers, missing_hint="see the [worker 0] log")


def launch(
    settings: Settings,
    spec: DatasetSpec | str | Path,
    *,
    data: Path,
    run_dir: Path,
    workers: int = 1,
    epochs: int | None = None,
    batch_size: int | None = None,
    learning_rate: float | None = None,
    timeout_s: float | None = None,
    mixed_precision: bool = False,
) -> TrainResult:
    """Train with the launcher ``settings.train_launcher`` names (``AIMASS_TRAIN_LAUNCHER``).

    ``local``: ``train()`` (worker processes on this machine); ``kubernetes``:
    ``aimass.k8s_launcher.train_on_kubernetes`` (one pod per worker). Same arguments and result.
    """
    if settings.train_launcher == "kubernetes":
        from aimass.k8s_launcher import train_on_kubernetes

        return train_on_kubernetes(
            settings,
            spec,
            data=data,
            run_dir=run_dir,
            workers=workers,
            epochs=epochs,
            batch_size=batch_size,
            learning_rate=learning_rate,
            timeout_s=timeout_s,
            mixed_precision=mixed_precision,
        )
    if settings.train_launcher != "local":
        raise ConfigError(
            f"AIMASS_TRAIN_LAUNCHER={settings.train_launcher!r}; use 'local' or 'kubernetes'"
        )
    return train(
        spec,
        data=data,
        run_dir=run_dir,
        workers=workers,
        epochs=epochs,
        batch_size=batch_size,
        learning_rate=learning_rate,
        timeout_s=timeout_s,
        mixed_precision=mixed_precision,
    )


def _pump(index: int, stream: IO[str], tail: collections.deque[str]) -> None:
    for raw in stream:
        line = raw.rstrip("\n")
        tail.append(line)
        logger.info("[worker %d] %s", index, line)


def _alive(procs: Sequence[subprocess.Popen[str]]) -> list[subprocess.Popen[str]]:
    return [p for p in procs if p.poll() is None]


def _signal_group(proc: subprocess.Popen[str], sig: int) -> None:
    # Each worker leads its own process group (start_new_session), so this also
    # reaches anything it started; only groups of unreaped workers are signalled.
    try:
        os.killpg(proc.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def stop_workers(procs: Sequence[subprocess.Popen[str]], grace_s: float = STOP_GRACE_S) -> None:
    """SIGTERM every live worker's process group, SIGKILL what is left after ``grace_s``, reap all."""
    live = _alive(procs)
    for proc in live:
        _signal_group(proc, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while _alive(live) and time.monotonic() < deadline:
        time.sleep(0.05)
    for proc in _alive(live):
        logger.warning("worker pid %d ignored SIGTERM for %.0f s; killing it", proc.pid, grace_s)
        _signal_group(proc, signal.SIGKILL)
    for proc in live:
        proc.wait()


@contextmanager
def _sigterm_stops(procs: list[subprocess.Popen[str]]) -> Iterator[None]:
    """While active, SIGTERM stops the workers, then acts as before (or raises StageError)."""
    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers can only be set from the main thread
        return
    previous = signal.getsignal(signal.SIGTERM)
    if previous == signal.SIG_IGN:
        yield
        return

    def on_sigterm(signum: int, frame: Any) -> None:
        stop_workers(procs)
        if callable(previous):
            previous(signum, frame)
        raise StageError("training was stopped by SIGTERM; its workers were terminated")

    signal.signal(signal.SIGTERM, on_sigterm)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def run_workers(
    commands: Sequence[Sequence[str]],
    envs: Sequence[dict[str, str]],
    *,
    timeout_s: float | None = None,
) -> None:
    """Run one process per command, stream their output, and wait for all of them to exit 0.

    Raises:
        StageError: a process exited non-zero (the others are stopped) or ``timeout_s`` passed.
    """
    procs: list[subprocess.Popen[str]] = []
    pumps: list[threading.Thread] = []
    tails: list[collections.deque[str]] = []

    def drain() -> None:
        for pump in pumps:
            pump.join(timeout=5)

    with ExitStack() as stack:
        stack.callback(stop_workers, procs)  # runs on every way out, KeyboardInterrupt included
        stack.enter_context(_sigterm_stops(procs))
        for index, (command, env) in enumerate(zip(commands, envs, strict=True)):
            proc = subprocess.Popen(
                list(command),
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                errors="replace",
                bufsize=1,
                start_new_session=True,
            )
            procs.append(proc)
            tail: collections.deque[str] = collections.deque(maxlen=LOG_TAIL_LINES)
            tails.append(tail)
            assert proc.stdout is not None
            pump = threading.Thread(target=_pump, args=(index, proc.stdout, tail), daemon=True)
            pump.start()
            pumps.append(pump)
            logger.info("started worker %d (pid %d): %s", index, proc.pid, shlex.join(command))

        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while True:
            codes = [p.poll() for p in procs]
            failed = [(i, c) for i, c in enumerate(codes) if c not in (None, 0)]
            if failed:
                index, code = failed[0]
                stop_workers(procs)
                drain()
                last = "\n".join(tails[index]) or "(no output)"
                raise StageError(
                    f"training worker {index} (pid {procs[index].pid}) exited with code {code}; "
                    f"the other workers were stopped. Command: {shlex.join(commands[index])}\n"
                    f"Last {len(tails[index])} lines of worker {index}:\n{last}\n"
                    "Fix the error above (full worker logs are in this log, prefixed [worker i]) and rerun."
                )
            if all(c == 0 for c in codes):
                drain()
                return
            if deadline is not None and time.monotonic() > deadline:
                stop_workers(procs)
                drain()
                raise StageError(
                    f"training did not finish within timeout_s={timeout_s} s; its {len(procs)} worker(s) "
                    "were stopped. Raise timeout_s, or lower epochs or the data size."
                )
            time.sleep(_POLL_S)
