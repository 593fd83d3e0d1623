"""What every training launcher shares: the run request, the worker contract and the result.

A run is ``python -m models.tabular.train`` on N workers, each with its ``TF_CONFIG``, under
``MultiWorkerMirroredStrategy``. The spec reaches the workers as ``<run_dir>/spec.yaml``,
written from the ``DatasetSpec`` (so an in-memory spec works and the run keeps the exact spec it
trained with); only the chief writes ``export/`` and ``metrics.json``. The launchers
(``local``: processes here; ``kubernetes``: pods) differ only in where the workers run.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from aimass.data.lake import is_view
from aimass.data.spec import DatasetSpec, load_spec
from aimass.platform.errors import ConfigError, StageError

if TYPE_CHECKING:
    pass

logger = logging.getLogger(__name__)

ENTRY_MODULE = "models.tabular.train"
SPEC_FILE = "spec.yaml"
EXPORT_DIR = "export"
METRICS_FILE = "metrics.json"
PARENT_PID_ENV = "AIMASS_TRAIN_PARENT_PID"
LOG_TAIL_LINES = 20


AUTO = "auto"
CORES_PER_WORKER = 4
_NVIDIA_GPUS = "/proc/driver/nvidia/gpus"


def gpu_count() -> int:
    """The GPUs this process may use: the NVIDIA driver's list (``/proc/driver/nvidia/gpus``,
    else ``nvidia-smi -L``), cut to ``CUDA_VISIBLE_DEVICES`` when that is set.

    TensorFlow is not imported (seconds and hundreds of MiB in an Airflow task); a machine
    without the NVIDIA driver has 0.
    """
    found = 0
    if os.path.isdir(_NVIDIA_GPUS):
        found = len(os.listdir(_NVIDIA_GPUS))
    elif shutil.which("nvidia-smi"):
        try:
            listing = subprocess.run(
                ["nvidia-smi", "-L"], capture_output=True, text=True, timeout=10, check=False
            ).stdout
        except (OSError, subprocess.TimeoutExpired):
            listing = ""
        found = sum(1 for line in listing.splitlines() if line.startswith("GPU "))
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is None:
        return found
    # "" or "-1" hide every GPU; a list names the ones this process sees.
    names = [v for v in visible.split(",") if v.strip() and v.strip() != "-1"]
    return min(found, len(names))


def auto_workers() -> tuple[int, str]:
    """How many local workers ``auto`` means here, and why: one per GPU, else one per
    ``CORES_PER_WORKER`` cores, at least 1."""
    cores = os.cpu_count() or 1
    gpus = gpu_count()
    if gpus:
        return gpus, f"{cores} cores, {gpus} GPU(s): one worker per GPU"
    workers = max(1, cores // CORES_PER_WORKER)
    return workers, (f"{cores} cores, no GPU: one worker per {CORES_PER_WORKER} cores, at least 1")


def resolve_workers(value: int | str | None, *, launcher: str = "local") -> int:
    """The number of workers ``value`` asks for: a positive integer as given, or ``auto``
    (or None) resolved for ``launcher`` and logged with its reason.

    On ``kubernetes`` the cluster's size is not known here, so ``auto`` is one pod.

    Raises:
        ConfigError: neither ``auto`` nor a positive integer.
    """
    if value is None or (isinstance(value, str) and value.strip().lower() in ("", AUTO)):
        if launcher == "kubernetes":
            workers, why = 1, "kubernetes launcher: the cluster's size is unknown here, one pod"
        else:
            workers, why = auto_workers()
        logger.info("workers: auto -> %d (%s)", workers, why)
        return workers
    try:
        workers = int(value) if not isinstance(value, bool) else 0
    except (TypeError, ValueError):
        workers = 0
    if workers < 1:
        raise ConfigError(f"workers={value!r}; use auto or a positive number of workers")
    return workers


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
    if not (data.is_dir() or is_view(data)):
        raise ConfigError(
            f"training data {data} is neither a folder nor a view file; pass the clean "
            "partition (…/clean/<dataset>/ds=<ds>/) or a run's clean.view.json"
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


def reset_run_dir(run_dir: Path) -> None:
    """Empty ``run_dir`` for a training attempt, keeping the previous attempt's checkpoints.

    A retry starts from a clean slate except for the epoch checkpoints, which the workers
    resume from (``models.tabular.train`` checks they belong to the same run and discards
    them otherwise).
    """
    import shutil

    from models.tabular.train import CHECKPOINT_DIR

    if run_dir.exists():
        for entry in run_dir.iterdir():
            if entry.name == CHECKPOINT_DIR:
                logger.info("train: keeping %s of the previous attempt to resume from", entry)
            elif entry.is_dir():
                shutil.rmtree(entry)
            else:
                entry.unlink()
    run_dir.mkdir(parents=True, exist_ok=True)
