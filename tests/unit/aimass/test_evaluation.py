from __future__ import annotations

import numpy as np
import pytest

from aimass.evaluation import binary_metrics, roc_auc

pytestmark = pytest.mark.unit


def test_auc_matches_sklearn_with_ties() -> None:
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 500)
    scores = np.round(rng.random(500) * 0.5 + labels * 0.3, 1)  # heavy ties
    assert roc_auc(labels, scores) == pytest.approx(roc_auc_score(labels, scores))


def test_auc_perfect_and_inverted() -> None:
    labels = np.array([0, 0, 1, 1])
    assert roc_auc(labels, np.array([0.1, 0.2, 0.8, 0.9])) == 1.0
    assert roc_auc(labels, np.array([0.9, 0.8, 0.2, 0.1])) == 0.0


def test_auc_single_class_is_an_error() -> None:
    with pytest.raises(ValueError, match="both classes"):
        roc_auc(np.ones(4), np.array([0.1, 0.2, 0.3, 0.4]))


def test_binary_metrics_accuracy_and_log_loss() -> None:
    labels = np.array([1, 0, 1, 0])
    probs = np.array([0.9, 0.1, 0.4, 0.6])
    m = binary_metrics(labels, probs)
    assert m["accuracy"] == 0.5
    expected = -np.mean(np.log([0.9, 0.9, 0.4, 0.4]))
    assert m["log_loss"] == pytest.approx(expected)
    assert m["rows"] == 4


def test_length_mismatch_is_an_error() -> None:
    with pytest.raises(ValueError, match="3 labels but 2"):
        binary_metrics(np.array([1, 0, 1]), np.array([0.5, 0.5]))


def test_multiclass_metrics_match_sklearn() -> None:
    from sklearn.metrics import accuracy_score, log_loss, roc_auc_score

    from aimass.evaluation import multiclass_metrics

    rng = np.random.default_rng(1)
    labels = rng.integers(0, 3, 400)
    logits = rng.normal(size=(400, 3)) + np.eye(3)[labels] * 1.5
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)

    got = multiclass_metrics(labels, probs)
    assert got["auc"] == pytest.approx(roc_auc_score(labels, probs, multi_class="ovr"))
    assert got["accuracy"] == pytest.approx(accuracy_score(labels, probs.argmax(axis=1)))
    assert got["log_loss"] == pytest.approx(log_loss(labels, probs), rel=1e-6)
    assert got["rows"] == 400 and got["auc_classes"] == 3


def test_multiclass_metrics_reject_bad_shapes_and_labels() -> None:
    from aimass.evaluation import multiclass_metrics

    with pytest.raises(ValueError, match=r"need \[rows, classes\]"):
        multiclass_metrics(np.array([0, 1]), np.array([0.2, 0.8]))
    with pytest.raises(ValueError, match="class indices 0..1"):
        multiclass_metrics(np.array([0, 2]), np.full((2, 2), 0.5))


def test_regression_metrics_match_sklearn() -> None:
    from sklearn.metrics import mean_absolute_error, mean_squared_error, r2_score

    from aimass.evaluation import regression_metrics

    rng = np.random.default_rng(2)
    labels = rng.normal(4000, 800, 300)
    preds = labels + rng.normal(0, 300, 300)
    got = regression_metrics(labels, preds)
    assert got["rmse"] == pytest.approx(np.sqrt(mean_squared_error(labels, preds)))
    assert got["mae"] == pytest.approx(mean_absolute_error(labels, preds))
    assert got["r2"] == pytest.approx(r2_score(labels, preds))


def test_task_metrics_dispatches_by_task() -> None:
    from aimass.evaluation import task_metrics

    assert "r2" in task_metrics("regression", np.array([1.0, 2.0]), np.array([1.0, 2.5]))
    assert "auc" in task_metrics("binary", np.array([0, 1]), np.array([0.3, 0.7]))
    with pytest.raises(ValueError, match="unknown task"):
        task_metrics("ranking", np.array([1]), np.array([1]))
