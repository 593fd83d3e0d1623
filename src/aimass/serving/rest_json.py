"""JSON <-> numpy for TF Serving's REST API, strict about what a caller sends.

`parse_body` bounds the nesting before parsing (a deep document never reaches the parser's
recursion) and refuses JSON's non-standard constants (``NaN``, ``Infinity``). `request_inputs`
turns the ``instances`` (row) or ``inputs`` (columnar) format into arrays of the signature's
dtypes, refusing with a message that names the instance, the input and the fix: a string or a
boolean for a number, a fraction or an out-of-range number for an integer, a null where the
model cannot impute it, the exact missing and unexpected features of an instance.
`response_body` writes the answer in the request's format.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from aimass.serving.servables import InputSpec, ServableError, Signature, invalid
from aimass.serving.tensors import too_many_rows

_CHUNK = 1 << 20  # bytes scanned at once by the depth check
_OPEN = (ord("["), ord("{"))
_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)  # a JSON string, escapes included
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")
_NONE = type(None)
_NUMBERS = frozenset({int, float})
_FLOATS_OR_NULL = frozenset({int, float, _NONE})


def _refuse_constant(name: str) -> Any:
    raise invalid(
        f"JSON {name} is not a number JSON allows; send finite numbers, and null for a "
        "missing float"
    )


def check_depth(body: bytes, max_depth: int) -> None:
    """Refuse a JSON document nested deeper than `max_depth`, without parsing it.

    Strings are cut out (brackets inside them do not count), the brackets left are counted as
    levels in numpy, by chunks: a large body costs milliseconds and a few MiB. A body with
    fewer brackets than the limit is not scanned at all.
    """
    if body.count(b"[") + body.count(b"{") <= max_depth:
        return
    if b"\\" in body:  # escaped quotes: cut the strings out with a regular expression
        outside = _STRING.sub(b"", body)
    else:  # between quotes, alternately outside and inside a string
        outside = b"".join(body.split(b'"')[::2])
    brackets = outside.translate(None, _NOT_BRACKETS)
    depth = 0
    for start in range(0, len(brackets), _CHUNK):
        chunk = np.frombuffer(
            brackets, dtype=np.uint8, count=min(_CHUNK, len(brackets) - start), offset=start
        )
        steps = np.where((chunk == _OPEN[0]) | (chunk == _OPEN[1]), 1, -1).astype(np.int32)
        levels = np.cumsum(steps, dtype=np.int32) + depth
        if int(levels.max()) > max_depth:
            raise invalid(
                f"the JSON body nests deeper than {max_depth} levels "
                "(--rest_max_json_depth); flatten it"
            )
        depth = int(levels[-1])


def parse_body(body: bytes, max_depth: int) -> dict[str, Any]:
    """The request object of a :predict body (an empty body is an empty object)."""
    if not body:
        return {}
    check_depth(body, max_depth)
    try:
        request = json.loads(body, parse_constant=_refuse_constant)
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError
        raise invalid(f"JSON Parse error: {exc}") from exc
    if not isinstance(request, dict):
        raise invalid('JSON Value is not an object; send {"instances": [...]} or {"inputs": ...}')
    return request


# --------------------------------------------------------------------------- requests


def request_inputs(
    request: Mapping[str, Any], signature: Signature, max_rows: int
) -> tuple[bool, dict[str, np.ndarray]]:
    """(row format?, arrays named as the signature's inputs) of a :predict request object."""
    if ("instances" in request) == ("inputs" in request):
        raise invalid(
            "Missing 'inputs' or 'instances' key"
            if "instances" not in request
            else "Not formatted correctly, either 'instances' or 'inputs' should be specified, "
            "not both"
        )
    specs = signature.inputs
    if "instances" in request:
        instances = request["instances"]
        if not isinstance(instances, list) or not instances:
            raise invalid("'instances' must be a non-empty JSON list")
        if len(instances) > max_rows:
            raise too_many_rows(len(instances), max_rows)
        columns = _instances_to_columns(instances, signature)
        return True, {key: to_array(values, specs[key], True) for key, values in columns.items()}
    raw = request["inputs"]
    named = isinstance(raw, dict) and raw.keys() != {"b64"}
    if not named:
        if len(specs) != 1:
            raise invalid(f"'inputs' must name the signature's inputs {sorted(specs)} in an object")
        raw = {next(iter(specs)): raw}
    if raw.keys() != signature.input_names:
        missing = sorted(signature.input_names - raw.keys())
        unexpected = sorted(raw.keys() - signature.input_names)
        parts = [f"missing features {missing}"] if missing else []
        parts += [f"unexpected {unexpected}"] if unexpected else []
        raise invalid(f"'inputs': {'; '.join(parts)}")
    return False, {key: to_array(values, specs[key], False) for key, values in raw.items()}


def _instances_to_columns(instances: list[Any], signature: Signature) -> dict[str, list[Any]]:
    names = signature.input_names
    if len(names) == 1 and not any(
        isinstance(item, dict) and item.keys() != {"b64"} for item in instances
    ):
        return {next(iter(names)): instances}  # a single-input signature's plain values
    for index, item in enumerate(instances):
        if type(item) is not dict or item.keys() != names:
            if not isinstance(item, dict):
                raise invalid(
                    f"instance {index} is not an object; send one object per row naming "
                    f"the features {sorted(names)}"
                )
            missing, unexpected = sorted(names - item.keys()), sorted(item.keys() - names)
            parts = [f"missing features {missing}"] if missing else []
            parts += [f"unexpected {unexpected}"] if unexpected else []
            raise invalid(f"instance {index}: {'; '.join(parts)}")
    return {key: [item[key] for item in instances] for key in names}


def to_array(values: Any, spec: InputSpec, rows: bool) -> np.ndarray:
    """`values` (a JSON value, lists nested as the input's shape) as an array of `spec`'s dtype.

    `rows`: the first dimension is the instances, so errors name the instance.
    """
    if type(values) is list:
        types = set(map(type, values))
        if list in types:
            values, shape = _flatten(values, spec.name)
            types = set(map(type, values))
        else:
            shape = (len(values),)
    else:
        values, shape, types = [values], (), {type(values)}
    inner = math.prod(shape[1:]) if len(shape) > 1 else 1

    def where(position: int) -> str:
        if rows:
            return f"instance {position // max(inner, 1)}: '{spec.name}'"
        return f"input '{spec.name}' value {position}"

    kind = spec.numpy_dtype.kind
    if kind == "f":
        array = _floats(values, types, spec, where)
    elif kind in "iu":
        array = _integers(values, types, spec, where)
    elif kind == "b":
        if not types <= {bool}:
            raise _wrong(values, lambda v: type(v) is not bool, where, "true or false")
        array = np.array(values, dtype=np.bool_)
    elif kind == "O":
        if types <= {str}:
            encoded = [value.encode("utf-8") for value in values]
        else:
            encoded = [_string(value, i, where) for i, value in enumerate(values)]
        array = np.array(encoded, dtype=object)
    else:
        raise invalid(f"input '{spec.name}' has dtype {spec.dtype.name}, which REST cannot send")
    return array.reshape(shape)


def _flatten(values: list[Any], name: str) -> tuple[list[Any], tuple[int, ...]]:
    """Nested lists as one flat list and their shape; ragged nesting is refused."""
    nested = {type(value) is list for value in values}
    if nested != {True}:
        if True in nested:
            raise invalid(f"input '{name}' is ragged: it mixes lists and single values")
        return values, (len(values),)
    parts = [_flatten(value, name) for value in values]
    inner = parts[0][1]
    if any(shape != inner for _, shape in parts):
        raise invalid(f"input '{name}' is ragged: its nested lists differ in length")
    return [item for flat, _ in parts for item in flat], (len(values), *inner)


def _describe(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f"the string {json.dumps(value[:40])}" + ("..." if len(value) > 40 else "")
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "a list"
    return repr(value)


def _wrong(
    flat: list[Any], bad: Callable[[Any], bool], where: Callable[[int], str], expected: str
) -> ServableError:
    position = next(i for i, value in enumerate(flat) if bad(value))
    return invalid(f"{where(position)} is {_describe(flat[position])}; send {expected}")


def _too_big(value: Any) -> bool:
    try:
        float(value)
    except OverflowError:
        return True
    return False


def _floats(
    flat: list[Any], types: set[type], spec: InputSpec, where: Callable[[int], str]
) -> np.ndarray:
    if not types <= _NUMBERS:
        if not types <= _FLOATS_OR_NULL:
            raise _wrong(flat, lambda v: type(v) not in _FLOATS_OR_NULL, where, "a number")
        flat = [math.nan if value is None else value for value in flat]  # null: missing
    try:
        with np.errstate(over="ignore"):  # a float beyond float32 becomes inf: refused below
            array = np.array(flat, dtype=spec.numpy_dtype)
    except OverflowError:  # an integer beyond any float
        raise _wrong(flat, _too_big, where, "a finite number") from None
    if array.size and np.isinf(array).any():
        position = int(np.flatnonzero(np.isinf(array))[0])
        raise invalid(
            f"{where(position)} is {flat[position]!r}, out of range for {spec.dtype.name}; "
            "send finite numbers"
        )
    return array


def _integers(
    flat: list[Any], types: set[type], spec: InputSpec, where: Callable[[int], str]
) -> np.ndarray:
    bounds = np.iinfo(spec.numpy_dtype)
    if not types <= _NUMBERS:
        hint = " (AI Mass models read -1 as a missing integer)" if _NONE in types else ""
        raise _wrong(flat, lambda v: type(v) not in _NUMBERS, where, f"a whole number{hint}")
    if float in types:
        try:
            values = np.array(flat, dtype=np.float64)
        except OverflowError:
            raise _out_of_range(flat, bounds, spec, where) from None
        fractional = values != np.floor(values)
        if fractional.any():
            position = int(np.flatnonzero(fractional)[0])
            raise invalid(
                f"{where(position)} is {flat[position]!r}; the model takes whole numbers "
                f"({spec.dtype.name}): send an integer"
            )
        if not np.isfinite(values).all():
            raise _out_of_range(flat, bounds, spec, where)
        exact = [int(value) for value in flat]  # exact, also beyond 2**53
    else:
        exact = flat
    try:
        return np.array(exact, dtype=spec.numpy_dtype)
    except OverflowError:
        raise _out_of_range(flat, bounds, spec, where) from None


def _out_of_range(
    flat: list[Any], bounds: np.iinfo, spec: InputSpec, where: Callable[[int], str]
) -> ServableError:
    position = next(
        (i for i, v in enumerate(flat) if _too_big(v) or not bounds.min <= v <= bounds.max), 0
    )
    return invalid(
        f"{where(position)} is {flat[position]!r}, out of range for {spec.dtype.name} "
        f"({bounds.min} to {bounds.max})"
    )


def _string(value: Any, position: int, where: Callable[[int], str]) -> bytes:
    if type(value) is str:
        return value.encode("utf-8")
    if type(value) is dict and value.keys() == {"b64"} and isinstance(value["b64"], str):
        try:
            return base64.b64decode(value["b64"], validate=True)
        except binascii.Error as exc:
            raise invalid(f"{where(position)} is not valid base64: {exc}") from exc
    hint = ' ("" is a missing string for AI Mass models)' if value is None else ""
    raise invalid(
        f'{where(position)} is {_describe(value)}; send a string, or {{"b64": ...}} for bytes{hint}'
    )


# --------------------------------------------------------------------------- answers


def _to_json(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return _to_json(value.tolist()) if value.dtype == object else value.tolist()
    if isinstance(value, list):
        return [_to_json(item) for item in value]
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            return {"b64": base64.b64encode(value).decode("ascii")}
    if isinstance(value, np.generic):
        return value.item()
    return value


def response_body(outputs: Mapping[str, np.ndarray], row_format: bool) -> bytes:
    """The JSON answer: ``predictions`` (row format) or ``outputs`` (columnar)."""
    if not row_format:
        if len(outputs) == 1:
            payload: dict[str, Any] = {"outputs": _to_json(next(iter(outputs.values())))}
        else:
            payload = {"outputs": {key: _to_json(value) for key, value in outputs.items()}}
        return json.dumps(payload).encode("utf-8")
    batch = {value.shape[0] if value.ndim else -1 for value in outputs.values()}
    if len(batch) != 1 or -1 in batch:
        raise invalid(
            "Tensor outputs do not share a batch dimension; use the columnar 'inputs' format"
        )
    if len(outputs) == 1:
        payload = {"predictions": _to_json(next(iter(outputs.values())))}
    else:
        rows = batch.pop()
        payload = {
            "predictions": [
                {key: _to_json(value[i]) for key, value in outputs.items()} for i in range(rows)
            ]
        }
    return json.dumps(payload).encode("utf-8")
