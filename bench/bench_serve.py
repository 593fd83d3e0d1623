"""Benchmark of the model server: gRPC and REST latency and throughput against an in-process call.

Run with ``make bench-serve`` (about two minutes on 2 cores), or
``.venv/bin/python bench/bench_serve.py --seconds 1`` for a quick look.

Model: the project's tabular model for ``conf/datasets/chicago_taxi.yaml`` (``build_model``
adapted on the train split, one epoch of ``fit``, ``export_saved_model``), trained on a clean
partition written by ``tests/testkit.write_partition`` from the real sample
(``var/data/raw/chicago_taxi/data.csv``). Cached under ``var/bench/serve/`` by a hash of the
spec and ``models/tabular``; requests carry holdout rows.

What is timed, in one run:

1. **in-process** (the baseline): the same SavedModel loaded in this process, its
   ``serving_default`` signature called with tensors made from the numpy rows (the work the
   server does per request without the transport), for batches of 1 and 64 rows.
2. **gRPC**: ``PredictionService.Predict`` on the local server started as a subprocess
   (``python -m aimass.serving.server`` on free loopback ports), requests built before timing;
   also ``ServingClient.predict_grpc``, which builds each request from numpy (``client_b1``).
3. **REST**: ``POST /v1/models/<m>:predict`` in the row format on a kept-alive HTTP/1.1
   connection, bodies serialized before timing. Also ``grpc_status_b0``: a GetModelStatus
   round trip (gRPC without TensorFlow work), the floor under every gRPC figure.
4. **Concurrent batch-1 load**: ``--clients`` threads sending batch-1 gRPC Predicts back to
   back for ``--load-seconds``, against the server above (no batching) and against a second
   one started with ``--enable_batching`` (``--batching_parameters_file``: max batch
   ``--max-batch``, timeout ``--batch-timeout-us``, ``--batch-threads``); both servers run
   for the whole benchmark with 32 gRPC threads.

"server ms" is the mean time a request spent inside the server, read from the server's own
latency histogram (``/monitoring/prometheus/metrics``) before and after each path.

Every measurement runs in ``--rounds`` rounds that alternate the paths (and the two servers),
and pools the samples, so a change in the machine's load hits every path alike. Only ratios
between paths measured in this run are meant to be compared across runs.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import http.client
import json
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")  # the project's Keras (models/tabular/model.py)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT / "tests"))

import _results  # noqa: E402
import numpy as np  # noqa: E402

log = logging.getLogger("bench_serve")

BENCH_DIR = ROOT / "var" / "bench" / "serve"
SAMPLE = ROOT / "var" / "data" / "raw" / "chicago_taxi" / "data.csv"
SPEC = ROOT / "conf" / "datasets" / "chicago_taxi.yaml"
MODEL = "chicago_taxi"
DS = "2024-01-01"
TARGET_GRPC_OVER_INPROCESS = 1.5  # also the REST target (batch 1, p50)
TARGET_B64_OVER_B1 = 3.0
SMALL, LARGE = 1, 64


# -- pure helpers ------------------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0-100) by linear interpolation between closest ranks."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100.0
    low = int(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


def summarize(latencies_s: list[float], rows_per_request: int, busy_s: float) -> dict[str, Any]:
    """Latency percentiles (ms) and throughput of a run of requests taking `busy_s` seconds."""
    n = len(latencies_s)
    return {
        "requests": n,
        "rows_per_request": rows_per_request,
        "p50_ms": round(percentile(latencies_s, 50) * 1e3, 3),
        "p99_ms": round(percentile(latencies_s, 99) * 1e3, 3),
        "mean_ms": round(statistics.fmean(latencies_s) * 1e3, 3) if n else float("nan"),
        "requests_per_s": round(n / busy_s, 1) if busy_s > 0 else float("nan"),
        "rows_per_s": round(n * rows_per_request / busy_s, 1) if busy_s > 0 else float("nan"),
    }


def ratio(numerator: float, denominator: float) -> float:
    return round(numerator / denominator, 3) if denominator else float("nan")


# -- the model ---------------------------------------------------------------------------------


def _model_key(epochs: int) -> str:
    digest = hashlib.sha256(SPEC.read_bytes())
    for path in sorted((ROOT / "models" / "tabular").glob("*.py")):
        digest.update(path.name.encode() + path.read_bytes())
    digest.update(f"epochs={epochs}".encode())
    return digest.hexdigest()[:12]


def build_model(epochs: int) -> tuple[Path, Path, bool]:
    """Export (or reuse) the taxi model as version 1 under a base path; (base, partition, cached)."""
    from testkit import write_partition

    from aimass.data.spec import load_spec

    spec = load_spec(SPEC)
    partition = BENCH_DIR / "clean" / f"ds={DS}"
    if not (partition / "_SUCCESS").exists():
        if not SAMPLE.exists():
            raise SystemExit(f"sample data missing at {SAMPLE}; run `make setup` first")
        write_partition(SAMPLE, partition, spec)
    base = BENCH_DIR / "models" / _model_key(epochs) / MODEL
    if (base / "1" / "saved_model.pb").exists():
        return base, partition, True

    import tf_keras

    from models.tabular.export import export_saved_model
    from models.tabular.inputs import load_arrays, make_dataset
    from models.tabular.model import build_model as build

    tf_keras.utils.set_random_seed(7)
    x, _ = load_arrays(partition, spec, "train")
    model = build(spec, adapt_data=x)
    batch = spec.training.batch_size
    model.fit(
        make_dataset(partition, spec, split="train", batch_size=batch, shuffle=True),
        epochs=epochs,
        verbose=0,
    )
    export_saved_model(model, spec, base / "1")
    return base, partition, False


def holdout_rows(partition: Path, n: int) -> dict[str, np.ndarray]:
    """``n`` holdout rows as the serving signature's inputs (repeated if the split is smaller)."""
    from aimass.data.spec import load_spec
    from models.tabular.inputs import load_arrays

    spec = load_spec(SPEC)
    x, _ = load_arrays(partition, spec, "holdout")
    total = len(next(iter(x.values())))
    idx = np.arange(n) % total
    out = {}
    for key, values in x.items():
        picked = values[idx]
        if picked.dtype == object:  # strings as the signature takes them
            picked = np.array([str(v).encode("utf-8") for v in picked], dtype=object)
        out[key] = picked
    return out


