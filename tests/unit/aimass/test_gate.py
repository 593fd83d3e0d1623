from __future__ import annotations

import json

import pytest

from aimass.data.spec import CLASSIFICATION_METRICS, REGRESSION_METRICS, ConfigError, GateSpec
from aimass.evaluation.gate import decide, force
from aimass.evaluation.metrics import SliceMetrics

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


# --- per-slice bars -------------------------------------------------------------------

SLICE_GATE = GateSpec.from_dict(
    {
        "min": {"auc": 0.6},
        "max_regression": {"auc": 0.01},
        "max_slice_regression": {"auc": 0.05},
        "min_slice_rows": 30,
    },
    "test",
)


def _slices(**aucs: tuple[int, float | None]) -> list[SliceMetrics]:
    """Slices of column ``payment``: value -> (rows, auc or None for undefined)."""
    out = []
    for value, (rows, auc) in aucs.items():
        metrics = {"accuracy": 0.7, "rows": float(rows)}
        if auc is not None:
            metrics["auc"] = auc
        out.append(SliceMetrics("payment", value, rows, metrics))
    return out


def test_a_large_slice_that_regresses_fails_the_gate_with_its_line() -> None:
    decision = decide(
        SLICE_GATE,
        {"auc": 0.72},
        {"auc": 0.72},
        metrics=CLS,
        candidate_slices=_slices(cash=(400, 0.60), card=(300, 0.80)),
        champion_slices=_slices(cash=(400, 0.70), card=(300, 0.79)),
    )
    assert not decision.passed and not decision.deploy
    (failed,) = [c for c in decision.checks if not c.passed]
    assert (failed.name, failed.slice, failed.rows) == ("no_auc_regression", "payment=cash", 400)
    assert failed.bar == pytest.approx(0.65) and failed.champion == pytest.approx(0.70)
    assert decision.reasons == [failed.message]
    assert failed.message == (
        "[FAIL] no_auc_regression: auc 0.6000 vs bar 0.6500, champion 0.7000 "
        "(slice payment=cash, 400 rows)"
    )
    overall = [c for c in decision.checks if c.slice == "overall"]
    assert [c.name for c in overall] == ["min_auc", "no_auc_regression"]
    assert all("(overall)" in c.message for c in overall)


def test_a_small_slice_is_reported_but_not_gated() -> None:
    decision = decide(
        SLICE_GATE,
        {"auc": 0.72},
        {"auc": 0.72},
        metrics=CLS,
        candidate_slices=_slices(cash=(400, 0.70), rare=(12, 0.40)),
        champion_slices=_slices(cash=(400, 0.70), rare=(12, 0.90)),
    )
    assert decision.passed and decision.reasons == []
    rare = next(c for c in decision.checks if c.slice == "payment=rare")
    assert not rare.gated and not rare.passed and rare.verdict == "skip"
    assert "not gated: 12 rows < min_slice_rows 30" in rare.message
    assert [s.gated for s in decision.slices] == [True, False]


def test_a_metric_undefined_in_a_slice_is_reported_not_gated() -> None:
    decision = decide(
        SLICE_GATE,
        {"auc": 0.72},
        {"auc": 0.72},
        metrics=CLS,
        candidate_slices=_slices(solo=(50, None)),
        champion_slices=_slices(solo=(50, None)),
    )
    (line,) = [c for c in decision.checks if c.slice == "payment=solo"]
    assert decision.passed and not line.gated and line.value is None and line.bar is None
    assert "auc n/a vs bar n/a" in line.message and "undefined in this slice" in line.message


def test_without_a_champion_slices_are_reported_and_only_absolute_bars_gate() -> None:
    decision = decide(
        SLICE_GATE,
        {"auc": 0.72},
        None,
        metrics=CLS,
        candidate_slices=_slices(cash=(400, 0.20)),
    )
    assert decision.passed
    assert [c.name for c in decision.checks] == ["min_auc"]
    (s,) = decision.slices
    assert s.key == "payment=cash" and s.champion is None and s.candidate["auc"] == 0.20


