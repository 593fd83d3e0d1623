from __future__ import annotations

import pytest

from aimass.gate import decide
from aimass.spec import CLASSIFICATION_METRICS, REGRESSION_METRICS, ConfigError, GateSpec

pytestmark = pytest.mark.unit

GATE = GateSpec.from_dict(
    {"min": {"auc": 0.6, "accuracy": 0.55}, "max_regression": {"auc": 0.01}}, "test"
)
CLS = CLASSIFICATION_METRICS


def test_no_champion_applies_only_absolute_bars() -> None:
    decision = decide(GATE, {"auc": 0.7, "accuracy": 0.6}, None, metrics=CLS)
    assert decision.passed
    assert [c.name for c in decision.checks] == ["min_accuracy", "min_auc"]
    assert decision.reasons == []


def test_absolute_bar_failure_is_explained() -> None:
    decision = decide(GATE, {"auc": 0.55, "accuracy": 0.6}, None, metrics=CLS)
    assert not decision.passed
    assert len(decision.reasons) == 1
    assert (
        "min_auc" in decision.reasons[0]
        and "0.5500" in decision.reasons[0]
        and "0.6000" in decision.reasons[0]
    )


def test_regression_against_champion_beyond_tolerance_rejects() -> None:
    decision = decide(
        GATE, {"auc": 0.70, "accuracy": 0.6}, {"auc": 0.72, "accuracy": 0.6}, metrics=CLS
    )
    assert not decision.passed
    (failed,) = [c for c in decision.checks if not c.passed]
    assert failed.name == "no_auc_regression"
    assert failed.champion == pytest.approx(0.72)
    assert failed.bar == pytest.approx(0.71)


def test_small_regression_within_tolerance_passes() -> None:
    decision = decide(
        GATE, {"auc": 0.715, "accuracy": 0.6}, {"auc": 0.72, "accuracy": 0.6}, metrics=CLS
    )
    assert decision.passed


def test_min_auc_override_is_applied_and_recorded() -> None:
    decision = decide(GATE, {"auc": 0.7, "accuracy": 0.6}, None, metrics=CLS, min_auc=0.9)
    assert not decision.passed
    assert decision.overrides == {"min_auc": 0.9}
    assert decision.to_dict()["reasons"] == decision.reasons


def test_missing_metric_is_an_error() -> None:
    with pytest.raises(KeyError, match="accuracy"):
        decide(GATE, {"auc": 0.7}, None, metrics=CLS)


REGRESSION_GATE = GateSpec.from_dict(
    {"max": {"rmse": 500.0}, "min": {"r2": 0.5}, "max_regression": {"rmse": 25.0}}, "test"
)


def test_regression_bars_use_the_metric_direction() -> None:
    champion = {"rmse": 400.0, "mae": 300.0, "r2": 0.7}
    worse = {"rmse": 430.0, "mae": 320.0, "r2": 0.66}
    decision = decide(REGRESSION_GATE, worse, champion, metrics=REGRESSION_METRICS)
    assert not decision.passed
    (failed,) = [c for c in decision.checks if not c.passed]
    assert failed.name == "no_rmse_regression"
    assert failed.bar == pytest.approx(425.0)  # a rise is the worsening for rmse
    slightly_worse = {"rmse": 420.0, "mae": 310.0, "r2": 0.68}
    assert decide(REGRESSION_GATE, slightly_worse, champion, metrics=REGRESSION_METRICS).passed


def test_max_bar_rejects_a_too_large_error() -> None:
    decision = decide(REGRESSION_GATE, {"rmse": 510.0, "r2": 0.6}, None, metrics=REGRESSION_METRICS)
    assert [c.name for c in decision.checks if not c.passed] == ["max_rmse"]


def test_min_auc_override_is_refused_for_regression() -> None:
    with pytest.raises(KeyError, match="classification"):
        decide(
            REGRESSION_GATE,
            {"rmse": 1.0, "r2": 0.9},
            None,
            metrics=REGRESSION_METRICS,
            min_auc=0.9,
        )


@pytest.mark.parametrize(
    ("raw", "match"),
    [
        ({"min_auc": 0.6}, "unknown fields"),
        ({"min": [0.6]}, "must map metric names"),
        ({"min": {"auc": "high"}}, "must be a number"),
        ({"max_regression": {"auc": -0.1}}, ">= 0"),
    ],
)
def test_bad_gate_sections_are_explained(raw: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        GateSpec.from_dict(raw, "spec.yaml")
