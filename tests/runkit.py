"""Stage records for tests that call one stage alone, with only what that stage reads set."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from aimass.platform.records import RunRequest, TrainingResult


def run_request(
    *, dataset: str, clean_dir: Path | str, report_dir: Path | str, **overrides: Any
) -> dict[str, Any]:
    """A ``RunRequest`` (as XCom carries it) for ``dataset`` with the given folders."""
    fields: dict[str, Any] = {
        "dataset": dataset,
        "ds": "2026-11-25",
        "input_path": "",
        "workers": 1,
        "dag_id": "aimass_retrain",
        "run_id": "manual__1",
        "run_key": "aimass_retrain/manual__1",
        "clean_dir": str(clean_dir),
        "quarantine_dir": str(Path(clean_dir).parent / "quarantine"),
        "report_dir": str(report_dir),
        "clean_summary": str(Path(report_dir) / "clean_summary.json"),
        "run_dir": str(Path(report_dir) / "run"),
    }
    return RunRequest(**{**fields, **overrides}).dump()


def training_result(
    *, saved_model_dir: Path | str, registry_version: str, mlflow_run_id: str
) -> dict[str, Any]:
    """A ``TrainingResult`` (as XCom carries it) of a model registered elsewhere in the test."""
    return TrainingResult(
        mlflow_run_id=mlflow_run_id,
        experiment_id="0",
        mlflow_run_url="",
        registry_version=registry_version,
        saved_model_dir=str(saved_model_dir),
        workers=1,
        hparams_source="spec",
        train_seconds=0.0,
    ).dump()
