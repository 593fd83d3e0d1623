"""Holdout metrics for a SavedModel: AUC, accuracy and log loss, computed with numpy."""

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


def evaluate(
    saved_model_dir: Path, features: dict[str, np.ndarray], labels: np.ndarray
) -> dict[str, float]:
    """Score a exported model (SavedModel ``serving_default``) on holdout arrays."""
    from models.tabular.export import load_predict_fn

    predict = load_predict_fn(Path(saved_model_dir))
    probabilities = np.asarray(predict(features)).ravel()
    metrics = binary_metrics(labels, probabilities)
    log.info(
        "evaluated %s on %d rows: auc=%.4f accuracy=%.4f log_loss=%.4f",
        saved_model_dir,
        int(metrics["rows"]),
        metrics["auc"],
        metrics["accuracy"],
        metrics["log_loss"],
    )
    return metrics
