"""The rows a scoring run reads: typed as the model's inputs, with an id, a lineage column
and a ``reason`` where a value cannot be read.

The input is a day of the clean lake (its batches, typed Parquet) or a file or folder a user
names (Parquet, or CSV with a header). Each model input (``spec.model_inputs``) is read as
the clean job reads it (``jobs.clean.transforms.normalized`` and ``_typed``: trimmed, null
tokens as null, cast), so a CSV a client exports scores like the cleaned row; a field that
does not parse gives the row the clean job's reason (``unparseable double in fare: 'abc'``)
and the row goes to the rejected rows instead of the model.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from aimass.data.spec import DatasetSpec
from aimass.platform.errors import ConfigError
from jobs.clean.inputs import CSV, _input_files, input_format
from jobs.score.predict import INPUT_PARTITION, REASON

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame, SparkSession

ROW_ID = "row_id"
TYPES = {"double": "double", "long": "bigint", "string": "string"}


def input_files(inputs: list[str]) -> list[Path]:
    """Every file the inputs name (a folder's hidden and ``_`` files skipped)."""
    if not inputs:
        raise ConfigError("nothing to score: pass --input a clean batch, a file or a folder")
    return [f for given in inputs for f in _input_files(Path(given))]


def read_rows(spark: SparkSession, spec: DatasetSpec, inputs: list[str]) -> DataFrame:
    """The input as Spark reads it (Parquet typed, CSV as strings), with its file's path.

    Raises:
        ConfigError: no input, mixed formats, or a model input column missing.
    """
    from pyspark.sql import functions as F

    files = input_files(inputs)
    fmt = input_format(spec, [f.name for f in files], ", ".join(inputs), paths=files)
    paths = [str(f) for f in files]
    if fmt == CSV:
        df = (
            spark.read.option("header", spec.header)
            .option("sep", spec.delimiter)
            .option("quote", spec.quote)
            .option("inferSchema", False)
            .csv(paths)
        )
        if not spec.header:
            df = df.toDF(*spec.columns)
    else:
        df = spark.read.parquet(*paths)
    missing = [c for c in spec.model_inputs if c not in df.columns]
    if missing:
        raise ConfigError(
            f"input {', '.join(inputs)} lacks the model's input columns {missing} "
            f"(has {df.columns}); score files with the columns the spec's features read"
        )
    return df.withColumn(INPUT_PARTITION, F.col("_metadata.file_path"))


def _value(df: DataFrame, spec: DatasetSpec, column: str) -> tuple[Column, Column | None]:
    """The column as the model's type, and the reason its value is unreadable (or None)."""
    from pyspark.sql import functions as F
    from pyspark.sql import types as T

    from jobs.clean.transforms import _typed, normalized

    dtype = spec.dtype(column)
    if isinstance(df.schema[column].dataType, T.StringType):
        text = normalized(F.col(column), spec, column)
        typed = _typed(text, dtype)
        if dtype == "string":
            return typed, None
        message = F.concat(F.lit(f"unparseable {dtype} in {column}: '"), text, F.lit("'"))
        return typed, F.when(text.isNotNull() & typed.isNull(), message)
    typed = F.col(column).try_cast(TYPES[dtype])
    if dtype == "string":
        return normalized(typed, spec, column), None
    message = F.concat(
        F.lit(f"unreadable {dtype} in {column}: '"), F.col(column).cast("string"), F.lit("'")
    )
    return typed, F.when(F.col(column).isNotNull() & typed.isNull(), message)


def typed_rows(df: DataFrame, spec: DatasetSpec) -> DataFrame:
    """Key columns, an id, the typed model inputs, the input's folder and a ``reason``.

    ``row_id`` is a hash of the row's key columns (``spec.dedupe_key``) when the input has
    them, else of every model input: the same row gets the same id in every run.
    """
    from pyspark.sql import functions as F

    keys = [c for c in spec.dedupe_key if c in df.columns and c not in spec.model_inputs]
    id_columns = [c for c in spec.dedupe_key if c in df.columns] or list(spec.model_inputs)
    values: list[Column] = []
    reasons: list[Column] = []
    for column in spec.model_inputs:
        typed, reason = _value(df, spec, column)
        values.append(typed.alias(column))
        if reason is not None:
            reasons.append(reason)
    # The file each row came from; the scoring function names its folder (the batch) once
    # per file and batch (``input_partitions``), not once per row here.
    return df.select(
        *keys,
        F.xxhash64(*(F.col(c) for c in id_columns)).alias(ROW_ID),
        *values,
        F.col(INPUT_PARTITION),
        (F.coalesce(*reasons) if reasons else F.lit(None).cast("string")).alias(REASON),
    )
