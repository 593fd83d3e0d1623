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

Duplicates (``jobs.clean.dedupe``) are rows that passed parsing and rules but repeat an
earlier row in file order; they are counted, not kept.

Everything is built from Spark SQL expressions (no Python UDFs), so it runs in the JVM.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pyspark.sql import Column
from pyspark.sql import functions as F
from pyspark.sql import types as T

from aimass.data.spec.expr import cutoff_seconds
from aimass.platform.errors import ConfigError
from jobs.clean.dedupe import POSITION_COLUMN
from jobs.clean.derive import SparkCompiler, time_seconds

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

    from aimass.data.spec import DatasetSpec

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


def _csv_field(col: Column, delimiter: str = ",", quote: str = '"') -> Column:
    """A string column formatted as one CSV field (null -> empty, quoted when needed)."""
    needs_quotes = col.contains(delimiter) | col.contains(quote) | col.contains("\n")
    quoted = F.concat(F.lit(quote), F.replace(col, F.lit(quote), F.lit(quote * 2)), F.lit(quote))
    return F.coalesce(F.when(needs_quotes, quoted).otherwise(col), F.lit(""))


def _rejoined(spec: DatasetSpec, *, cast: bool = False) -> Column:
    """The row's schema fields joined as one line of the spec's CSV dialect."""
    fields = (F.col(c).cast("string") if cast else F.col(c) for c in spec.columns)
    return F.concat_ws(spec.delimiter, *(_csv_field(f, spec.delimiter, spec.quote) for f in fields))


# What ``source.trim`` strips around a field; models/tabular/derive.py strips the same.
TRIM_CHARACTERS = " \t"


def normalized(col: Column, spec: DatasetSpec, column: str) -> Column:
    """A raw field as the spec reads it: trimmed, null tokens as null, folded to a case.

    Empty fields (after trimming) and ``source.null_values`` are null; ``source.case``
    folds a string column to lower or upper case after the null tokens are matched. The
    SavedModel normalizes string inputs the same way (``models.tabular.derive.Normalize``).
    """
    value = F.btrim(col, F.lit(TRIM_CHARACTERS)) if spec.trim else col
    missing = value == ""
    if spec.null_values:
        missing = missing | value.isin(*spec.null_values)
    case = dict(spec.case).get(column)
    if case is not None:
        value = F.lower(value) if case == "lower" else F.upper(value)
    return F.when(missing, F.lit(None).cast("string")).otherwise(value)


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


def _parsed(df: DataFrame, *, spec: DatasetSpec, raw: bool = True) -> DataFrame:
    """``parse_rows`` before the split: every row, with ``reason`` null where it parsed.

    Built as three projections, each reading plain columns of the one before, so a field is
    normalized and cast once (one projection that repeats an expression in several checks
    evaluates it several times). ``raw=False`` keeps the input's fields as ``__f_<column>``
    and its corrupt record instead of the re-joined line, for ``stage_rows`` to re-join only
    the lines it quarantines.
    """
    missing = [c for c in spec.columns if c not in df.columns]
    if missing:
        raise ValueError(f"input lacks spec columns {missing}; read it with raw_csv_schema(spec)")
    corrupt = F.col(CORRUPT_COLUMN) if CORRUPT_COLUMN in df.columns else F.lit(None)
    bad_encoding = F.lit(False)
    for c in spec.columns:
        bad_encoding = bad_encoding | F.coalesce(F.col(c).contains(_REPLACEMENT_CHAR), F.lit(False))

    # 1. the normalized values, and what the line looked like
    fields = [F.col(c).alias(f"__f_{c}") for c in spec.columns]
    values = df.select(
        *(normalized(F.col(c), spec, c).alias(f"__v_{c}") for c in spec.columns),
        *fields,
        corrupt.cast("string").alias(CORRUPT_COLUMN),
        bad_encoding.alias("__bad_encoding"),
        *_position(df),
    )
    # 2. the typed values
    typed = values.select(
        "*", *(_typed(F.col(f"__v_{c}"), dtype).alias(c) for c, dtype in spec.schema)
    )
    # 3. the first failing check names the reason; null means the row is fine
    checks: list[Column] = [
        F.when(F.col(CORRUPT_COLUMN).isNotNull(), F.lit(REASON_WRONG_FIELD_COUNT)),
        F.when(F.col("__bad_encoding"), F.lit(REASON_BAD_ENCODING)),
    ]
    for c, dtype in spec.schema:
        if dtype == "string":
            continue
        value = F.col(f"__v_{c}")
        message = F.concat(F.lit(f"unparseable {dtype} in {c}: '"), value, F.lit("'"))
        checks.append(F.when(value.isNotNull() & F.col(c).isNull(), message))
    kept = [F.col(f"__f_{c}") for c in spec.columns] + [F.col(CORRUPT_COLUMN)]
    return typed.select(
        *spec.columns,
        *([raw_line(spec).alias(RAW_COLUMN)] if raw else kept),
        F.coalesce(*checks).alias(REASON_COLUMN),
        *_position(df),
    )


