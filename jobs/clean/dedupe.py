"""Duplicates: which clean rows repeat an earlier one, found by aggregation, not sorting.

A row is an ``exact`` duplicate when every clean column equals that of an earlier row,
and a ``key`` duplicate when it is not an exact one but its ``spec.dedupe_key`` columns
equal those of an earlier row (nulls compare equal, as in ``GROUP BY``). "Earlier" is file
order: ``with_source_position`` gives each row one decimal number that sorts as (file
name, byte offset of its split, row in the split), so the first copy in the batch is the
one kept, whatever the partitioning, and reruns on the same files keep the same rows.

How (one shuffle of every row, where two window sorts over every column were):

1. a hash aggregate over every clean column folds the exact copies into one row with
   their number and the smallest position (a decimal is a fixed-width aggregation
   buffer, so Spark keeps the hash aggregate);
2. with a ``dedupe_key``, a window over the key ordered by that position ranks the
   distinct rows; every rank after the first is a key duplicate. Its sort is over the
   key's columns of the rows left after step 1, not over every column of every row.

The duplicates are counted while the kept rows are written (an ``Observation``), so no
action recomputes them.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING

from pyspark.sql import Column, Observation, Window
from pyspark.sql import functions as F
from pyspark.sql import types as T

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

    from aimass.data.spec import DatasetSpec

# Where a row sat in the input: orders duplicates; never written out.
POSITION_COLUMN = "_source_position"
DUPLICATE_EXACT = "exact"
DUPLICATE_KEY = "key"

POSITION_TYPE = T.DecimalType(38, 0)
# Bits of the position number: | file rank | split offset (40 bits: < 1 TiB) | row (33) |
_ROW_BITS = 33
_OFFSET_BITS = 40


def with_source_position(df: DataFrame) -> DataFrame:
    """Add ``POSITION_COLUMN``: a number that sorts the rows of a file scan in file order.

    Apply it directly on a file scan, before any shuffle. It is ``file rank`` (the file's
    place among the scan's files by name), the byte offset of the row's split and the
    row's index in its Spark partition (the low bits of ``monotonically_increasing_id``,
    which grow with the line number inside each split), packed into one decimal.
    """
    files = sorted(df.inputFiles())
    if files:
        ranks = F.create_map(*(F.lit(x) for i, f in enumerate(files) for x in (f, i)))
        rank = F.coalesce(ranks[F.input_file_name()], F.lit(len(files)))
    else:  # not a file scan: one "file"
        rank = F.lit(0)
    row = F.monotonically_increasing_id().bitwiseAND(F.lit((1 << _ROW_BITS) - 1))
    offset = F.greatest(F.input_file_block_start(), F.lit(0))
    # Decimal literals: 2**73 does not fit a long.
    position = (
        rank.cast(POSITION_TYPE) * F.lit(Decimal(1 << (_OFFSET_BITS + _ROW_BITS)))
        + offset.cast(POSITION_TYPE) * F.lit(Decimal(1 << _ROW_BITS))
        + row.cast(POSITION_TYPE)
    )
    return df.withColumn(POSITION_COLUMN, position.cast(POSITION_TYPE))


@dataclass(frozen=True)
class Deduplicated:
    """The first copy of each row (``kept``), and the count of what was dropped.

    ``counts()`` is known once an action has run on ``kept`` (the write).
    """

    kept: DataFrame
    observation: Observation

    def counts(self) -> dict[str, int]:
        metrics = self.observation.get
        return {kind: int(metrics.get(kind) or 0) for kind in (DUPLICATE_EXACT, DUPLICATE_KEY)}


def _position_order(df: DataFrame, spec: DatasetSpec) -> list[Column]:
    """The order that decides which copy is first: source position, then the values."""
    order = [F.col("__position").asc()] if POSITION_COLUMN in df.columns else []
    return order + [F.col(c).asc_nulls_first() for c in spec.columns]


def drop_duplicates(df: DataFrame, *, spec: DatasetSpec) -> Deduplicated:
    """Keep the first copy of each row of ``df`` (the clean rows, with ``POSITION_COLUMN``
    when they have it); count the exact and key duplicates while ``kept`` is computed.

    Without a source position the row values order the copies, which is deterministic too.
    Every clean column is a function of the schema columns (derived columns, the label and
    the split are computed from them), so rows equal in every clean column are the rows
    equal in every schema column.

    Returns:
        ``kept`` has the columns of ``df`` without ``POSITION_COLUMN``, one row per kept copy.
    """
    data = [c for c in df.columns if c != POSITION_COLUMN]
    position = (
        F.min(POSITION_COLUMN) if POSITION_COLUMN in df.columns else F.lit(None).cast(POSITION_TYPE)
    )
    distinct = df.groupBy(*data).agg(
        F.count(F.lit(1)).alias("__copies"), position.alias("__position")
    )
    if spec.dedupe_key:
        key = Window.partitionBy(*spec.dedupe_key).orderBy(*_position_order(df, spec))
        distinct = distinct.withColumn("__later", F.row_number().over(key) > 1)
    else:
        distinct = distinct.withColumn("__later", F.lit(False))
    observation = Observation()
    observed = distinct.observe(
        observation,
        F.coalesce(F.sum(F.col("__copies") - 1), F.lit(0)).alias(DUPLICATE_EXACT),
        F.coalesce(F.sum(F.col("__later").cast("long")), F.lit(0)).alias(DUPLICATE_KEY),
    )
    return Deduplicated(observed.where(~F.col("__later")).select(*data), observation)
