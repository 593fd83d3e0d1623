"""Model analysis against hand-computed cases: calibration bins, importance, curves, residuals.

The "models" are plain functions of the input columns, so what a column is worth to the model
is known exactly: a column the function never reads must get an importance of exactly 0, one
it decides on must cost the metric a clear drop when shuffled.
"""

from __future__ import annotations

import numpy as np
import pytest

from aimass.evaluation.analysis import (
    analyze,
    calibration,
    curves,
    permutation_importance,
    reliability_bins,
    residuals_by_prediction,
    roc_points,
    sample_rows,
)
from aimass.evaluation.metrics import expected_calibration_error, roc_auc

pytestmark = pytest.mark.unit


def _calibrated() -> tuple[np.ndarray, np.ndarray]:
    """20 rows at 0.15 with 3 positive, 20 at 0.45 with 9, 20 at 0.85 with 17: rate = score."""
    scores = np.repeat([0.15, 0.45, 0.85], 20)
    labels = np.zeros(60, dtype=np.int64)
    for start, positives in ((0, 3), (20, 9), (40, 17)):
        labels[start : start + positives] = 1
    return labels, scores


def test_a_perfectly_calibrated_scorer_lies_on_the_diagonal() -> None:
    labels, scores = _calibrated()
    bins = reliability_bins(labels, scores)
    assert [(b["lo"], b["hi"], b["rows"]) for b in bins] == [
        (0.1, 0.2, 20),
        (0.4, 0.5, 20),
        (0.8, 0.9, 20),
    ]
    for b in bins:
        assert b["observed"] == pytest.approx(b["mean_predicted"], abs=1e-12)
    assert expected_calibration_error(labels, scores) == pytest.approx(0.0, abs=1e-12)
    assert calibration("binary", labels, scores)["bins"] == bins


def test_an_overconfident_scorer_is_off_the_diagonal() -> None:
    labels, _ = _calibrated()
    bins = reliability_bins(labels, np.full(60, 0.95))
    # 3 + 9 + 17 = 29 of 60 rows are positive, whatever the 0.95 claims
    assert bins == [
        {
            "lo": 0.9,
            "hi": 1.0,
            "rows": 60,
            "mean_predicted": pytest.approx(0.95),
            "observed": 29 / 60,
        }
    ]


def test_multiclass_calibration_is_of_the_top_class() -> None:
    probabilities = np.array([[0.7, 0.2, 0.1], [0.7, 0.2, 0.1], [0.1, 0.3, 0.6], [0.2, 0.2, 0.6]])
    labels = np.array([0, 1, 2, 2])  # top class right in rows 0, 2 and 3
    result = calibration("multiclass", labels, probabilities)
    assert "top-class" in result["of"]
    assert [(b["rows"], b["observed"]) for b in result["bins"]] == [(2, 1.0), (2, 0.5)]
    assert [b["mean_predicted"] for b in result["bins"]] == pytest.approx([0.6, 0.7])


def _binary_case(rows: int = 2000) -> tuple[dict[str, np.ndarray], np.ndarray]:
    rng = np.random.default_rng(7)
    x = rng.normal(size=rows).astype(np.float32)
    noise = rng.normal(size=rows).astype(np.float32)
    colour = rng.choice(np.array(["red", "blue"], dtype=object), size=rows)
    labels = (x + 0.3 * rng.normal(size=rows) > 0).astype(np.int64)
    return {"x": x, "noise": noise, "colour": colour}, labels


def _reads_x(features: dict[str, np.ndarray]) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-4.0 * np.asarray(features["x"], dtype=np.float64)))


def test_an_ignored_input_costs_nothing_and_a_used_one_costs_clearly() -> None:
    features, labels = _binary_case()
    result = permutation_importance(
        _reads_x,
        features,
        labels,
        task="binary",
        metric="auc",
        larger_is_better=True,
        slices={"colour": features["colour"]},
        repeats=3,
    )
    by_name = {f["feature"]: f for f in result["features"]}
    assert by_name["noise"]["mean"] == 0.0 and by_name["noise"]["std"] == 0.0
    assert by_name["colour"]["mean"] == 0.0
    assert by_name["x"]["mean"] > 0.3  # AUC ~0.97 falls to ~0.5
    assert len(by_name["x"]["drops"]) == 3 and by_name["x"]["std"] >= 0.0
    assert result["features"][0]["feature"] == "x"  # largest drop first
    assert result["baseline"] == pytest.approx(roc_auc(labels, _reads_x(features)))
    assert (result["rows_used"], result["rows_total"], result["sampled"]) == (2000, 2000, False)
    # each slice value: x matters, noise does not
    assert {(s["column"], s["value"]) for s in result["slices"]} == {
        ("colour", "blue"),
        ("colour", "red"),
    }
    for s in result["slices"]:
        drops = {f["feature"]: f["mean"] for f in s["features"]}
        assert drops["x"] > 0.3 and drops["noise"] == 0.0
        assert s["rows"] == int((features["colour"] == s["value"]).sum())


def test_importance_is_repeatable_with_its_seed() -> None:
    features, labels = _binary_case(500)
    run = [
        permutation_importance(
            _reads_x, features, labels, task="binary", metric="auc", larger_is_better=True
        )
        for _ in range(2)
    ]
    assert run[0] == run[1]


