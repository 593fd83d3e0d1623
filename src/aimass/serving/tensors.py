"""Tensor codecs: TensorProto <-> numpy, faster than TensorFlow's converters for common encodings."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import tensorflow as tf

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


def tensor_to_ndarray(proto: Any) -> np.ndarray:
    """`tf.make_ndarray`, without its per-call overhead for the common encodings.

    Numeric tensors in ``tensor_content``, and tensors with one value per element in their
    repeated field (strings, floats, ints, bools), are read directly (the array may be
    read-only); anything else (e.g. one value broadcast to the shape) goes to `tf.make_ndarray`.
    """
    shape = tuple(dim.size for dim in proto.tensor_shape.dim)
    if proto.tensor_content:
        dtype = _NUMPY_DTYPES.get(proto.dtype)
        if dtype is not None:
            return np.frombuffer(proto.tensor_content, dtype=dtype).reshape(shape)
    elif proto.dtype == _DT_STRING:
        if len(proto.string_val) == math.prod(shape):
            return np.array(list(proto.string_val), dtype=object).reshape(shape)
    elif proto.dtype in _VALUE_FIELDS:
        name, dtype = _VALUE_FIELDS[proto.dtype]
        values = getattr(proto, name)
        if len(values) == math.prod(shape):
            return np.fromiter(values, dtype=dtype, count=len(values)).reshape(shape)
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
