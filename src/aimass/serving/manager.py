"""The model manager: loads, labels and unloads model versions as a ``ModelServerConfig`` asks.

Reloads follow TF Serving's rules: a label may only point at a version that is already
AVAILABLE (so a rollout loads a version with one reload and moves the label with the next),
new versions load before labels move, and versions dropped from the config are unloaded
only while another configured version of the model stays available.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import tensorflow as tf
from tensorflow_serving.apis import model_pb2, prediction_log_pb2
from tensorflow_serving.config import model_server_config_pb2

from aimass.serving.config import SAVED_MODEL_FILE, list_versions
from aimass.serving.servables import (
    WARMUP_FILE,
    LoadedModel,
    ServableError,
    load_saved_model,
    short,
)
from aimass.serving.tensors import check_inputs

logger = logging.getLogger(__name__)

UNKNOWN = "_unknown"  # metrics label for model and label names the server does not know


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
                servable.error_message = f"failed to load {path}: {short(exc)}"
            logger.error("model %s version %d failed to load: %s", name, version, short(exc))
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

    def unavailable(self, config: model_server_config_pb2.ModelServerConfig) -> list[str]:
        """The models of `config` with no AVAILABLE version, each with its versions' states."""
        failed = []
        for model in config.model_config_list.config:
            spec = model_pb2.ModelSpec(name=model.name)
            try:
                self.resolve(spec)
            except ServableError:
                try:
                    states = self.status(spec)
                except ServableError:
                    states = []
                described = "; ".join(
                    f"version {s.version} {s.state}"
                    + (f": {s.error_message}" if s.error_message else "")
                    for s in states
                )
                failed.append(
                    f"{model.name} ({described or 'no version found under its base path'})"
                )
        return failed

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
        signature = loaded.signature(request.model_spec.signature_name)
        check_inputs(signature, inputs, list(request.output_filter))
        loaded.run(signature, inputs, list(request.output_filter))
        count += 1
    return count


def outside_root(
    config: model_server_config_pb2.ModelServerConfig, root: Path
) -> list[tuple[str, str]]:
    """(model, base path) of every model whose base path, links resolved, is not under `root`."""
    real_root = Path(os.path.realpath(root))
    return [
        (model.name, model.base_path)
        for model in config.model_config_list.config
        if not Path(os.path.realpath(model.base_path or "/")).is_relative_to(real_root)
    ]


def default_base_root(config: model_server_config_pb2.ModelServerConfig) -> Path | None:
    """The folder holding every model's base path when they share one (the serving root)."""
    parents = {Path(model.base_path).parent for model in config.model_config_list.config}
    return parents.pop() if len(parents) == 1 else None
