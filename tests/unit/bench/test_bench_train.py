"""The training benchmark's pure helpers and its clean-partition builder (nothing is timed)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from testkit import SAMPLE_CSV

from aimass.data.lake import open_partition
from aimass.data.spec import DatasetSpec, load_spec
from models.tabular.inputs import load_arrays

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "bench"))
import bench_train  # noqa: E402

pytestmark = pytest.mark.unit


@pytest.fixture
def spec() -> DatasetSpec:
    return load_spec("chicago_taxi")


def test_keras_epoch_seconds_reads_only_finished_epochs() -> None:
    lines = [
        "2026-01-01 12:00:00 worker-0 INFO models.tabular.train: train rows 800",
        "Epoch 1/2",
        "3125/3125 - 41s - 13ms/step - loss: 0.2936 - auc: 0.9462",
        "Epoch 2/2",
        "  17/3125 - 1s - loss: 0.3",
        "3125/3125 - 38s - 12ms/step - loss: 0.2801 - auc: 0.9501",
    ]
    assert bench_train.keras_epoch_seconds(lines) == [41.0, 38.0]
    assert bench_train.keras_epoch_seconds([]) == []


def test_share_per_s_and_decimals() -> None:
    assert bench_train.share(1.0, 4.0) == 0.25
    assert bench_train.share(1.0, 0.0) == 0.0
    assert bench_train.per_s(1_000, 4.0) == 250.0
    assert bench_train.decimals(np.array([1.0, 2.0, np.nan])) == 0
    assert bench_train.decimals(np.array([1.25, 2.5])) == 2
    assert bench_train.decimals(np.array([41.123456789]), limit=6) == 6


def test_clean_arrow_schema_matches_the_clean_job(spec: DatasetSpec) -> None:
    schema = bench_train.clean_arrow_schema(spec)
    assert schema.names == [*spec.clean_columns, spec.label_name, "split"]
    assert schema.field(spec.label_name).type == pa.int32()
    assert schema.field("trip_start_hour").type == pa.int64()
    assert schema.field("trip_speed_mph").type == pa.float64()
    assert not schema.field("split").nullable


def test_build_partition(tmp_path: Path, spec: DatasetSpec) -> None:
    part = bench_train.build_partition(spec, SAMPLE_CSV, 3_000, 5, tmp_path, files=3)
    assert not part.cached and part.rows == 3_000
    assert len(list(part.path.glob("*.parquet"))) == 3
    assert (part.path / "_SUCCESS").exists()
    table = open_partition(part.path).to_table()
    assert table.num_rows == 3_000
    assert table.schema.remove_metadata() == bench_train.clean_arrow_schema(spec)
    # Rows the clean job would quarantine are not there; the split is about holdout_percent.
    assert pc.min(table["fare"]).as_py() >= 0 and pc.min(table["tips"]).as_py() >= 0
    assert table["big_tipper"].null_count == 0
    holdout = pc.sum(pc.equal(table["split"], "holdout")).as_py() / table.num_rows
    assert abs(holdout - spec.holdout_percent / 100) < 0.05
    x, y = load_arrays(part.path, spec, "train")
    assert len(y) == table.num_rows - pc.sum(pc.equal(table["split"], "holdout")).as_py()
    assert set(x) == set(spec.model_inputs)

    again = bench_train.build_partition(spec, SAMPLE_CSV, 3_000, 5, tmp_path, files=3)
    assert again.cached and again.path == part.path
    other = bench_train.build_partition(spec, SAMPLE_CSV, 3_000, 5, tmp_path / "b", files=3)
    assert open_partition(other.path).to_table().equals(table)
