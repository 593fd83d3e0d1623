"""The evaluate_candidate stage against a real MLflow registry, with a stand-in model.

The model is replaced by a function of the features (``aimass.evaluation.metrics.predict``), so the
test covers what the stage does with the scores: slices read from the partition, the gate,
the forced override, the JSON and HTML reports and what lands in MLflow.
"""

from __future__ import annotations

import json
import logging
from html import escape
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from runkit import run_request, training_result

from aimass.platform.settings import REPO_ROOT, Settings

pytestmark = pytest.mark.integration

DATASET = "taxi_gate"
DS = "2026-11-25"
# Holdout rows per payment type: Cash is large, Credit Card is large enough to gate, Prcard not.
SLICE_ROWS = {"Cash": 300, "Credit Card": 90, "Prcard": 10}


@pytest.fixture
def env(settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """Settings whose conf holds a taxi spec gated per payment type."""
    root = tmp_path / "root"
    (root / "conf" / "datasets").mkdir(parents=True)
    raw = yaml.safe_load((REPO_ROOT / "conf/datasets/chicago_taxi.yaml").read_text())
    raw["name"] = DATASET
    raw["slices"] = ["payment_type"]
    raw["gate"] = {
        "min": {"auc": 0.6},
        "max_regression": {"auc": 0.5},  # overall passes: the slice bar is what fails
        "max_slice_regression": {"auc": 0.05},
        "min_slice_rows": 30,
    }
    (root / "conf/datasets" / f"{DATASET}.yaml").write_text(yaml.safe_dump(raw))
    monkeypatch.setenv("AIMASS_ROOT", str(root))
    return Settings.from_env()


def _write_partition(settings: Settings) -> Path:
    from aimass.data.spec import load_spec

    spec = load_spec(DATASET, settings.conf_dir)
    rng = np.random.default_rng(0)
    payment = np.concatenate([np.full(n, v, dtype=object) for v, n in SLICE_ROWS.items()])
    n = payment.size
    columns: dict[str, Any] = {}
    for name in dict.fromkeys([*spec.model_inputs, *spec.features]):
        dtype = spec.dtype(name)
        if dtype == "double":
            columns[name] = rng.uniform(0, 20, n)
        elif dtype == "long":
            columns[name] = rng.integers(0, 7, n)
        else:
            columns[name] = rng.choice(["a", "b"], n).astype(object)
    columns["payment_type"] = payment
    columns[spec.label_name] = (columns["fare"] > 10).astype(np.int64)
    columns["split"] = np.full(n, "holdout", dtype=object)
    partition = settings.clean_partition(DATASET, DS)
    partition.mkdir(parents=True)
    pq.write_table(pa.table(columns), partition / "part-00000.parquet")
    return partition


def _fake_predict(saved_model_dir: Path, features: dict[str, np.ndarray]) -> np.ndarray:
    """The champion ranks every row right; the candidate only Cash, others at random."""
    right = np.where(features["fare"] > 10, 0.8, 0.2)
    if "candidate" not in str(saved_model_dir):
        return right
    noise = np.random.default_rng(1).random(right.size)
    return np.where(features["payment_type"] == "Cash", right, noise)


def _register(settings: Settings) -> tuple[str, str]:
    """A champion version (v1) and a candidate version (v2); the candidate's run id."""
    import mlflow

    from aimass.platform import tracking

    exp = tracking.experiment_id(settings, DATASET)
    run_ids = []
    for name in ("champion", "candidate"):
        with mlflow.start_run(experiment_id=exp, run_name=name) as run:
            mlflow.log_text("stand-in", f"{tracking.MODEL_ARTIFACT}/saved_model.pb")
            run_ids.append(run.info.run_id)
    versions = [
        tracking.register_version(settings, DATASET, run_id=r, run_key=f"k{i}", tags={})
        for i, r in enumerate(run_ids)
    ]
    tracking.promote(settings, DATASET, versions[0])
    return versions[1], run_ids[1]


def test_evaluate_candidate_gates_per_slice_reports_and_can_be_forced(
    env: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from aimass.evaluation import metrics as evaluation
    from aimass.platform import tracking
    from aimass.stages.retrain import evaluate_candidate, reject_candidate

    monkeypatch.setattr(evaluation, "predict", _fake_predict)
    partition = _write_partition(env)
    version, run_id = _register(env)
    report_dir = env.report_dir(DATASET, DS)
    ctx: dict[str, Any] = run_request(
        dataset=DATASET, ds=DS, clean_dir=partition, report_dir=report_dir
    )
    model = training_result(
        saved_model_dir=tmp_path / "candidate", registry_version=version, mlflow_run_id=run_id
    )

    out = evaluate_candidate(ctx, model, triggered_by="alice").dump()

    assert out["passed"] is False and out["deploy"] is False and out["verdict"] == "rejected"
    assert out["champion_version"] == "1" and out["threshold"] == 0.5
    by_slice = {c["slice"]: c for c in out["checks"] if c["slice"] != "overall"}
    assert set(by_slice) == {f"payment_type={v}" for v in SLICE_ROWS}
    assert by_slice["payment_type=Credit Card"]["verdict"] == "FAIL"
    assert by_slice["payment_type=Cash"]["verdict"] == "ok"
    assert by_slice["payment_type=Prcard"]["verdict"] == "skip"
    assert out["reasons"] == [by_slice["payment_type=Credit Card"]["message"]]
    assert {"precision", "recall", "ece"} <= set(out["candidate"])

    stored = json.loads((report_dir / "gate_decision.json").read_text())
    assert stored["checks"] == out["checks"]
    page = (report_dir / "gate_report.html").read_text()
    assert all(escape(c["message"], quote=True) in page for c in out["checks"])

    caplog.set_level(logging.WARNING, logger="aimass.stages.retrain")
    rejected = reject_candidate(out)
    assert rejected["reasons"] == out["reasons"]
    assert out["reasons"][0] in caplog.text and "production unchanged" in caplog.text

    mlc = tracking.client(env)
    run = mlc.get_run(run_id)
    assert run.data.tags["aimass.gate"] == "rejected"
    assert "holdout_recall" in run.data.metrics and "champion_holdout_ece" in run.data.metrics
    artifacts = {a.path for a in mlc.list_artifacts(run_id, "evaluation")}
    assert artifacts == {"evaluation/gate_decision.json", "evaluation/gate_report.html"}

    # The same run again with force_deploy: deploys, and says who and why everywhere.
    ctx.update(force_deploy=True, force_reason="INC-9: champion mis-scores card trips")
    forced = evaluate_candidate(ctx, model, triggered_by=None).dump()
    assert forced["passed"] is False and forced["deploy"] is True and forced["forced"] is True
    assert forced["forced_by"] == "unknown"
    assert forced["force_reason"] == "INC-9: champion mis-scores card trips"
    assert json.loads((report_dir / "gate_decision.json").read_text())["verdict"] == "forced"
    tags = mlc.get_run(run_id).data.tags
    assert tags["aimass.gate"] == "forced"
    assert tags["aimass.force_reason"] == "INC-9: champion mis-scores card trips"
    assert mlc.get_model_version(DATASET, version).tags["aimass.gate"] == "forced"
