"""REST JSON <-> numpy (aimass.serving.rest_json): strict parsing, with messages that say what to fix."""

from __future__ import annotations

import json
import time
from typing import Any

import grpc
import numpy as np
import pytest

from aimass.serving.rest_json import check_depth, parse_body, request_inputs, response_body
from aimass.serving.servables import InputSpec, ServableError, Signature

pytestmark = pytest.mark.unit

tf = pytest.importorskip("tensorflow")

ROW = {"fare": 10.0, "company": "Flash Cab", "trip_start_hour": 5}


def signature(**extra: InputSpec) -> Signature:
    specs = {
        "fare": InputSpec("fare", tf.float32, np.dtype(np.float32), (-1,)),
        "company": InputSpec("company", tf.string, np.dtype(object), (-1,)),
        "trip_start_hour": InputSpec("trip_start_hour", tf.int64, np.dtype(np.int64), (-1,)),
        **extra,
    }
    return Signature("serving_default", lambda **_: {}, specs, frozenset(specs), frozenset(), True)


def inputs(body: str, sig: Signature | None = None) -> dict[str, np.ndarray]:
    return request_inputs(parse_body(body.encode(), 32), sig or signature(), 10_000)[1]


def refused(body: str, sig: Signature | None = None) -> str:
    with pytest.raises(ServableError) as info:
        inputs(body, sig)
    assert info.value.code == grpc.StatusCode.INVALID_ARGUMENT
    return info.value.message


def test_rows_and_columns_become_typed_arrays() -> None:
    rows = inputs(json.dumps({"instances": [ROW, {**ROW, "fare": 3, "trip_start_hour": 7.0}]}))
    assert rows["fare"].dtype == np.float32 and rows["fare"].tolist() == [10.0, 3.0]
    assert rows["trip_start_hour"].dtype == np.int64
    assert rows["trip_start_hour"].tolist() == [5, 7]  # a whole float is a whole number
    assert rows["company"].tolist() == [b"Flash Cab", b"Flash Cab"]
    columns = inputs(
        json.dumps(
            {"inputs": {"fare": [1.5], "company": [{"b64": "/wA="}], "trip_start_hour": [2**62]}}
        )
    )
    assert columns["company"].tolist() == [b"\xff\x00"]
    assert columns["trip_start_hour"].tolist() == [2**62]  # exact beyond float precision


def test_null_is_a_missing_float_only() -> None:
    rows = inputs(json.dumps({"instances": [{**ROW, "fare": None}]}))
    assert np.isnan(rows["fare"][0])
    assert "AI Mass models read -1 as a missing integer" in refused(
        json.dumps({"instances": [{**ROW, "trip_start_hour": None}]})
    )
    assert '"" is a missing string' in refused(
        json.dumps({"instances": [{**ROW, "company": None}]})
    )


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ('"fare": Infinity', "JSON Infinity is not a number JSON allows"),
        ('"fare": -Infinity', "JSON -Infinity is not a number JSON allows"),
        ('"fare": NaN', "JSON NaN is not a number JSON allows"),
        ('"fare": "9.5"', "instance 1: 'fare' is the string \"9.5\"; send a number"),
        ('"fare": true', "instance 1: 'fare' is true; send a number"),
        ('"fare": {"x": 1}', "instance 1: 'fare' is an object; send a number"),
        ('"fare": 1e400', "instance 1: 'fare' is inf, out of range for float32"),
        ('"fare": 1e39', "instance 1: 'fare' is 1e+39, out of range for float32"),
        ('"trip_start_hour": 10.7', "'trip_start_hour' is 10.7; the model takes whole numbers"),
        ('"trip_start_hour": 1e30', "'trip_start_hour' is 1e+30, out of range for int64"),
        ('"trip_start_hour": 99999999999999999999', "out of range for int64"),
        ('"trip_start_hour": false', "'trip_start_hour' is false; send a whole number"),
        ('"company": 7', "instance 1: 'company' is 7; send a string"),
        ('"company": {"b64": "%%%"}', "'company' is not valid base64"),
    ],
)
def test_a_wrong_value_names_the_instance_the_input_and_the_fix(value: str, message: str) -> None:
    key = value.split('"')[1]
    rest = json.dumps({k: v for k, v in ROW.items() if k != key})[1:]
    body = f'{{"instances": [{json.dumps(ROW)}, {{{value}, {rest}]}}'
    assert message in refused(body)


