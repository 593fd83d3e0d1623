"""Input pipeline: clean partition -> arrays / tf.data, with the wire fills for missing values."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from aimass.data.lake import open_partition
from aimass.data.spec import DatasetSpec
from aimass.platform.errors import ConfigError
from models.tabular.features import input_names, model_inputs, tf_dtypes
from models.tabular.inputs import (
    CHUNK_ROWS,
    _chunks,
    _to_arrays,
    chunk_rows_for,
    count_rows,
    load_arrays,
    make_dataset,
)

pytestmark = pytest.mark.unit

EXPECTED_NP = {"double": np.float32, "long": np.int64, "string": np.object_}


def _tiny_partition(spec: DatasetSpec, out: Path) -> Path:
    """Three rows: one complete, one with every feature null, one holdout."""
    arrow = {"double": pa.float64(), "long": pa.int64(), "string": pa.string()}
    full = {"double": 1.5, "long": 7, "string": "Cash"}
    columns = {
        col: pa.array([full[t], None, full[t]], type=arrow[t])
        for col, t in ((c, spec.dtype(c)) for c in spec.clean_columns)
    }
    columns[spec.label_name] = pa.array([1, 0, 1], type=pa.int32())
    columns["split"] = pa.array(["train", "train", "holdout"])
    out.mkdir(parents=True)
    pq.write_table(pa.table(columns), out / "part-00000.parquet")
    return out


def test_input_dtypes_follow_the_spec_and_take_raw_columns_only(taxi_spec: DatasetSpec) -> None:
    dtypes = tf_dtypes(taxi_spec)
    assert dtypes["fare"] == "float32"
    assert dtypes["trip_start_hour"] == "int64"
    assert dtypes["company"] == "string"
    # The raw columns in schema order: the schema features and what the derived ones read.
    assert list(dtypes) == [c for c in taxi_spec.columns if c in taxi_spec.model_inputs]
    assert "trip_speed_mph" not in dtypes  # derived inside the model
    assert {"trip_miles", "trip_seconds"} <= set(dtypes)
    assert "tips" not in dtypes and taxi_spec.label_name not in dtypes


def test_load_arrays_fills_missing_values(taxi_spec: DatasetSpec, tmp_path: Path) -> None:
    part = _tiny_partition(taxi_spec, tmp_path / "ds=2024-01-01")
    feats, labels = load_arrays(part, taxi_spec, "train")
    assert labels.tolist() == [1, 0] and labels.dtype == np.int64
    assert (
        feats["fare"].dtype == np.float32 and feats["fare"][0] == 1.5 and np.isnan(feats["fare"][1])
    )
    assert feats["trip_start_hour"].dtype == np.int64 and feats["trip_start_hour"].tolist() == [
        7,
        -1,
    ]
    assert feats["company"].dtype == object and feats["company"].tolist() == ["Cash", ""]
    assert set(feats) == set(input_names(taxi_spec))


def test_load_arrays_dtypes_and_splits_on_real_rows(
    taxi_spec: DatasetSpec, taxi_partition: Path
) -> None:
    train_x, train_y = load_arrays(taxi_partition, taxi_spec, "train")
    hold_x, hold_y = load_arrays(taxi_partition, taxi_spec, "holdout")
    all_x, all_y = load_arrays(taxi_partition, taxi_spec, None)
    assert len(train_y) + len(hold_y) == len(all_y) == count_rows(taxi_partition, taxi_spec, None)
    assert 0.1 < len(hold_y) / len(all_y) < 0.3
    assert set(np.unique(all_y)) == {0, 1}
    for feat in model_inputs(taxi_spec):
        values = train_x[feat.name]
        assert values.dtype == EXPECTED_NP[feat.spec_dtype], feat.name
        assert len(values) == len(train_y)
        if feat.spec_dtype == "string":
            assert all(isinstance(v, str) for v in values), feat.name
    # The sample has empty lat/lon and company fields: they must arrive as the fills.
    assert np.isnan(train_x["pickup_latitude"]).any()
    assert (train_x["company"] == "").any()


def test_load_arrays_names_missing_columns(taxi_spec: DatasetSpec, tmp_path: Path) -> None:
    part = tmp_path / "bad"
    part.mkdir()
    pq.write_table(pa.table({"fare": [1.0], "split": ["train"]}), part / "part-0.parquet")
    with pytest.raises(ConfigError, match="big_tipper"):
        load_arrays(part, taxi_spec, "train")
    with pytest.raises(ConfigError, match="does not exist"):
        load_arrays(tmp_path / "nowhere", taxi_spec, "train")
    with pytest.raises(ConfigError, match="split 'test'"):
        load_arrays(part, taxi_spec, "test")


def _collect(ds: object) -> tuple[list[int], dict[str, np.ndarray], np.ndarray]:
    sizes, feats, labels = [], {}, []
    for x, y in ds:  # type: ignore[attr-defined]
        sizes.append(int(y.shape[0]))
        labels.append(y.numpy())
        for name, tensor in x.items():
            feats.setdefault(name, []).append(tensor.numpy())
    return sizes, {k: np.concatenate(v) for k, v in feats.items()}, np.concatenate(labels)


def test_make_dataset_batches_in_order(taxi_spec: DatasetSpec, taxi_partition: Path) -> None:
    import tensorflow as tf

    train_x, train_y = load_arrays(taxi_partition, taxi_spec, "train")
    ds = make_dataset(taxi_partition, taxi_spec, split="train", batch_size=128)
    x_spec, y_spec = ds.element_spec
    assert y_spec.shape.as_list() == [None] and y_spec.dtype == tf.float32
    for feat in model_inputs(taxi_spec):
        assert x_spec[feat.name].shape.as_list() == [None]
        assert x_spec[feat.name].dtype == tf.as_dtype(feat.tf_dtype)
    assert (
        ds.options().experimental_distribute.auto_shard_policy
        == tf.data.experimental.AutoShardPolicy.DATA
    )

    sizes, feats, labels = _collect(ds)
    n = len(train_y)
    assert sizes == [128] * (n // 128) + ([n % 128] if n % 128 else [])
    np.testing.assert_array_equal(labels, train_y.astype(np.float32))
    np.testing.assert_array_equal(feats["fare"], train_x["fare"])  # NaN == NaN here
    assert feats["company"].tolist() == [s.encode() for s in train_x["company"]]

    dropped, _, _ = _collect(
        make_dataset(taxi_partition, taxi_spec, split="train", batch_size=128, drop_remainder=True)
    )
    assert dropped == [128] * (n // 128)


def test_make_dataset_shuffle_is_seeded_per_epoch(
    taxi_spec: DatasetSpec, taxi_partition: Path
) -> None:
    def fares(ds: object) -> list[np.ndarray]:
        return [x["fare"].numpy() for x, _ in ds]  # type: ignore[attr-defined]

    kwargs = {
        "split": "train",
        "batch_size": 100,
        "shuffle": True,
        "seed": 7,
        "shuffle_buffer": 500,
    }
    ds_a = make_dataset(taxi_partition, taxi_spec, **kwargs)
    ds_b = make_dataset(taxi_partition, taxi_spec, **kwargs)
    a1, b1 = np.concatenate(fares(ds_a)), np.concatenate(fares(ds_b))
    a2 = np.concatenate(fares(ds_a))  # second epoch of the same dataset
    plain = np.concatenate(
        fares(make_dataset(taxi_partition, taxi_spec, split="train", batch_size=100))
    )
    # Every worker (same seed) reads the same stream; each epoch gets a new order.
    np.testing.assert_array_equal(a1, b1)
    assert not np.array_equal(a1, a2)
    assert not np.array_equal(a1, plain)
    # Shuffling moves rows, it never drops or repeats them.
    np.testing.assert_array_equal(np.sort(a1), np.sort(plain))
    np.testing.assert_array_equal(np.sort(a2), np.sort(plain))


# -- the chunked stream equals the per-batch stream ------------------------------------------


def _reference_batches(
    partition: Path,
    spec: DatasetSpec,
    *,
    split: str | None,
    batch_size: int,
    shuffle: bool,
    seed: int,
    epoch: int,
    shuffle_buffer: int,
    drop_remainder: bool,
) -> list[tuple[dict[str, np.ndarray], np.ndarray]]:
    """The stream ``make_dataset`` documents, built one batch at a time in plain Python.

    This is the generator ``make_dataset`` used before it handed tf.data chunks of
    whole batches: every batch goes through Arrow and NumPy on its own, so the
    chunking and ``Dataset.rebatch`` play no part in it.
    """
    rng = np.random.default_rng([seed, epoch])
    dataset = open_partition(partition)
    fragments = list(dataset.get_fragments())
    if shuffle:
        fragments = [fragments[i] for i in rng.permutation(len(fragments))]
    window = max(shuffle_buffer, batch_size) if shuffle else batch_size
    split_filter = None if split is None else pc.field("split") == split
    columns = [*input_names(spec), spec.label_name]

    def permuted(batches: list[pa.RecordBatch]) -> pa.Table:
        table = pa.Table.from_batches(batches)
        return table.take(pa.array(rng.permutation(table.num_rows))) if shuffle else table

    def encode(table: pa.Table) -> tuple[dict[str, np.ndarray], np.ndarray]:
        feats, labels = _to_arrays(spec, table)
        return feats, labels.astype(np.float32)

    out = []
    pending: list[pa.RecordBatch] = []
    pending_rows = 0
    for fragment in fragments:
        for record_batch in fragment.to_batches(columns=columns, filter=split_filter):
            if not record_batch.num_rows:
                continue
            pending.append(record_batch)
            pending_rows += record_batch.num_rows
            if pending_rows >= window:
                table = permuted(pending)
                full = (table.num_rows // batch_size) * batch_size
                out += [encode(table.slice(s, batch_size)) for s in range(0, full, batch_size)]
                pending = table.slice(full).to_batches()
                pending_rows = table.num_rows - full
    if pending_rows:
        table = permuted(pending)
        for start in range(0, table.num_rows, batch_size):
            batch = table.slice(start, batch_size)
            if batch.num_rows == batch_size or not drop_remainder:
                out.append(encode(batch))
    return out


def _assert_same_batches(
    ds: object, expected: list[tuple[dict[str, np.ndarray], np.ndarray]], spec: DatasetSpec
) -> None:
    got = [(x, y.numpy()) for x, y in ds]  # type: ignore[attr-defined]
    assert [len(y) for _, y in got] == [len(y) for _, y in expected]
    for i, ((x, y), (ex, ey)) in enumerate(zip(got, expected, strict=True)):
        np.testing.assert_array_equal(y, ey, err_msg=f"labels of batch {i}")
        for feat in model_inputs(spec):
            want = ex[feat.name]
            if feat.spec_dtype == "string":
                want = np.array([s.encode() for s in want], dtype=object)
            # NaN (the missing-value fill) compares equal here.
            np.testing.assert_array_equal(x[feat.name].numpy(), want, err_msg=feat.name)


@pytest.fixture(scope="module")
def small_row_groups(taxi_partition: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The taxi partition rewritten with row groups of 137 rows: many record batches per file,
    so shuffle windows gather several of them and carry remainders from one to the next."""
    out = tmp_path_factory.mktemp("small_rg") / "ds=2024-01-01"
    out.mkdir()
    for path in sorted(taxi_partition.glob("*.parquet")):
        pq.write_table(pq.read_table(path), out / path.name, row_group_size=137)
    return out


