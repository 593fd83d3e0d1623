"""The retrain stages train → evaluate → deploy → publish, outside Airflow.

Real TensorFlow workers, a real MLflow registry (SQLite) and a real model server; the clean
partition comes from testkit (checked against the Spark job in test_testkit_partition.py), so
these tests cover what the stages do with it: the MLflow run and registry version, the gate,
the rollout with champion alias, and the records with the run's full lineage.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest
from testkit import write_partition

from aimass.data.spec import load_spec
from aimass.platform.records import (
    DataChecks,
    Deployment,
    GateDecision,
    RecordStore,
    RunSummary,
    TrainingResult,
)
from aimass.platform.settings import Settings
from aimass.serving.client import ServingClient
from aimass.serving.config import server_config, write_config
from aimass.serving.rollout import serving_config_path
from aimass.serving.server import ModelServer

pytestmark = [pytest.mark.integration, pytest.mark.slow]

DS = "2026-11-20"
RUN_ID = "manual__2026-11-20T08:00:00+00:00"


@pytest.fixture
def server(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Iterator[ServingClient]:
    """An empty model server that the stages find through the settings, as in Airflow."""
    write_config(serving_config_path(settings), server_config([]))
    server = ModelServer(config_file=serving_config_path(settings), poll_seconds=0.5)
    server.start()
    client = ServingClient(server.grpc_target, server.rest_url)
    monkeypatch.setenv("AIMASS_SERVING_GRPC_PORT", client.grpc_target.rsplit(":", 1)[1])
    monkeypatch.setenv("AIMASS_SERVING_REST_PORT", client.rest_url.rsplit(":", 1)[1])
    try:
        yield client
    finally:
        client.close()
        server.stop()


@pytest.fixture(autouse=True)
def sample_is_an_input(taxi_csv: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The sample's folder is an allowed data root, as AIMASS_DATA_ROOTS makes it."""
    monkeypatch.setenv("AIMASS_DATA_ROOTS", str(taxi_csv.parent))


def _checks(settings: Settings, run_report: Path, rows: int) -> DataChecks:
    """What validate_quality hands on (its GX run is tested in test_quality.py)."""
    clean = {
        "dataset": "chicago_taxi",
        "ds": DS,
        "rows_in": rows,
        "rows_clean": rows,
        "rows_quarantined": 0,
        "rows_duplicate": 0,
    }
    (run_report / "clean_summary.json").write_text(json.dumps(clean))
    return DataChecks.of(
        {"clean": clean, "quality": {"success": True, "expectations": 3, "passed": 3}}
    )


