"""Batch scoring job: lake rows -> predictions with lineage, rejected rows with a reason.

Run by ``aimass_batch_predict`` (SparkSubmitOperator) or by hand::

    spark-submit jobs/score/main.py --spec chicago_taxi \
        --input var/lake/clean/chicago_taxi/ds=2024-01-01/batch=<run> \
        --model var/runs/chicago_taxi/<run>/model --model-name chicago_taxi --model-version 3 \
        --ds 2024-01-01 --out var/lake/predictions/chicago_taxi/ds=2024-01-01 \
        --summary var/reports/chicago_taxi/batch_predict/ds=2024-01-01/<run>/scoring.json

The rows stream to the SavedModel as Arrow batches (``DataFrame.mapInArrow``,
``jobs.score.predict``): one model load per Python worker, the model's own preprocessing,
the serving signature the model server answers with, so a row scores here as it does online.

One pass writes both outcomes into a hidden staging folder (partitioned by outcome), counted
while written (``Observation``); only when rows in equal scored plus rejected is the folder
renamed into place::

    <out>/part-*.parquet          the scored rows: key, row_id, prediction columns,
                                  model_name, model_version, input_partition, ds
    <out>/_rejected/part-*.parquet the rows not scored: key, row_id, input_partition, ``reason``
    <out>/_lineage.json           model, inputs, counts (Spark and pyarrow skip ``_`` paths)

A rerun of the same day replaces the day's predictions as a whole; a failed run leaves them
as they were.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aimass.data.spec import load_spec
from jobs.clean.main import _ds
from jobs.clean.output import discard_staging, replace_dir, staging_dir, write_json_atomic
from jobs.score.predict import REASON, prediction_fields, score_batches
from jobs.score.rows import read_rows, typed_rows

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

log = logging.getLogger(__name__)

REJECTED_DIR = "_rejected"
LINEAGE_FILE = "_lineage.json"
OUTCOME = "outcome"
SCORED, REJECTED = "scored", "rejected"
TOP_REASONS = 10


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="jobs/score/main.py",
        description="Score lake rows with a SavedModel on Spark; write predictions and the "
        "rows that could not be scored, with a reason.",
        fromfile_prefix_chars="@",
    )
    parser.add_argument("--spec", required=True, help="dataset spec name or path")
    parser.add_argument(
        "--input",
        required=True,
        action="append",
        help="a clean batch folder, or a Parquet/CSV file or folder; repeat for several",
    )
    parser.add_argument("--model", required=True, help="SavedModel folder (saved_model.pb)")
    parser.add_argument("--model-name", required=True, help="registered model name")
    parser.add_argument("--model-version", required=True, help="registry version scored with")
    parser.add_argument("--ds", required=True, type=_ds, help="the day scored, YYYY-MM-DD")
    parser.add_argument("--out", required=True, type=Path, help="predictions folder to write")
    parser.add_argument("--summary", required=True, type=Path, help="summary JSON to write")
    parser.add_argument("--run-id", default="", help="the Airflow run, for the lineage")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="TensorFlow CPU threads per Python worker (0: TensorFlow's default); one per "
        "core Spark gives the worker",
    )
    parser.add_argument("--master", default=None, help="Spark master (default: spark-submit's)")
    return parser.parse_args(argv)


def _schema(df: Any, spec: Any) -> Any:
    """The scored rows' schema: the typed rows' columns, the predictions, then ``reason``."""
    from pyspark.sql import types as T

    kinds = {
        "double": T.DoubleType(),
        "string": T.StringType(),
        "array<double>": T.ArrayType(T.DoubleType()),
    }
    fields = [f for f in df.schema.fields if f.name in _kept(df, spec)]
    fields += [T.StructField(name, kinds[kind], True) for name, kind in prediction_fields(spec)]
    return T.StructType([*fields, T.StructField(REASON, T.StringType(), True)])


def _kept(df: Any, spec: Any) -> list[str]:
    """The columns a scored row keeps: its key (``dedupe_key``), ``row_id`` and
    ``input_partition``; the model's other inputs stay in the lake, where it points."""
    return [
        c
        for c in df.columns
        if c != REASON and (c not in spec.model_inputs or c in spec.dedupe_key)
    ]


@contextlib.contextmanager
def _unsorted_partitioned_write(spark: SparkSession) -> Iterator[None]:
    """Write the two outcomes with a writer each instead of sorting every row by outcome.

    Spark plans a sort by the partition column before a partitioned write; with two values
    (scored, rejected) a writer per value in each task does the same without the sort.
    """
    conf = {
        "spark.sql.optimizer.plannedWrite.enabled": "false",
        "spark.sql.maxConcurrentOutputFileWriters": "2",
    }
    before = {key: spark.conf.get(key, None) for key in conf}
    for key, value in conf.items():
        spark.conf.set(key, value)
    try:
        yield
    finally:
        for key, old in before.items():
            if old is None:
                spark.conf.unset(key)
            else:
                spark.conf.set(key, old)


