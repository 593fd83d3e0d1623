"""The check_drift stage against a real MLflow registry: the champion's reference decides."""

from __future__ import annotations

from pathlib import Path

import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from runkit import run_request
from testkit import write_partition

from aimass.data.drift import profile_partition, save_profile
from aimass.data.spec import load_spec
from aimass.platform import tracking
from aimass.platform.settings import Settings
from aimass.platform.tracking import REFERENCE_ARTIFACT, REFERENCE_PROFILE
from aimass.stages.retrain import check_drift

pytestmark = pytest.mark.integration


@pytest.fixture
def reference(settings: Settings, taxi_csv: Path, tmp_path: Path) -> Path:
    """A clean partition whose train split is recorded as the champion's reference in MLflow."""
    import mlflow

    spec = load_spec("chicago_taxi")
    partition = write_partition(taxi_csv, tmp_path / "ref" / "ds=2026-11-01", spec)
    profile = save_profile(
        profile_partition(partition, spec, split="train"), tmp_path / REFERENCE_PROFILE
    )
    exp = tracking.experiment_id(settings, spec.name)
    with mlflow.start_run(experiment_id=exp) as run:
        mlflow.log_artifact(str(profile), artifact_path=REFERENCE_ARTIFACT)
        mlflow.log_text("not a real model", f"{tracking.MODEL_ARTIFACT}/README.txt")
    version = tracking.register_version(
        settings, spec.name, run_id=run.info.run_id, run_key="test/1", tags={}
    )
    tracking.promote(settings, spec.name, version)
    return partition


def _ctx(partition: Path, tmp_path: Path) -> dict:
    report = tmp_path / "reports"
    report.mkdir(exist_ok=True)
    return run_request(dataset="chicago_taxi", clean_dir=partition, report_dir=report)


def test_no_champion_means_nothing_to_compare(
    settings: Settings, taxi_csv: Path, tmp_path: Path
) -> None:
    partition = write_partition(taxi_csv, tmp_path / "ds=2026-11-02", load_spec("chicago_taxi"))
    result = check_drift(_ctx(partition, tmp_path))
    assert (result.status, result.reason) == ("skipped", "no champion yet")
    assert result.critical_features == [] and result.report_html is None


def test_same_data_is_ok_and_reported(reference: Path, tmp_path: Path) -> None:
    out = check_drift(_ctx(reference, tmp_path)).dump()
    assert out["status"] == "ok", out
    assert out["champion_version"] == "1"
    assert Path(out["report_html"]).exists() and Path(out["report_json"]).exists()


def test_tripled_fares_are_critical_and_flagged(reference: Path, tmp_path: Path) -> None:
    shifted = tmp_path / "shifted" / "ds=2026-11-03"
    shifted.mkdir(parents=True)
    for part in sorted(reference.glob("*.parquet")):
        table = pq.read_table(part)
        fare = table.column("fare")
        table = table.set_column(
            table.schema.get_field_index("fare"), "fare", pc.multiply(fare, 3.0)
        )
        pq.write_table(table, shifted / part.name)
    out = check_drift(_ctx(shifted, tmp_path)).dump()
    assert out["status"] == "critical"
    assert "fare" in out["critical_features"]
    assert out["action"] == "flag"  # the taxi spec flags and retrains rather than failing the run
