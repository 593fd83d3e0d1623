"""Hyperparameter search: Keras Tuner oracles propose, real training runs answer.

``search()`` is what the ``aimass_tune`` DAG (and ``aimass.cli tune``) runs. The spec's
``tuning`` section gives the algorithm (Bayesian optimization or random search), the
space, the trial count and the epochs per trial. A Keras Tuner oracle proposes each
trial's values; the trial is a real training run through ``aimass.training.launcher.launch``
(the same worker processes, or pods, as nightly training), so what is tuned is exactly
what is trained later. The trial's SavedModel is scored on a validation share carved out
of the train split with the gate's metric code (``aimass.evaluation.metrics``); the holdout the
gate judges candidates on is never seen by the search.

Tracking: one MLflow parent run per search (tag ``aimass.kind=tuning``), one nested
child run per trial (its values, per-epoch history and validation metrics). The parent
ends with the best values as params ``best.<name>``, the JSON tag ``aimass.best_hparams``
and the artifact ``tuning/best_hparams.json``; the next training run of the dataset reads
them from there (:func:`tuned_hparams`) unless its params override them.

A retry of a search resumes: the oracle's state lives in the search folder and the
parent run id is kept beside it, so finished trials are neither rerun nor logged twice.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from aimass.data.lake import open_partition
from aimass.data.spec import TUNABLE, DatasetSpec, HParam, TrainingSpec
from aimass.platform.errors import ConfigError, StageError

if TYPE_CHECKING:
    from aimass.platform.settings import Settings

log = logging.getLogger(__name__)

KIND_TAG = "aimass.kind"
BEST_TAG = "aimass.best_hparams"
STATUS_TAG = "aimass.tuning_status"
TUNING = "tuning"
TRIAL = "tuning_trial"
COMPLETE = "complete"
PARENT_FILE = "mlflow_parent_run.json"
BEST_FILE = "best_hparams.json"
VALIDATION = "holdout"  # the split value the workers evaluate on


def encode_choice(name: str, value: Any) -> Any:
    """A choice as Keras Tuner holds it (scalars only: layer lists become ``"64-32"``)."""
    if name == "hidden_units":
        return "-".join(str(int(u)) for u in value)
    return value


def decode_hparams(values: dict[str, Any]) -> dict[str, Any]:
    """Trial values back to ``TrainingSpec`` field values."""
    out: dict[str, Any] = {}
    for name, value in values.items():
        if name == "hidden_units":
            out[name] = [int(u) for u in str(value).split("-")]
        elif name in ("batch_size", "max_vocab"):
            out[name] = int(value)
        else:
            out[name] = float(value)
    return out


def apply_hparams(spec: DatasetSpec, hparams: dict[str, Any]) -> DatasetSpec:
    """``spec`` with its ``training`` fields replaced by ``hparams``.

    Raises:
        ConfigError: a name that cannot be tuned, or a value ``TrainingSpec`` rejects.
    """
    unknown = sorted(set(hparams) - set(TUNABLE))
    if unknown:
        raise ConfigError(f"hyperparameters {unknown} cannot be set; use some of {list(TUNABLE)}")
    fields: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in hparams.items()}
    training: TrainingSpec = dataclasses.replace(spec.training, **fields)
    return dataclasses.replace(spec, training=training)


def hyperparameters(space: tuple[HParam, ...]) -> Any:
    """The search space as ``keras_tuner.HyperParameters``."""
    import keras_tuner as kt

    hp = kt.HyperParameters()
    for h in space:
        if h.is_choice:
            hp.Choice(h.name, [encode_choice(h.name, v) for v in h.values])
        elif h.name in ("batch_size", "max_vocab"):
            assert h.min is not None and h.max is not None
            hp.Int(h.name, int(h.min), int(h.max), sampling=h.sampling)
        else:
            hp.Float(h.name, h.min, h.max, sampling=h.sampling)
    return hp


def make_oracle(spec: DatasetSpec, *, algorithm: str, max_trials: int, seed: int) -> Any:
    """A Keras Tuner oracle over the spec's space, optimizing its tuning objective."""
    import keras_tuner as kt

    objective = kt.Objective(
        spec.tuning_objective, direction="max" if spec.metrics[spec.tuning_objective] else "min"
    )
    common = {
        "objective": objective,
        "max_trials": max_trials,
        "hyperparameters": hyperparameters(spec.tuning.space),
        "allow_new_entries": False,
        "tune_new_entries": False,
        "seed": seed,
    }
    if algorithm == "bayesian":
        # Random points first, then the Gaussian process takes over.
        initial = max(2, min(max_trials // 2, 3 * len(spec.tuning.space)))
        return kt.oracles.BayesianOptimizationOracle(num_initial_points=initial, **common)
    if algorithm == "random":
        return kt.oracles.RandomSearchOracle(**common)
    raise ConfigError(f"tuning algorithm '{algorithm}' is unknown; use 'bayesian' or 'random'")


def validation_partition(
    clean_dir: Path, out_dir: Path, *, percent: int, seed: int
) -> dict[str, int]:
    """Write the train split of ``clean_dir`` to ``out_dir`` with ``percent`` % marked holdout.

    Only the clean partition's ``train`` rows are copied; a seeded draw per file marks the
    validation rows ``split = "holdout"``, which is what the training workers evaluate on.
    Files are handled one at a time, so memory stays at one file's rows.

    Returns:
        ``{"train": rows, "validation": rows}``.
    """
    dataset = open_partition(clean_dir)
    if "split" not in dataset.schema.names:
        raise ConfigError(f"clean partition {clean_dir} has no 'split' column; rerun the clean job")
    tmp = out_dir.with_name(f".{out_dir.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    counts = {"train": 0, "validation": 0}
    for index, fragment in enumerate(dataset.get_fragments()):
        table = fragment.to_table(filter=pc.field("split") == "train")
        if not table.num_rows:
            continue
        rng = np.random.default_rng([seed, index])
        held = rng.random(table.num_rows) < percent / 100.0
        split = pa.array(np.where(held, VALIDATION, "train"), pa.string())
        table = table.set_column(table.schema.get_field_index("split"), "split", split)
        pq.write_table(table, tmp / f"part-{index:05d}.parquet")
        counts["validation"] += int(held.sum())
        counts["train"] += int(table.num_rows - held.sum())
    if not counts["train"] or not counts["validation"]:
        raise StageError(
            f"the train split of {clean_dir} gave {counts} rows for tuning; a search needs both "
            "(lower tuning.validation_percent or use a bigger partition)"
        )
    shutil.rmtree(out_dir, ignore_errors=True)
    tmp.rename(out_dir)
    log.info("tuning data %s: %d train rows, %d validation rows", out_dir, *counts.values())
    return counts


def _tuner_class() -> type:
    """A Keras Tuner ``BaseTuner`` whose trials are our training runs (built on first use)."""
    from keras_tuner.engine.base_tuner import BaseTuner

    class TrainingRunTuner(BaseTuner):  # type: ignore[misc]
        """Runs each trial with ``run_trial_fn(trial_id, values) -> {objective: value}``."""

        def __init__(self, oracle: Any, run_trial_fn: Any, **kwargs: Any) -> None:
            self._run_trial_fn = run_trial_fn
            super().__init__(oracle=oracle, **kwargs)

        def run_trial(self, trial: Any, *args: Any, **kwargs: Any) -> dict[str, float]:
            return dict(self._run_trial_fn(trial.trial_id, dict(trial.hyperparameters.values)))

    return TrainingRunTuner


@dataclass(frozen=True)
class SearchRequest:
    """A checked search: which data, how, and where its state lives."""

    spec: DatasetSpec
    clean_dir: Path
    work_dir: Path
    algorithm: str
    max_trials: int
    epochs: int
    workers: int
    mixed_precision: bool = False
    seed: int = 42
    run_name: str = ""


def search(settings: Settings, request: SearchRequest) -> dict[str, Any]:
    """Run the search, track it in MLflow, store the best values; return a summary.

    Raises:
        StageError: no trial finished (each failure is in the log and its child run).
    """
    from aimass.evaluation.metrics import evaluate
    from aimass.platform import tracking
    from aimass.training.launcher import launch
    from models.tabular.inputs import load_arrays

    spec = request.spec
    objective = spec.tuning_objective
    work = request.work_dir
    work.mkdir(parents=True, exist_ok=True)
    data = work / "data"
    if not (data / "_READY").exists():
        validation_partition(
            request.clean_dir, data, percent=spec.tuning.validation_percent, seed=request.seed
        )
        (data / "_READY").touch()
    val_x, val_y = load_arrays(data, spec, VALIDATION)

    parent_file = work / PARENT_FILE
    parent_id = json.loads(parent_file.read_text())["run_id"] if parent_file.exists() else None
    started = time.monotonic()
    scores: dict[str, dict[str, Any]] = {}

    def run_trial(trial_id: str, values: dict[str, Any]) -> dict[str, float]:
        hparams = decode_hparams(values)
        log.info("trial %s: %s", trial_id, hparams)
        trial_dir = work / "trials" / trial_id
        with tracking.start_run(
            settings,
            spec.name,
            name=f"trial {trial_id}",
            nested=True,
            tags={KIND_TAG: TRIAL, "aimass.dataset": spec.name, "aimass.trial": trial_id},
        ) as child:
            child.params({f"hp.{k}": v for k, v in hparams.items()})
            result = launch(
                settings,
                apply_hparams(spec, hparams),
                data=data,
                run_dir=trial_dir,
                workers=request.workers,
                epochs=request.epochs,
                mixed_precision=request.mixed_precision,
            )
            child.history(result.history, prefix="train_")
            metrics = evaluate(result.saved_model_dir, val_x, val_y, task=spec.task)
            child.metrics({f"val_{k}": float(v) for k, v in metrics.items()})
            value = float(metrics[objective])
            if not math.isfinite(value):
                raise StageError(f"trial {trial_id}: validation {objective} is {value}")
            scores[trial_id] = {
                "hparams": hparams,
                objective: value,
                "mlflow_run_id": child.run_id,
            }
        # The SavedModel was only needed for the score.
        shutil.rmtree(result.saved_model_dir, ignore_errors=True)
        log.info("trial %s: validation %s = %.5f", trial_id, objective, value)
        return {objective: value}

    with tracking.start_run(
        settings, spec.name, name=request.run_name or f"tune {spec.name}", run_id=parent_id
    ) as parent:
        if parent_id is None:
            parent_file.write_text(json.dumps({"run_id": parent.run_id}))
            parent.tags({KIND_TAG: TUNING, STATUS_TAG: "running", "aimass.dataset": spec.name})
            parent.params(
                {
                    "algorithm": request.algorithm,
                    "max_trials": request.max_trials,
                    "epochs_per_trial": request.epochs,
                    "workers": request.workers,
                    "objective": objective,
                    "partition": str(request.clean_dir),
                    "validation_percent": spec.tuning.validation_percent,
                    "space": json.dumps(spec.tuning.to_dict()["space"]),
                }
            )
        else:
            log.info("resuming search %s (MLflow run %s)", work, parent_id)
        oracle = make_oracle(
            spec, algorithm=request.algorithm, max_trials=request.max_trials, seed=request.seed
        )
        tuner = _tuner_class()(
            oracle, run_trial, directory=str(work), project_name="oracle", overwrite=False
        )
        try:
            tuner.search()
        except Exception as exc:
            parent.tags({STATUS_TAG: "failed"})
            raise StageError(
                f"the search for {spec.name} stopped: {exc}; each trial's error is in the log "
                "above and in its child run"
            ) from exc
        best = [
            t for t in oracle.get_best_trials(num_trials=request.max_trials) if t.score is not None
        ]
        trials = {
            t.trial_id: {
                "status": str(t.status),
                "hparams": decode_hparams(dict(t.hyperparameters.values)),
                objective: t.score,
            }
            for t in oracle.trials.values()
        }
        if not best:
            parent.tags({STATUS_TAG: "failed"})
            raise StageError(
                f"no tuning trial of {spec.name} finished ({len(trials)} tried); "
                "see the trial errors above and in the child runs"
            )
        top = best[0]
        hparams = decode_hparams(dict(top.hyperparameters.values))
        summary = {
            "dataset": spec.name,
            "objective": objective,
            "direction": "max" if spec.metrics[objective] else "min",
            "best_trial": top.trial_id,
            "best_score": float(top.score),
            "best_hparams": hparams,
            "trials": trials,
            "algorithm": request.algorithm,
            "partition": str(request.clean_dir),
            "mlflow_run_id": parent.run_id,
        }
        (work / BEST_FILE).write_text(json.dumps(summary, indent=2, sort_keys=True))
        parent.file(work / BEST_FILE, TUNING)
        parent.params({f"best.{k}": v for k, v in hparams.items()})
        parent.metrics({f"best_val_{objective}": float(top.score)})
        parent.tags({BEST_TAG: json.dumps(hparams, sort_keys=True), STATUS_TAG: COMPLETE})
    summary["search_seconds"] = round(time.monotonic() - started, 1)
    summary["mlflow_run_url"] = tracking.run_url(
        settings, parent.experiment_id, summary["mlflow_run_id"]
    )
    log.info(
        "best of %d trials: %s = %.5f with %s; MLflow %s",
        len(trials),
        objective,
        top.score,
        hparams,
        summary["mlflow_run_url"],
    )
    return summary


def tuned_hparams(settings: Settings, dataset: str) -> tuple[dict[str, Any], str] | None:
    """The best values of the dataset's latest complete search and its MLflow run id, if any."""
    from aimass.platform import tracking

    run = tracking.latest_run(settings, dataset, {KIND_TAG: TUNING, STATUS_TAG: COMPLETE})
    if run is None:
        return None
    try:
        hparams = json.loads(run.data.tags[BEST_TAG])
    except (KeyError, ValueError) as exc:
        log.warning(
            "tuning run %s has no readable %s (%s); ignoring it", run.info.run_id, BEST_TAG, exc
        )
        return None
    return dict(hparams), str(run.info.run_id)
