"""Great Expectations on clean partitions (aimass.data.quality) with a real Spark session."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest
import yaml
from runkit import run_request

from aimass.data.quality import plan_suite, raise_for_critical, validate_partition
from aimass.data.spec import load_spec
from aimass.platform.errors import DataQualityError
from aimass.platform.settings import REPO_ROOT

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
    assert row_count["observed"] == spark.read.parquet(str(good_partition)).count() > 2900
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
    written = spark.read.parquet(str(bad))
    nulls, rows = written.where(F.col("fare").isNull()).count(), written.count()

    summary = validate_partition(SPEC, bad, tmp_path / "report", spark=spark)

    assert summary["success"] is False
    assert len(summary["critical_failures"]) == 1
    assert summary["critical_failures"][0].startswith(
        f"expect_column_values_to_not_be_null(column=fare): {nulls} of {rows} rows unexpected"
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
    from aimass.platform.errors import ConfigError

    with pytest.raises(ConfigError, match="does not exist; run the clean stage"):
        validate_partition(SPEC, tmp_path / "nope", tmp_path / "report")


EXAMPLE_FILE = REPO_ROOT / "conf" / "expectations" / "chicago_taxi.yaml"


def _expectations_file(path: Path, entries: list[dict[str, Any]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump({"expectations": entries}), encoding="utf-8")
    return path


def test_validate_quality_adds_the_conf_file_and_a_failing_warning_lets_the_run_go_on(
    spark: Any,
    good_partition: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    from aimass.stages.retrain import validate_quality

    # A conf dir of its own: the real spec, the example file plus one warning that fails.
    root = tmp_path / "root"
    (root / "conf" / "datasets").mkdir(parents=True)
    (root / "conf" / "datasets" / "chicago_taxi.yaml").write_bytes(
        (REPO_ROOT / "conf" / "datasets" / "chicago_taxi.yaml").read_bytes()
    )
    example = yaml.safe_load(EXAMPLE_FILE.read_text(encoding="utf-8"))["expectations"]
    file = _expectations_file(
        root / "conf" / "expectations" / "chicago_taxi.yaml",
        [
            *example,
            {
                "expectation": "expect_column_max_to_be_between",
                "kwargs": {"column": "trip_miles", "max_value": 1},
                "severity": "warning",
                "notes": "fails on purpose",
            },
        ],
    )
    monkeypatch.setenv("AIMASS_ROOT", str(root))
    monkeypatch.setenv("AIMASS_VAR_DIR", str(tmp_path / "var"))
    ctx = run_request(
        dataset="chicago_taxi",
        clean_dir=good_partition,
        report_dir=tmp_path / "report",
        clean_summary=str(good_partition.parents[1] / "clean_summary.json"),
    )

    with caplog.at_level(logging.INFO, logger="aimass"):
        out = validate_quality(ctx).dump()  # a failed warning does not raise

    assert f"expectations file {file}" in caplog.text
    quality = out["quality"]
    assert quality["success"] is True, quality["critical_failures"]
    assert quality["expectations"] == len(plan_suite(SPEC)) + len(example) + 1
    from_file = [r for r in quality["results"] if r["source"] == str(file)]
    assert len(from_file) == len(example) + 1
    assert all(
        r["success"] for r in from_file if r["expectation"] != "expect_column_max_to_be_between"
    )
    assert {r["source"] for r in quality["results"]} == {"spec", str(file)}
    (warning,) = [w for w in quality["warnings"] if w.startswith("expect_column_max_to_be_between")]
    assert warning.endswith(f"[{file}]")
    summary = json.loads((tmp_path / "report" / "quality_summary.json").read_text())
    assert [r["source"] for r in summary["results"]] == [r["source"] for r in quality["results"]]


def test_a_failing_critical_expectation_from_the_file_stops_the_run(
    spark: Any, good_partition: Path, tmp_path: Path
) -> None:
    file = _expectations_file(
        tmp_path / "expectations.yaml",
        [
            {
                "expectation": "expect_column_values_to_be_in_set",
                "kwargs": {"column": "payment_type", "value_set": ["Cash"]},
                "notes": "critical by default; the sample has card payments too",
            },
            {
                "expectation": "expect_column_mean_to_be_between",
                "kwargs": {"column": "fare", "min_value": 100},
                "severity": "warning",
            },
        ],
    )

    summary = validate_partition(
        SPEC, good_partition, tmp_path / "report", spark=spark, expectations_file=file
    )

    assert summary["success"] is False
    (critical,) = summary["critical_failures"]
    assert critical.startswith("expect_column_values_to_be_in_set(column=payment_type")
    assert critical.endswith(f"[{file}]")
    (warning,) = summary["warnings"]
    assert warning.startswith("expect_column_mean_to_be_between(column=fare, min_value=100)")
    by_name = {(r["expectation"], r["column"]): r for r in summary["results"]}
    payment = by_name[("expect_column_values_to_be_in_set", "payment_type")]
    assert (payment["severity"], payment["source"], payment["success"]) == (
        "critical",
        str(file),
        False,
    )
    assert payment["observed"]["unexpected_count"] > 0
    label = by_name[("expect_column_values_to_be_in_set", SPEC.label_name)]
    assert (label["source"], label["success"]) == ("spec", True)
    with pytest.raises(DataQualityError, match=f"relax the expectation in {file}"):
        raise_for_critical(summary)


def test_a_bad_expectations_file_fails_before_the_partition_is_read(tmp_path: Path) -> None:
    from aimass.platform.errors import ConfigError

    file = _expectations_file(
        tmp_path / "expectations.yaml",
        [{"expectation": "expect_column_values_to_not_be_null", "kwargs": {"column": "fares"}}],
    )
    # The partition does not exist either: the file's error comes first.
    with pytest.raises(ConfigError, match=r"expectations\[0\] .*column 'fares' is not a column"):
        validate_partition(SPEC, tmp_path / "nope", tmp_path / "report", expectations_file=file)