def test_a_drop_is_positive_for_a_metric_where_smaller_is_better() -> None:
    rng = np.random.default_rng(3)
    x = rng.normal(size=800)
    features = {"x": x, "unused": rng.normal(size=800)}
    result = permutation_importance(
        lambda f: 2.0 * np.asarray(f["x"]),
        features,
        2.0 * x,
        task="regression",
        metric="rmse",
        larger_is_better=False,
    )
    by_name = {f["feature"]: f["mean"] for f in result["features"]}
    assert result["baseline"] == 0.0
    assert by_name["x"] > 2.0  # rmse of 2 * (x - shuffled x) ~ 2 * sqrt(2)
    assert by_name["unused"] == 0.0


def test_rows_are_capped_with_the_seed() -> None:
    features, labels = _binary_case(1000)
    result = permutation_importance(
        _reads_x,
        features,
        labels,
        task="binary",
        metric="auc",
        larger_is_better=True,
        max_rows=100,
        repeats=1,
    )
    assert (result["rows_used"], result["rows_total"], result["sampled"]) == (100, 1000, True)
    picked = sample_rows(1000, 100, 42)
    assert picked.size == 100 and np.unique(picked).size == 100
    assert np.array_equal(picked, sample_rows(1000, 100, 42))
    assert np.array_equal(sample_rows(50, 100), np.arange(50))


def test_bad_inputs_are_refused_with_what_is_wrong() -> None:
    with pytest.raises(ValueError, match="at least one model input"):
        permutation_importance(
            _reads_x, {}, np.zeros(3), task="binary", metric="auc", larger_is_better=True
        )
    with pytest.raises(ValueError, match="3 labels but model input lengths"):
        permutation_importance(
            _reads_x,
            {"x": np.zeros(4)},
            np.zeros(3),
            task="binary",
            metric="auc",
            larger_is_better=True,
        )


def test_roc_points_of_a_perfect_and_a_useless_scorer() -> None:
    labels = np.array([0, 0, 1, 1])
    perfect = roc_points(labels, np.array([0.1, 0.2, 0.8, 0.9]))
    assert perfect is not None
    assert {"fpr": 0.0, "tpr": 1.0, "threshold": 0.8} in perfect
    assert (perfect[0]["fpr"], perfect[0]["tpr"]) == (0.0, 0.0)
    assert (perfect[-1]["fpr"], perfect[-1]["tpr"]) == (1.0, 1.0)
    assert roc_points(np.ones(4), np.arange(4.0)) is None  # one class: no curve


def test_curve_points_are_thinned_and_integrate_to_the_auc() -> None:
    features, labels = _binary_case(3000)
    scores = _reads_x(features)
    [binary] = curves("binary", labels, scores)
    assert binary["positives"] == int(labels.sum())
    roc = binary["roc"]
    assert 2 < len(roc) <= 50
    area = np.trapezoid([p["tpr"] for p in roc], [p["fpr"] for p in roc])
    assert area == pytest.approx(roc_auc(labels, scores), abs=0.01)
    recall = [p["recall"] for p in binary["pr"]]
    assert recall == sorted(recall) and recall[0] == 0.0 and recall[-1] == 1.0


def test_multiclass_curves_are_one_against_the_rest() -> None:
    probabilities = np.array([[0.8, 0.1, 0.1], [0.1, 0.8, 0.1], [0.1, 0.1, 0.8], [0.6, 0.3, 0.1]])
    labels = np.array([0, 1, 2, 0])
    out = curves("multiclass", labels, probabilities, ("Adelie", "Gentoo", "Chinstrap"))
    assert [c["of"] for c in out] == ["Adelie vs rest", "Gentoo vs rest", "Chinstrap vs rest"]
    assert [c["positives"] for c in out] == [2, 1, 1]


def test_residuals_by_predicted_value() -> None:
    predictions = np.arange(100.0)
    result = residuals_by_prediction(predictions + 1.0, predictions, bins=4)
    assert [b["rows"] for b in result] == [25, 25, 25, 25]
    assert [(b["lo"], b["hi"]) for b in result] == [(0, 24), (25, 49), (50, 74), (75, 99)]
    assert all(b["mean_residual"] == 1.0 and b["std_residual"] == 0.0 for b in result)
    spread = residuals_by_prediction(
        np.array([1.0, 3.0, np.nan]), np.array([2.0, 2.0, 2.0]), bins=1
    )
    assert spread == [
        {
            "lo": 2.0,
            "hi": 2.0,
            "rows": 2,
            "mean_predicted": 2.0,
            "mean_residual": 0.0,
            "std_residual": 1.0,
        }
    ]


def test_analyze_names_what_it_could_not_make_and_does_not_raise() -> None:
    features, labels = _binary_case(300)

    def broken(_: dict[str, np.ndarray]) -> np.ndarray:
        raise RuntimeError("the SavedModel wants other inputs")

    out = analyze(broken, features, labels, task="binary", metric="auc", larger_is_better=True)
    assert out["importance"] is None and out["calibration"] is None and out["curves"] is None
    assert set(out["missing"]) == {"importance", "calibration", "curves", "residuals"}
    assert "the SavedModel wants other inputs" in out["missing"]["importance"]

    whole = analyze(_reads_x, features, labels, task="binary", metric="auc", larger_is_better=True)
    assert whole["missing"] == {} and whole["residuals"] is None
    assert whole["model_inputs"] == ["x", "noise", "colour"]
    assert whole["importance"]["features"][0]["feature"] == "x"
    assert whole["calibration"]["bins"] and whole["curves"][0]["roc"]
