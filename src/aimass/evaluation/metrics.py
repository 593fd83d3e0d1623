"""Holdout metrics for a SavedModel, by label task, overall and per slice.

The metrics are scikit-learn's (``sklearn.metrics``) wherever it has one; only the expected
calibration error, which sklearn lacks, is computed here with numpy.

- binary: AUC, log loss, and at the decision threshold (0.5 unless the spec's
  ``gate.threshold`` says otherwise) accuracy, precision and recall; expected calibration
  error (ECE) of the positive-class probability; plus the positive rate;
- multiclass: macro one-vs-rest AUC, log loss, accuracy of the arg-max class, macro
  precision and recall of the arg-max class, and ECE of the top-class confidence;
- regression: RMSE, MAE and R².

ECE uses ``ECE_BINS`` equal-width bins over [0, 1]: the share of rows in each bin times the
gap between the bin's mean confidence and its observed rate, summed.

Every result also has ``rows``. The names match ``aimass.data.spec.METRICS``, which the gate's
bars refer to. Per-slice metrics (``slice_metrics``) are the same functions on the rows of
each value of a slice column; a metric a slice cannot define (AUC over one class) is left out
of that slice instead of failing the evaluation.

sklearn is imported inside the functions: the gate imports this module for its data
classes, and importing it must stay cheap.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from aimass.data.spec import DatasetSpec

log = logging.getLogger(__name__)

# Probabilities are clipped to [EPS, 1 - EPS] before the log loss (sklearn's own clip, at
# the float epsilon, would let a confident miss cost ~36 instead of ~16 and shift the
# numbers the gate compares against stored champions).
EPS = 1e-7
DEFAULT_THRESHOLD = 0.5
ECE_BINS = 10
# The value a slice column's nulls are reported under.
NULL_SLICE = "(null)"
# Values of one slice column reported one by one (the most frequent); the rest are pooled.
MAX_SLICE_VALUES = 50


def roc_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve (``sklearn.metrics.roc_auc_score``; ties count half).

    Raises:
        ValueError: when the labels hold a single class (AUC is undefined).
    """
    from sklearn.metrics import roc_auc_score

    labels = np.asarray(labels).astype(bool).ravel()
    scores = np.asarray(scores, dtype=np.float64).ravel()
    n_pos = int(labels.sum())
    n_neg = labels.size - n_pos
    # Checked here so the message names the holdout (sklearn's says "y_true").
    if n_pos == 0 or n_neg == 0:
        raise ValueError(
            f"AUC needs both classes in the holdout; got {n_pos} positive and {n_neg} negative rows"
        )
    return float(roc_auc_score(labels, scores))


def _auc_if_defined(labels: np.ndarray, scores: np.ndarray) -> float | None:
    """AUC, or None when the labels hold a single class (a small slice, say)."""
    positives = int(np.count_nonzero(labels))
    if positives == 0 or positives == np.asarray(labels).size:
        return None
    return roc_auc(labels, scores)


def precision_recall(truth: np.ndarray, predicted: np.ndarray) -> tuple[float, float]:
    """Precision and recall of boolean predictions; 0.0 where a denominator is 0.

    That is sklearn's ``zero_division=0``: no predicted positive gives precision 0, no
    positive label gives recall 0.
    """
    from sklearn.metrics import precision_score, recall_score

    truth = np.asarray(truth, dtype=bool).ravel()
    predicted = np.asarray(predicted, dtype=bool).ravel()
    # pos_label=True: with one value in both arrays sklearn would otherwise guess the class.
    kwargs: dict[str, Any] = {"pos_label": True, "zero_division": 0}
    return (
        float(precision_score(truth, predicted, **kwargs)),
        float(recall_score(truth, predicted, **kwargs)),
    )


def expected_calibration_error(
    outcomes: np.ndarray, confidences: np.ndarray, *, bins: int = ECE_BINS
) -> float:
    """Expected calibration error over ``bins`` equal-width bins of [0, 1].

    sklearn has no such metric (``calibration_curve`` gives the bins' rates, not their
    weighted gap), so it is computed here.

    Args:
        outcomes: 1 where the event the confidence is about happened (the label is
            positive; the top class is the true one), else 0.
        confidences: the predicted probability of that event, in [0, 1].
        bins: bin ``k`` holds confidences in ``[k / bins, (k + 1) / bins)``; the last
            bin also holds 1.0.

    Returns:
        ``sum_k (n_k / n) * |mean(outcomes_k) - mean(confidences_k)|`` over non-empty bins.
    """
    hit = np.asarray(outcomes, dtype=np.float64).ravel()
    conf = np.clip(np.asarray(confidences, dtype=np.float64).ravel(), 0.0, 1.0)
    if hit.shape != conf.shape:
        raise ValueError(f"{hit.size} outcomes but {conf.size} confidences")
    if conf.size == 0:
        raise ValueError("calibration error needs at least one row")
    index = np.minimum((conf * bins).astype(np.int64), bins - 1)
    # n_k * |mean gap| = |sum of outcomes - sum of confidences| within the bin.
    gap = np.bincount(index, weights=hit, minlength=bins) - np.bincount(
        index, weights=conf, minlength=bins
    )
    return float(np.abs(gap).sum() / conf.size)


