"""TF Serving's REST API: ``/v1/models/...`` routes, JSON <-> numpy, and the metrics route."""

from __future__ import annotations

import base64
import binascii
import json
import logging
import re
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import unquote

import grpc
import numpy as np
import tensorflow as tf
from google.protobuf import json_format
from tensorflow_serving.apis import get_model_metadata_pb2, model_pb2

from aimass.serving.frontend import Call, Frontend, metadata_response, status_response
from aimass.serving.metrics import CONTENT_TYPE, METRICS_PATH
from aimass.serving.servables import DEFAULT_SIGNATURE, ServableError, short

logger = logging.getLogger(__name__)


_PREDICT_PATH = re.compile(
    r"/v1/models/([^/:]+)(?:(?:/versions/(\d+))|(?:/labels/([^/:]+)))?:(classify|regress|predict)",
    re.IGNORECASE,
)
_STATUS_PATH = re.compile(
    r"/v1/models(?:/([^/:]+))?(?:(?:/versions/(\d+))|(?:/labels/([^/:]+)))?(?:/(metadata))?",
    re.IGNORECASE,
)
_HTTP_STATUS = {
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.FAILED_PRECONDITION: 400,
    grpc.StatusCode.OUT_OF_RANGE: 400,
    grpc.StatusCode.UNAUTHENTICATED: 401,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.ABORTED: 409,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.UNIMPLEMENTED: 501,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
}


def _model_spec(name: str, version: str | None, label: str | None) -> model_pb2.ModelSpec:
    spec = model_pb2.ModelSpec(name=unquote(name))
    if version:
        spec.version.value = int(version)
    elif label:
        spec.version_label = unquote(label)
    return spec


def _to_array(values: Any, dtype: tf.DType, key: str) -> np.ndarray:
    try:
        if dtype == tf.string:
            return np.array(_decode_json_strings(values), dtype=object)
        return np.asarray(values, dtype=dtype.as_numpy_dtype)
    except (ValueError, TypeError, binascii.Error) as exc:
        raise ServableError(
            grpc.StatusCode.INVALID_ARGUMENT,
            f"input {key!r} cannot be read as {dtype.name}: {exc}",
        ) from exc


def _decode_json_strings(value: Any) -> Any:
    if isinstance(value, list):
        return [_decode_json_strings(item) for item in value]
    if isinstance(value, dict) and set(value) == {"b64"}:
        return base64.b64decode(value["b64"], validate=True)
    if isinstance(value, str):
        return value.encode("utf-8")
    raise TypeError(f"expected a string or {{'b64': ...}}, got {value!r}")


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


def rest_predict(
    frontend: Frontend, spec: model_pb2.ModelSpec, body: bytes, call: Call | None = None
) -> dict[str, Any]:
    """Answer a REST :predict body in TF Serving's row (instances) or columnar (inputs) format."""
    call = call or Call("rest", "predict", spec)
    try:
        request = json.loads(body or b"{}")
    except ValueError as exc:
        raise ServableError(grpc.StatusCode.INVALID_ARGUMENT, f"JSON Parse error: {exc}") from exc
    if not isinstance(request, dict):
        raise ServableError(grpc.StatusCode.INVALID_ARGUMENT, "JSON Value is not an object")
    if ("instances" in request) == ("inputs" in request):
        raise ServableError(
            grpc.StatusCode.INVALID_ARGUMENT,
            "Missing 'inputs' or 'instances' key"
            if "instances" not in request
            else "Not formatted correctly, either 'instances' or 'inputs' should be specified, not both",
        )
    signature = request.get("signature_name") or DEFAULT_SIGNATURE
    version, loaded = frontend.manager.resolve(spec)
    call.version = str(version)
    dtypes = loaded.input_dtypes(signature)
    row_format = "instances" in request
    columns = _instances_to_columns(request["instances"], dtypes) if row_format else None
    if columns is None:
        raw = request["inputs"]
        named = isinstance(raw, dict) and set(raw) != {"b64"}
        if not named and len(dtypes) != 1:
            raise ServableError(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"'inputs' must name the signature's inputs {sorted(dtypes)} in an object",
            )
        columns = raw if named else {next(iter(dtypes)): raw}
    arrays = {
        key: _to_array(values, dtypes.get(key, tf.string), key) for key, values in columns.items()
    }
    _, outputs = frontend.predict(spec, signature, arrays, (), call, (version, loaded))
    if not row_format:
        if len(outputs) == 1:
            return {"outputs": _to_json(next(iter(outputs.values())))}
        return {"outputs": {key: _to_json(value) for key, value in outputs.items()}}
    batch = {value.shape[0] if value.ndim else -1 for value in outputs.values()}
    if len(batch) != 1 or -1 in batch:
        raise ServableError(
            grpc.StatusCode.INVALID_ARGUMENT,
            "Tensor outputs do not share a batch dimension; use the columnar 'inputs' format",
        )
    if len(outputs) == 1:
        return {"predictions": _to_json(next(iter(outputs.values())))}
    rows = batch.pop()
    return {
        "predictions": [
            {key: _to_json(value[i]) for key, value in outputs.items()} for i in range(rows)
        ]
    }


