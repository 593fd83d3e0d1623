"""The vocabulary every spec section shares: column types, source formats, tasks, metrics."""

from __future__ import annotations

DTYPES = ("string", "long", "double")
SOURCE_FORMATS = ("csv", "parquet")
TASKS = ("binary", "multiclass", "regression")
BINARY, MULTICLASS, REGRESSION = TASKS
# Holdout metrics by task and whether larger is better (the gate's bars name these).
CLASSIFICATION_METRICS = {
    "auc": True,
    "accuracy": True,
    "precision": True,
    "recall": True,
    "log_loss": False,
    "ece": False,
}
REGRESSION_METRICS = {"rmse": False, "mae": False, "r2": True}
METRICS = {
    BINARY: CLASSIFICATION_METRICS,
    MULTICLASS: CLASSIFICATION_METRICS,
    REGRESSION: REGRESSION_METRICS,
}
# The metric a summary leads with.
PRIMARY_METRIC = {BINARY: "auc", MULTICLASS: "accuracy", REGRESSION: "rmse"}
