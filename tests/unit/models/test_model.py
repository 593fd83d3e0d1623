"""Model builder and SavedModel export: shapes, in-model preprocessing, serving contract."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from aimass.data.spec import DatasetSpec
from aimass.platform.errors import ConfigError
from models.tabular.features import model_inputs
from models.tabular.inputs import load_arrays, make_dataset

pytestmark = pytest.mark.unit

tf = pytest.importorskip("tensorflow")
tf_keras = pytest.importorskip("tf_keras")


@pytest.fixture(scope="module")
def train_arrays(
    taxi_spec: DatasetSpec, taxi_partition: Path
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    return load_arrays(taxi_partition, taxi_spec, "train")


@pytest.fixture(scope="module")
def holdout_arrays(
    taxi_spec: DatasetSpec, taxi_partition: Path
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    return load_arrays(taxi_partition, taxi_spec, "holdout")


@pytest.fixture(scope="module")
def trained(taxi_spec: DatasetSpec, taxi_partition: Path, train_arrays: tuple) -> object:
    from models.tabular.model import build_model

    tf_keras.utils.set_random_seed(1)
    model = build_model(
        taxi_spec, adapt_data=train_arrays[0], hidden_units=(16,), learning_rate=0.01
    )
    model.fit(
        make_dataset(taxi_partition, taxi_spec, split="train", batch_size=64, shuffle=True),
        epochs=3,
        verbose=0,
    )
    return model


def _rows(spec: DatasetSpec, n: int, **values: object) -> dict[str, np.ndarray]:
    """``n`` rows with every model input missing, except the ones given."""
    out = {}
    for feat in model_inputs(spec):
        value = values.get(feat.name, feat.fill)
        out[feat.name] = np.array([value] * n, dtype=feat.np_dtype)
    return out


def test_builder_inputs_and_output_shape(taxi_spec: DatasetSpec, train_arrays: tuple) -> None:
    from models.tabular.model import build_model

    model = build_model(
        taxi_spec, adapt_data=train_arrays[0], hidden_units=(8, 4), learning_rate=0.01
    )
    assert model.output_shape == (None, 1)
    assert {i.name: (i.shape.as_list(), i.dtype.name) for i in model.inputs} == {
        f.name: ([None], f.tf_dtype) for f in model_inputs(taxi_spec)
    }
    assert [layer.units for layer in model.layers if isinstance(layer, tf_keras.layers.Dense)] == [
        8,
        4,
        1,
    ]
    probs = model.predict({k: v[:50] for k, v in train_arrays[0].items()}, verbose=0)
    assert probs.shape == (50, 1)
    assert np.all((probs >= 0) & (probs <= 1))
    assert model.loss.__class__.__name__ == "BinaryCrossentropy"


def test_builder_rejects_missing_adapt_data(taxi_spec: DatasetSpec, train_arrays: tuple) -> None:
    from models.tabular.model import build_model

    partial = {k: v for k, v in train_arrays[0].items() if k != "company"}
    with pytest.raises(ConfigError, match="company"):
        build_model(taxi_spec, adapt_data=partial)


def test_vocabulary_is_capped_and_unseen_values_go_to_oov(
    taxi_spec: DatasetSpec, train_arrays: tuple
) -> None:
    from models.tabular.model import build_model, vocabulary

    small = dataclasses.replace(
        taxi_spec, training=dataclasses.replace(taxi_spec.training, max_vocab=3)
    )
    model = build_model(small, adapt_data=train_arrays[0])
    lookup = model.get_layer("company_lookup")
    assert lookup.vocabulary_size() == 3 + 1  # three most frequent + one OOV bucket
    assert lookup.get_vocabulary()[1:] == vocabulary(train_arrays[0]["company"], 3)
    # An unseen company and an unseen hour both land in the OOV column (index 0).
    unseen = lookup(tf.constant([["No Such Cab Co"]])).numpy()
    assert unseen[0, 0] == 1 and unseen.sum() == 1
    hour = model.get_layer("trip_start_hour_lookup")(
        model.get_layer("trip_start_hour_as_string")(tf.constant([99], tf.int64))
    )
    assert hour.numpy()[0, 0] == 1


def test_missing_numeric_is_imputed_with_the_training_mean(
    taxi_spec: DatasetSpec, train_arrays: tuple, trained: object
) -> None:
    fare = train_arrays[0]["fare"]
    mean = float(np.nanmean(fare.astype(np.float64)))
    with_nan = _rows(taxi_spec, 2, fare=np.nan, payment_type="Cash")
    with_mean = _rows(taxi_spec, 2, fare=mean, payment_type="Cash")
    with_big = _rows(taxi_spec, 2, fare=500.0, payment_type="Cash")
    p_nan = trained.predict(with_nan, verbose=0)  # type: ignore[attr-defined]
    np.testing.assert_allclose(p_nan, trained.predict(with_mean, verbose=0), rtol=1e-5)  # type: ignore[attr-defined]
    assert not np.allclose(p_nan, trained.predict(with_big, verbose=0))  # type: ignore[attr-defined]
    # All features missing, or categories never seen in training: still a probability.
    odd = _rows(taxi_spec, 3, company="No Such Cab Co", payment_type="Bitcoin", trip_start_hour=99)
    for batch in (_rows(taxi_spec, 3), odd, _rows(taxi_spec, 1)):
        probs = trained.predict(batch, verbose=0)  # type: ignore[attr-defined]
        assert probs.shape == (len(batch["fare"]), 1)
        assert np.all(np.isfinite(probs)) and np.all((probs > 0) & (probs < 1))


def test_trained_model_beats_chance_on_holdout(trained: object, holdout_arrays: tuple) -> None:
    from sklearn.metrics import roc_auc_score

    x, y = holdout_arrays
    probs = trained.predict(x, verbose=0).reshape(-1)  # type: ignore[attr-defined]
    assert roc_auc_score(y, probs) > 0.7


def test_export_round_trip_matches_the_in_memory_model(
    taxi_spec: DatasetSpec, trained: object, holdout_arrays: tuple, tmp_path: Path
) -> None:
    from models.tabular.export import export_saved_model, load_predict_fn

    export_dir = tmp_path / "run" / "export"
    export_saved_model(trained, taxi_spec, export_dir)  # type: ignore[arg-type]
    export_saved_model(trained, taxi_spec, export_dir)  # a rerun replaces its own export
    assert sorted(p.name for p in export_dir.parent.iterdir()) == ["export"]
    assert (export_dir / "saved_model.pb").exists()

    # The serving contract, read back from the SavedModel itself.
    signature = tf.saved_model.load(str(export_dir)).signatures["serving_default"]
    inputs = signature.structured_input_signature[1]
    assert {k: (v.shape.as_list(), v.dtype.name) for k, v in inputs.items()} == {
        f.name: ([None], f.tf_dtype) for f in model_inputs(taxi_spec)
    }
    out = signature.structured_outputs
    assert list(out) == ["probabilities"]
    assert (
        out["probabilities"].shape.as_list() == [None] and out["probabilities"].dtype == tf.float32
    )

    x, _ = holdout_arrays
    predict = load_predict_fn(export_dir, batch_size=100)
    served = predict(x)
    in_memory = trained.predict(x, verbose=0).reshape(-1)  # type: ignore[attr-defined]
    assert served.shape == (len(in_memory),) and served.dtype == np.float32
    np.testing.assert_allclose(served, in_memory, rtol=1e-5, atol=1e-6)
    # One row, missing values and unseen categories work through the signature too.
    odd = _rows(taxi_spec, 1, company="No Such Cab Co")
    np.testing.assert_allclose(predict(odd), trained.predict(odd, verbose=0).reshape(-1), rtol=1e-5)  # type: ignore[attr-defined]

    with pytest.raises(ConfigError, match="fare"):
        predict({k: v for k, v in x.items() if k != "fare"})
    with pytest.raises(ConfigError, match="not a SavedModel"):
        load_predict_fn(tmp_path)


def test_dropout_layers_follow_the_spec(taxi_spec: DatasetSpec, train_arrays: tuple) -> None:
    from models.tabular.model import build_model

    none = build_model(taxi_spec, adapt_data=train_arrays[0], hidden_units=(8, 4))
    assert not [layer for layer in none.layers if isinstance(layer, tf_keras.layers.Dropout)]
    model = build_model(taxi_spec, adapt_data=train_arrays[0], hidden_units=(8, 4), dropout=0.25)
    drops = [layer for layer in model.layers if isinstance(layer, tf_keras.layers.Dropout)]
    assert [d.rate for d in drops] == [0.25, 0.25]
    with pytest.raises(ConfigError, match="dropout=1.0"):
        build_model(taxi_spec, adapt_data=train_arrays[0], dropout=1.0)


def test_mixed_precision_keeps_preprocessing_and_the_head_in_float32(
    taxi_spec: DatasetSpec, train_arrays: tuple, holdout_arrays: tuple, tmp_path: Path
) -> None:
    """Under mixed_float16 (what a GPU run uses) the model still serves float32 outputs."""
    from models.tabular.export import export_saved_model, load_predict_fn
    from models.tabular.model import build_model
    from models.tabular.train import precision_policy

    assert precision_policy(False, gpus=1) == "float32"
    assert precision_policy(True, gpus=0) == "float32"  # no GPU: asked for, logged, not used
    assert precision_policy(True, gpus=2) == "mixed_float16"
    tf_keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        model = build_model(taxi_spec, adapt_data=train_arrays[0], hidden_units=(8,))
        dense = model.get_layer("dense_0")
        assert dense.compute_dtype == "float16" and dense.dtype == "float32"  # float32 weights
        assert model.get_layer("fare_norm").compute_dtype == "float32"
        assert model.get_layer("probability").compute_dtype == "float32"
        assert isinstance(model.optimizer, tf_keras.mixed_precision.LossScaleOptimizer)
        rows = {k: v[:32] for k, v in holdout_arrays[0].items()}
        # a training step runs (loss scaling included) and gives a finite loss
        loss = model.train_on_batch(rows, holdout_arrays[1][:32].astype(np.float32))
        assert np.isfinite(loss[0] if isinstance(loss, list) else loss)
        out = model(rows, training=False)
        assert out.dtype == tf.float32
        export_saved_model(model, taxi_spec, tmp_path / "export")
        served = load_predict_fn(tmp_path / "export")(rows)
        np.testing.assert_allclose(served, out.numpy().ravel(), rtol=1e-3, atol=1e-3)
    finally:
        tf_keras.mixed_precision.set_global_policy("float32")


def test_a_model_that_takes_derived_features_is_scored_on_the_same_rows(
    taxi_spec: DatasetSpec, taxi_partition: Path, tmp_path: Path
) -> None:
    """A champion exported before derived features moved inside the model takes them as
    inputs; the gate scores it on the same holdout rows with the lake's derived columns."""
    from aimass.evaluation.metrics import evaluate
    from models.tabular.features import features

    holdout, labels = load_arrays(taxi_partition, taxi_spec, "holdout", with_derived=True)
    assert "trip_speed_mph" in holdout and "trip_speed_mph" not in taxi_spec.model_inputs
    assert set(load_arrays(taxi_partition, taxi_spec, "holdout")[0]) == set(taxi_spec.model_inputs)

    signature = {
        f.name: tf.TensorSpec([None], tf.as_dtype(f.tf_dtype), name=f.name)
        for f in features(taxi_spec)
    }

    class OldContract(tf.Module):
        @tf.function(input_signature=[signature])
        def serve(self, inputs: dict) -> dict:
            speed = tf.where(
                tf.math.is_nan(inputs["trip_speed_mph"]), 0.0, inputs["trip_speed_mph"]
            )
            return {"probabilities": tf.sigmoid(speed / 10.0 - 1.0)}

    module = OldContract()
    tf.saved_model.save(module, str(tmp_path / "old"), signatures={"serving_default": module.serve})
    metrics = evaluate(tmp_path / "old", holdout, labels, task="binary")
    assert metrics["rows"] == len(labels) and 0.0 < metrics["auc"] < 1.0
