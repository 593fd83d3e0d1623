"""Tensors on the wire: TensorProto <-> numpy codecs, and the checks every request's inputs pass.

The codecs are faster than TensorFlow's converters for the common encodings. `check_inputs` is
where gRPC and REST requests meet the signature: whatever the model could not run is refused
here as INVALID_ARGUMENT (HTTP 400) with a message naming the input and the fix, before
TensorFlow sees it (TensorFlow's own errors name graph nodes).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import grpc
import numpy as np
import tensorflow as tf

from aimass.serving.servables import ServableError, Signature, invalid

_NUMPY_DTYPES = {
    dtype.as_datatype_enum: dtype.as_numpy_dtype
    for dtype in (
        tf.float16,
        tf.float32,
        tf.float64,
        tf.int8,
        tf.int16,
        tf.int32,
        tf.int64,
        tf.uint8,
        tf.uint16,
        tf.uint32,
        tf.uint64,
        tf.bool,
    )
}
_DATATYPES = {np.dtype(numpy): enum for enum, numpy in _NUMPY_DTYPES.items()}
# The repeated field small tensors travel in (tf.make_tensor_proto skips tensor_content for them).
_VALUE_FIELDS = {
    tf.float32.as_datatype_enum: ("float_val", np.float32),
    tf.float64.as_datatype_enum: ("double_val", np.float64),
    tf.int32.as_datatype_enum: ("int_val", np.int32),
    tf.int64.as_datatype_enum: ("int64_val", np.int64),
    tf.bool.as_datatype_enum: ("bool_val", np.bool_),
}
_DT_STRING = tf.string.as_datatype_enum


def tensor_to_ndarray(proto: Any, *, max_values: int | None = None) -> np.ndarray:
    """`tf.make_ndarray`, without its per-call overhead for the common encodings.

    Numeric tensors in ``tensor_content``, and tensors with one value per element in their
    repeated field (strings, floats, ints, bools), are read directly (the array may be
    read-only); anything else (e.g. one value broadcast to the shape) goes to `tf.make_ndarray`.

    Args:
        max_values: refuse a tensor of more values (every value costs at least a byte on
            the wire, except when one value is broadcast to a shape: a small message could
            otherwise ask for gigabytes).

    Raises:
        ServableError: INVALID_ARGUMENT for a shape too large or with negative dimensions.
    """
    dims = proto.tensor_shape.dim
    if len(dims) == 1:  # the common case, without the generic shape work
        count = dims[0].size
        shape: tuple[int, ...] = (count,)
        negative = count < 0
    else:
        shape = tuple(dim.size for dim in dims)
        count = math.prod(shape)
        negative = min(shape, default=0) < 0
    if negative:
        raise invalid(f"a tensor declares shape {list(shape)}; dimensions cannot be negative")
    if max_values is not None and count > max_values:
        raise invalid(
            f"a tensor declares shape {list(shape)} ({count} values), more than the request "
            f"may carry ({max_values} values in all, one per byte of "
            "--grpc_max_receive_message_bytes)"
        )
    kind = proto.dtype
    content = proto.tensor_content
    if content:
        dtype = _NUMPY_DTYPES.get(kind)
        if dtype is not None:
            return np.frombuffer(content, dtype=dtype).reshape(shape)
    elif kind == _DT_STRING:
        values = proto.string_val
        if len(values) == count:
            return np.array(list(values), dtype=object).reshape(shape)
    elif kind in _VALUE_FIELDS:
        name, dtype = _VALUE_FIELDS[kind]
        values = getattr(proto, name)
        if len(values) == count:
            array: np.ndarray = np.fromiter(values, dtype=dtype, count=count)
            return array if len(shape) == 1 else array.reshape(shape)
    return tf.make_ndarray(proto)


def fill_tensor_proto(proto: Any, value: np.ndarray) -> None:
    """Write `value` into a TensorProto as `tf.make_tensor_proto` would, faster for numbers."""
    enum = _DATATYPES.get(value.dtype)
    if enum is None:
        proto.CopyFrom(tf.make_tensor_proto(value))
        return
    proto.dtype = enum
    for size in value.shape:
        proto.tensor_shape.dim.add().size = size
    proto.tensor_content = np.ascontiguousarray(value).tobytes()


# --------------------------------------------------------------------------- input validation


def _names(names: object) -> str:
    return str(sorted(names))  # type: ignore[call-overload]


def _has_inf(value: np.ndarray) -> bool:
    if value.size <= 16:  # numpy's per-call cost exceeds the work for a few values
        return any(map(math.isinf, value.ravel().tolist()))
    return bool(np.isinf(value).any())


def check_inputs(
    signature: Signature,
    inputs: Mapping[str, np.ndarray],
    output_filter: Sequence[str] = (),
    *,
    max_rows: int | None = None,
) -> int | None:
    """Refuse what the model cannot run, with a message saying what to fix; the rows, if batched.

    Checks input names (the exact missing and unexpected ones), dtypes, shapes against the
    signature, that batched inputs agree on their rows (at most `max_rows`), that float inputs
    hold no infinity (NaN is the wire's missing value and passes), and the output filter.

    Raises:
        ServableError: INVALID_ARGUMENT, or RESOURCE_EXHAUSTED (HTTP 413) for too many rows.
    """
    if inputs.keys() != signature.input_names:
        missing = signature.input_names - inputs.keys()
        unexpected = inputs.keys() - signature.input_names
        parts = [f"missing features {_names(missing)}"] if missing else []
        parts += [f"unexpected {_names(unexpected)}"] if unexpected else []
        raise invalid(f"{'; '.join(parts)} (the model takes {_names(signature.input_names)})")
    if output_filter:
        unknown = set(output_filter) - signature.outputs
        if unknown:
            raise invalid(
                f"output_filter names {_names(unknown)}, which the signature does not have; "
                f"its outputs are {_names(signature.outputs)}"
            )
    rows: int | None = None
    specs = signature.inputs
    for key, value in inputs.items():
        spec = specs[key]
        if value.dtype != spec.numpy_dtype:
            got = "string" if value.dtype == object else value.dtype.name
            want = "string" if spec.dtype == tf.string else spec.dtype.name
            raise invalid(f"input '{key}' is {got}; the model takes {want}")
        shape = spec.shape
        if shape is not None:
            fixed = spec.fixed
            if value.ndim != len(shape) or (fixed and any(value.shape[i] != n for i, n in fixed)):
                raise invalid(
                    f"input '{key}' has shape {list(value.shape)}; the model takes "
                    f"{spec.describe_shape()} (-1: any size)"
                )
        if signature.batched:
            if rows is None:
                rows = value.shape[0]
            elif value.shape[0] != rows:
                counts = {k: (v.shape[0] if v.ndim else 0) for k, v in inputs.items()}
                raise invalid(f"inputs have different numbers of rows: {counts}; send as many")
        if value.dtype.kind == "f" and _has_inf(value):
            where = np.flatnonzero(np.isinf(value))[0]
            raise invalid(
                f"input '{key}' value {where} is infinite; send finite numbers "
                "(NaN marks a missing value)"
            )
    if max_rows is not None and rows is not None and rows > max_rows:
        raise too_many_rows(rows, max_rows)
    return rows


def too_many_rows(rows: int, max_rows: int) -> ServableError:
    return ServableError(
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        f"the request has {rows} rows; this server takes at most {max_rows} per request "
        "(--max_request_rows); split it into smaller requests",
        http_status=413,
    )
