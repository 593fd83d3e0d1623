"""Loaded SavedModels: one version's signatures, and the errors requests get (TF Serving's codes).

`load_saved_model` makes a `LoadedModel` from a version folder; each of its signatures is a
`Signature`, described once at load (input names, dtypes and shapes) so a request never looks
them up again. `ServableError` carries a gRPC status code and a message that says what to fix;
the REST front end maps the code to an HTTP status.
"""

from __future__ import annotations

import functools
import inspect
import logging
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import tensorflow as tf
from tensorflow.core.protobuf import meta_graph_pb2, saved_model_pb2

from aimass.serving.config import SAVED_MODEL_FILE

logger = logging.getLogger(__name__)

DEFAULT_SIGNATURE = "serving_default"
WARMUP_FILE = Path("assets.extra") / "tf_serving_warmup_requests"


class ServableError(Exception):
    """A request the server answers with an error status (gRPC code + a message saying what to fix).

    Args:
        code: the gRPC status; REST maps it to an HTTP status.
        message: what went wrong and what to fix; never internal names or traces.
        http_status: the REST status when the mapping of `code` is not the right one
            (413 for a body too large, 408 for a slow one).
        headers: extra REST headers (``Retry-After`` on back-pressure).
    """

    def __init__(
        self,
        code: grpc.StatusCode,
        message: str,
        *,
        http_status: int | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.http_status = http_status
        self.headers = dict(headers or {})


def invalid(message: str) -> ServableError:
    """A caller's mistake: INVALID_ARGUMENT over gRPC, 400 over REST."""
    return ServableError(grpc.StatusCode.INVALID_ARGUMENT, message)


@dataclass(frozen=True)
class InputSpec:
    """One input of a signature: dtype as TensorFlow and numpy name it, and its shape.

    `shape` is None for an unknown rank; -1 marks a dimension of any size.
    """

    name: str
    dtype: tf.DType
    numpy_dtype: np.dtype
    shape: tuple[int, ...] | None
    fixed: tuple[tuple[int, int], ...] = ()  # (dimension, size) of the sizes the shape gives

    def describe_shape(self) -> str:
        return "any shape" if self.shape is None else str(list(self.shape))


Caller = Callable[[Mapping[str, np.ndarray]], Mapping[str, Any]]


@dataclass(frozen=True)
class Signature:
    """A serving signature, described once when its version loads.

    `call` runs it on checked numpy inputs (named as `inputs`); None means the public
    ``fn(**tensors)``.
    """

    name: str
    fn: Callable[..., Mapping[str, Any]]
    inputs: Mapping[str, InputSpec]
    input_names: frozenset[str]
    outputs: frozenset[str]
    batched: bool  # every input has a first dimension of any size: the rows
    call: Caller | None = None


def _signature(name: str, fn: Any, definition: meta_graph_pb2.SignatureDef) -> Signature:
    inputs = {}
    for key, info in definition.inputs.items():
        dtype = tf.as_dtype(info.dtype)
        shape = None
        if not info.tensor_shape.unknown_rank:
            shape = tuple(int(dim.size) for dim in info.tensor_shape.dim)
        numpy_dtype = np.dtype(object) if dtype == tf.string else np.dtype(dtype.as_numpy_dtype)
        fixed = tuple((i, size) for i, size in enumerate(shape or ()) if size >= 0)
        inputs[key] = InputSpec(key, dtype, numpy_dtype, shape, fixed)
    batched = bool(inputs) and all(
        spec.shape is not None and len(spec.shape) >= 1 and spec.shape[0] == -1
        for spec in inputs.values()
    )
    return Signature(
        name,
        fn,
        inputs,
        frozenset(inputs),
        frozenset(definition.outputs),
        batched=batched,
        call=_flat_call(fn, inputs),
    )


def _public_call(fn: Any, specs: Mapping[str, InputSpec]) -> Caller:
    def call(inputs: Mapping[str, np.ndarray]) -> Mapping[str, Any]:
        return fn(
            **{key: tf.constant(value, dtype=specs[key].dtype) for key, value in inputs.items()}
        )  # type: ignore[no-any-return]

    return call


def _unwrapped(fn: Any) -> Callable[..., Any]:
    """`fn`'s ``_call_flat``; for a loaded SavedModel's wrapper, its parent's when no captured
    variable is distributed: the wrapper then maps each captured variable to itself on every
    call (a third of a small model's call)."""
    from tensorflow.python.distribute import distribute_utils
    from tensorflow.python.eager.polymorphic_function.concrete_function import ConcreteFunction

    if type(fn).__name__ == "_WrapperFunction" and isinstance(fn, ConcreteFunction):
        if not any(distribute_utils.is_distributed_variable(x) for x in fn.captured_inputs):
            return functools.partial(ConcreteFunction._call_flat, fn)
    return fn._call_flat  # type: ignore[no-any-return]


def _flat_call(fn: Any, specs: Mapping[str, InputSpec]) -> Caller | None:
    """`fn` without TensorFlow's per-call argument binding, or None where that is not safe.

    The public ``fn(**tensors)`` binds the keywords to the signature's function type, casts
    and checks every tensor against its spec, then calls ``_call_flat`` with the tensors in
    parameter order. `aimass.serving.tensors.check_inputs` has checked names, dtypes and
    shapes already, so this calls ``_call_flat`` directly (`_unwrapped`), with tensors made as
    ``tf.constant`` makes them minus its conversions: about half TensorFlow's Python cost per
    request on a small model (make bench-serve). It relies on TensorFlow internals (the version is pinned
    in requirements.lock): where they differ, or where a probe call's answer differs from the
    public call's, the signature keeps the public call.
    """
    try:
        from tensorflow.python.eager import context
        from tensorflow.python.framework import ops

        parameters = list(fn.function_type.parameters.values())
        names = [parameter.name for parameter in parameters]
        keyword_only = inspect.Parameter.KEYWORD_ONLY
        if sorted(names) != sorted(specs) or any(p.kind != keyword_only for p in parameters):
            return None
        if any(spec.shape is None for spec in specs.values()):
            return None  # no probe can be built
        call_flat, captured = _unwrapped(fn), fn.captured_inputs
        enums = [(name, specs[name].dtype.as_datatype_enum) for name in names]
        eager = context.context()

        def call(inputs: Mapping[str, np.ndarray]) -> Mapping[str, Any]:
            device = eager.device_name
            return call_flat(  # type: ignore[no-any-return]
                [ops.EagerTensor(inputs[name], device, enum) for name, enum in enums], captured
            )

        probe = {}
        for name, spec in specs.items():
            shape = [1 if size < 0 else size for size in spec.shape or ()]
            strings = spec.numpy_dtype.kind == "O"
            probe[name] = (
                np.full(shape, b"", object) if strings else np.zeros(shape, spec.numpy_dtype)
            )
        expected, got = _public_call(fn, specs)(probe), call(probe)
        if set(expected) != set(got) or not all(
            np.array_equal(
                expected[key].numpy(), got[key].numpy(), equal_nan=expected[key].dtype.is_floating
            )
            for key in expected
        ):
            logger.warning("signature call without argument binding differs; using the public call")
            return None
        return call
    except Exception as exc:  # any failure keeps the public call
        logger.info("signature keeps TensorFlow's public call (%s)", short(exc))
        return None


class LoadedModel:
    """One loaded SavedModel. Requests hold a reference, so an unload never breaks them."""

    def __init__(
        self,
        module: Any,
        signatures: Mapping[str, Any],
        signature_defs: Mapping[str, meta_graph_pb2.SignatureDef],
    ) -> None:
        self.module = module
        self.signatures = dict(signatures)
        self.signature_defs = dict(signature_defs)
        self._described = {
            name: _signature(name, fn, self.signature_defs[name])
            for name, fn in self.signatures.items()
            if name in self.signature_defs
        }

    def signature(self, name: str) -> Signature:
        """The signature `name` (the default one when empty), or INVALID_ARGUMENT."""
        found = self._described.get(name or DEFAULT_SIGNATURE)
        if found is None:
            raise invalid(
                f'Serving signature name: "{name}" not found in signature def; '
                f"this version serves {sorted(self._described)}"
            )
        return found

    def run(
        self,
        signature: Signature,
        inputs: Mapping[str, np.ndarray],
        output_filter: Sequence[str] = (),
    ) -> dict[str, np.ndarray]:
        """Call `signature` on inputs that passed `aimass.serving.tensors.check_inputs`."""
        call = signature.call or _public_call(signature.fn, signature.inputs)
        try:
            result = call(inputs)
        except (tf.errors.InvalidArgumentError, ValueError, TypeError) as exc:
            logger.debug("signature %s refused its inputs: %s", signature.name, exc)
            raise invalid(f"the model cannot run on these inputs: {model_error(exc)}") from exc
        except tf.errors.OpError as exc:
            logger.warning("signature %s failed: %s", signature.name, exc)
            raise ServableError(
                grpc.StatusCode.INTERNAL, f"the model failed: {model_error(exc)}"
            ) from exc
        if output_filter:
            return {key: result[key].numpy() for key in output_filter}
        return {key: value.numpy() for key, value in result.items()}


# TensorFlow's messages carry graph internals (node names, op names, Python traces) that say
# nothing to a caller and describe the model to an attacker.
_INTERNALS = re.compile(r"\s*(\{\{[^}]*\}\}|\[\[[^\]]*\]\]|\[Op:[^\]]*\]|\(defined at [^)]*\))")
_TRACE_LINES = ("Graph execution error", "Detected at node", "defined at", "File ", "  ")


def model_error(exc: BaseException, limit: int = 300) -> str:
    """TensorFlow's error as one line without node names, op names or Python traces."""
    text = getattr(exc, "message", None) or str(exc)
    lines = [
        line.strip()
        for line in text.splitlines()
        if line.strip() and not line.startswith(_TRACE_LINES) and not line.startswith("\t")
    ]
    cleaned = _INTERNALS.sub("", lines[-1] if lines else type(exc).__name__).strip()
    cleaned = re.sub(r"'?\b\w*(?:serving_default|StatefulPartitionedCall)\w*(:\d+)?'?", "", cleaned)
    cleaned = cleaned.strip(" .;:") or type(exc).__name__
    return cleaned if len(cleaned) <= limit else cleaned[:limit] + "..."


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


def short(exc: BaseException, limit: int = 600) -> str:
    """An exception as one bounded line for an error message (type name first, except ours)."""
    text = str(exc).strip() or type(exc).__name__
    text = text if len(text) <= limit else text[:limit] + "..."
    return f"{type(exc).__name__}: {text}" if not isinstance(exc, ServableError) else text
