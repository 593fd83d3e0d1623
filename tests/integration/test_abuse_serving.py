"""The model server's half of the abuse corpus: bad or abusive clients get a clear refusal, and
cannot hurt the server (issue 16).

Every case sends one abusive request (or a few) to a real server process over REST or gRPC,
asserts the status and the message, and then that a normal request still answers. What the
security review observed is a case each: oversized bodies, batches and messages, stalled
bodies and headers, a bad Content-Length, non-finite numbers, strings and booleans for
numbers, fractions and overflow for integers, deep JSON, wrong methods, missing and unexpected
features, wrong shapes, the request log keeping raw input, and an open control plane. The
module ends by checking that the server's peak memory stayed under a stated ceiling.
"""

from __future__ import annotations

import json
import re
import socket
import time
from collections.abc import Callable, Iterator
from concurrent import futures
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pyarrow.parquet as pq
import pytest
import tensorflow as tf
from servingkit import (
    FEATURES,
    MODEL,
    ROW,
    Served,
    post,
    raw_http,
    read_response,
    request_head,
    served,
)
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

from aimass.platform.errors import ServingError
from aimass.serving.config import model_config, server_config
from aimass.serving.request_log import recent_requests_path

pytestmark = pytest.mark.integration

PREDICT = f"/v1/models/{MODEL}:predict"
MAX_BODY = 2 * 1024 * 1024
MAX_ROWS = 1000
TIMEOUT_S = 2  # header and body timeouts of the server under test
MAX_CONNECTIONS = 64
# The server's peak resident memory may grow at most this much over its start while the
# corpus runs (the abusive requests add up to well over a gigabyte).
RSS_CEILING_MB = 100


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    root = tmp_path_factory.mktemp("abuse")
    with served(
        root,
        f"--max_request_rows={MAX_ROWS}",
        f"--rest_max_body_bytes={MAX_BODY}",
        f"--rest_max_inflight_body_bytes={MAX_BODY + MAX_BODY // 2}",
        f"--rest_header_timeout_seconds={TIMEOUT_S}",
        f"--rest_body_timeout_seconds={TIMEOUT_S}",
        f"--rest_max_connections={MAX_CONNECTIONS}",
        f"--request_log_dir={root / 'requests'}",
        "--request_log_sample=1.0",
        "--request_log_flush_seconds=0.5",
        f"--model_base_root={root / 'models'}",
    ) as running:
        running.assert_healthy()
        running.start_rss_mb = running.rss_mb()
        yield running


def body_of(instances: list[dict[str, Any]]) -> bytes:
    return json.dumps({"instances": instances}).encode()


def rest_row(**change: Any) -> bytes:
    """A one-instance body with `change` written into its JSON text as given."""
    row = {k: v for k, v in ROW.items() if k not in change}
    text = json.dumps(row)[:-1] + "".join(f', "{k}": {v}' for k, v in change.items()) + "}"
    return b'{"instances": [' + text.encode() + b"]}"


@dataclass(frozen=True)
class RestCase:
    name: str
    send: Callable[[Served], tuple[int, dict[str, str], Any]]
    status: int
    message: str  # a regular expression the error must match


def _post_raw(body: bytes) -> Callable[[Served], tuple[int, dict[str, str], Any]]:
    def send(server: Served) -> tuple[int, dict[str, str], Any]:
        head = request_head("POST", PREDICT, f"Content-Length: {len(body)}")
        status, headers, answer, _ = raw_http(server.rest_port, head + body)
        return status, headers, answer

    return send


def _declared(length: int) -> Callable[[Served], tuple[int, dict[str, str], Any]]:
    """Headers declaring `length` body bytes and none of the body: refused before reading."""

    def send(server: Served) -> tuple[int, dict[str, str], Any]:
        head = request_head("POST", PREDICT, f"Content-Length: {length}")
        status, headers, answer, _ = raw_http(server.rest_port, head)
        return status, headers, answer

    return send


def _raw(data: bytes) -> Callable[[Served], tuple[int, dict[str, str], Any]]:
    def send(server: Served) -> tuple[int, dict[str, str], Any]:
        status, headers, answer, seconds = raw_http(server.rest_port, data)
        headers["x-seconds"] = f"{seconds:.2f}"
        return status, headers, answer

    return send


