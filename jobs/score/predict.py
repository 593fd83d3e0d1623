"""Scoring Arrow batches with a SavedModel, inside Spark's Python workers.

``score_batches`` is the function ``DataFrame.mapInArrow`` runs: Spark streams each
partition to a Python worker as Arrow record batches, and the worker feeds them to the
SavedModel's ``serving_default`` signature (the model server's contract,
``models.tabular.export``) and yields the same rows with their predictions.

The model is loaded once per Python worker (``_MODELS``: Spark reuses its workers across
tasks), with TensorFlow held to ``threads`` CPU threads, so ``local[N]`` or N executor cores
run N workers side by side instead of N workers each fighting for every core.

A row that cannot be scored is not dropped: it leaves with a ``reason`` (set by the input
typing before, or here: the model failed on it, or returned a non-finite score), so rows in
equal scored plus rejected.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from aimass.data.spec import BINARY, MULTICLASS, DatasetSpec

log = logging.getLogger(__name__)

REASON = "reason"
PROBABILITY = "probability"
PROBABILITIES = "probabilities"
PREDICTED_CLASS = "predicted_class"
PREDICTION = "prediction"
# Loaded models by SavedModel folder: one load per Python worker, not per task or batch.
_MODELS: dict[str, Callable[[dict[str, np.ndarray]], np.ndarray]] = {}


def prediction_fields(spec: DatasetSpec) -> list[tuple[str, str]]:
    """The columns a prediction adds, as (name, Spark DDL type), by the spec's task."""
    if spec.task == BINARY:
        return [(PROBABILITY, "double")]
    if spec.task == MULTICLASS:
        return [(PROBABILITIES, "array<double>"), (PREDICTED_CLASS, "string")]
    return [(PREDICTION, "double")]


def load_model(model_dir: str, threads: int) -> Callable[[dict[str, np.ndarray]], np.ndarray]:
    """The SavedModel's predict function, loaded once per process."""
    predict = _MODELS.get(model_dir)
    if predict is None:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        import tensorflow as tf

        from models.tabular.export import load_predict_fn

        if threads > 0:
            try:
                tf.config.threading.set_intra_op_parallelism_threads(threads)
                tf.config.threading.set_inter_op_parallelism_threads(threads)
            except RuntimeError:  # TensorFlow already ran something in this process
                pass
        predict = load_predict_fn(Path(model_dir))
        _MODELS[model_dir] = predict
        log.info("score: loaded %s in python worker %d", model_dir, os.getpid())
    return predict


def _columns(spec: DatasetSpec, outputs: np.ndarray, ok: np.ndarray) -> dict[str, pa.Array]:
    """The prediction columns of ``outputs`` (float32 from the model) as Arrow arrays; null
    where ``ok`` is false (a rejected row carries no number nobody computed)."""
    values = outputs.astype(np.float64)  # exact: every float32 is a double
    if spec.task == MULTICLASS:
        classes = np.asarray(spec.label_classes, dtype=object)
        chosen = classes[np.argmax(np.nan_to_num(values, nan=-1.0), axis=1)]
        return {
            PROBABILITIES: pa.array(
                [list(v) if keep else None for v, keep in zip(values, ok, strict=True)],
                pa.list_(pa.float64()),
            ),
            PREDICTED_CLASS: pa.array(
                [c if keep else None for c, keep in zip(chosen, ok, strict=True)], pa.string()
            ),
        }
    name = PROBABILITY if spec.task == BINARY else PREDICTION
    return {name: pa.array(values.reshape(-1), pa.float64(), mask=~ok)}


def _predict_rows(
    predict: Callable[[dict[str, np.ndarray]], np.ndarray],
    feeds: dict[str, np.ndarray],
    rows: int,
) -> tuple[np.ndarray | None, list[str | None]]:
    """All rows at once; if the model fails on the batch, row by row to find the bad ones."""
    try:
        return predict(feeds), [None] * rows
    except Exception:  # noqa: BLE001 - isolate the rows the model cannot take
        pass
    outputs: list[np.ndarray | None] = []
    reasons: list[str | None] = []
    for i in range(rows):
        try:
            outputs.append(predict({k: v[i : i + 1] for k, v in feeds.items()})[0])
            reasons.append(None)
        except Exception as exc:  # noqa: BLE001 - the reason travels with the row
            outputs.append(None)
            reasons.append(f"model failed: {type(exc).__name__}: {str(exc)[:200]}")
    good = [o for o in outputs if o is not None]
    if not good:
        return None, reasons
    filler = np.full_like(good[0], np.nan)
    return np.stack([filler if o is None else o for o in outputs]), reasons


def score_table(
    table: pa.Table, spec: DatasetSpec, predict: Callable[[dict[str, np.ndarray]], np.ndarray]
) -> pa.Table:
    """``table`` with the prediction columns added and ``reason`` set for rows not scored.

    Rows whose ``reason`` is already set (bad input) are not fed to the model.
    """
    from models.tabular.inputs import feature_arrays

    rows = table.num_rows
    given = table.column(REASON).to_pylist()
    todo = np.array([r is None for r in given], dtype=bool)
    fields = prediction_fields(spec)
    width = spec.num_classes if spec.task == MULTICLASS else 1
    outputs = np.full((rows, width), np.nan, dtype=np.float32)
    reasons: list[str | None] = list(given)
    if todo.any():
        feeds = feature_arrays(spec, table.filter(pa.array(todo)))
        scored, failed = _predict_rows(predict, feeds, int(todo.sum()))
        positions = np.flatnonzero(todo)
        if scored is not None:
            outputs[positions] = scored.reshape(len(positions), width)
        for position, reason in zip(positions, failed, strict=True):
            if reason is None and not np.isfinite(outputs[position]).all():
                reason = "model returned a non-finite score"
            reasons[position] = reason
    ok = np.array([r is None for r in reasons], dtype=bool)
    columns = _columns(spec, outputs, ok)
    out = table.drop_columns([REASON])
    for name, _ in fields:
        out = out.append_column(name, columns[name])
    return out.append_column(REASON, pa.array(reasons, pa.string()))


def score_batches(
    spec: DatasetSpec, model_dir: str, threads: int
) -> Callable[[Iterator[pa.RecordBatch]], Iterator[pa.RecordBatch]]:
    """The ``mapInArrow`` function: every batch of a partition, scored with the model."""

    def run(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        predict: Any = None
        for batch in batches:
            if batch.num_rows == 0:
                continue
            if predict is None:
                predict = load_model(model_dir, threads)
            table = score_table(pa.Table.from_batches([batch]), spec, predict)
            yield from table.to_batches()

    return run
