"""Great Expectations on clean partitions (aimass.quality) with a real Spark session."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from aimass.errors import DataQualityError
from aimass.quality import plan_suite, raise_for_critical, validate_partition
from aimass.spec import load_spec

pytestmark = pytest.mark.integration

SPEC = load_spec("chicago_taxi")


@pytest.fixture(scope="module")
def good_partition(spark: Any, taxi_csv: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The clean partition of the 3,000-row slice, as the clean job writes it."""
    from jobs.clean.main import parse_args, run

    base = tmp_path_factory.mktemp("quality")
    out = base / "clean" / "ds=2024-01-01"
    run(
        spark,
        parse_args(
            [
                "--spec",
                "chicago_taxi",
                "--input",
                str(taxi_csv),
                "--ds",
                "2024-01-01",
                "--out",
                str(out),
                "--quarantine",
                str(base / "quarantine" / "ds=2024-01-01"),
                "--summary",
                str(base / "clean_summary.json"),
            ]
        ),
    )
    return out


def test_suite_severity_follows_the_spec() -> None:
    plan = {(p.expectation, p.column): p for p in plan_suite(SPEC)}

    assert plan[("expect_table_row_count_to_be_between", None)].kwargs == {"min_value": 50}
    for col in SPEC.quality.not_null:
        assert plan[("expect_column_values_to_not_be_null", col)].severity == "critical"
    label_set = plan[("expect_column_values_to_be_in_set", "big_tipper")]
    assert (label_set.kwargs["value_set"], label_set.severity) == ([0, 1], "critical")
    assert plan[("expect_column_values_to_be_between", "trip_start_hour")].severity == "critical"
    miles = plan[("expect_column_values_to_be_between", "trip_miles")]
    assert (miles.severity, miles.kwargs["mostly"]) == ("warning", 0.99)


def test_good_partition_passes_and_renders_data_docs(
    spark: Any, good_partition: Path, tmp_path: Path
) -> None:
    report_dir = tmp_path / "report"
    summary = validate_partition(SPEC, good_partition, report_dir, spark=spark)

    assert summary["success"] is True, summary["critical_failures"]
    assert summary["critical_failures"] == []
    assert len(summary["results"]) == len(plan_suite(SPEC))
    assert all(r["success"] for r in summary["results"] if r["severity"] == "critical")
    row_count = next(
        r for r in summary["results"] if r["expectation"] == "expect_table_row_count_to_be_between"
    )
    assert row_count["observed"] == 3000
    index = Path(summary["data_docs"])
    assert index == report_dir / "data_docs" / "index.html"
    assert "chicago_taxi_clean" in index.read_text(encoding="utf-8")
    pages = list((report_dir / "data_docs" / "validations").rglob("*.html"))
    assert len(pages) == 1
    page = pages[0].read_text(encoding="utf-8")
    assert "values must never be null" in page and "trip_start_month" in page
    assert json.loads((report_dir / "quality_summary.json").read_text()) == summary
    raise_for_critical(summary)  # no critical failure: does not raise


def test_critical_failure_raises_naming_the_expectation(
    spark: Any, good_partition: Path, tmp_path: Path
) -> None:
    from pyspark.sql import functions as F

    bad = tmp_path / "bad" / "ds=2024-01-01"
    df = spark.read.parquet(str(good_partition)).withColumn("_n", F.monotonically_increasing_id())
    # Every 10th fare is missing (critical) and every 20th latitude is off the map (warning).
    df = (
        df.withColumn("fare", F.when(F.col("_n") % 10 == 0, None).otherwise(F.col("fare")))
        .withColumn(
            "pickup_latitude",
            F.when(F.col("_n") % 20 == 1, F.lit(0.0)).otherwise(F.col("pickup_latitude")),
        )
        .drop("_n")
    )
    df.write.parquet(str(bad))

    summary = validate_partition(SPEC, bad, tmp_path / "report", spark=spark)

    assert summary["success"] is False
    assert len(summary["critical_failures"]) == 1
    assert summary["critical_failures"][0].startswith(
        "expect_column_values_to_not_be_null(column=fare): 300 of 3000 rows unexpected"
    )
    assert len(summary["warnings"]) == 1
    assert summary["warnings"][0].startswith(
        "expect_column_values_to_be_between(column=pickup_latitude"
    )
    fare = next(
        r
        for r in summary["results"]
        if r["column"] == "fare" and r["expectation"] == "expect_column_values_to_not_be_null"
    )
    assert (fare["severity"], fare["success"], fare["observed"]["unexpected_count"]) == (
        "critical",
        False,
        300,
    )
    with pytest.raises(
        DataQualityError, match=r"expect_column_values_to_not_be_null\(column=fare\)"
    ):
        raise_for_critical(summary)


def test_missing_partition_is_a_config_error(tmp_path: Path) -> None:
    from aimass.errors import ConfigError

    with pytest.raises(ConfigError, match="does not exist; run the clean stage"):
        validate_partition(SPEC, tmp_path / "nope", tmp_path / "report")
