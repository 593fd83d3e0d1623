"""Shared fixtures: settings on a temporary var dir, free ports, a small slice of the real sample."""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from testkit import SAMPLE_CSV

from aimass.platform.settings import Settings


@pytest.fixture
def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """Settings whose var dir is a fresh temporary folder (exported to child processes)."""
    var = tmp_path / "var"
    var.mkdir()
    monkeypatch.setenv("AIMASS_VAR_DIR", str(var))
    monkeypatch.setenv("AIMASS_MLFLOW_TRACKING_URI", f"sqlite:///{var / 'mlflow' / 'mlflow.db'}")
    return Settings.from_env()


def _sample_lines(n: int) -> list[str]:
    if not SAMPLE_CSV.exists():
        pytest.fail(f"sample data missing at {SAMPLE_CSV}; run `make setup` first")
    with open(SAMPLE_CSV, encoding="utf-8") as fh:
        return list(itertools.islice(fh, n + 1))


@pytest.fixture(scope="session")
def taxi_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The first 3,000 rows of the real Chicago Taxi sample, header included."""
    path = tmp_path_factory.mktemp("taxi") / "trips.csv"
    path.write_text("".join(_sample_lines(3000)), encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def spark() -> Iterator[object]:
    """One local Spark session for the whole test session (starting one costs ~6 s)."""
    from aimass.platform.spark import get_session

    session = get_session(app_name="aimass-tests", master="local[2]")
    yield session
    session.stop()


os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
