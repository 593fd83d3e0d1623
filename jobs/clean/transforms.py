"""Pure DataFrame -> DataFrame steps of the clean job (no I/O; see jobs/clean/main.py).

The input is the raw CSV read with every schema column as a string plus the
``_corrupt_record`` column (``raw_csv_schema``); Parquet input is brought to the same
shape by ``parquet_as_raw``. Every input row ends up in exactly one of three places: the
clean rows (typed, labelled, split), the quarantine rows (``raw``, ``reason``) or the
dropped duplicates (counted, not kept), so
``rows_in == rows_clean + rows_quarantined + rows_duplicate``.

Reasons written to quarantine:

- ``malformed: wrong field count`` -- the line has more or fewer fields than the schema;
- ``malformed: bad encoding`` -- the line had bytes that are not valid UTF-8;
- ``unparseable <type> in <column>: '<value>'`` -- a non-empty field that is not a <type>;
- ``rule <name>`` -- the row breaks a rule of the spec (the expression is false);
- ``null label <label>: <expression>`` -- the label expression is null for the row;
- ``unknown class <label>: '<value>'`` -- a multiclass label outside ``label.classes``.

Empty fields, and fields equal to one of the spec's ``source.null_values`` (e.g. ``NA``),
are nulls, not errors.

The label column holds 1/0 for a binary label, the class index (position in
``label.classes``) for a multiclass one, and a double for regression.

Duplicates (``drop_duplicates``) are rows that passed parsing and rules but repeat an
earlier row: ``exact`` when every schema column is equal, ``key`` when the columns of
``spec.dedupe_key`` are equal (nulls compare equal). "Earlier" is file order
(``with_source_position``), so the first copy in the batch is the one kept.

Everything is built from Spark SQL expressions (no Python UDFs), so it runs in the JVM.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pyspark.sql import Column, Window
from pyspark.sql import functions as F
from pyspark.sql import types as T

from aimass.platform.errors import ConfigError

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

    from aimass.data.spec import DatasetSpec

CORRUPT_COLUMN = "_corrupt_record"
# Where a row sat in the input (file, block, row): orders duplicates; never written out.
POSITION_COLUMN = "_source_position"
DUPLICATE_COLUMN = "duplicate"
DUPLICATE_EXACT = "exact"
DUPLICATE_KEY = "key"
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


def label_type(spec: DatasetSpec) -> T.DataType:
    """Type of the label column: int (0/1 or class index) for classification, double else."""
    return T.IntegerType() if spec.is_classification else T.DoubleType()


def clean_schema(spec: DatasetSpec) -> T.StructType:
    """Schema of the clean partition: typed spec columns, derived columns, the label, ``split``."""
    fields = [T.StructField(col, SPARK_TYPES[dtype], True) for col, dtype in spec.schema]
    fields += [T.StructField(d.name, SPARK_TYPES[d.dtype], True) for d in spec.derived]
    fields.append(T.StructField(spec.label_name, label_type(spec), True))
    fields.append(T.StructField(SPLIT_COLUMN, T.StringType(), False))
    return T.StructType(fields)


def quarantine_schema() -> T.StructType:
    return T.StructType(
        [
            T.StructField(RAW_COLUMN, T.StringType(), True),
            T.StructField(REASON_COLUMN, T.StringType(), True),
        ]
    )


def _position(df: DataFrame) -> list[Column]:
    """``POSITION_COLUMN`` when ``df`` carries it (to pass it through a select), else nothing."""
    return [F.col(POSITION_COLUMN)] if POSITION_COLUMN in df.columns else []


def with_source_position(df: DataFrame) -> DataFrame:
    """Add ``POSITION_COLUMN``: (file, byte offset of the split, row id) of each row.

    Apply it directly on a file scan, before any shuffle: the row id then grows with the
    line number inside each split, so ordering by the struct is file order whatever the
    partitioning, and reruns on the same files order rows identically.
    """
    position = F.struct(
        F.input_file_name().alias("file"),
        F.input_file_block_start().alias("offset"),
        F.monotonically_increasing_id().alias("row"),
    )
    return df.withColumn(POSITION_COLUMN, position)


def parquet_as_raw(df: DataFrame, *, spec: DatasetSpec) -> DataFrame:
    """Bring a Parquet batch to the shape of the raw CSV read (``raw_csv_schema``).

    Each spec column is taken by name and cast to string, so ``parse_rows`` types it as
    the spec says and quarantines values that do not fit (a string "abc" in a double
    column, 10.5 in a long column) with the same reasons as CSV. Columns that are not in
    the spec are dropped.

    Raises:
        ConfigError: a spec column is missing from the Parquet schema.
    """
    missing = [c for c in spec.columns if c not in df.columns]
    if missing:
        raise ConfigError(
            f"Parquet input lacks the columns {missing} of spec '{spec.name}' (it has "
            f"{[c for c in df.columns if c != POSITION_COLUMN]}); add them to the files or "
            f"remove them from the spec's schema (conf/datasets/{spec.name}.yaml)"
        )
    return df.select(
        *(F.col(c).cast(T.StringType()).alias(c) for c in spec.columns),
        F.lit(None).cast(T.StringType()).alias(CORRUPT_COLUMN),
        *_position(df),
    )


def _csv_field(col: Column) -> Column:
    """A string column formatted as one CSV field (null -> empty, quoted when needed)."""
    needs_quotes = col.contains(",") | col.contains('"') | col.contains("\n")
    quoted = F.concat(F.lit('"'), F.replace(col, F.lit('"'), F.lit('""')), F.lit('"'))
    return F.coalesce(F.when(needs_quotes, quoted).otherwise(col), F.lit(""))


def _rejoined(spec: DatasetSpec) -> Column:
    return F.concat_ws(",", *(_csv_field(F.col(c)) for c in spec.columns))


def _blank_to_null(col: Column, null_values: tuple[str, ...] = ()) -> Column:
    trimmed = F.trim(col)
    missing = trimmed == ""
    if null_values:
        missing = missing | trimmed.isin(*null_values)
    return F.when(missing, F.lit(None).cast("string")).otherwise(trimmed)


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
        row re-joined with commas, kept for later quarantine steps) and, when ``df`` has
        it, ``POSITION_COLUMN``; ``quarantine`` has ``raw`` and ``reason``. Empty fields
        are nulls, not errors.
    """
    missing = [c for c in spec.columns if c not in df.columns]
    if missing:
        raise ValueError(f"input lacks spec columns {missing}; read it with raw_csv_schema(spec)")
    corrupt = F.col(CORRUPT_COLUMN) if CORRUPT_COLUMN in df.columns else F.lit(None)
    raw = F.coalesce(corrupt.cast("string"), _rejoined(spec))

    values = {c: _blank_to_null(F.col(c), spec.null_values) for c in spec.columns}
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
        *_position(df),
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
    label = F.expr(spec.label_expression)
    checks.append(
        F.when(label.isNull(), F.lit(f"null label {spec.label_name}: {spec.label_expression}"))
    )
    if spec.label_classes:
        value = label.cast("string")
        checks.append(
            F.when(
                ~value.isin(*spec.label_classes),
                F.concat(F.lit(f"unknown class {spec.label_name}: '"), value, F.lit("'")),
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
    """Add ``spec.label_name`` from ``spec.label_expression`` (null stays null).

    Binary: the expression as int 1/0. Multiclass: the index of the expression's value
    (as a string) in ``spec.label_classes``, null when it is not one of them. Regression:
    the expression as double.
    """
    expression = F.expr(spec.label_expression)
    if spec.label_classes:
        value = expression.cast("string")
        index: Column = F.lit(None).cast(T.IntegerType())
        for i, cls in reversed(list(enumerate(spec.label_classes))):
            index = F.when(value == F.lit(cls), F.lit(i)).otherwise(index)
        return df.withColumn(spec.label_name, index.cast(T.IntegerType()))
    return df.withColumn(spec.label_name, expression.cast(label_type(spec)))


def add_split(df: DataFrame, *, spec: DatasetSpec) -> DataFrame:
    """Add ``split``: "holdout" for ``spec.holdout_percent`` % of rows, else "train".

    The bucket is a hash of the row's schema columns, so reruns (and identical rows)
    always land in the same split, whatever the partitioning.
    """
    bucket = F.pmod(F.xxhash64(*(F.col(c) for c in spec.columns)), F.lit(100))
    split = F.when(bucket < spec.holdout_percent, F.lit(HOLDOUT)).otherwise(F.lit(TRAIN))
    return df.withColumn(SPLIT_COLUMN, split)


def add_derived(df: DataFrame, *, spec: DatasetSpec) -> DataFrame:
    """Add the spec's derived columns, each its expression cast to its type, in spec order.

    A derived column may use the ones before it. Expressions should be null-safe where the
    data can make them fail (``CASE WHEN seconds > 0 THEN miles / seconds END``): under
    ANSI SQL a division by zero fails the job rather than giving null.
    """
    for d in spec.derived:
        df = df.withColumn(d.name, F.expr(d.expression).cast(SPARK_TYPES[d.dtype]))
    return df


def clean_rows(df: DataFrame, *, spec: DatasetSpec) -> tuple[DataFrame, DataFrame]:
    """The row-level clean step: parse, derive, rules, label, split (``drop_duplicates`` follows).

    Returns:
        ``(clean, quarantine)`` with the columns of ``clean_schema(spec)`` (plus
        ``POSITION_COLUMN`` when ``df`` has it, for ``drop_duplicates``) and
        ``quarantine_schema()``.
    """
    typed, malformed = parse_rows(df, spec=spec)
    ok, broken = apply_rules(add_derived(typed, spec=spec), spec=spec)
    clean = add_split(add_label(ok, spec=spec), spec=spec)
    columns = [*spec.clean_columns, spec.label_name, SPLIT_COLUMN]
    return clean.select(*columns, *_position(df)), malformed.unionByName(broken)


def drop_duplicates(df: DataFrame, *, spec: DatasetSpec) -> tuple[DataFrame, DataFrame]:
    """Keep the first copy of each row; return the later copies separately, by kind.

    A row is an ``exact`` duplicate when every schema column equals that of an earlier
    row, and a ``key`` duplicate when it is not an exact one but its ``spec.dedupe_key``
    columns equal those of an earlier row (nulls compare equal, as in ``GROUP BY``).
    "Earlier" is ``POSITION_COLUMN`` order (file order) when ``df`` has it; otherwise the
    row values themselves order the copies, which is deterministic too.

    Returns:
        ``(kept, duplicates)``: ``kept`` has the columns of ``df`` without
        ``POSITION_COLUMN``; ``duplicates`` has the schema columns and ``duplicate``
        (``"exact"`` or ``"key"``).
    """
    order = [F.col(POSITION_COLUMN).asc()] if POSITION_COLUMN in df.columns else []
    order += [F.col(c).asc_nulls_first() for c in spec.columns]
    exact = Window.partitionBy(*spec.columns).orderBy(*order)
    ranked = df.withColumn("__first", F.row_number().over(exact) == 1)
    kind = F.when(~F.col("__first"), F.lit(DUPLICATE_EXACT))
    if spec.dedupe_key:
        # Rank only among first copies: "__first" in the partition keeps the exact
        # duplicates out of the key groups, without a second pass over the data.
        key = Window.partitionBy(*spec.dedupe_key, "__first").orderBy(*order)
        kind = kind.when(F.row_number().over(key) > 1, F.lit(DUPLICATE_KEY))
    staged = ranked.withColumn("__duplicate", kind)
    helpers = ["__first", "__duplicate", POSITION_COLUMN]
    kept = staged.where(F.col("__duplicate").isNull()).drop(*helpers)
    duplicates = staged.where(F.col("__duplicate").isNotNull()).select(
        *spec.columns, F.col("__duplicate").alias(DUPLICATE_COLUMN)
    )
    return kept, duplicates


def reason_kind(reason: Column) -> Column:
    """A reason without the offending value, for counting (``unparseable double in fare``)."""
    return F.regexp_replace(reason, r": '.*$", "")
