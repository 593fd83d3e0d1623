"""Model analysis on the holdout: permutation importance, calibration, ROC/PR points, residuals.

Everything here works on arrays and a ``predict(features) -> outputs`` callable, so it runs on
any model with the serving contract (``models.tabular.export.load_predict_fn``) and on plain
functions in tests. The metrics are :func:`aimass.evaluation.metrics.task_metrics`, the ones
the gate uses, so an importance is a drop of the number the gate reads.

- **Permutation importance**: one model input column at a time is shuffled across the rows
  (a fixed seed, ``REPEATS`` shuffles), the model scores the shuffled rows, and the drop of
  the primary metric is reported as mean and standard deviation over the shuffles; a drop is
  positive when the metric gets worse, whichever its direction. The same shuffled outputs
  give the drop on the rows of each slice value. The rows are capped at ``MAX_ROWS``
  (sampled with the seed); the result says how many were used of how many.
- **Calibration** (reliability bins): binary, the positive-class probability against the
  positive rate; multiclass, the top-class probability against the share of rows whose
  top class is right (the same quantity as the ``ece`` metric).
- **ROC and precision-recall points**: binary, of the positive class; multiclass, one
  against the rest per class. Thinned to at most ``CURVE_POINTS`` points each.
- **Residuals** (regression): label minus prediction, in equal-count bins of the predicted
  value: each bin's mean and standard deviation.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from aimass.evaluation.metrics import DEFAULT_THRESHOLD, task_metrics

log = logging.getLogger(__name__)

MAX_ROWS = 5_000
REPEATS = 3
SEED = 42
CALIBRATION_BINS = 10
RESIDUAL_BINS = 10
CURVE_POINTS = 50
# Slice values with fewer sampled rows than this get no importance (too noisy to read).
MIN_SLICE_ROWS = 30
# The most frequent values of a slice column that get their own importance.
MAX_SLICE_VALUES = 10

Predict = Callable[[dict[str, np.ndarray]], np.ndarray]


def sample_rows(rows: int, max_rows: int = MAX_ROWS, seed: int = SEED) -> np.ndarray:
    """Row indices to analyse: all of them, or ``max_rows`` drawn with ``seed`` (sorted)."""
    if rows <= max_rows:
        return np.arange(rows)
    return np.sort(np.random.default_rng(seed).choice(rows, size=max_rows, replace=False))


def metric_value(
    task: str,
    metric: str,
    labels: np.ndarray,
    outputs: np.ndarray,
    *,
    threshold: float = DEFAULT_THRESHOLD,
) -> float | None:
    """``metric`` of ``outputs`` (None when the rows cannot define it, e.g. AUC of one class)."""
    if np.asarray(labels).size == 0:
        return None
    value = task_metrics(task, labels, outputs, threshold=threshold, strict=False).get(metric)
    return None if value is None or not np.isfinite(value) else float(value)


def _drop(base: float | None, shuffled: float | None, larger_is_better: bool) -> float | None:
    if base is None or shuffled is None:
        return None
    return base - shuffled if larger_is_better else shuffled - base


def _summary(drops: list[float | None]) -> dict[str, Any]:
    known = [d for d in drops if d is not None]
    if not known:
        return {"mean": None, "std": None, "drops": []}
    return {
        "mean": float(np.mean(known)),
        "std": float(np.std(known)),
        "drops": [float(d) for d in known],
    }


def _slice_groups(
    slices: Mapping[str, np.ndarray], index: np.ndarray
) -> list[tuple[str, str, np.ndarray]]:
    """(column, value, row mask) of the largest values of each slice column in the sample."""
    groups = []
    for column, values in slices.items():
        sampled = np.asarray(values).astype(str)[index]
        uniques, counts = np.unique(sampled, return_counts=True)
        order = sorted(range(uniques.size), key=lambda i: (-int(counts[i]), str(uniques[i])))
        for i in order[:MAX_SLICE_VALUES]:
            if counts[i] >= MIN_SLICE_ROWS:
                groups.append((column, str(uniques[i]), sampled == uniques[i]))
    return groups


def permutation_importance(
    predict: Predict,
    features: Mapping[str, np.ndarray],
    labels: np.ndarray,
    *,
    task: str,
    metric: str,
    larger_is_better: bool,
    slices: Mapping[str, np.ndarray] | None = None,
    threshold: float = DEFAULT_THRESHOLD,
    repeats: int = REPEATS,
    seed: int = SEED,
    max_rows: int = MAX_ROWS,
) -> dict[str, Any]:
    """The drop of ``metric`` when each column of ``features`` is shuffled, overall and by slice.

    Args:
        predict: the model: a dict of column arrays to outputs.
        features: the model inputs, column -> one value per row (whatever columns they are).
        labels: one label per row.
        task: binary, multiclass or regression.
        metric: the metric whose drop is the importance (the spec's primary metric).
        larger_is_better: the metric's direction; a drop is positive when the model gets worse.
        slices: column -> one value per row; each frequent value gets its own drops.
        threshold, repeats, seed, max_rows: the decision threshold, shuffles per column, the
            seed of the sample and the shuffles, and the cap on rows.

    Returns:
        ``{"metric", "larger_is_better", "baseline", "rows_used", "rows_total", "repeats",
        "seed", "sampled", "features": [{"feature", "mean", "std", "drops"}] (largest mean
        first), "slices": [{"column", "value", "rows", "baseline", "features": [...]}]}``.

    Raises:
        ValueError: no rows, no columns, or columns of different lengths.
    """
    y = np.asarray(labels)
    if not features:
        raise ValueError("permutation importance needs at least one model input column")
    lengths = {name: len(values) for name, values in features.items()}
    if set(lengths.values()) != {y.shape[0]} or y.shape[0] == 0:
        raise ValueError(f"{y.shape[0]} labels but model input lengths {lengths}")
    index = sample_rows(y.shape[0], max_rows, seed)
    sample = {name: np.asarray(values)[index] for name, values in features.items()}
    y = y[index]
    groups = _slice_groups(slices or {}, index)

    def scores(outputs: np.ndarray) -> tuple[float | None, list[float | None]]:
        overall = metric_value(task, metric, y, outputs, threshold=threshold)
        by_slice = [
            metric_value(task, metric, y[mask], outputs[mask], threshold=threshold)
            for _, _, mask in groups
        ]
        return overall, by_slice

    base, base_slices = scores(np.asarray(predict(sample)))
    rng = np.random.default_rng(seed)
    overall: dict[str, list[float | None]] = {}
    per_slice: dict[str, list[list[float | None]]] = {}
    for name in sample:
        overall[name], per_slice[name] = [], [[] for _ in groups]
        for _ in range(repeats):
            shuffled = dict(sample)
            shuffled[name] = sample[name][rng.permutation(len(index))]
            value, values = scores(np.asarray(predict(shuffled)))
            overall[name].append(_drop(base, value, larger_is_better))
            for k, v in enumerate(values):
                per_slice[name][k].append(_drop(base_slices[k], v, larger_is_better))

    def ranked(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return sorted(rows, key=lambda r: -(r["mean"] if r["mean"] is not None else -np.inf))

    return {
        "metric": metric,
        "larger_is_better": larger_is_better,
        "baseline": base,
        "rows_used": int(index.size),
        "rows_total": int(len(labels)),
        "sampled": bool(index.size < len(labels)),
        "repeats": repeats,
        "seed": seed,
        "features": ranked([{"feature": n, **_summary(d)} for n, d in overall.items()]),
        "slices": [
            {
                "column": column,
                "value": value,
                "rows": int(mask.sum()),
                "baseline": base_slices[k],
                "features": ranked([{"feature": n, **_summary(per_slice[n][k])} for n in sample]),
            }
            for k, (column, value, mask) in enumerate(groups)
        ],
    }


def reliability_bins(
    outcomes: np.ndarray, confidences: np.ndarray, *, bins: int = CALIBRATION_BINS
) -> list[dict[str, Any]]:
    """Equal-width bins of [0, 1] as ``metrics.expected_calibration_error`` cuts them.

    Each non-empty bin: ``{"lo", "hi", "rows", "mean_predicted", "observed"}`` (the mean
    confidence and the share of outcomes that happened); a perfectly calibrated scorer has
    ``observed == mean_predicted`` in every bin.
    """
    hit = np.asarray(outcomes, dtype=np.float64).ravel()
    conf = np.clip(np.asarray(confidences, dtype=np.float64).ravel(), 0.0, 1.0)
    if hit.shape != conf.shape:
        raise ValueError(f"{hit.size} outcomes but {conf.size} confidences")
    index = np.minimum((conf * bins).astype(np.int64), bins - 1)
    out = []
    for k in range(bins):
        mask = index == k
        n = int(mask.sum())
        if n:
            out.append(
                {
                    "lo": k / bins,
                    "hi": (k + 1) / bins,
                    "rows": n,
                    "mean_predicted": float(conf[mask].mean()),
                    "observed": float(hit[mask].mean()),
                }
            )
    return out


def calibration(task: str, labels: np.ndarray, outputs: np.ndarray) -> dict[str, Any]:
    """The reliability bins of a classifier's outputs, and what they are of."""
    y = np.asarray(labels).ravel()
    p = np.asarray(outputs, dtype=np.float64)
    if task == "binary":
        return {
            "of": "probability of the positive class",
            "bins": reliability_bins(y >= 0.5, p.ravel()),
        }
    if task == "multiclass":
        return {
            "of": "top-class probability (outcome: the top class is the true one)",
            "bins": reliability_bins(p.argmax(axis=1) == y.astype(np.int64), p.max(axis=1)),
        }
    raise ValueError(f"calibration is for classification; the task is {task!r}")


def _thin(*columns: np.ndarray, points: int = CURVE_POINTS) -> list[np.ndarray]:
    """Every column cut to at most ``points`` evenly spaced entries, the ends kept."""
    n = columns[0].size
    if n <= points:
        return list(columns)
    keep = np.unique(np.linspace(0, n - 1, points).round().astype(np.int64))
    return [c[keep] for c in columns]


def roc_points(positive: np.ndarray, scores: np.ndarray) -> list[dict[str, float]] | None:
    """(false positive rate, true positive rate, threshold) points; None with one class."""
    from sklearn.metrics import roc_curve

    truth = np.asarray(positive, dtype=bool).ravel()
    if truth.all() or not truth.any():
        return None
    fpr, tpr, thresholds = roc_curve(truth, np.asarray(scores, dtype=np.float64).ravel())
    thresholds = np.minimum(thresholds, 1.0)  # sklearn's first threshold is +inf
    fpr, tpr, thresholds = _thin(fpr, tpr, thresholds)
    return [
        {"fpr": float(a), "tpr": float(b), "threshold": float(t)}
        for a, b, t in zip(fpr, tpr, thresholds, strict=True)
    ]


def pr_points(positive: np.ndarray, scores: np.ndarray) -> list[dict[str, float]] | None:
    """(recall, precision, threshold) points, recall rising; None without a positive row."""
    from sklearn.metrics import precision_recall_curve

    truth = np.asarray(positive, dtype=bool).ravel()
    if not truth.any():
        return None
    precision, recall, thresholds = precision_recall_curve(
        truth, np.asarray(scores, dtype=np.float64).ravel()
    )
    # sklearn gives recall falling, with a last point (recall 0, precision 1) that has no
    # threshold; reversed, the curve starts there and rises.
    thresholds = np.append(thresholds, 1.0)
    recall, precision, thresholds = _thin(recall[::-1], precision[::-1], thresholds[::-1])
    return [
        {"recall": float(r), "precision": float(p), "threshold": float(t)}
        for r, p, t in zip(recall, precision, thresholds, strict=True)
    ]


def curves(
    task: str, labels: np.ndarray, outputs: np.ndarray, classes: tuple[str, ...] = ()
) -> list[dict[str, Any]]:
    """ROC and precision-recall points: the positive class, or each class against the rest."""
    y = np.asarray(labels).ravel()
    p = np.asarray(outputs, dtype=np.float64)
    if task == "binary":
        targets = [("positive class", y >= 0.5, p.ravel())]
    elif task == "multiclass":
        names = classes or tuple(str(c) for c in range(p.shape[1]))
        targets = [(f"{names[c]} vs rest", y == c, p[:, c]) for c in range(p.shape[1])]
    else:
        raise ValueError(f"ROC and PR points are for classification; the task is {task!r}")
    out = []
    for name, truth, scores in targets:
        out.append(
            {
                "of": name,
                "positives": int(np.count_nonzero(truth)),
                "roc": roc_points(truth, scores),
                "pr": pr_points(truth, scores),
            }
        )
    return out


def residuals_by_prediction(
    labels: np.ndarray, predictions: np.ndarray, *, bins: int = RESIDUAL_BINS
) -> list[dict[str, Any]]:
    """Residuals (label - prediction) in equal-count bins of the predicted value.

    Each bin: ``{"lo", "hi", "rows", "mean_predicted", "mean_residual", "std_residual"}``;
    rows with a non-finite prediction or label are left out.
    """
    y = np.asarray(labels, dtype=np.float64).ravel()
    f = np.asarray(predictions, dtype=np.float64).ravel()
    if y.shape != f.shape:
        raise ValueError(f"{y.size} labels but {f.size} predictions")
    finite = np.isfinite(y) & np.isfinite(f)
    y, f = y[finite], f[finite]
    if y.size == 0:
        return []
    order = np.argsort(f, kind="stable")
    out = []
    for chunk in np.array_split(order, min(bins, y.size)):
        residual = y[chunk] - f[chunk]
        out.append(
            {
                "lo": float(f[chunk].min()),
                "hi": float(f[chunk].max()),
                "rows": int(chunk.size),
                "mean_predicted": float(f[chunk].mean()),
                "mean_residual": float(residual.mean()),
                "std_residual": float(residual.std()),
            }
        )
    return out


def analyze(
    predict: Predict,
    features: Mapping[str, np.ndarray],
    labels: np.ndarray,
    *,
    task: str,
    metric: str,
    larger_is_better: bool,
    slices: Mapping[str, np.ndarray] | None = None,
    threshold: float = DEFAULT_THRESHOLD,
    classes: tuple[str, ...] = (),
    max_rows: int = MAX_ROWS,
    repeats: int = REPEATS,
) -> dict[str, Any]:
    """Every part of the analysis; a part that fails is named in ``missing`` with its error.

    Returns ``{"task", "rows", "model_inputs", "importance", "calibration", "curves",
    "residuals", "missing": {part: reason}}``; a part that does not apply to the task (or
    failed) is None.
    """
    out: dict[str, Any] = {
        "task": task,
        "rows": int(len(labels)),
        "model_inputs": list(features),
        "importance": None,
        "calibration": None,
        "curves": None,
        "residuals": None,
        "missing": {},
    }

    def part(name: str, compute: Callable[[], Any]) -> None:
        try:
            out[name] = compute()
        except Exception as exc:  # one part failing leaves the others (and the deploy) be
            log.warning("model analysis: %s failed: %s", name, exc, exc_info=True)
            out["missing"][name] = f"{type(exc).__name__}: {exc}"

    outputs: np.ndarray | None = None

    def predicted() -> np.ndarray:
        return np.asarray(predict(dict(features)))

    try:
        outputs = predicted()
    except Exception as exc:
        log.warning("model analysis: the model could not score the holdout: %s", exc)
        for name in ("calibration", "curves", "residuals"):
            out["missing"][name] = f"the model could not score the holdout: {exc}"
    part(
        "importance",
        lambda: permutation_importance(
            predict,
            features,
            labels,
            task=task,
            metric=metric,
            larger_is_better=larger_is_better,
            slices=slices,
            threshold=threshold,
            max_rows=max_rows,
            repeats=repeats,
        ),
    )
    if outputs is not None:
        scored = outputs
        if task == "regression":
            part("residuals", lambda: residuals_by_prediction(labels, scored))
        else:
            part("calibration", lambda: calibration(task, labels, scored))
            part("curves", lambda: curves(task, labels, scored, classes))
    return out