def _move_outcomes(staged: Path) -> None:
    """``outcome=scored/`` becomes the folder's files, ``outcome=rejected/`` its ``_rejected/``."""
    scored = staged / f"{OUTCOME}={SCORED}"
    for part in sorted(scored.iterdir()) if scored.is_dir() else []:
        os.replace(part, staged / part.name)
    if scored.is_dir():
        scored.rmdir()
    rejected = staged / f"{OUTCOME}={REJECTED}"
    if rejected.is_dir():
        os.replace(rejected, staged / REJECTED_DIR)
    (staged / REJECTED_DIR).mkdir(exist_ok=True)


def run(spark: SparkSession, args: argparse.Namespace) -> dict[str, Any]:
    """Score the inputs, write predictions and rejected rows, and return the summary."""
    from pyspark.sql import Observation
    from pyspark.sql import functions as F

    started = time.monotonic()
    spec = load_spec(args.spec)
    model_dir = str(Path(args.model).resolve())
    rows = typed_rows(read_rows(spark, spec, list(args.input)), spec)
    cores = max(spark.sparkContext.defaultParallelism, 1)
    if rows.rdd.getNumPartitions() < cores:  # a small day in one file would use one core
        rows = rows.repartition(cores)
    seen = Observation("rows_in")
    rows = rows.observe(seen, F.count(F.lit(1)).alias("rows_in"))
    scored = rows.mapInArrow(
        score_batches(spec, model_dir, args.threads, _kept(rows, spec)), _schema(rows, spec)
    )
    done = Observation("outcomes")
    out = scored.select(
        "*",
        F.lit(spec.name).alias("model_name"),
        F.lit(str(args.model_version)).alias("model_version"),
        F.lit(args.ds).alias("ds"),
        F.when(F.col(REASON).isNull(), SCORED).otherwise(REJECTED).alias(OUTCOME),
    ).observe(
        done,
        F.coalesce(F.sum(F.col(REASON).isNull().cast("long")), F.lit(0)).alias(SCORED),
        F.coalesce(F.sum(F.col(REASON).isNotNull().cast("long")), F.lit(0)).alias(REJECTED),
    )
    target = Path(args.out).resolve()
    staged = staging_dir(target)
    try:
        log.info(
            "score %s ds=%s with %s v%s", spec.name, args.ds, args.model_name, args.model_version
        )
        with _unsorted_partitioned_write(spark):
            out.write.mode("overwrite").partitionBy(OUTCOME).parquet(str(staged))
        rows_in = int(seen.get["rows_in"])
        counts = {k: int(v) for k, v in done.get.items()}
        if rows_in != counts[SCORED] + counts[REJECTED]:
            raise RuntimeError(
                f"rows in ({rows_in}) != scored ({counts[SCORED]}) + rejected "
                f"({counts[REJECTED]}); nothing was replaced"
            )
        reasons = _reasons(spark, staged / f"{OUTCOME}={REJECTED}") if counts[REJECTED] else {}
        _move_outcomes(staged)
        seconds = time.monotonic() - started
        summary = {
            "dataset": spec.name,
            "ds": args.ds,
            "run_id": args.run_id,
            "model": {
                "name": args.model_name,
                "version": str(args.model_version),
                "path": model_dir,
            },
            "inputs": [str(Path(p).resolve()) for p in args.input],
            "rows_in": rows_in,
            "rows_scored": counts[SCORED],
            "rows_rejected": counts[REJECTED],
            "reasons": reasons,
            "output": str(target),
            "rejected": str(target / REJECTED_DIR),
            "seconds": round(seconds, 3),
            "rows_per_second": round(rows_in / seconds, 1) if seconds > 0 else None,
            "written_at": datetime.now(UTC).isoformat(),
        }
        write_json_atomic(staged / LINEAGE_FILE, summary)
        replace_dir(staged, target)
    finally:
        discard_staging(staged)
    write_json_atomic(Path(args.summary), summary)
    log.info(
        "scored %d of %d rows (%d rejected) in %.1f s -> %s",
        summary["rows_scored"],
        rows_in,
        summary["rows_rejected"],
        seconds,
        target,
    )
    for reason, n in reasons.items():
        log.info("rejected %d rows: %s", n, reason)
    return summary


def _reasons(spark: SparkSession, rejected: Path) -> dict[str, int]:
    """The most common reasons of the rejected rows (read back from what was written)."""
    counted = (
        spark.read.parquet(str(rejected))
        .groupBy(REASON)
        .count()
        .orderBy("count", ascending=False)
        .limit(TOP_REASONS)
        .collect()
    )
    return {str(r[REASON]): int(r["count"]) for r in counted}


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    args = parse_args(argv)
    load_spec(args.spec)  # a bad spec fails before a Spark session is paid for
    if not (Path(args.model) / "saved_model.pb").exists():
        raise SystemExit(f"--model {args.model} is not a SavedModel folder (no saved_model.pb)")
    from aimass.platform.spark import get_session

    spark = get_session(app_name=f"aimass-score-{args.ds}", master=args.master)
    try:
        run(spark, args)
    finally:
        spark.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
