"""Compressed variants of a trained model, each a SavedModel with the same serving contract.

Three kinds, all on the tf-keras path (``TF_USE_LEGACY_KERAS=1``) and exported with
:func:`models.tabular.export.export_saved_model`, so the ``serving_default`` signature is the
candidate's and any TF-Serving-compatible server loads them (no TF Lite: deprecated in recent
TensorFlow and experimental in TF Serving):

- ``pruned``: magnitude pruning (``tensorflow-model-optimization``) of the hidden ``Dense``
  layers to a target sparsity, a short fine-tune on the training split, then
  ``strip_pruning``. The zeros are still stored, so the folder shrinks mainly under gzip.
- ``float16`` and ``int8``: reduced-precision weights. Every ``Dense`` layer becomes a
  :class:`LowPrecisionDense` that stores its kernel as float16 (or int8 with one float32
  scale per output unit) and casts it back to float32 in ``call``: the variables on disk
  shrink 2x (4x), the graph computes in float32 and the signature is unchanged.
- ``distilled``: a smaller MLP (``build_model`` with fewer hidden units, the same
  preprocessing built from the same training rows) trained on the candidate's outputs.

``prune_low_magnitude`` cannot wrap the project's custom preprocessing layers, so only the
``Dense`` layers are replaced, by cloning the model (``clone_model`` with a
``clone_function``) and copying every other layer's weights across.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf
import tf_keras

from aimass.data.spec import BINARY, MULTICLASS, DatasetSpec
from aimass.platform.errors import ConfigError

# Importing the builder registers the custom layers load_model needs.
from models.tabular import model as _model  # noqa: F401
from models.tabular.export import export_saved_model

logger = logging.getLogger(__name__)

PRUNED, FLOAT16, INT8, DISTILLED = "pruned", "float16", "int8", "distilled"
VARIANTS = (PRUNED, FLOAT16, INT8, DISTILLED)
_STORAGE = (FLOAT16, INT8)
Arrays = dict[str, np.ndarray]


@tf_keras.saving.register_keras_serializable(package="aimass")
class LowPrecisionDense(tf_keras.layers.Layer):
    """A ``Dense`` layer whose kernel is stored as float16, or int8 with a per-unit scale.

    The kernel is cast (int8: dequantized) to float32 in ``call``, so the layer computes as
    ``Dense`` does and only the stored weights are smaller. The bias stays float32.
    """

    def __init__(
        self, units: int, activation: Any = None, storage: str = FLOAT16, **kwargs: Any
    ) -> None:
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        if storage not in _STORAGE:
            raise ConfigError(f"storage={storage!r}; use one of {_STORAGE}")
        self.units = int(units)
        self.activation = tf_keras.activations.get(activation)
        self.storage = storage

    def build(self, input_shape: Any) -> None:
        fan_in = int(input_shape[-1])
        kind = tf.float16 if self.storage == FLOAT16 else tf.int8
        self.kernel = self.add_weight(
            name="kernel", shape=(fan_in, self.units), dtype=kind, trainable=False
        )
        if self.storage == INT8:
            self.scale = self.add_weight(
                name="scale", shape=(self.units,), dtype=tf.float32, trainable=False
            )
        self.bias = self.add_weight(
            name="bias", shape=(self.units,), dtype=tf.float32, trainable=False
        )
        super().build(input_shape)

    def call(self, inputs: tf.Tensor) -> tf.Tensor:
        kernel = tf.cast(self.kernel, tf.float32)
        if self.storage == INT8:
            kernel = kernel * self.scale
        return self.activation(tf.matmul(tf.cast(inputs, tf.float32), kernel) + self.bias)

    def set_from_dense(self, kernel: np.ndarray, bias: np.ndarray) -> None:
        """Store a float32 ``Dense`` kernel and bias at this layer's precision."""
        if self.storage == FLOAT16:
            self.set_weights([kernel.astype(np.float16), bias.astype(np.float32)])
            return
        # Symmetric per-output-unit quantization: the largest |w| of a unit maps to 127.
        scale = np.abs(kernel).max(axis=0) / 127.0
        scale = np.where(scale > 0, scale, 1.0).astype(np.float32)
        q = np.clip(np.round(kernel / scale), -127, 127).astype(np.int8)
        self.set_weights([q, scale, bias.astype(np.float32)])

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "units": self.units,
            "activation": tf_keras.activations.serialize(self.activation),
            "storage": self.storage,
        }