HUNDRED_K = len(body_of([ROW] * 100_000))
REST_CASES = [
    RestCase(
        "50 MB body", _declared(50_000_000), 413, rf"50000000 bytes; .*at most {MAX_BODY} bytes"
    ),
    RestCase("100,000-instance batch", _declared(HUNDRED_K), 413, "--rest_max_body_bytes"),
    RestCase(
        "more instances than a request may carry",
        _post_raw(body_of([ROW] * (MAX_ROWS + 500))),
        413,
        rf"{MAX_ROWS + 500} rows; this server takes at most {MAX_ROWS} per request",
    ),
    RestCase(
        "Content-Length 100 then 10 bytes",
        _raw(request_head("POST", PREDICT, "Content-Length: 100") + b'{"instance'),
        408,
        rf"did not arrive within {TIMEOUT_S} s .*10 bytes came",
    ),
    RestCase(
        "headers that never end",
        _raw(b"POST " + PREDICT.encode() + b" HTTP/1.1\r\nHost: x\r\n"),
        408,
        rf"headers did not arrive within {TIMEOUT_S} s",
    ),
    RestCase(
        "Content-Length: abc",
        _raw(request_head("POST", PREDICT, "Content-Length: abc")),
        400,
        "invalid HTTP request: Invalid character in Content-Length",
    ),
    RestCase(
        "70 KB of headers",
        _raw(request_head("GET", f"/v1/models/{MODEL}", "X-Pad: " + "a" * 70_000)),
        431,
        "exceed 65536 bytes",
    ),
    RestCase("Infinity", _post_raw(rest_row(fare="Infinity")), 400, "JSON Infinity is not"),
    RestCase("NaN", _post_raw(rest_row(fare="NaN")), 400, "JSON NaN is not"),
    RestCase(
        "a string for a number",
        _post_raw(rest_row(fare='"9.5"')),
        400,
        "instance 0: 'fare' is the string \"9.5\"; send a number",
    ),
    RestCase(
        "a boolean for a number",
        _post_raw(rest_row(fare="true")),
        400,
        "instance 0: 'fare' is true; send a number",
    ),
    RestCase(
        "a fraction for an int64",
        _post_raw(rest_row(trip_start_hour="10.7")),
        400,
        r"'trip_start_hour' is 10.7; the model takes whole numbers \(int64\)",
    ),
    RestCase(
        "1e30 for an int64",
        _post_raw(rest_row(trip_start_hour="1e30")),
        400,
        r"'trip_start_hour' is 1e\+30, out of range for int64",
    ),
    RestCase(
        "null for an int64",
        _post_raw(rest_row(trip_start_hour="null")),
        400,
        "is null; send a whole number .*-1 as a missing integer",
    ),
    RestCase(
        "JSON 10,000 levels deep",
        _post_raw(b"[" * 10_000 + b"]" * 10_000),
        400,
        "nests deeper than 32 levels",
    ),
    RestCase(
        "PUT", _raw(request_head("PUT", PREDICT, "Content-Length: 0")), 405, "PUT is not allowed"
    ),
    RestCase(
        "DELETE",
        _raw(request_head("DELETE", f"/v1/models/{MODEL}")),
        405,
        "DELETE is not allowed on /v1/models/taxi; use",
    ),
    RestCase(
        "a missing and an unexpected feature",
        _post_raw(
            body_of([ROW, {"fare": 1.0, "company": "x", "foo": 2}])  # no trip_start_hour
        ),
        400,
        r"^instance 1: missing features \['trip_start_hour'\]; unexpected \['foo'\]$",
    ),
    RestCase(
        "a wrong shape",
        _post_raw(
            json.dumps(
                {"inputs": {"fare": [[1.0, 2.0]], "company": ["x"], "trip_start_hour": [1]}}
            ).encode()
        ),
        400,
        r"^input 'fare' has shape \[1, 2\]; the model takes \[-1\]",
    ),
    RestCase(
        "an unknown route",
        _raw(request_head("GET", "/admin", "Content-Length: 0")),
        404,
        "no route for GET /admin",
    ),
]


