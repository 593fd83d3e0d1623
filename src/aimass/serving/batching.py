"""Server-side batching of Predict requests (TF Serving's ``--enable_batching``).

`BatchingOptions` mirrors TF Serving's ``BatchingParameters`` (`read_batching_parameters` reads
its text format); `Batcher` merges concurrent requests for the same model version and input
layout into one model call.
"""

from __future__ import annotations

import collections
import logging
import os
import re
import threading
import time
from collections.abc import Callable, Hashable, Mapping
from concurrent import futures
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import numpy as np

from aimass.platform.errors import ConfigError
from aimass.serving.servables import ServableError

logger = logging.getLogger(__name__)

# BatchingParameters fields (TF Serving's session_bundle_config.proto) this server reads, and
# those it accepts but ignores (they tune TF Serving's padding and splitting, which it lacks).
_BATCHING_INT_FIELDS = (
    "max_batch_size",
    "batch_timeout_micros",
    "max_enqueued_batches",
    "num_batch_threads",
)
_BATCHING_IGNORED_FIELDS = (
    "thread_pool_name",
    "allowed_batch_sizes",
    "pad_variable_length_inputs",
    "enable_large_batch_splitting",
    "max_execution_batch_size",
)
_BATCHING_FIELD = re.compile(
    r"\s*(\w+)\s*(?:\{\s*value\s*:\s*(\"[^\"]*\"|[^\s{}]+)\s*\}|:\s*(\"[^\"]*\"|[^\s{}]+))\s*"
)


