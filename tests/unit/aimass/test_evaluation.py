from __future__ import annotations

import numpy as np
import pytest

from aimass.evaluation.metrics import binary_metrics, roc_auc

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

    from aimass.evaluation.metrics import multiclass_metrics

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
    from aimass.evaluation.metrics import multiclass_metrics

    with pytest.raises(ValueError, match=r"need \[rows, classes\]"):
        multiclass_metrics(np.array([0, 1]), np.array([0.2, 0.8]))
    with pytest.raises(ValueError, match="class indices 0..1"):
        multiclass_metrics(np.array([0, 2]), np.full((2, 2), 0.5))


def test_regression_metrics_match_sklearn() -> None:
    from sklearn.metrics import mean_absolute_error, mean_squared_error, r2_score

    from aimass.evaluation.metrics import regression_metrics

    rng = np.random.default_rng(2)
    labels = rng.normal(4000, 800, 300)
    preds = labels + rng.normal(0, 300, 300)
    got = regression_metrics(labels, preds)
    assert got["rmse"] == pytest.approx(np.sqrt(mean_squared_error(labels, preds)))
    assert got["mae"] == pytest.approx(mean_absolute_error(labels, preds))
    assert got["r2"] == pytest.approx(r2_score(labels, preds))


def test_task_metrics_dispatches_by_task() -> None:
    from aimass.evaluation.metrics import task_metrics

    assert "r2" in task_metrics("regression", np.array([1.0, 2.0]), np.array([1.0, 2.5]))
    assert "auc" in task_metrics("binary", np.array([0, 1]), np.array([0.3, 0.7]))
    with pytest.raises(ValueError, match="unknown task"):
        task_metrics("ranking", np.array([1]), np.array([1]))


def _binary_sample(n: int = 600, seed: int = 3) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, n)
    probs = np.clip(rng.random(n) * 0.7 + labels * 0.25, 0.0, 1.0)
    return labels, probs


@pytest.mark.parametrize("threshold", [0.5, 0.3, 0.8])
def test_binary_precision_recall_accuracy_at_the_threshold_match_sklearn(
    threshold: float,
) -> None:
    from sklearn.metrics import accuracy_score, precision_score, recall_score

    labels, probs = _binary_sample()
    predicted = (probs >= threshold).astype(int)
    got = binary_metrics(labels, probs, threshold=threshold)
    assert got["precision"] == pytest.approx(precision_score(labels, predicted))
    assert got["recall"] == pytest.approx(recall_score(labels, predicted))
    assert got["accuracy"] == pytest.approx(accuracy_score(labels, predicted))


def test_binary_precision_with_no_positive_prediction_is_zero() -> None:
    got = binary_metrics(np.array([0, 1, 1]), np.array([0.1, 0.2, 0.3]), threshold=0.9)
    assert got["precision"] == 0.0 and got["recall"] == 0.0


def test_binary_threshold_outside_the_unit_interval_is_an_error() -> None:
    with pytest.raises(ValueError, match=r"threshold must be in \(0, 1\)"):
        binary_metrics(np.array([0, 1]), np.array([0.2, 0.8]), threshold=1.0)


def _ece_reference(outcomes: np.ndarray, confidences: np.ndarray) -> float:
    """ECE from sklearn's reliability curve (10 uniform bins), weighted by bin counts."""
    from sklearn.calibration import calibration_curve

    prob_true, prob_pred = calibration_curve(outcomes, confidences, n_bins=10, strategy="uniform")
    counts, _ = np.histogram(confidences, bins=np.linspace(0.0, 1.0, 11))
    weights = counts[counts > 0] / confidences.size
    return float(np.sum(weights * np.abs(prob_true - prob_pred)))


def test_binary_ece_matches_sklearns_calibration_curve() -> None:
    labels, probs = _binary_sample(2000, seed=4)
    assert binary_metrics(labels, probs)["ece"] == pytest.approx(_ece_reference(labels, probs))


def test_multiclass_ece_is_over_the_top_class_confidence() -> None:
    from aimass.evaluation.metrics import multiclass_metrics

    rng = np.random.default_rng(5)
    labels = rng.integers(0, 3, 1500)
    logits = rng.normal(size=(1500, 3)) + np.eye(3)[labels]
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    correct = (probs.argmax(axis=1) == labels).astype(int)
    expected = _ece_reference(correct, probs.max(axis=1))
    assert multiclass_metrics(labels, probs)["ece"] == pytest.approx(expected)