def _log_loss(labels: np.ndarray, probabilities: np.ndarray, classes: int) -> float:
    """sklearn's log loss of class indices against ``[rows, classes]`` probabilities.

    The caller clips the probabilities to ``[EPS, 1]``, which moves rows off summing to 1
    (float32 softmax rows already miss it by more than sklearn's tolerance); sklearn only
    warns about that, and the loss reads the true class's column alone, so the warning
    is silenced rather than repeated for every evaluation and slice.
    """
    from sklearn.metrics import log_loss

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The y_prob values do not sum to one")
        return float(log_loss(labels, y_proba=probabilities, labels=np.arange(classes)))


def binary_metrics(
    labels: np.ndarray,
    probabilities: np.ndarray,
    *,
    threshold: float = DEFAULT_THRESHOLD,
    strict: bool = True,
) -> dict[str, float]:
    """Metrics of positive-class probabilities; accuracy, precision, recall at ``threshold``.

    With ``strict=False`` a single-class holdout leaves ``auc`` out instead of raising.
    """
    from sklearn.metrics import accuracy_score

    y = np.asarray(labels, dtype=np.float64).ravel()
    raw = np.clip(np.asarray(probabilities, dtype=np.float64).ravel(), 0.0, 1.0)
    if y.shape != raw.shape:
        raise ValueError(f"{y.size} labels but {raw.size} predictions")
    if not 0.0 < threshold < 1.0:
        raise ValueError(f"the decision threshold must be in (0, 1), got {threshold}")
    # The AUC ranks the clipped probabilities too: 0 and 1e-9 tie, as they always have.
    p = np.clip(raw, EPS, 1 - EPS)
    positive = y >= 0.5
    predicted = raw >= threshold
    precision, recall = precision_recall(positive, predicted)
    out: dict[str, float] = {}
    auc = roc_auc(y, p) if strict else _auc_if_defined(positive, p)
    if auc is not None:
        out["auc"] = auc
    out.update(
        {
            "accuracy": float(accuracy_score(positive, predicted)),
            "precision": precision,
            "recall": recall,
            "log_loss": _log_loss(positive.astype(np.int64), np.stack([1 - p, p], axis=1), 2),
            "ece": expected_calibration_error(positive, raw),
            "rows": float(y.size),
            "positive_rate": float(y.mean()),
        }
    )
    return out


def multiclass_metrics(
    labels: np.ndarray, probabilities: np.ndarray, *, strict: bool = True
) -> dict[str, float]:
    """Metrics of per-class probabilities ``[rows, K]``; the predicted class is the arg-max.

    The AUC is the macro one-vs-rest AUC (sklearn's ``multi_class="ovr"``) over the classes
    that have both positive and negative rows in the holdout (a class absent from it has
    no AUC); ``auc_classes`` says how many. With ``strict=False`` a holdout where no class
    qualifies leaves ``auc`` out instead of raising. Precision and recall are macro
    averages over the classes that occur in the labels or the predictions (sklearn's
    ``average="macro"``, ``zero_division=0``). ECE is over the top-class confidence, an
    outcome being a correct arg-max.
    """
    from sklearn.metrics import accuracy_score, precision_score, recall_score

    y = np.asarray(labels).astype(np.int64).ravel()
    p = np.asarray(probabilities, dtype=np.float64)
    if p.ndim != 2 or p.shape[0] != y.size:
        raise ValueError(
            f"{y.size} labels but predictions of shape {p.shape}; need [rows, classes]"
        )
    k = p.shape[1]
    if y.size and (y.min() < 0 or y.max() >= k):
        raise ValueError(f"labels must be class indices 0..{k - 1}; got {y.min()}..{y.max()}")
    # Class by class rather than roc_auc_score(multi_class="ovr"): that needs every class in
    # the labels and rows summing to 1, which a holdout slice or a float32 softmax may not
    # give. Infinite scores become the largest finite ones, which sklearn accepts and which
    # keeps their rank (NaN stays NaN and is refused).
    scores = np.nan_to_num(p, nan=np.nan)
    aucs = [roc_auc(y == c, scores[:, c]) for c in range(k) if 0 < int((y == c).sum()) < y.size]
    if not aucs and strict:
        raise ValueError("AUC needs at least two classes in the holdout")
    predicted = p.argmax(axis=1)
    macro: dict[str, Any] = {"average": "macro", "zero_division": 0}
    out: dict[str, float] = {}
    if aucs:
        out["auc"] = float(np.mean(aucs))
    out.update(
        {
            "accuracy": float(accuracy_score(y, predicted)),
            "precision": float(precision_score(y, predicted, **macro)),
            "recall": float(recall_score(y, predicted, **macro)),
            "log_loss": _log_loss(y, np.clip(p, EPS, 1.0), k),
            "ece": expected_calibration_error(predicted == y, p.max(axis=1)),
            "rows": float(y.size),
            "auc_classes": float(len(aucs)),
        }
    )
    return out


