"""A real model server process for the abuse tests, and raw HTTP that well-behaved clients never send.

``served(...)`` starts ``python -m aimass.serving.server`` on free loopback ports serving the
tiny taxi model (testkit.save_tiny_model), waits until it answers and stops it with SIGTERM.
``raw_http`` speaks HTTP/1.1 over a plain socket, so a test can send a bad Content-Length,
stop half-way through a body, or declare 50 MB and send none of it.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from testkit import free_port, save_tiny_model

from aimass.platform.errors import ServingError
from aimass.serving.client import ServingClient
from aimass.serving.config import model_config, server_config, write_config

MODEL = "taxi"
ROW = {"fare": 10.0, "company": "Flash Cab", "trip_start_hour": 5}
FEATURES = {
    "fare": np.array([10.0, 0.0], dtype=np.float32),
    "company": np.array([b"Flash Cab", b""], dtype=object),
    "trip_start_hour": np.array([5, 23], dtype=np.int64),
}


@dataclass
class Served:
    proc: subprocess.Popen[bytes]
    client: ServingClient
    grpc_port: int
    rest_port: int
    root: Path
    log_path: Path
    start_rss_mb: float = 0.0  # set by a test that wants to compare

    @property
    def grpc_target(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    def rss_mb(self, field: str = "VmRSS") -> float:
        """The server's resident memory (``VmHWM``: its peak so far), MiB."""
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
        raise AssertionError(f"no {field} for pid {self.proc.pid}")

    def threads(self) -> int:
        return len(os.listdir(f"/proc/{self.proc.pid}/task"))

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]

    def assert_healthy(self) -> None:
        """A normal request still answers, over REST and gRPC, and the process lives."""
        assert self.proc.poll() is None, f"the server died:\n{self.log()}"
        status, answer = post(self.rest_port, f"/v1/models/{MODEL}:predict", {"instances": [ROW]})
        assert status == 200 and len(answer["predictions"]) == 1, (status, answer)
        out = self.client.predict_grpc(MODEL, FEATURES, timeout=10)
        assert out["probabilities"].shape == (2,)


@contextlib.contextmanager
def served(
    root: Path,
    *args: str,
    versions: tuple[int, ...] = (1,),
    models: dict[str, Path] | None = None,
) -> Iterator[Served]:
    """The model server on the tiny model, with extra flags `args`; stopped on exit.

    ``models`` (name -> SavedModel folder) serves those instead, each as version 1.
    """
    if models:
        entries = []
        for name, export in models.items():
            if not (root / "models" / name / "1").exists():
                shutil.copytree(export, root / "models" / name / "1")
            entries.append(model_config(name, root / "models" / name, [1], {}))
        ready = next(iter(models))
    else:
        base = root / "models" / MODEL
        for version in versions:
            if not (base / str(version)).exists():
                save_tiny_model(base / str(version), 0.1 * version)
        entries = [model_config(MODEL, base, list(versions), {})]
        ready = MODEL
    config = write_config(root / "models.config", server_config(entries))
    grpc_port, rest_port = free_port(), free_port()
    log_path = root / "server.log"
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "aimass.serving.server",
                f"--model_config_file={config}",
                f"--port={grpc_port}",
                f"--rest_api_port={rest_port}",
                "--file_system_poll_wait_seconds=0",
                *args,
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
        )
    client = ServingClient(f"127.0.0.1:{grpc_port}", f"http://127.0.0.1:{rest_port}")
    server = Served(proc, client, grpc_port, rest_port, root, log_path)
    try:
        deadline = time.monotonic() + 180  # TensorFlow imports slowly on a busy machine
        while True:
            if proc.poll() is not None:
                pytest.fail(f"model server exited with {proc.returncode}:\n{server.log()}")
            try:
                client.wait_available(ready, 1 if models else versions[-1], timeout_s=1, poll_s=0.2)
                break
            except ServingError:
                if time.monotonic() > deadline:
                    pytest.fail(f"model server did not come up:\n{server.log()}")
        yield server
    finally:
        client.close()
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# --------------------------------------------------------------------------- raw HTTP


def read_response(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """One HTTP/1.1 response from `sock`: status, lower-cased headers, body."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"connection closed before a response: {data[:200]!r}")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.strip().lower(): v.strip() for k, v in (line.split(":", 1) for line in lines[1:])}
    length = int(headers.get("content-length", "0"))
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return status, headers, body[:length]


def raw_http(
    port: int, data: bytes, *, timeout: float = 15
) -> tuple[int, dict[str, str], Any, float]:
    """Send `data` as is on a new connection; (status, headers, JSON body, seconds to answer)."""
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(data)
        status, headers, body = read_response(sock)
    answer = json.loads(body) if body else None
    return status, headers, answer, time.monotonic() - started


def post(port: int, path: str, body: Any, *, raw: bytes | None = None) -> tuple[int, Any]:
    """POST JSON (or `raw` bytes) on a new connection; (status, JSON answer)."""
    payload = raw if raw is not None else json.dumps(body).encode()
    head = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(payload)}\r\n\r\n"
    ).encode()
    status, _, answer, _ = raw_http(port, head + payload)
    return status, answer


def request_head(method: str, path: str, *headers: str) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", *headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()
