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
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import logging
import os
import shutil
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aimass.data.spec import DatasetSpec, Derived, load_spec
from aimass.platform import s3io
from aimass.platform.errors import ConfigError, StageError

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

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
    )
    parser.add_argument(
        "--spec", required=True, help="dataset spec name (conf/datasets/<name>.yaml) or path"
    )
    parser.add_argument(
        "--input",
        required=True,
        help="CSV or Parquet file, or a folder of them (format by extension, else the spec's); "
        "local or s3://bucket/key",
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


# -- input checks ---------------------------------------------------------------------------


def _is_local(path: str) -> bool:
    return "://" not in path or path.startswith("file://")


def _local_path(path: str) -> Path:
    return Path(path.removeprefix("file://"))


CSV = "csv"
PARQUET = "parquet"
_EXTENSIONS = {".csv": CSV, ".parquet": PARQUET}


@dataclass(frozen=True)
class Batch:
    """The input of one run: where it is, its format and (when local) its files.

    For an S3 input ``path`` and ``files`` are the local copy and ``staged_from`` is the
    ``s3://`` URI it was downloaded from.
    """

    path: str
    format: str
    files: tuple[Path, ...] = ()
    staged_from: str | None = None

    @property
    def source(self) -> str:
        """Where the batch comes from, as the run was given it."""
        return self.staged_from or self.path


def _input_files(input_path: Path) -> list[Path]:
    if not input_path.exists():
        raise ConfigError(
            f"input {input_path} does not exist; pass --input a CSV or Parquet file or a folder "
            "of them (for the sample data run `make setup`)"
        )
    if input_path.is_file():
        return [input_path]
    files = sorted(
        p for p in input_path.iterdir() if p.is_file() and not p.name.startswith((".", "_"))
    )
    if not files:
        raise ConfigError(
            f"input folder {input_path} holds no files; drop CSV or Parquet files into it or "
            "fix --input"
        )
    return files


def input_format(spec: DatasetSpec, names: list[str], where: str) -> str:
    """``parquet`` or ``csv`` from the file extensions, else ``spec.source_format``.

    Raises:
        ConfigError: the files mix CSV and Parquet.
    """
    found: dict[str, str] = {}
    for name in names:
        fmt = _EXTENSIONS.get(Path(name).suffix.lower())
        if fmt is not None:
            found.setdefault(fmt, name)
    if len(found) > 1:
        raise ConfigError(
            f"input {where} mixes CSV and Parquet files ({sorted(found.values())}); one run "
            "reads one format: put each format in its own folder and pass that to --input"
        )
    return next(iter(found), spec.source_format)


def check_header(path: Path, spec: DatasetSpec) -> None:
    """Raise ConfigError unless the first line of ``path`` names the spec columns in order."""
    with open(path, encoding="utf-8-sig", errors="replace", newline="") as fh:
        first = fh.readline()
    header = [h.strip() for h in next(csv.reader([first]), [])]
    expected = list(spec.columns)
    if header == expected:
        return
    missing = [c for c in expected if c not in header]
    extra = [c for c in header if c not in expected]
    if not missing and not extra:
        detail = f"the columns are in another order: {header}"
    else:
        detail = f"missing columns {missing}, unexpected columns {extra}"
    raise ConfigError(
        f"CSV header of {path} does not match the schema of spec '{spec.name}': {detail}; "
        f"expected {expected}. Fix the file or the spec's schema (conf/datasets/{spec.name}.yaml), "
        "which lists the columns in file order"
    )


def check_parquet_schema(path: Path, spec: DatasetSpec) -> None:
    """Raise ConfigError unless ``path`` is a Parquet file holding every spec column."""
    import pyarrow.parquet as pq

    try:
        names = pq.read_schema(path).names
    except Exception as exc:  # pyarrow raises several types for a file that is not Parquet
        raise ConfigError(
            f"{path} is not a readable Parquet file ({exc}); re-export it or remove it from "
            "the input"
        ) from exc
    missing = [c for c in spec.columns if c not in names]
    if missing:
        raise ConfigError(
            f"Parquet file {path} lacks the columns {missing} of spec '{spec.name}' (it has "
            f"{names}); fix the export or the spec's schema (conf/datasets/{spec.name}.yaml)"
        )
    extra = [c for c in names if c not in spec.columns]
    if extra:
        log.warning("Parquet file %s: columns %s are not in the spec; ignored", path, extra)


def _check_not_empty(path: Path) -> None:
    if path.stat().st_size == 0:
        raise ConfigError(
            f"input file {path} is empty (0 bytes, not even a header): usually a failed or "
            "truncated export; re-export it, or remove it if the batch really has no data"
        )


def check_input(spec: DatasetSpec, input_path: str, *, staging: Path | None = None) -> Batch:
    """Check an input (exists, not empty, CSV header or Parquet schema fits the spec).

    An ``s3://`` or ``s3a://`` input is listed (bucket, credentials, objects, formats);
    given ``staging``, its objects are downloaded there and checked like a local folder,
    and the batch reads that copy. Other remote inputs (``gs://``, ``hdfs://``...) are
    passed through: Spark reports a missing path itself.

    Returns:
        The batch to read, with its format.
    """
    if s3io.is_s3_uri(input_path):
        return _check_s3_input(spec, input_path, staging)
    if not _is_local(input_path):
        return Batch(input_path, input_format(spec, [input_path], input_path))
    local = _local_path(input_path).resolve()
    files = _input_files(local)
    fmt = _check_files(spec, files, str(local))
    log.info("input %s: %d %s file(s)", local, len(files), fmt)
    return Batch(str(local), fmt, tuple(files))


def _check_files(spec: DatasetSpec, files: list[Path], where: str) -> str:
    """Check each file of a batch against the spec; the batch's format."""
    fmt = input_format(spec, [f.name for f in files], where)
    for f in files:
        _check_not_empty(f)
        if fmt == PARQUET:
            check_parquet_schema(f, spec)
        elif spec.header:
            check_header(f, spec)
    return fmt


def _check_s3_input(spec: DatasetSpec, uri: str, staging: Path | None) -> Batch:
    """List an S3 input and, given ``staging``, download it there and check the copy."""
    objects = s3io.list_objects(uri)
    if staging is None:
        return Batch(uri, input_format(spec, [o.name for o in objects], uri))
    files = s3io.download(objects, staging)
    try:
        fmt = _check_files(spec, files, uri)
    except ConfigError as exc:
        # Name the object, not its temporary copy (longest paths first: a.csv vs a.csv.1).
        message = str(exc)
        for obj, path in sorted(zip(objects, files, strict=True), key=lambda p: -len(str(p[1]))):
            message = message.replace(str(path), obj.uri)
        raise ConfigError(message) from exc
    log.info("input %s: %d %s file(s), staged in %s", uri, len(files), fmt, staging)
    # One object is read as a file: a folder read would skip a name starting with "_" or ".".
    path = files[0] if len(files) == 1 else staging
    return Batch(str(path), fmt, tuple(files), staged_from=uri)


def check_expressions(spark: SparkSession, spec: DatasetSpec, origin: str) -> None:
    """Raise ConfigError unless every derived column, rule and the label expression compile.

    Checked on an empty typed frame, so a typo fails in a second, before any data is read.
    Derived columns are checked in order (each may use the ones before it); rules and the
    label may use all of them.
    """
    from pyspark.errors import AnalysisException
    from pyspark.sql import functions as F

    from jobs.clean.transforms import SPARK_TYPES

    fields = ", ".join(f"`{c}` {SPARK_TYPES[t].simpleString()}" for c, t in spec.schema)
    frame = spark.createDataFrame([], fields)
    checks: list[tuple[str, str, Derived | None]] = [
        (f"derived column '{d.name}'", d.expression, d) for d in spec.derived
    ]
    checks += [(f"rule '{r.name}'", r.expression, None) for r in spec.rules]
    checks.append(("label.expression", spec.label_expression, None))
    for what, expression, derived in checks:
        try:
            if derived is not None:
                frame = frame.withColumn(
                    derived.name, F.expr(expression).cast(SPARK_TYPES[derived.dtype])
                )
            frame.select(F.expr(expression)).schema  # noqa: B018 -- forces analysis
        except AnalysisException as exc:
            first = str(exc).splitlines()[0]
            raise ConfigError(
                f"{what} of spec '{spec.name}' ({expression!r}) cannot be evaluated on the "
                f"columns {frame.columns}: {first}. Fix the expression in the "
                f"spec ({origin}) or add the column to its schema"
            ) from exc


# -- atomic partition writes ----------------------------------------------------------------


def _temp_sibling(target: Path, tag: str) -> Path:
    # A leading dot keeps Spark and pyarrow readers of the parent folder away from it.
    return target.parent / f".{target.name}.{tag}-{uuid.uuid4().hex[:8]}"


def _staging_dir(target: Path) -> Path:
    """``<parent>/.<name>.staging-<id>/<name>``: hidden from readers of the parent, while
    the leaf keeps a normal name so Spark reads it back without hidden-path warnings."""
    return _temp_sibling(target, "staging") / target.name


def _replace_dir(staged: Path, target: Path) -> None:
    """Move ``staged`` to ``target``, replacing a previous ``target`` (rename, not copy)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    old = None
    if target.exists():
        old = _temp_sibling(target, "old")
        os.replace(target, old)
    os.replace(staged, target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _write_json_atomic(path: Path, payload: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex[:8]}")
    tmp.write_text(json.dumps(payload, indent=2, sort_keys=False) + "\n", encoding="utf-8")
    os.replace(tmp, path)


# -- the job --------------------------------------------------------------------------------


def read_raw(spark: SparkSession, input_path: str, spec: DatasetSpec) -> DataFrame:
    """Read the raw CSV with an all-string schema; malformed lines keep their text."""
    from jobs.clean.transforms import CORRUPT_COLUMN, raw_csv_schema

    return spark.read.csv(
        input_path,
        schema=raw_csv_schema(spec),
        header=spec.header,
        mode="PERMISSIVE",
        columnNameOfCorruptRecord=CORRUPT_COLUMN,
        encoding="UTF-8",
        multiLine=False,
        escape='"',
    )


def read_batch(spark: SparkSession, batch: Batch, spec: DatasetSpec) -> DataFrame:
    """Read the batch as ``raw_csv_schema(spec)`` plus each row's source position."""
    from jobs.clean.transforms import parquet_as_raw, with_source_position

    if batch.format == PARQUET:
        try:
            frame = spark.read.option("mergeSchema", "true").parquet(batch.path)
        except Exception as exc:  # schema merge conflicts surface here, before any write
            first = str(exc).splitlines()[0]
            raise ConfigError(
                f"cannot read Parquet input {batch.path}: {first}; make every file of the "
                "batch use the same column types"
            ) from exc
        return parquet_as_raw(with_source_position(frame), spec=spec)
    if batch.format != CSV:
        raise ConfigError(
            f"input {batch.path} has format '{batch.format}'; the clean job reads csv or "
            "parquet (name the files *.csv or *.parquet, or fix source.format in the spec)"
        )
    return with_source_position(read_raw(spark, batch.path, spec))


def run(spark: SparkSession, args: argparse.Namespace) -> dict[str, Any]:
    """Read -> clean -> write one partition pair and the summary; return the summary.

    An S3 input is first downloaded to a hidden folder beside the clean partition (on the
    same storage, so a cluster's executors read it too), removed when the run ends.
    """
    spec = load_spec(args.spec)
    staging = None
    if s3io.is_s3_uri(str(args.input)):
        staging = _temp_sibling(Path(args.out).resolve(), "input") / "batch"
    try:
        batch = check_input(spec, str(args.input), staging=staging)
        return _clean_batch(spark, args, spec, batch)
    finally:
        if staging is not None:
            shutil.rmtree(staging.parent, ignore_errors=True)


def _clean_batch(
    spark: SparkSession, args: argparse.Namespace, spec: DatasetSpec, batch: Batch
) -> dict[str, Any]:
    """Check the expressions, clean ``batch``, write the partitions and the summary."""
    from pyspark.sql import functions as F

    import jobs.clean.transforms as transforms
    from jobs.clean.transforms import (
        DUPLICATE_COLUMN,
        DUPLICATE_EXACT,
        DUPLICATE_KEY,
        HOLDOUT,
        REASON_COLUMN,
        SPLIT_COLUMN,
        TRAIN,
        drop_duplicates,
        reason_kind,
    )

    input_path = batch.source
    check_expressions(spark, spec, str(args.spec))
    log.info("clean %s ds=%s: %s input %s", spec.name, args.ds, batch.format, input_path)

    out, quarantine = Path(args.out).resolve(), Path(args.quarantine).resolve()
    # Cached so the corrupt-record column can be filtered on, the files are read once and
    # the source positions that order duplicates stay fixed between the actions below.
    raw = read_batch(spark, batch, spec).cache()
    staged_out = _staging_dir(out)
    staged_q = _staging_dir(quarantine)
    try:
        rows_in = raw.count()
        log.info("read %d raw rows from %s", rows_in, input_path)
        # Looked up on the module so tests can swap it for a faulty one.
        rows, rejected = transforms.clean_rows(raw, spec=spec)
        clean, duplicates = drop_duplicates(rows, spec=spec)
        out.parent.mkdir(parents=True, exist_ok=True)
        quarantine.parent.mkdir(parents=True, exist_ok=True)
        clean.write.mode("overwrite").parquet(str(staged_out))
        rejected.coalesce(1).write.mode("overwrite").parquet(str(staged_q))

        # Count what was written, not what was planned: this is the conservation check.
        written = spark.read.parquet(str(staged_out))
        splits = {
            r[SPLIT_COLUMN]: r["count"] for r in written.groupBy(SPLIT_COLUMN).count().collect()
        }
        written_q = spark.read.parquet(str(staged_q))
        reasons = {
            r["kind"]: r["count"]
            for r in written_q.groupBy(reason_kind(F.col(REASON_COLUMN)).alias("kind"))
            .count()
            .orderBy(F.desc("count"), "kind")
            .collect()
        }
        dup_counts = {
            r[DUPLICATE_COLUMN]: r["count"]
            for r in duplicates.groupBy(DUPLICATE_COLUMN).count().collect()
        }
        duplicate_kinds = {
            DUPLICATE_EXACT: dup_counts.get(DUPLICATE_EXACT, 0),
            DUPLICATE_KEY: dup_counts.get(DUPLICATE_KEY, 0),
        }
        rows_clean = sum(splits.values())
        rows_quarantined = sum(reasons.values())
        rows_duplicate = sum(duplicate_kinds.values())
        warnings = _warnings(rows_in, rows_clean, reasons)
        summary: dict[str, Any] = {
            "dataset": spec.name,
            "ds": args.ds,
            "input": input_path,
            "format": batch.format,
            "rows_in": rows_in,
            "rows_clean": rows_clean,
            "rows_quarantined": rows_quarantined,
            "rows_duplicate": rows_duplicate,
            "rows_train": splits.get(TRAIN, 0),
            "rows_holdout": splits.get(HOLDOUT, 0),
            "quarantine_reasons": reasons,
            "duplicates": duplicate_kinds,
            "warnings": warnings,
            "out": str(out),
            "quarantine": str(quarantine),
        }
        if rows_in != rows_clean + rows_quarantined + rows_duplicate:
            raise StageError(
                f"clean {spec.name} ds={args.ds}: rows are not conserved: rows_in={rows_in} but "
                f"rows_clean={rows_clean} + rows_quarantined={rows_quarantined} + "
                f"rows_duplicate={rows_duplicate}; the partitions were not replaced. This is a "
                "bug in jobs/clean/transforms.py: check the filters"
            )
        _replace_dir(staged_out, out)
        _replace_dir(staged_q, quarantine)
    finally:
        raw.unpersist()
        for staged in (staged_out, staged_q):
            shutil.rmtree(staged.parent, ignore_errors=True)

    _write_json_atomic(Path(args.summary), summary)
    log.info(
        "clean %s ds=%s: %d in, %d clean (%d train, %d holdout), %d quarantined, "
        "%d duplicates %s -> %s, %s; summary %s",
        spec.name,
        args.ds,
        rows_in,
        rows_clean,
        summary["rows_train"],
        summary["rows_holdout"],
        rows_quarantined,
        rows_duplicate,
        duplicate_kinds,
        out,
        quarantine,
        args.summary,
    )
    if reasons:
        log.info("quarantine reasons: %s", reasons)
    for warning in warnings:
        log.warning("clean %s ds=%s: %s", spec.name, args.ds, warning)
    return summary


def _warnings(rows_in: int, rows_clean: int, reasons: dict[str, int]) -> list[str]:
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


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    args = parse_args(argv)
    # Fail on a bad spec or input before paying for a Spark session (an S3 input is only
    # listed here: bucket, credentials, objects; run() downloads and checks it).
    check_input(load_spec(args.spec), str(args.input))
    from aimass.platform.spark import get_session

    spark = get_session(app_name=f"aimass-clean-{args.ds}", master=args.master)
    try:
        run(spark, args)
    finally:
        spark.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