def test_chunk_rows_are_whole_batches() -> None:
    assert chunk_rows_for(256) == CHUNK_ROWS == 8192
    assert chunk_rows_for(333, 1000) == 999
    assert chunk_rows_for(7, 1000) == 994
    assert chunk_rows_for(5000, 1000) == 5000  # never less than one batch
    assert chunk_rows_for(100, 1) == 100


@pytest.mark.parametrize("batch_size", [7, 100, 256, 333, 5000])
@pytest.mark.parametrize("drop_remainder", [False, True])
def test_make_dataset_unshuffled_is_load_arrays_cut_into_batches(
    taxi_spec: DatasetSpec, taxi_partition: Path, batch_size: int, drop_remainder: bool
) -> None:
    # chunk_rows=1000 is not a multiple of most of these batch sizes; 5000 > the split's rows.
    x, y = load_arrays(taxi_partition, taxi_spec, "train")
    n = len(y)
    bounds = [(s, min(s + batch_size, n)) for s in range(0, n, batch_size)]
    if drop_remainder:
        bounds = [(s, e) for s, e in bounds if e - s == batch_size]
    expected = [({k: v[s:e] for k, v in x.items()}, y[s:e].astype(np.float32)) for s, e in bounds]
    ds = make_dataset(
        taxi_partition,
        taxi_spec,
        split="train",
        batch_size=batch_size,
        drop_remainder=drop_remainder,
        chunk_rows=1000,
    )
    _assert_same_batches(ds, expected, taxi_spec)


