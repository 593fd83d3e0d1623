"""A flood of stalled connections does not slow normal requests down (issue 16).

100 connections that stall (half in their headers, half in their body) are held open against
a real model server for 10 seconds, re-opened as the server times them out, while a client
sends normal REST predicts back to back. Every normal request must succeed, and their p99
latency during the flood must stay within 3x the steady p99 measured in the same test, before
and after the flood, or within `SLACK_S` of it: a steady p99 under a millisecond on a shared
2-core CI machine makes the bare ratio measure the OS scheduler (CI once saw 4.8 ms against
0.9 ms). A server that lets stalled connections hold its workers answers in seconds, or not
at all, so the slack does not hide the fault this test is for.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import numpy as np
import pytest
from servingkit import MODEL, ROW, Served, post, request_head, served

pytestmark = [pytest.mark.integration, pytest.mark.slow]

STALLED = 100
FLOOD_S = 10.0
STEADY_S = 3.0
SLACK_S = 0.025
PREDICT = f"/v1/models/{MODEL}:predict"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    with served(tmp_path_factory.mktemp("flood")) as running:  # the default limits
        running.assert_healthy()
        yield running


def _stall(port: int, index: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    if index % 2:
        sock.sendall(request_head("POST", PREDICT, "Content-Length: 100") + b"0123456789")
    else:
        sock.sendall(f"POST {PREDICT} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Le".encode())
    return sock


class Flood:
    """Keeps `STALLED` stalled connections open, opening a new one for each the server closes."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.opened = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Flood:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join(10)

    def _run(self) -> None:
        socks = []
        for i in range(STALLED):
            socks.append(_stall(self.port, i))
        self.opened = STALLED
        while not self._stop.wait(0.2):
            for i, sock in enumerate(socks):
                sock.setblocking(False)
                try:
                    sock.recv(65536)  # an answer (408) or a close: the server let it go
                    closed = True
                except BlockingIOError:
                    closed = False
                except OSError:
                    closed = True
                if closed:
                    sock.close()
                    socks[i] = _stall(self.port, i)
                    self.opened += 1
        for sock in socks:
            sock.close()


def _predicts(port: int, seconds: float) -> list[float]:
    latencies = []
    body = {"instances": [ROW]}
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        started = time.perf_counter()
        status, answer = post(port, PREDICT, body)
        latencies.append(time.perf_counter() - started)
        assert status == 200, answer
    return latencies


def test_normal_requests_keep_their_latency_during_a_flood_of_stalled_connections(
    server: Served,
) -> None:
    _predicts(server.rest_port, 1.0)  # warm up
    before = _predicts(server.rest_port, STEADY_S)
    threads = server.threads()
    with Flood(server.rest_port) as flood:
        time.sleep(0.5)  # all 100 are open
        during = _predicts(server.rest_port, FLOOD_S)
        assert server.threads() <= threads + 2  # stalled connections hold no thread
        server.assert_healthy()
    after = _predicts(server.rest_port, STEADY_S)

    steady_p99 = float(np.percentile(before + after, 99))
    flood_p99 = float(np.percentile(during, 99))
    assert flood.opened >= STALLED
    assert len(during) > 100
    assert flood_p99 <= max(3 * steady_p99, steady_p99 + SLACK_S), (
        f"p99 {flood_p99 * 1e3:.1f} ms during the flood, {steady_p99 * 1e3:.1f} ms steady"
    )
