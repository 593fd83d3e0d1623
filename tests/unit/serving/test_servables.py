"""Loaded SavedModels (aimass.serving.servables): signatures described once, the fast call path,
and TensorFlow errors without graph internals."""

from __future__ import annotations

from pathlib import Path

import grpc
import numpy as np
import pytest
from testkit import save_tiny_model

from aimass.serving.servables import ServableError, load_saved_model, model_error

pytestmark = pytest.mark.unit

tf = pytest.importorskip("tensorflow")


@pytest.fixture(scope="module")
def loaded(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    return load_saved_model(save_tiny_model(tmp_path_factory.mktemp("tiny") / "1", 0.5))


def test_the_signature_is_described_once(loaded) -> None:  # type: ignore[no-untyped-def]
    signature = loaded.signature("")
    assert signature is loaded.signature("serving_default")
    assert signature.input_names == {"fare", "company", "trip_start_hour"}
    assert signature.inputs["trip_start_hour"].numpy_dtype == np.int64
    assert signature.inputs["company"].shape == (-1,) and signature.batched
    assert signature.outputs == {"probabilities"}
    with pytest.raises(ServableError, match='"nope" not found') as info:
        loaded.signature("nope")
    assert info.value.code == grpc.StatusCode.INVALID_ARGUMENT


def test_the_call_without_argument_binding_answers_as_the_public_call(loaded) -> None:  # type: ignore[no-untyped-def]
    signature = loaded.signature("")
    assert signature.call is not None  # the probe at load agreed with the public call
    rng = np.random.default_rng(3)
    for rows in (1, 7, 64):
        inputs = {
            "fare": rng.uniform(0, 50, rows).astype(np.float32),
            "company": np.array(rng.choice([b"Flash Cab", b"x", b""], rows), dtype=object),
            "trip_start_hour": rng.integers(0, 24, rows).astype(np.int64),
        }
        public = signature.fn(
            **{k: tf.constant(v, dtype=signature.inputs[k].dtype) for k, v in inputs.items()}
        )["probabilities"].numpy()
        np.testing.assert_array_equal(loaded.run(signature, inputs)["probabilities"], public)


def test_model_errors_lose_node_names_op_names_and_traces() -> None:
    exc = tf.errors.InvalidArgumentError(
        None,
        None,
        "Graph execution error:\n\nDetected at node StatefulPartitionedCall defined at (most "
        'recent call last):\n  File "x.py", line 1\n\nIncompatible shapes: [3] vs. [2]\n\t '
        "[[{{node functional_1/add}}]] [Op:__inference_signature_wrapper_1234]",
    )
    assert model_error(exc) == "Incompatible shapes: [3] vs. [2]"
    assert "serving_default_fare" not in model_error(
        ValueError("input 'serving_default_fare:0' has the wrong shape")
    )


def test_a_model_failure_on_valid_inputs_is_invalid_argument_without_internals(
    loaded, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    signature = loaded.signature("")
    ragged = {  # rows that disagree: the model itself refuses them
        "fare": np.zeros(3, np.float32),
        "company": np.array([b"a", b"b"], dtype=object),
        "trip_start_hour": np.zeros(3, np.int64),
    }
    with pytest.raises(ServableError) as info:
        loaded.run(signature, ragged)
    assert info.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert info.value.message.startswith("the model cannot run on these inputs")
    for internal in ("{{node", "[Op:", "StatefulPartitionedCall", "Traceback"):
        assert internal not in info.value.message