def test_slice_bars_need_the_champion_scored_on_the_same_slices() -> None:
    with pytest.raises(KeyError, match="champion_slices"):
        decide(
            SLICE_GATE,
            {"auc": 0.72},
            {"auc": 0.72},
            metrics=CLS,
            candidate_slices=_slices(cash=(400, 0.7)),
        )
    with pytest.raises(KeyError, match=r"not scored on slices \['payment=card'\]"):
        decide(
            SLICE_GATE,
            {"auc": 0.72},
            {"auc": 0.72},
            metrics=CLS,
            candidate_slices=_slices(card=(400, 0.7)),
            champion_slices=_slices(cash=(400, 0.7)),
        )


def test_slice_regression_uses_the_metric_direction() -> None:
    gate = GateSpec.from_dict({"max_slice_regression": {"rmse": 10.0}}, "test")
    cand = [SliceMetrics("species", "gentoo", 40, {"rmse": 320.0})]
    champ = [SliceMetrics("species", "gentoo", 40, {"rmse": 300.0})]
    decision = decide(
        gate,
        {"rmse": 1.0},
        {"rmse": 1.0},
        metrics=REGRESSION_METRICS,
        candidate_slices=cand,
        champion_slices=champ,
    )
    (line,) = decision.checks
    assert not decision.passed and line.bar == pytest.approx(310.0)


def test_decision_dict_is_strict_json_with_every_line() -> None:
    decision = decide(
        SLICE_GATE,
        {"auc": 0.72},
        {"auc": 0.75},
        metrics=CLS,
        candidate_slices=_slices(cash=(400, 0.70), solo=(50, None)),
        champion_slices=_slices(cash=(400, 0.70), solo=(50, None)),
    )
    out = json.loads(json.dumps(decision.to_dict(), allow_nan=False))
    assert out["verdict"] == "rejected" and out["deploy"] is False
    assert [c["message"] for c in out["checks"]] == [c.message for c in decision.checks]
    assert {c["slice"] for c in out["checks"]} == {"overall", "payment=cash", "payment=solo"}
    assert out["slices"][0]["key"] == "payment=cash" and out["min_slice_rows"] == 30


# --- forced deployments ---------------------------------------------------------------


def test_forcing_a_failing_candidate_deploys_it_and_records_who_and_why() -> None:
    failing = decide(GATE, {"auc": 0.55, "accuracy": 0.6}, None, metrics=CLS)
    forced = force(failing, reason="  INC-42: champion breaks on new fares  ", user="alice")
    assert not forced.passed and forced.forced and forced.deploy
    assert forced.verdict == "forced"
    assert (forced.force_reason, forced.forced_by) == (
        "INC-42: champion breaks on new fares",
        "alice",
    )
    assert forced.reasons == failing.reasons  # still explains what failed
    assert "deployment FORCED by alice: INC-42" in forced.summary().splitlines()[0]
    out = forced.to_dict()
    assert out["forced"] is True and out["verdict"] == "forced" and out["deploy"] is True
    assert out["overrides"]["force_deploy"] is True


def test_forcing_without_a_known_user_records_unknown() -> None:
    failing = decide(GATE, {"auc": 0.55, "accuracy": 0.6}, None, metrics=CLS)
    assert force(failing, reason="hotfix for the holiday traffic", user=None).forced_by == "unknown"
    assert force(failing, reason="hotfix for the holiday traffic", user=" ").forced_by == "unknown"


def test_forcing_a_passing_candidate_changes_nothing_but_the_note() -> None:
    passing = decide(GATE, {"auc": 0.7, "accuracy": 0.6}, None, metrics=CLS)
    after = force(passing, reason="asked for a forced rollout", user="bob")
    assert after.passed and not after.forced and after.verdict == "passed"
    assert after.forced_by is None and after.overrides["force_deploy"] is True


