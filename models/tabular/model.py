"""Pure model builder: raw column tensors in, the task's prediction out.

The head follows the spec's label task: a sigmoid unit for ``binary`` (probability of
the positive class), a softmax over ``label.classes`` for ``multiclass``, and one linear
unit rescaled to the label's mean and spread for ``regression`` (so training starts at
the mean whatever the label's unit).

All preprocessing (string normalization and derived features, ``models.tabular.derive``;
missing-value imputation, normalization, vocabularies) is part of the Keras model, so the
exported SavedModel takes the raw columns a client has (``DatasetSpec.model_inputs``) and
training and serving cannot drift apart. Statistics and vocabularies are computed with
NumPy from the features the model itself computes from ``adapt_data`` (the training
split's raw columns) and baked into the layers as constants, so building needs no
``adapt()`` call and gives the same model on every worker of a multi-worker job.

Uses legacy Keras (``tf_keras``, ``TF_USE_LEGACY_KERAS=1``): Keras 3 ``fit``
fails under ``MultiWorkerMirroredStrategy`` with TF 2.21 (docs/architecture.md §9).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
import tensorflow as tf
import tf_keras

from aimass.data.spec import BINARY, MULTICLASS, REGRESSION, DatasetSpec
from aimass.platform.errors import ConfigError
from models.tabular.derive import prepare
from models.tabular.features import CATEGORICAL, Feature, features, is_missing, model_inputs

logger = logging.getLogger(__name__)

NUM_OOV = 1


@tf_keras.saving.register_keras_serializable(package="aimass")
class Impute(tf_keras.layers.Layer):
    """Cast a scalar feature to float32, replace missing values, return shape ``[batch, 1]``.

    Missing means NaN, or ``sentinel`` when given (long columns use -1).
    """

    def __init__(self, fill_value: float, sentinel: float | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.fill_value = float(fill_value)
        self.sentinel = None if sentinel is None else float(sentinel)

    def call(self, inputs: tf.Tensor) -> tf.Tensor:
        x = tf.cast(inputs, tf.float32)
        missing = tf.math.is_nan(x)
        if self.sentinel is not None:
            missing = tf.logical_or(missing, tf.equal(x, self.sentinel))
        x = tf.where(missing, tf.constant(self.fill_value, tf.float32), x)
        return tf.expand_dims(x, -1)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "fill_value": self.fill_value, "sentinel": self.sentinel}


@tf_keras.saving.register_keras_serializable(package="aimass")
class AsString(tf_keras.layers.Layer):
    """Format category codes as strings, shape ``[batch, 1]``, so one lookup layer type serves all.

    The trailing axis matters: a one-hot lookup on a rank-1 input of one row
    would return a rank-1 result, breaking batches of size 1.
    """

    def call(self, inputs: tf.Tensor) -> tf.Tensor:
        x = inputs if inputs.dtype == tf.string else tf.strings.as_string(inputs)
        return tf.expand_dims(x, -1)


def category_strings(values: np.ndarray) -> np.ndarray:
    """The strings ``AsString`` produces for ``values`` (so vocabularies match the layer)."""
    if values.dtype == object:
        return values.astype(str)
    as_str = tf.strings.as_string(tf.constant(values)).numpy()
    return np.char.decode(as_str.astype(bytes), "utf-8")


def vocabulary(values: np.ndarray, max_size: int) -> list[str]:
    """The ``max_size`` most frequent category strings, most frequent first (ties by value)."""
    strings = category_strings(values)
    uniques, counts = np.unique(strings, return_counts=True)
    order = sorted(range(len(uniques)), key=lambda i: (-int(counts[i]), str(uniques[i])))
    return [str(uniques[i]) for i in order[:max_size]]


def _numeric_stats(feature: Feature, values: np.ndarray) -> tuple[float, float]:
    present = np.asarray(values, dtype=np.float64)[~is_missing(feature, values)]
    if present.size == 0:
        logger.warning(
            "numeric feature %s has no values in the training data; it will be constant",
            feature.name,
        )
        return 0.0, 1.0
    return float(present.mean()), float(present.var())


@tf_keras.saving.register_keras_serializable(package="aimass")
class Rescale(tf_keras.layers.Layer):
    """``x * scale + offset``: maps a standardized regression output to the label's unit."""

    def __init__(self, scale: float, offset: float, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.scale = float(scale)
        self.offset = float(offset)

    def call(self, inputs: tf.Tensor) -> tf.Tensor:
        return inputs * self.scale + self.offset

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "scale": self.scale, "offset": self.offset}


