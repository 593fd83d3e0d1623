"""A local TF-Serving-compatible model server (the embedded default; see docs/architecture.md §2).

It implements the part of TensorFlow Serving's API that AI Mass uses, with TF Serving's own
protos, flags, base path layout and `models.config`, so the rollout client works unchanged
against the official image:

- gRPC ``PredictionService`` (Predict, GetModelMetadata) and ``ModelService`` (GetModelStatus,
  HandleReloadConfigRequest);
- REST ``GET /v1/models/<m>[/versions/<v>|/labels/<l>][/metadata]`` and
  ``POST /v1/models/<m>[/versions/<v>|/labels/<l>]:predict`` (``instances`` and ``inputs``);
- Prometheus metrics at ``GET /monitoring/prometheus/metrics`` on the REST port (TF Serving's
  path; see `aimass.serving.metrics` for the families);
- optional server-side batching of Predict (``--enable_batching``,
  ``--batching_parameters_file``; see `BatchingOptions`).

Run it as ``python -m aimass.serving.server --model_config_file models.config --port 8500
--rest_api_port 8501``, or in-process with `ModelServer`.

Reloads follow TF Serving's rules: a label may only point at a version that is already
AVAILABLE (so a rollout loads a version with one reload and moves the label with the next),
new versions load before labels move, and versions dropped from the config are unloaded
only while another configured version of the model stays available.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import collections
import functools
import json
import logging
import math
import os
import re
import signal
import sys
import threading
import time
from collections.abc import Callable, Hashable, Mapping, Sequence
from concurrent import futures
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import unquote

import grpc
import numpy as np
import tensorflow as tf
from google.protobuf import json_format
from tensorflow.core.protobuf import meta_graph_pb2, saved_model_pb2
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_management_pb2,
    model_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_log_pb2,
    prediction_service_pb2_grpc,
)
from tensorflow_serving.config import model_server_config_pb2

from aimass.platform.errors import ConfigError, ServingError
from aimass.platform.settings import Settings
from aimass.serving.config import SAVED_MODEL_FILE, list_versions, read_config
from aimass.serving.metrics import CONTENT_TYPE, METRICS_PATH, ServerMetrics
from aimass.serving.request_log import RequestLog

logger = logging.getLogger(__name__)

DEFAULT_SIGNATURE = "serving_default"
UNKNOWN = "_unknown"  # metrics label for model and label names the server does not know
WARMUP_FILE = Path("assets.extra") / "tf_serving_warmup_requests"
_MAX_MESSAGE_BYTES = 512 * 1024 * 1024

_T = TypeVar("_T")


class ServableError(Exception):
    """A request the server answers with an error status (gRPC code + TF Serving's message)."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


# --------------------------------------------------------------------------- loaded models


@dataclass(frozen=True)
class LoadedModel:
    """One loaded SavedModel. Requests hold a reference, so an unload never breaks them."""

    module: Any
    signatures: Mapping[str, Any]
    signature_defs: Mapping[str, meta_graph_pb2.SignatureDef]
    _input_dtypes: dict[str, dict[str, tf.DType]] = field(
        default_factory=dict, repr=False, compare=False
    )
    _numpy_dtypes: dict[str, dict[str, np.dtype]] = field(
        default_factory=dict, repr=False, compare=False
    )

    def signature_def(self, name: str) -> meta_graph_pb2.SignatureDef:
        name = name or DEFAULT_SIGNATURE
        if name not in self.signatures:
            raise ServableError(
                grpc.StatusCode.INVALID_ARGUMENT,
                f'Serving signature name: "{name}" not found in signature def',
            )
        return self.signature_defs[name]

    def input_dtypes(self, signature: str) -> dict[str, tf.DType]:
        """Input name -> dtype of `signature` (cached; do not modify the answer)."""
        dtypes = self._input_dtypes.get(signature)
        if dtypes is None:
            sig = self.signature_def(signature)
            dtypes = {key: tf.as_dtype(info.dtype) for key, info in sig.inputs.items()}
            self._input_dtypes[signature] = dtypes
        return dtypes

    def predict(
        self, signature: str, inputs: Mapping[str, np.ndarray], output_filter: Sequence[str] = ()
    ) -> dict[str, np.ndarray]:
        """Run `signature` on `inputs` (named as the signature's inputs, dtypes as declared)."""
        signature = signature or DEFAULT_SIGNATURE
        self.check(signature, inputs, output_filter)
        return self.run(signature, inputs, output_filter)

    def check(
        self, signature: str, inputs: Mapping[str, np.ndarray], output_filter: Sequence[str] = ()
    ) -> None:
        """Raise the INVALID_ARGUMENT `predict` would for these input names, dtypes and outputs."""
        sig = self.signature_def(signature)
        expected = self.input_dtypes(signature)
        if set(inputs) != set(expected):
            extra = sorted(set(inputs) - set(expected))
            missing = sorted(set(expected) - set(inputs))
            raise ServableError(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"input size does not match signature: {len(inputs)}!={len(expected)} "
                f"Sent extra: {extra} Missing but required: {missing}.",
            )
        unknown = sorted(set(output_filter) - set(sig.outputs))
        if unknown:
            raise ServableError(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"output tensor alias not found in signature: {unknown[0]} Outputs expected to "
                f"be in the set {sorted(sig.outputs)}.",
            )
        numpy_dtypes = self._numpy_dtypes.get(signature)
        if numpy_dtypes is None:
            numpy_dtypes = {
                key: np.dtype(object) if dtype == tf.string else np.dtype(dtype.as_numpy_dtype)
                for key, dtype in expected.items()
            }
            self._numpy_dtypes[signature] = numpy_dtypes
        for key, value in inputs.items():
            if value.dtype == numpy_dtypes[key]:
                continue  # the common case, without TensorFlow's dtype lookups
            got = tf.as_dtype(value.dtype) if value.dtype != object else tf.string
            if got != expected[key]:
                raise ServableError(
                    grpc.StatusCode.INVALID_ARGUMENT,
                    f"Expects arg[{key}] to be {expected[key].name} but {got.name} is provided",
                )

    def run(
        self, signature: str, inputs: Mapping[str, np.ndarray], output_filter: Sequence[str] = ()
    ) -> dict[str, np.ndarray]:
        """Call `signature` on inputs that passed `check`."""
        expected = self.input_dtypes(signature)
        tensors = {key: tf.constant(value, dtype=expected[key]) for key, value in inputs.items()}
        try:
            result = self.signatures[signature](**tensors)
        except (tf.errors.InvalidArgumentError, ValueError, TypeError) as exc:
            raise ServableError(grpc.StatusCode.INVALID_ARGUMENT, _short(exc)) from exc
        except tf.errors.OpError as exc:
            raise ServableError(grpc.StatusCode.INTERNAL, _short(exc)) from exc
        wanted = list(output_filter) or list(result)
        return {key: result[key].numpy() for key in wanted}


def load_saved_model(path: Path) -> LoadedModel:
    """Load the `serve` meta graph of the SavedModel in `path` (needs a serving_default signature)."""
    proto = saved_model_pb2.SavedModel.FromString((path / SAVED_MODEL_FILE).read_bytes())
    meta_graph = next((mg for mg in proto.meta_graphs if "serve" in mg.meta_info_def.tags), None)
    if meta_graph is None:
        raise ValueError(
            f"{path} has no meta graph tagged 'serve'; export it with tf.saved_model.save"
        )
    module = tf.saved_model.load(str(path), tags=["serve"])
    signatures = dict(module.signatures)
    if DEFAULT_SIGNATURE not in signatures:
        raise ValueError(
            f"{path} has no '{DEFAULT_SIGNATURE}' signature (found {sorted(signatures)}); "
            "export the model with signatures={'serving_default': ...}"
        )
    return LoadedModel(module, signatures, dict(meta_graph.signature_def))


def replay_warmup(loaded: LoadedModel, path: Path) -> int:
    """Replay the PredictionLog records in assets.extra/tf_serving_warmup_requests; the count."""
    warmup = path / WARMUP_FILE
    if not warmup.is_file():
        return 0
    count = 0
    for record in tf.data.TFRecordDataset(str(warmup)):
        log = prediction_log_pb2.PredictionLog.FromString(record.numpy())
        if log.WhichOneof("log_type") != "predict_log":
            raise ValueError(f"warm-up record {count} in {warmup} is not a predict_log")
        request = log.predict_log.request
        inputs = {key: tf.make_ndarray(value) for key, value in request.inputs.items()}
        loaded.predict(request.model_spec.signature_name, inputs, list(request.output_filter))
        count += 1
    return count


# --------------------------------------------------------------------------- batching

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
    __slots__ = ("inputs", "rows", "future", "enqueued")

    def __init__(self, inputs: Mapping[str, np.ndarray], rows: int) -> None:
        self.inputs = inputs
        self.rows = rows
        self.future: futures.Future[dict[str, np.ndarray]] = futures.Future()
        self.enqueued = time.monotonic()


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
    ) -> dict[str, np.ndarray]:
        """``fn(inputs)``, batched with concurrent calls of the same `key` and input layout.

        Calls with the same `key` must pass equivalent `fn` (the batch runs the first one's).
        Inputs without a common first dimension, empty ones, and ones with more rows than
        `max_batch_size` run alone, at once, in the caller's thread.

        Raises:
            ServableError: RESOURCE_EXHAUSTED when the queue is full, UNAVAILABLE once the
                batcher is stopped, or whatever `fn` raised for this call's rows.
        """
        rows = _batch_rows(inputs)
        if rows is None or rows > self.options.max_batch_size:
            return fn(dict(inputs))
        queue = (key, _layout(inputs))
        task = _Task(inputs, rows)
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
        return task.future.result()

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
        tasks = batch.tasks
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
                value.ndim and value.shape[0] == batch.rows for value in outputs.values()
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
            self._observe(batch.labels, batch.rows, len(tasks), waits)


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


