"""A real model server records what it serves; the monitor compares it with the champion's reference."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from testkit import save_tiny_model, write_partition

from aimass.data.drift import profile_partition, save_profile
from aimass.data.monitor import monitor_dataset
from aimass.data.spec import load_spec
from aimass.platform import tracking
from aimass.platform.settings import Settings
from aimass.platform.tracking import REFERENCE_ARTIFACT, REFERENCE_PROFILE
from aimass.serving.client import ServingClient
from aimass.serving.request_log import RequestLog, recent_requests_path
from aimass.serving.server import ModelServer, single_model_config

pytestmark = pytest.mark.integration

MODEL = "chicago_taxi"  # served under the dataset's name, as deploy_model does


@pytest.fixture
def served_rows(settings: Settings, taxi_csv: Path, tmp_path: Path) -> pa.Table:
    """Rows a client could send (no null inputs); their train split is the champion's reference."""
    import mlflow

    spec = load_spec("chicago_taxi")
    table = pq.read_table(write_partition(taxi_csv, tmp_path / "lake" / "ds=2026-11-01", spec))
    table = table.filter(
        pc.and_(pc.is_valid(table.column("company")), pc.is_valid(table.column("trip_start_hour")))
    )
    partition = tmp_path / "clean" / "ds=2026-11-01"
    partition.mkdir(parents=True)
    pq.write_table(table, partition / "part-00000.parquet")
    profile = save_profile(
        profile_partition(partition, spec, split="train"), tmp_path / REFERENCE_PROFILE
    )
    with mlflow.start_run(experiment_id=tracking.experiment_id(settings, spec.name)) as run:
        mlflow.log_artifact(str(profile), artifact_path=REFERENCE_ARTIFACT)
        mlflow.log_text("not a real model", f"{tracking.MODEL_ARTIFACT}/README.txt")
    version = tracking.register_version(
        settings, spec.name, run_id=run.info.run_id, run_key="test/1", tags={}
    )
    tracking.promote(settings, spec.name, version)
    return table


def _send(client: ServingClient, table: pa.Table, fare_factor: float = 1.0) -> None:
    for batch in table.to_batches(max_chunksize=100):
        fare = batch.column("fare").to_numpy(zero_copy_only=False) * fare_factor
        out = client.predict_grpc(
            MODEL,
            {
                "fare": fare.astype(np.float32),
                "company": np.array(batch.column("company").to_pylist(), dtype=object),
                "trip_start_hour": batch.column("trip_start_hour").to_numpy(),
            },
        )
        assert out["probabilities"].shape == (batch.num_rows,)


def test_normal_requests_are_ok_and_shifted_ones_critical(
    settings: Settings, served_rows: pa.Table, tmp_path: Path
) -> None:
    save_tiny_model(tmp_path / "models" / MODEL / "1", bias=0.0)
    # Room for one pass over the rows: the shifted pass pushes the normal one out.
    log = RequestLog(
        settings.requests_dir, sample=1.0, max_rows=served_rows.num_rows, flush_seconds=3600
    )
    server = ModelServer(
        single_model_config(MODEL, tmp_path / "models" / MODEL),
        rest_port=None,
        poll_seconds=0,
        request_log=log,
    ).start()
    try:
        client = ServingClient(server.grpc_target, "http://127.0.0.1:9")
        try:
            _send(client, served_rows)
            log.flush()
            recorded = pq.read_table(recent_requests_path(settings.requests_dir, MODEL))
            assert recorded.num_rows == served_rows.num_rows
            assert set(recorded.column("model_version").to_pylist()) == {"1"}
            first = monitor_dataset(settings, MODEL)
            assert first["status"] == "ok", first

            _send(client, served_rows, fare_factor=3.0)
        finally:
            client.close()
    finally:
        server.stop()  # persists the shifted requests
    second = monitor_dataset(settings, MODEL)
    assert second["status"] == "critical", second
    assert second["critical_features"] == ["fare"]
    assert second["champion_version"] == "1"
    assert Path(second["report_html"]).is_file()


def test_a_shifted_batch_the_champion_never_saw_is_critical(
    settings: Settings, served_rows: pa.Table
) -> None:
    """No requests recorded: the monitor still compares the newest clean batch."""
    import os

    clean = settings.lake_dir / "clean" / MODEL
    trained_on = clean / "ds=2026-11-01"  # written before the champion was registered
    trained_on.mkdir(parents=True)
    pq.write_table(served_rows, trained_on / "part-00000.parquet")
    os.utime(trained_on / "part-00000.parquet", (0, 0))
    assert monitor_dataset(settings, MODEL)["status"] == "skipped"

    shifted = served_rows.set_column(
        served_rows.schema.get_field_index("fare"),
        "fare",
        pc.multiply(served_rows.column("fare"), 3.0),
    )
    new = clean / "ds=2026-11-02"
    new.mkdir(parents=True)
    pq.write_table(shifted, new / "part-00000.parquet")
    out = monitor_dataset(settings, MODEL)
    assert out["status"] == "critical", out
    assert out["checks"]["requests"]["status"] == "skipped"
    assert out["critical_features"] == ["fare"] and out["partition"] == str(new)
    assert "new batch ds=2026-11-02" in out["reason"] and "champion v1" in out["reason"]
    assert Path(out["report_html"]).parent.name == "batch"