def _label_stats(labels: np.ndarray | None) -> tuple[float, float]:
    if labels is None or len(labels) == 0:
        raise ConfigError(
            "a regression model needs adapt_labels (the training labels) to scale its output"
        )
    values = np.asarray(labels, dtype=np.float64)
    return float(values.mean()), float(max(values.std(), 1e-6))


def _head(
    spec: DatasetSpec, x: tf.Tensor, adapt_labels: np.ndarray | None
) -> tuple[tf.Tensor, Any, list[Any]]:
    """Output layer, loss and training metrics for the spec's task."""
    # Heads compute in float32 even under a mixed-precision policy: a float16 sigmoid or
    # softmax saturates and its loss loses precision.
    if spec.task == BINARY:
        output = tf_keras.layers.Dense(
            1, activation="sigmoid", name="probability", dtype="float32"
        )(x)
        metrics = [
            tf_keras.metrics.AUC(name="auc"),
            tf_keras.metrics.BinaryAccuracy(name="accuracy"),
        ]
        return output, tf_keras.losses.BinaryCrossentropy(), metrics
    if spec.task == MULTICLASS:
        output = tf_keras.layers.Dense(
            spec.num_classes, activation="softmax", name="probabilities", dtype="float32"
        )(x)
        metrics = [tf_keras.metrics.SparseCategoricalAccuracy(name="accuracy")]
        return output, tf_keras.losses.SparseCategoricalCrossentropy(), metrics
    if spec.task == REGRESSION:
        mean, std = _label_stats(adapt_labels)
        standardized = tf_keras.layers.Dense(1, name="standardized", dtype="float32")(x)
        output = Rescale(std, mean, name="prediction", dtype="float32")(standardized)
        metrics = [
            tf_keras.metrics.RootMeanSquaredError(name="rmse"),
            tf_keras.metrics.MeanAbsoluteError(name="mae"),
        ]
        return output, tf_keras.losses.MeanSquaredError(), metrics
    raise ConfigError(f"label.task '{spec.task}' has no model head")


def _features_of(
    inputs: dict[str, Any], prepared: dict[str, tf.Tensor], adapt_data: dict[str, np.ndarray]
) -> dict[str, np.ndarray]:
    """The features the model computes from ``adapt_data`` (its preprocessing, run eagerly)."""
    preprocess = tf_keras.Model(inputs=inputs, outputs=prepared, name="preprocess")
    out = preprocess({name: tf.constant(adapt_data[name]) for name in inputs}, training=False)
    arrays = {name: value.numpy() for name, value in out.items()}
    return {
        name: np.char.decode(v.astype(bytes), "utf-8").astype(object) if v.dtype == object else v
        for name, v in arrays.items()
    }