# --------------------------------------------------------------------------- model manager


@dataclass
class Servable:
    """One (model, version) and its state as GetModelStatus reports it."""

    name: str
    version: int
    state: str = "START"
    error_code: grpc.StatusCode = grpc.StatusCode.OK
    error_message: str = ""
    loaded: LoadedModel | None = field(default=None, repr=False)


class ModelManager:
    """Loads, labels and unloads model versions as a `ModelServerConfig` asks."""

    def __init__(self) -> None:
        self._lock = threading.Lock()  # guards the tables below; never held while loading
        self._reload_lock = threading.Lock()  # one reload (gRPC, file poll) at a time
        self._config = model_server_config_pb2.ModelServerConfig()
        self._servables: dict[str, dict[int, Servable]] = {}
        self._labels: dict[str, dict[str, int]] = {}
        self._model_names: frozenset[str] = frozenset()
        self._missing_logged: set[tuple[str, int]] = set()

    @property
    def config(self) -> model_server_config_pb2.ModelServerConfig:
        with self._lock:
            copy = model_server_config_pb2.ModelServerConfig()
            copy.CopyFrom(self._config)
            return copy

    # ---- reloads

    def apply(self, config: model_server_config_pb2.ModelServerConfig) -> None:
        """Apply a new config: load new versions, then move labels, then unload dropped versions.

        The first config may label versions it loads itself (as TF Serving with
        ``--allow_version_labels_for_unavailable_models``); later ones may only label versions
        that are AVAILABLE before the reload.

        Raises:
            ServableError: the config is invalid (INVALID_ARGUMENT) or a label points at a
                version that is not AVAILABLE (FAILED_PRECONDITION); nothing changed then,
                except on the first config, whose loads stay.
        """
        with self._reload_lock:
            if config.WhichOneof("config") is None:
                logger.info("taking no action for an empty model server config")
                return
            first = self._config.WhichOneof("config") is None
            self._validate(config, check_labels=not first)
            models = list(config.model_config_list.config)
            if first:
                self._load_missing(models, retry_failed=True)
                self._validate(config, check_labels=True)
            with self._lock:
                self._config.CopyFrom(config)
                self._model_names = frozenset(model.name for model in models)
                self._missing_logged.clear()
            self._load_missing(models, retry_failed=True)
            self._switch_labels(models)
            self._unload_unwanted(models)

    def sync(self) -> None:
        """Load versions that appeared on disk and unload those the policy no longer wants."""
        with self._reload_lock:
            models = list(self._config.model_config_list.config)
            self._load_missing(models, retry_failed=False)
            self._unload_unwanted(models)

    def unload_all(self) -> None:
        with self._reload_lock:
            for name, versions in list(self._servables.items()):
                for servable in versions.values():
                    self._unload(servable, reason="server stopping")
                self._labels.pop(name, None)

    def _validate(
        self, config: model_server_config_pb2.ModelServerConfig, *, check_labels: bool
    ) -> None:
        if config.WhichOneof("config") != "model_config_list":
            raise ServableError(
                grpc.StatusCode.INVALID_ARGUMENT,
                "ServerModelConfig type not supported by HandleReloadConfigRequest. "
                "Only ModelConfigList is currently supported",
            )
        seen: set[str] = set()
        for model in config.model_config_list.config:
            invalid = _invalid_model_config(model, seen)
            if invalid:
                raise ServableError(grpc.StatusCode.INVALID_ARGUMENT, invalid)
            seen.add(model.name)
            if not check_labels:
                continue
            wanted = set(_desired_versions(model))
            with self._lock:
                servables = dict(self._servables.get(model.name, {}))
            for label, version in model.version_labels.items():
                current = servables.get(version)
                if current is None or current.state != "AVAILABLE":
                    raise ServableError(
                        grpc.StatusCode.FAILED_PRECONDITION,
                        f"Request to assign label to version {version} of model {model.name}, "
                        "which is not currently available for inference",
                    )
                if version not in wanted:
                    # TF Serving would accept this and leave the label dangling after the
                    # unload; refusing it keeps a rollout that passes here valid there too.
                    raise ServableError(
                        grpc.StatusCode.INVALID_ARGUMENT,
                        f"label {label!r} of model {model.name} points at version {version}, "
                        f"which this config does not serve (versions {sorted(wanted)}); "
                        "list the version or move the label",
                    )

    def _load_missing(
        self, models: list[model_server_config_pb2.ModelConfig], *, retry_failed: bool
    ) -> None:
        for model in models:
            base = Path(model.base_path)
            for version in _desired_versions(model):
                with self._lock:
                    current = self._servables.get(model.name, {}).get(version)
                if current is not None and current.state in ("AVAILABLE", "LOADING"):
                    continue
                failed = current is not None and current.error_code != grpc.StatusCode.OK
                if failed and not retry_failed:
                    continue
                path = base / str(version)
                if not (path / SAVED_MODEL_FILE).is_file():
                    if (model.name, version) not in self._missing_logged:
                        self._missing_logged.add((model.name, version))
                        logger.warning(
                            "model %s version %d is configured but %s has no %s yet; "
                            "it loads once the folder appears",
                            model.name,
                            version,
                            path,
                            SAVED_MODEL_FILE,
                        )
                    continue
                self._load(model.name, version, path)

    def _load(self, name: str, version: int, path: Path) -> None:
        servable = Servable(name=name, version=version, state="LOADING")
        with self._lock:
            self._servables.setdefault(name, {})[version] = servable
        logger.info("loading model %s version %d from %s", name, version, path)
        started = time.monotonic()
        try:
            loaded = load_saved_model(path)
            warmed = replay_warmup(loaded, path)
        except Exception as exc:
            with self._lock:
                servable.state = "END"
                servable.error_code = grpc.StatusCode.UNKNOWN
                servable.error_message = f"failed to load {path}: {_short(exc)}"
            logger.error("model %s version %d failed to load: %s", name, version, _short(exc))
            return
        with self._lock:
            servable.loaded = loaded
            servable.state = "AVAILABLE"
        logger.info(
            "model %s version %d is AVAILABLE (loaded in %.2f s, %d warm-up requests)",
            name,
            version,
            time.monotonic() - started,
            warmed,
        )

    def _switch_labels(self, models: list[model_server_config_pb2.ModelConfig]) -> None:
        with self._lock:
            new = {model.name: dict(model.version_labels) for model in models}
            for name in sorted(set(self._labels) | set(new)):
                old_labels, new_labels = self._labels.get(name, {}), new.get(name, {})
                for label in sorted(set(old_labels) | set(new_labels)):
                    before, after = old_labels.get(label), new_labels.get(label)
                    if before != after:
                        logger.info(
                            "model %s label %s: version %s -> %s", name, label, before, after
                        )
            self._labels = {name: labels for name, labels in new.items() if labels}

    def _unload_unwanted(self, models: list[model_server_config_pb2.ModelConfig]) -> None:
        by_name = {model.name: model for model in models}
        with self._lock:
            current = {name: dict(versions) for name, versions in self._servables.items()}
            labelled = {name: set(labels.values()) for name, labels in self._labels.items()}
        for name, versions in current.items():
            live = {v: s for v, s in versions.items() if s.state == "AVAILABLE"}
            if name not in by_name:
                for servable in live.values():
                    self._unload(servable, reason="model removed from the config")
                continue
            wanted = set(_desired_versions(by_name[name]))
            if not any(v in wanted for v in live):
                stale = sorted(set(live) - wanted)
                if stale:
                    logger.warning(
                        "model %s: keeping versions %s loaded because none of the configured "
                        "versions %s is available",
                        name,
                        stale,
                        sorted(wanted),
                    )
                continue
            for version, servable in live.items():
                if version not in wanted and version not in labelled.get(name, set()):
                    self._unload(servable, reason="no longer in the config")

    def _unload(self, servable: Servable, *, reason: str) -> None:
        with self._lock:
            if servable.state != "AVAILABLE":
                return
            servable.state = "END"
            servable.loaded = None  # in-flight requests keep their own reference
        logger.info("unloaded model %s version %d (%s)", servable.name, servable.version, reason)

    # ---- metrics

    def metric_names(self, model: str, label: str) -> tuple[str, str]:
        """`model` and `label` as metrics label them: names the server does not know collapse
        into ``_unknown``, so clients cannot grow the number of series without bound."""
        # Lock-free on the request path: membership tests on these tables are atomic under
        # the GIL, and the tables are only grown or replaced whole.
        if model and model not in self._model_names and model not in self._servables:
            return UNKNOWN, UNKNOWN if label else ""
        if label and label not in self._labels.get(model, {}):
            label = UNKNOWN
        return model, label

    def version_states(self) -> dict[tuple[str, ...], float]:
        """``{(model, state): versions}``; every known model reports AVAILABLE, if only as 0."""
        with self._lock:
            counts: dict[tuple[str, ...], float] = {
                (name, "AVAILABLE"): 0.0 for name in set(self._servables) | self._model_names
            }
            for name, versions in self._servables.items():
                for servable in versions.values():
                    key = (name, servable.state)
                    counts[key] = counts.get(key, 0.0) + 1
        return counts

    def version_labels(self) -> dict[tuple[str, ...], float]:
        """``{(model, label, version): 1}`` for every version label."""
        with self._lock:
            return {
                (name, label, str(version)): 1.0
                for name, labels in self._labels.items()
                for label, version in labels.items()
            }

    # ---- requests

    def resolve(self, spec: model_pb2.ModelSpec) -> tuple[int, LoadedModel]:
        """The version and loaded model a request's ModelSpec names (latest when unspecified)."""
        name = spec.name
        if not name:
            raise ServableError(
                grpc.StatusCode.INVALID_ARGUMENT, "ModelSpec has no name specified."
            )
        choice = spec.WhichOneof("version_choice")
        with self._lock:
            versions = self._servables.get(name, {})
            available = {v: s.loaded for v, s in versions.items() if s.state == "AVAILABLE"}
            if choice == "version":
                version = spec.version.value
                request = f"Specific({name}, {version})"
            elif choice == "version_label":
                label = spec.version_label
                if not available:
                    raise ServableError(
                        grpc.StatusCode.NOT_FOUND,
                        f"Servable not found for request: {name} with label {label}",
                    )
                if label not in self._labels.get(name, {}):
                    raise ServableError(
                        grpc.StatusCode.INVALID_ARGUMENT,
                        f"Unrecognized servable version label: {label}",
                    )
                version = self._labels[name][label]
                request = f"Specific({name}, {version})"
            else:
                version = max(available, default=-1)
                request = f"Latest({name})"
            loaded = available.get(version)
        if loaded is None:
            raise ServableError(
                grpc.StatusCode.NOT_FOUND, f"Servable not found for request: {request}"
            )
        return version, loaded

    def status(self, spec: model_pb2.ModelSpec) -> list[Servable]:
        """Snapshots of the versions a GetModelStatus request asks about, newest first."""
        name = spec.name
        choice = spec.WhichOneof("version_choice")
        with self._lock:
            versions = self._servables.get(name, {})
            if choice == "version_label":
                labels = self._labels.get(name, {})
                if spec.version_label not in labels:
                    raise ServableError(
                        grpc.StatusCode.INVALID_ARGUMENT,
                        f"Unrecognized servable version label: {spec.version_label}",
                    )
                choice, wanted = "version", labels[spec.version_label]
            else:
                wanted = spec.version.value
            if choice == "version":
                if wanted not in versions:
                    raise ServableError(
                        grpc.StatusCode.NOT_FOUND,
                        f"Could not find version {wanted} of model {name}",
                    )
                picked = [versions[wanted]]
            else:
                if not versions:
                    raise ServableError(
                        grpc.StatusCode.NOT_FOUND, f"Could not find any versions of model {name}"
                    )
                picked = [versions[v] for v in sorted(versions, reverse=True)]
            return [
                Servable(s.name, s.version, s.state, s.error_code, s.error_message) for s in picked
            ]