def test_ece_by_hand() -> None:
    from aimass.evaluation.metrics import expected_calibration_error

    # Always 90 % sure and always right: 0.1 off. Half the rows at 0.25 with a quarter
    # positive, half at 0.75 with three quarters: perfectly calibrated.
    assert expected_calibration_error(np.ones(10), np.full(10, 0.9)) == pytest.approx(0.1)
    outcomes = np.array([1, 0, 0, 0, 1, 1, 1, 0])
    confidences = np.array([0.25] * 4 + [0.75] * 4)
    assert expected_calibration_error(outcomes, confidences) == pytest.approx(0.0)
    # 1.0 falls in the last bin, not an eleventh one.
    assert expected_calibration_error(np.array([1]), np.array([1.0])) == pytest.approx(0.0)
    with pytest.raises(ValueError, match="at least one row"):
        expected_calibration_error(np.array([]), np.array([]))


def test_multiclass_macro_precision_recall_match_sklearn() -> None:
    from sklearn.metrics import precision_score, recall_score

    from aimass.evaluation.metrics import multiclass_metrics

    rng = np.random.default_rng(6)
    labels = rng.integers(0, 4, 500)
    logits = rng.normal(size=(500, 4)) + np.eye(4)[labels] * 1.2
    logits[:, 3] -= 5.0  # class 3 is never the arg-max: its precision is 0 (zero_division=0)
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    predicted = probs.argmax(axis=1)
    assert 3 not in predicted
    got = multiclass_metrics(labels, probs)
    kwargs = {"average": "macro", "zero_division": 0}
    assert got["precision"] == pytest.approx(precision_score(labels, predicted, **kwargs))
    assert got["recall"] == pytest.approx(recall_score(labels, predicted, **kwargs))


def test_non_strict_metrics_leave_out_an_undefined_auc() -> None:
    from aimass.evaluation.metrics import multiclass_metrics, task_metrics

    one_class = task_metrics("binary", np.ones(5), np.full(5, 0.7), strict=False)
    assert "auc" not in one_class and one_class["recall"] == 1.0 and one_class["rows"] == 5
    probs = np.tile([0.7, 0.2, 0.1], (4, 1))
    assert "auc" not in multiclass_metrics(np.zeros(4), probs, strict=False)
    with pytest.raises(ValueError, match="two classes"):
        multiclass_metrics(np.zeros(4), probs)


def test_slice_metrics_are_the_metrics_of_each_value_s_rows() -> None:
    from aimass.evaluation.metrics import slice_metrics, task_metrics

    labels, probs = _binary_sample(300, seed=7)
    region = np.array(["north"] * 200 + ["south"] * 90 + ["east"] * 10, dtype=object)
    got = slice_metrics("binary", labels, probs, {"region": region}, threshold=0.4)
    assert [(s.column, s.value, s.rows) for s in got] == [
        ("region", "north", 200),
        ("region", "south", 90),
        ("region", "east", 10),
    ]
    south = got[1]
    expected = task_metrics("binary", labels[200:290], probs[200:290], threshold=0.4)
    assert south.metrics == pytest.approx(expected)
    assert south.key == "region=south" and south.to_dict()["rows"] == 90


def test_a_single_class_slice_is_reported_without_auc() -> None:
    from aimass.evaluation.metrics import slice_metrics

    labels = np.array([0, 1, 0, 1, 1, 1])
    probs = np.array([0.2, 0.8, 0.3, 0.6, 0.9, 0.7])
    slices = {"kind": np.array(["a", "a", "a", "a", "b", "b"], dtype=object)}
    a, b = slice_metrics("binary", labels, probs, slices)
    assert "auc" in a.metrics and "auc" not in b.metrics
    assert b.metrics["accuracy"] == 1.0 and b.rows == 2


