"""The holdout metrics pinned to the values of the pre-sklearn (hand-written numpy) code.

The metrics moved to scikit-learn; the gate compares candidate against champion numbers,
so the move must not shift any of them. ``EXPECTED`` was produced by running ``_cases()``
with the pre-sklearn implementation of ``aimass.evaluation.metrics`` (commit 226262b) and
printing every value with ``repr``; each must come back to 1e-9.

The data are seeded and cover the edge cases the old code defined: probabilities of exactly
0 and 1 (log loss clips them to ``EPS``), ties, no predicted positive at a high threshold
(precision 0), single-class slices (no AUC), a class absent from the labels (fewer
``auc_classes``), a true class with probability 0, float32 softmax rows, constant regression
labels (R² 0) and a single regression row.
"""

from __future__ import annotations

import numpy as np
import pytest

from aimass.evaluation.metrics import SliceMetrics, slice_metrics, task_metrics

pytestmark = pytest.mark.unit

TOLERANCE = 1e-9


def _softmax(logits: np.ndarray) -> np.ndarray:
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _binary() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(20261125)
    labels = rng.integers(0, 2, 500)
    probs = np.clip(rng.random(500) * 0.8 + labels * 0.2, 0.0, 1.0)
    probs = np.round(probs, 2)  # ties
    probs[:7] = 0.0  # exactly 0 and 1: the log loss clips them
    probs[7:14] = 1.0
    region = rng.choice(["north", "south", "east", "west"], 500, p=[0.5, 0.3, 0.15, 0.05])
    region[labels == 1] = np.where(region[labels == 1] == "west", "east", region[labels == 1])
    return labels, probs, region  # "west" holds negatives only: no AUC there


def _multiclass() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(7)
    labels = rng.integers(0, 3, 400)  # class 3 of 4 never occurs
    logits = rng.normal(size=(400, 4)) + np.eye(4)[labels] * 1.3
    probs = _softmax(logits).astype(np.float32)
    probs[0] = [0.0, 1.0, 0.0, 0.0]
    labels[0] = 0  # the true class with probability 0: log loss clips it
    kind = rng.choice(["a", "b", "c"], 400)
    return labels, probs, kind


def _regression() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(11)
    labels = rng.normal(4000, 800, 300)
    preds = labels + rng.normal(0, 300, 300)
    labels[:5] = 1234.5  # a slice of constant labels: R² is 0
    band = np.array(["flat"] * 5 + ["one"] + ["rest"] * 294, dtype=object)
    return labels, preds, band


def _slices(name: str, got: tuple[SliceMetrics, ...]) -> dict[str, dict[str, float]]:
    return {f"{name}[{s.key}]": {**s.metrics, "slice_rows": float(s.rows)} for s in got}


def _cases() -> dict[str, dict[str, float]]:
    """Every metric of every case, keyed ``case`` or ``case[column=value]`` for slices."""
    out: dict[str, dict[str, float]] = {}
    y, p, region = _binary()
    out["binary"] = task_metrics("binary", y, p)
    out["binary@0.35"] = task_metrics("binary", y, p, threshold=0.35)
    out["binary@0.999"] = task_metrics("binary", y, p[::-1].clip(0.0, 0.99), threshold=0.999)
    out["binary-one-class"] = task_metrics("binary", np.ones(6), p[20:26], strict=False)
    out |= _slices("binary", slice_metrics("binary", y, p, {"region": region}, threshold=0.4))
    out |= _slices("binary-pooled", slice_metrics("binary", y, p, {"region": region}, max_values=2))

    y, p, kind = _multiclass()
    out["multiclass"] = task_metrics("multiclass", y, p)
    out |= _slices("multiclass", slice_metrics("multiclass", y, p, {"kind": kind}))
    out["multiclass-one-class"] = task_metrics("multiclass", y[y == 1], p[y == 1], strict=False)
    # Scores outside [0, 1] still rank for the AUC; the log loss and ECE clip them.
    odd = np.array([[np.inf, 0.5], [0.2, 0.8], [0.1, 1.5], [0.7, -0.1]])
    out["multiclass-out-of-range"] = task_metrics("multiclass", np.array([0, 1, 1, 0]), odd)

    y, f, band = _regression()
    out["regression"] = task_metrics("regression", y, f)
    out |= _slices("regression", slice_metrics("regression", y, f, {"band": band}))
    # Constant labels are R² 0 even when predicted exactly; an infinite prediction (a broken
    # model) scores infinitely bad instead of failing the evaluation.
    out["regression-constant-exact"] = task_metrics("regression", np.full(4, 2.5), np.full(4, 2.5))
    out["regression-inf"] = task_metrics("regression", y[:10], np.r_[f[:9], np.inf])
    return out


