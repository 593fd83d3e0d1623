"""The console's sampler scrapes a real HTTP metrics endpoint from its own thread."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from testkit import free_port

from aimass.console.live import MetricsSampler
from aimass.serving.metrics import CONTENT_TYPE, METRICS_PATH, ServerMetrics

pytestmark = pytest.mark.integration


@pytest.fixture
def metrics_url() -> Iterator[str]:
    """A server whose exposition grows by 9 good and 1 failed v2 Predicts per scrape."""
    metrics = ServerMetrics(version_labels=lambda: {("m", "stable", "2"): 1.0})

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path != METRICS_PATH:
                self.send_error(404)
                return
            for code in ["OK"] * 9 + ["INTERNAL"]:
                metrics.observe_request(
                    api="rest",
                    method="predict",
                    model="m",
                    version="2",
                    label="",
                    code=code,
                    seconds=0.003,
                )
            body = metrics.render().encode()
            self.send_response(200)
            self.send_header("Content-Type", CONTENT_TYPE)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join(5)


def sampler_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "aimass-metrics-sampler"]


def test_the_sampler_thread_fills_the_history(metrics_url: str) -> None:
    sampler = MetricsSampler(metrics_url, interval_s=0.2)
    for _ in range(5):
        sampler.start()  # idempotent: the console calls it on every request
    assert len(sampler_threads()) == 1
    deadline = time.monotonic() + 15
    while len(sampler.history) < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    sampler.stop()
    assert not sampler_threads()

    series = sampler.history.series("m")
    assert list(series) == ["v2 (stable)"]
    points = series["v2 (stable)"]
    assert len(points) >= 3
    assert [p.at for p in points] == sorted(p.at for p in points)
    for point in points:
        assert 0 < point.rps < 100  # 10 requests per ~0.2 s
        assert point.error_rate == pytest.approx(0.1)
        assert point.p50_ms is not None and 2.5 < point.p50_ms <= 5.0
        assert point.p99_ms is not None and 2.5 < point.p99_ms <= 5.0
    assert sampler.history.latest("m")["v2 (stable)"] == points[-1]


def test_ensure_recent_gives_a_point_on_the_first_view(metrics_url: str) -> None:
    sampler = MetricsSampler(metrics_url + "/", interval_s=10)
    started = time.monotonic()
    sampler.ensure_recent(30)
    assert time.monotonic() - started >= 0.9  # two samples about 1 s apart
    assert len(sampler.history) == 1
    point = sampler.history.latest("m")["v2 (stable)"]
    assert point.rps == pytest.approx(10.0, rel=0.3)
    sampler.ensure_recent(30)  # recent enough: no new sample
    assert len(sampler.history) == 1
    sampler.ensure_recent(0)
    assert len(sampler.history) == 2


def test_an_unreachable_server_gives_no_exception_and_no_points(
    caplog: pytest.LogCaptureFixture,
) -> None:
    sampler = MetricsSampler(f"http://127.0.0.1:{free_port()}", interval_s=0.05, timeout_s=0.5)
    with caplog.at_level(logging.WARNING, logger="aimass.console.live"):
        assert sampler.scrape() is None
        assert sampler.sample_once() is None
        sampler.ensure_recent(0)
        sampler.start()
        time.sleep(0.5)
        sampler.stop()
    assert len(sampler.history) == 0
    assert sampler.history.last_sample_at is None
    assert sampler.history.series("m") == {}
    warnings = [r for r in caplog.records if r.name == "aimass.console.live"]
    assert len(warnings) == 1  # at most once a minute
