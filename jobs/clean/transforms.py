"""Pure DataFrame -> DataFrame steps of the clean job (no I/O; see jobs/clean/main.py).

The input is the raw CSV read with every schema column as a string plus the
``_corrupt_record`` column (``raw_csv_schema``). Every input row ends up in exactly one
of the outputs: the clean rows (typed, labelled, split) or the quarantine rows
(``raw``, ``reason``), so ``rows_in == rows_clean + rows_quarantined``.

Reasons written to quarantine:

- ``malformed: wrong field count`` -- the line has more or fewer fields than the schema;
- ``malformed: bad encoding`` -- the line had bytes that are not valid UTF-8;
- ``unparseable <type> in <column>: '<value>'`` -- a non-empty field that is not a <type>;
- ``rule <name>`` -- the row breaks a rule of the spec (the expression is false);
- ``null label <label>: <expression>`` -- the label expression is null for the row.

Everything is built from Spark SQL expressions (no Python UDFs), so it runs in the JVM.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pyspark.sql import Column
from pyspark.sql import functions as F
from pyspark.sql import types as T

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

    from aimass.spec import DatasetSpec

CORRUPT_COLUMN = "_corrupt_record"
RAW_COLUMN = "raw"
REASON_COLUMN = "reason"
SPLIT_COLUMN = "split"
TRAIN = "train"
HOLDOUT = "holdout"

REASON_WRONG_FIELD_COUNT = "malformed: wrong field count"
REASON_BAD_ENCODING = "malformed: bad encoding"

SPARK_TYPES: dict[str, T.DataType] = {
    "string": T.StringType(),
    "long": T.LongType(),
    "double": T.DoubleType(),
}
# Spark's UTF-8 decoder turns invalid bytes into U+FFFD.
_REPLACEMENT_CHAR = "\ufffd"
_LONG_LIMIT = float(2**63)


def raw_csv_schema(spec: DatasetSpec) -> T.StructType:
    """All-string read schema for ``spec`` plus the corrupt-record column."""
    fields = [T.StructField(col, T.StringType(), True) for col in spec.columns]
    fields.append(T.StructField(CORRUPT_COLUMN, T.StringType(), True))
    return T.StructType(fields)


def clean_schema(spec: DatasetSpec) -> T.StructType:
    """Schema of the clean partition: typed spec columns, the label, ``split``."""
    fields = [T.StructField(col, SPARK_TYPES[dtype], True) for col, dtype in spec.schema]
    fields.append(T.StructField(spec.label_name, T.IntegerType(), True))
    fields.append(T.StructField(SPLIT_COLUMN, T.StringType(), False))
    return T.StructType(fields)


def quarantine_schema() -> T.StructType:
    return T.StructType(
        [
            T.StructField(RAW_COLUMN, T.StringType(), True),
            T.StructField(REASON_COLUMN, T.StringType(), True),
        ]
    )


def _csv_field(col: Column) -> Column:
    """A string column formatted as one CSV field (null -> empty, quoted when needed)."""
    needs_quotes = col.contains(",") | col.contains('"') | col.contains("\n")
    quoted = F.concat(F.lit('"'), F.replace(col, F.lit('"'), F.lit('""')), F.lit('"'))
    return F.coalesce(F.when(needs_quotes, quoted).otherwise(col), F.lit(""))


def _rejoined(spec: DatasetSpec) -> Column:
    return F.concat_ws(",", *(_csv_field(F.col(c)) for c in spec.columns))


def _blank_to_null(col: Column) -> Column:
    trimmed = F.trim(col)
    return F.when(trimmed == "", F.lit(None).cast("string")).otherwise(trimmed)


def _typed(value: Column, dtype: str) -> Column:
    """``value`` (trimmed, non-empty string or null) cast to ``dtype``; null when unparseable."""
    if dtype == "string":
        return value
    if dtype == "double":
        return value.try_cast(T.DoubleType())
    # long: also accept integral decimals such as "8.0", which some exports write.
    as_double = value.try_cast(T.DoubleType())
    integral = (as_double == F.floor(as_double)) & (F.abs(as_double) < F.lit(_LONG_LIMIT))
    return F.coalesce(
        value.try_cast(T.LongType()),
        F.when(integral, as_double.cast(T.LongType())),
    )


def parse_rows(df: DataFrame, *, spec: DatasetSpec) -> tuple[DataFrame, DataFrame]:
    """Type the raw string columns as the spec says; send malformed rows to quarantine.

    Args:
        df: raw rows read with ``raw_csv_schema(spec)``. The caller must cache it when it
            comes straight from the CSV reader: Spark refuses queries that reference only
            the corrupt-record column of an uncached CSV scan.
        spec: the dataset spec (schema order and types).

    Returns:
        ``(typed, quarantine)``: ``typed`` has every spec column typed plus ``raw`` (the
        row re-joined with commas, kept for later quarantine steps); ``quarantine`` has
        ``raw`` and ``reason``. Empty fields are nulls, not errors.
    """
    missing = [c for c in spec.columns if c not in df.columns]
    if missing:
        raise ValueError(f"input lacks spec columns {missing}; read it with raw_csv_schema(spec)")
    corrupt = F.col(CORRUPT_COLUMN) if CORRUPT_COLUMN in df.columns else F.lit(None)
    raw = F.coalesce(corrupt.cast("string"), _rejoined(spec))

    values = {c: _blank_to_null(F.col(c)) for c in spec.columns}
    typed = {c: _typed(values[c], dtype) for c, dtype in spec.schema}
    bad_encoding = F.lit(False)
    for c in spec.columns:
        bad_encoding = bad_encoding | F.coalesce(F.col(c).contains(_REPLACEMENT_CHAR), F.lit(False))

    # The first failing check names the reason; null means the row is fine.
    checks: list[Column] = [
        F.when(corrupt.isNotNull(), F.lit(REASON_WRONG_FIELD_COUNT)),
        F.when(bad_encoding, F.lit(REASON_BAD_ENCODING)),
    ]
    for c, dtype in spec.schema:
        if dtype == "string":
            continue
        message = F.concat(F.lit(f"unparseable {dtype} in {c}: '"), values[c], F.lit("'"))
        checks.append(F.when(values[c].isNotNull() & typed[c].isNull(), message))

    staged = df.select(
        *(typed[c].alias(c) for c in spec.columns),
        raw.alias(RAW_COLUMN),
        F.coalesce(*checks).alias(REASON_COLUMN),
    )
    good = staged.where(F.col(REASON_COLUMN).isNull()).drop(REASON_COLUMN)
    bad = staged.where(F.col(REASON_COLUMN).isNotNull()).select(RAW_COLUMN, REASON_COLUMN)
    return good, bad


def apply_rules(df: DataFrame, *, spec: DatasetSpec) -> tuple[DataFrame, DataFrame]:
    """Split typed rows into those that keep the spec's rules and those that break one.

    A row breaks rule ``name`` when its expression is false (null, as in a SQL CHECK
    constraint, passes: not-null demands belong to the quality suite). A row whose label
    expression is null cannot be trained on, so it is quarantined too.

    Returns:
        ``(ok, quarantine)``: ``ok`` has the columns of ``df``; ``quarantine`` has ``raw``
        (when ``df`` has it, else the typed row re-joined) and ``reason``.
    """
    checks: list[Column] = [
        F.when(~F.coalesce(F.expr(rule.expression), F.lit(True)), F.lit(f"rule {rule.name}"))
        for rule in spec.rules
    ]
    checks.append(
        F.when(
            F.expr(spec.label_expression).isNull(),
            F.lit(f"null label {spec.label_name}: {spec.label_expression}"),
        )
    )
    reason = F.coalesce(*checks)
    raw = (
        F.col(RAW_COLUMN)
        if RAW_COLUMN in df.columns
        else F.concat_ws(",", *(_csv_field(F.col(c).cast("string")) for c in spec.columns))
    )
    staged = df.withColumn("__reason", reason)
    ok = staged.where(F.col("__reason").isNull()).drop("__reason")
    bad = staged.where(F.col("__reason").isNotNull()).select(
        raw.alias(RAW_COLUMN), F.col("__reason").alias(REASON_COLUMN)
    )
    return ok, bad


def add_label(df: DataFrame, *, spec: DatasetSpec) -> DataFrame:
    """Add ``spec.label_name`` as int 1/0 from ``spec.label_expression`` (null stays null)."""
    return df.withColumn(spec.label_name, F.expr(spec.label_expression).cast(T.IntegerType()))


def add_split(df: DataFrame, *, spec: DatasetSpec) -> DataFrame:
    """Add ``split``: "holdout" for ``spec.holdout_percent`` % of rows, else "train".

    The bucket is a hash of the row's schema columns, so reruns (and identical rows)
    always land in the same split, whatever the partitioning.
    """
    bucket = F.pmod(F.xxhash64(*(F.col(c) for c in spec.columns)), F.lit(100))
    split = F.when(bucket < spec.holdout_percent, F.lit(HOLDOUT)).otherwise(F.lit(TRAIN))
    return df.withColumn(SPLIT_COLUMN, split)


def clean_rows(df: DataFrame, *, spec: DatasetSpec) -> tuple[DataFrame, DataFrame]:
    """The whole clean step: parse, rules, label, split.

    Returns:
        ``(clean, quarantine)`` with the columns of ``clean_schema(spec)`` and
        ``quarantine_schema()``.
    """
    typed, malformed = parse_rows(df, spec=spec)
    ok, broken = apply_rules(typed, spec=spec)
    clean = add_split(add_label(ok, spec=spec), spec=spec)
    columns = [*spec.columns, spec.label_name, SPLIT_COLUMN]
    return clean.select(*columns), malformed.unionByName(broken)


def reason_kind(reason: Column) -> Column:
    """A reason without the offending value, for counting (``unparseable double in fare``)."""
    return F.regexp_replace(reason, r": '.*$", "")
