"""The benchmark data generator: row count, columns, determinism, injected bad rows."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from testkit import SAMPLE_CSV

from aimass.data.spec import DatasetSpec, load_spec

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "bench"))
import datagen  # noqa: E402

pytestmark = pytest.mark.unit


@pytest.fixture
def spec() -> DatasetSpec:
    return load_spec("chicago_taxi")


def _lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines()


def test_rows_columns_and_cache(tmp_path: Path, spec: DatasetSpec) -> None:
    gen = datagen.generate(spec, SAMPLE_CSV, 2_000, 3, tmp_path, bad_share=0.01)
    lines = _lines(gen.path)
    assert lines[0].split(",") == list(spec.columns)
    assert len(lines) == 2_001
    widths = [len(line.split(",")) for line in lines[1:]]
    expected = len(spec.columns)
    wrong = sum(w != expected for w in widths)
    assert wrong == gen.injected["extra_field"] + gen.injected["missing_field"]
    assert sum(gen.injected.values()) == 20
    assert not gen.cached
    again = datagen.generate(spec, SAMPLE_CSV, 2_000, 3, tmp_path, bad_share=0.01)
    assert again.cached and again.path == gen.path


def test_deterministic_per_seed(tmp_path: Path, spec: DatasetSpec) -> None:
    a = datagen.generate(spec, SAMPLE_CSV, 1_000, 5, tmp_path / "a")
    b = datagen.generate(spec, SAMPLE_CSV, 1_000, 5, tmp_path / "b")
    c = datagen.generate(spec, SAMPLE_CSV, 1_000, 6, tmp_path / "c")
    assert a.path.read_bytes() == b.path.read_bytes()
    assert a.path.read_bytes() != c.path.read_bytes()


def test_keeps_categories_and_empty_fields(tmp_path: Path, spec: DatasetSpec) -> None:
    gen = datagen.generate(spec, SAMPLE_CSV, 3_000, 1, tmp_path, bad_share=0.0)
    rows = [line.split(",") for line in _lines(gen.path)[1:]]
    source = [line.split(",") for line in _lines(SAMPLE_CSV)[1:]]
    idx = list(spec.columns).index("payment_type")
    assert {r[idx] for r in rows} <= {r[idx] for r in source}
    tract = list(spec.columns).index("dropoff_census_tract")
    assert any(r[tract] == "" for r in rows)
