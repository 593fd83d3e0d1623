"""Holdout metrics for a SavedModel, computed with numpy, by label task.

- binary: AUC, accuracy at 0.5, log loss (plus the positive rate);
- multiclass: macro one-vs-rest AUC, accuracy of the arg-max class, log loss;
- regression: RMSE, MAE and R².

Every result also has ``rows``. The names match ``aimass.spec.METRICS``, which the gate's
bars refer to.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

EPS = 1e-7


def roc_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve (Mann-Whitney U with average ranks for ties).

    Raises:
        ValueError: when the labels hold a single class (AUC is undefined).
    """
    labels = np.asarray(labels).astype(bool).ravel()
    scores = np.asarray(scores, dtype=np.float64).ravel()
    n_pos = int(labels.sum())
    n_neg = labels.size - n_pos
    if n_pos == 0 or n_neg == 0:
        raise ValueError(
            f"AUC needs both classes in the holdout; got {n_pos} positive and {n_neg} negative rows"
        )
    order = np.argsort(scores, kind="mergesort")
    sorted_scores = scores[order]
    ranks = np.empty(scores.size, dtype=np.float64)
    # average ranks over runs of equal scores
    _, first, counts = np.unique(sorted_scores, return_index=True, return_counts=True)
    avg = first + (counts - 1) / 2.0 + 1.0
    ranks[order] = np.repeat(avg, counts)
    return float((ranks[labels].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def binary_metrics(
    labels: np.ndarray, probabilities: np.ndarray, *, threshold: float = 0.5
) -> dict[str, float]:
    """AUC, accuracy (at ``threshold``) and log loss of positive-class probabilities."""
    y = np.asarray(labels, dtype=np.float64).ravel()
    p = np.clip(np.asarray(probabilities, dtype=np.float64).ravel(), EPS, 1 - EPS)
    if y.shape != p.shape:
        raise ValueError(f"{y.size} labels but {p.size} predictions")
    return {
        "auc": roc_auc(y, p),
        "accuracy": float(np.mean((p >= threshold) == (y >= 0.5))),
        "log_loss": float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p))),
        "rows": float(y.size),
        "positive_rate": float(y.mean()),
    }


def multiclass_metrics(labels: np.ndarray, probabilities: np.ndarray) -> dict[str, float]:
    """Macro one-vs-rest AUC, accuracy and log loss of per-class probabilities ``[rows, K]``.

    The AUC averages the classes that have both positive and negative rows in the
    holdout (a class absent from it has no AUC); ``auc_classes`` says how many.
    """
    y = np.asarray(labels).astype(np.int64).ravel()
    p = np.asarray(probabilities, dtype=np.float64)
    if p.ndim != 2 or p.shape[0] != y.size:
        raise ValueError(
            f"{y.size} labels but predictions of shape {p.shape}; need [rows, classes]"
        )
    k = p.shape[1]
    if y.size and (y.min() < 0 or y.max() >= k):
        raise ValueError(f"labels must be class indices 0..{k - 1}; got {y.min()}..{y.max()}")
    aucs = [roc_auc(y == c, p[:, c]) for c in range(k) if 0 < int((y == c).sum()) < y.size]
    if not aucs:
        raise ValueError("AUC needs at least two classes in the holdout")
    chosen = np.clip(p[np.arange(y.size), y], EPS, 1.0)
    return {
        "auc": float(np.mean(aucs)),
        "accuracy": float(np.mean(p.argmax(axis=1) == y)),
        "log_loss": float(-np.mean(np.log(chosen))),
        "rows": float(y.size),
        "auc_classes": float(len(aucs)),
    }


def regression_metrics(labels: np.ndarray, predictions: np.ndarray) -> dict[str, float]:
    """RMSE, MAE and R² (1 - SSE / total sum of squares; 0 when the labels are constant)."""
    y = np.asarray(labels, dtype=np.float64).ravel()
    f = np.asarray(predictions, dtype=np.float64).ravel()
    if y.shape != f.shape:
        raise ValueError(f"{y.size} labels but {f.size} predictions")
    if y.size == 0:
        raise ValueError("regression metrics need at least one holdout row")
    errors = f - y
    total = float(np.sum((y - y.mean()) ** 2))
    return {
        "rmse": float(np.sqrt(np.mean(errors**2))),
        "mae": float(np.mean(np.abs(errors))),
        "r2": 1.0 - float(np.sum(errors**2)) / total if total > 0 else 0.0,
        "rows": float(y.size),
        "label_mean": float(y.mean()),
    }


def task_metrics(task: str, labels: np.ndarray, outputs: np.ndarray) -> dict[str, float]:
    """The holdout metrics of ``task`` (binary, multiclass or regression) for model outputs."""
    if task == "binary":
        return binary_metrics(labels, np.asarray(outputs).ravel())
    if task == "multiclass":
        return multiclass_metrics(labels, outputs)
    if task == "regression":
        return regression_metrics(labels, outputs)
    raise ValueError(f"unknown task {task!r}; use binary, multiclass or regression")


def evaluate(
    saved_model_dir: Path, features: dict[str, np.ndarray], labels: np.ndarray, *, task: str
) -> dict[str, float]:
    """Score an exported model (SavedModel ``serving_default``) on holdout arrays."""
    from models.tabular.export import load_predict_fn

    predict = load_predict_fn(Path(saved_model_dir))
    metrics = task_metrics(task, labels, np.asarray(predict(features)))
    shown = " ".join(f"{k}={v:.4f}" for k, v in metrics.items() if k != "rows")
    log.info("evaluated %s on %d rows: %s", saved_model_dir, int(metrics["rows"]), shown)
    return metrics
