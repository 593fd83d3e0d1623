"""Input pipeline: a clean Parquet partition -> NumPy arrays or a ``tf.data.Dataset``.

TensorFlow has no Parquet reader, so Arrow record batches are read with pyarrow
and handed to tf.data in chunks of several whole batches (never row by row),
which tf.data cuts into batches. Missing values get the wire fills from
``features`` (NaN / -1 / ""), the same values a serving client sends, so the
model sees one encoding of "missing" everywhere.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads

from aimass.data.lake import open_partition
from aimass.data.spec import DatasetSpec
from aimass.platform.errors import ConfigError, DataQualityError
from models.tabular.features import Feature, features, model_inputs

if TYPE_CHECKING:
    import tensorflow as tf

logger = logging.getLogger(__name__)

SPLIT_COLUMN = "split"
SPLITS = ("train", "holdout")

Arrays = dict[str, np.ndarray]

# Rows per element the Python generator hands to tf.data (rounded down to whole
# batches, at least one; ``chunk_rows_for``). Per-element overhead (Arrow calls, NumPy -> tensor conversion, the
# generator's Python frame) is paid once per chunk instead of once per batch.
CHUNK_ROWS = 8192
# Arrow data of a split kept in memory across epochs when it fits (per worker process).
CACHE_BYTES = 1 << 30


def _check_columns(dataset: pads.Dataset, partition: Path, needed: list[str]) -> None:
    missing = [c for c in needed if c not in dataset.schema.names]
    if missing:
        raise ConfigError(
            f"clean partition {partition} lacks columns {missing} (has {dataset.schema.names}); "
            "rerun the clean stage with this spec, or fix the spec's features/label"
        )


def _split_filter(split: str | None) -> pc.Expression | None:
    if split is None:
        return None
    if split not in SPLITS:
        raise ConfigError(f"split '{split}' is unknown; use one of {SPLITS} or None for all rows")
    return pc.field(SPLIT_COLUMN) == split


def _columns(spec: DatasetSpec) -> list[str]:
    """The columns read: every model input (the raw columns the model takes), then the label."""
    return [f.name for f in model_inputs(spec)] + [spec.label_name]


def _needed(spec: DatasetSpec, split: str | None) -> list[str]:
    """The columns a partition must have: those read, plus ``split`` when filtering on it."""
    return _columns(spec) + ([SPLIT_COLUMN] if split is not None else [])


def _feature_array(feature: Feature, column: pa.Array | pa.ChunkedArray) -> np.ndarray:
    if feature.spec_dtype == "double":
        column = pc.fill_null(pc.cast(column, pa.float32()), pa.scalar(float("nan"), pa.float32()))
    elif feature.spec_dtype == "long":
        column = pc.fill_null(pc.cast(column, pa.int64()), -1)
    else:
        column = pc.fill_null(pc.cast(column, pa.string()), "")
    values = column.to_numpy(zero_copy_only=False)
    return values.astype(feature.np_dtype, copy=False)


def _label_array(spec: DatasetSpec, column: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """Labels as int64 (0/1 or class index) for classification, float64 for regression."""
    nulls = column.null_count
    if nulls:
        raise DataQualityError(
            f"label column '{spec.label_name}' has {nulls} null values; "
            "the clean stage must drop or quarantine rows without a label"
        )
    dtype = pa.int64() if spec.is_classification else pa.float64()
    return pc.cast(column, dtype).to_numpy(zero_copy_only=False)


def feature_arrays(spec: DatasetSpec, table: pa.Table) -> Arrays:
    """The model inputs of ``table`` as the model's input arrays (missing values filled).

    Raises:
        ConfigError: ``table`` lacks a model input column.
    """
    missing = [f.name for f in model_inputs(spec) if f.name not in table.column_names]
    if missing:
        raise ConfigError(f"table lacks model input columns {missing} (has {table.column_names})")
    return {f.name: _feature_array(f, table.column(f.name)) for f in model_inputs(spec)}


def _to_arrays(spec: DatasetSpec, table: pa.Table) -> tuple[Arrays, np.ndarray]:
    feats = {f.name: _feature_array(f, table.column(f.name)) for f in model_inputs(spec)}
    return feats, _label_array(spec, table.column(spec.label_name))


def count_rows(partition: Path, spec: DatasetSpec, split: str | None) -> int:
    """Number of rows of ``split`` (all rows for None) in a clean partition."""
    split_filter = _split_filter(split)
    dataset = open_partition(partition)
    _check_columns(dataset, partition, _needed(spec, split))
    return int(dataset.count_rows(filter=split_filter))


def load_arrays(
    partition: Path, spec: DatasetSpec, split: str | None, *, with_derived: bool = False
) -> tuple[Arrays, np.ndarray]:
    """Read a clean partition into model input arrays and the label array.

    Args:
        partition: folder of Parquet files written by the clean stage.
        spec: the dataset spec; its model inputs (``spec.model_inputs``, the raw columns
            the model takes) and label name pick the columns.
        split: ``"train"``, ``"holdout"`` or None for every row.
        with_derived: also the derived features, as the clean job wrote them. A model
            exported before derived features were computed inside the model takes them as
            inputs; scoring both kinds on the same rows needs them (a predict function
            ignores arrays its model does not take).

    Returns:
        ``({input: array}, labels)``: float32 (NaN for missing) for double,
        int64 (-1) for long, object arrays of ``str`` ("") for string; labels int64
        (classification) or float64 (regression).

    Raises:
        ConfigError: the partition or a needed column is missing.
        DataQualityError: a label is null.
    """
    split_filter = _split_filter(split)
    dataset = open_partition(partition)
    _check_columns(dataset, partition, _needed(spec, split))
    derived = [f for f in features(spec) if f.name not in spec.model_inputs] if with_derived else []
    _check_columns(dataset, partition, [f.name for f in derived])
    columns = _columns(spec) + [f.name for f in derived]
    table = dataset.to_table(columns=columns, filter=split_filter)
    arrays, labels = _to_arrays(spec, table)
    arrays.update((f.name, _feature_array(f, table.column(f.name))) for f in derived)
    return arrays, labels


def chunk_rows_for(batch_size: int, chunk_rows: int = CHUNK_ROWS) -> int:
    """Rows per generator element: the largest whole multiple of ``batch_size`` <= ``chunk_rows``.

    Never less than one batch. ``Dataset.rebatch`` cuts the stream of rows every
    ``batch_size`` rows whatever the chunk sizes; whole multiples only make every
    batch a slice of one chunk, never one assembled from two.
    """
    return max(1, chunk_rows // batch_size) * batch_size


def _chunks(
    partition: Path,
    spec: DatasetSpec,
    *,
    split: str | None,
    batch_size: int,
    chunk_rows: int,
    shuffle: bool,
    shuffle_buffer: int,
    drop_remainder: bool,
    rng: np.random.Generator,
    cache: ReadCache | None = None,
) -> Iterator[tuple[Arrays, np.ndarray]]:
    """The batch stream of one pass, as chunks of whole batches.

    The row order: fragments (files) in order, or permuted by ``rng`` with
    ``shuffle``; record batches are gathered until a window is full, and the
    window's whole batches go out while its remainder joins the next window; what
    is left at the end goes out too, its last partial batch dropped with
    ``drop_remainder``. With ``shuffle`` a window is ``max(shuffle_buffer,
    batch_size)`` rows and is permuted with ``rng`` first (the remainder carried
    on is already permuted, and the end is permuted once more); without it, rows
    keep file order and the window size (one chunk) changes nothing but the
    chunking. Cutting that stream every ``batch_size`` rows gives the batches.

    With a ``cache``, the Arrow record batches of each file are read from disk on the
    first pass and from memory on later ones, as long as they fit its budget; they are
    the same record batches, so the stream is the same either way.

    Every chunk yielded holds a whole multiple of ``batch_size`` rows, at most
    ``chunk_rows_for(batch_size, chunk_rows)``, except the very last one of the
    pass. Each window is encoded to NumPy once and handed out as slices: Arrow
    and Python work per chunk, not per batch, is what keeps the pipeline fast.
    """
    step = chunk_rows_for(batch_size, chunk_rows)
    read_columns = _columns(spec)
    fragments: list[tuple[int, Any]]
    if cache is not None and cache.complete:
        fragments = [(i, None) for i in range(cache.files)]  # all in memory: no disk access
    else:
        dataset = open_partition(partition)
        _check_columns(dataset, partition, _needed(spec, split))
        fragments = list(enumerate(dataset.get_fragments()))
    if shuffle:
        fragments = [fragments[i] for i in rng.permutation(len(fragments))]
    # The shuffled window decides the order; the unshuffled one only the chunk sizes.
    window = max(shuffle_buffer, batch_size) if shuffle else step
    split_filter = _split_filter(split)

    pending: list[pa.RecordBatch] = []
    pending_rows = 0
    for index, fragment in fragments:
        cached = cache.get(index) if cache is not None else None
        if cached is None:
            batches = list(fragment.to_batches(columns=read_columns, filter=split_filter))
            if cache is not None:
                cache.put(index, batches, complete_at=len(fragments))
        else:
            batches = cached
        for record_batch in batches:
            if not record_batch.num_rows:
                continue
            pending.append(record_batch)
            pending_rows += record_batch.num_rows
            if pending_rows >= window:
                table = _maybe_permute(pa.Table.from_batches(pending), rng if shuffle else None)
                full = (table.num_rows // batch_size) * batch_size
                yield from _slices(_encode(spec, table.slice(0, full)), full, step)
                # The remainder (already permuted) joins the next window.
                pending = table.slice(full).to_batches()
                pending_rows = table.num_rows - full
    if pending_rows:
        table = _maybe_permute(pa.Table.from_batches(pending), rng if shuffle else None)
        rows = (table.num_rows // batch_size) * batch_size if drop_remainder else table.num_rows
        if rows:
            yield from _slices(_encode(spec, table.slice(0, rows)), rows, step)


class ReadCache:
    """Record batches per file, kept across passes while they fit in ``budget_bytes``.

    Reading and decoding Parquet again every epoch is the lake's cost over memory; a
    partition that fits is read once. One that does not is streamed every pass, so
    memory stays bounded whatever the partition's size.
    """

    def __init__(self, budget_bytes: int) -> None:
        self.budget_bytes = budget_bytes
        self.nbytes = 0
        self.enabled = budget_bytes > 0
        self.files = 0  # how many files the split has, once a pass has listed them
        self._files: dict[int, list[pa.RecordBatch]] = {}

    @property
    def complete(self) -> bool:
        """Every file of the split is in memory."""
        return self.enabled and self.files > 0 and len(self._files) == self.files

    def get(self, index: int) -> list[pa.RecordBatch] | None:
        return self._files.get(index) if self.enabled else None

    def put(self, index: int, batches: list[pa.RecordBatch], *, complete_at: int) -> None:
        if not self.enabled:
            return
        self.nbytes += sum(b.nbytes for b in batches)
        if self.nbytes > self.budget_bytes:
            logger.info(
                "input cache off: the split needs more than %d MiB; streaming it every pass",
                self.budget_bytes >> 20,
            )
            self.enabled = False
            self._files.clear()
            return
        self._files[index] = batches
        self.files = complete_at
        if len(self._files) == complete_at:
            logger.info(
                "input cache: %d files, %.1f MiB in memory", complete_at, self.nbytes / 2**20
            )


def _slices(
    encoded: tuple[Arrays, np.ndarray], rows: int, step: int
) -> Iterator[tuple[Arrays, np.ndarray]]:
    """``encoded`` (``rows`` rows) in consecutive slices of ``step`` rows (NumPy views)."""
    feats, labels = encoded
    for start in range(0, rows, step):
        stop = start + step
        yield {name: values[start:stop] for name, values in feats.items()}, labels[start:stop]


def _maybe_permute(table: pa.Table, rng: np.random.Generator | None) -> pa.Table:
    if rng is None:
        return table
    return table.take(pa.array(rng.permutation(table.num_rows)))


def _encode(spec: DatasetSpec, table: pa.Table) -> tuple[Arrays, np.ndarray]:
    feats, labels = _to_arrays(spec, table)
    return feats, labels.astype(np.float32)


def make_dataset(
    partition: Path,
    spec: DatasetSpec,
    *,
    split: str | None,
    batch_size: int,
    shuffle: bool = False,
    seed: int = 0,
    first_epoch: int = 0,
    shuffle_buffer: int = 10_000,
    drop_remainder: bool = False,
    chunk_rows: int = CHUNK_ROWS,
    cache_bytes: int = CACHE_BYTES,
) -> tf.data.Dataset:
    """Stream a clean partition as batches of ``({input: [batch]}, label[batch] float32)``.

    Every batch has ``batch_size`` rows except the last one of a pass, which is
    partial (or dropped with ``drop_remainder``), so a pass over ``n`` rows has
    ``ceil(n / batch_size)`` batches (``floor`` with ``drop_remainder``). With
    ``shuffle``, rows are permuted within windows of ``shuffle_buffer`` rows and
    the file order is permuted too; the order depends only on ``seed`` and the
    epoch number, so every worker of a multi-worker job reads the same stream.
    The first pass over the dataset is epoch ``first_epoch`` (a training resumed
    after ``k`` finished epochs passes ``k``, so it sees the order an
    uninterrupted run would). Without ``shuffle``, rows come in file order.

    How: a Python generator reads Arrow record batches with pyarrow, encodes
    them to NumPy and yields chunks of about ``chunk_rows`` rows (whole batches,
    at least one, but for the pass's last chunk; see ``chunk_rows_for``), and
    ``Dataset.rebatch`` cuts the rows into batches in C++ (``unbatch().batch()``
    would too, one row at a time and several times slower). Per-batch Python
    work had made the input the bottleneck of training; ``chunk_rows`` trades
    that overhead against memory and never changes the batches. The element
    spec keeps a batch dimension of ``None``.

    The Arrow data of the split is kept in memory after the first pass when it fits
    in ``cache_bytes`` (0 turns this off), so later epochs skip the Parquet reads and
    decoding; the batches are the same.

    The dataset sets ``AutoShardPolicy.DATA``: under a distribution strategy each
    worker keeps its share of every global batch (``batch_size`` is the global
    batch size).
    """
    import tensorflow as tf

    if batch_size < 1:
        raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
    if chunk_rows < 1:
        raise ConfigError(f"chunk_rows must be >= 1, got {chunk_rows}")
    if first_epoch < 0:
        raise ConfigError(f"first_epoch must be >= 0, got {first_epoch}")
    partition = Path(partition)
    # Fail here, in the caller, rather than inside the tf.data generator.
    _split_filter(split)
    dataset = open_partition(partition)
    _check_columns(dataset, partition, _needed(spec, split))

    epochs = itertools.count(first_epoch)
    cache = ReadCache(cache_bytes)

    def generator() -> Iterator[tuple[Arrays, np.ndarray]]:
        rng = np.random.default_rng([seed, next(epochs)])
        yield from _chunks(
            partition,
            spec,
            split=split,
            batch_size=batch_size,
            chunk_rows=chunk_rows,
            shuffle=shuffle,
            shuffle_buffer=shuffle_buffer,
            drop_remainder=drop_remainder,
            rng=rng,
            cache=cache,
        )

    signature = (
        {
            f.name: tf.TensorSpec(shape=(None,), dtype=tf.as_dtype(f.tf_dtype), name=f.name)
            for f in model_inputs(spec)
        },
        tf.TensorSpec(shape=(None,), dtype=tf.float32, name=spec.label_name),
    )
    gen: Callable[[], Iterator[tuple[Arrays, np.ndarray]]] = generator
    ds = tf.data.Dataset.from_generator(gen, output_signature=signature)
    # Cuts the rows every batch_size rows, as the generator's stream defines the
    # batches; drop_remainder was applied by the generator (here it would make the
    # batch dimension static, which callers do not expect).
    ds = ds.rebatch(batch_size, drop_remainder=False)
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return ds.with_options(options).prefetch(tf.data.AUTOTUNE)