def test_a_run_trains_registers_deploys_and_records_its_lineage(
    settings: Settings, server: ServingClient, taxi_csv: Path
) -> None:
    from aimass.platform import tracking
    from aimass.stages.retrain import deploy_model, evaluate_candidate, prepare_run, train_model
    from aimass.stages.summary import publish_summary

    spec = load_spec("chicago_taxi", settings.conf_dir)
    run = prepare_run(
        # The spec's 5 epochs: one leaves the model too poorly calibrated for the ece bar.
        {"ds": DS, "input_path": str(taxi_csv), "workers": 1},
        dag_id="aimass_retrain",
        run_id=RUN_ID,
        run_date=datetime(2026, 11, 20, 8),
    )
    assert Path(run.report_dir) == settings.run_report_dir("chicago_taxi", DS, RUN_ID)
    # The run's batch, recorded in its day and pinned in its view as validate_quality does:
    # training, the gate, the card and the deployment read the view.
    from aimass.stages.batches import record_run_batch

    write_partition(taxi_csv, Path(run.batch_dir), spec)
    partition = Path(run.clean_dir)
    checks = _checks(settings, Path(run.report_dir), rows=2999)
    record_run_batch(run, checks.clean)
    assert run.training_data == Path(run.view_file)

    model = train_model(run.dump(), checks.dump())
    assert TrainingResult.read(run.records_dir / "training.json") == model
    assert model.registry_version == "1" and model.workers == 1
    mlc = tracking.client(settings)
    mlrun = mlc.get_run(model.mlflow_run_id)
    assert mlrun.data.tags["aimass.partition"] == str(partition)
    assert mlrun.data.tags["aimass.data"] == run.view_file
    assert mlrun.data.tags["aimass.run_key"] == run.run_key
    assert mlrun.data.params["epochs"] == "5"
    assert mlrun.data.metrics["rows_clean"] == 2999
    artifacts = {a.path for a in mlc.list_artifacts(model.mlflow_run_id)}
    assert {"saved_model", "reference", "records", "training", "data"} <= artifacts
    assert mlc.get_model_version("chicago_taxi", "1").run_id == model.mlflow_run_id

    decision = evaluate_candidate(run, model, triggered_by="ana")
    assert decision.passed, (
        decision.reasons and decision.deploy and decision.champion_version is None
    )
    assert GateDecision.read(run.records_dir / "gate.json") == decision
    assert Path(decision.report_html or "").parent == Path(run.report_dir)
    assert mlc.get_run(model.mlflow_run_id).data.tags["aimass.gate"] == "passed"
    # the version's model card, beside the gate report and in MLflow
    card = json.loads((Path(run.report_dir) / "model_card.json").read_text())
    assert card["registry_version"] == "1" and card["missing"] == {}, card["missing"]
    assert card["data"]["rows_holdout"] == card["metrics"]["overall"]["rows"]
    importance = card["importance"]
    assert {f["feature"] for f in importance["features"]} == set(card["features"]["model_inputs"])
    assert importance["features"][0]["mean"] > 0.01  # the model leans on something
    assert importance["slices"] and importance["rows_used"] == importance["rows_total"]
    assert sum(b["rows"] for b in card["calibration"]["bins"]) == importance["rows_total"]
    html = (Path(run.report_dir) / "model_card.html").read_text()
    assert html.count('<svg xmlns="http://www.w3.org/2000/svg"') == 4
    logged = {a.path for a in mlc.list_artifacts(model.mlflow_run_id, "model_card")}
    assert logged == {
        f"model_card/{n}" for n in ("model_card.json", "model_card.html", "analysis.json")
    }
    assert mlc.get_model_version("chicago_taxi", "1").tags["aimass.model_card"] == "complete"

    deployment = deploy_model(run, model)
    assert deployment.serving_version == 1 and deployment.registry_version == "1"
    assert Deployment.read(run.records_dir / "deployment.json") == deployment
    assert str(tracking.version_by_alias(settings, "chicago_taxi", "champion").version) == "1"
    served = mlc.get_model_version("chicago_taxi", "1").tags[tracking.SERVING_VERSION_TAG]
    assert served == "1"
    answer = server.predict_rest("chicago_taxi", [deployment.rest_instance], label="stable")
    assert 0.0 <= answer[0] <= 1.0

    summary = publish_summary(run, checks, model, decision, deployment, None)
    assert summary.outcome == "deployed"
    lineage = summary.lineage
    assert (lineage.partition, lineage.dag_run) == (str(partition), run.run_key)
    assert lineage.batches == [run.batch_dir]
    assert (lineage.mlflow_run_id, lineage.registry_version) == (model.mlflow_run_id, "1")
    assert lineage.serving_version == 1
    [listed] = RecordStore(settings.reports_dir).runs("chicago_taxi")
    assert isinstance(listed, RunSummary) and listed == summary
    # the MLflow run holds every record of the run, the summary with its lineage included
    logged = {a.path for a in mlc.list_artifacts(model.mlflow_run_id, "records")}
    assert {
        f"records/{k}.json" for k in ("request", "checks", "gate", "deployment", "summary")
    } <= (logged)


def test_a_rejected_candidate_leaves_production_and_says_so(
    settings: Settings, taxi_csv: Path, tmp_path: Path
) -> None:
    """A second run whose gate rejects: no deployment, the champion unchanged, outcome rejected."""
    from aimass.platform import tracking
    from aimass.stages.retrain import evaluate_candidate, prepare_run, train_model
    from aimass.stages.summary import publish_summary

    spec = load_spec("chicago_taxi", settings.conf_dir)
    run = prepare_run(
        {"ds": DS, "input_path": str(taxi_csv), "epochs": 1, "workers": 1, "min_auc": 0.999},
        dag_id="aimass_retrain",
        run_id=RUN_ID,
        run_date=datetime(2026, 11, 20, 8),
    )
    write_partition(taxi_csv, Path(run.clean_dir), spec)
    checks = _checks(settings, Path(run.report_dir), rows=2999)
    model = train_model(run, checks)
    decision = evaluate_candidate(run, model)
    assert not decision.passed and not decision.deploy
    assert any("auc" in reason for reason in decision.reasons)
    assert tracking.version_by_alias(settings, "chicago_taxi", "champion") is None

    summary = publish_summary(run, checks, model, decision, None)
    assert summary.outcome == "rejected" and summary.deployment is None
    assert summary.lineage.registry_version == model.registry_version
    assert summary.lineage.serving_version is None