# Produced by the pre-sklearn implementation (see the module docstring); do not regenerate
# from the code under test.
EXPECTED: dict[str, dict[str, float]] = {
    "binary": {
        "auc": 0.681865318555966,
        "accuracy": 0.594,
        "precision": 0.5361216730038023,
        "recall": 0.6351351351351351,
        "log_loss": 0.802973549729662,
        "ece": 0.15828000000000003,
        "rows": 500.0,
        "positive_rate": 0.444,
    },
    "binary@0.35": {
        "auc": 0.681865318555966,
        "accuracy": 0.59,
        "precision": 0.5244956772334294,
        "recall": 0.8198198198198198,
        "log_loss": 0.802973549729662,
        "ece": 0.15828000000000003,
        "rows": 500.0,
        "positive_rate": 0.444,
    },
    "binary@0.999": {
        "auc": 0.5258927992740943,
        "accuracy": 0.556,
        "precision": 0.0,
        "recall": 0.0,
        "log_loss": 0.9091165171812526,
        "ece": 0.21103999999999987,
        "rows": 500.0,
        "positive_rate": 0.444,
    },
    "binary-one-class": {
        "accuracy": 0.8333333333333334,
        "precision": 1.0,
        "recall": 0.8333333333333334,
        "log_loss": 0.6538600034324514,
        "ece": 0.4233333333333334,
        "rows": 6.0,
        "positive_rate": 1.0,
    },
    "binary[region=north]": {
        "auc": 0.6797265234765235,
        "accuracy": 0.611764705882353,
        "precision": 0.5398773006134969,
        "recall": 0.7857142857142857,
        "log_loss": 0.7489559446464858,
        "ece": 0.17250980392156867,
        "rows": 255.0,
        "positive_rate": 0.4392156862745098,
        "slice_rows": 255.0,
    },
    "binary[region=south]": {
        "auc": 0.6350357710651828,
        "accuracy": 0.5774647887323944,
        "precision": 0.5434782608695652,
        "recall": 0.7352941176470589,
        "log_loss": 1.06907045053138,
        "ece": 0.1969014084507042,
        "rows": 142.0,
        "positive_rate": 0.4788732394366197,
        "slice_rows": 142.0,
    },
    "binary[region=east]": {
        "auc": 0.7339650145772595,
        "accuracy": 0.6153846153846154,
        "precision": 0.5614035087719298,
        "recall": 0.7619047619047619,
        "log_loss": 0.5809538193642718,
        "ece": 0.14340659340659342,
        "rows": 91.0,
        "positive_rate": 0.46153846153846156,
        "slice_rows": 91.0,
    },
    "binary[region=west]": {
        "accuracy": 0.5833333333333334,
        "precision": 0.0,
        "recall": 0.0,
        "log_loss": 0.4856839535310335,
        "ece": 0.3333333333333333,
        "rows": 12.0,
        "positive_rate": 0.0,
        "slice_rows": 12.0,
    },
    "binary-pooled[region=north]": {
        "auc": 0.6797265234765235,
        "accuracy": 0.5803921568627451,
        "precision": 0.5185185185185185,
        "recall": 0.625,
        "log_loss": 0.7489559446464858,
        "ece": 0.17250980392156867,
        "rows": 255.0,
        "positive_rate": 0.4392156862745098,
        "slice_rows": 255.0,
    },
    "binary-pooled[region=south]": {
        "auc": 0.6350357710651828,
        "accuracy": 0.5704225352112676,
        "precision": 0.5443037974683544,
        "recall": 0.6323529411764706,
        "log_loss": 1.06907045053138,
        "ece": 0.1969014084507042,
        "rows": 142.0,
        "positive_rate": 0.4788732394366197,
        "slice_rows": 142.0,
    },
    "binary-pooled[region=(other: 2 values)]": {
        "auc": 0.7455113192818111,
        "accuracy": 0.6601941747572816,
        "precision": 0.5714285714285714,
        "recall": 0.6666666666666666,
        "log_loss": 0.5698544175196227,
        "ece": 0.1449514563106796,
        "rows": 103.0,
        "positive_rate": 0.4077669902912621,
        "slice_rows": 103.0,
    },
    "multiclass": {
        "auc": 0.8752613110975466,
        "accuracy": 0.6325,
        "precision": 0.5630709203012579,
        "recall": 0.4757051282051282,
        "log_loss": 0.9335278888144702,
        "ece": 0.0844953440874815,
        "rows": 400.0,
        "auc_classes": 3.0,
    },
    "multiclass[kind=b]": {
        "auc": 0.8553151047154369,
        "accuracy": 0.6521739130434783,
        "precision": 0.5498079567192731,
        "recall": 0.4879148629148629,
        "log_loss": 1.0140711631665174,
        "ece": 0.10531188957933066,
        "rows": 138.0,
        "auc_classes": 3.0,
        "slice_rows": 138.0,
    },
    "multiclass[kind=c]": {
        "auc": 0.9045166807527029,
        "accuracy": 0.6521739130434783,
        "precision": 0.5920535011801731,
        "recall": 0.4883615673089357,
        "log_loss": 0.8487187309794796,
        "ece": 0.10995884131694185,
        "rows": 138.0,
        "auc_classes": 3.0,
        "slice_rows": 138.0,
    },
    "multiclass[kind=a]": {
        "auc": 0.8662571433812424,
        "accuracy": 0.5887096774193549,
        "precision": 0.5406597774244832,
        "recall": 0.4409858434248678,
        "log_loss": 0.9382754043035527,
        "ece": 0.13433764802832757,
        "rows": 124.0,
        "auc_classes": 3.0,
        "slice_rows": 124.0,
    },
    "multiclass-one-class": {
        "accuracy": 0.6893939393939394,
        "precision": 0.25,
        "recall": 0.17234848484848486,
        "log_loss": 0.8394481990326542,
        "ece": 0.12065917659889568,
        "rows": 132.0,
        "auc_classes": 0.0,
    },
    "multiclass-out-of-range": {
        "auc": 1.0,
        "accuracy": 1.0,
        "precision": 1.0,
        "recall": 1.0,
        "log_loss": 0.14495462381323554,
        "ece": 0.125,
        "rows": 4.0,
        "auc_classes": 2.0,
    },
    "regression": {
        "rmse": 510.6551518841205,
        "mae": 286.3400612523762,
        "r2": 0.6017730551027574,
        "rows": 300.0,
        "label_mean": 3966.3531400466695,
    },
    "regression[band=rest]": {
        "rmse": 299.9553787450187,
        "mae": 238.09538044642488,
        "r2": 0.8329095469508692,
        "rows": 294.0,
        "label_mean": 4014.133841389209,
        "slice_rows": 294.0,
    },
    "regression[band=flat]": {
        "rmse": 3217.707605884664,
        "mae": 3160.132370350832,
        "r2": 0.0,
        "rows": 5.0,
        "label_mean": 1234.5,
        "slice_rows": 5.0,
    },
    "regression[band=one]": {
        "rmse": 101.31467270978555,
        "mae": 101.31467270978555,
        "r2": 0.0,
        "rows": 1.0,
        "label_mean": 3578.0926455732597,
        "slice_rows": 1.0,
    },
    "regression-constant-exact": {
        "rmse": 0.0,
        "mae": 0.0,
        "r2": 0.0,
        "rows": 4.0,
        "label_mean": 2.5,
    },
    "regression-inf": {
        "rmse": float("inf"),
        "mae": float("inf"),
        "r2": -float("inf"),
        "rows": 10.0,
        "label_mean": 2528.1170834220284,
    },
}


