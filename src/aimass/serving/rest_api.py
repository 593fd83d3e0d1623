"""TF Serving's REST API as a Starlette app: its routes and error shape, with request limits.

Routes (TF Serving's): ``GET /v1/models/<m>[/versions/<v>|/labels/<l>][/metadata]``,
``POST /v1/models/<m>[/versions/<v>|/labels/<l>]:predict`` and
``GET /monitoring/prometheus/metrics``. Every error is ``{"error": "..."}`` with an HTTP status
mapped from the gRPC code, wrong methods included (405).

A :predict body is read by `RestApi` itself, against a deadline and a size limit (408, 413) and
a budget of body bytes in flight; once read, at most ``rest_max_concurrent_requests`` requests
are answered at once (503 with ``Retry-After`` beyond). Parsing, validation and the model run
happen on a thread pool, so the event loop keeps accepting, timing out and refusing
connections while models run. Connection-level limits (header size and time, connections)
live in `aimass.serving.http_server`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import Mapping
from concurrent import futures
from typing import Any

import grpc
from google.protobuf import json_format
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from tensorflow_serving.apis import get_model_metadata_pb2, model_pb2

from aimass.serving.frontend import Call, Frontend, metadata_response, status_response
from aimass.serving.limits import ServerLimits
from aimass.serving.metrics import CONTENT_TYPE, METRICS_PATH
from aimass.serving.rest_json import parse_body, request_inputs, response_body
from aimass.serving.servables import ServableError, invalid, short

logger = logging.getLogger(__name__)

_PREDICT_PATH = re.compile(
    r"/v1/models/([^/:]+)(?:(?:/versions/(\d+))|(?:/labels/([^/:]+)))?:(classify|regress|predict)",
    re.IGNORECASE,
)
_STATUS_PATH = re.compile(
    r"/v1/models(?:/([^/:]+))?(?:(?:/versions/(\d+))|(?:/labels/([^/:]+)))?(?:/(metadata))?",
    re.IGNORECASE,
)
HTTP_STATUS = {
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
_JSON = "application/json"
# Bodies up to this size are answered on the event loop (unless batching, which waits for a
# batch): parsing them and running a small model costs less than the hop to the pool.
INLINE_BYTES = 64 * 1024
_CLOSE = {"Connection": "close"}  # the body was not read to its end: the connection cannot go on
_JSON_OPTIONS = {"preserving_proto_field_name": True, "always_print_fields_with_no_presence": True}


class _ClientGone(Exception):
    """The client closed the connection before its body arrived."""


def _model_spec(name: str, version: str | None, label: str | None) -> model_pb2.ModelSpec:
    spec = model_pb2.ModelSpec(name=name)  # the ASGI path is already percent-decoded
    if version:
        spec.version.value = int(version)
    elif label:
        spec.version_label = label
    return spec


def _busy(what: str, retry_after_s: int, *, body_unread: bool) -> ServableError:
    headers = {"Retry-After": str(retry_after_s), **(_CLOSE if body_unread else {})}
    return ServableError(
        grpc.StatusCode.UNAVAILABLE,
        f"the server is busy ({what}); retry after {retry_after_s} s",
        headers=headers,
    )


class RestApi:
    """The REST front end of one `Frontend`; `app` is the ASGI application.

    Args:
        frontend: the models, batcher, metrics and request log shared with gRPC.
        limits: body size and time, JSON depth, requests answered at once.
        pool: threads that parse, validate and run the requests (one per request answered).
    """

    def __init__(
        self, frontend: Frontend, limits: ServerLimits, pool: futures.ThreadPoolExecutor
    ) -> None:
        self.frontend = frontend
        self.limits = limits
        self.pool = pool
        self.inline_bytes = INLINE_BYTES
        # Both counters change on the event loop's thread only.
        self.answering = 0  # requests whose body is in, being answered
        self.body_bytes = 0  # bytes of bodies still arriving
        self.app = Starlette(
            routes=[
                Route(METRICS_PATH, self._metrics, methods=["GET"]),
                Route("/v1/{path:path}", self._v1, methods=["GET", "POST"]),
            ],
            exception_handlers={HTTPException: self._http_error},
        )

    async def _metrics(self, request: Request) -> Response:
        return Response(self.frontend.metrics.render(), media_type=CONTENT_TYPE)

    async def _http_error(self, request: Request, exc: Exception) -> Response:
        """404 and 405 from the router, as TF Serving's error objects."""
        assert isinstance(exc, HTTPException)
        method, path = request.scope["method"], request.scope["path"]
        if exc.status_code == 405:
            allowed = (exc.headers or {}).get("Allow", "GET")
            message = f"{method} is not allowed on {path}; use {allowed}"
        elif exc.status_code == 404:
            message = (
                f"no route for {method} {path}; the API is /v1/models/<model>[...] and "
                f"{METRICS_PATH}"
            )
        else:
            message = str(exc.detail)
        return self._error_response(exc.status_code, message, exc.headers)

    def _error_response(
        self, status: int, message: str, headers: Mapping[str, str] | None = None
    ) -> Response:
        headers = dict(headers or {})
        if status == 503:
            headers.setdefault("Retry-After", str(self.limits.retry_after_s))
        body = json.dumps({"error": message}).encode("utf-8")
        return Response(body, status_code=status, headers=headers, media_type=_JSON)

    async def _v1(self, request: Request) -> Response:
        scope = request.scope
        method, path = scope["method"], scope["path"]
        call: Call | None = None
        try:
            if method == "POST":
                match = _PREDICT_PATH.fullmatch(path)
                if match is None:
                    raise invalid(
                        f"Malformed request: POST {path}; predict with POST "
                        "/v1/models/<model>[/versions/<v>|/labels/<l>]:predict"
                    )
                name, version, label, verb = match.groups()
                spec = _model_spec(name, version, label)
                call = Call("rest", verb.lower(), spec)
                if verb.lower() != "predict":
                    raise ServableError(
                        grpc.StatusCode.UNIMPLEMENTED, f":{verb} is not served by the local server"
                    )
                content = await self._predict(request, spec, call)
            else:
                match = _STATUS_PATH.fullmatch(path)
                if match is None:
                    raise invalid(
                        f"Malformed request: {method} {path}; use GET "
                        "/v1/models/<model>[/versions/<v>|/labels/<l>][/metadata]"
                    )
                name, version, label, metadata = match.groups()
                spec = _model_spec(name or "", version, label)
                call = Call("rest", "metadata" if metadata else "status", spec)
                if not name:
                    raise invalid("Missing model name in request.")
                content = json.dumps(self._describe(spec, call, bool(metadata))).encode("utf-8")
        except ServableError as exc:
            if call is not None:
                self.frontend.finish(call, exc.code)
            status = exc.http_status or HTTP_STATUS.get(exc.code, 500)
            return self._error_response(status, exc.message, exc.headers)
        except _ClientGone:
            if call is not None:
                self.frontend.finish(call, grpc.StatusCode.CANCELLED)
            return Response(status_code=400)  # nobody reads it: the connection is gone
        except Exception as exc:
            logger.exception("REST %s %s failed", method, path)
            if call is not None:
                self.frontend.finish(call, grpc.StatusCode.INTERNAL)
            return self._error_response(500, short(exc))
        self.frontend.finish(call, grpc.StatusCode.OK)
        return Response(content, media_type=_JSON)

    def _describe(self, spec: model_pb2.ModelSpec, call: Call, metadata: bool) -> dict[str, Any]:
        manager = self.frontend.manager
        if not metadata:
            return json_format.MessageToDict(status_response(manager, spec, call), **_JSON_OPTIONS)
        response = metadata_response(manager, spec, call)
        signature_map = get_model_metadata_pb2.SignatureDefMap()
        response.metadata["signature_def"].Unpack(signature_map)
        return {
            "model_spec": json_format.MessageToDict(response.model_spec, **_JSON_OPTIONS),
            "metadata": {
                "signature_def": json_format.MessageToDict(signature_map, **_JSON_OPTIONS)
            },
        }

    async def _predict(self, request: Request, spec: model_pb2.ModelSpec, call: Call) -> bytes:
        limit = self.limits.rest_max_concurrent_requests
        busy = f"{limit} requests being answered; --rest_max_concurrent_requests"
        if self.answering >= limit:  # refuse before reading a body that would wait anyway
            raise _busy(busy, self.limits.retry_after_s, body_unread=True)
        body = await self._read_body(request)
        if self.answering >= limit:
            raise _busy(busy, self.limits.retry_after_s, body_unread=False)
        self.answering += 1
        try:
            if len(body) <= self.inline_bytes and self.frontend.batcher is None:
                # A small request costs less than a hop to the pool and back.
                return self._answer(spec, body, call)
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(self.pool, self._answer, spec, body, call)
        finally:
            self.answering -= 1

    def _answer(self, spec: model_pb2.ModelSpec, body: bytes, call: Call) -> bytes:
        """Parse, validate, run and encode one :predict (on a pool thread)."""
        request = parse_body(body, self.limits.rest_max_json_depth)
        name = request.get("signature_name") or ""
        if not isinstance(name, str):
            raise invalid("'signature_name' must be a string")
        version, loaded = self.frontend.manager.resolve(spec)
        call.version = str(version)
        signature = loaded.signature(name)
        row_format, inputs = request_inputs(request, signature, self.limits.max_request_rows)
        _, outputs = self.frontend.predict(
            spec, signature.name, inputs, (), call, (version, loaded)
        )
        return response_body(outputs, row_format)

    async def _read_body(self, request: Request) -> bytes:
        """The whole body, within the size limit, the deadline and the bytes-in-flight budget."""
        limits = self.limits
        limit = limits.rest_max_body_bytes
        for name, value in request.scope["headers"]:
            if name == b"content-length":  # the HTTP parser has checked it is a number
                if int(value) > limit:
                    raise _too_large(f"{int(value)} bytes", limit)
                break
        receive = request.receive
        chunks: list[bytes] = []
        held = 0
        try:
            async with asyncio.timeout(limits.rest_body_timeout_s):
                while True:
                    message = await receive()
                    if message["type"] != "http.request":
                        raise _ClientGone
                    chunk = message.get("body", b"")
                    if chunk:
                        held += len(chunk)
                        self.body_bytes += len(chunk)
                        if held > limit:
                            raise _too_large(f"more than {limit} bytes", limit)
                        if self.body_bytes > limits.rest_max_inflight_body_bytes:
                            raise _busy(
                                "too many request bodies arriving; --rest_max_inflight_body_bytes",
                                limits.retry_after_s,
                                body_unread=True,
                            )
                        chunks.append(chunk)
                    if not message.get("more_body", False):
                        break
        except TimeoutError:
            raise ServableError(
                grpc.StatusCode.DEADLINE_EXCEEDED,
                f"the request body did not arrive within {limits.rest_body_timeout_s:g} s "
                f"(--rest_body_timeout_seconds; {held} bytes came)",
                http_status=408,
                headers=_CLOSE,
            ) from None
        finally:
            self.body_bytes -= held
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def _too_large(size: str, limit: int) -> ServableError:
    return ServableError(
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        f"the request body is {size}; this server takes at most {limit} bytes "
        "(--rest_max_body_bytes): send fewer instances per request",
        http_status=413,
        headers=_CLOSE,
    )
