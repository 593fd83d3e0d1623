"""Clean job: raw CSV or Parquet -> typed clean partition + quarantine partition + summary.

Run by the Airflow SparkSubmitOperator (or by hand)::

    spark-submit jobs/clean/main.py --spec chicago_taxi --input var/data/raw/chicago_taxi \
        --ds 2024-01-01 --out var/lake/clean/chicago_taxi/ds=2024-01-01 \
        --quarantine var/lake/quarantine/chicago_taxi/ds=2024-01-01 \
        --summary var/reports/chicago_taxi/ds=2024-01-01/clean_summary.json

Both partitions are written to hidden sibling folders and renamed into place once the
row-conservation check has passed, so a failed run leaves the previous partitions as
they were and a rerun replaces its own partitions (see docs/architecture.md, section 10).

What the job does with bad input (tests/integration/test_bad_inputs.py):

- bad rows (wrong field count, bad encoding, unparseable values, broken rules, null
  label) go to quarantine with a reason, even when every row is bad: the job succeeds
  with an empty clean partition and a warning, and the quality suite's ``min_rows``
  stops the run;
- a CSV with a header and no rows is a valid empty batch: empty partitions, ``rows_in``
  0 and a warning in the summary (again ``min_rows`` decides whether the run goes on);
- a missing input, an empty (0-byte) file, a CSV header or Parquet schema that lacks
  spec columns (or, for CSV, renames or adds columns), a folder that mixes formats and a
  rule or label expression that does not compile on the schema are errors raised before
  anything is written, so the previous partitions stay.

An ``s3://`` (or ``s3a://``) input is downloaded with boto3 to a hidden folder beside the
clean partition, checked and read like a local one and removed when the run ends; a
missing bucket, no objects under the prefix, missing credentials, access denied and an
unreachable endpoint are errors raised before anything is written (tests in
tests/integration/test_s3_input.py).

This module is the job's entry point (arguments, read -> clean -> write); the parts live
beside it: ``inputs`` (checks, S3 staging, reading), ``transforms`` (the pure DataFrame
steps), ``output`` (atomic partition and JSON writes) and ``summary`` (counts, the
conservation check and the summary payload).
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aimass.data.spec import DatasetSpec, load_spec
from aimass.platform.spark import size_shuffle_partitions
from jobs.clean.inputs import Batch, check_expressions, check_input, read_batch, staged_inputs
from jobs.clean.output import discard_staging, replace_dir, staging_dir, write_json_atomic
from jobs.clean.summary import (
    build_summary,
    check_conservation,
    count_written,
    log_summary,
    observe_splits,
)

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

log = logging.getLogger(__name__)


def _ds(value: str) -> str:
    try:
        dt.date.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--ds {value!r} is not a date; pass it as YYYY-MM-DD (e.g. 2024-01-31)"
        ) from None
    if len(value) != 10:
        raise argparse.ArgumentTypeError(f"--ds {value!r} must be written as YYYY-MM-DD")
    return value


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="jobs/clean/main.py",
        description="Clean one raw batch (CSV or Parquet) into a typed partition and a "
        "quarantine partition.",
        # @file: arguments read from a file, one a line (a run's list of landed files).
        fromfile_prefix_chars="@",
    )
    parser.add_argument(
        "--spec", required=True, help="dataset spec name (conf/datasets/<name>.yaml) or path"
    )
    parser.add_argument(
        "--input",
        required=True,
        action="append",
        help="CSV or Parquet file, or a folder of them (format by extension, else the spec's); "
        "local or s3://bucket/key; given several times, the inputs are cleaned as one batch",
    )
    parser.add_argument("--ds", required=True, type=_ds, help="logical date, YYYY-MM-DD")
    parser.add_argument("--out", required=True, type=Path, help="clean partition directory")
    parser.add_argument(
        "--quarantine", required=True, type=Path, help="quarantine partition directory"
    )
    parser.add_argument("--summary", required=True, type=Path, help="summary JSON file to write")
    parser.add_argument(
        "--master",
        default=None,
        help="Spark master URL; default: the one spark-submit was given (local[*] outside it)",
    )
    return parser.parse_args(argv)


def run(spark: SparkSession, args: argparse.Namespace) -> dict[str, Any]:
    """Read -> clean -> write one partition pair and the summary; return the summary.

    An S3 input is first downloaded to a hidden folder beside the clean partition (on the
    same storage, so a cluster's executors read it too), removed when the run ends.
    """
    spec = load_spec(args.spec)
    with staged_inputs(spec, list(args.input), beside=Path(args.out).resolve()) as batch:
        return _clean_batch(spark, args, spec, batch)


def _clean_batch(
    spark: SparkSession, args: argparse.Namespace, spec: DatasetSpec, batch: Batch
) -> dict[str, Any]:
    """Check the expressions, clean ``batch``, write the partitions and the summary."""
    import jobs.clean.transforms as transforms
    from jobs.clean.dedupe import drop_duplicates

    check_expressions(spark, spec, str(args.spec))
    log.info("clean %s ds=%s: %s input %s", spec.name, args.ds, batch.format, batch.source)
    partitions = size_shuffle_partitions(spark, batch.bytes)

    out, quarantine = Path(args.out).resolve(), Path(args.quarantine).resolve()
    # The raw text is parsed, derived and checked once, into this cache; the clean and the
    # quarantine partitions are both written from it (the count below fills it).
    staged = transforms.stage_rows(read_batch(spark, batch, spec), spec=spec).cache()
    staged_out = staging_dir(out)
    staged_q = staging_dir(quarantine)
    try:
        rows_in = staged.count()
        log.info(
            "read %d raw rows from %s (%d shuffle partitions)", rows_in, batch.source, partitions
        )
        # Looked up on the module so tests can swap it for a faulty one.
        rows, rejected = transforms.split_rows(staged, spec=spec)
        deduplicated = drop_duplicates(rows, spec=spec)
        clean, splits = observe_splits(deduplicated.kept)
        out.parent.mkdir(parents=True, exist_ok=True)
        quarantine.parent.mkdir(parents=True, exist_ok=True)
        clean.write.mode("overwrite").parquet(str(staged_out))
        rejected.coalesce(1).write.mode("overwrite").parquet(str(staged_q))

        # Counted as the partitions were written, not planned: the conservation check.
        counts = count_written(
            spark,
            quarantine=staged_q,
            splits=splits.get,
            duplicates=deduplicated.counts(),
        )
        summary = build_summary(
            dataset=spec.name,
            ds=args.ds,
            source=batch.source,
            inputs=batch.inputs,
            fmt=batch.format,
            rows_in=rows_in,
            counts=counts,
            out=out,
            quarantine=quarantine,
        )
        check_conservation(summary)
        replace_dir(staged_out, out)
        replace_dir(staged_q, quarantine)
    finally:
        staged.unpersist()
        for path in (staged_out, staged_q):
            discard_staging(path)

    write_json_atomic(Path(args.summary), summary)
    log_summary(summary, args.summary)
    return summary


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    args = parse_args(argv)
    # Fail on a bad spec or input before paying for a Spark session (an S3 input is only
    # listed here: bucket, credentials, objects; run() downloads and checks it).
    spec = load_spec(args.spec)
    for given in args.input:
        check_input(spec, given)
    from aimass.platform.spark import get_session

    spark = get_session(app_name=f"aimass-clean-{args.ds}", master=args.master)
    try:
        run(spark, args)
    finally:
        spark.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
