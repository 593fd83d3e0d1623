"""The compression bars: which variant may deploy instead of the candidate, and why."""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from testkit import TAXI_SPEC

from aimass.data.spec import DatasetSpec
from aimass.evaluation.compression import choose, gated_metrics, judge

pytestmark = pytest.mark.unit


def _spec(
    compression: dict[str, Any], *, gate: dict[str, Any] | None = None, base: Any = None
) -> DatasetSpec:
    raw = dict(yaml.safe_load((base or TAXI_SPEC).read_text(encoding="utf-8")))
    raw["compression"] = {"enabled": True, **compression}
    if gate is not None:
        raw["gate"] = gate
    return DatasetSpec.from_dict(raw, origin="test")


def _figures(name: str, *, gzip: int = 1000, ms: float = 10.0, **metrics: float) -> dict[str, Any]:
    return {
        "name": name,
        "saved_model_dir": f"/x/{name}",
        "bytes": gzip * 5,
        "gzip_bytes": gzip,
        "batch1_ms": ms,
        "batch64_ms": ms * 2,
        "metrics": {"auc": 0.80, "accuracy": 0.75, "ece": 0.05, **metrics},
    }


CANDIDATE = _figures("candidate")
BARS = {"max_metric_loss": {"auc": 0.005, "accuracy": 0.01, "ece": 0.01}, "min_size_gain": 0.2}


def test_the_gated_metrics_are_the_gates_and_the_loss_bars() -> None:
    spec = _spec({"max_metric_loss": {"log_loss": 0.02}})
    # chicago_taxi's gate names auc, accuracy and ece; the loss bar adds log_loss.
    assert gated_metrics(spec) == ["accuracy", "auc", "ece", "log_loss"]


def test_a_variant_over_its_loss_bar_is_never_chosen_however_small() -> None:
    spec = _spec(BARS)
    tiny_but_worse = _figures("distilled", gzip=100, ms=1.0, auc=0.80 - 0.006)
    judged = judge(spec, CANDIDATE, tiny_but_worse)
    assert not judged["clears"]
    assert judged["losses"]["auc"] == pytest.approx(0.006)
    assert any("max_metric_loss.auc 0.005" in r for r in judged["reasons"])
    result = choose(spec, CANDIDATE, [tiny_but_worse])
    assert result["chosen"] is None
    assert "uncompressed candidate is deployed" in result["why"]


def test_within_the_loss_bar_and_smaller_enough_the_smallest_clearing_variant_is_chosen() -> None:
    spec = _spec(BARS)
    variants = [
        _figures("float16", gzip=750, auc=0.799),
        _figures("int8", gzip=650, auc=0.7955),  # loses 0.0045 <= 0.005
        _figures("distilled", gzip=300, auc=0.70),  # smallest, but over the bar
        _figures("pruned", gzip=850),  # 15 % smaller: under min_size_gain
    ]
    result = choose(spec, CANDIDATE, variants)
    assert result["chosen"] == "int8"
    verdicts = {v["name"]: v["clears"] for v in result["variants"]}
    assert verdicts == {"float16": True, "int8": True, "distilled": False, "pruned": False}
    pruned = next(v for v in result["variants"] if v["name"] == "pruned")
    assert any("gains too small" in r for r in pruned["reasons"])
    assert "int8 clears every bar" in result["why"]


def test_direction_matters_a_rise_in_ece_is_a_loss_a_drop_is_not() -> None:
    spec = _spec(BARS)
    worse = judge(spec, CANDIDATE, _figures("a", gzip=500, ece=0.05 + 0.02))
    better = judge(spec, CANDIDATE, _figures("b", gzip=500, ece=0.05 - 0.04, auc=0.81))
    assert not worse["clears"] and worse["losses"]["ece"] == pytest.approx(0.02)
    assert better["clears"], better["reasons"]
    assert better["losses"]["ece"] == pytest.approx(-0.04)
    assert better["deltas"]["auc"] == pytest.approx(0.01)


def test_rmse_is_lower_is_better_for_a_regression_spec() -> None:
    from testkit import REPO_ROOT

    spec = _spec(
        {"max_metric_loss": {"rmse": 10}, "min_size_gain": 0.2},
        base=REPO_ROOT / "conf/datasets/penguins_body_mass.yaml",
    )
    cand = {**CANDIDATE, "metrics": {"rmse": 300.0, "mae": 250.0, "r2": 0.8}}
    ok = {**_figures("int8", gzip=500), "metrics": {"rmse": 309.0, "mae": 260.0, "r2": 0.8}}
    bad = {**_figures("pruned", gzip=500), "metrics": {"rmse": 311.0, "mae": 250.0, "r2": 0.8}}
    assert judge(spec, cand, ok)["clears"]
    assert not judge(spec, cand, bad)["clears"]


def test_an_unlisted_gated_metric_may_not_worsen_at_all() -> None:
    spec = _spec({"max_metric_loss": {"auc": 0.01}, "min_size_gain": 0.2})
    judged = judge(spec, CANDIDATE, _figures("int8", gzip=500, accuracy=0.7499))
    assert not judged["clears"]
    assert any("max_metric_loss.accuracy 0" in r for r in judged["reasons"])


def test_a_faster_variant_clears_the_latency_bar_only_if_faster_at_both_batch_sizes() -> None:
    spec = _spec({**BARS, "min_size_gain": 0.5, "min_latency_gain": 0.2})
    faster = {**_figures("a", gzip=950), "batch1_ms": 7.0, "batch64_ms": 15.0}
    only_batch1 = {**_figures("b", gzip=950), "batch1_ms": 5.0, "batch64_ms": 19.0}
    assert judge(spec, CANDIDATE, faster)["clears"]
    assert judge(spec, CANDIDATE, faster)["latency_gain"] == pytest.approx(0.25)
    assert not judge(spec, CANDIDATE, only_batch1)["clears"]


def test_the_gates_absolute_bars_still_hold_for_a_variant() -> None:
    spec = _spec(
        {"max_metric_loss": {"auc": 0.1, "accuracy": 0.1, "ece": 0.1}, "min_size_gain": 0.2},
        gate={"min": {"auc": 0.6}, "max": {"ece": 0.15}},
    )
    cand = _figures("candidate", auc=0.62, ece=0.10)
    judged = judge(spec, cand, _figures("int8", gzip=500, auc=0.59, ece=0.16))
    assert not judged["clears"]
    assert any("gate.min.auc" in r for r in judged["reasons"])
    assert any("gate.max.ece" in r for r in judged["reasons"])


def test_a_variant_that_failed_to_build_is_reported_and_never_chosen() -> None:
    spec = _spec(BARS)
    result = choose(spec, CANDIDATE, [{"name": "pruned", "kind": "pruned", "error": "boom"}])
    assert result["chosen"] is None
    assert result["variants"][0]["reasons"] == ["not measured: boom"]
