from __future__ import annotations

import pytest

from aimass.gate import decide
from aimass.spec import GateSpec

pytestmark = pytest.mark.unit

GATE = GateSpec(min_auc=0.6, min_accuracy=0.55, max_auc_regression=0.01)


def test_no_champion_applies_only_absolute_bars() -> None:
    decision = decide(GATE, {"auc": 0.7, "accuracy": 0.6}, None)
    assert decision.passed
    assert [c.name for c in decision.checks] == ["min_auc", "min_accuracy"]
    assert decision.reasons == []


def test_absolute_bar_failure_is_explained() -> None:
    decision = decide(GATE, {"auc": 0.55, "accuracy": 0.6}, None)
    assert not decision.passed
    assert len(decision.reasons) == 1
    assert (
        "min_auc" in decision.reasons[0]
        and "0.5500" in decision.reasons[0]
        and "0.6000" in decision.reasons[0]
    )


def test_regression_against_champion_beyond_tolerance_rejects() -> None:
    decision = decide(GATE, {"auc": 0.70, "accuracy": 0.6}, {"auc": 0.72, "accuracy": 0.6})
    assert not decision.passed
    (failed,) = [c for c in decision.checks if not c.passed]
    assert failed.name == "no_auc_regression"
    assert failed.champion == pytest.approx(0.72)
    assert failed.bar == pytest.approx(0.71)


def test_small_regression_within_tolerance_passes() -> None:
    decision = decide(GATE, {"auc": 0.715, "accuracy": 0.6}, {"auc": 0.72, "accuracy": 0.6})
    assert decision.passed


def test_min_auc_override_is_applied_and_recorded() -> None:
    decision = decide(GATE, {"auc": 0.7, "accuracy": 0.6}, None, min_auc=0.9)
    assert not decision.passed
    assert decision.overrides == {"min_auc": 0.9}
    assert decision.to_dict()["reasons"] == decision.reasons


def test_missing_metric_is_an_error() -> None:
    with pytest.raises(KeyError, match="accuracy"):
        decide(GATE, {"auc": 0.7}, None)