@pytest.mark.parametrize("case", REST_CASES, ids=[case.name for case in REST_CASES])
def test_rest_abuse_is_refused_clearly(server: Served, case: RestCase) -> None:
    status, headers, answer = case.send(server)
    assert status == case.status, (status, answer)
    assert headers["content-type"] == "application/json"
    assert set(answer) == {"error"}
    assert re.search(case.message, answer["error"]), answer["error"]
    for internal in ("serving_default_", "StatefulPartitionedCall", "Traceback", ":0"):
        assert internal not in answer["error"]
    if status == 405:
        assert "POST" in headers["allow"] and "GET" in headers["allow"]
    if status == 408:
        assert float(headers.get("x-seconds", "0")) < TIMEOUT_S + 2
    server.assert_healthy()


def test_four_concurrent_100k_batches_are_refused_without_memory(server: Served) -> None:
    before = server.rss_mb()
    body = body_of([ROW] * 100_000)

    def send() -> int:
        with socket.create_connection(("127.0.0.1", server.rest_port), timeout=15) as sock:
            sock.sendall(request_head("POST", PREDICT, f"Content-Length: {len(body)}"))
            return read_response(sock)[0]

    with futures.ThreadPoolExecutor(4) as pool:
        assert list(pool.map(lambda _: send(), range(4))) == [413] * 4
    assert server.rss_mb() - before < 20
    server.assert_healthy()


def test_stalled_bodies_hold_no_thread_each_and_time_out(server: Served) -> None:
    threads = server.threads()
    socks = [socket.create_connection(("127.0.0.1", server.rest_port)) for _ in range(40)]
    try:
        for sock in socks:
            sock.sendall(request_head("POST", PREDICT, "Content-Length: 100") + b"0123456789")
        time.sleep(0.5)
        assert server.threads() <= threads + 2  # not a thread per connection
        server.assert_healthy()  # answered while 40 connections stall
        for sock in socks:
            sock.settimeout(TIMEOUT_S + 5)
            assert read_response(sock)[0] == 408
    finally:
        for sock in socks:
            sock.close()
    server.assert_healthy()


def test_connections_beyond_the_cap_are_refused_with_503(server: Served) -> None:
    socks = []
    try:
        for _ in range(MAX_CONNECTIONS + 3):
            socks.append(socket.create_connection(("127.0.0.1", server.rest_port), timeout=5))
        last = socks[-1]
        status, headers, body = read_response(last)
        assert status == 503 and headers["retry-after"] == "1"
        assert "--rest_max_connections" in json.loads(body)["error"]
    finally:
        for sock in socks:
            sock.close()
    time.sleep(0.2)
    server.assert_healthy()


def test_bodies_arriving_together_beyond_the_budget_get_503(server: Served) -> None:
    size = MAX_BODY - 1000  # each fits alone; two exceed --rest_max_inflight_body_bytes
    budget = MAX_BODY + MAX_BODY // 2
    first = socket.create_connection(("127.0.0.1", server.rest_port), timeout=10)
    second = socket.create_connection(("127.0.0.1", server.rest_port), timeout=10)
    try:
        first.sendall(request_head("POST", PREDICT, f"Content-Length: {size}") + b"x" * (size - 10))
        time.sleep(0.5)
        # Exactly enough to go over the budget, so the server has read all that was sent
        # when it answers (unread bytes would make its close a reset).
        second.sendall(request_head("POST", PREDICT, f"Content-Length: {size}"))
        second.sendall(b"x" * (budget - (size - 10) + 1))
        status, headers, body = read_response(second)
        assert status == 503 and headers["retry-after"] == "1"
        assert "--rest_max_inflight_body_bytes" in json.loads(body)["error"]
        assert read_response(first)[0] == 408  # its last 10 bytes never come
    finally:
        first.close()
        second.close()
    server.assert_healthy()


# --------------------------------------------------------------------------- gRPC


def grpc_stub(server: Served) -> tuple[grpc.Channel, Any]:
    channel = grpc.insecure_channel(
        server.grpc_target, options=[("grpc.max_send_message_length", -1)]
    )
    return channel, prediction_service_pb2_grpc.PredictionServiceStub(channel)


def predict_request(inputs: dict[str, Any]) -> predict_pb2.PredictRequest:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = MODEL
    for key, value in inputs.items():
        if isinstance(value, np.ndarray):
            request.inputs[key].CopyFrom(tf.make_tensor_proto(value))
        else:
            request.inputs[key].CopyFrom(value)
    return request


def broadcast_tensor() -> Any:
    proto = tf.make_tensor_proto(np.array([1.0], np.float32))
    proto.tensor_shape.dim[0].size = 1_000_000_000
    return proto


