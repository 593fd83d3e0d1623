"""A model card whose analysis fails: the card says what it lacks, and nothing raises.

A real clean partition (testkit) and a real MLflow store (SQLite), but a candidate whose
SavedModel is gone and an MLflow run that does not exist: ``record_model_card`` must write the
card with its ``missing`` parts, log warnings, and return, as ``evaluate_candidate`` relies on
it never stopping a deployment.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pyarrow.dataset as pads
import pytest
from testkit import write_partition

from aimass.data.spec import load_spec
from aimass.evaluation.cardstage import record_model_card
from aimass.platform.records import GateDecision, RunRequest, TrainingResult
from aimass.platform.settings import Settings

pytestmark = pytest.mark.integration


def test_a_failing_analysis_leaves_a_card_that_says_so(
    settings: Settings, taxi_csv: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    spec = load_spec("chicago_taxi", settings.conf_dir)
    partition = write_partition(taxi_csv, tmp_path / "clean", spec)
    report_dir = tmp_path / "reports"
    run = RunRequest(
        dataset=spec.name,
        ds="2026-11-20",
        input_path=str(taxi_csv),
        workers=1,
        dag_id="aimass_retrain",
        run_id="manual__1",
        run_key="aimass_retrain/manual__1",
        clean_dir=str(partition),
        quarantine_dir=str(tmp_path / "q"),
        report_dir=str(report_dir),
        clean_summary=str(report_dir / "clean_summary.json"),
        run_dir=str(tmp_path / "run"),
    )
    model = TrainingResult(
        mlflow_run_id="0" * 32,
        experiment_id="0",
        mlflow_run_url="",
        registry_version="3",
        saved_model_dir=str(tmp_path / "gone"),
        workers=1,
        hparams_source="spec",
        train_seconds=1.0,
    )
    gate = GateDecision(
        passed=True,
        deploy=True,
        verdict="passed",
        candidate={"auc": 0.9},
        dataset=spec.name,
        ds=run.ds,
        run_id=run.run_id,
        candidate_version="3",
        task=spec.task,
        primary_metric=spec.primary_metric,
    )
    with caplog.at_level(logging.WARNING):
        paths = record_model_card(settings, spec, run=run, model=model, gate=gate)
    assert paths is not None and paths["html"] == report_dir / "model_card.html"
    card = json.loads(paths["json"].read_text())
    assert "not a SavedModel" in card["missing"]["importance"]
    assert card["importance"] is None and card["calibration"] is None
    # what could be made is there: the partition's counts and the gate's decision
    rows = pads.dataset(partition, exclude_invalid_files=True).count_rows()
    assert card["data"]["rows_train"] + card["data"]["rows_holdout"] == rows > 2900
    assert 0 < card["data"]["rows_holdout"] < rows / 2
    assert card["gate"]["verdict"] == "passed"
    assert 'data-part="importance"' in paths["html"].read_text()
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("model analysis failed" in w for w in warnings)
    assert any("not logged to MLflow" in w for w in warnings)
