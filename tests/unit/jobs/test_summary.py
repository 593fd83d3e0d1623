"""The clean job's summary (jobs/clean/summary.py): counts, warnings, conservation check."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest

from aimass.platform.errors import StageError
from jobs.clean.summary import (
    SAMPLE_RAW_CHARS,
    SAMPLES_PER_REASON,
    Counts,
    batch_warnings,
    build_summary,
    check_conservation,
    count_written,
    log_summary,
    observe_splits,
    truncate_raw,
)

pytestmark = pytest.mark.unit

COUNTS = Counts(
    splits={"train": 7, "holdout": 2},
    reasons={"rule fare_not_negative": 2, "malformed: wrong field count": 1},
    duplicates={"exact": 1, "key": 0},
    samples={
        "rule fare_not_negative": [
            {"raw": "1,-2.0", "reason": "rule fare_not_negative"},
            {"raw": "1,-3.0", "reason": "rule fare_not_negative"},
        ],
        "malformed: wrong field count": [{"raw": "1", "reason": "malformed: wrong field count"}],
    },
)


def summary(rows_in: int, counts: Counts = COUNTS) -> dict[str, Any]:
    return build_summary(
        dataset="tiny",
        ds="2024-01-01",
        source="/in/batch.csv",
        fmt="csv",
        rows_in=rows_in,
        counts=counts,
        out=Path("/lake/clean/ds=2024-01-01"),
        quarantine=Path("/lake/quarantine/ds=2024-01-01"),
    )


def test_counts_add_up_each_destination() -> None:
    assert (COUNTS.rows_clean, COUNTS.rows_quarantined, COUNTS.rows_duplicate) == (9, 3, 1)


def test_build_summary_has_the_documented_keys_in_order() -> None:
    payload = summary(13)

    assert payload == {
        "dataset": "tiny",
        "ds": "2024-01-01",
        "input": "/in/batch.csv",
        "format": "csv",
        "inputs": ["/in/batch.csv"],
        "rows_in": 13,
        "rows_clean": 9,
        "rows_quarantined": 3,
        "rows_duplicate": 1,
        "rows_train": 7,
        "rows_holdout": 2,
        "quarantine_reasons": COUNTS.reasons,
        "quarantine_samples": COUNTS.samples,
        "duplicates": {"exact": 1, "key": 0},
        "warnings": [],
        "out": "/lake/clean/ds=2024-01-01",
        "quarantine": "/lake/quarantine/ds=2024-01-01",
    }
    assert list(payload)[:4] == ["dataset", "ds", "input", "format"]


def test_build_summary_counts_a_missing_split_as_zero() -> None:
    payload = summary(3, Counts(splits={"train": 3}, reasons={}, duplicates={}))

    assert (payload["rows_train"], payload["rows_holdout"]) == (3, 0)
    assert payload["quarantine_samples"] == {}


def test_truncate_raw_cuts_long_lines_with_an_ellipsis() -> None:
    assert truncate_raw("a" * SAMPLE_RAW_CHARS) == "a" * SAMPLE_RAW_CHARS
    assert truncate_raw("a" * (SAMPLE_RAW_CHARS + 1)) == "a" * SAMPLE_RAW_CHARS + "\u2026"
    assert truncate_raw(None) == ""


def test_batch_warnings_on_a_header_only_input() -> None:
    (warning,) = batch_warnings(0, 0, {})

    assert "no data rows (header only)" in warning
    assert "quality.min_rows" in warning


def test_batch_warnings_name_the_most_common_reason_when_nothing_survives() -> None:
    (warning,) = batch_warnings(5, 0, {"rule hour_in_day": 4, "null label": 1})

    assert "most common reason: rule hour_in_day" in warning


def test_batch_warnings_blame_duplicates_when_nothing_was_quarantined() -> None:
    (warning,) = batch_warnings(4, 0, {})

    assert "most common reason: duplicates" in warning


def test_batch_warnings_none_for_a_batch_with_clean_rows() -> None:
    assert batch_warnings(5, 1, {"rule hour_in_day": 4}) == []


def test_check_conservation_passes_when_every_row_is_accounted_for() -> None:
    check_conservation(summary(13))


def test_check_conservation_fails_naming_every_count() -> None:
    with pytest.raises(StageError) as info:
        check_conservation(summary(14))

    message = str(info.value)
    assert "clean tiny ds=2024-01-01: rows are not conserved" in message
    assert "rows_in=14 but rows_clean=9 + rows_quarantined=3 + rows_duplicate=1" in message
    assert "the partitions were not replaced" in message


def test_log_summary_logs_the_outcome_reasons_and_warnings(
    caplog: pytest.LogCaptureFixture,
) -> None:
    payload = summary(3, Counts(splits={}, reasons={"null label": 3}, duplicates={}))

    with caplog.at_level(logging.INFO, logger="jobs.clean.summary"):
        log_summary(payload, Path("/reports/clean_summary.json"))

    messages = [r.getMessage() for r in caplog.records]
    assert messages[0].startswith("clean tiny ds=2024-01-01: 3 in, 0 clean (0 train, 0 holdout)")
    assert messages[0].endswith("summary /reports/clean_summary.json")
    assert "quarantine reasons: {'null label': 3}" in messages
    assert [r.levelno for r in caplog.records][-1] == logging.WARNING
    assert "no row survived cleaning" in messages[-1]


def test_count_written_takes_the_observed_splits_and_reads_back_reason_kinds(
    spark: Any, tmp_path: Path
) -> None:
    clean, quarantine = tmp_path / "clean", tmp_path / "quarantine"
    rows = spark.createDataFrame([("train",), ("train",), ("holdout",)], "split string")
    observed, splits = observe_splits(rows)
    observed.write.parquet(str(clean))  # the action that counts the splits
    spark.createDataFrame(
        [
            ("1,x", "unparseable double in fare: 'x'"),
            ("2,y", "unparseable double in fare: 'y'"),
            ("3,25", "rule hour_in_day"),
            ("4,", "null label"),
        ],
        "raw string, reason string",
    ).write.parquet(str(quarantine))
    counts = count_written(
        spark, quarantine=quarantine, splits=splits.get, duplicates={"exact": 2, "key": 0}
    )

    assert counts.splits == {"train": 2, "holdout": 1}
    # Most common first, then by name: the order the summary and its warnings rely on.
    assert list(counts.reasons.items()) == [
        ("unparseable double in fare", 2),
        ("null label", 1),
        ("rule hour_in_day", 1),
    ]
    assert counts.duplicates == {"exact": 2, "key": 0}
    assert counts.samples == {
        "unparseable double in fare": [
            {"raw": "1,x", "reason": "unparseable double in fare: 'x'"},
            {"raw": "2,y", "reason": "unparseable double in fare: 'y'"},
        ],
        "null label": [{"raw": "4,", "reason": "null label"}],
        "rule hour_in_day": [{"raw": "3,25", "reason": "rule hour_in_day"}],
    }


def test_count_written_keeps_capped_ordered_truncated_samples_per_reason_kind(
    spark: Any, tmp_path: Path
) -> None:
    quarantine = tmp_path / "quarantine"
    long_line = "9," + "x" * 600
    fares = [(f"1,f{i}", f"unparseable double in fare: 'f{i}'") for i in range(5)]
    spark.createDataFrame(
        [*fares, (long_line, "malformed: wrong field count"), ("2,-1", "rule fare_not_negative")],
        "raw string, reason string",
    ).repartition(3).write.parquet(str(quarantine))
    counts = count_written(spark, quarantine=quarantine, splits={"train": 1}, duplicates={})

    # Same kinds in the same order as the counts.
    assert list(counts.samples) == list(counts.reasons)
    fare = counts.samples["unparseable double in fare"]
    # Capped, and the first rows by raw line: deterministic whatever the file layout.
    assert len(fare) == SAMPLES_PER_REASON == 3
    assert fare == [{"raw": raw, "reason": reason} for raw, reason in fares[:3]]
    (cut,) = counts.samples["malformed: wrong field count"]
    assert cut == {
        "raw": long_line[:SAMPLE_RAW_CHARS] + "\u2026",
        "reason": "malformed: wrong field count",
    }
    assert len(cut["raw"]) == SAMPLE_RAW_CHARS + 1
    assert counts.samples["rule fare_not_negative"] == [
        {"raw": "2,-1", "reason": "rule fare_not_negative"}
    ]
