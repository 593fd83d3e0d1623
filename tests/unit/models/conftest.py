"""Fixtures for the model tests: a clean partition shaped like the Spark clean job's output."""

from __future__ import annotations

import zlib
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from aimass.spec import DatasetSpec, load_spec

_PANDAS = {"double": "float64", "long": "Int64", "string": "string"}
_ARROW = {"double": pa.float64(), "long": pa.int64(), "string": pa.string()}


def write_partition(csv: Path, out: Path, spec: DatasetSpec, *, files: int = 3) -> Path:
    """Write ``csv`` as a clean partition: typed schema columns, the label, ``split``, several part files.

    Label = tips > 0.2 * fare (rows without fare or tips are dropped, as the clean
    job quarantines them); split = a hash of the raw line, ``holdout_percent`` holdout.
    """
    frame = pd.read_csv(
        csv, dtype={c: _PANDAS[t] for c, t in spec.schema}, keep_default_na=False, na_values=[""]
    )
    lines = csv.read_text(encoding="utf-8").splitlines()[1:]
    buckets = np.array([zlib.crc32(line.encode()) % 100 for line in lines])
    frame["split"] = np.where(buckets < spec.holdout_percent, "holdout", "train")
    frame = frame[frame["fare"].notna() & frame["tips"].notna()].reset_index(drop=True)
    frame[spec.label_name] = (frame["tips"] > 0.2 * frame["fare"]).astype("int32")
    schema = pa.schema(
        [(c, _ARROW[t]) for c, t in spec.schema]
        + [(spec.label_name, pa.int32()), ("split", pa.string())]
    )
    table = pa.Table.from_pandas(frame, schema=schema, preserve_index=False)
    out.mkdir(parents=True, exist_ok=True)
    step = -(-table.num_rows // files)
    for i in range(files):
        pq.write_table(table.slice(i * step, step), out / f"part-{i:05d}.parquet")
    (out / "_SUCCESS").write_text("")
    return out


@pytest.fixture(scope="session")
def taxi_spec() -> DatasetSpec:
    return load_spec(
        Path(__file__).resolve().parents[3] / "conf" / "datasets" / "chicago_taxi.yaml"
    )


@pytest.fixture(scope="session")
def taxi_partition(
    taxi_csv: Path, taxi_spec: DatasetSpec, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """The 3,000-row taxi slice as a clean partition (3 Parquet files)."""
    return write_partition(taxi_csv, tmp_path_factory.mktemp("clean") / "ds=2024-01-01", taxi_spec)