def test_forcing_needs_a_real_reason() -> None:
    failing = decide(GATE, {"auc": 0.55, "accuracy": 0.6}, None, metrics=CLS)
    with pytest.raises(ValueError, match="at least 10 characters"):
        force(failing, reason=" because ", user="alice")


# --- gate config ----------------------------------------------------------------------


def test_new_gate_fields_round_trip_and_default() -> None:
    gate = GateSpec.from_dict(
        {"max_slice_regression": {"auc": 0.05}, "min_slice_rows": 50, "threshold": 0.3}, "t"
    )
    assert gate.bars("max_slice_regression") == {"auc": 0.05}
    assert (gate.min_slice_rows, gate.decision_threshold) == (50, 0.3)
    assert GateSpec.from_dict(gate.to_dict(), "t") == gate
    default = GateSpec.from_dict({}, "t")
    assert default.min_slice_rows == 30 and default.decision_threshold == 0.5


@pytest.mark.parametrize(
    ("raw", "match"),
    [
        ({"max_slice_regression": {"auc": -0.1}}, r"gate.max_slice_regression.auc must be >= 0"),
        ({"max_slice_regression": [0.05]}, "gate.max_slice_regression must map metric names"),
        ({"min_slice_rows": 0}, "gate.min_slice_rows must be a whole number >= 1"),
        ({"min_slice_rows": "many"}, "gate.min_slice_rows must be a whole number"),
        ({"min_slice_rows": True}, "gate.min_slice_rows must be a whole number"),
        ({"threshold": 1.5}, r"gate.threshold must be a number in \(0, 1\)"),
        ({"threshold": "high"}, r"gate.threshold must be a number in \(0, 1\)"),
        ({"min": {"auc": float("nan")}}, "gate.min.auc must be a finite number"),
        ({"min": {"auc": 0.9}, "max": {"auc": 0.8}}, "no model can pass; lower the min"),
        ({"slice_regression": {"auc": 0.1}}, "use min, max, max_regression, max_slice_regression"),
    ],
)
def test_bad_new_gate_fields_name_the_field_and_the_fix(raw: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match) as info:
        GateSpec.from_dict(raw, "spec.yaml")
    assert str(info.value).startswith("spec.yaml: ")


def _taxi_raw() -> dict:
    import yaml

    from aimass.platform.settings import REPO_ROOT

    path = REPO_ROOT / "conf" / "datasets" / "chicago_taxi.yaml"
    return yaml.safe_load(path.read_text(encoding="utf-8"))


@pytest.mark.parametrize(
    ("gate", "slices", "task_label", "match"),
    [
        (
            {"max_slice_regression": {"rmse": 1.0}},
            ["payment_type"],
            None,
            "gate.max_slice_regression.rmse is not a binary metric",
        ),
        (
            {"max_slice_regression": {"auc": 0.05}},
            [],
            None,
            "gate.max_slice_regression needs slice columns; list them in slices",
        ),
        (
            {"threshold": 0.4, "min": {"r2": 0.1}},
            ["payment_type"],
            {"name": "tip", "column": "tips", "task": "regression"},
            "gate.threshold is the decision threshold of a binary label",
        ),
    ],
)
def test_spec_level_gate_mistakes_are_explained(
    gate: dict, slices: list, task_label: dict | None, match: str
) -> None:
    from aimass.data.spec import DatasetSpec

    raw = _taxi_raw()
    raw["gate"] = gate
    raw["slices"] = slices
    if task_label is not None:
        raw["label"] = task_label
    with pytest.raises(ConfigError, match=match):
        DatasetSpec.from_dict(raw, origin="spec.yaml")


def test_precision_recall_and_ece_are_gateable_classification_metrics() -> None:
    assert CLS["precision"] and CLS["recall"] and not CLS["ece"]
    gate = GateSpec.from_dict({"min": {"recall": 0.5}, "max": {"ece": 0.1}}, "t")
    metrics = {"recall": 0.4, "ece": 0.05}
    decision = decide(gate, metrics, None, metrics=CLS)
    assert [c.name for c in decision.checks if not c.passed] == ["min_recall"]