def regression_metrics(labels: np.ndarray, predictions: np.ndarray) -> dict[str, float]:
    """RMSE, MAE and R² (1 - SSE / total sum of squares; 0 when the labels are constant)."""
    from sklearn.metrics import mean_absolute_error, r2_score, root_mean_squared_error

    y = np.asarray(labels, dtype=np.float64).ravel()
    f = np.asarray(predictions, dtype=np.float64).ravel()
    if y.shape != f.shape:
        raise ValueError(f"{y.size} labels but {f.size} predictions")
    if y.size == 0:
        raise ValueError("regression metrics need at least one holdout row")
    total = float(np.sum((y - y.mean()) ** 2))
    if np.isfinite(f).all() and np.isfinite(y).all():
        rmse = float(root_mean_squared_error(y, f))
        mae = float(mean_absolute_error(y, f))
        # Constant labels (one row, say) give 0 whatever the predictions; sklearn would
        # give 1.0 for an exact fit and NaN below two rows.
        r2 = float(r2_score(y, f)) if total > 0 else 0.0
    else:
        # sklearn refuses NaN and infinities; a diverged model must still get its
        # (non-finite) numbers, which fail every bar, rather than stop the evaluation.
        errors = f - y
        rmse = float(np.sqrt(np.mean(errors**2)))
        mae = float(np.mean(np.abs(errors)))
        r2 = 1.0 - float(np.sum(errors**2)) / total if total > 0 else 0.0
    return {
        "rmse": rmse,
        "mae": mae,
        "r2": r2,
        "rows": float(y.size),
        "label_mean": float(y.mean()),
    }


def task_metrics(
    task: str,
    labels: np.ndarray,
    outputs: np.ndarray,
    *,
    threshold: float = DEFAULT_THRESHOLD,
    strict: bool = True,
) -> dict[str, float]:
    """The holdout metrics of ``task`` (binary, multiclass or regression) for model outputs.

    ``threshold`` is the binary decision threshold; ``strict=False`` leaves out a metric
    the rows cannot define (AUC over one class) instead of raising.
    """
    if task == "binary":
        return binary_metrics(
            labels, np.asarray(outputs).ravel(), threshold=threshold, strict=strict
        )
    if task == "multiclass":
        return multiclass_metrics(labels, outputs, strict=strict)
    if task == "regression":
        return regression_metrics(labels, outputs)
    raise ValueError(f"unknown task {task!r}; use binary, multiclass or regression")


@dataclass(frozen=True)
class SliceMetrics:
    """The metrics of the holdout rows where ``column`` has ``value``."""

    column: str
    value: str
    rows: int
    metrics: dict[str, float] = field(default_factory=dict)

    @property
    def key(self) -> str:
        return f"{self.column}={self.value}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "column": self.column,
            "value": self.value,
            "rows": self.rows,
            "metrics": dict(self.metrics),
        }


def slice_metrics(
    task: str,
    labels: np.ndarray,
    outputs: np.ndarray,
    slices: Mapping[str, np.ndarray],
    *,
    threshold: float = DEFAULT_THRESHOLD,
    max_values: int = MAX_SLICE_VALUES,
) -> tuple[SliceMetrics, ...]:
    """Metrics per value of each slice column (columns in order, values by row count).

    Args:
        task: the label task.
        labels: holdout labels.
        outputs: the model's outputs for those rows.
        slices: column -> one value per holdout row (strings; nulls as ``NULL_SLICE``).
        threshold: the binary decision threshold.
        max_values: a column's most frequent values reported one by one; the rest are
            pooled into one slice named ``(other: N values)``.

    Raises:
        ValueError: a slice column's length differs from the labels'.
    """
    y = np.asarray(labels)
    out_arr = np.asarray(outputs)
    results: list[SliceMetrics] = []
    for column, raw_values in slices.items():
        values = np.asarray(raw_values).astype(str)
        if values.shape[0] != y.shape[0]:
            raise ValueError(
                f"slice column '{column}' has {values.shape[0]} values for {y.shape[0]} labels"
            )
        uniques, inverse, counts = np.unique(values, return_inverse=True, return_counts=True)
        # Largest first; ties by value, so the order is stable from run to run.
        order = sorted(range(uniques.size), key=lambda i: (-int(counts[i]), str(uniques[i])))
        groups = [(str(uniques[i]), inverse == i) for i in order[:max_values]]
        rest = order[max_values:]
        if rest:
            log.warning(
                "slice column %s has %d values; the %d least frequent are pooled",
                column,
                uniques.size,
                len(rest),
            )
            groups.append((f"(other: {len(rest)} values)", np.isin(inverse, rest)))
        for value, mask in groups:
            metrics = task_metrics(task, y[mask], out_arr[mask], threshold=threshold, strict=False)
            results.append(SliceMetrics(column, value, int(mask.sum()), metrics))
    return tuple(results)