@dataclass(frozen=True)
class BatchingOptions:
    """Server-side batching of Predict requests (TF Serving's ``BatchingParameters``).

    Concurrent requests for the same model version, signature and output filter whose inputs
    have the same names, dtypes and inner shapes are concatenated along the first dimension,
    run once and split back. A batch runs when it holds `max_batch_size` rows, or when its
    oldest request has waited `batch_timeout_micros` and a batch thread is free (0: as soon as
    a thread is free, so batches grow only while every thread is busy).

    Attributes:
        max_batch_size: rows per batch; a request with more rows runs alone.
        batch_timeout_micros: how long a partial batch waits for more requests.
        max_enqueued_batches: batches waiting per queue before requests get RESOURCE_EXHAUSTED.
        num_batch_threads: threads running batches (batches of different queues run in parallel).
    """

    max_batch_size: int = 1000
    batch_timeout_micros: int = 0
    max_enqueued_batches: int = 10
    num_batch_threads: int = field(default_factory=lambda: os.cpu_count() or 1)

    def __post_init__(self) -> None:
        for name in ("max_batch_size", "max_enqueued_batches", "num_batch_threads"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ConfigError(f"batching {name}={value!r}; use an integer >= 1")
        if not isinstance(self.batch_timeout_micros, int) or self.batch_timeout_micros < 0:
            raise ConfigError(
                f"batching batch_timeout_micros={self.batch_timeout_micros!r}; use an integer >= 0"
            )


def read_batching_parameters(path: str | Path) -> BatchingOptions:
    """Read a text-format ``BatchingParameters`` file (``--batching_parameters_file``).

    Example: ``max_batch_size { value: 64 } batch_timeout_micros { value: 2000 }``; fields
    left out keep TF Serving's defaults.

    Raises:
        ConfigError: the file is missing, or names an unknown field or a bad value.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read the batching parameters file {path}: {exc}") from exc
    text = "\n".join(line.split("#", 1)[0] for line in text.splitlines())
    values: dict[str, int] = {}
    pos = 0
    while pos < len(text):
        if not text[pos:].strip():
            break
        match = _BATCHING_FIELD.match(text, pos)
        if match is None:
            raise ConfigError(
                f"{path}: cannot parse {text[pos:].strip()[:60]!r}; write fields as "
                "'max_batch_size { value: 64 }' (text-format BatchingParameters)"
            )
        name, raw = match.group(1), match.group(2) or match.group(3)
        if name in _BATCHING_INT_FIELDS:
            try:
                values[name] = int(raw)
            except ValueError:
                raise ConfigError(f"{path}: {name} is {raw!r}; use an integer") from None
        elif name in _BATCHING_IGNORED_FIELDS:
            logger.warning("%s: %s is not supported by the local server; ignoring it", path, name)
        else:
            raise ConfigError(
                f"{path}: unknown batching field {name!r}; known fields are "
                f"{', '.join(_BATCHING_INT_FIELDS + _BATCHING_IGNORED_FIELDS)}"
            )
        pos = match.end()
    return BatchingOptions(**values)


BatchFn = Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]]


class _Task:
    __slots__ = ("inputs", "rows", "future", "enqueued", "deadline")

    def __init__(self, inputs: Mapping[str, np.ndarray], rows: int, deadline: float | None) -> None:
        self.inputs = inputs
        self.rows = rows
        self.future: futures.Future[dict[str, np.ndarray]] = futures.Future()
        self.enqueued = time.monotonic()
        self.deadline = deadline  # time.monotonic() after which the caller no longer waits


class _Batch:
    __slots__ = ("key", "fn", "labels", "tasks", "rows", "deadline")

    def __init__(
        self, key: Hashable, fn: BatchFn, labels: tuple[str, ...], deadline: float
    ) -> None:
        self.key = key
        self.fn = fn
        self.labels = labels
        self.tasks: list[_Task] = []
        self.rows = 0
        self.deadline = deadline


BatchObserver = Callable[[tuple[str, ...], int, int, list[float]], None]


class Batcher:
    """Merges concurrent calls of the same function into one call on concatenated inputs.

    `run` blocks its caller until the batch holding its request has run; each caller gets its
    own slice of the outputs, or its own exception. A batch that fails as a whole (one bad
    request can fail a model call) is retried request by request, so an error reaches only
    the callers it belongs to.

    Args:
        options: sizes, timeout and threads.
        observe: called after each batch with (labels, rows, requests, queue waits in seconds).
    """

    def __init__(self, options: BatchingOptions, *, observe: BatchObserver | None = None) -> None:
        self.options = options
        self._observe = observe
        self._timeout_s = options.batch_timeout_micros / 1e6
        self._cond = threading.Condition()
        self._open: dict[Hashable, _Batch] = {}  # per queue, the batch still taking requests
        self._ready: collections.deque[_Batch] = collections.deque()  # full, waiting a thread
        self._queued: dict[Hashable, int] = {}  # per queue, batches open or ready
        self._stopped = False
        self._threads = [
            threading.Thread(target=self._work, name=f"batch-{i}", daemon=True)
            for i in range(options.num_batch_threads)
        ]
        for thread in self._threads:
            thread.start()

    def run(
        self,
        key: Hashable,
        inputs: Mapping[str, np.ndarray],
        fn: BatchFn,
        labels: tuple[str, ...] = (),
        *,
        deadline: float | None = None,
    ) -> dict[str, np.ndarray]:
        """``fn(inputs)``, batched with concurrent calls of the same `key` and input layout.

        Calls with the same `key` must pass equivalent `fn` (the batch runs the first one's).
        Inputs without a common first dimension, empty ones, and ones with more rows than
        `max_batch_size` run alone, at once, in the caller's thread. A call whose `deadline`
        (``time.monotonic()``) passes while it is queued is answered DEADLINE_EXCEEDED and
        left out of its batch: nobody waits for its answer any more.

        Raises:
            ServableError: RESOURCE_EXHAUSTED when the queue is full, UNAVAILABLE once the
                batcher is stopped, DEADLINE_EXCEEDED, or whatever `fn` raised for this
                call's rows.
        """
        rows = _batch_rows(inputs)
        if rows is None or rows > self.options.max_batch_size:
            return fn(dict(inputs))
        queue = (key, _layout(inputs))
        task = _Task(inputs, rows, deadline)
        with self._cond:
            if self._stopped:
                raise ServableError(grpc.StatusCode.UNAVAILABLE, "the batch scheduler is stopped")
            batch = self._open.get(queue)
            if batch is not None and batch.rows + rows > self.options.max_batch_size:
                self._close(queue)
                batch = None
            if batch is None:
                if self._queued.get(queue, 0) >= self.options.max_enqueued_batches:
                    raise ServableError(
                        grpc.StatusCode.RESOURCE_EXHAUSTED,
                        "The batch scheduling queue to which this task was submitted is full",
                    )
                batch = _Batch(queue, fn, labels, task.enqueued + self._timeout_s)
                self._open[queue] = batch
                self._queued[queue] = self._queued.get(queue, 0) + 1
            batch.tasks.append(task)
            batch.rows += rows
            if batch.rows >= self.options.max_batch_size:
                self._close(queue)
            self._cond.notify()
        if deadline is None:
            return task.future.result()
        try:
            return task.future.result(timeout=max(0.0, deadline - time.monotonic()))
        except (futures.TimeoutError, futures.CancelledError):
            if task.future.cancelled() or task.future.cancel():
                raise _expired() from None
            return task.future.result()  # its batch is running: the answer is on the way

    def pending(self) -> int:
        """Requests queued and not yet taken by a batch thread."""
        with self._cond:
            batches = [*self._open.values(), *self._ready]
            return sum(len(batch.tasks) for batch in batches)

    def stop(self, timeout: float = 10.0) -> None:
        """Run what is queued, then stop the threads; later `run` calls get UNAVAILABLE."""
        with self._cond:
            self._stopped = True
            self._cond.notify_all()
        for thread in self._threads:
            thread.join(timeout)

    def _close(self, queue: Hashable) -> None:
        self._ready.append(self._open.pop(queue))

    def _next(self) -> _Batch | None:
        """The batch a free thread should run now (called with the lock held), else None."""
        if self._ready:
            batch = self._ready.popleft()
        else:
            now = time.monotonic()
            due = [b for b in self._open.values() if self._stopped or b.deadline <= now]
            if not due:
                return None
            batch = min(due, key=lambda b: b.deadline)
            del self._open[batch.key]
        self._queued[batch.key] -= 1
        if not self._queued[batch.key]:
            del self._queued[batch.key]
        return batch

    def _work(self) -> None:
        while True:
            with self._cond:
                batch = self._next()
                while batch is None:
                    if self._stopped and not self._open and not self._ready:
                        return
                    wait = None
                    if self._open:
                        earliest = min(b.deadline for b in self._open.values())
                        wait = max(0.0, earliest - time.monotonic())
                    self._cond.wait(wait)
                    batch = self._next()
            try:
                self._execute(batch)
            except Exception as exc:  # never leave a caller waiting
                logger.exception("batch of %d requests failed unexpectedly", len(batch.tasks))
                for task in batch.tasks:
                    if not task.future.done():
                        task.future.set_exception(exc)

    def _execute(self, batch: _Batch) -> None:
        started = time.monotonic()
        tasks = []
        for task in batch.tasks:
            if task.deadline is not None and task.deadline <= started:
                task.future.cancel()  # its caller answers DEADLINE_EXCEEDED
            elif task.future.set_running_or_notify_cancel():
                tasks.append(task)
        if not tasks:
            return
        rows = sum(task.rows for task in tasks)
        if len(tasks) == 1:
            _resolve(tasks[0], batch.fn)
        else:
            merged = {
                key: np.concatenate([task.inputs[key] for task in tasks]) for key in tasks[0].inputs
            }
            try:
                outputs = batch.fn(merged)
            except Exception:
                logger.debug("batch of %d requests failed; running them one by one", len(tasks))
                outputs = None
            if outputs is not None and all(
                value.ndim and value.shape[0] == rows for value in outputs.values()
            ):
                start = 0
                for task in tasks:
                    end = start + task.rows
                    task.future.set_result({k: v[start:end] for k, v in outputs.items()})
                    start = end
            else:  # a failed batch, or outputs without the batch dimension to split
                for task in tasks:
                    _resolve(task, batch.fn)
        if self._observe is not None:
            waits = [started - task.enqueued for task in tasks]
            self._observe(batch.labels, rows, len(tasks), waits)


def _expired() -> ServableError:
    return ServableError(
        grpc.StatusCode.DEADLINE_EXCEEDED,
        "the request's deadline passed while it waited for a batch; it was not run",
    )


def _resolve(task: _Task, fn: BatchFn) -> None:
    try:
        task.future.set_result(fn(dict(task.inputs)))
    except Exception as exc:
        task.future.set_exception(exc)


def _batch_rows(inputs: Mapping[str, np.ndarray]) -> int | None:
    """The common first dimension of `inputs`, or None when they cannot be batched."""
    rows = {value.shape[0] if value.ndim else -1 for value in inputs.values()}
    if len(rows) != 1:
        return None
    count = rows.pop()
    return count if count > 0 else None


def _layout(inputs: Mapping[str, np.ndarray]) -> tuple[tuple[str, str, tuple[int, ...]], ...]:
    """What must match for two requests to share a batch: names, dtypes and inner shapes."""
    return tuple(
        (key, inputs[key].dtype.str, tuple(inputs[key].shape[1:])) for key in sorted(inputs)
    )
