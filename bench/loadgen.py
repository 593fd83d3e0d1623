"""A steady, bounded stream of gRPC and REST predict requests, for rollouts under load.

``LoadGenerator`` runs one thread per API (gRPC and REST), each sending batch-1 requests
for the ``stable`` label at a fixed rate (open loop: a slow answer delays the next send,
but never adds concurrency, so the load stays bounded). Every request is recorded with its
start time, API, outcome and latency; ``mark(phase)`` names what the platform is doing
from now on ("before", "rollout", "after", ...), so a report splits counts, failures and
p50/p99 latency by phase. Used by ``bench/bench_rollout.py`` and by the zero-dropped-
requests integration test.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from aimass.platform.errors import ServingError
from aimass.serving.client import ServingClient
from aimass.serving.config import server_config, write_config

APIS = ("grpc", "rest")


@dataclass(frozen=True)
class Sample:
    """One request: when it started, through which API and phase, how it ended and how long."""

    started: float
    api: str
    phase: str
    ok: bool
    latency_ms: float
    error: str = ""


def _percentile(values: list[float], q: float) -> float:
    return round(float(np.percentile(values, q)), 3) if values else float("nan")


class LoadGenerator:
    """Send ``rate_per_s`` requests per second per API to ``model``'s ``label``.

    Args:
        grpc_target, rest_url: the model server.
        model: the model name.
        rows: feature arrays; request ``i`` sends row ``i % n`` (gRPC as tensors, REST as
            an ``instances`` row, NaN as null).
        rate_per_s: requests per second per API.
        label: the version label every request asks for.
        timeout_s: per-request deadline; a slower answer counts as a failure.
    """

    def __init__(
        self,
        grpc_target: str,
        rest_url: str,
        model: str,
        rows: dict[str, np.ndarray],
        *,
        rate_per_s: float = 20.0,
        label: str = "stable",
        timeout_s: float = 5.0,
    ) -> None:
        if rate_per_s <= 0:
            raise ValueError(f"rate_per_s={rate_per_s}; use a positive rate")
        self._client = ServingClient(grpc_target, rest_url, timeout=timeout_s)
        self.model = model
        self.label = label
        self.timeout_s = timeout_s
        self.interval = 1.0 / rate_per_s
        self._rows = [
            {k: np.asarray(v)[i : i + 1] for k, v in rows.items()}
            for i in range(len(next(iter(rows.values()))))
        ]
        self._instances = [
            {
                k: (
                    None
                    if isinstance(v[0], float | np.floating) and np.isnan(v[0])
                    else v[0].decode()
                    if isinstance(v[0], bytes)
                    else v[0].item()
                    if hasattr(v[0], "item")
                    else v[0]
                )
                for k, v in row.items()
            }
            for row in self._rows
        ]
        self._phase = "before"
        self._samples: list[Sample] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def mark(self, phase: str) -> None:
        """Requests started from now on belong to ``phase``."""
        self._phase = phase

    def start(self) -> LoadGenerator:
        for api in APIS:
            thread = threading.Thread(
                target=self._loop, args=(api,), name=f"load-{api}", daemon=True
            )
            thread.start()
            self._threads.append(thread)
        return self

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=self.timeout_s + 5)
        self._client.close()

    def __enter__(self) -> LoadGenerator:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _send(self, api: str, index: int) -> None:
        i = index % len(self._rows)
        if api == "grpc":
            self._client.predict_grpc(
                self.model, self._rows[i], label=self.label, timeout=self.timeout_s
            )
        else:
            self._client.predict_rest(self.model, [self._instances[i]], label=self.label)

    def _loop(self, api: str) -> None:
        index = 0
        next_at = time.perf_counter()
        while not self._stop.is_set():
            phase = self._phase
            started = time.perf_counter()
            error = ""
            try:
                self._send(api, index)
            except (ServingError, OSError) as exc:
                error = str(exc)[:300]
            latency = (time.perf_counter() - started) * 1000
            with self._lock:
                self._samples.append(Sample(started, api, phase, not error, latency, error))
            index += 1
            next_at += self.interval
            delay = next_at - time.perf_counter()
            if delay > 0:
                self._stop.wait(delay)
            else:
                next_at = time.perf_counter()  # fell behind: do not burst to catch up

    @property
    def samples(self) -> list[Sample]:
        with self._lock:
            return list(self._samples)

    def report(self) -> dict[str, dict[str, Any]]:
        """Per phase (in order of first use) and API: requests, failures, p50/p99 ms."""
        out: dict[str, dict[str, Any]] = {}
        for sample in self.samples:
            out.setdefault(sample.phase, {})
        for phase in out:
            mine = [s for s in self.samples if s.phase == phase]
            row: dict[str, Any] = {}
            for api in (*APIS, "all"):
                picked = [s for s in mine if api in (s.api, "all")]
                ok = [s.latency_ms for s in picked if s.ok]
                row[api] = {
                    "requests": len(picked),
                    "failed": sum(not s.ok for s in picked),
                    "p50_ms": _percentile(ok, 50),
                    "p99_ms": _percentile(ok, 99),
                }
            errors = sorted({s.error for s in mine if not s.ok})
            if errors:
                row["errors"] = errors[:5]
            out[phase] = row
        return out

    @property
    def failed(self) -> int:
        return sum(not s.ok for s in self.samples)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_model_server(
    config: Path, log_path: Path, *, timeout_s: float = 180.0
) -> tuple[subprocess.Popen[bytes], ServingClient]:
    """``python -m aimass.serving.server`` on free loopback ports, serving ``config``.

    The config starts empty (the rollout adds the model). Returns the process and a client
    once the server answers; the caller terminates the process.
    """
    write_config(config, server_config([]))
    grpc_port, rest_port = _free_port(), _free_port()
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "aimass.serving.server",
                f"--model_config_file={config}",
                f"--port={grpc_port}",
                f"--rest_api_port={rest_port}",
                "--file_system_poll_wait_seconds=1",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    client = ServingClient(f"127.0.0.1:{grpc_port}", f"http://127.0.0.1:{rest_port}")
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            client.reload_config(server_config([]), timeout=2)
            return proc, client
        except ServingError:
            if proc.poll() is not None or time.monotonic() > deadline:
                client.close()
                proc.kill()
                raise ServingError(
                    f"the model server did not come up in {timeout_s:.0f} s; see {log_path}"
                ) from None
            time.sleep(0.5)