def raw_line(spec: DatasetSpec) -> Column:
    """The input line of a row of ``_parsed(raw=False)``: the corrupt record as read, else
    the fields re-joined in the spec's dialect."""
    fields = (F.col(f"__f_{c}") for c in spec.columns)
    joined = F.concat_ws(
        spec.delimiter, *(_csv_field(f, spec.delimiter, spec.quote) for f in fields)
    )
    return F.coalesce(F.col(CORRUPT_COLUMN), joined)


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
    staged = _parsed(df, spec=spec)
    good = staged.where(F.col(REASON_COLUMN).isNull()).drop(REASON_COLUMN)
    bad = staged.where(F.col(REASON_COLUMN).isNotNull()).select(RAW_COLUMN, REASON_COLUMN)
    return good, bad


def rules_reason(spec: DatasetSpec) -> Column:
    """Why a typed row breaks the spec's rules or has no usable label; null: it does not."""
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
    return F.coalesce(*checks)


def apply_rules(df: DataFrame, *, spec: DatasetSpec) -> tuple[DataFrame, DataFrame]:
    """Split typed rows into those that keep the spec's rules and those that break one.

    A row breaks rule ``name`` when its expression is false (null, as in a SQL CHECK
    constraint, passes: not-null demands belong to the quality suite). A row whose label
    expression is null cannot be trained on, so it is quarantined too.

    Returns:
        ``(ok, quarantine)``: ``ok`` has the columns of ``df``; ``quarantine`` has ``raw``
        (when ``df`` has it, else the typed row re-joined) and ``reason``.
    """
    reason = rules_reason(spec)
    raw = F.col(RAW_COLUMN) if RAW_COLUMN in df.columns else _rejoined(spec, cast=True)
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
    """Add ``split``: "holdout" or "train", by ``spec.split.by``.

    - ``hash``: a hash of the row's schema columns puts ``holdout_percent`` % of rows in the
      holdout; reruns (and identical rows) always land in the same split.
    - ``group``: the same with a hash of the ``split.key`` columns, so a key's rows stay together.
    - ``time``: rows at or after ``split.cutoff``, or else at or after the batch's
      ``100 - holdout_percent`` percentile of ``split.column`` (approximate), are the
      holdout. Rows whose time is null or unparseable train.
    """
    split = spec.split
    if split.by == "time":
        seconds = time_seconds(F.col(str(split.column)), spec.dtype(str(split.column)))
        if split.cutoff is not None:
            cutoff: Column = F.lit(cutoff_seconds(split.cutoff))
        else:
            share = 1 - spec.holdout_percent / 100
            bound = df.agg(F.percentile_approx(seconds, share, 10000).alias("__cutoff"))
            df = df.crossJoin(F.broadcast(bound))
            cutoff = F.col("__cutoff")
        holdout = F.coalesce(seconds >= cutoff, F.lit(False))
        out = df.withColumn(SPLIT_COLUMN, F.when(holdout, HOLDOUT).otherwise(TRAIN))
        return out.drop("__cutoff") if "__cutoff" in out.columns else out
    keys = spec.columns if split.by == "hash" else split.key
    bucket = F.pmod(F.xxhash64(*(F.col(c) for c in keys)), F.lit(100))
    return df.withColumn(
        SPLIT_COLUMN, F.when(bucket < spec.holdout_percent, F.lit(HOLDOUT)).otherwise(F.lit(TRAIN))
    )