@pytest.mark.parametrize("batch_size", [7, 100, 256, 333, 5000])
@pytest.mark.parametrize("drop_remainder", [False, True])
@pytest.mark.parametrize("shuffle", [False, True])
def test_make_dataset_equals_the_per_batch_stream(
    taxi_spec: DatasetSpec,
    small_row_groups: Path,
    batch_size: int,
    drop_remainder: bool,
    shuffle: bool,
) -> None:
    common = {
        "split": "train",
        "batch_size": batch_size,
        "shuffle": shuffle,
        "seed": 11,
        "shuffle_buffer": 500,
        "drop_remainder": drop_remainder,
    }
    ds = make_dataset(small_row_groups, taxi_spec, first_epoch=3, chunk_rows=1000, **common)
    # Two passes: the first is epoch 3 (a resumed run), the next epoch 4.
    for epoch in (3, 4):
        _assert_same_batches(
            ds, _reference_batches(small_row_groups, taxi_spec, epoch=epoch, **common), taxi_spec
        )


@pytest.mark.parametrize("chunk_rows", [1, 256, 1000, CHUNK_ROWS])
@pytest.mark.parametrize("split", ["holdout", None])
def test_chunk_rows_never_change_the_batches(
    taxi_spec: DatasetSpec, taxi_partition: Path, chunk_rows: int, split: str | None
) -> None:
    common = {
        "split": split,
        "batch_size": 96,
        "shuffle": True,
        "seed": 5,
        "shuffle_buffer": 1500,  # windows span two of the three files
        "drop_remainder": False,
    }
    expected = _reference_batches(taxi_partition, taxi_spec, epoch=0, **common)
    n = count_rows(taxi_partition, taxi_spec, split)
    assert len(expected) == -(-n // 96)  # steps_per_epoch = ceil(rows / batch) in train.py
    ds = make_dataset(taxi_partition, taxi_spec, chunk_rows=chunk_rows, **common)
    _assert_same_batches(ds, expected, taxi_spec)


def test_generator_yields_chunks_of_whole_batches(
    taxi_spec: DatasetSpec, small_row_groups: Path
) -> None:
    for shuffle in (False, True):
        sizes = [
            len(labels)
            for _, labels in _chunks(
                small_row_groups,
                taxi_spec,
                split="train",
                batch_size=64,
                chunk_rows=1000,
                shuffle=shuffle,
                shuffle_buffer=500,
                drop_remainder=False,
                rng=np.random.default_rng(0),
            )
        ]
        assert sum(sizes) == count_rows(small_row_groups, taxi_spec, "train")
        assert all(s % 64 == 0 and s <= 960 for s in sizes[:-1]), sizes
        assert 0 < sizes[-1] <= 960
        # Far fewer generator elements than batches: the point of chunking.
        assert len(sizes) < sum(sizes) / 64 / 3


def test_make_dataset_keeps_an_unknown_batch_dimension(
    taxi_spec: DatasetSpec, taxi_partition: Path
) -> None:
    ds = make_dataset(taxi_partition, taxi_spec, split="train", batch_size=64, drop_remainder=True)
    x_spec, y_spec = ds.element_spec
    assert y_spec.shape.as_list() == [None]
    assert all(s.shape.as_list() == [None] for s in x_spec.values())
    with pytest.raises(ConfigError, match="chunk_rows"):
        make_dataset(taxi_partition, taxi_spec, split="train", batch_size=64, chunk_rows=0)


@pytest.mark.parametrize("cache_bytes", [0, 64 * 1024, 1 << 30])
def test_the_read_cache_serves_later_passes_from_memory_when_it_fits(
    taxi_spec: DatasetSpec, small_row_groups: Path, tmp_path: Path, cache_bytes: int
) -> None:
    import shutil

    part = tmp_path / "part"
    shutil.copytree(small_row_groups, part)
    common = {
        "split": "train",
        "batch_size": 64,
        "shuffle": True,
        "seed": 2,
        "shuffle_buffer": 300,
        "drop_remainder": False,
    }
    ds = make_dataset(part, taxi_spec, cache_bytes=cache_bytes, **common)
    _assert_same_batches(
        ds, _reference_batches(small_row_groups, taxi_spec, epoch=0, **common), taxi_spec
    )
    # the files go away: only a pass served from memory can still read the split
    for file in part.glob("*.parquet"):
        file.rename(file.with_suffix(".gone"))
    second = _reference_batches(small_row_groups, taxi_spec, epoch=1, **common)
    if cache_bytes >= 1 << 30:
        _assert_same_batches(ds, second, taxi_spec)
    else:  # off, or over budget: streamed from disk every pass
        with pytest.raises(Exception, match="holds no .parquet files"):
            _assert_same_batches(ds, second, taxi_spec)