def test_rare_slice_values_beyond_the_limit_are_pooled() -> None:
    from aimass.evaluation.metrics import slice_metrics

    labels = np.array([1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
    preds = labels + 0.5
    values = np.array(["x", "x", "x", "y", "y", "z"], dtype=object)
    got = slice_metrics("regression", labels, preds, {"c": values}, max_values=1)
    assert [(s.value, s.rows) for s in got] == [("x", 3), ("(other: 2 values)", 3)]
    assert got[1].metrics["mae"] == pytest.approx(0.5)


def test_slice_length_mismatch_is_an_error() -> None:
    from aimass.evaluation.metrics import slice_metrics

    with pytest.raises(ValueError, match="slice column 'c' has 2 values for 3 labels"):
        slice_metrics("regression", np.ones(3), np.ones(3), {"c": np.array(["a", "b"])})


def _taxi_spec_with_slices(*slices: str):  # type: ignore[no-untyped-def]
    import dataclasses

    from aimass.data.spec import load_spec
    from aimass.platform.settings import REPO_ROOT

    spec = load_spec(REPO_ROOT / "conf" / "datasets" / "chicago_taxi.yaml")
    # Per-slice bars need slice columns: without any, keep only the overall bars.
    gate = spec.gate if slices else dataclasses.replace(spec.gate, max_slice_regression=())
    return dataclasses.replace(spec, slices=slices, gate=gate)


def _write_partition(path, columns: dict) -> None:  # type: ignore[no-untyped-def]
    import pyarrow as pa
    import pyarrow.parquet as pq

    path.mkdir(parents=True)
    table = pa.table(columns)
    half = table.num_rows // 2
    # Two files: the row order must follow the sorted file order, as load_arrays reads it.
    pq.write_table(table.slice(0, half), path / "part-00000.parquet")
    pq.write_table(table.slice(half), path / "part-00001.parquet")


def test_load_slices_reads_non_feature_columns_in_holdout_order(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from aimass.evaluation.metrics import NULL_SLICE, load_slices

    spec = _taxi_spec_with_slices("payment_type", "tips")  # tips is not a feature
    assert "tips" not in spec.features
    partition = tmp_path / "ds=2026-11-25"
    _write_partition(
        partition,
        {
            "payment_type": ["Cash", None, "Credit Card", "Cash", "Cash", "Credit Card"],
            "tips": [0.0, 1.5, 2.0, None, 3.0, 0.0],
            "big_tipper": [0, 1, 1, 0, 1, 0],
            "split": ["holdout", "train", "holdout", "holdout", "train", "holdout"],
        },
    )
    slices = load_slices(partition, spec, np.array([0, 1, 0, 0]))
    assert list(slices) == ["payment_type", "tips"]
    assert list(slices["payment_type"]) == ["Cash", "Credit Card", "Cash", "Credit Card"]
    assert list(slices["tips"]) == ["0", "2", NULL_SLICE, "0"]


def test_load_slices_refuses_rows_that_do_not_line_up(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from aimass.evaluation.metrics import load_slices
    from aimass.platform.errors import ConfigError, StageError

    spec = _taxi_spec_with_slices("payment_type")
    partition = tmp_path / "p"
    _write_partition(
        partition,
        {
            "payment_type": ["Cash", "Cash"],
            "big_tipper": [0, 1],
            "split": ["holdout", "holdout"],
        },
    )
    with pytest.raises(StageError, match="do not line up"):
        load_slices(partition, spec, np.array([1, 0]))
    assert load_slices(partition, _taxi_spec_with_slices(), np.array([0, 1])) == {}
    with pytest.raises(ConfigError, match=r"lacks columns \['company'\]"):
        load_slices(partition, _taxi_spec_with_slices("company"), np.array([0, 1]))


def test_evaluate_with_slices_scores_overall_and_per_slice(
    monkeypatch: pytest.MonkeyPatch, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    from aimass.evaluation import metrics as evaluation

    labels, probs = _binary_sample(100, seed=8)
    monkeypatch.setattr(evaluation, "predict", lambda _dir, _features: probs)
    slices = {"half": np.array(["a"] * 50 + ["b"] * 50, dtype=object)}
    result = evaluation.evaluate_with_slices(
        tmp_path, {}, labels, slices, task="binary", threshold=0.6
    )
    assert result.overall == pytest.approx(binary_metrics(labels, probs, threshold=0.6))
    assert [s.key for s in result.slices] == ["half=a", "half=b"]
    assert result.to_dict()["slices"][0]["rows"] == 50