def slices(rows: dict[str, np.ndarray], size: int, count: int) -> list[dict[str, np.ndarray]]:
    """``count`` consecutive slices of ``size`` rows (wrapping around)."""
    total = len(next(iter(rows.values())))
    out = []
    for i in range(count):
        idx = (np.arange(size) + i * size) % total
        out.append({k: v[idx] for k, v in rows.items()})
    return out


# -- the server --------------------------------------------------------------------------------


class ServerProcess:
    """``python -m aimass.serving.server`` on free loopback ports, stopped on exit."""

    def __init__(self, base: Path, workdir: Path, *, batching: str | None = None) -> None:
        from testkit import free_port

        from aimass.serving.config import model_config, server_config, write_config

        self.grpc_port, self.rest_port = free_port(), free_port()
        config = write_config(
            workdir / "models.config", server_config([model_config(MODEL, base, [1], {})])
        )
        args = [
            sys.executable,
            "-m",
            "aimass.serving.server",
            f"--model_config_file={config}",
            f"--port={self.grpc_port}",
            f"--rest_api_port={self.rest_port}",
            "--file_system_poll_wait_seconds=0",
            "--grpc_max_threads=32",
        ]
        if batching is not None:
            params = workdir / "batching.config"
            params.write_text(batching, encoding="utf-8")
            args += ["--enable_batching", f"--batching_parameters_file={params}"]
        self.log_path = workdir / "server.log"
        self._log = open(self.log_path, "wb")  # noqa: SIM115 (closed in stop)
        self.proc = subprocess.Popen(args, stdout=self._log, stderr=subprocess.STDOUT)

    @property
    def grpc_target(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    @property
    def rest_url(self) -> str:
        return f"http://127.0.0.1:{self.rest_port}"

    def wait(self, timeout_s: float = 180) -> None:
        from aimass.platform.errors import ServingError
        from aimass.serving.client import ServingClient

        deadline = time.monotonic() + timeout_s
        with ServingClient(self.grpc_target, self.rest_url) as client:
            while True:
                if self.proc.poll() is not None:
                    raise SystemExit(
                        f"model server exited with {self.proc.returncode}:\n"
                        + self.log_path.read_text()[-3000:]
                    )
                try:
                    client.wait_available(MODEL, 1, timeout_s=1, poll_s=0.2)
                    return
                except ServingError:
                    if time.monotonic() > deadline:
                        raise SystemExit(
                            "model server did not come up:\n" + self.log_path.read_text()[-3000:]
                        ) from None

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._log.close()


# -- request paths -----------------------------------------------------------------------------

Call = Callable[[int], Any]  # call(i): send the i-th prepared request, return its answer


def inprocess_call(export_dir: Path, batches: list[dict[str, np.ndarray]]) -> tuple[Call, Any]:
    import tensorflow as tf

    loaded = tf.saved_model.load(str(export_dir))
    fn = loaded.signatures["serving_default"]
    specs = fn.structured_input_signature[1]

    def call(i: int) -> Any:
        batch = batches[i % len(batches)]
        tensors = {k: tf.constant(batch[k], dtype=s.dtype) for k, s in specs.items()}
        return fn(**tensors)["probabilities"].numpy()

    return call, loaded  # keep `loaded` alive with the call


def grpc_call(target: str, batches: list[dict[str, np.ndarray]]) -> tuple[Call, Any]:
    import grpc
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

    channel = grpc.insecure_channel(target)
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    requests = []
    for batch in batches:
        request = predict_pb2.PredictRequest()
        request.model_spec.name = MODEL
        for key, value in batch.items():
            request.inputs[key].CopyFrom(tf.make_tensor_proto(value))
        requests.append(request)

    def call(i: int) -> Any:
        return stub.Predict(requests[i % len(requests)], timeout=30)

    return call, channel


def status_call(target: str) -> tuple[Call, Any]:
    """GetModelStatus: a gRPC round trip to the same server without TensorFlow work."""
    import grpc
    from tensorflow_serving.apis import get_model_status_pb2, model_service_pb2_grpc

    channel = grpc.insecure_channel(target)
    stub = model_service_pb2_grpc.ModelServiceStub(channel)
    request = get_model_status_pb2.GetModelStatusRequest()
    request.model_spec.name = MODEL

    def call(i: int) -> Any:
        return stub.GetModelStatus(request, timeout=30)

    return call, channel


def client_call(
    target: str, rest_url: str, batches: list[dict[str, np.ndarray]]
) -> tuple[Call, Any]:
    from aimass.serving.client import ServingClient

    client = ServingClient(target, rest_url, timeout=30)

    def call(i: int) -> Any:
        return client.predict_grpc(MODEL, batches[i % len(batches)], timeout=30)

    return call, client


def _json_number(value: np.generic) -> Any:
    """A numpy scalar as JSON has it: a missing float (NaN) is null."""
    item = value.item()
    return None if isinstance(item, float) and item != item else item


def rest_call(rest_url: str, batches: list[dict[str, np.ndarray]]) -> tuple[Call, Any]:
    host, port = rest_url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    path = f"/v1/models/{MODEL}:predict"
    bodies = []
    for batch in batches:
        n = len(next(iter(batch.values())))
        instances = [
            {
                k: (v[r].decode("utf-8") if isinstance(v[r], bytes) else _json_number(v[r]))
                for k, v in batch.items()
            }
            for r in range(n)
        ]
        bodies.append(json.dumps({"instances": instances}, allow_nan=False).encode("utf-8"))
    headers = {"Content-Type": "application/json"}

    def call(i: int) -> Any:
        try:
            conn.request("POST", path, bodies[i % len(bodies)], headers)
            response = conn.getresponse()
        except (BrokenPipeError, ConnectionResetError, http.client.RemoteDisconnected):
            # The server closed the kept-alive connection after it idled (between rounds,
            # past --rest_keepalive_timeout_seconds): reconnect, as HTTP clients do.
            conn.close()
            conn.request("POST", path, bodies[i % len(bodies)], headers)
            response = conn.getresponse()
        data = response.read()
        if response.status != 200:
            raise RuntimeError(f"REST predict failed: HTTP {response.status}: {data[:300]!r}")
        return data

    return call, conn


def time_calls(
    call: Call, seconds: float, warmup: int, start: int = 0
) -> tuple[list[float], float]:
    """Call `call` back to back for `seconds` after `warmup` untimed calls; (latencies, busy s)."""
    for i in range(warmup):
        call(start + i)
    latencies = []
    i = start + warmup
    began = time.perf_counter()
    deadline = began + seconds
    while True:
        t0 = time.perf_counter()
        call(i)
        t1 = time.perf_counter()
        latencies.append(t1 - t0)
        i += 1
        if t1 >= deadline:
            return latencies, t1 - began


def merge_loads(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Rounds of `concurrent_load` pooled: latencies by request, throughput by time."""
    latencies = [x for run in runs for x in run.pop("latencies")]
    busy = sum(run["busy_s"] for run in runs)
    out = {**summarize(latencies, 1, busy), "clients": runs[0]["clients"], "rounds": len(runs)}
    batches = sum(run.get("batches", 0.0) for run in runs)
    merged = sum(run.get("batched_requests", 0.0) for run in runs)
    if batches:
        out.update(batches=batches, mean_requests_per_batch=round(merged / batches, 2))
    return out


def concurrent_load(
    target: str, batches: list[dict[str, np.ndarray]], clients: int, seconds: float
) -> dict[str, Any]:
    """`clients` threads sending batch-1 gRPC Predicts back to back for `seconds`."""
    call, channel = grpc_call(target, batches)
    for i in range(clients * 4):  # warm-up: connection, server threads, first batches
        call(i)
    latencies: list[list[float]] = [[] for _ in range(clients)]
    errors: list[BaseException] = []
    start = threading.Barrier(clients + 1)
    stop_at: list[float] = []

    def worker(w: int) -> None:
        start.wait()
        i = w * 100_003
        try:
            while True:
                t0 = time.perf_counter()
                call(i)
                t1 = time.perf_counter()
                latencies[w].append(t1 - t0)
                i += 1
                if t1 >= stop_at[0]:
                    return
        except BaseException as exc:  # reported after the run
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(w,)) for w in range(clients)]
    for thread in threads:
        thread.start()
    stop_at.append(time.perf_counter() + seconds)
    began = time.perf_counter()
    start.wait()
    for thread in threads:
        thread.join()
    busy = time.perf_counter() - began
    channel.close()
    if errors:
        raise SystemExit(f"concurrent load failed: {errors[0]!r}")
    pooled = [x for per in latencies for x in per]
    return {"latencies": pooled, "busy_s": busy, "clients": clients}


def scrape(rest_url: str) -> dict[str, float]:
    """Series of the server's Prometheus metrics that the benchmark reads, summed by name.

    ``predict_<api>_sum`` / ``_count``: server-side latency of Predict per API;
    ``batches`` / ``batched_requests``: batches run and the requests they merged.
    """
    import urllib.request

    with urllib.request.urlopen(f"{rest_url}/monitoring/prometheus/metrics", timeout=10) as r:
        text = r.read().decode("utf-8")
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        series, value = line.rsplit(" ", 1)
        name = series.split("{", 1)[0]
        key = None
        if (
            name.startswith("aimass_serving_request_latency_seconds_")
            and 'method="predict"' in series
        ):
            api = "grpc" if 'api="grpc"' in series else "rest"
            key = f"predict_{api}_{name.rsplit('_', 1)[1]}"
        elif name == "aimass_serving_batch_requests_count":
            key = "batches"
        elif name == "aimass_serving_batch_requests_sum":
            key = "batched_requests"
        if key is not None:
            out[key] = out.get(key, 0.0) + float(value)
    return out


# -- main --------------------------------------------------------------------------------------


def parse_cli(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    p.add_argument("--seconds", type=float, default=3.0, help="timed seconds per path and round")
    p.add_argument("--rounds", type=int, default=2, help="rounds alternating the paths")
    p.add_argument("--warmup", type=int, default=30, help="untimed calls per path and round")
    p.add_argument("--clients", type=int, default=16, help="threads of the concurrent load")
    p.add_argument(
        "--load-seconds", type=float, default=4.0, help="seconds of concurrent load per round"
    )
    p.add_argument("--max-batch", type=int, default=32, help="batching: max_batch_size")
    p.add_argument("--batch-timeout-us", type=int, default=2000, help="batching: timeout (µs)")
    p.add_argument("--batch-threads", type=int, default=2, help="batching: num_batch_threads")
    p.add_argument("--epochs", type=int, default=1, help="training epochs of the served model")
    p.add_argument("--name", default="serve", help="results name (bench/results/<name>.json)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_cli(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    figures: dict[str, Any] = {"load_avg_start": [round(x, 2) for x in os.getloadavg()]}
    started = time.perf_counter()

    t0 = time.perf_counter()
    base, partition, cached = build_model(args.epochs)
    figures["model"] = {
        "export": str(base / "1"),
        "cached": cached,
        "seconds": round(time.perf_counter() - t0, 1),
    }
    print(f"model: {base / '1'} ({'cached' if cached else f'{time.perf_counter() - t0:.1f} s'})")
    rows = holdout_rows(partition, 64 * 64)
    batches = {size: slices(rows, size, 64) for size in (SMALL, LARGE)}

    samples: dict[str, list[float]] = {}
    busy: dict[str, float] = {}
    server_time: dict[str, list[float]] = {}  # path -> [sum s, count] of server-side latency
    loads: dict[str, list[dict[str, Any]]] = {"batching_off": [], "batching_on": []}
    batching = (
        f"max_batch_size {{ value: {args.max_batch} }}\n"
        f"batch_timeout_micros {{ value: {args.batch_timeout_us} }}\n"
        f"num_batch_threads {{ value: {args.batch_threads} }}\n"
        "max_enqueued_batches { value: 100 }\n"
    )
    with tempfile.TemporaryDirectory(prefix="bench-serve-") as tmp:
        for name in loads:
            (Path(tmp) / name).mkdir()
        print("starting two model servers (batching off and on) ...")
        with contextlib.ExitStack() as stack:
            plain = ServerProcess(base, Path(tmp) / "batching_off")
            stack.callback(plain.stop)
            batched = ServerProcess(base, Path(tmp) / "batching_on", batching=batching)
            stack.callback(batched.stop)
            plain.wait()
            batched.wait()
            paths: dict[str, tuple[Call, Any]] = {}
            for size in (SMALL, LARGE):
                paths[f"inprocess_b{size}"] = inprocess_call(base / "1", batches[size])
                paths[f"grpc_b{size}"] = grpc_call(plain.grpc_target, batches[size])
                paths[f"rest_b{size}"] = rest_call(plain.rest_url, batches[size])
            paths["client_b1"] = client_call(plain.grpc_target, plain.rest_url, batches[SMALL])
            paths["grpc_status_b0"] = status_call(plain.grpc_target)
            # Same answers on every path (the server runs the same SavedModel).
            check = paths["inprocess_b64"][0](0)
            served = paths["client_b1"][1].predict_grpc(MODEL, batches[LARGE][0])["probabilities"]
            np.testing.assert_allclose(served, check, rtol=1e-5, atol=1e-6)
            print(
                f"timing {len(paths)} paths and the concurrent load ({args.clients} clients, "
                f"batch 1), {args.rounds} round(s) ..."
            )
            for r in range(args.rounds):
                for name, (call, _) in paths.items():
                    api = name.split("_", 1)[0]
                    timed_inside = api in ("grpc", "rest", "client") and "status" not in name
                    before = scrape(plain.rest_url) if timed_inside else {}
                    lat, secs = time_calls(call, args.seconds, args.warmup, start=r * 7919)
                    samples.setdefault(name, []).extend(lat)
                    busy[name] = busy.get(name, 0.0) + secs
                    if before:
                        after = scrape(plain.rest_url)
                        key = "grpc" if api == "client" else api
                        acc = server_time.setdefault(name, [0.0, 0.0])
                        acc[0] += after[f"predict_{key}_sum"] - before.get(f"predict_{key}_sum", 0)
                        acc[1] += after[f"predict_{key}_count"] - before.get(
                            f"predict_{key}_count", 0
                        )
                for name, server in (("batching_off", plain), ("batching_on", batched)):
                    before = scrape(server.rest_url)
                    load = concurrent_load(
                        server.grpc_target, batches[SMALL], args.clients, args.load_seconds
                    )
                    after = scrape(server.rest_url)
                    for key in ("batches", "batched_requests"):
                        load[key] = after.get(key, 0.0) - before.get(key, 0.0)
                    loads[name].append(load)
            for _, handle in paths.values():
                if hasattr(handle, "close"):
                    handle.close()

    load_off, load_on = (merge_loads(loads[name]) for name in ("batching_off", "batching_on"))
    stats = {
        name: summarize(lat, int(name.rsplit("_b", 1)[1]), busy[name])
        for name, lat in samples.items()
    }
    for name, (total, count) in server_time.items():
        stats[name]["server_mean_ms"] = round(total / count * 1e3, 3) if count else float("nan")
    figures["paths"] = stats
    figures["concurrent_b1"] = {"batching_off": load_off, "batching_on": load_on}
    figures["load_avg_end"] = [round(x, 2) for x in os.getloadavg()]
    figures["total_s"] = round(time.perf_counter() - started, 1)

    inproc1, inproc64 = stats["inprocess_b1"], stats["inprocess_b64"]
    ratios = {
        "grpc_p50_b1_over_inprocess": ratio(stats["grpc_b1"]["p50_ms"], inproc1["p50_ms"]),
        "rest_p50_b1_over_inprocess": ratio(stats["rest_b1"]["p50_ms"], inproc1["p50_ms"]),
        "client_p50_b1_over_inprocess": ratio(stats["client_b1"]["p50_ms"], inproc1["p50_ms"]),
        # The gRPC round trip alone (GetModelStatus, no TensorFlow work) against the same baseline:
        # what Python gRPC adds before the server does anything.
        "grpc_status_p50_over_inprocess_b1": ratio(
            stats["grpc_status_b0"]["p50_ms"], inproc1["p50_ms"]
        ),
        "grpc_p99_b1_over_inprocess": ratio(stats["grpc_b1"]["p99_ms"], inproc1["p99_ms"]),
        "grpc_p50_b64_over_inprocess": ratio(stats["grpc_b64"]["p50_ms"], inproc64["p50_ms"]),
        "rest_p50_b64_over_inprocess": ratio(stats["rest_b64"]["p50_ms"], inproc64["p50_ms"]),
        "throughput_batch64_over_batch1": ratio(
            stats["grpc_b64"]["rows_per_s"], stats["grpc_b1"]["rows_per_s"]
        ),
        "rest_throughput_batch64_over_batch1": ratio(
            stats["rest_b64"]["rows_per_s"], stats["rest_b1"]["rows_per_s"]
        ),
        "batching_on_over_off_throughput_concurrent_b1": ratio(
            load_on["requests_per_s"], load_off["requests_per_s"]
        ),
        "batching_on_over_off_p50_concurrent_b1": ratio(load_on["p50_ms"], load_off["p50_ms"]),
        "batching_on_over_off_p99_concurrent_b1": ratio(load_on["p99_ms"], load_off["p99_ms"]),
    }

    header = f"{'path':<20} {'p50 ms':>8} {'p99 ms':>8} {'server ms':>9} {'req/s':>8} {'rows/s':>9}"
    print(f"\n{header} {'requests':>8}")
    rows_out = [*stats.items(), ("load, batching off", load_off), ("load, batching on", load_on)]
    for name, s in rows_out:
        server_ms = s.get("server_mean_ms")
        print(
            f"{name:<20} {s['p50_ms']:8.3f} {s['p99_ms']:8.3f} "
            f"{'' if server_ms is None else f'{server_ms:.3f}':>9} {s['requests_per_s']:8.1f} "
            f"{s['rows_per_s']:9.1f} {s['requests']:8d}"
        )
    print("(server ms: mean time inside the server, from its own latency histogram)")
    if load_on.get("batches"):
        print(f"batching on: {load_on['mean_requests_per_batch']} requests per batch on average")
    grpc_ratio = ratios["grpc_p50_b1_over_inprocess"]
    rest_ratio = ratios["rest_p50_b1_over_inprocess"]
    b64_ratio = ratios["throughput_batch64_over_batch1"]
    print(
        f"\ngRPC p50 (batch 1) / in-process = {grpc_ratio:.3f}: "
        f"{'meets' if grpc_ratio <= TARGET_GRPC_OVER_INPROCESS else 'misses'} the "
        f"<= {TARGET_GRPC_OVER_INPROCESS} target"
    )
    print(
        f"REST p50 (batch 1) / in-process = {rest_ratio:.3f}: "
        f"{'meets' if rest_ratio <= TARGET_GRPC_OVER_INPROCESS else 'misses'} the "
        f"<= {TARGET_GRPC_OVER_INPROCESS} target"
    )
    print(
        f"rows/s batch 64 / batch 1 (gRPC) = {b64_ratio:.3f}: "
        f"{'meets' if b64_ratio >= TARGET_B64_OVER_B1 else 'misses'} the >= {TARGET_B64_OVER_B1} target"
    )
    print(f"load average start {figures['load_avg_start']}, end {figures['load_avg_end']}")

    params = {
        "model": f"{MODEL} (models.tabular, {args.epochs} epoch(s), spec {SPEC.name})",
        "seconds_per_path_and_round": args.seconds,
        "rounds": args.rounds,
        "warmup_calls": args.warmup,
        "batch_sizes": [SMALL, LARGE],
        "clients": args.clients,
        "load_seconds": args.load_seconds,
        "batching": {
            "max_batch_size": args.max_batch,
            "batch_timeout_micros": args.batch_timeout_us,
            "num_batch_threads": args.batch_threads,
        },
        "grpc_max_threads": 32,
        "server": "python -m aimass.serving.server subprocess on 127.0.0.1",
        "inprocess": "tf.saved_model.load(...).signatures['serving_default'](**tf.constant(rows))",
        "grpc": "PredictionService.Predict with requests built before timing",
        "client": "ServingClient.predict_grpc (builds each request from numpy)",
        "rest": "POST :predict, row format, kept-alive HTTP/1.1, bodies serialized before timing",
        "targets": {
            "grpc_p50_b1_over_inprocess": f"<= {TARGET_GRPC_OVER_INPROCESS}",
            "rest_p50_b1_over_inprocess": f"<= {TARGET_GRPC_OVER_INPROCESS}",
            "throughput_batch64_over_batch1": f">= {TARGET_B64_OVER_B1}",
        },
    }
    _results.write(args.name, ratios=ratios, figures=figures, params=params)
    return 0


if __name__ == "__main__":
    sys.exit(main())