def _invalid_model_config(model: model_server_config_pb2.ModelConfig, seen: set[str]) -> str:
    if not model.name:
        return "a model config has no name; set name for every model"
    if model.name in seen:
        return f"model {model.name} is listed twice in the config; keep one entry per model"
    if not model.base_path:
        return f"model {model.name} has no base_path; set it to the folder holding its versions"
    if "://" in model.base_path:
        return (
            f"model {model.name}: base_path {model.base_path} is remote; the local model server "
            "reads local folders only (use the TF Serving image for remote storage)"
        )
    if not Path(model.base_path).is_absolute():
        return f"model {model.name}: base_path {model.base_path} must be an absolute path"
    if model.model_platform not in ("", "tensorflow"):
        return f"Model {model.name} requests unsupported platform {model.model_platform}"
    return ""


def _desired_versions(model: model_server_config_pb2.ModelConfig) -> list[int]:
    policy = model.model_version_policy
    kind = policy.WhichOneof("policy_choice")
    if kind == "specific":
        return sorted(set(policy.specific.versions))
    on_disk = list_versions(model.base_path)
    if kind == "all":
        return on_disk
    count = policy.latest.num_versions if kind == "latest" else 0
    return on_disk[-(count or 1) :]


_NUMPY_DTYPES = {
    dtype.as_datatype_enum: dtype.as_numpy_dtype
    for dtype in (
        tf.float16,
        tf.float32,
        tf.float64,
        tf.int8,
        tf.int16,
        tf.int32,
        tf.int64,
        tf.uint8,
        tf.uint16,
        tf.uint32,
        tf.uint64,
        tf.bool,
    )
}
_DATATYPES = {np.dtype(numpy): enum for enum, numpy in _NUMPY_DTYPES.items()}
# The repeated field small tensors travel in (tf.make_tensor_proto skips tensor_content for them).
_VALUE_FIELDS = {
    tf.float32.as_datatype_enum: ("float_val", np.float32),
    tf.float64.as_datatype_enum: ("double_val", np.float64),
    tf.int32.as_datatype_enum: ("int_val", np.int32),
    tf.int64.as_datatype_enum: ("int64_val", np.int64),
    tf.bool.as_datatype_enum: ("bool_val", np.bool_),
}
_DT_STRING = tf.string.as_datatype_enum


