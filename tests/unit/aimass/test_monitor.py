"""Request log (sampling, bounds, atomic Parquet) and the monitor against a reference profile."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from testkit import write_partition

from aimass.data import monitor
from aimass.data.drift import profile_partition
from aimass.data.monitor import monitor_dataset
from aimass.data.spec import load_spec
from aimass.platform.settings import Settings
from aimass.serving.request_log import RequestLog, recent_requests_path

pytestmark = pytest.mark.unit

FEATURES = ("fare", "company", "trip_start_hour")


def _rows(n: int, start: int = 0) -> dict[str, np.ndarray]:
    return {
        "fare": np.arange(start, start + n, dtype=np.float32),
        "company": np.array([b"Flash Cab"] * n, dtype=object),
        "trip_start_hour": np.full((n, 1), 7, dtype=np.int64),  # [n, 1] counts as a column
        "embedding": np.zeros((n, 3), dtype=np.float32),  # not one value per row: left out
    }


def test_the_ring_buffer_keeps_the_newest_rows_with_their_types(tmp_path: Path) -> None:
    log = RequestLog(tmp_path, sample=1.0, max_rows=1000)
    for i in range(5):
        assert log.record("taxi", 3, _rows(400, start=400 * i))
    assert log.rows("taxi") == 1000
    [path] = log.flush()
    assert path == recent_requests_path(tmp_path, "taxi")
    table = pq.read_table(path)
    assert table.num_rows == 1000
    assert table.column("fare").to_pylist() == [float(v) for v in range(1000, 2000)]
    schema = {f.name: str(f.type) for f in table.schema}
    assert schema == {
        "fare": "float",
        "company": "string",
        "trip_start_hour": "int64",
        "request_time": "timestamp[us, tz=UTC]",
        "model_version": "string",
    }
    assert set(table.column("model_version").to_pylist()) == {"3"}
    assert set(table.column("company").to_pylist()) == {"Flash Cab"}
    assert log.flush() == []  # nothing new since: nothing written


def test_sampling_records_about_the_given_share(tmp_path: Path) -> None:
    log = RequestLog(tmp_path, sample=0.1, max_rows=100_000, seed=7)
    kept = sum(log.record("taxi", 1, _rows(1)) for _ in range(3000))
    assert 220 <= kept <= 380
    assert log.rows("taxi") == kept
    off = RequestLog(tmp_path, sample=0.0)
    assert not any(off.record("taxi", 1, _rows(1)) for _ in range(100))
    assert off.flush() == []


def test_bad_settings_and_ragged_requests_are_refused(tmp_path: Path) -> None:
    with pytest.raises(Exception, match="share 0..1"):
        RequestLog(tmp_path, sample=1.5)
    with pytest.raises(Exception, match="at least 1 row"):
        RequestLog(tmp_path, max_rows=0)
    log = RequestLog(tmp_path, sample=1.0)
    assert not log.record("taxi", 1, {"a": np.zeros(3), "b": np.zeros(4)})
    assert log.rows("taxi") == 0


def test_a_failed_flush_leaves_the_previous_file_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = RequestLog(tmp_path, sample=1.0, max_rows=100)
    log.record("taxi", 1, _rows(10))
    [path] = log.flush()
    before = path.read_bytes()

    def broken(table: pa.Table, where: str) -> None:
        Path(where).write_bytes(b"PAR1 half written")
        raise OSError("disk full")

    monkeypatch.setattr(pq, "write_table", broken)
    log.record("taxi", 2, _rows(10))
    with pytest.raises(OSError, match="disk full"):
        log.flush()
    assert path.read_bytes() == before
    assert [p.name for p in path.parent.iterdir()] == ["recent.parquet"]  # no temporary left


def test_stop_persists_what_the_flush_thread_has_not_written_yet(tmp_path: Path) -> None:
    log = RequestLog(tmp_path, sample=1.0, flush_seconds=3600).start()
    log.record("taxi", 1, _rows(5))
    log.stop()
    assert pq.read_table(recent_requests_path(tmp_path, "taxi")).num_rows == 5


# --------------------------------------------------------------------------- monitor


@pytest.fixture
def reference(taxi_csv: Path, tmp_path: Path) -> tuple[dict[str, Any], pa.Table]:
    """The train split's profile and the rows a model could be asked about (no null inputs)."""
    spec = load_spec("chicago_taxi")
    partition = write_partition(taxi_csv, tmp_path / "lake" / "ds=2026-11-01", spec)
    table = pq.read_table(partition)
    keep = pc.and_(
        pc.is_valid(table.column("company")), pc.is_valid(table.column("trip_start_hour"))
    )
    table = table.filter(keep)
    served = tmp_path / "served" / "ds=2026-11-01"
    served.mkdir(parents=True)
    pq.write_table(table, served / "part-00000.parquet")
    return profile_partition(served, spec, split="train"), table


def _champion(monkeypatch: pytest.MonkeyPatch, profile: dict[str, Any] | None) -> None:
    champ = SimpleNamespace(version="4", run_id="r")
    monkeypatch.setattr(monitor, "champion_reference", lambda settings, dataset: (champ, profile))


def _serve(settings: Settings, table: pa.Table, fare_factor: float = 1.0) -> None:
    log = RequestLog(settings.requests_dir, sample=1.0)
    for batch in table.to_batches(max_chunksize=50):
        log.record(
            "chicago_taxi",
            4,
            {
                "fare": (batch.column("fare").to_numpy(zero_copy_only=False) * fare_factor).astype(
                    np.float32
                ),
                "company": np.array(
                    [c.encode() for c in batch.column("company").to_pylist()], dtype=object
                ),
                "trip_start_hour": batch.column("trip_start_hour").to_numpy(),
            },
        )
    log.flush()


