"""Tensors on the wire (aimass.serving.tensors): the TensorProto <-> numpy fast paths agree with
TensorFlow's own converters, and `check_inputs` refuses what a model cannot run."""

from __future__ import annotations

from typing import Any

import grpc
import numpy as np
import pytest

from aimass.serving.servables import InputSpec, ServableError, Signature
from aimass.serving.tensors import check_inputs, fill_tensor_proto, tensor_to_ndarray

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


# --------------------------------------------------------------------------- check_inputs


def taxi_signature() -> Signature:
    specs = {
        "fare": InputSpec("fare", tf.float32, np.dtype(np.float32), (-1,)),
        "company": InputSpec("company", tf.string, np.dtype(object), (-1,)),
        "trip_start_hour": InputSpec("trip_start_hour", tf.int64, np.dtype(np.int64), (-1,)),
    }
    return Signature(
        "serving_default",
        lambda **_: {},
        specs,
        frozenset(specs),
        frozenset({"probabilities"}),
        batched=True,
    )


def good(rows: int = 2) -> dict[str, np.ndarray]:
    return {
        "fare": np.full(rows, 10.0, np.float32),
        "company": np.array([b"Flash Cab"] * rows, dtype=object),
        "trip_start_hour": np.arange(rows, dtype=np.int64),
    }


def test_valid_inputs_pass_and_nan_is_a_missing_float() -> None:
    inputs = good(3)
    inputs["fare"][1] = np.nan
    assert check_inputs(taxi_signature(), inputs, ["probabilities"], max_rows=3) == 3


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            lambda x: {**{k: v for k, v in x.items() if k != "fare"}, "foo": x["fare"]},
            r"missing features \['fare'\]; unexpected \['foo'\]",
        ),
        (
            lambda x: {k: v for k, v in x.items() if k != "company"},
            r"^missing features \['company'\] \(the model takes",
        ),
        (lambda x: {**x, "fare": x["fare"].astype(np.float64)}, "'fare' is float64; .* float32"),
        (
            lambda x: {**x, "company": np.array([1, 2])},
            "'company' is int64; the model takes string",
        ),
        (
            lambda x: {**x, "fare": x["fare"].reshape(2, 1)},
            r"'fare' has shape \[2, 1\]; the model takes \[-1\]",
        ),
        (lambda x: {**x, "fare": x["fare"][:1]}, "different numbers of rows"),
        (
            lambda x: {**x, "fare": np.array([1.0, np.inf], np.float32)},
            "'fare' value 1 is infinite",
        ),
    ],
)
def test_mistakes_are_invalid_argument_naming_the_input(change: Any, message: str) -> None:
    with pytest.raises(ServableError, match=message) as info:
        check_inputs(taxi_signature(), change(good()))
    assert info.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert "serving_default_" not in info.value.message


def test_too_many_rows_is_resource_exhausted_and_413() -> None:
    with pytest.raises(ServableError, match="at most 5 per request") as info:
        check_inputs(taxi_signature(), good(6), max_rows=5)
    assert info.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert info.value.http_status == 413


def test_an_unknown_output_is_refused() -> None:
    with pytest.raises(ServableError, match=r"output_filter names \['nope'\]"):
        check_inputs(taxi_signature(), good(), ["nope"])


def test_a_small_message_cannot_ask_for_a_huge_tensor() -> None:
    proto = tensor_pb2.TensorProto(dtype=tf.float32.as_datatype_enum)
    proto.tensor_shape.dim.add().size = 1_000_000_000
    proto.float_val.append(1.0)  # broadcast to the shape by TensorFlow's converter
    with pytest.raises(ServableError, match="1000000000 values"):
        tensor_to_ndarray(proto, max_values=4 * 1024 * 1024)
    proto.tensor_shape.dim[0].size = -3
    with pytest.raises(ServableError, match="cannot be negative"):
        tensor_to_ndarray(proto, max_values=100)