@dataclass(frozen=True)
class GrpcCase:
    name: str
    inputs: Callable[[], dict[str, Any]]
    code: grpc.StatusCode
    message: str


GRPC_CASES = [
    GrpcCase(
        "Infinity",
        lambda: {**FEATURES, "fare": np.array([1.0, np.inf], np.float32)},
        grpc.StatusCode.INVALID_ARGUMENT,
        "input 'fare' value 1 is infinite; send finite numbers",
    ),
    GrpcCase(
        "strings for a float",
        lambda: {**FEATURES, "fare": np.array([b"9.5", b"1"], dtype=object)},
        grpc.StatusCode.INVALID_ARGUMENT,
        "input 'fare' is string; the model takes float32",
    ),
    GrpcCase(
        "a float64 for an int64",
        lambda: {**FEATURES, "trip_start_hour": np.array([10.7, 1.0])},
        grpc.StatusCode.INVALID_ARGUMENT,
        "input 'trip_start_hour' is float64; the model takes int64",
    ),
    GrpcCase(
        "one value broadcast to a billion",
        lambda: {**FEATURES, "fare": broadcast_tensor()},
        grpc.StatusCode.INVALID_ARGUMENT,
        "1000000000 values",
    ),
    GrpcCase(
        "a missing and an unexpected feature",
        lambda: {"fare": FEATURES["fare"], "company": FEATURES["company"], "foo": FEATURES["fare"]},
        grpc.StatusCode.INVALID_ARGUMENT,
        r"^missing features \['trip_start_hour'\]; unexpected \['foo'\]",
    ),
    GrpcCase(
        "100,000 rows",
        lambda: {
            "fare": np.zeros(100_000, np.float32),
            "company": np.full(100_000, b"", dtype=object),
            "trip_start_hour": np.zeros(100_000, np.int64),
        },
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        f"100000 rows; this server takes at most {MAX_ROWS}",
    ),
    GrpcCase(
        "a wrong shape",
        lambda: {**FEATURES, "fare": np.zeros((2, 3), np.float32)},
        grpc.StatusCode.INVALID_ARGUMENT,
        r"^input 'fare' has shape \[2, 3\]; the model takes \[-1\]",
    ),
]


@pytest.mark.parametrize("case", GRPC_CASES, ids=[case.name for case in GRPC_CASES])
def test_grpc_abuse_is_refused_clearly(server: Served, case: GrpcCase) -> None:
    channel, stub = grpc_stub(server)
    try:
        request = predict_request(case.inputs())
        with pytest.raises(grpc.RpcError) as info:
            stub.Predict(request, timeout=60)
        del request
    finally:
        channel.close()
    assert info.value.code() == case.code, info.value.details()
    assert re.search(case.message, info.value.details() or ""), info.value.details()
    for internal in ("serving_default_", "StatefulPartitionedCall", "Traceback"):
        assert internal not in (info.value.details() or "")
    server.assert_healthy()


def test_a_300_mb_message_is_refused_by_grpc_before_the_server_holds_it(server: Served) -> None:
    before = server.rss_mb()
    request = predict_request(FEATURES)
    fare = request.inputs["fare"]
    fare.ClearField("float_val")
    fare.tensor_shape.dim[0].size = 300 * 1024 * 1024 // 4
    fare.tensor_content = bytes(300 * 1024 * 1024)
    channel, stub = grpc_stub(server)
    try:
        with pytest.raises(grpc.RpcError) as info:
            stub.Predict(request, timeout=60)
    finally:
        channel.close()
        del request, fare
    assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "larger than max" in (info.value.details() or "")
    assert server.rss_mb() - before < 50
    server.assert_healthy()


def test_reloads_may_only_name_base_paths_under_the_serving_root(
    server: Served, tmp_path: Path
) -> None:
    escape = server.root / "models" / "escape"
    escape.symlink_to(tmp_path, target_is_directory=True)  # under the root, pointing outside
    for base in ("/etc", str(tmp_path), str(escape)):
        with pytest.raises(ServingError, match="PERMISSION_DENIED.*outside the serving root"):
            server.client.reload_config(server_config([model_config("evil", base, [1], {})]))
    names = [s["version"] for s in server.client.model_status(MODEL)]
    assert names == [1]
    # A config under the root still reloads.
    base = server.root / "models" / MODEL
    server.client.reload_config(server_config([model_config(MODEL, base, [1], {"stable": 1})]))
    server.assert_healthy()


