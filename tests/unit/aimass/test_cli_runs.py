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