def tensor_to_ndarray(proto: Any) -> np.ndarray:
    """`tf.make_ndarray`, without its per-call overhead for the common encodings.

    Numeric tensors in ``tensor_content``, and tensors with one value per element in their
    repeated field (strings, floats, ints, bools), are read directly (the array may be
    read-only); anything else (e.g. one value broadcast to the shape) goes to `tf.make_ndarray`.
    """
    shape = tuple(dim.size for dim in proto.tensor_shape.dim)
    if proto.tensor_content:
        dtype = _NUMPY_DTYPES.get(proto.dtype)
        if dtype is not None:
            return np.frombuffer(proto.tensor_content, dtype=dtype).reshape(shape)
    elif proto.dtype == _DT_STRING:
        if len(proto.string_val) == math.prod(shape):
            return np.array(list(proto.string_val), dtype=object).reshape(shape)
    elif proto.dtype in _VALUE_FIELDS:
        name, dtype = _VALUE_FIELDS[proto.dtype]
        values = getattr(proto, name)
        if len(values) == math.prod(shape):
            return np.fromiter(values, dtype=dtype, count=len(values)).reshape(shape)
    return tf.make_ndarray(proto)


def fill_tensor_proto(proto: Any, value: np.ndarray) -> None:
    """Write `value` into a TensorProto as `tf.make_tensor_proto` would, faster for numbers."""
    enum = _DATATYPES.get(value.dtype)
    if enum is None:
        proto.CopyFrom(tf.make_tensor_proto(value))
        return
    proto.dtype = enum
    for size in value.shape:
        proto.tensor_shape.dim.add().size = size
    proto.tensor_content = np.ascontiguousarray(value).tobytes()


def _short(exc: BaseException, limit: int = 600) -> str:
    text = str(exc).strip() or type(exc).__name__
    text = text if len(text) <= limit else text[:limit] + "..."
    return f"{type(exc).__name__}: {text}" if not isinstance(exc, ServableError) else text


# --------------------------------------------------------------------------- front end


class _Call:
    """One request being answered, and what its metrics are labelled with."""

    __slots__ = ("api", "method", "model", "label", "version", "started")

    def __init__(self, api: str, method: str, spec: model_pb2.ModelSpec | None = None) -> None:
        self.api = api
        self.method = method
        self.model = spec.name if spec is not None else ""
        labelled = spec is not None and spec.WhichOneof("version_choice") == "version_label"
        self.label = spec.version_label if labelled and spec is not None else ""
        self.version = ""  # set once the request resolved a version
        self.started = time.perf_counter()


class Frontend:
    """What the gRPC and REST front ends share: the models, the batcher and the metrics."""

    def __init__(
        self,
        manager: ModelManager,
        metrics: ServerMetrics | None = None,
        batcher: Batcher | None = None,
        request_log: RequestLog | None = None,
    ) -> None:
        self.manager = manager
        self.metrics = metrics or ServerMetrics(
            version_states=manager.version_states, version_labels=manager.version_labels
        )
        self.batcher = batcher
        self.request_log = request_log

    def predict(
        self,
        spec: model_pb2.ModelSpec,
        signature: str,
        inputs: Mapping[str, np.ndarray],
        output_filter: Sequence[str],
        call: _Call,
        resolved: tuple[int, LoadedModel] | None = None,
    ) -> tuple[int, dict[str, np.ndarray]]:
        """Run the signature of the version `spec` names (or `resolved`, when the caller already
        resolved it), through the batcher when batching is on."""
        version, loaded = resolved or self.manager.resolve(spec)
        call.version = str(version)
        signature = signature or DEFAULT_SIGNATURE
        if self.request_log is not None:  # sampled, in memory: the flush thread writes
            self.request_log.record(spec.name, version, inputs)
        batcher = self.batcher
        if batcher is None:
            return version, loaded.predict(signature, inputs, output_filter)
        loaded.check(signature, inputs, output_filter)  # a bad request fails alone, unbatched
        wanted = tuple(output_filter)
        key = (spec.name, version, id(loaded), signature, wanted)  # `fn` keeps `loaded` alive
        fn = functools.partial(loaded.run, signature, output_filter=wanted)
        return version, batcher.run(key, inputs, fn, labels=(spec.name, str(version)))

    def observe_batch(
        self, labels: tuple[str, ...], rows: int, requests: int, waits: list[float]
    ) -> None:
        model, version = labels
        self.metrics.observe_batch(
            model=model, version=version, rows=rows, requests=requests, waits=waits
        )

    def finish(self, call: _Call, code: grpc.StatusCode) -> None:
        """Record an answered request (before the answer is sent, so a scrape after it sees it)."""
        model, label = self.manager.metric_names(call.model, call.label)
        self.metrics.observe_request(
            api=call.api,
            method=call.method,
            model=model,
            version=call.version,
            label=label,
            code=code.name,
            seconds=time.perf_counter() - call.started,
        )

    def answer_grpc(self, context: grpc.ServicerContext, call: _Call, run: Callable[[], _T]) -> _T:
        code = grpc.StatusCode.OK
        try:
            return run()
        except ServableError as exc:
            code = exc.code
            context.abort(exc.code, exc.message)
        except Exception as exc:
            code = grpc.StatusCode.INTERNAL
            logger.exception("gRPC %s failed", call.method)
            context.abort(grpc.StatusCode.INTERNAL, _short(exc))
        finally:
            self.finish(call, code)
        raise AssertionError("unreachable")  # context.abort always raises


