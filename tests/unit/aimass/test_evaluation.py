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