def load_keras(saved_model_dir: Path) -> tf_keras.Model:
    """The Keras model inside a candidate's SavedModel (as ``export_saved_model`` wrote it)."""
    tf_keras.mixed_precision.set_global_policy("float32")
    try:
        return tf_keras.models.load_model(str(saved_model_dir), compile=False)
    except (OSError, ValueError) as exc:
        raise ConfigError(
            f"cannot load the Keras model in {saved_model_dir} ({exc}); compression needs a "
            "SavedModel written by models.tabular.export.export_saved_model"
        ) from exc


def _is_dense(layer: tf_keras.layers.Layer) -> bool:
    return type(layer) is tf_keras.layers.Dense


def _is_hidden(layer: tf_keras.layers.Layer) -> bool:
    """A hidden ``Dense`` layer (``dense_<i>``), not the task's output head."""
    return _is_dense(layer) and layer.name.startswith("dense_")


def _clone(model: tf_keras.Model, replace: Any) -> tf_keras.Model:
    """``model`` with the layers ``replace`` returns a new layer for, their weights copied.

    ``replace(layer)`` returns a replacement (built by the clone, weights set after) or None.
    A layer kept as it is but with trainable weights (the output head, when only the hidden
    layers are pruned) is copied, so fine-tuning the clone never changes ``model``. Layers
    without trainable weights are shared with ``model``, not rebuilt: the preprocessing layers
    of a loaded SavedModel keep their vocabularies in restored tables that their config lacks.
    """
    replaced: list[tuple[tf_keras.layers.Layer, tf_keras.layers.Layer]] = []
    copied: list[tuple[tf_keras.layers.Layer, tf_keras.layers.Layer]] = []

    def clone_layer(layer: tf_keras.layers.Layer) -> tf_keras.layers.Layer:
        new = replace(layer)
        if new is not None:
            replaced.append((layer, new))
            return new
        if layer.trainable_weights:
            copy = layer.__class__.from_config(layer.get_config())
            copied.append((layer, copy))
            return copy
        return layer

    clone = tf_keras.models.clone_model(model, clone_function=clone_layer)
    for old, copy in copied:
        copy.set_weights(old.get_weights())
    for old, new in replaced:
        kernel, bias = old.get_weights()
        if isinstance(new, LowPrecisionDense):
            new.set_from_dense(kernel, bias)
        else:  # a pruning wrapper around a fresh Dense
            new.layer.set_weights([kernel, bias])
    return clone


def _loss(spec: DatasetSpec, *, soft: bool = False) -> tf_keras.losses.Loss:
    if spec.task == BINARY:
        return tf_keras.losses.BinaryCrossentropy()
    if spec.task == MULTICLASS:
        if soft:
            return tf_keras.losses.CategoricalCrossentropy()
        return tf_keras.losses.SparseCategoricalCrossentropy()
    return tf_keras.losses.MeanSquaredError()


def _dataset(features: Arrays, targets: np.ndarray, batch_size: int, seed: int) -> tf.data.Dataset:
    tensors = {name: tf.constant(values) for name, values in features.items()}
    ds = tf.data.Dataset.from_tensor_slices((tensors, tf.constant(targets)))
    return ds.shuffle(len(targets), seed=seed).batch(batch_size)


def _targets(spec: DatasetSpec, labels: np.ndarray) -> np.ndarray:
    if spec.task == MULTICLASS:
        return labels.astype(np.int64)
    return labels.astype(np.float32).reshape(-1, 1)


