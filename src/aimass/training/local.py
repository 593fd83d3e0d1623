"""The local launcher: N local TensorFlow worker processes under MultiWorkerMirroredStrategy.

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
"""

from __future__ import annotations

import collections
import logging
import os
import shlex
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from aimass.data.spec import DatasetSpec
from aimass.platform.errors import StageError

if TYPE_CHECKING:
    pass

from aimass.platform.ports import free_ports
from aimass.training.run import (
    AUTO,
    ENTRY_MODULE,
    LOG_TAIL_LINES,
    PARENT_PID_ENV,
    TrainResult,
    prepare_run,
    read_result,
    resolve_workers,
    tf_config,
)

logger = logging.getLogger(__name__)

STOP_GRACE_S = 5.0
_POLL_S = 0.2


def train(
    spec: DatasetSpec | str | Path,
    *,
    data: Path,
    run_dir: Path,
    workers: int | str = AUTO,
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
        workers: number of worker processes (worker 0 is the chief), or ``auto``: one per
            GPU, else one per 4 cores, at least 1 (logged with the reason).
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
    workers = resolve_workers(workers)
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