def build_model(
    spec: DatasetSpec,
    *,
    adapt_data: dict[str, np.ndarray],
    adapt_labels: np.ndarray | None = None,
    hidden_units: Sequence[int] | None = None,
    learning_rate: float | None = None,
    dropout: float | None = None,
) -> tf_keras.Model:
    """Build and compile the model for ``spec``.

    Args:
        spec: dataset spec (features, types, label task, ``training.max_vocab``).
        adapt_data: the training split's model input arrays as ``inputs.load_arrays``
            returns them; numeric means/variances and category vocabularies are computed
            from the features the model computes from them.
        adapt_labels: training labels; needed for regression (output scaling).
        hidden_units: sizes of the dense layers (default ``spec.training.hidden_units``).
        learning_rate: Adam learning rate (default ``spec.training.learning_rate``).
        dropout: share of units dropped after each hidden layer while training
            (default ``spec.training.dropout``; 0 adds no dropout layer).

    Under a mixed-precision global policy (``tf_keras.mixed_precision``), the hidden
    layers compute in float16 and the head in float32, so outputs stay float32.

    Returns:
        A compiled ``tf_keras.Model`` with one named scalar input per model input
        (``spec.model_inputs``, batch shape ``[None]``) and an output of shape ``[None, 1]`` (binary: sigmoid;
        regression: the prediction) or ``[None, num_classes]`` (multiclass: softmax).

    Raises:
        ConfigError: a feature is missing from ``adapt_data`` or the data is empty.
    """
    hidden_units = tuple(hidden_units or spec.training.hidden_units)
    learning_rate = spec.training.learning_rate if learning_rate is None else learning_rate
    dropout = spec.training.dropout if dropout is None else dropout
    if not 0 <= dropout < 1:
        raise ConfigError(f"dropout={dropout}; use a share in [0, 1)")
    feats = features(spec)
    raw = model_inputs(spec)
    missing = [f.name for f in raw if f.name not in adapt_data]
    if missing:
        raise ConfigError(
            f"adapt_data lacks model inputs {missing}; pass the arrays from load_arrays(..., 'train')"
        )
    if len(adapt_data[raw[0].name]) == 0:
        raise ConfigError(
            "adapt_data is empty; the training split has no rows, check the clean partition"
        )

    inputs = {f.name: tf_keras.Input(shape=(), dtype=f.tf_dtype, name=f.name) for f in raw}
    prepared = prepare(spec, inputs)
    adapt_features = _features_of(inputs, prepared, adapt_data)
    encoded: list[tf.Tensor] = []
    for feat in feats:
        inp = prepared[feat.name]
        values = adapt_features[feat.name]
        if feat.kind == CATEGORICAL:
            vocab = vocabulary(values, spec.training.max_vocab)
            as_str = AsString(name=f"{feat.name}_as_string")(inp)
            lookup = tf_keras.layers.StringLookup(
                vocabulary=vocab,
                num_oov_indices=NUM_OOV,
                output_mode="one_hot",
                name=f"{feat.name}_lookup",
            )
            encoded.append(lookup(as_str))
            logger.debug("categorical %s: %d categories + %d OOV", feat.name, len(vocab), NUM_OOV)
        else:
            mean, variance = _numeric_stats(feat, values)
            sentinel = feat.fill if feat.spec_dtype == "long" else None
            # Preprocessing stays float32 under mixed precision: in float16 a latitude
            # near 41.9 moves in steps of 0.03, which would erase most of its signal.
            x = Impute(mean, sentinel, name=f"{feat.name}_impute", dtype="float32")(inp)
            norm = tf_keras.layers.Normalization(
                mean=[mean],
                variance=[max(variance, 1e-12)],
                name=f"{feat.name}_norm",
                dtype="float32",
            )
            encoded.append(norm(x))

    x = tf_keras.layers.Concatenate(name="features")(encoded) if len(encoded) > 1 else encoded[0]
    for i, units in enumerate(hidden_units):
        x = tf_keras.layers.Dense(units, activation="relu", name=f"dense_{i}")(x)
        if dropout > 0:
            x = tf_keras.layers.Dropout(dropout, name=f"dropout_{i}")(x)
    output, loss, metrics = _head(spec, x, adapt_labels)
    model = tf_keras.Model(inputs=inputs, outputs=output, name=f"{spec.name}_{spec.task}")
    model.compile(
        optimizer=tf_keras.optimizers.Adam(learning_rate=learning_rate),
        loss=loss,
        metrics=metrics,
    )
    return model