def prune(
    model: tf_keras.Model,
    spec: DatasetSpec,
    features: Arrays,
    labels: np.ndarray,
    *,
    sparsity: float,
    epochs: int,
    batch_size: int,
    learning_rate: float,
    seed: int = 0,
) -> tf_keras.Model:
    """Magnitude-prune the hidden ``Dense`` layers to ``sparsity``, fine-tune, strip the wrappers."""
    import tensorflow_model_optimization as tfmot

    if not 0 < sparsity < 1:
        raise ConfigError(f"sparsity={sparsity}; use a share in (0, 1), e.g. 0.5")
    tf_keras.utils.set_random_seed(seed)
    steps = max(1, -(-len(labels) // batch_size))
    # Pruned to the target at step 0 and held there (a mask update once per epoch).
    schedule = tfmot.sparsity.keras.ConstantSparsity(sparsity, begin_step=0, frequency=steps)

    def wrap(layer: tf_keras.layers.Layer) -> tf_keras.layers.Layer | None:
        if not _is_hidden(layer):
            return None
        fresh = tf_keras.layers.Dense.from_config(layer.get_config())
        return tfmot.sparsity.keras.prune_low_magnitude(fresh, pruning_schedule=schedule)

    wrapped = _clone(model, wrap)
    wrapped.compile(
        optimizer=tf_keras.optimizers.Adam(learning_rate=learning_rate), loss=_loss(spec)
    )
    wrapped.fit(
        _dataset(features, _targets(spec, labels), batch_size, seed),
        epochs=max(1, epochs),
        verbose=0,
        callbacks=[tfmot.sparsity.keras.UpdatePruningStep()],
    )
    return tfmot.sparsity.keras.strip_pruning(wrapped)


def reduce_precision(model: tf_keras.Model, storage: str) -> tf_keras.Model:
    """``model`` with every ``Dense`` layer stored at ``storage`` (float16 or int8)."""

    def lower(layer: tf_keras.layers.Layer) -> tf_keras.layers.Layer | None:
        if not _is_dense(layer):
            return None
        config = layer.get_config()
        return LowPrecisionDense(
            config["units"], config["activation"], storage, name=layer.name, dtype="float32"
        )

    return _clone(model, lower)


def distill(
    teacher: tf_keras.Model,
    spec: DatasetSpec,
    features: Arrays,
    labels: np.ndarray,
    *,
    hidden_units: Sequence[int],
    epochs: int,
    batch_size: int,
    learning_rate: float,
    seed: int = 0,
) -> tf_keras.Model:
    """A ``build_model`` student with ``hidden_units`` trained on the teacher's outputs."""
    from models.tabular.model import build_model

    tf_keras.utils.set_random_seed(seed)
    soft = np.asarray(
        teacher.predict({k: tf.constant(v) for k, v in features.items()}, verbose=0),
        dtype=np.float32,
    )
    student = build_model(
        spec,
        adapt_data=features,
        adapt_labels=labels,
        hidden_units=hidden_units,
        learning_rate=learning_rate,
        dropout=0.0,
    )
    student.compile(
        optimizer=tf_keras.optimizers.Adam(learning_rate=learning_rate),
        loss=_loss(spec, soft=True),
    )
    student.fit(_dataset(features, soft, batch_size, seed), epochs=max(1, epochs), verbose=0)
    return student


def dense_sparsity(model: tf_keras.Model) -> float:
    """The share of zero weights in the hidden ``Dense`` kernels."""
    kernels = [layer.get_weights()[0] for layer in model.layers if _is_hidden(layer)]
    total = sum(k.size for k in kernels)
    return float(sum(int((k == 0).sum()) for k in kernels) / total) if total else 0.0


def parameter_count(model: tf_keras.Model) -> int:
    """Weights of the model's layers (trainable or not), the lookup tables excluded."""
    return int(sum(int(np.prod(w.shape)) for w in model.weights))


def build_variant(
    kind: str,
    teacher: tf_keras.Model,
    spec: DatasetSpec,
    features: Arrays,
    labels: np.ndarray,
    export_dir: Path,
    *,
    sparsity: float = 0.5,
    fine_tune_epochs: int = 2,
    hidden_units: Sequence[int] = (8,),
    distill_epochs: int | None = None,
    batch_size: int | None = None,
    learning_rate: float | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """Make variant ``kind`` of ``teacher`` and export it to ``export_dir``; its facts.

    ``features``/``labels``: the (capped) training rows the fine-tune and distillation use.
    Returns ``{"kind", "saved_model_dir", "parameters", ...}`` with the kind's own facts
    (``sparsity`` for pruned, ``hidden_units`` for distilled, ``storage`` for the others).
    """
    batch_size = batch_size or spec.training.batch_size
    learning_rate = learning_rate or spec.training.learning_rate
    facts: dict[str, Any] = {"kind": kind}
    if kind == PRUNED:
        variant = prune(
            teacher,
            spec,
            features,
            labels,
            sparsity=sparsity,
            epochs=fine_tune_epochs,
            batch_size=batch_size,
            # Fine-tuning starts from trained weights: a smaller step keeps them.
            learning_rate=learning_rate / 10,
            seed=seed,
        )
        facts["sparsity"] = round(dense_sparsity(variant), 4)
    elif kind in _STORAGE:
        variant = reduce_precision(teacher, kind)
        facts["storage"] = kind
    elif kind == DISTILLED:
        variant = distill(
            teacher,
            spec,
            features,
            labels,
            hidden_units=hidden_units,
            epochs=distill_epochs or spec.training.epochs,
            batch_size=batch_size,
            learning_rate=learning_rate,
            seed=seed,
        )
        facts["hidden_units"] = list(hidden_units)
    else:
        raise ConfigError(f"compression variant {kind!r} is unknown; use one of {VARIANTS}")
    facts["parameters"] = parameter_count(variant)
    facts["saved_model_dir"] = str(export_saved_model(variant, spec, Path(export_dir)))
    return facts