def test_the_request_log_keeps_only_validated_requests_with_bounded_strings(
    server: Served,
) -> None:
    huge = "x" * 1_500_000
    status, _ = post(
        server.rest_port, PREDICT, {"instances": [{**ROW, "fare": huge, "trip_start_hour": 4242}]}
    )
    assert status == 400
    status, _ = post(
        server.rest_port,
        PREDICT,
        {"instances": [{**ROW, "company": huge, "trip_start_hour": 4343}]},
    )
    assert status == 200
    path = recent_requests_path(server.root / "requests", MODEL)
    deadline = time.monotonic() + 20
    while True:
        if path.exists():
            table = pq.read_table(path)
            if 4343 in table.column("trip_start_hour").to_pylist():
                break
        assert time.monotonic() < deadline, server.log()
        time.sleep(0.2)
    hours = table.column("trip_start_hour").to_pylist()
    assert 4242 not in hours  # refused requests are never recorded
    assert max(len(value) for value in table.column("company").to_pylist()) <= 256
    assert all(np.isfinite(value) for value in table.column("fare").to_pylist())


# --------------------------------------------------------------------------- batching


@pytest.fixture(scope="module")
def batched(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    root = tmp_path_factory.mktemp("abuse-batching")
    params = root / "batching.config"
    params.write_text(
        "max_batch_size { value: 1000 }\nbatch_timeout_micros { value: 1500000 }\n"
        "num_batch_threads { value: 1 }\n",
        encoding="utf-8",
    )
    with served(
        root,
        "--enable_batching",
        f"--batching_parameters_file={params}",
        "--rest_max_concurrent_requests=2",
    ) as running:
        yield running


def scrape(server: Served, name: str, **labels: str) -> float:
    """The sum of the samples of `name` whose labels include `labels`."""
    import urllib.request

    url = f"http://127.0.0.1:{server.rest_port}/monitoring/prometheus/metrics"
    with urllib.request.urlopen(url, timeout=10) as response:
        text = response.read().decode()
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_a_request_whose_deadline_passes_in_the_batch_queue_is_not_run(batched: Served) -> None:
    batched.client.predict_grpc(MODEL, FEATURES)  # a first batch: the families exist
    ran = scrape(batched, "aimass_serving_batch_requests_sum")
    started = time.monotonic()
    with pytest.raises(ServingError, match="DEADLINE_EXCEEDED"):
        batched.client.predict_grpc(MODEL, FEATURES, timeout=0.3)
    assert time.monotonic() - started < 1.4  # answered before its batch's timeout
    time.sleep(2.0)  # the batch it was queued in has come due
    assert scrape(batched, "aimass_serving_batch_requests_sum") == ran  # and ran nothing
    assert (
        scrape(batched, "aimass_serving_request_errors_total", code="DEADLINE_EXCEEDED", api="grpc")
        >= 1
    )
    batched.assert_healthy()


def test_rest_requests_beyond_the_concurrency_limit_get_503_with_retry_after(
    batched: Served,
) -> None:
    """Two requests wait for their batch (1.5 s); a third finds no room."""
    body = body_of([ROW])
    with futures.ThreadPoolExecutor(2) as pool:
        waiting = [pool.submit(post, batched.rest_port, PREDICT, None, raw=body) for _ in range(2)]
        time.sleep(0.5)
        head = request_head("POST", PREDICT, f"Content-Length: {len(body)}")
        status, headers, answer, _ = raw_http(batched.rest_port, head + body)
        assert status == 503 and headers["retry-after"] == "1"
        assert "--rest_max_concurrent_requests" in answer["error"]
        assert [f.result(timeout=20)[0] for f in waiting] == [200, 200]
    batched.assert_healthy()


# --------------------------------------------------------------------------- afterwards


def test_the_servers_peak_memory_stayed_under_the_ceiling(server: Served) -> None:
    """Runs last: the peak resident memory over the whole corpus (VmHWM) against the start."""
    peak, start = server.rss_mb("VmHWM"), server.start_rss_mb
    assert peak - start < RSS_CEILING_MB, f"peak {peak:.0f} MiB, start {start:.0f} MiB"
    server.assert_healthy()
    # Every refusal was an answer, not a crash: no traceback in the server's log.
    assert "Traceback" not in server.log_path.read_text(errors="replace")