@dataclass(frozen=True)
class Evaluation:
    """One model's holdout metrics, overall and per slice."""

    overall: dict[str, float]
    slices: tuple[SliceMetrics, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {"overall": dict(self.overall), "slices": [s.to_dict() for s in self.slices]}


def load_slices(
    partition: Path, spec: DatasetSpec, labels: np.ndarray, *, split: str = "holdout"
) -> dict[str, np.ndarray]:
    """The spec's slice columns for the rows of ``split``, in ``load_arrays``' row order.

    Slice columns need not be features, so they are read from the clean partition
    alongside the label, with the same split filter and file order as
    ``models.tabular.inputs.load_arrays``. As a guard that the rows line up, the label read
    here must equal ``labels`` (what ``load_arrays`` returned).
    Values come back as strings, nulls as ``NULL_SLICE``.

    Raises:
        ConfigError: the partition lacks a slice column.
        StageError: the rows read here do not line up with ``labels``.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    from aimass.data.lake import open_partition
    from aimass.platform.errors import ConfigError, StageError
    from models.tabular.inputs import SPLIT_COLUMN

    if not spec.slices:
        return {}
    dataset = open_partition(partition)
    columns = list(dict.fromkeys([*spec.slices, spec.label_name]))
    missing = [c for c in [*columns, SPLIT_COLUMN] if c not in dataset.schema.names]
    if missing:
        raise ConfigError(
            f"clean partition {partition} lacks columns {missing} needed for the slices "
            f"{list(spec.slices)}; rerun the clean stage with this spec, or fix the spec's slices"
        )
    table = dataset.to_table(columns=columns, filter=pc.field(SPLIT_COLUMN) == split)
    label_type = pa.int64() if spec.is_classification else pa.float64()
    read = pc.cast(table.column(spec.label_name), label_type).to_numpy(zero_copy_only=False)
    expected = np.asarray(labels)
    if read.shape != expected.shape or not np.array_equal(read, expected.astype(read.dtype)):
        raise StageError(
            f"the slice columns read from {partition} do not line up with the {split} rows "
            f"({read.size} rows read, {expected.size} expected); was the partition rewritten "
            "while evaluating? Rerun evaluate_candidate"
        )
    return {
        column: np.asarray(
            pc.fill_null(pc.cast(table.column(column), pa.string()), NULL_SLICE).to_numpy(
                zero_copy_only=False
            ),
            dtype=object,
        )
        for column in spec.slices
    }


def predict(saved_model_dir: Path, features: dict[str, np.ndarray]) -> np.ndarray:
    """The outputs of an exported model (SavedModel ``serving_default``) for holdout arrays."""
    from models.tabular.export import load_predict_fn

    return np.asarray(load_predict_fn(Path(saved_model_dir))(features))


def evaluate(
    saved_model_dir: Path,
    features: dict[str, np.ndarray],
    labels: np.ndarray,
    *,
    task: str,
    threshold: float = DEFAULT_THRESHOLD,
) -> dict[str, float]:
    """Score an exported model (SavedModel ``serving_default``) on holdout arrays."""
    metrics = task_metrics(task, labels, predict(saved_model_dir, features), threshold=threshold)
    _log_metrics(saved_model_dir, metrics)
    return metrics


def evaluate_with_slices(
    saved_model_dir: Path,
    features: dict[str, np.ndarray],
    labels: np.ndarray,
    slices: Mapping[str, np.ndarray],
    *,
    task: str,
    threshold: float = DEFAULT_THRESHOLD,
) -> Evaluation:
    """Score an exported model on holdout arrays, overall and per value of each slice column."""
    outputs = predict(saved_model_dir, features)
    overall = task_metrics(task, labels, outputs, threshold=threshold)
    _log_metrics(saved_model_dir, overall)
    return Evaluation(
        overall=overall,
        slices=slice_metrics(task, labels, outputs, slices, threshold=threshold),
    )


def _log_metrics(saved_model_dir: Path, metrics: dict[str, float]) -> None:
    shown = " ".join(f"{k}={v:.4f}" for k, v in metrics.items() if k != "rows")
    log.info("evaluated %s on %d rows: %s", saved_model_dir, int(metrics["rows"]), shown)
