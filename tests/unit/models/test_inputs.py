"""Input pipeline: clean partition -> arrays / tf.data, with the wire fills for missing values."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from aimass.errors import ConfigError
from aimass.spec import DatasetSpec
from models.tabular.features import feature_names, features, tf_dtypes
from models.tabular.inputs import count_rows, load_arrays, make_dataset

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


def test_feature_dtypes_follow_the_spec(taxi_spec: DatasetSpec) -> None:
    dtypes = tf_dtypes(taxi_spec)
    assert dtypes["fare"] == "float32"
    assert dtypes["trip_start_hour"] == "int64"
    assert dtypes["company"] == "string"
    assert list(dtypes) == [*taxi_spec.numeric_features, *taxi_spec.categorical_features]
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
    assert set(feats) == set(feature_names(taxi_spec))


def test_load_arrays_dtypes_and_splits_on_real_rows(
    taxi_spec: DatasetSpec, taxi_partition: Path
) -> None:
    train_x, train_y = load_arrays(taxi_partition, taxi_spec, "train")
    hold_x, hold_y = load_arrays(taxi_partition, taxi_spec, "holdout")
    all_x, all_y = load_arrays(taxi_partition, taxi_spec, None)
    assert len(train_y) + len(hold_y) == len(all_y) == count_rows(taxi_partition, taxi_spec, None)
    assert 0.1 < len(hold_y) / len(all_y) < 0.3
    assert set(np.unique(all_y)) == {0, 1}
    for feat in features(taxi_spec):
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
    for feat in features(taxi_spec):
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
