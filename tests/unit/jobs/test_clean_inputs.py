"""The clean job's input checks, S3 staging and reads (jobs/clean/inputs.py), on tiny files."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import jobs.clean.inputs as inputs
from aimass.data.spec import DatasetSpec
from aimass.platform.errors import ConfigError
from jobs.clean.inputs import (
    Batch,
    check_expressions,
    check_header,
    check_input,
    check_parquet_schema,
    input_format,
    read_batch,
    staged_input,
)

pytestmark = pytest.mark.unit

RAW = {
    "name": "tiny",
    "source": {"format": "csv", "path": "unused.csv"},
    "schema": {"fare": "double", "tips": "double", "hour": "long", "company": "string"},
    "label": {"name": "big_tipper", "expression": "tips > 0.2 * fare"},
    "features": {"numeric": ["fare"], "categorical": ["company", "hour"]},
    "rules": [{"name": "fare_not_negative", "expression": "fare >= 0"}],
}
SPEC = DatasetSpec.from_dict(RAW, origin="test")
HEADER = "fare,tips,hour,company\n"


def spec_with(**changes: Any) -> DatasetSpec:
    return DatasetSpec.from_dict({**RAW, **changes}, origin="test")


def write_parquet(path: Path, columns: dict[str, list[Any]]) -> Path:
    pq.write_table(pa.table(columns), path)
    return path


# -- format and header --------------------------------------------------------------------


def test_input_format_from_extensions_else_the_specs() -> None:
    assert input_format(SPEC, ["a.PARQUET", "_SUCCESS"], "x") == "parquet"
    assert input_format(SPEC, ["a.csv", "b.csv"], "x") == "csv"
    assert input_format(spec_with(source={"format": "parquet", "path": "p"}), ["a"], "x") == (
        "parquet"
    )


def test_input_format_refuses_a_mix_of_csv_and_parquet() -> None:
    with pytest.raises(ConfigError, match="mixes CSV and Parquet files"):
        input_format(SPEC, ["a.csv", "b.parquet"], "in/")


def test_check_header_accepts_the_spec_columns_in_order_with_a_bom(tmp_path: Path) -> None:
    path = tmp_path / "a.csv"
    path.write_text("\ufeff" + HEADER + "1,2,3,x\n", encoding="utf-8")

    check_header(path, SPEC)


def test_check_header_names_missing_and_unexpected_columns(tmp_path: Path) -> None:
    path = tmp_path / "a.csv"
    path.write_text("fare,tip,hour,company\n", encoding="utf-8")

    with pytest.raises(
        ConfigError, match=r"missing columns \['tips'\], unexpected columns \['tip'\]"
    ):
        check_header(path, SPEC)


def test_check_header_says_when_only_the_order_differs(tmp_path: Path) -> None:
    path = tmp_path / "a.csv"
    path.write_text("tips,fare,hour,company\n", encoding="utf-8")

    with pytest.raises(ConfigError, match="the columns are in another order"):
        check_header(path, SPEC)


# -- Parquet schema -----------------------------------------------------------------------


def test_check_parquet_schema_warns_about_extra_columns(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    columns = {"fare": [1.0], "tips": [0.5], "hour": [3], "company": ["x"], "extra": [1]}
    path = write_parquet(tmp_path / "a.parquet", columns)

    with caplog.at_level(logging.WARNING, logger="jobs.clean.inputs"):
        check_parquet_schema(path, SPEC)

    assert "columns ['extra'] are not in the spec" in caplog.text


def test_check_parquet_schema_names_missing_columns(tmp_path: Path) -> None:
    path = write_parquet(tmp_path / "a.parquet", {"fare": [1.0], "company": ["x"]})

    with pytest.raises(ConfigError, match=r"lacks the columns \['tips', 'hour'\]"):
        check_parquet_schema(path, SPEC)


def test_check_parquet_schema_refuses_a_file_that_is_not_parquet(tmp_path: Path) -> None:
    path = tmp_path / "a.parquet"
    path.write_text(HEADER, encoding="utf-8")

    with pytest.raises(ConfigError, match="is not a readable Parquet file"):
        check_parquet_schema(path, SPEC)


# -- check_input ----------------------------------------------------------------------------


def test_check_input_lists_a_folder_skipping_hidden_and_marker_files(tmp_path: Path) -> None:
    for name in ("b.csv", "a.csv"):
        (tmp_path / name).write_text(HEADER + "1,2,3,x\n", encoding="utf-8")
    (tmp_path / "_SUCCESS").write_text("")
    (tmp_path / ".a.csv.crc").write_text("crc")
    (tmp_path / "sub").mkdir()

    batch = check_input(SPEC, f"file://{tmp_path}")

    assert batch == Batch(str(tmp_path.resolve()), "csv", (tmp_path / "a.csv", tmp_path / "b.csv"))
    assert batch.source == batch.path


def test_check_input_reads_one_parquet_file(tmp_path: Path) -> None:
    columns = {"fare": [1.0], "tips": [0.5], "hour": [3], "company": ["x"]}
    path = write_parquet(tmp_path / "a.parquet", columns)

    assert check_input(SPEC, str(path)) == Batch(str(path), "parquet", (path,))


def _missing(folder: Path) -> Path:
    return folder / "missing"


def _empty_folder(folder: Path) -> Path:
    return folder


def _zero_byte_file(folder: Path) -> Path:
    path = folder / "a.csv"
    path.write_bytes(b"")
    return path


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        (_missing, "does not exist"),
        (_empty_folder, "holds no files"),
        (_zero_byte_file, "is empty"),
    ],
    ids=["missing", "empty folder", "0-byte file"],
)
def test_check_input_refuses_what_cannot_be_a_batch(
    tmp_path: Path, setup: Callable[[Path], Path], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        check_input(SPEC, str(setup(tmp_path)))


def test_check_input_skips_the_header_check_for_headerless_csv(tmp_path: Path) -> None:
    path = tmp_path / "a.csv"
    path.write_text("1,2,3,x\n", encoding="utf-8")
    headerless = spec_with(source={"format": "csv", "path": "p", "header": False})

    assert check_input(headerless, str(path)).format == "csv"
    with pytest.raises(ConfigError, match="CSV header"):
        check_input(SPEC, str(path))


def test_check_input_passes_other_remote_inputs_through() -> None:
    batch = check_input(SPEC, "hdfs://nn/raw/trips.parquet")

    assert batch == Batch("hdfs://nn/raw/trips.parquet", "parquet")


# -- staged_input ---------------------------------------------------------------------------


def test_staged_input_of_a_local_input_stages_nothing(tmp_path: Path) -> None:
    path = tmp_path / "a.csv"
    path.write_text(HEADER + "1,2,3,x\n", encoding="utf-8")
    out = tmp_path / "clean" / "ds=2024-01-01"

    with staged_input(SPEC, str(path), beside=out) as batch:
        assert batch.path == str(path)
        assert batch.staged_from is None

    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.csv"]


def test_staged_input_of_s3_stages_beside_the_partition_and_cleans_up_on_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[Path | None] = []

    def fake_check(spec: DatasetSpec, input_path: str, *, staging: Path | None = None) -> Batch:
        # What the real check does with a staging folder: download into it.
        assert staging is not None
        staging.mkdir(parents=True)
        (staging / "a.csv").write_text(HEADER)
        seen.append(staging)
        return Batch(str(staging / "a.csv"), "csv", (staging / "a.csv",), staged_from=input_path)

    monkeypatch.setattr(inputs, "check_input", fake_check)
    out = tmp_path / "clean" / "ds=2024-01-01"
    out.parent.mkdir()

    with (
        pytest.raises(RuntimeError, match="boom"),
        staged_input(SPEC, "s3://bucket/raw/", beside=out) as batch,
    ):
        assert batch.source == "s3://bucket/raw/"
        raise RuntimeError("boom")

    (staging,) = seen
    assert staging.name == "batch"
    assert staging.parent.parent == out.parent
    assert staging.parent.name.startswith(".ds=2024-01-01.input-")
    assert list(out.parent.iterdir()) == []


# -- Spark: expressions and reads -------------------------------------------------------------


def test_check_expressions_accepts_the_spec(spark: Any) -> None:
    check_expressions(spark, SPEC, "test")


def test_check_expressions_names_the_rule_that_does_not_compile(spark: Any) -> None:
    broken = spec_with(rules=[{"name": "fare_ok", "expression": "fares >= 0"}])

    with pytest.raises(ConfigError, match=r"rule 'fare_ok' of spec 'tiny' \('fares >= 0'\)"):
        check_expressions(spark, broken, "conf/datasets/tiny.yaml")


def test_read_batch_refuses_an_unknown_format(spark: Any) -> None:
    with pytest.raises(ConfigError, match="has format 'json'"):
        read_batch(spark, Batch("in/a.json", "json"), SPEC)


def test_read_batch_reads_csv_and_parquet_into_the_same_raw_columns(
    spark: Any, tmp_path: Path
) -> None:
    csv_path = tmp_path / "a.csv"
    csv_path.write_text(HEADER + "1.5,0.5,3,x\n", encoding="utf-8")
    columns = {"fare": [1.5], "tips": [0.5], "hour": [3], "company": ["x"]}
    parquet_path = write_parquet(tmp_path / "a.parquet", columns)

    from_csv = read_batch(spark, Batch(str(csv_path), "csv", (csv_path,)), SPEC)
    from_parquet = read_batch(spark, Batch(str(parquet_path), "parquet", (parquet_path,)), SPEC)

    assert from_csv.columns == from_parquet.columns
    fields = ["fare", "tips", "hour", "company"]
    assert [from_csv.first()[c] for c in fields] == ["1.5", "0.5", "3", "x"]
    assert [from_parquet.first()[c] for c in fields] == ["1.5", "0.5", "3", "x"]