# --------------------------------------------------------------------------- gRPC


class PredictionService(prediction_service_pb2_grpc.PredictionServiceServicer):
    """PredictionService.Predict and GetModelMetadata (Classify/Regress answer UNIMPLEMENTED)."""

    def __init__(self, frontend: Frontend) -> None:
        self._frontend = frontend

    def Predict(
        self, request: predict_pb2.PredictRequest, context: grpc.ServicerContext
    ) -> predict_pb2.PredictResponse:
        call = _Call("grpc", "predict", request.model_spec)
        return self._frontend.answer_grpc(context, call, lambda: self._predict(request, call))

    def _predict(
        self, request: predict_pb2.PredictRequest, call: _Call
    ) -> predict_pb2.PredictResponse:
        signature = request.model_spec.signature_name or DEFAULT_SIGNATURE
        try:
            inputs = {key: tensor_to_ndarray(value) for key, value in request.inputs.items()}
        except Exception as exc:
            raise ServableError(grpc.StatusCode.INVALID_ARGUMENT, _short(exc)) from exc
        version, outputs = self._frontend.predict(
            request.model_spec, signature, inputs, list(request.output_filter), call
        )
        response = predict_pb2.PredictResponse()
        response.model_spec.name = request.model_spec.name
        response.model_spec.version.value = version
        response.model_spec.signature_name = signature
        for key, value in outputs.items():
            fill_tensor_proto(response.outputs[key], value)
        return response

    def GetModelMetadata(
        self, request: get_model_metadata_pb2.GetModelMetadataRequest, context: grpc.ServicerContext
    ) -> get_model_metadata_pb2.GetModelMetadataResponse:
        call = _Call("grpc", "metadata", request.model_spec)
        return self._frontend.answer_grpc(context, call, lambda: self._metadata(request, call))

    def _metadata(
        self, request: get_model_metadata_pb2.GetModelMetadataRequest, call: _Call
    ) -> get_model_metadata_pb2.GetModelMetadataResponse:
        if not request.metadata_field:
            raise ServableError(
                grpc.StatusCode.INVALID_ARGUMENT,
                "GetModelMetadataRequest must specify at least one metadata_field",
            )
        for name in request.metadata_field:
            if name != "signature_def":
                raise ServableError(
                    grpc.StatusCode.INVALID_ARGUMENT, f"Metadata field {name} is not supported"
                )
        return metadata_response(self._frontend.manager, request.model_spec, call)


def metadata_response(
    manager: ModelManager, spec: model_pb2.ModelSpec, call: _Call | None = None
) -> get_model_metadata_pb2.GetModelMetadataResponse:
    version, loaded = manager.resolve(spec)
    if call is not None:
        call.version = str(version)
    response = get_model_metadata_pb2.GetModelMetadataResponse()
    response.model_spec.name = spec.name
    response.model_spec.version.value = version
    signature_map = get_model_metadata_pb2.SignatureDefMap()
    for key, signature in loaded.signature_defs.items():
        signature_map.signature_def[key].CopyFrom(signature)
    response.metadata["signature_def"].Pack(signature_map)
    return response


def status_response(
    manager: ModelManager, spec: model_pb2.ModelSpec, call: _Call | None = None
) -> get_model_status_pb2.GetModelStatusResponse:
    response = get_model_status_pb2.GetModelStatusResponse()
    servables = manager.status(spec)
    if call is not None and spec.WhichOneof("version_choice") and servables:
        call.version = str(servables[0].version)  # the one version asked for
    for servable in servables:
        entry = response.model_version_status.add()
        entry.version = servable.version
        entry.state = get_model_status_pb2.ModelVersionStatus.State.Value(servable.state)
        entry.status.error_code = servable.error_code.value[0]
        entry.status.error_message = servable.error_message
    return response


class ModelService(model_service_pb2_grpc.ModelServiceServicer):
    """ModelService.GetModelStatus and HandleReloadConfigRequest."""

    def __init__(self, frontend: Frontend) -> None:
        self._frontend = frontend
        self._manager = frontend.manager

    def GetModelStatus(
        self, request: get_model_status_pb2.GetModelStatusRequest, context: grpc.ServicerContext
    ) -> get_model_status_pb2.GetModelStatusResponse:
        call = _Call("grpc", "status", request.model_spec)

        def run() -> get_model_status_pb2.GetModelStatusResponse:
            if not request.HasField("model_spec"):
                raise ServableError(grpc.StatusCode.INVALID_ARGUMENT, "Missing ModelSpec")
            return status_response(self._manager, request.model_spec, call)

        return self._frontend.answer_grpc(context, call, run)

    def HandleReloadConfigRequest(
        self, request: model_management_pb2.ReloadConfigRequest, context: grpc.ServicerContext
    ) -> model_management_pb2.ReloadConfigResponse:
        def run() -> model_management_pb2.ReloadConfigResponse:
            names = [model.name for model in request.config.model_config_list.config]
            logger.info("reload requested over gRPC for models %s", names)
            try:
                self._manager.apply(request.config)
            except ServableError as exc:
                logger.error("ReloadConfig failed: %s", exc.message)
                raise
            return model_management_pb2.ReloadConfigResponse()

        return self._frontend.answer_grpc(context, _Call("grpc", "reload"), run)


# --------------------------------------------------------------------------- REST

_PREDICT_PATH = re.compile(
    r"/v1/models/([^/:]+)(?:(?:/versions/(\d+))|(?:/labels/([^/:]+)))?:(classify|regress|predict)",
    re.IGNORECASE,
)
_STATUS_PATH = re.compile(
    r"/v1/models(?:/([^/:]+))?(?:(?:/versions/(\d+))|(?:/labels/([^/:]+)))?(?:/(metadata))?",
    re.IGNORECASE,
)
_HTTP_STATUS = {
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.FAILED_PRECONDITION: 400,
    grpc.StatusCode.OUT_OF_RANGE: 400,
    grpc.StatusCode.UNAUTHENTICATED: 401,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.ABORTED: 409,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.UNIMPLEMENTED: 501,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
}