def test_requests_like_the_training_data_are_ok(
    settings: Settings, reference: tuple, monkeypatch: pytest.MonkeyPatch
) -> None:
    profile, table = reference
    _champion(monkeypatch, profile)
    _serve(settings, table)
    out = monitor_dataset(settings, "chicago_taxi")
    assert out["status"] == "ok", out
    assert out["features"] == ["fare", "company", "trip_start_hour"]
    assert out["schema_changes"] == []  # label, split and unserved features do not count
    assert out["served_versions"] == ["4"] and out["champion_version"] == "4"
    report = Path(out["report_html"])
    assert (
        report.is_file()
        and report.parent.parent == settings.reports_dir / "chicago_taxi" / "monitor"
    )
    datetime.strptime(report.parent.name, "%Y%m%dT%H%M%SZ")


def test_tripled_fares_are_critical(
    settings: Settings, reference: tuple, monkeypatch: pytest.MonkeyPatch
) -> None:
    profile, table = reference
    _champion(monkeypatch, profile)
    _serve(settings, table, fare_factor=3.0)
    out = monitor_dataset(settings, "chicago_taxi")
    assert out["status"] == "critical", out
    assert out["critical_features"] == ["fare"]
    assert "fare" in out["reason"] and "champion v4" in out["reason"]
    assert Path(out["report_json"]).is_file()


def test_nothing_to_compare_is_skipped_with_a_reason(
    settings: Settings, reference: tuple, monkeypatch: pytest.MonkeyPatch
) -> None:
    profile, table = reference
    monkeypatch.setattr(monitor, "champion_reference", lambda settings, dataset: (None, None))
    assert monitor_dataset(settings, "chicago_taxi") == {
        "dataset": "chicago_taxi",
        "status": "skipped",
        "reason": "no champion yet",
    }
    _champion(monkeypatch, None)
    assert "no reference profile" in monitor_dataset(settings, "chicago_taxi")["reason"]
    _champion(monkeypatch, profile)
    assert "no recorded requests" in monitor_dataset(settings, "chicago_taxi")["reason"]
    _serve(settings, table.slice(0, 120))
    out = monitor_dataset(settings, "chicago_taxi", min_rows=200)
    assert out["status"] == "skipped"
    assert out["checks"]["requests"]["reason"] == "too few requests: 120 recorded, 200 needed"
    assert out["reason"].startswith("too few requests") and "no clean batch" in out["reason"]
    assert not (settings.reports_dir / "chicago_taxi" / "monitor").exists()


def test_a_drift_event_retrains_the_dataset_on_its_source(settings: Settings) -> None:
    from aimass.stages.retrain import prepare_run

    source = Path(load_spec("chicago_taxi").resolved_source_path(settings.var_dir))
    source.parent.mkdir(parents=True, exist_ok=True)
    source.write_text("fare\n1\n", encoding="utf-8")
    event = {"dataset": "chicago_taxi", "reason": "critical drift in fare", "report": "r.html"}
    ctx = prepare_run(
        {"dataset": "palmer_penguins"},
        dag_id="aimass_retrain",
        run_id="asset__drift",
        run_date=datetime(2026, 11, 26, 10, 0),
        drifted=[event],
    )
    assert ctx.dataset == "chicago_taxi" and ctx.ds == "2026-11-26"
    assert ctx.input_path == str(source.resolve())
    assert ctx.landed_files == []
    # nothing landed for chicago_taxi: the spec's source, and the record says so
    assert ctx.trigger == {
        "kind": "drift",
        **event,
        "input": {
            "from": "source",
            "path": str(source),
            "detail": "spec chicago_taxi's source.path (nothing landed in "
            f"{settings.landing_location('chicago_taxi')})",
        },
    }


def test_the_demo_model_server_records_requests_under_the_var_dir(settings: Settings) -> None:
    from aimass.stack.services import definitions

    command = definitions(settings)["model-server"].argv
    flag = {command[i]: command[i + 1] for i in range(len(command) - 1)}
    assert flag["--request_log_dir"] == str(settings.var_dir / "serving" / "requests")
    assert float(flag["--request_log_sample"]) == 0.1
    assert int(flag["--request_log_rows"]) == 10_000


def test_a_request_larger_than_the_buffer_keeps_its_newest_rows(tmp_path: Path) -> None:
    log = RequestLog(tmp_path, sample=1.0, max_rows=1000)
    log.record("taxi", 1, _rows(1500))
    assert log.rows("taxi") == 1000
    [path] = log.flush()
    assert pq.read_table(path).column("fare").to_pylist()[0] == 500.0


def test_the_newest_batch_is_the_latest_partition_written_after_the_champion(
    settings: Settings,
) -> None:
    import os

    from aimass.data.monitor import newest_batch

    clean = settings.lake_dir / "clean" / "chicago_taxi"
    for ds, written in (("2026-11-01", 1_000), ("2026-11-03", 3_000), ("2026-11-02", 2_000)):
        (clean / f"ds={ds}").mkdir(parents=True)
        part = clean / f"ds={ds}" / "part-00000.parquet"
        part.write_bytes(b"")
        os.utime(part, (written, written))
    staging = clean / "ds=2026-11-04" / "_temporary"  # a run still writing
    staging.mkdir(parents=True)
    (staging / "part-00000.parquet").write_bytes(b"")
    champ = SimpleNamespace(version="4", creation_timestamp=1_500 * 1000)
    assert newest_batch(settings, "chicago_taxi", champ) == clean / "ds=2026-11-03"
    champ.creation_timestamp = 3_500 * 1000
    assert newest_batch(settings, "chicago_taxi", champ) is None
    assert newest_batch(settings, "chicago_taxi", SimpleNamespace(version="4")) is None
