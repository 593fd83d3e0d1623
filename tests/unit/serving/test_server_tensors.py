"""The model server's TensorProto <-> numpy fast paths agree with TensorFlow's own converters."""

from __future__ import annotations

import numpy as np
import pytest

from aimass.serving.server import fill_tensor_proto, tensor_to_ndarray

pytestmark = pytest.mark.unit

tf = pytest.importorskip("tensorflow")
tensor_pb2 = pytest.importorskip("tensorflow.core.framework.tensor_pb2")

ARRAYS = {
    "float32-1": np.array([1.5], np.float32),  # small tensors travel in float_val
    "float32-64": np.arange(64, dtype=np.float32) / 3,  # larger ones in tensor_content
    "float64": np.array([0.1, -2.0]),
    "int64-2d": np.arange(6, dtype=np.int64).reshape(2, 3),
    "int32": np.array([7], np.int32),
    "int8": np.array([-3, 4], np.int8),
    "uint8": np.array([0, 255], np.uint8),
    "float16": np.array([1, 2.5], np.float16),
    "bool": np.array([[True, False]]),
    "scalar": np.array(3.0, np.float32),
    "empty": np.zeros((0,), np.float32),
    "bytes": np.array([b"Flash Cab", b"", b"\xff\x00"], dtype=object),
    "bytes-2d": np.array([b"a", b"bc", b"d", b"e"], dtype=object).reshape(2, 2),
    "unicode": np.array(["x", "yy"]),
}


@pytest.mark.parametrize("array", ARRAYS.values(), ids=ARRAYS.keys())
def test_tensor_to_ndarray_matches_make_ndarray(array: np.ndarray) -> None:
    proto = tf.make_tensor_proto(array)
    fast, reference = tensor_to_ndarray(proto), tf.make_ndarray(proto)
    assert fast.dtype == reference.dtype and fast.shape == reference.shape
    np.testing.assert_array_equal(fast, reference)


@pytest.mark.parametrize("array", ARRAYS.values(), ids=ARRAYS.keys())
def test_fill_tensor_proto_round_trips_through_make_ndarray(array: np.ndarray) -> None:
    proto = tensor_pb2.TensorProto()
    fill_tensor_proto(proto, array)
    back = tf.make_ndarray(proto)
    reference = tf.make_ndarray(tf.make_tensor_proto(array))
    assert back.dtype == reference.dtype and back.shape == reference.shape
    np.testing.assert_array_equal(back, reference)


def test_a_single_value_broadcast_to_the_shape_is_read_as_tensorflow_reads_it() -> None:
    for dtype, field, value in (
        (tf.int64, "int64_val", 4),
        (tf.float32, "float_val", 2.5),
        (tf.string, "string_val", b"z"),
    ):
        proto = tensor_pb2.TensorProto(dtype=dtype.as_datatype_enum)
        proto.tensor_shape.dim.add().size = 3
        getattr(proto, field).append(value)
        np.testing.assert_array_equal(tensor_to_ndarray(proto), tf.make_ndarray(proto))
        assert tensor_to_ndarray(proto).shape == (3,)