def test_metrics_equal_the_pre_sklearn_values() -> None:
    got = _cases()
    assert sorted(got) == sorted(EXPECTED)
    for case, expected in EXPECTED.items():
        assert sorted(got[case]) == sorted(expected), case
        for name, value in expected.items():
            assert got[case][name] == pytest.approx(value, rel=TOLERANCE, abs=TOLERANCE), (
                f"{case} {name}"
            )


def test_a_nan_regression_prediction_scores_nan_instead_of_failing() -> None:
    # A diverged model's NaN outputs must reach the gate as NaN metrics (which fail every
    # bar), as with the pre-sklearn code, not stop the evaluation.
    got = task_metrics("regression", np.array([1.0, 2.0, 4.0]), np.array([1.0, np.nan, 2.0]))
    assert np.isnan(got["rmse"]) and np.isnan(got["mae"]) and np.isnan(got["r2"])
    assert got["rows"] == 3.0


@pytest.mark.parametrize("task", ["binary", "multiclass"])
def test_nan_class_probabilities_are_a_value_error(task: str) -> None:
    labels = np.array([0, 1, 1])
    probs = np.array([0.2, np.nan, 0.7])
    outputs = probs if task == "binary" else np.stack([1 - probs, probs], axis=1)
    with pytest.raises(ValueError):
        task_metrics(task, labels, outputs)
