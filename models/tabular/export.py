"""SavedModel export with the serving contract, and a loader for predictions.

Serving contract (docs/architecture.md, "Train"): the ``serving_default``
signature takes one input per raw column the model reads (``DatasetSpec.model_inputs``:
the features that are schema columns and the columns derived features read; never a
derived column), named as the column, shape ``[None]``,
dtype by spec type (double→float32, long→int64, string→string) and returns one
output, by the spec's label task:

- binary: ``{"probabilities": float32 [None]}``, the probability of the positive class;
- multiclass: ``{"probabilities": float32 [None, K]}``, one column per ``label.classes``;
- regression: ``{"predictions": float32 [None]}``, in the label's unit.
"""

from __future__ import annotations

import logging
import shutil
import uuid
from collections.abc import Callable
from pathlib import Path

import numpy as np
import tensorflow as tf
import tf_keras

from aimass.data.spec import MULTICLASS, REGRESSION, DatasetSpec
from aimass.platform.errors import ConfigError
from models.tabular.features import model_inputs

logger = logging.getLogger(__name__)

SIGNATURE_KEY = "serving_default"
PROBABILITIES = "probabilities"
PREDICTIONS = "predictions"
OUTPUT_KEYS = (PROBABILITIES, PREDICTIONS)


def output_key(spec: DatasetSpec) -> str:
    """The serving signature's output name for the spec's task."""
    return PREDICTIONS if spec.task == REGRESSION else PROBABILITIES


def serving_input_signature(spec: DatasetSpec) -> dict[str, tf.TensorSpec]:
    """The raw inputs of the serving signature: column -> ``TensorSpec([None], dtype)``.

    The columns are ``spec.model_inputs``: the raw columns the features are computed from,
    as a client has them (derived features are computed inside the model).
    """
    return {
        f.name: tf.TensorSpec(shape=(None,), dtype=tf.as_dtype(f.tf_dtype), name=f.name)
        for f in model_inputs(spec)
    }


def _replace_dir(src: Path, dst: Path) -> None:
    """Move ``src`` to ``dst``, replacing an existing ``dst`` with as small a window as rename allows."""
    old = dst.with_name(f".{dst.name}.old-{uuid.uuid4().hex[:8]}")
    if dst.exists():
        dst.rename(old)
    src.rename(dst)
    shutil.rmtree(old, ignore_errors=True)


def export_saved_model(model: tf_keras.Model, spec: DatasetSpec, export_dir: Path) -> Path:
    """Write ``model`` as a SavedModel with the serving contract to ``export_dir``.

    The model is written to a temporary sibling folder and renamed into place, so
    readers never see a half-written export and a rerun replaces its own export.

    Returns:
        ``export_dir``.
    """
    export_dir = Path(export_dir)
    export_dir.parent.mkdir(parents=True, exist_ok=True)

    key = output_key(spec)
    # Multiclass keeps one column per class; the others are one value per row.
    shape = [-1, spec.num_classes] if spec.task == MULTICLASS else [-1]

    @tf.function(input_signature=[serving_input_signature(spec)])
    def serve(inputs: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        outputs = model(inputs, training=False)
        return {key: tf.reshape(tf.cast(outputs, tf.float32), shape)}

    tmp = export_dir.with_name(f".{export_dir.name}.tmp-{uuid.uuid4().hex[:8]}")
    try:
        model.save(
            str(tmp), save_format="tf", include_optimizer=False, signatures={SIGNATURE_KEY: serve}
        )
        _replace_dir(tmp, export_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    logger.info("exported SavedModel to %s", export_dir)
    return export_dir


def load_predict_fn(
    export_dir: Path, *, batch_size: int = 8192
) -> Callable[[dict[str, np.ndarray]], np.ndarray]:
    """Load a SavedModel export and return ``predict(features) -> outputs`` (float32).

    The outputs are the signature's only output (``probabilities`` or ``predictions``):
    one value per row, or one row of class probabilities per row for multiclass.

    ``features`` maps every signature input name to a 1-D array of raw values
    (missing values as NaN / -1 / ""); extra keys are ignored. Rows are fed in
    chunks of ``batch_size``.

    Raises:
        ConfigError: the folder is not a SavedModel with a ``serving_default`` signature.
    """
    export_dir = Path(export_dir)
    if not (export_dir / "saved_model.pb").exists():
        raise ConfigError(
            f"{export_dir} is not a SavedModel (no saved_model.pb); pass the training run's export/ folder"
        )
    loaded = tf.saved_model.load(str(export_dir))
    if SIGNATURE_KEY not in loaded.signatures:
        raise ConfigError(
            f"SavedModel {export_dir} has no '{SIGNATURE_KEY}' signature (has {list(loaded.signatures)}); "
            "export it with models.tabular.export.export_saved_model"
        )
    fn = loaded.signatures[SIGNATURE_KEY]
    input_specs: dict[str, tf.TensorSpec] = fn.structured_input_signature[1]
    outputs = [k for k in OUTPUT_KEYS if k in fn.structured_outputs]
    if not outputs:
        raise ConfigError(
            f"SavedModel {export_dir} has outputs {sorted(fn.structured_outputs)}, none of "
            f"{OUTPUT_KEYS}; export it with models.tabular.export.export_saved_model"
        )
    key = outputs[0]

    def predict(feats: dict[str, np.ndarray]) -> np.ndarray:
        missing = sorted(set(input_specs) - set(feats))
        if missing:
            raise ConfigError(
                f"features lack model inputs {missing}; the model expects {sorted(input_specs)}"
            )
        rows = len(feats[next(iter(input_specs))])
        out: list[np.ndarray] = []
        for start in range(0, rows, batch_size):
            feed = {
                name: tf.constant(
                    np.asarray(feats[name][start : start + batch_size]), dtype=spec.dtype
                )
                for name, spec in input_specs.items()
            }
            out.append(fn(**feed)[key].numpy())
        return np.concatenate(out) if out else np.zeros((0,), np.float32)

    # Keep `loaded` alive as long as `predict`: the signature needs its variables.
    predict.loaded = loaded  # type: ignore[attr-defined]
    return predict