def add_derived(df: DataFrame, *, spec: DatasetSpec, where: Column | None = None) -> DataFrame:
    """Add the spec's derived columns, each its expression cast to its type, in spec order
    (null on the rows where ``where`` is not true, when it is given).

    A derived column may use the ones before it. Derived features (and the derived columns
    they read) are in the feature language and compiled by ``jobs.clean.derive``, as the
    SavedModel computes them; the others are Spark SQL, which should be null-safe where the
    data can make them fail: under ANSI SQL a division by zero fails the job.
    """
    in_language = {c.name: c for c in spec.feature_expressions()}
    compiler = SparkCompiler({**dict(spec.schema), **{d.name: d.dtype for d in spec.derived}})
    for d in spec.derived:
        if d.name in in_language:
            column = compiler.column(in_language[d.name])
        else:
            column = F.expr(d.expression).cast(SPARK_TYPES[d.dtype])
        df = df.withColumn(d.name, column if where is None else F.when(where, column))
    return df


def stage_rows(df: DataFrame, *, spec: DatasetSpec) -> DataFrame:
    """Every raw row once, typed and derived, with the reason it goes to quarantine.

    The job caches this frame: the raw text is parsed, derived and checked once, and both
    the clean and the quarantine partitions are written from it (``split_rows``).

    Returns:
        The spec's clean columns, ``reason`` (null: the row is clean), ``raw`` (the line,
        kept on quarantined rows only) and ``POSITION_COLUMN`` when ``df`` has it. Rules and
        derived columns are evaluated on rows that parsed only.
    """
    parsed = _parsed(df, spec=spec, raw=False)
    fine = F.col(REASON_COLUMN).isNull()
    derived = add_derived(parsed, spec=spec, where=fine)
    staged = derived.withColumn(
        REASON_COLUMN, F.when(fine, rules_reason(spec)).otherwise(F.col(REASON_COLUMN))
    )
    # The line is re-joined for the quarantined rows only.
    kept_raw = F.when(F.col(REASON_COLUMN).isNotNull(), raw_line(spec))
    return staged.select(
        *spec.clean_columns, kept_raw.alias(RAW_COLUMN), REASON_COLUMN, *_position(df)
    )


def split_rows(staged: DataFrame, *, spec: DatasetSpec) -> tuple[DataFrame, DataFrame]:
    """``stage_rows``' output as ``(clean, quarantine)``: labelled and split clean rows,
    and the quarantined ones' ``raw`` and ``reason``.

    Returns:
        ``clean`` has the columns of ``clean_schema(spec)`` (plus ``POSITION_COLUMN`` when
        ``staged`` has it, for ``drop_duplicates``); ``quarantine`` has those of
        ``quarantine_schema()``.
    """
    ok = staged.where(F.col(REASON_COLUMN).isNull())
    clean = add_split(add_label(ok, spec=spec), spec=spec)
    columns = [*spec.clean_columns, spec.label_name, SPLIT_COLUMN]
    quarantine = staged.where(F.col(REASON_COLUMN).isNotNull()).select(RAW_COLUMN, REASON_COLUMN)
    return clean.select(*columns, *_position(staged)), quarantine


def clean_rows(df: DataFrame, *, spec: DatasetSpec) -> tuple[DataFrame, DataFrame]:
    """The row-level clean step: parse, derive, rules, label, split (``drop_duplicates`` follows).

    ``split_rows(stage_rows(df))``, without the cache the job puts between the two.
    """
    return split_rows(stage_rows(df, spec=spec), spec=spec)


def reason_kind(reason: Column) -> Column:
    """A reason without the offending value, for counting (``unparseable double in fare``)."""
    return F.regexp_replace(reason, r": '.*$", "")