def _model_spec(name: str, version: str | None, label: str | None) -> model_pb2.ModelSpec:
    spec = model_pb2.ModelSpec(name=unquote(name))
    if version:
        spec.version.value = int(version)
    elif label:
        spec.version_label = unquote(label)
    return spec


def _to_array(values: Any, dtype: tf.DType, key: str) -> np.ndarray:
    try:
        if dtype == tf.string:
            return np.array(_decode_json_strings(values), dtype=object)
        return np.asarray(values, dtype=dtype.as_numpy_dtype)
    except (ValueError, TypeError, binascii.Error) as exc:
        raise ServableError(
            grpc.StatusCode.INVALID_ARGUMENT,
            f"input {key!r} cannot be read as {dtype.name}: {exc}",
        ) from exc


def _decode_json_strings(value: Any) -> Any:
    if isinstance(value, list):
        return [_decode_json_strings(item) for item in value]
    if isinstance(value, dict) and set(value) == {"b64"}:
        return base64.b64decode(value["b64"], validate=True)
    if isinstance(value, str):
        return value.encode("utf-8")
    raise TypeError(f"expected a string or {{'b64': ...}}, got {value!r}")


def _to_json(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return _to_json(value.tolist()) if value.dtype == object else value.tolist()
    if isinstance(value, list):
        return [_to_json(item) for item in value]
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            return {"b64": base64.b64encode(value).decode("ascii")}
    if isinstance(value, np.generic):
        return value.item()
    return value


def rest_predict(
    frontend: Frontend, spec: model_pb2.ModelSpec, body: bytes, call: _Call | None = None
) -> dict[str, Any]:
    """Answer a REST :predict body in TF Serving's row (instances) or columnar (inputs) format."""
    call = call or _Call("rest", "predict", spec)
    try:
        request = json.loads(body or b"{}")
    except ValueError as exc:
        raise ServableError(grpc.StatusCode.INVALID_ARGUMENT, f"JSON Parse error: {exc}") from exc
    if not isinstance(request, dict):
        raise ServableError(grpc.StatusCode.INVALID_ARGUMENT, "JSON Value is not an object")
    if ("instances" in request) == ("inputs" in request):
        raise ServableError(
            grpc.StatusCode.INVALID_ARGUMENT,
            "Missing 'inputs' or 'instances' key"
            if "instances" not in request
            else "Not formatted correctly, either 'instances' or 'inputs' should be specified, not both",
        )
    signature = request.get("signature_name") or DEFAULT_SIGNATURE
    version, loaded = frontend.manager.resolve(spec)
    call.version = str(version)
    dtypes = loaded.input_dtypes(signature)
    row_format = "instances" in request
    columns = _instances_to_columns(request["instances"], dtypes) if row_format else None
    if columns is None:
        raw = request["inputs"]
        named = isinstance(raw, dict) and set(raw) != {"b64"}
        if not named and len(dtypes) != 1:
            raise ServableError(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"'inputs' must name the signature's inputs {sorted(dtypes)} in an object",
            )
        columns = raw if named else {next(iter(dtypes)): raw}
    arrays = {
        key: _to_array(values, dtypes.get(key, tf.string), key) for key, values in columns.items()
    }
    _, outputs = frontend.predict(spec, signature, arrays, (), call, (version, loaded))
    if not row_format:
        if len(outputs) == 1:
            return {"outputs": _to_json(next(iter(outputs.values())))}
        return {"outputs": {key: _to_json(value) for key, value in outputs.items()}}
    batch = {value.shape[0] if value.ndim else -1 for value in outputs.values()}
    if len(batch) != 1 or -1 in batch:
        raise ServableError(
            grpc.StatusCode.INVALID_ARGUMENT,
            "Tensor outputs do not share a batch dimension; use the columnar 'inputs' format",
        )
    if len(outputs) == 1:
        return {"predictions": _to_json(next(iter(outputs.values())))}
    rows = batch.pop()
    return {
        "predictions": [
            {key: _to_json(value[i]) for key, value in outputs.items()} for i in range(rows)
        ]
    }


def _instances_to_columns(instances: Any, dtypes: Mapping[str, tf.DType]) -> dict[str, list]:
    if not isinstance(instances, list) or not instances:
        raise ServableError(
            grpc.StatusCode.INVALID_ARGUMENT, "'instances' must be a non-empty JSON list"
        )
    named = [isinstance(item, dict) and set(item) != {"b64"} for item in instances]
    if all(named):
        columns: dict[str, list] = {}
        for index, item in enumerate(instances):
            if set(item) != set(dtypes):
                raise ServableError(
                    grpc.StatusCode.INVALID_ARGUMENT,
                    f"instance {index} has keys {sorted(item)}; the signature expects "
                    f"{sorted(dtypes)}",
                )
            for key, value in item.items():
                columns.setdefault(key, []).append(value)
        return columns
    if not any(named) and len(dtypes) == 1:
        return {next(iter(dtypes)): instances}
    raise ServableError(
        grpc.StatusCode.INVALID_ARGUMENT,
        f"'instances' must be objects naming the inputs {sorted(dtypes)} "
        "(a list of plain values works only for a single-input signature)",
    )


class _RestHandler(BaseHTTPRequestHandler):
    frontend: Frontend  # set on the subclass made by ModelServer
    protocol_version = "HTTP/1.1"
    server_version = "aimass-model-server"
    # Headers and body leave in one segment, without waiting for the client's delayed ACK
    # (otherwise every answer on a kept-alive connection stalls ~40 ms).
    disable_nagle_algorithm = True
    wbufsize = 64 * 1024

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        self._dispatch("GET")

    def do_POST(self) -> None:  # noqa: N802
        self._dispatch("POST")

    def _dispatch(self, method: str) -> None:
        path = self.path.split("?", 1)[0]
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        if method == "GET" and path == METRICS_PATH:
            self._send(200, self.frontend.metrics.render().encode("utf-8"), CONTENT_TYPE)
            return
        call: list[_Call] = []  # the routed request, once known
        try:
            payload = self._route(method, path, body, call)
            code, status = 200, grpc.StatusCode.OK
        except ServableError as exc:
            payload, code = {"error": exc.message}, _HTTP_STATUS.get(exc.code, 500)
            status = exc.code
        except Exception as exc:
            logger.exception("REST %s %s failed", method, path)
            payload, code, status = {"error": _short(exc)}, 500, grpc.StatusCode.INTERNAL
        if call:
            self.frontend.finish(call[0], status)
        self._send(code, json.dumps(payload).encode("utf-8"), "application/json")

    def _send(self, code: int, data: bytes, content_type: str) -> None:
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _route(self, method: str, path: str, body: bytes, call: list[_Call]) -> dict[str, Any]:
        if not path.lower().startswith("/v1/"):
            raise ServableError(grpc.StatusCode.NOT_FOUND, f"no route for {method} {path}")
        manager = self.frontend.manager
        if method == "POST" and (match := _PREDICT_PATH.fullmatch(path)):
            name, version, label, verb = match.groups()
            spec = _model_spec(name, version, label)
            call.append(_Call("rest", verb.lower(), spec))
            if verb.lower() != "predict":
                raise ServableError(
                    grpc.StatusCode.UNIMPLEMENTED, f":{verb} is not served by the local server"
                )
            return rest_predict(self.frontend, spec, body, call[0])
        if method == "GET" and (match := _STATUS_PATH.fullmatch(path)):
            name, version, label, metadata = match.groups()
            spec = _model_spec(name or "", version, label)
            call.append(_Call("rest", "metadata" if metadata else "status", spec))
            if not name:
                raise ServableError(
                    grpc.StatusCode.INVALID_ARGUMENT, "Missing model name in request."
                )
            options = {
                "preserving_proto_field_name": True,
                "always_print_fields_with_no_presence": True,
            }
            if metadata:
                response = metadata_response(manager, spec, call[0])
                signature_map = get_model_metadata_pb2.SignatureDefMap()
                response.metadata["signature_def"].Unpack(signature_map)
                return {
                    "model_spec": json_format.MessageToDict(response.model_spec, **options),
                    "metadata": {
                        "signature_def": json_format.MessageToDict(signature_map, **options)
                    },
                }
            status = status_response(manager, spec, call[0])
            return json_format.MessageToDict(status, **options)
        raise ServableError(grpc.StatusCode.INVALID_ARGUMENT, f"Malformed request: {method} {path}")

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (base signature)
        logger.debug("REST %s", format % args)


# --------------------------------------------------------------------------- server


class ModelServer:
    """The model server in-process: `start()` loads the config and binds the ports, `stop()` ends it.

    Args:
        config: the initial config; read from `config_file` when omitted.
        config_file: a text-format `models.config`, re-read when it changes.
        host: interface to bind (loopback by default).
        grpc_port: gRPC port; 0 picks a free one (see `grpc_port` after `start()`).
        rest_port: REST port; 0 picks a free one, None disables REST.
        poll_seconds: how often to re-read the config file and rescan base paths; 0 disables.
        max_workers: gRPC threads (requests answered at once over gRPC).
        batching: server-side batching of Predict requests; None (the default) runs each
            request on its own, as TF Serving without ``--enable_batching``.
        request_log: records a sample of the Predict requests' features under its directory
            (``aimass.serving.request_log.RequestLog``); None (the default) records nothing.

    Metrics are served on the REST port at ``GET /monitoring/prometheus/metrics``.
    """

    def __init__(
        self,
        config: model_server_config_pb2.ModelServerConfig | None = None,
        *,
        config_file: str | Path | None = None,
        host: str = "127.0.0.1",
        grpc_port: int = 0,
        rest_port: int | None = 0,
        poll_seconds: float = 2.0,
        max_workers: int = 8,
        batching: BatchingOptions | None = None,
        request_log: RequestLog | None = None,
    ) -> None:
        if config is None and config_file is None:
            raise ConfigError("ModelServer needs a config or a config_file; pass one of them")
        self.manager = ModelManager()
        self.frontend = Frontend(self.manager, request_log=request_log)
        self.request_log = request_log
        self.metrics = self.frontend.metrics
        self.batching = batching
        self._initial = config
        self._config_file = Path(config_file) if config_file is not None else None
        self._config_text: bytes | None = None
        self.host = host
        self.grpc_port = grpc_port
        self.rest_port = rest_port
        self._poll_seconds = poll_seconds
        self._max_workers = max_workers
        self._grpc: grpc.Server | None = None
        self._http: ThreadingHTTPServer | None = None
        self._threads: list[threading.Thread] = []
        self._stopping = threading.Event()

    @property
    def grpc_target(self) -> str:
        return f"{self.host}:{self.grpc_port}"

    @property
    def rest_url(self) -> str:
        return f"http://{self.host}:{self.rest_port}"

    def start(self) -> ModelServer:
        """Load the initial config (every model needs an AVAILABLE version), then open the ports.

        Raises:
            ConfigError: the config file is missing or invalid.
            ServingError: the config is rejected, a model has no loadable version, or a port
                cannot be bound.
        """
        config = self._initial if self._initial is not None else self._read_config_file()
        try:
            self.manager.apply(config)
        except ServableError as exc:
            raise ServingError(f"model server config rejected: {exc.message}") from exc
        self._check_models_available(config)
        if self.batching is not None:
            self.frontend.batcher = Batcher(self.batching, observe=self.frontend.observe_batch)
            logger.info("batching Predict requests: %s", self.batching)
        if self.request_log is not None:
            self.request_log.start()
        self._start_grpc()
        if self.rest_port is not None:
            self._start_rest()
        if self._poll_seconds > 0:
            self._spawn("model-server-poll", self._poll_loop)
        logger.info(
            "model server up: gRPC on %s, REST on %s",
            self.grpc_target,
            self.rest_url if self.rest_port is not None else "(disabled)",
        )
        return self

    def stop(self, grace: float = 2.0) -> None:
        """Stop serving (in-flight requests get `grace` seconds) and unload every model."""
        self._stopping.set()
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
            self._http = None
        if self._grpc is not None:
            self._grpc.stop(grace).wait()
            self._grpc = None
        if self.frontend.batcher is not None:
            self.frontend.batcher.stop()
            self.frontend.batcher = None
        for thread in self._threads:
            thread.join(timeout=10)
        self._threads.clear()
        if self.request_log is not None:
            self.request_log.stop()  # persists the last requests
        self.manager.unload_all()
        logger.info("model server stopped")

    def __enter__(self) -> ModelServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _read_config_file(self) -> model_server_config_pb2.ModelServerConfig:
        assert self._config_file is not None
        config = read_config(self._config_file)
        self._config_text = self._config_file.read_bytes()
        return config

    def _check_models_available(self, config: model_server_config_pb2.ModelServerConfig) -> None:
        failed = []
        for model in config.model_config_list.config:
            try:
                self.manager.resolve(model_pb2.ModelSpec(name=model.name))
            except ServableError:
                try:
                    states = self.manager.status(model_pb2.ModelSpec(name=model.name))
                except ServableError:
                    states = []
                failed.append(f"{model.name} ({_describe(states)})")
        if failed:
            raise ServingError(
                f"{len(failed)} model(s) did not become available: {', '.join(failed)}; "
                "check the base paths and the SavedModels (python -m aimass.serving.server logs "
                "the load errors)"
            )

    def _start_grpc(self) -> None:
        server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=self._max_workers, thread_name_prefix="grpc"),
            options=[
                ("grpc.max_receive_message_length", _MAX_MESSAGE_BYTES),
                ("grpc.max_send_message_length", _MAX_MESSAGE_BYTES),
                ("grpc.so_reuseport", 0),
            ],
        )
        prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(
            PredictionService(self.frontend), server
        )
        model_service_pb2_grpc.add_ModelServiceServicer_to_server(
            ModelService(self.frontend), server
        )
        try:
            port = server.add_insecure_port(f"{self.host}:{self.grpc_port}")
        except RuntimeError as exc:
            raise ServingError(
                f"cannot bind gRPC to {self.host}:{self.grpc_port} ({exc}); pick a free --port"
            ) from exc
        if port == 0:
            raise ServingError(
                f"cannot bind gRPC to {self.host}:{self.grpc_port}; pick a free --port"
            )
        server.start()
        self._grpc, self.grpc_port = server, port

    def _start_rest(self) -> None:
        handler = type("RestHandler", (_RestHandler,), {"frontend": self.frontend})
        try:
            http = ThreadingHTTPServer((self.host, self.rest_port or 0), handler)
        except OSError as exc:
            raise ServingError(
                f"cannot bind REST to {self.host}:{self.rest_port} ({exc}); pick a free "
                "--rest_api_port"
            ) from exc
        http.daemon_threads = True
        self._http, self.rest_port = http, int(http.server_address[1])
        self._spawn("model-server-rest", http.serve_forever)

    def _spawn(self, name: str, target: Callable[[], object]) -> None:
        thread = threading.Thread(target=target, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    def _poll_loop(self) -> None:
        while not self._stopping.wait(self._poll_seconds):
            try:
                self._poll_once()
            except Exception:
                logger.exception("model server poll failed; retrying in %.1f s", self._poll_seconds)

    def _poll_once(self) -> None:
        if self._config_file is not None:
            text: bytes | None
            try:
                text = self._config_file.read_bytes()
            except FileNotFoundError:
                text = self._config_text  # a rewrite in progress; keep the current config
            if text is not None and text != self._config_text:
                self._config_text = text
                logger.info("config file %s changed; applying it", self._config_file)
                try:
                    self.manager.apply(read_config(self._config_file))
                except (ServableError, ConfigError) as exc:
                    logger.error("ignoring the new %s: %s", self._config_file, exc)
        self.manager.sync()


def _describe(states: list[Servable]) -> str:
    if not states:
        return "no version found under its base path"
    return "; ".join(
        f"version {s.version} {s.state}" + (f": {s.error_message}" if s.error_message else "")
        for s in states
    )


# --------------------------------------------------------------------------- CLI


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m aimass.serving.server",
        description="Local TF-Serving-compatible model server (flags as tensorflow_model_server).",
    )
    parser.add_argument("--port", type=int, default=8500, help="gRPC port (0 picks a free one)")
    parser.add_argument(
        "--rest_api_port", type=int, default=0, help="REST port; 0 disables REST, as in TF Serving"
    )
    parser.add_argument("--host", default="127.0.0.1", help="interface to bind")
    parser.add_argument("--model_config_file", help="text-format ModelServerConfig (models.config)")
    parser.add_argument("--model_name", default="default", help="single model mode: its name")
    parser.add_argument(
        "--model_base_path",
        help="single model mode: folder of integer versions (serves the latest)",
    )
    parser.add_argument(
        "--file_system_poll_wait_seconds",
        type=float,
        default=2.0,
        help="seconds between base path rescans (and config file re-reads); 0 disables",
    )
    parser.add_argument(
        "--model_config_file_poll_wait_seconds",
        type=float,
        default=None,
        help="seconds between config file re-reads (defaults to --file_system_poll_wait_seconds)",
    )
    parser.add_argument(
        "--grpc_max_threads", type=int, default=8, help="gRPC threads answering requests"
    )
    parser.add_argument(
        "--enable_batching",
        action="store_true",
        help="batch concurrent Predict requests for the same model version and signature",
    )
    parser.add_argument(
        "--batching_parameters_file",
        help="text-format BatchingParameters (max_batch_size, batch_timeout_micros, "
        "max_enqueued_batches, num_batch_threads); needs --enable_batching",
    )
    parser.add_argument(
        "--request_log_dir",
        help="record a sample of Predict requests' features as <dir>/<model>/recent.parquet "
        "(off when omitted)",
    )
    parser.add_argument(
        "--request_log_sample",
        type=float,
        default=None,
        help="share 0..1 of requests recorded (default AIMASS_REQUEST_LOG_SAMPLE, 0.1)",
    )
    parser.add_argument(
        "--request_log_rows",
        type=int,
        default=None,
        help="recent rows kept per model (default AIMASS_REQUEST_LOG_ROWS, 10000)",
    )
    parser.add_argument(
        "--request_log_flush_seconds",
        type=float,
        default=30.0,
        help="seconds between writes of the recorded requests",
    )
    args = parser.parse_args(argv)
    if bool(args.model_config_file) == bool(args.model_base_path):
        parser.error("pass exactly one of --model_config_file or --model_base_path")
    if args.batching_parameters_file and not args.enable_batching:
        parser.error("--batching_parameters_file needs --enable_batching")
    if args.grpc_max_threads < 1:
        parser.error(f"--grpc_max_threads={args.grpc_max_threads}; use at least 1")
    return args


