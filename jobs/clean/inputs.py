"""What the clean job reads, and the checks made on it before anything is written.

An input is a CSV or Parquet file or a folder of them, local or ``s3://``. ``check_input``
fails on a missing input, an empty (0-byte) file, a CSV header or Parquet schema that does
not fit the spec and a folder that mixes formats; ``check_expressions`` fails on a derived
column, rule or label expression that does not compile on the spec's schema. Both raise
``ConfigError`` before the job writes anything, so the previous partitions stay.

An ``s3://`` (or ``s3a://``) input is downloaded with boto3 into a hidden folder beside
the clean partition (``staged_input``), checked and read like a local one and removed
when the run ends.
"""

from __future__ import annotations

import csv
import logging
import shutil
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from aimass.data.spec import DatasetSpec, Derived
from aimass.platform import s3io
from aimass.platform.errors import ConfigError
from jobs.clean.output import temp_sibling

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

log = logging.getLogger(__name__)


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
    # Several inputs merged into one batch (``merge_batches``): what Spark reads, and each
    # input's files as the run names them.
    read_paths: tuple[str, ...] = ()
    merged_inputs: tuple[str, ...] = ()

    @property
    def source(self) -> str:
        """Where the batch comes from, as the run was given it."""
        return self.staged_from or self.path

    @property
    def paths(self) -> list[str]:
        """What Spark reads: the file or folder, or the files of merged inputs."""
        return list(self.read_paths) or [self.path]

    @property
    def inputs(self) -> list[str]:
        """The input files by the names the run knows them by: local paths, or the S3
        objects a staged copy came from (what the lake records a batch was cleaned from)."""
        if self.merged_inputs:
            return list(self.merged_inputs)
        if self.staged_from is None:
            return [str(f) for f in self.files] or [self.path]
        if len(self.files) == 1 and not self.staged_from.endswith("/"):
            return [self.staged_from]
        return [f"{self.staged_from.rstrip('/')}/{f.name}" for f in self.files]

    @property
    def bytes(self) -> int:
        """The size of its files (0 when they are not known)."""
        return sum(f.stat().st_size for f in self.files if f.exists())


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


def input_format(
    spec: DatasetSpec, names: list[str], where: str, *, paths: list[Path] | None = None
) -> str:
    """``parquet`` or ``csv`` from the file extensions, else ``spec.source_format``.

    Given the local ``paths`` of the files, one whose suffix names no format (``adult.data``)
    is told by its content instead: Parquet starts with ``PAR1``, anything else is read as CSV.

    Raises:
        ConfigError: the files mix CSV and Parquet.
    """
    found: dict[str, str] = {}
    for index, name in enumerate(names):
        fmt = _EXTENSIONS.get(Path(name).suffix.lower())
        if fmt is None and paths is not None:
            with open(paths[index], "rb") as fh:
                head = fh.read(4)
            # An empty file names no format (the empty-file check names it).
            fmt = (PARQUET if head == b"PAR1" else CSV) if head else None
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
    fields = next(csv.reader([first], delimiter=spec.delimiter, quotechar=spec.quote), [])
    header = [h.strip() for h in fields]
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
    """Check each file of a batch against the spec; the batch's format (by suffix, else
    by content, else the spec's)."""
    fmt = input_format(spec, [f.name for f in files], where, paths=files)
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


def merge_batches(batches: Sequence[Batch]) -> Batch:
    """One batch of several checked inputs (each a file or an S3 object or folder).

    Raises:
        ConfigError: the inputs mix CSV and Parquet.
    """
    if len(batches) == 1:
        return batches[0]
    formats = sorted({b.format for b in batches})
    if len(formats) > 1:
        raise ConfigError(
            f"the inputs {[b.source for b in batches]} mix {' and '.join(formats)}; one run "
            "reads one format"
        )
    return Batch(
        path=", ".join(b.source for b in batches),
        format=formats[0],
        files=tuple(f for b in batches for f in b.files),
        read_paths=tuple(p for b in batches for p in b.paths),
        merged_inputs=tuple(i for b in batches for i in b.inputs),
    )


@contextmanager
def staged_inputs(spec: DatasetSpec, inputs: Sequence[str], *, beside: Path) -> Iterator[Batch]:
    """``staged_input`` for each of ``inputs``, merged into one batch."""
    with ExitStack() as stack:
        yield merge_batches(
            [stack.enter_context(staged_input(spec, i, beside=beside)) for i in inputs]
        )


@contextmanager
def staged_input(spec: DatasetSpec, input_path: str, *, beside: Path) -> Iterator[Batch]:
    """The checked batch of ``input_path``; an S3 input is staged beside ``beside`` first.

    The S3 copy goes to a hidden folder next to ``beside`` (the clean partition: on the
    same storage, so a cluster's executors read it too) and is removed when the block ends.
    """
    staging = None
    if s3io.is_s3_uri(input_path):
        staging = temp_sibling(beside, "input") / "batch"
    try:
        yield check_input(spec, input_path, staging=staging)
    finally:
        if staging is not None:
            shutil.rmtree(staging.parent, ignore_errors=True)


# -- reading --------------------------------------------------------------------------------


def read_raw(spark: SparkSession, input_path: str | list[str], spec: DatasetSpec) -> DataFrame:
    """Read the raw CSV with an all-string schema; malformed lines keep their text.

    The spec's ``source.delimiter`` and ``source.quote`` set the dialect; values stay
    untrimmed here and are normalized by ``transforms.parse_rows``.
    """
    from jobs.clean.transforms import CORRUPT_COLUMN, raw_csv_schema

    return spark.read.csv(
        input_path,
        schema=raw_csv_schema(spec),
        header=spec.header,
        mode="PERMISSIVE",
        columnNameOfCorruptRecord=CORRUPT_COLUMN,
        encoding="UTF-8",
        multiLine=False,
        sep=spec.delimiter,
        quote=spec.quote,
        # A doubled quote inside a quoted field is a quote (RFC 4180).
        escape=spec.quote,
    )


def read_batch(spark: SparkSession, batch: Batch, spec: DatasetSpec) -> DataFrame:
    """Read the batch as ``raw_csv_schema(spec)`` plus each row's source position."""
    from jobs.clean.dedupe import with_source_position
    from jobs.clean.transforms import parquet_as_raw

    if batch.format == PARQUET:
        try:
            frame = spark.read.option("mergeSchema", "true").parquet(*batch.paths)
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
    return with_source_position(read_raw(spark, batch.paths, spec))
