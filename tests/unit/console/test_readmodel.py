"""The console's read model joins the records of each run and picks the champion."""

from __future__ import annotations

from pathlib import Path

import pytest

from aimass.console.readmodel import Partition, ReadModel
from aimass.platform.records import (
    CleanResult,
    Deployment,
    RollbackRecord,
    RunRequest,
    TrainingResult,
)
from aimass.platform.settings import Settings

pytestmark = pytest.mark.unit


@pytest.fixture
def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.setenv("AIMASS_VAR_DIR", str(tmp_path / "var"))
    return Settings.from_env()


def _run(settings: Settings, n: int, *, deployed: bool) -> None:
    run_id = f"manual__2026-11-0{n}"
    folder = settings.run_report_dir("chicago_taxi", f"2026-11-0{n}", run_id)
    RunRequest(
        dataset="chicago_taxi",
        ds=f"2026-11-0{n}",
        input_path="",
        workers=1,
        dag_id="aimass_retrain",
        run_id=run_id,
        run_key=f"aimass_retrain/{run_id}",
        clean_dir="",
        quarantine_dir="",
        report_dir=str(folder),
        clean_summary="",
        run_dir="",
        requested_at=f"2026-11-0{n}T02:00:00+00:00",
    ).write(folder / "records")
    TrainingResult(
        mlflow_run_id=f"run{n}",
        experiment_id="1",
        mlflow_run_url="",
        registry_version=str(n),
        saved_model_dir="",
        workers=1,
        hparams_source="spec",
        train_seconds=1.0,
    ).write(folder / "records")
    if deployed:
        Deployment(serving_version=n, registry_version=str(n)).write(folder / "records")


def test_versions_are_newest_first_and_the_newest_event_decides_the_champion(
    settings: Settings,
) -> None:
    read = ReadModel(settings)
    for n, deployed in ((1, True), (2, True), (3, False)):
        _run(settings, n, deployed=deployed)
    versions = read.versions("chicago_taxi")
    assert [v.registry_version for v in versions] == ["3", "2", "1"]
    assert [v.serving_version for v in versions] == [None, 2, 1]
    champion = read.champion("chicago_taxi")
    assert champion is not None and (champion.registry_version, champion.run_id) == (
        "2",
        "manual__2026-11-02",
    )
    # a rollback after the second deploy makes the first champion again, naming who and why
    RollbackRecord(
        dataset="chicago_taxi",
        version=1,
        stable=1,
        reason="v2 answers worse, INC-7",
        who="alice",
        serving_version=1,
        rolled_back_from=2,
        registry_version="1",
        at="2026-11-02T09:00:00+00:00",
    ).write(settings.reports_dir / "chicago_taxi" / "rollbacks", "r1")
    champion = read.champion("chicago_taxi")
    assert champion is not None and champion.registry_version == "1"
    assert champion.how == "rolled back by alice: v2 answers worse, INC-7"


def test_quarantine_reasons_add_up_over_partitions_with_the_newest_samples() -> None:
    def partition(reasons: dict[str, int], samples: dict[str, list[dict[str, str]]]) -> Partition:
        clean = CleanResult(
            dataset="d",
            ds="2026-11-01",
            rows_in=10,
            rows_clean=10 - sum(reasons.values()),
            rows_quarantined=sum(reasons.values()),
            quarantine_reasons=reasons,
            quarantine_samples=samples,
        )
        return Partition("2026-11-01", "r", "aimass_retrain", "", clean, None)

    newest = partition({"malformed": 2}, {"malformed": [{"raw": "a,b", "reason": "malformed"}]})
    older = partition(
        {"malformed": 1, "rule fare": 3}, {"malformed": [{"raw": "old", "reason": "malformed"}]}
    )
    reasons = ReadModel.quarantine_reasons([newest, older])
    assert reasons == [
        ("malformed", 3, [{"raw": "a,b", "reason": "malformed"}]),
        ("rule fare", 3, []),
    ]


def test_only_files_under_the_reports_folder_are_served(settings: Settings) -> None:
    read = ReadModel(settings)
    report = settings.reports_dir / "chicago_taxi" / "gate_report.html"
    report.parent.mkdir(parents=True)
    report.write_text("<html></html>", encoding="utf-8")
    (settings.var_dir / "airflow").mkdir(parents=True)
    (settings.var_dir / "airflow" / "aimass-secrets.json").write_text("{}", encoding="utf-8")
    assert read.report_file("chicago_taxi/gate_report.html") == report.resolve()
    assert read.report_link(str(report)) == "files/chicago_taxi/gate_report.html"
    assert read.report_link(str(settings.var_dir / "airflow" / "aimass-secrets.json")) is None
    for bad in ("../airflow/aimass-secrets.json", "/etc/passwd", "chicago_taxi", "nope.html"):
        with pytest.raises(FileNotFoundError):
            read.report_file(bad)
