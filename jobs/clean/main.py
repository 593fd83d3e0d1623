"""Clean job: raw CSV -> typed clean partition + quarantine partition + summary JSON.

Run by the Airflow SparkSubmitOperator (or by hand)::

    spark-submit jobs/clean/main.py --spec chicago_taxi --input var/data/raw/chicago_taxi \
        --ds 2024-01-01 --out var/lake/clean/chicago_taxi/ds=2024-01-01 \
        --quarantine var/lake/quarantine/chicago_taxi/ds=2024-01-01 \
        --summary var/reports/chicago_taxi/ds=2024-01-01/clean_summary.json

Both partitions are written to hidden sibling folders and renamed into place once the
row-conservation check has passed, so a failed run leaves the previous partitions as
they were and a rerun replaces its own partitions (see docs/architecture.md, section 10).
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
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aimass.errors import ConfigError, StageError
from aimass.spec import DatasetSpec, load_spec

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
        description="Clean one raw CSV batch into a typed partition and a quarantine partition.",
    )
    parser.add_argument(
        "--spec", required=True, help="dataset spec name (conf/datasets/<name>.yaml) or path"
    )
    parser.add_argument("--input", required=True, help="CSV file or folder of CSV files")
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


def _csv_files(input_path: Path) -> list[Path]:
    if not input_path.exists():
        raise ConfigError(
            f"input {input_path} does not exist; pass --input a CSV file or a folder of CSV files "
            "(for the sample data run `make setup`)"
        )
    if input_path.is_file():
        return [input_path]
    files = sorted(
        p for p in input_path.iterdir() if p.is_file() and not p.name.startswith((".", "_"))
    )
    if not files:
        raise ConfigError(
            f"input folder {input_path} holds no files; drop CSV files into it or fix --input"
        )
    return files


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


def check_input(spec: DatasetSpec, input_path: str) -> str:
    """Check that a local input exists and its CSV headers match the spec; return the path.

    Remote inputs (``s3a://``...) are passed through: Spark reports a missing path itself.
    """
    if not _is_local(input_path):
        return input_path
    local = _local_path(input_path).resolve()
    files = _csv_files(local)
    if spec.header:
        for f in files:
            check_header(f, spec)
    log.info("input %s: %d file(s)", local, len(files))
    return str(local)


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


def run(spark: SparkSession, args: argparse.Namespace) -> dict[str, Any]:
    """Read -> clean -> write one partition pair and the summary; return the summary."""
    from pyspark.sql import functions as F

    from jobs.clean.transforms import (
        HOLDOUT,
        REASON_COLUMN,
        SPLIT_COLUMN,
        TRAIN,
        clean_rows,
        reason_kind,
    )

    spec = load_spec(args.spec)
    input_path = check_input(spec, str(args.input))
    log.info("clean %s ds=%s: input %s", spec.name, args.ds, input_path)

    out, quarantine = Path(args.out).resolve(), Path(args.quarantine).resolve()
    # Cached so the corrupt-record column can be filtered on and the file is read once.
    raw = read_raw(spark, input_path, spec).cache()
    staged_out = _staging_dir(out)
    staged_q = _staging_dir(quarantine)
    try:
        rows_in = raw.count()
        log.info("read %d raw rows from %s", rows_in, input_path)
        clean, rejected = clean_rows(raw, spec=spec)
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
        rows_clean = sum(splits.values())
        rows_quarantined = sum(reasons.values())
        summary: dict[str, Any] = {
            "dataset": spec.name,
            "ds": args.ds,
            "input": input_path,
            "rows_in": rows_in,
            "rows_clean": rows_clean,
            "rows_quarantined": rows_quarantined,
            "rows_train": splits.get(TRAIN, 0),
            "rows_holdout": splits.get(HOLDOUT, 0),
            "quarantine_reasons": reasons,
            "out": str(out),
            "quarantine": str(quarantine),
        }
        if rows_in != rows_clean + rows_quarantined:
            raise StageError(
                f"clean {spec.name} ds={args.ds}: rows are not conserved: rows_in={rows_in} but "
                f"rows_clean={rows_clean} + rows_quarantined={rows_quarantined}; the partitions "
                "were not replaced. This is a bug in jobs/clean/transforms.py: check the filters"
            )
        _replace_dir(staged_out, out)
        _replace_dir(staged_q, quarantine)
    finally:
        raw.unpersist()
        for staged in (staged_out, staged_q):
            shutil.rmtree(staged.parent, ignore_errors=True)

    _write_json_atomic(Path(args.summary), summary)
    log.info(
        "clean %s ds=%s: %d in, %d clean (%d train, %d holdout), %d quarantined -> %s, %s; summary %s",
        spec.name,
        args.ds,
        rows_in,
        rows_clean,
        summary["rows_train"],
        summary["rows_holdout"],
        rows_quarantined,
        out,
        quarantine,
        args.summary,
    )
    if reasons:
        log.info("quarantine reasons: %s", reasons)
    return summary


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    args = parse_args(argv)
    # Fail on a bad spec or input before paying for a Spark session.
    check_input(load_spec(args.spec), str(args.input))
    from aimass.spark import get_session

    spark = get_session(app_name=f"aimass-clean-{args.ds}", master=args.master)
    try:
        run(spark, args)
    finally:
        spark.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
