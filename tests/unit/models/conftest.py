"""Fixtures for the model tests: a clean partition shaped like the Spark clean job's output."""

from __future__ import annotations

from pathlib import Path

import pytest
from testkit import TAXI_SPEC, write_partition

from aimass.data.spec import DatasetSpec, load_spec


@pytest.fixture(scope="session")
def taxi_spec() -> DatasetSpec:
    return load_spec(TAXI_SPEC)


@pytest.fixture(scope="session")
def taxi_partition(
    taxi_csv: Path, taxi_spec: DatasetSpec, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """The 3,000-row taxi slice as a clean partition (3 Parquet files)."""
    return write_partition(taxi_csv, tmp_path_factory.mktemp("clean") / "ds=2024-01-01", taxi_spec)
