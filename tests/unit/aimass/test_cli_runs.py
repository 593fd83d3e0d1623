"""`aimass runs`: the runs and records a user sees, read from the stage records."""

from __future__ import annotations

import json

import pytest

from aimass.cli import main
from aimass.platform.records import Lineage, RunRequest, RunSummary
from aimass.platform.settings import Settings

pytestmark = pytest.mark.unit


def _run(settings: Settings, run_id: str) -> RunRequest:
    report = settings.run_report_dir("chicago_taxi", "2026-11-25", run_id)
    return RunRequest(
        dataset="chicago_taxi",
        ds="2026-11-25",
        input_path="/in.csv",
        workers=1,
        dag_id="aimass_retrain",
        run_id=run_id,
        run_key=f"aimass_retrain/{run_id}",
        clean_dir="/lake/clean",
        quarantine_dir="/lake/q",
        report_dir=str(report),
        clean_summary=str(report / "clean_summary.json"),
        run_dir="/runs/x",
        requested_at=f"2026-11-25T0{run_id[-1]}:00:00",
    )


def test_runs_lists_each_run_with_its_outcome_and_versions(
    settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    done, going = _run(settings, "manual__1"), _run(settings, "manual__2")
    for run in (done, going):
        run.write(run.records_dir)
    RunSummary(
        dataset="chicago_taxi",
        ds=done.ds,
        run_id=done.run_id,
        outcome="deployed",
        lineage=Lineage(registry_version="4", serving_version=3),
        requested_at=done.requested_at,
    ).write(done.records_dir)

    assert main(["runs"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "manual__2" in lines[0] and "no summary" in lines[0]
    assert "manual__1" in lines[1] and "deployed" in lines[1]
    assert "registry v4 serving v3" in lines[1]

    assert main(["runs", "chicago_taxi", "manual__1"]) == 0
    out = capsys.readouterr().out
    assert "== request" in out and "== summary" in out
    body = out.split("== summary\n", 1)[1]
    assert json.loads(body)["outcome"] == "deployed"


def test_an_unknown_run_is_a_message_not_a_traceback(
    settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["runs", "chicago_taxi", "manual__nope"]) == 2
    assert "no records of run 'manual__nope'" in capsys.readouterr().err


def _summary(run: RunRequest, outcome: str = "deployed") -> RunSummary:
    from aimass.platform.records import CleanResult, Deployment, QualityResult, TrainingResult

    model = TrainingResult(
        mlflow_run_id="abc",
        experiment_id="1",
        mlflow_run_url="http://mlflow/abc",
        registry_version="4",
        saved_model_dir="/m",
        workers=2,
        hparams_source="spec",
        train_seconds=12.5,
    )
    deployment = Deployment(
        serving_version=3,
        previous_version=2,
        registry_version="4",
        rest_instance={"fare": 12.5, "company": "Flash Cab"},
    )
    return RunSummary(
        dataset=run.dataset,
        ds=run.ds,
        run_id=run.run_id,
        outcome=outcome,
        clean=CleanResult(
            dataset=run.dataset, ds=run.ds, rows_in=100, rows_clean=90, rows_quarantined=10
        ),
        quality=QualityResult(success=True, expectations=12, passed=12),
        model=model,
        gate={
            "passed": True,
            "candidate": {"auc": 0.81234},
            "champion": {"auc": 0.8},
            "champion_version": "3",
            "task": "binary",
            "primary_metric": "auc",
            "checks": ["auc 0.8123 >= 0.6"],
            "compression": {"chosen": None, "why": "no variant clears the compression bars"},
        },
        deployment=deployment,
        lineage=Lineage(registry_version="4", serving_version=3),
        trigger={
            "input": {
                "from": "landing",
                "path": "/landing/processed/ds=2026-11-25",
                "detail": "the newest landed day",
            }
        },
        links={"model_card": "/reports/model_card.html"},
        requested_at=run.requested_at,
    )


def test_runs_show_prints_the_demo_summary_of_the_newest_or_the_named_run(
    settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    old, new = _run(settings, "manual__1"), _run(settings, "manual__2")
    for run in (old, new):
        run.write(run.records_dir)
    _summary(old).write(old.records_dir)

    assert main(["runs", "show"]) == 0
    out = capsys.readouterr().out
    assert "run manual__2 of chicago_taxi ds=2026-11-25: NO SUMMARY" in out
    assert "records  request in" in out

    assert main(["runs", "show", "chicago_taxi", "manual__1"]) == 0
    out = capsys.readouterr().out
    assert "== AI Mass: aimass_retrain run manual__1 of chicago_taxi ds=2026-11-25: DEPLOYED" in out
    assert "data     chicago_taxi ds=2026-11-25: rows in 100, clean 90, quarantined 10" in out
    assert "quality  passed: 12/12 expectations" in out
    assert (
        "model    registry version 4 (binary) trained on 2 worker(s) in 12.5 s; holdout auc 0.8123"
        in out
    )
    assert "gate     PASSED against champion v3 (auc 0.8000)" in out
    assert "input    /landing/processed/ds=2026-11-25 (the newest landed day)" in out
    assert "compress no variant clears the compression bars" in out
    assert "card     model card (importance, calibration, slices): /reports/model_card.html" in out
    assert "deploy   serving version 3 is 'stable' (previous 2)" in out
    # Without --predict the model server is not asked; the example row is shown.
    assert (
        "example row company='Flash Cab', fare=12.5; ask the model server now with --predict" in out
    )
    assert "password: admin_password in" in out


def test_runs_show_names_what_exists_when_the_dataset_or_run_is_unknown(
    settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["runs", "show"]) == 2
    assert "no runs recorded under" in capsys.readouterr().err
    run = _run(settings, "manual__1")
    run.write(run.records_dir)
    assert main(["runs", "show", "taxi"]) == 2
    assert capsys.readouterr().err.strip() == (
        "error: no runs of dataset 'taxi'; datasets with runs: ['chicago_taxi']"
    )
    assert main(["runs", "show", "chicago_taxi", "manual__9"]) == 2
    assert capsys.readouterr().err.strip() == (
        "error: no run 'manual__9' of chicago_taxi; its runs, newest first: ['manual__1']"
    )


def test_runs_show_from_the_command_line(settings: Settings) -> None:
    import subprocess
    import sys

    run = _run(settings, "manual__1")
    run.write(run.records_dir)
    _summary(run, outcome="rejected").write(run.records_dir)
    proc = subprocess.run(
        [sys.executable, "-m", "aimass.cli", "runs", "show", "chicago_taxi"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "run manual__1 of chicago_taxi ds=2026-11-25: REJECTED" in proc.stdout
    proc = subprocess.run(
        [sys.executable, "-m", "aimass.cli", "runs", "show", "nope"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().endswith(
        "no runs of dataset 'nope'; datasets with runs: ['chicago_taxi']"
    )