def _instances_to_columns(instances: Any, dtypes: Mapping[str, tf.DType]) -> dict[str, list]:
    if not isinstance(instances, list) or not instances:
        raise ServableError(
            grpc.StatusCode.INVALID_ARGUMENT, "'instances' must be a non-empty JSON list"
        )
    named = [isinstance(item, dict) and set(item) != {"b64"} for item in instances]
    if all(named):
        columns: dict[str, list] = {}
        for index, item in enumerate(instances):
            if set(item) != set(dtypes):
                raise ServableError(
                    grpc.StatusCode.INVALID_ARGUMENT,
                    f"instance {index} has keys {sorted(item)}; the signature expects "
                    f"{sorted(dtypes)}",
                )
            for key, value in item.items():
                columns.setdefault(key, []).append(value)
        return columns
    if not any(named) and len(dtypes) == 1:
        return {next(iter(dtypes)): instances}
    raise ServableError(
        grpc.StatusCode.INVALID_ARGUMENT,
        f"'instances' must be objects naming the inputs {sorted(dtypes)} "
        "(a list of plain values works only for a single-input signature)",
    )


class RestHandler(BaseHTTPRequestHandler):
    frontend: Frontend  # set on the subclass made by ModelServer
    protocol_version = "HTTP/1.1"
    server_version = "aimass-model-server"
    # Headers and body leave in one segment, without waiting for the client's delayed ACK
    # (otherwise every answer on a kept-alive connection stalls ~40 ms).
    disable_nagle_algorithm = True
    wbufsize = 64 * 1024

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        self._dispatch("GET")

    def do_POST(self) -> None:  # noqa: N802
        self._dispatch("POST")

    def _dispatch(self, method: str) -> None:
        path = self.path.split("?", 1)[0]
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        if method == "GET" and path == METRICS_PATH:
            self._send(200, self.frontend.metrics.render().encode("utf-8"), CONTENT_TYPE)
            return
        call: list[Call] = []  # the routed request, once known
        try:
            payload = self._route(method, path, body, call)
            code, status = 200, grpc.StatusCode.OK
        except ServableError as exc:
            payload, code = {"error": exc.message}, _HTTP_STATUS.get(exc.code, 500)
            status = exc.code
        except Exception as exc:
            logger.exception("REST %s %s failed", method, path)
            payload, code, status = {"error": short(exc)}, 500, grpc.StatusCode.INTERNAL
        if call:
            self.frontend.finish(call[0], status)
        self._send(code, json.dumps(payload).encode("utf-8"), "application/json")

    def _send(self, code: int, data: bytes, content_type: str) -> None:
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _route(self, method: str, path: str, body: bytes, call: list[Call]) -> dict[str, Any]:
        if not path.lower().startswith("/v1/"):
            raise ServableError(grpc.StatusCode.NOT_FOUND, f"no route for {method} {path}")
        manager = self.frontend.manager
        if method == "POST" and (match := _PREDICT_PATH.fullmatch(path)):
            name, version, label, verb = match.groups()
            spec = _model_spec(name, version, label)
            call.append(Call("rest", verb.lower(), spec))
            if verb.lower() != "predict":
                raise ServableError(
                    grpc.StatusCode.UNIMPLEMENTED, f":{verb} is not served by the local server"
                )
            return rest_predict(self.frontend, spec, body, call[0])
        if method == "GET" and (match := _STATUS_PATH.fullmatch(path)):
            name, version, label, metadata = match.groups()
            spec = _model_spec(name or "", version, label)
            call.append(Call("rest", "metadata" if metadata else "status", spec))
            if not name:
                raise ServableError(
                    grpc.StatusCode.INVALID_ARGUMENT, "Missing model name in request."
                )
            options = {
                "preserving_proto_field_name": True,
                "always_print_fields_with_no_presence": True,
            }
            if metadata:
                response = metadata_response(manager, spec, call[0])
                signature_map = get_model_metadata_pb2.SignatureDefMap()
                response.metadata["signature_def"].Unpack(signature_map)
                return {
                    "model_spec": json_format.MessageToDict(response.model_spec, **options),
                    "metadata": {
                        "signature_def": json_format.MessageToDict(signature_map, **options)
                    },
                }
            status = status_response(manager, spec, call[0])
            return json_format.MessageToDict(status, **options)
        raise ServableError(grpc.StatusCode.INVALID_ARGUMENT, f"Malformed request: {method} {path}")

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (base signature)
        logger.debug("REST %s", format % args)
