"""The local model server as a real subprocess, driven only through ServingClient and raw REST.

Two versions of a tiny SavedModel (same contract as the taxi model: fare/company/
trip_start_hour in, probabilities out) differ by a bias, so every answer says which
version produced it.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent import futures
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from testkit import free_port, save_tiny_model

from aimass.platform.errors import ServingError
from aimass.serving.client import ServingClient
from aimass.serving.config import model_config, server_config, write_config

pytestmark = pytest.mark.integration

MODEL = "taxi"
BIASES = {1: 0.0, 2: -2.0, 5: 1.5}
FEATURES = {
    "fare": np.array([10.0, 0.0, 42.5], dtype=np.float32),
    "company": np.array([b"Flash Cab", b"", b"Other"], dtype=object),
    "trip_start_hour": np.array([5, 23, -1], dtype=np.int64),
}
INSTANCES = [
    {"fare": 10.0, "company": "Flash Cab", "trip_start_hour": 5},
    {"fare": 0.0, "company": "", "trip_start_hour": 23},
    {"fare": 42.5, "company": "Other", "trip_start_hour": -1},
]


_SAMPLE = re.compile(r"(?P<name>[a-zA-Z_:][\w:]*)(?:\{(?P<labels>.*)\})? (?P<value>\S+)")


def expected(version: int) -> np.ndarray:
    fare = FEATURES["fare"].astype(np.float64)
    hour = FEATURES["trip_start_hour"].astype(np.float64)
    flash = (FEATURES["company"] == b"Flash Cab").astype(np.float64)
    logit = 0.1 * fare + 0.01 * hour + flash + BIASES[version]
    return 1.0 / (1.0 + np.exp(-logit))


def save_model(path: Path, bias: float, *, warmup_input: str | None = None) -> None:
    import tensorflow as tf

    save_tiny_model(path, bias)
    if warmup_input is not None:
        from tensorflow_serving.apis import predict_pb2, prediction_log_pb2

        request = predict_pb2.PredictRequest()
        request.model_spec.name = MODEL
        request.inputs[warmup_input].CopyFrom(tf.make_tensor_proto(np.array([1.0], np.float32)))
        log = prediction_log_pb2.PredictionLog(
            predict_log=prediction_log_pb2.PredictLog(request=request)
        )
        (path / "assets.extra").mkdir()
        with tf.io.TFRecordWriter(str(path / "assets.extra" / "tf_serving_warmup_requests")) as w:
            w.write(log.SerializeToString())


@dataclass
class Server:
    client: ServingClient
    rest_url: str
    base: Path
    config_path: Path
    log_path: Path

    def configure(self, versions: list[int], labels: dict[str, int]) -> None:
        """One HandleReloadConfigRequest."""
        self.client.reload_config(server_config([model_config(MODEL, self.base, versions, labels)]))

    def reset(self, versions: list[int], labels: dict[str, int]) -> None:
        """Reach this config from any state: load the versions first, then set the labels."""
        states = self.client.model_status(MODEL)
        loaded = [s["version"] for s in states if s["state"] == "AVAILABLE"]
        self.configure(sorted(set(versions) | set(loaded)), {})
        for version in versions:
            self.client.wait_available(MODEL, version, timeout_s=30)
        self.configure(versions, labels)

    def metrics(self) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
        """Every sample of ``GET /monitoring/prometheus/metrics``: (name, labels) -> value."""
        url = f"{self.rest_url}/monitoring/prometheus/metrics"
        with urllib.request.urlopen(url, timeout=10) as response:
            assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
            text = response.read().decode("utf-8")
        samples = {}
        for line in text.splitlines():
            if line.startswith("#") or not line:
                continue
            match = _SAMPLE.fullmatch(line)
            assert match, f"not a Prometheus sample line: {line!r}"
            labels = frozenset(re.findall(r'(\w+)="([^"]*)"', match["labels"] or ""))
            samples[(match["name"], labels)] = float(match["value"].replace("Inf", "inf"))
        return samples

    def rest(self, method: str, path: str, body: dict[str, Any] | None = None) -> tuple[int, Any]:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(f"{self.rest_url}{path}", data=data, method=method)
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read())


@contextlib.contextmanager
def run_server(root: Path, base: Path, config_path: Path, *extra_args: str) -> Iterator[Server]:
    """`python -m aimass.serving.server` on free ports; stopped (SIGTERM, exit 0) on exit."""
    grpc_port, rest_port = free_port(), free_port()
    log_path = root / "server.log"
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "aimass.serving.server",
                f"--model_config_file={config_path}",
                "--port",
                str(grpc_port),
                "--rest_api_port",
                str(rest_port),
                "--file_system_poll_wait_seconds",
                "0.5",
                *extra_args,
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
        )
    client = ServingClient(f"127.0.0.1:{grpc_port}", f"http://127.0.0.1:{rest_port}")
    try:
        deadline = time.monotonic() + 180  # TF imports slowly on a busy box
        while True:
            if proc.poll() is not None:
                pytest.fail(f"model server exited with {proc.returncode}:\n{log_path.read_text()}")
            try:
                client.wait_available(MODEL, 1, timeout_s=1, poll_s=0.2)
                client.wait_available(MODEL, 2, timeout_s=1, poll_s=0.2)
                break
            except ServingError:
                if time.monotonic() > deadline:
                    pytest.fail(f"model server did not come up:\n{log_path.read_text()}")
        yield Server(client, f"http://127.0.0.1:{rest_port}", base, config_path, log_path)
    finally:
        client.close()
        proc.terminate()
        returncode: int | None
        try:
            returncode = proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            returncode = None
    assert returncode == 0, f"SIGTERM did not stop the server cleanly:\n{log_path.read_text()}"


def _models(root: Path) -> tuple[Path, Path]:
    base = root / "models" / MODEL
    save_model(base / "1", BIASES[1])
    save_model(base / "2", BIASES[2])
    config_path = write_config(
        root / "models.config",
        server_config([model_config(MODEL, base, [1, 2], {"stable": 1})]),
    )
    return base, config_path


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    root = tmp_path_factory.mktemp("serving")
    base, config_path = _models(root)
    with run_server(root, base, config_path) as running:
        yield running


def probabilities(server: Server, **spec: Any) -> np.ndarray:
    return server.client.predict_grpc(MODEL, FEATURES, **spec)["probabilities"]


def test_grpc_predict_answers_from_the_requested_version_or_label(server: Server) -> None:
    server.reset([1, 2], {"stable": 1, "canary": 2})

    np.testing.assert_allclose(probabilities(server, version=1), expected(1), rtol=1e-5)
    np.testing.assert_allclose(probabilities(server, version=2), expected(2), rtol=1e-5)
    np.testing.assert_allclose(probabilities(server, label="stable"), expected(1), rtol=1e-5)
    np.testing.assert_allclose(probabilities(server, label="canary"), expected(2), rtol=1e-5)
    np.testing.assert_allclose(probabilities(server), expected(2), rtol=1e-5)  # latest
    with pytest.raises(ServingError, match="INVALID_ARGUMENT.*Unrecognized servable version label"):
        probabilities(server, label="nightly")
    with pytest.raises(ServingError, match="INVALID_ARGUMENT.*fare"):
        server.client.predict_grpc(
            MODEL, {**FEATURES, "fare": FEATURES["fare"].astype(np.float64)}, version=1
        )


def test_rest_predict_row_and_columnar_formats(server: Server) -> None:
    server.reset([1, 2], {"stable": 1})

    rows = server.client.predict_rest(MODEL, INSTANCES, version=2)
    np.testing.assert_allclose(rows, expected(2), rtol=1e-5)
    rows = server.client.predict_rest(MODEL, INSTANCES, label="stable")
    np.testing.assert_allclose(rows, expected(1), rtol=1e-5)

    columns = {key: [row[key] for row in INSTANCES] for key in INSTANCES[0]}
    status, answer = server.rest(
        "POST", f"/v1/models/{MODEL}/versions/1:predict", {"inputs": columns}
    )
    assert status == 200 and set(answer) == {"outputs"}
    np.testing.assert_allclose(answer["outputs"], expected(1), rtol=1e-5)
    np.testing.assert_allclose(
        server.client.predict_columns(MODEL, FEATURES, version=2), expected(2), rtol=1e-5
    )

    status, answer = server.rest(
        "POST", f"/v1/models/{MODEL}:predict", {"instances": [{"fare": 1.0, "company": "x"}]}
    )
    assert status == 400 and "trip_start_hour" in answer["error"]
    status, answer = server.rest("POST", f"/v1/models/{MODEL}:predict", {"rows": INSTANCES})
    assert status == 400 and "instances" in answer["error"]


def test_model_status_and_metadata(server: Server) -> None:
    server.reset([1, 2], {"stable": 1})

    states = server.client.model_status(MODEL)
    assert [(s["version"], s["state"], s["error_code"]) for s in states] == [
        (2, "AVAILABLE", "OK"),
        (1, "AVAILABLE", "OK"),
    ]
    status, answer = server.rest("GET", f"/v1/models/{MODEL}/versions/1")
    assert status == 200
    assert answer == {
        "model_version_status": [
            {
                "version": "1",
                "state": "AVAILABLE",
                "status": {"error_code": "OK", "error_message": ""},
            }
        ]
    }
    status, answer = server.rest("GET", f"/v1/models/{MODEL}/labels/stable")
    assert status == 200 and answer["model_version_status"][0]["version"] == "1"

    meta = server.client.metadata(MODEL, 2)
    assert meta["model_spec"]["name"] == MODEL and meta["model_spec"]["version"] == "2"
    signature = meta["metadata"]["signature_def"]["signature_def"]["serving_default"]
    assert {key: value["dtype"] for key, value in signature["inputs"].items()} == {
        "fare": "DT_FLOAT",
        "company": "DT_STRING",
        "trip_start_hour": "DT_INT64",
    }
    assert signature["outputs"]["probabilities"]["dtype"] == "DT_FLOAT"
    assert signature["method_name"] == "tensorflow/serving/predict"
    status, answer = server.rest("GET", f"/v1/models/{MODEL}/labels/stable/metadata")
    assert status == 200 and answer["model_spec"]["version"] == "1"
    signatures = server.client.metadata_grpc(MODEL, label="stable")
    assert set(signatures.signature_def["serving_default"].inputs) == set(FEATURES)


def test_reload_loads_a_version_then_moves_stable_then_unloads_the_old_one(server: Server) -> None:
    server.reset([1], {"stable": 1})
    states = {s["version"]: s["state"] for s in server.client.model_status(MODEL)}
    assert (states[1], states[2]) == ("AVAILABLE", "END")
    with pytest.raises(ServingError, match="NOT_FOUND"):
        probabilities(server, version=2)

    server.configure([1, 2], {"stable": 1})  # load first ...
    server.client.wait_available(MODEL, 2, timeout_s=30)
    np.testing.assert_allclose(probabilities(server, label="stable"), expected(1), rtol=1e-5)
    server.configure([1, 2], {"stable": 2})  # ... then move the label
    np.testing.assert_allclose(probabilities(server, label="stable"), expected(2), rtol=1e-5)
    server.configure([2], {"stable": 2})  # ... then retire the old version
    assert server.client.model_status(MODEL, 1)[0]["state"] == "END"
    with pytest.raises(ServingError, match="NOT_FOUND"):
        probabilities(server, version=1)
    np.testing.assert_allclose(probabilities(server, label="stable"), expected(2), rtol=1e-5)


def test_a_label_may_only_point_at_a_loaded_version(server: Server) -> None:
    server.reset([1], {"stable": 1})

    with pytest.raises(ServingError, match="FAILED_PRECONDITION.*not currently available"):
        server.configure([1, 2], {"stable": 2})  # v2 is not loaded before this reload
    with pytest.raises(ServingError, match="FAILED_PRECONDITION.*version 9"):
        server.configure([1, 9], {"stable": 1, "canary": 9})
    np.testing.assert_allclose(probabilities(server, label="stable"), expected(1), rtol=1e-5)
    assert [
        s["version"] for s in server.client.model_status(MODEL) if s["state"] == "AVAILABLE"
    ] == [1]


def test_a_broken_version_never_becomes_available(server: Server) -> None:
    server.reset([1, 2], {"stable": 1})
    truncated = server.base / "3"
    shutil.copytree(server.base / "2", truncated)
    pb = truncated / "saved_model.pb"
    pb.write_bytes(pb.read_bytes()[: pb.stat().st_size // 2])
    save_model(server.base / "4", 0.5, warmup_input="no_such_input")  # warm-up replay fails

    server.configure([1, 2, 3, 4], {"stable": 1})
    for version in (3, 4):
        with pytest.raises(ServingError, match=f"version {version} failed to load"):
            server.client.wait_available(MODEL, version, timeout_s=30)
        state = server.client.model_status(MODEL, version)[0]
        assert state["state"] == "END" and state["error_code"] != "OK"
    assert "no_such_input" in server.client.model_status(MODEL, 4)[0]["error_message"]

    np.testing.assert_allclose(probabilities(server), expected(2), rtol=1e-5)  # latest loaded
    np.testing.assert_allclose(probabilities(server, label="stable"), expected(1), rtol=1e-5)
    with pytest.raises(ServingError, match="FAILED_PRECONDITION"):
        server.configure([1, 2, 3, 4], {"stable": 3})


def test_unknown_model_is_not_found(server: Server) -> None:
    with pytest.raises(ServingError, match="NOT_FOUND") as info:
        server.client.predict_grpc("nope", FEATURES)
    assert "model nope" in str(info.value)
    with pytest.raises(ServingError, match="NOT_FOUND"):
        server.client.model_status("nope")
    for method, path, body in (
        ("GET", "/v1/models/nope", None),
        ("GET", "/v1/models/nope/metadata", None),
        ("POST", "/v1/models/nope:predict", {"instances": INSTANCES}),
        ("GET", f"/v1/models/{MODEL}/versions/77", None),
    ):
        status, answer = server.rest(method, path, body)
        assert status == 404, (path, answer)
        assert set(answer) == {"error"} and answer["error"]


def test_rewriting_the_config_file_applies_it_without_grpc(server: Server) -> None:
    save_model(server.base / "5", BIASES[5])
    server.reset([1, 2], {"stable": 1})
    write_config(
        server.config_path, server_config([model_config(MODEL, server.base, [1, 5], {"stable": 1})])
    )
    server.client.wait_available(MODEL, 5, timeout_s=30)
    write_config(
        server.config_path, server_config([model_config(MODEL, server.base, [1, 5], {"stable": 5})])
    )

    deadline = time.monotonic() + 30
    while not np.allclose(probabilities(server, label="stable"), expected(5), rtol=1e-5):
        assert time.monotonic() < deadline, server.log_path.read_text()[-3000:]
        time.sleep(0.2)
    assert "label stable: version 1 -> 5" in server.log_path.read_text()


# --------------------------------------------------------------------------- metrics


def delta(before: dict, after: dict, name: str, **labels: str) -> float:  # how much one series grew
    key = (name, frozenset(labels.items()))
    return after.get(key, 0.0) - before.get(key, 0.0)


def test_metrics_count_every_grpc_and_rest_request_and_error(server: Server) -> None:
    server.reset([1, 2], {"stable": 1})
    before = server.metrics()

    for _ in range(3):
        probabilities(server, version=1)
    for _ in range(2):
        probabilities(server, label="stable")
    server.client.predict_rest(MODEL, INSTANCES, label="stable")
    with pytest.raises(ServingError, match="INVALID_ARGUMENT"):  # a wrong dtype, over gRPC
        server.client.predict_grpc(
            MODEL, {**FEATURES, "fare": FEATURES["fare"].astype(np.float64)}, version=2
        )
    status, _ = server.rest(  # a missing input, over REST
        "POST", f"/v1/models/{MODEL}/versions/2:predict", {"instances": [{"fare": 1.0}]}
    )
    assert status == 400
    with pytest.raises(ServingError, match="NOT_FOUND"):
        server.client.predict_grpc("no-such-model", FEATURES)
    with pytest.raises(ServingError, match="Unrecognized servable version label"):
        probabilities(server, label="nightly")
    server.client.model_status(MODEL)
    after = server.metrics()

    def grew(name: str, **labels: str) -> float:
        return delta(before, after, name, **labels)

    requests, errors = "aimass_serving_requests_total", "aimass_serving_request_errors_total"
    grpc_v1 = {"model": MODEL, "version": "1", "api": "grpc", "method": "predict"}
    assert grew(requests, **grpc_v1, label="") == 3
    assert grew(requests, **grpc_v1, label="stable") == 2
    assert grew("aimass_serving_request_latency_seconds_count", **grpc_v1, label="stable") == 2
    rest_stable = {"model": MODEL, "version": "1", "label": "stable", "api": "rest"}
    assert grew(requests, **rest_stable, method="predict") == 1
    assert grew(errors, **rest_stable, method="predict", code="INVALID_ARGUMENT") == 0

    v2 = {"model": MODEL, "version": "2", "label": "", "method": "predict"}
    assert grew(requests, **v2, api="grpc") == 1
    assert grew(errors, **v2, api="grpc", code="INVALID_ARGUMENT") == 1
    assert grew(requests, **v2, api="rest") == 1
    assert grew(errors, **v2, api="rest", code="INVALID_ARGUMENT") == 1
    # Names the server does not know are counted without becoming series of their own.
    unknown = {"model": "_unknown", "version": "", "label": "", "api": "grpc", "method": "predict"}
    assert grew(errors, **unknown, code="NOT_FOUND") == 1
    labelled = {"model": MODEL, "version": "", "label": "_unknown", "api": "grpc"}
    assert grew(errors, **labelled, method="predict", code="INVALID_ARGUMENT") == 1
    assert not any(
        "no-such-model" in value or "nightly" in value for _, ls in after for _, value in ls
    )
    status_labels = {"model": MODEL, "version": "", "label": "", "api": "grpc", "method": "status"}
    assert grew(requests, **status_labels) == 1

    # Totals: everything sent above and nothing else (the scrape itself is not counted).
    total_requests = sum(after[key] - before.get(key, 0.0) for key in after if key[0] == requests)
    total_errors = sum(after[key] - before.get(key, 0.0) for key in after if key[0] == errors)
    assert (total_requests, total_errors) == (11, 4)

    # TF Serving's families, by model and status.
    tf_count = ":tensorflow:serving:request_count"
    assert grew(tf_count, model_name=MODEL, status="OK") == 6
    assert grew(tf_count, model_name=MODEL, status="INVALID_ARGUMENT") == 3

    # The version gauges describe the loaded versions and the labels.
    versions = "aimass_serving_model_versions"
    assert after[(versions, frozenset({("model", MODEL), ("state", "AVAILABLE")}))] == 2
    label_gauge = "aimass_serving_model_version_label"
    assert (
        after[(label_gauge, frozenset({("model", MODEL), ("label", "stable"), ("version", "1")}))]
        == 1
    )


def test_batching_gives_the_same_predictions_as_no_batching_under_concurrency(
    server: Server, tmp_path: Path
) -> None:
    server.reset([1, 2], {"stable": 1})
    params = tmp_path / "batching.config"
    params.write_text(
        "max_batch_size { value: 8 }\n"
        "batch_timeout_micros { value: 200000 }\n"
        "num_batch_threads { value: 2 }\n"
        "max_enqueued_batches { value: 100 }\n",
        encoding="utf-8",
    )
    base, config_path = _models(tmp_path)
    # Requests of 1 to 3 rows for either version, over gRPC and REST; 9 rows are more than a
    # batch holds, so that one runs alone.
    rng = np.random.default_rng(5)
    requests = []
    for i in range(60):
        n = 9 if i == 7 else int(rng.integers(1, 4))
        rows = {
            "fare": rng.uniform(0, 50, n).astype(np.float32),
            "company": np.array(rng.choice([b"Flash Cab", b"", b"Other"], n), dtype=object),
            "trip_start_hour": rng.integers(0, 24, n).astype(np.int64),
        }
        requests.append((1 + i % 2, "rest" if i % 3 == 0 else "grpc", rows))

    def send(target: Server, version: int, api: str, rows: dict[str, np.ndarray]) -> np.ndarray:
        if api == "grpc":
            return target.client.predict_grpc(MODEL, rows, version=version)["probabilities"]
        return np.asarray(
            target.client.predict_columns(MODEL, rows, version=version), dtype=np.float32
        )

    def bad(target: Server) -> None:
        with pytest.raises(ServingError, match="INVALID_ARGUMENT.*fare"):
            target.client.predict_grpc(
                MODEL, {**FEATURES, "fare": FEATURES["fare"].astype(np.float64)}, version=1
            )

    with (
        run_server(
            tmp_path, base, config_path, "--enable_batching", f"--batching_parameters_file={params}"
        ) as batched,
        futures.ThreadPoolExecutor(max_workers=12) as pool,
    ):
        before = batched.metrics()
        start = threading.Barrier(12)

        def at_once(target: Server, request: tuple) -> np.ndarray:
            with contextlib.suppress(threading.BrokenBarrierError):
                start.wait(timeout=1)
            return send(target, *request)

        answers = list(pool.map(lambda r: at_once(batched, r), requests))
        bad_batched = pool.submit(bad, batched)
        bad_batched.result(timeout=60)
        plain = list(pool.map(lambda r: send(server, *r), requests))
        after = batched.metrics()

    for (version, _, rows), got, reference in zip(requests, answers, plain, strict=True):
        assert got.shape == (len(rows["fare"]),)
        # Equal up to float32 rounding: TensorFlow's vectorized kernels may round a row one ulp
        # differently depending on where it sits in the batch.
        np.testing.assert_allclose(got, reference, rtol=1e-6, atol=0)
        logit = (
            0.1 * rows["fare"].astype(np.float64)
            + 0.01 * rows["trip_start_hour"]
            + (rows["company"] == b"Flash Cab")
            + BIASES[version]
        )
        np.testing.assert_allclose(got, 1 / (1 + np.exp(-logit)), rtol=1e-5)

    # Every request but the 9-row one went through a batch, and batches merged requests.
    merged = {
        name: sum(after[k] - before.get(k, 0.0) for k in after if k[0] == name)
        for name in ("aimass_serving_batch_requests_sum", "aimass_serving_batch_requests_count")
    }
    assert merged["aimass_serving_batch_requests_sum"] == len(requests) - 1
    assert merged["aimass_serving_batch_requests_count"] < len(requests) - 1
    predicts = sum(
        after[k] - before.get(k, 0.0)
        for k in after
        if k[0] == "aimass_serving_requests_total" and ("method", "predict") in k[1]
    )
    assert predicts == len(requests) + 1


# --------------------------------------------------------------------------- control plane


def test_the_control_plane_can_have_its_own_port_or_be_off(tmp_path: Path) -> None:
    from aimass.serving.server import ModelServer

    base, _ = _models(tmp_path)
    config = server_config([model_config(MODEL, base, [1], {"stable": 1})])
    reload = server_config([model_config(MODEL, base, [1, 2], {"stable": 1})])
    control_port = free_port()
    with ModelServer(config, poll_seconds=0, rest_port=None, control_port=control_port) as split:
        with ServingClient(split.grpc_target, "http://127.0.0.1:9") as main:
            with pytest.raises(
                ServingError, match=f"PERMISSION_DENIED.*control port .*{control_port}"
            ):
                main.reload_config(reload)
            assert main.model_status(MODEL)[0]["state"] == "AVAILABLE"  # status stays here
        with ServingClient(f"127.0.0.1:{control_port}", "http://127.0.0.1:9") as control:
            with pytest.raises(ServingError, match="UNIMPLEMENTED"):  # no Predict there
                control.predict_grpc(MODEL, FEATURES)
            control.reload_config(reload)
            control.wait_available(MODEL, 2, timeout_s=30)
            with pytest.raises(ServingError, match="PERMISSION_DENIED.*serving root"):
                control.reload_config(server_config([model_config(MODEL, "/tmp", [1], {})]))

    with ModelServer(config, poll_seconds=0, rest_port=None, control_plane=False) as off:
        with ServingClient(off.grpc_target, "http://127.0.0.1:9") as client:
            with pytest.raises(ServingError, match=r"PERMISSION_DENIED.*--control_plane=off"):
                client.reload_config(reload)
            np.testing.assert_allclose(
                client.predict_grpc(MODEL, FEATURES, label="stable")["probabilities"],
                expected(1),
                rtol=1e-5,
            )
