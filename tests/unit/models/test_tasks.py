"""Multiclass and regression heads on the penguins sample: training, export, evaluation.

The taxi (binary) model is covered by test_model.py; these build the same model code from
the two penguin specs, which differ from it only by their YAML.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from testkit import REPO_ROOT, write_penguin_partition

from aimass.data.spec import DatasetSpec, load_spec
from aimass.evaluation.metrics import task_metrics
from models.tabular.inputs import load_arrays, make_dataset

pytestmark = pytest.mark.unit

tf = pytest.importorskip("tensorflow")
tf_keras = pytest.importorskip("tf_keras")

SPECS = REPO_ROOT / "conf" / "datasets"


def _train(spec: DatasetSpec, partition: Path, epochs: int) -> object:
    from models.tabular.model import build_model

    x, y = load_arrays(partition, spec, "train")
    tf_keras.utils.set_random_seed(3)
    model = build_model(spec, adapt_data=x, adapt_labels=y)
    model.fit(
        make_dataset(partition, spec, split="train", batch_size=16, shuffle=True),
        epochs=epochs,
        verbose=0,
    )
    return model


def _export_matches(spec: DatasetSpec, model: object, x: dict, export_dir: Path) -> np.ndarray:
    from models.tabular.export import export_saved_model, load_predict_fn, output_key

    export_saved_model(model, spec, export_dir)  # type: ignore[arg-type]
    signature = tf.saved_model.load(str(export_dir)).signatures["serving_default"]
    (key,) = signature.structured_outputs
    assert key == output_key(spec)
    served = load_predict_fn(export_dir, batch_size=50)(x)
    in_memory = model.predict(x, verbose=0)  # type: ignore[attr-defined]
    np.testing.assert_allclose(served, in_memory.reshape(served.shape), rtol=1e-5, atol=1e-5)
    return served


def test_multiclass_model_learns_the_species(tmp_path: Path) -> None:
    spec = load_spec(SPECS / "palmer_penguins.yaml")
    partition = write_penguin_partition(tmp_path / "clean", spec)
    model = _train(spec, partition, epochs=15)
    x, y = load_arrays(partition, spec, "holdout")

    probs = _export_matches(spec, model, x, tmp_path / "export")
    assert probs.shape == (len(y), 3)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    metrics = task_metrics("multiclass", y, probs)
    assert metrics["accuracy"] > 0.9 and metrics["auc"] > 0.95, metrics


def test_regression_model_starts_at_the_label_mean_and_learns(tmp_path: Path) -> None:
    from models.tabular.model import build_model

    spec = load_spec(SPECS / "penguins_body_mass.yaml")
    partition = write_penguin_partition(tmp_path / "clean", spec)
    x_train, y_train = load_arrays(partition, spec, "train")
    assert y_train.dtype == np.float64

    # Before any training the rescaled output sits near the mean (grams, not ~0).
    tf_keras.utils.set_random_seed(3)
    untrained = build_model(spec, adapt_data=x_train, adapt_labels=y_train)
    start = untrained.predict(x_train, verbose=0).ravel()
    assert abs(float(np.median(start)) - float(y_train.mean())) < 1.5 * float(y_train.std())

    model = _train(spec, partition, epochs=30)
    x, y = load_arrays(partition, spec, "holdout")
    preds = _export_matches(spec, model, x, tmp_path / "export")
    assert preds.shape == (len(y),)
    metrics = task_metrics("regression", y, preds)
    assert metrics["r2"] > 0.6 and metrics["rmse"] < 500, metrics


def test_regression_model_needs_the_labels(tmp_path: Path) -> None:
    from aimass.platform.errors import ConfigError
    from models.tabular.model import build_model

    spec = load_spec(SPECS / "penguins_body_mass.yaml")
    partition = write_penguin_partition(tmp_path / "clean", spec)
    x, _ = load_arrays(partition, spec, "train")
    with pytest.raises(ConfigError, match="adapt_labels"):
        build_model(spec, adapt_data=x)
