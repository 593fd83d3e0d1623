"""Loaded SavedModels: one version's signatures, and the errors requests get (TF Serving's codes).

`LoadedModel` is what a request runs; `load_saved_model` and `replay_warmup` make one from a
version folder. `ServableError` carries a gRPC status code and TF Serving's message; the REST
front end maps the code to an HTTP status.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import tensorflow as tf
from tensorflow.core.protobuf import meta_graph_pb2, saved_model_pb2
from tensorflow_serving.apis import prediction_log_pb2

from aimass.serving.config import SAVED_MODEL_FILE

DEFAULT_SIGNATURE = "serving_default"
WARMUP_FILE = Path("assets.extra") / "tf_serving_warmup_requests"


class ServableError(Exception):
    """A request the server answers with an error status (gRPC code + TF Serving's message)."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


# --------------------------------------------------------------------------- loaded models


@dataclass(frozen=True)
class LoadedModel:
    """One loaded SavedModel. Requests hold a reference, so an unload never breaks them."""

    module: Any
    signatures: Mapping[str, Any]
    signature_defs: Mapping[str, meta_graph_pb2.SignatureDef]
    _input_dtypes: dict[str, dict[str, tf.DType]] = field(
        default_factory=dict, repr=False, compare=False
    )
    _numpy_dtypes: dict[str, dict[str, np.dtype]] = field(
        default_factory=dict, repr=False, compare=False
    )

    def signature_def(self, name: str) -> meta_graph_pb2.SignatureDef:
        name = name or DEFAULT_SIGNATURE
        if name not in self.signatures:
            raise ServableError(
                grpc.StatusCode.INVALID_ARGUMENT,
                f'Serving signature name: "{name}" not found in signature def',
            )
        return self.signature_defs[name]

    def input_dtypes(self, signature: str) -> dict[str, tf.DType]:
        """Input name -> dtype of `signature` (cached; do not modify the answer)."""
        dtypes = self._input_dtypes.get(signature)
        if dtypes is None:
            sig = self.signature_def(signature)
            dtypes = {key: tf.as_dtype(info.dtype) for key, info in sig.inputs.items()}
            self._input_dtypes[signature] = dtypes
        return dtypes

    def predict(
        self, signature: str, inputs: Mapping[str, np.ndarray], output_filter: Sequence[str] = ()
    ) -> dict[str, np.ndarray]:
        """Run `signature` on `inputs` (named as the signature's inputs, dtypes as declared)."""
        signature = signature or DEFAULT_SIGNATURE
        self.check(signature, inputs, output_filter)
        return self.run(signature, inputs, output_filter)

    def check(
        self, signature: str, inputs: Mapping[str, np.ndarray], output_filter: Sequence[str] = ()
    ) -> None:
        """Raise the INVALID_ARGUMENT `predict` would for these input names, dtypes and outputs."""
        sig = self.signature_def(signature)
        expected = self.input_dtypes(signature)
        if set(inputs) != set(expected):
            extra = sorted(set(inputs) - set(expected))
            missing = sorted(set(expected) - set(inputs))
            raise ServableError(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"input size does not match signature: {len(inputs)}!={len(expected)} "
                f"Sent extra: {extra} Missing but required: {missing}.",
            )
        unknown = sorted(set(output_filter) - set(sig.outputs))
        if unknown:
            raise ServableError(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"output tensor alias not found in signature: {unknown[0]} Outputs expected to "
                f"be in the set {sorted(sig.outputs)}.",
            )
        numpy_dtypes = self._numpy_dtypes.get(signature)
        if numpy_dtypes is None:
            numpy_dtypes = {
                key: np.dtype(object) if dtype == tf.string else np.dtype(dtype.as_numpy_dtype)
                for key, dtype in expected.items()
            }
            self._numpy_dtypes[signature] = numpy_dtypes
        for key, value in inputs.items():
            if value.dtype == numpy_dtypes[key]:
                continue  # the common case, without TensorFlow's dtype lookups
            got = tf.as_dtype(value.dtype) if value.dtype != object else tf.string
            if got != expected[key]:
                raise ServableError(
                    grpc.StatusCode.INVALID_ARGUMENT,
                    f"Expects arg[{key}] to be {expected[key].name} but {got.name} is provided",
                )

    def run(
        self, signature: str, inputs: Mapping[str, np.ndarray], output_filter: Sequence[str] = ()
    ) -> dict[str, np.ndarray]:
        """Call `signature` on inputs that passed `check`."""
        expected = self.input_dtypes(signature)
        tensors = {key: tf.constant(value, dtype=expected[key]) for key, value in inputs.items()}
        try:
            result = self.signatures[signature](**tensors)
        except (tf.errors.InvalidArgumentError, ValueError, TypeError) as exc:
            raise ServableError(grpc.StatusCode.INVALID_ARGUMENT, short(exc)) from exc
        except tf.errors.OpError as exc:
            raise ServableError(grpc.StatusCode.INTERNAL, short(exc)) from exc
        wanted = list(output_filter) or list(result)
        return {key: result[key].numpy() for key in wanted}


def load_saved_model(path: Path) -> LoadedModel:
    """Load the `serve` meta graph of the SavedModel in `path` (needs a serving_default signature)."""
    proto = saved_model_pb2.SavedModel.FromString((path / SAVED_MODEL_FILE).read_bytes())
    meta_graph = next((mg for mg in proto.meta_graphs if "serve" in mg.meta_info_def.tags), None)
    if meta_graph is None:
        raise ValueError(
            f"{path} has no meta graph tagged 'serve'; export it with tf.saved_model.save"
        )
    module = tf.saved_model.load(str(path), tags=["serve"])
    signatures = dict(module.signatures)
    if DEFAULT_SIGNATURE not in signatures:
        raise ValueError(
            f"{path} has no '{DEFAULT_SIGNATURE}' signature (found {sorted(signatures)}); "
            "export the model with signatures={'serving_default': ...}"
        )
    return LoadedModel(module, signatures, dict(meta_graph.signature_def))


def replay_warmup(loaded: LoadedModel, path: Path) -> int:
    """Replay the PredictionLog records in assets.extra/tf_serving_warmup_requests; the count."""
    warmup = path / WARMUP_FILE
    if not warmup.is_file():
        return 0
    count = 0
    for record in tf.data.TFRecordDataset(str(warmup)):
        log = prediction_log_pb2.PredictionLog.FromString(record.numpy())
        if log.WhichOneof("log_type") != "predict_log":
            raise ValueError(f"warm-up record {count} in {warmup} is not a predict_log")
        request = log.predict_log.request
        inputs = {key: tf.make_ndarray(value) for key, value in request.inputs.items()}
        loaded.predict(request.model_spec.signature_name, inputs, list(request.output_filter))
        count += 1
    return count


def short(exc: BaseException, limit: int = 600) -> str:
    """An exception as one bounded line for an error message (type name first, except ours)."""
    text = str(exc).strip() or type(exc).__name__
    text = text if len(text) <= limit else text[:limit] + "..."
    return f"{type(exc).__name__}: {text}" if not isinstance(exc, ServableError) else text
