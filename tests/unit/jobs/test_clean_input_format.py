"""The clean job reads a landed file whatever its suffix: a CSV named ``adult.data`` as CSV, a
Parquet file without a suffix as Parquet (jobs.clean.inputs: input_format, _check_files)."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from aimass.data.spec import DatasetSpec
from aimass.platform.errors import ConfigError
from jobs.clean.inputs import check_input, input_format

pytestmark = pytest.mark.unit

RAW = {
    "name": "tiny",
    "source": {"format": "csv"},
    "schema": {"fare": "double", "tips": "double", "company": "string"},
    "label": {"name": "big_tipper", "expression": "tips > 0.2 * fare"},
    "features": {"numeric": ["fare"], "categorical": ["company"]},
}
CSV_SPEC = DatasetSpec.from_dict(RAW, origin="test")
PARQUET_SPEC = DatasetSpec.from_dict({**RAW, "source": {"format": "parquet"}}, origin="test")


def _csv(path: Path) -> Path:
    path.write_text("fare,tips,company\n10,3,Acme\n", encoding="utf-8")
    return path


def _parquet(path: Path) -> Path:
    pq.write_table(pa.table({"fare": [10.0], "tips": [3.0], "company": ["Acme"]}), path)
    return path


def test_a_csv_with_another_suffix_is_read_as_csv(tmp_path: Path) -> None:
    batch = check_input(CSV_SPEC, str(_csv(tmp_path / "adult.data")))
    assert batch.format == "csv"
    # even in a Parquet dataset: the content says CSV, and its header is checked as such
    assert input_format(PARQUET_SPEC, ["adult.data"], "x", paths=[tmp_path / "adult.data"]) == (
        "csv"
    )


def test_a_parquet_file_without_a_suffix_is_read_as_parquet(tmp_path: Path) -> None:
    folder = tmp_path / "ds=2026-11-25"
    folder.mkdir()
    _parquet(folder / "20261125T000000000000Z-export")
    batch = check_input(PARQUET_SPEC, str(folder))
    assert batch.format == "parquet" and len(batch.files) == 1
    # in a CSV dataset too: the content decides, not the spec's default
    assert check_input(CSV_SPEC, str(folder)).format == "parquet"


def test_a_folder_mixing_formats_by_content_is_refused(tmp_path: Path) -> None:
    _csv(tmp_path / "a.data")
    _parquet(tmp_path / "b")
    with pytest.raises(ConfigError, match="mixes CSV and Parquet files"):
        check_input(CSV_SPEC, str(tmp_path))