def single_model_config(
    name: str, base_path: str | Path
) -> model_server_config_pb2.ModelServerConfig:
    """The config `--model_name/--model_base_path` stand for: one model, latest version."""
    config = model_server_config_pb2.ModelServerConfig()
    model = config.model_config_list.config.add()
    model.name = name
    model.base_path = str(Path(base_path).expanduser().resolve())
    model.model_platform = "tensorflow"
    model.model_version_policy.latest.num_versions = 1
    return config


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    poll = args.file_system_poll_wait_seconds
    if args.model_config_file and args.model_config_file_poll_wait_seconds is not None:
        poll = args.model_config_file_poll_wait_seconds or poll
    batching = None
    if args.enable_batching:
        try:
            batching = (
                read_batching_parameters(args.batching_parameters_file)
                if args.batching_parameters_file
                else BatchingOptions()
            )
        except ConfigError as exc:
            logger.error("%s", exc)
            return 1
    request_log = None
    if args.request_log_dir:
        try:
            settings = Settings.from_env()
            request_log = RequestLog(
                args.request_log_dir,
                sample=settings.request_log_sample
                if args.request_log_sample is None
                else args.request_log_sample,
                max_rows=settings.request_log_rows
                if args.request_log_rows is None
                else args.request_log_rows,
                flush_seconds=args.request_log_flush_seconds,
            )
        except ConfigError as exc:
            logger.error("%s", exc)
            return 1
    server = ModelServer(
        single_model_config(args.model_name, args.model_base_path)
        if args.model_base_path
        else None,
        config_file=args.model_config_file,
        host=args.host,
        grpc_port=args.port,
        rest_port=args.rest_api_port or None,
        poll_seconds=poll,
        max_workers=args.grpc_max_threads,
        batching=batching,
        request_log=request_log,
    )
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    try:
        server.start()
    except (ServingError, ConfigError) as exc:
        logger.error("%s", exc)
        server.stop(grace=0)
        return 1
    while not stop.wait(0.5):
        pass
    logger.info("signal received; shutting down")
    server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
