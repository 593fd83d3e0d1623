"""Stage records: JSON round trips, schema versions, and the one reader over a reports folder."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from aimass.platform.errors import ConfigError
from aimass.platform.records import (
    SCHEMA_VERSION,
    DataChecks,
    Deployment,
    GateDecision,
    Lineage,
    RecordStore,
    RollbackRecord,
    RunRequest,
    RunSummary,
    TrainingResult,
)
from aimass.platform.settings import Settings

pytestmark = pytest.mark.unit


def request(settings: Settings, run_id: str, ds: str = "2026-11-25", at: str = "") -> RunRequest:
    report_dir = settings.run_report_dir("chicago_taxi", ds, run_id)
    return RunRequest(
        dataset="chicago_taxi",
        ds=ds,
        input_path="/data/in.csv",
        workers=2,
        dag_id="aimass_retrain",
        run_id=run_id,
        run_key=f"aimass_retrain/{run_id}",
        clean_dir=str(settings.clean_partition("chicago_taxi", ds)),
        quarantine_dir=str(settings.quarantine_partition("chicago_taxi", ds)),
        report_dir=str(report_dir),
        clean_summary=str(report_dir / "clean_summary.json"),
        run_dir=str(settings.runs_dir / "chicago_taxi" / run_id),
        **({"requested_at": at} if at else {}),
    )


def training(version: str) -> TrainingResult:
    return TrainingResult(
        mlflow_run_id=f"run{version}",
        experiment_id="1",
        mlflow_run_url=f"http://127.0.0.1:5000/#/experiments/1/runs/run{version}",
        registry_version=version,
        saved_model_dir="/runs/export",
        workers=2,
        hparams_source="spec",
        train_seconds=12.5,
    )


def decision(run: RunRequest, version: str, passed: bool) -> GateDecision:
    return GateDecision(
        passed=passed,
        deploy=passed,
        verdict="passed" if passed else "rejected",
        candidate={"auc": 0.9},
        dataset=run.dataset,
        ds=run.ds,
        run_id=run.run_id,
        candidate_version=version,
        task="binary",
        primary_metric="auc",
        reasons=[] if passed else ["overall auc 0.61 < bar 0.70"],
    )


def test_a_record_round_trips_through_its_dump_and_its_file(settings: Settings) -> None:
    run = request(settings, "manual__2026-11-25T10:00:00+00:00")
    assert RunRequest.of(run.dump()) == run
    assert RunRequest.of(run) is run
    path = run.write(run.records_dir)
    assert path == run.records_dir / "request.json"
    stored = json.loads(path.read_text())
    assert stored["schema_version"] == SCHEMA_VERSION and stored["run_id"] == run.run_id
    assert RunRequest.read(path) == run


def test_records_are_frozen(settings: Settings) -> None:
    run = request(settings, "manual__1")
    with pytest.raises(ValueError, match="frozen"):
        run.workers = 3  # type: ignore[misc]


def test_a_newer_schema_is_refused_with_what_to_do(tmp_path: Path) -> None:
    path = tmp_path / "training.json"
    path.write_text(json.dumps({**training("3").dump(), "schema_version": SCHEMA_VERSION + 1}))
    with pytest.raises(ConfigError, match="upgrade AI Mass"):
        TrainingResult.read(path)


def test_an_older_record_reads_with_the_defaults_of_fields_added_since(tmp_path: Path) -> None:
    stored = {k: v for k, v in training("3").dump().items() if k != "schema_version"}
    path = tmp_path / "training.json"
    path.write_text(json.dumps({**stored, "a_field_from_elsewhere": 1}))
    assert TrainingResult.read(path) == training("3")


def test_deployment_keeps_the_rollouts_smoke_answers() -> None:
    deployed = Deployment.of(
        {"serving_version": 2, "registry_version": "5", "rest_instance": {"fare": 9.5}}
    )
    assert deployed.dump()["rest_instance"] == {"fare": 9.5}


def test_two_runs_of_one_day_keep_their_own_records(settings: Settings) -> None:
    first = request(settings, "manual__a", at="2026-11-25T10:00:00+00:00")
    second = request(settings, "manual__b", at="2026-11-25T11:00:00+00:00")
    for run, version, passed in ((first, "1", True), (second, "2", False)):
        run.write(run.records_dir)
        training(version).write(run.records_dir)
        decision(run, version, passed).write(run.records_dir)
    assert first.records_dir != second.records_dir

    store = RecordStore(settings.reports_dir)
    assert [d.candidate_version for d in store.decisions("chicago_taxi")] == ["2", "1"]
    assert [d.passed for d in store.decisions("chicago_taxi")] == [False, True]
    assert [t.registry_version for t in store.trainings("chicago_taxi")] == ["2", "1"]
    assert store.datasets() == ["chicago_taxi"]
    records = store.run("chicago_taxi", "manual__a")
    assert sorted(records) == ["gate", "request", "training"]
    assert records["training"] == training("1")
    with pytest.raises(ConfigError, match="no records of run 'manual__z'"):
        store.run("chicago_taxi", "manual__z")


def test_runs_list_a_summary_or_the_request_of_a_run_without_one(settings: Settings) -> None:
    done = request(settings, "scheduled__1", at="2026-11-24T02:00:00+00:00")
    going = request(settings, "manual__2", ds="2026-11-26", at="2026-11-26T09:00:00+00:00")
    done.write(done.records_dir)
    going.write(going.records_dir)
    summary = RunSummary(
        dataset=done.dataset,
        ds=done.ds,
        run_id=done.run_id,
        outcome="deployed",
        model=training("1"),
        deployment=Deployment(serving_version=1, registry_version="1"),
        lineage=Lineage(
            landed_files=["a.csv"],
            partition=done.clean_dir,
            dag_run=done.run_key,
            mlflow_run_id="run1",
            registry_version="1",
            serving_version=1,
        ),
        requested_at=done.requested_at,
    )
    summary.write(done.records_dir)
    runs = RecordStore(settings.reports_dir).runs("chicago_taxi")
    assert [type(r).__name__ for r in runs] == ["RunRequest", "RunSummary"]
    assert runs[1] == summary and runs[1].lineage.serving_version == 1


def test_rollbacks_are_listed_newest_first(settings: Settings) -> None:
    folder = settings.reports_dir / "chicago_taxi" / "rollbacks"
    for at, version in (("2026-11-25T10:00:00", 3), ("2026-11-26T10:00:00", 2)):
        RollbackRecord(
            dataset="chicago_taxi",
            version=version,
            stable=version + 1,
            reason="latency regression after deploy",
            who="admin",
            serving_version=version,
            rolled_back_from=version + 1,
            at=at,
        ).write(folder, f"{at}-v{version}")
    store = RecordStore(settings.reports_dir)
    assert [r.version for r in store.rollbacks("chicago_taxi")] == [2, 3]
    assert store.rollbacks("penguins") == []


def test_data_checks_carry_typed_clean_counts() -> None:
    checks = DataChecks.of(
        {
            "clean": {
                "dataset": "d",
                "ds": "2026-11-25",
                "rows_in": 10,
                "rows_clean": 7,
                "rows_quarantined": 2,
                "rows_duplicate": 1,
            },
            "quality": {"success": True, "expectations": 4, "passed": 4},
        }
    )
    clean = checks.clean
    assert clean.rows_in == clean.rows_clean + clean.rows_quarantined + clean.rows_duplicate
    # A record written before the samples existed reads with none.
    assert clean.quarantine_samples == {}


def test_quarantine_samples_flow_from_the_clean_summary_to_the_run_summary(
    tmp_path: Path,
) -> None:
    samples = {"rule fare_not_negative": [{"raw": "1,-2.0", "reason": "rule fare_not_negative"}]}
    clean_summary = {
        "dataset": "d",
        "ds": "2026-11-25",
        "rows_in": 1,
        "rows_clean": 0,
        "rows_quarantined": 1,
        "quarantine_reasons": {"rule fare_not_negative": 1},
        "quarantine_samples": samples,
        "out": "/lake/clean",  # summary keys the record does not keep are ignored
    }
    checks = DataChecks.of(
        {"clean": clean_summary, "quality": {"success": True, "expectations": 1, "passed": 1}}
    )
    summary = RunSummary(
        dataset="d",
        ds="2026-11-25",
        run_id="manual__1",
        outcome="stopped",
        clean=checks.clean,
        lineage=Lineage(),
    )
    back = RunSummary.read(summary.write(tmp_path))
    assert back.clean is not None and back.clean.quarantine_samples == samples
    assert DataChecks.read(checks.write(tmp_path)).clean.quarantine_samples == samples
