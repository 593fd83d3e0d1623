"""Scoring Arrow batches with a SavedModel, inside Spark's Python workers.

``score_batches`` is the function ``DataFrame.mapInArrow`` runs: Spark streams each
partition to a Python worker as Arrow record batches, and the worker feeds them to the
SavedModel's ``serving_default`` signature (the model server's contract,
``models.tabular.export``) and yields each row's key, id and lineage with its predictions.

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
import pyarrow.compute as pc

from aimass.data.spec import BINARY, MULTICLASS, DatasetSpec

log = logging.getLogger(__name__)

REASON = "reason"
INPUT_PARTITION = "input_partition"
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
        width = values.shape[1]
        offsets = pa.array(np.arange(0, (len(values) + 1) * width, width, dtype=np.int32))
        return {
            PROBABILITIES: pa.ListArray.from_arrays(
                offsets, pa.array(values.reshape(-1)), mask=pa.array(~ok)
            ),
            PREDICTED_CLASS: pa.array(chosen, pa.string(), mask=~ok),
        }
    name = PROBABILITY if spec.task == BINARY else PREDICTION
    return {name: pa.array(values.reshape(-1), pa.float64(), mask=~ok)}


NON_FINITE = "model returned a non-finite score"


def _predict_rows(
    predict: Callable[[dict[str, np.ndarray]], np.ndarray],
    feeds: dict[str, np.ndarray],
    rows: int,
) -> tuple[np.ndarray, dict[int, str]]:
    """All rows at once; if the model fails on the batch, row by row to find the bad ones.

    Returns the outputs (NaN where a row failed) and the failed rows' reasons by position.
    """
    try:
        return predict(feeds), {}
    except Exception:  # noqa: BLE001 - isolate the rows the model cannot take
        pass
    outputs: list[np.ndarray | None] = []
    failed: dict[int, str] = {}
    for i in range(rows):
        try:
            outputs.append(predict({k: v[i : i + 1] for k, v in feeds.items()})[0])
        except Exception as exc:  # noqa: BLE001 - the reason travels with the row
            outputs.append(None)
            failed[i] = f"model failed: {type(exc).__name__}: {str(exc)[:200]}"
    good = [o for o in outputs if o is not None]
    shape = good[0].shape if good else ()
    filler = np.full(shape, np.nan, dtype=np.float32)
    return np.stack([filler if o is None else o for o in outputs]), failed


def score_table(
    table: pa.Table,
    spec: DatasetSpec,
    predict: Callable[[dict[str, np.ndarray]], np.ndarray],
    keep: list[str],
) -> pa.Table:
    """The ``keep`` columns of ``table``, the prediction columns and ``reason``.

    Rows whose ``reason`` is already set (their input did not parse) are not fed to the
    model; a row the model fails on or scores non-finite gets its reason here. Everything is
    column-wise: no Python loop over rows unless the model raises on a batch.
    """
    from models.tabular.inputs import feature_arrays

    rows = table.num_rows
    given = table.column(REASON)
    todo = pc.is_null(given).to_numpy(zero_copy_only=False)
    width = spec.num_classes if spec.task == MULTICLASS else 1
    outputs = np.full((rows, width), np.nan, dtype=np.float32)
    failed: dict[int, str] = {}
    if todo.all():
        scored, failed = _predict_rows(predict, feature_arrays(spec, table), rows)
        outputs[:] = scored.reshape(rows, width)
    elif todo.any():
        positions = np.flatnonzero(todo)
        feeds = feature_arrays(spec, table.take(pa.array(positions)))
        scored, failed_at = _predict_rows(predict, feeds, len(positions))
        outputs[positions] = scored.reshape(len(positions), width)
        failed = {int(positions[i]): reason for i, reason in failed_at.items()}
    finite = np.isfinite(outputs).all(axis=1)
    ok = todo & finite
    reasons = pc.if_else(
        pa.array(todo & ~finite), pa.scalar(NON_FINITE, pa.string()), given.cast(pa.string())
    )
    if failed:  # rare: rebuild the column with the model's own words for those rows
        merged = reasons.to_pylist()
        for position, reason in failed.items():
            merged[position] = reason
        reasons = pa.array(merged, pa.string())
    columns = _columns(spec, outputs, ok)
    out = table.select(keep)
    if INPUT_PARTITION in keep:
        at = out.column_names.index(INPUT_PARTITION)
        out = out.set_column(at, INPUT_PARTITION, input_partitions(out.column(at)))
    for name, _ in prediction_fields(spec):
        out = out.append_column(name, columns[name])
    return out.append_column(REASON, reasons)


def input_partitions(paths: pa.ChunkedArray | pa.Array) -> pa.Array:
    """File URIs as their partition: a Parquet file's folder (the clean batch), a CSV itself."""
    encoded = pc.dictionary_encode(paths)
    if isinstance(encoded, pa.ChunkedArray):
        encoded = encoded.combine_chunks()
    names = []
    for uri in encoded.dictionary.to_pylist():
        path = uri.removeprefix("file://").removeprefix("file:")
        names.append(path.rsplit("/", 1)[0] if path.endswith(".parquet") else path)
    return pc.take(pa.array(names, pa.string()), encoded.indices)


def score_batches(
    spec: DatasetSpec, model_dir: str, threads: int, keep: list[str]
) -> Callable[[Iterator[pa.RecordBatch]], Iterator[pa.RecordBatch]]:
    """The ``mapInArrow`` function: every batch of a partition, scored with the model; the
    rows leave with their ``keep`` columns (key, id, lineage), predictions and reason."""

    def run(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        predict: Any = None
        for batch in batches:
            if batch.num_rows == 0:
                continue
            if predict is None:
                predict = load_model(model_dir, threads)
            table = score_table(pa.Table.from_batches([batch]), spec, predict, keep)
            yield from table.to_batches()

    return run