def test_missing_and_unexpected_features_are_named_exactly() -> None:
    row = {k: v for k, v in ROW.items() if k != "fare"} | {"foo": 1}
    body = json.dumps({"instances": [ROW, ROW, row]})
    assert refused(body) == "instance 2: missing features ['fare']; unexpected ['foo']"
    body = json.dumps({"inputs": {"fare": [1.0], "company": ["x"]}})
    assert refused(body) == "'inputs': missing features ['trip_start_hour']"
    assert refused(json.dumps({"instances": [ROW, 3]})).startswith("instance 1 is not an object")


def test_request_shapes_are_checked() -> None:
    assert "ragged" in refused(
        json.dumps(
            {"inputs": {"fare": [[1.0], [2.0, 3.0]], "company": ["x"], "trip_start_hour": [1]}}
        )
    )
    assert "Missing 'inputs' or 'instances' key" in refused(json.dumps({"rows": [ROW]}))
    assert "not both" in refused(json.dumps({"instances": [ROW], "inputs": {}}))
    assert "non-empty JSON list" in refused(json.dumps({"instances": []}))
    nested = inputs(
        json.dumps({"inputs": {"fare": [[1.0, 2.0]], "company": ["x"], "trip_start_hour": [1]}})
    )
    assert nested["fare"].shape == (1, 2)  # check_inputs compares it with the signature


def test_too_many_instances_is_413_before_any_conversion() -> None:
    body = parse_body(json.dumps({"instances": [ROW] * 11}).encode(), 32)
    with pytest.raises(ServableError, match="11 rows; this server takes at most 10") as info:
        request_inputs(body, signature(), 10)
    assert info.value.http_status == 413


def test_bodies_that_are_not_a_json_object() -> None:
    for body in (b"[1, 2]", b'"x"', b"{", b"\xff\xfe{}"):
        with pytest.raises(ServableError, match="JSON"):
            parse_body(body, 32)
    assert parse_body(b"", 32) == {}


def test_a_10000_deep_document_is_refused_before_parsing() -> None:
    started = time.perf_counter()
    for body in ("[" * 10_000 + "]" * 10_000, '{"a":' * 10_000 + "1" + "}" * 10_000):
        with pytest.raises(ServableError, match="nests deeper than 32 levels"):
            parse_body(body.encode(), 32)
    assert time.perf_counter() - started < 1.0


def test_brackets_inside_strings_do_not_count() -> None:
    deep_text = json.dumps({"instances": [{**ROW, "company": "[[[[" * 50 + '\\"{{{' * 20}]})
    check_depth(deep_text.encode(), 5)
    assert parse_body(deep_text.encode(), 5)["instances"][0]["company"].startswith("[[[[")
    with pytest.raises(ServableError):
        check_depth(b'{"a": "\\\\", "b": ' + b"[" * 6 + b"]" * 6 + b"}", 5)
    check_depth(b"[" * 5 + b"]" * 5, 5)


def test_the_depth_check_scans_large_bodies_in_chunks() -> None:
    body = json.dumps({"instances": [ROW] * 20_000}).encode()  # about 1.2 MB, depth 3
    started = time.perf_counter()
    check_depth(body, 3)
    assert time.perf_counter() - started < 1.0
    with pytest.raises(ServableError):
        check_depth(body[:-2] + b"[[]]]}", 3)


def test_answers_in_the_request_format() -> None:
    outputs = {"probabilities": np.array([0.25, 0.5], np.float32)}
    assert json.loads(response_body(outputs, True)) == {"predictions": [0.25, 0.5]}
    assert json.loads(response_body(outputs, False)) == {"outputs": [0.25, 0.5]}
    two: dict[str, Any] = {**outputs, "label": np.array([b"a", b"\xff"], dtype=object)}
    assert json.loads(response_body(two, True)) == {
        "predictions": [
            {"probabilities": 0.25, "label": "a"},
            {"probabilities": 0.5, "label": {"b64": "/w=="}},
        ]
    }
