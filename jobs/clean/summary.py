"""The clean job's summary: what one run read, kept, quarantined and dropped.

The counts are taken while the partitions are written, not from the plan: the rows per
split and the duplicates by ``Observation`` metrics of the clean write, the quarantine
reasons read back from the quarantine written. ``check_conservation`` is then a real
check that every input row ended up in exactly one place: the clean partition, the
quarantine partition or the dropped duplicates. The summary is
written beside the run's reports and read by the quality stage and the DAG.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aimass.platform.errors import StageError

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, Observation, SparkSession

log = logging.getLogger(__name__)

# Sample quarantine rows kept per reason kind in the summary, and the longest raw line kept.
SAMPLES_PER_REASON = 3
SAMPLE_RAW_CHARS = 500
_ELLIPSIS = "\u2026"


@dataclass(frozen=True)
class Counts:
    """Rows of one run by where they went.

    ``splits`` maps split name to clean rows, ``reasons`` maps quarantine reason kind to
    rows (most common first) and ``duplicates`` maps duplicate kind to dropped rows.
    ``samples`` maps quarantine reason kind to up to ``SAMPLES_PER_REASON`` of its rows as
    ``{"raw": <line, cut to SAMPLE_RAW_CHARS>, "reason": <full reason>}``, in ``reasons``'
    order.
    """

    splits: dict[str, int]
    reasons: dict[str, int]
    duplicates: dict[str, int]
    samples: dict[str, list[dict[str, str]]] = field(default_factory=dict)

    @property
    def rows_clean(self) -> int:
        return sum(self.splits.values())

    @property
    def rows_quarantined(self) -> int:
        return sum(self.reasons.values())

    @property
    def rows_duplicate(self) -> int:
        return sum(self.duplicates.values())


def truncate_raw(raw: str | None, limit: int = SAMPLE_RAW_CHARS) -> str:
    """``raw`` cut to ``limit`` characters, ending in "…" when it was cut ("" for null)."""
    if raw is None:
        return ""
    return raw if len(raw) <= limit else raw[:limit] + _ELLIPSIS


def quarantine_samples(written_q: DataFrame) -> dict[str, list[dict[str, str]]]:
    """Up to ``SAMPLES_PER_REASON`` rows per reason kind of the quarantine ``written_q``.

    One Spark action: a window per reason kind, ordered by source position when the frame
    carries it, else by raw line and reason (deterministic across reruns).
    """
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    from jobs.clean.transforms import POSITION_COLUMN, RAW_COLUMN, REASON_COLUMN, reason_kind

    order = (
        [F.col(POSITION_COLUMN)]
        if POSITION_COLUMN in written_q.columns
        else [F.col(RAW_COLUMN).asc_nulls_last(), F.col(REASON_COLUMN)]
    )
    window = Window.partitionBy("kind").orderBy(*order)
    rows = (
        written_q.withColumn("kind", reason_kind(F.col(REASON_COLUMN)))
        .withColumn("n", F.row_number().over(window))
        .filter(F.col("n") <= SAMPLES_PER_REASON)
        # Cut in the JVM too, so a huge raw line is not shipped whole to the driver.
        .select(
            "kind",
            "n",
            F.substring(F.col(RAW_COLUMN), 1, SAMPLE_RAW_CHARS + 1).alias(RAW_COLUMN),
            REASON_COLUMN,
        )
        .collect()
    )
    samples: dict[str, list[dict[str, str]]] = {}
    for row in sorted(rows, key=lambda r: (r["kind"], r["n"])):
        samples.setdefault(row["kind"], []).append(
            {"raw": truncate_raw(row[RAW_COLUMN]), "reason": row[REASON_COLUMN] or ""}
        )
    return samples


def observe_splits(clean: DataFrame) -> tuple[DataFrame, Observation]:
    """``clean`` with its rows per split counted while an action (the write) runs over it."""
    from pyspark.sql import Observation
    from pyspark.sql import functions as F

    from jobs.clean.transforms import HOLDOUT, SPLIT_COLUMN, TRAIN

    observation = Observation()
    observed = clean.observe(
        observation,
        *(
            F.coalesce(F.sum((F.col(SPLIT_COLUMN) == name).cast("long")), F.lit(0)).alias(name)
            for name in (TRAIN, HOLDOUT)
        ),
    )
    return observed, observation


def count_written(
    spark: SparkSession,
    *,
    quarantine: Path,
    splits: Mapping[str, int],
    duplicates: Mapping[str, int],
) -> Counts:
    """The run's counts: quarantine reasons and samples read back from the partition written
    to ``quarantine`` (small: one file), and the ``splits`` and ``duplicates`` counted while
    the clean partition was written (``observe_splits``, ``jobs.clean.dedupe``)."""
    from pyspark.sql import functions as F

    from jobs.clean.dedupe import DUPLICATE_EXACT, DUPLICATE_KEY
    from jobs.clean.transforms import REASON_COLUMN, reason_kind

    written_q = spark.read.parquet(str(quarantine))
    reasons = {
        r["kind"]: r["count"]
        for r in written_q.groupBy(reason_kind(F.col(REASON_COLUMN)).alias("kind"))
        .count()
        .orderBy(F.desc("count"), "kind")
        .collect()
    }
    samples = quarantine_samples(written_q)
    return Counts(
        splits={name: int(n) for name, n in splits.items() if n},
        reasons=reasons,
        duplicates={
            DUPLICATE_EXACT: int(duplicates.get(DUPLICATE_EXACT, 0)),
            DUPLICATE_KEY: int(duplicates.get(DUPLICATE_KEY, 0)),
        },
        samples={kind: samples[kind] for kind in reasons if kind in samples},
    )


def batch_warnings(rows_in: int, rows_clean: int, reasons: dict[str, int]) -> list[str]:
    """Batch-level findings that do not fail the job but that an operator should see."""
    if rows_in == 0:
        return [
            "the input has no data rows (header only): wrote empty partitions; the quality "
            "check (quality.min_rows) decides whether the run goes on"
        ]
    if rows_clean == 0:
        top = next(iter(reasons), "duplicates")
        return [
            f"no row survived cleaning (most common reason: {top}): the clean partition is "
            "empty; see the quarantine partition. The quality check (quality.min_rows) will "
            "stop the run"
        ]
    return []


def build_summary(
    *,
    dataset: str,
    ds: str,
    source: str,
    fmt: str,
    rows_in: int,
    inputs: list[str] | None = None,
    counts: Counts,
    out: Path,
    quarantine: Path,
) -> dict[str, Any]:
    """The summary JSON payload of one run (its keys in the order they are written)."""
    from jobs.clean.transforms import HOLDOUT, TRAIN

    return {
        "dataset": dataset,
        "ds": ds,
        "input": source,
        "format": fmt,
        # Each input file by name: what the lake records the batch was cleaned from.
        "inputs": inputs if inputs is not None else [source],
        "rows_in": rows_in,
        "rows_clean": counts.rows_clean,
        "rows_quarantined": counts.rows_quarantined,
        "rows_duplicate": counts.rows_duplicate,
        "rows_train": counts.splits.get(TRAIN, 0),
        "rows_holdout": counts.splits.get(HOLDOUT, 0),
        "quarantine_reasons": counts.reasons,
        "quarantine_samples": counts.samples,
        "duplicates": counts.duplicates,
        "warnings": batch_warnings(rows_in, counts.rows_clean, counts.reasons),
        "out": str(out),
        "quarantine": str(quarantine),
    }


def check_conservation(summary: dict[str, Any]) -> None:
    """Raise StageError unless every input row is clean, quarantined or a dropped duplicate."""
    rows_in = summary["rows_in"]
    rows_clean = summary["rows_clean"]
    rows_quarantined = summary["rows_quarantined"]
    rows_duplicate = summary["rows_duplicate"]
    if rows_in != rows_clean + rows_quarantined + rows_duplicate:
        raise StageError(
            f"clean {summary['dataset']} ds={summary['ds']}: rows are not conserved: "
            f"rows_in={rows_in} but rows_clean={rows_clean} + "
            f"rows_quarantined={rows_quarantined} + rows_duplicate={rows_duplicate}; the "
            "partitions were not replaced. This is a bug in jobs/clean/transforms.py: check "
            "the filters"
        )


def log_summary(summary: dict[str, Any], path: Path) -> None:
    """Log the run's outcome, its quarantine reasons and its warnings (``path``: the JSON)."""
    name, ds = summary["dataset"], summary["ds"]
    log.info(
        "clean %s ds=%s: %d in, %d clean (%d train, %d holdout), %d quarantined, "
        "%d duplicates %s -> %s, %s; summary %s",
        name,
        ds,
        summary["rows_in"],
        summary["rows_clean"],
        summary["rows_train"],
        summary["rows_holdout"],
        summary["rows_quarantined"],
        summary["rows_duplicate"],
        summary["duplicates"],
        summary["out"],
        summary["quarantine"],
        path,
    )
    if summary["quarantine_reasons"]:
        log.info("quarantine reasons: %s", summary["quarantine_reasons"])
    for warning in summary["warnings"]:
        log.warning("clean %s ds=%s: %s", name, ds, warning)
