"""The console's live traffic: exposition parsing, snapshots, rates and the history ring."""

from __future__ import annotations

import math
import time
from datetime import UTC, datetime, timedelta

import pytest

from aimass.console.live import (
    MetricsHistory,
    Snapshot,
    histogram_quantile,
    parse_exposition,
    rates,
)
from aimass.serving.metrics import TF_SERVING_LATENCY_BUCKETS_US, ServerMetrics

pytestmark = pytest.mark.unit

T0 = datetime(2026, 11, 2, 12, 0, tzinfo=UTC)
LABELS: dict[tuple[str, ...], float] = {
    ("m", "stable", "2"): 1.0,
    ("m", "canary", "3"): 1.0,
    ("m", "previous", "1"): 1.0,
}


def server(labels: dict[tuple[str, ...], float] | None = None) -> ServerMetrics:
    return ServerMetrics(version_labels=lambda: dict(LABELS if labels is None else labels))


def predict(
    metrics: ServerMetrics,
    n: int,
    seconds: float,
    *,
    version: str = "2",
    code: str = "OK",
    label: str = "",
    api: str = "rest",
    model: str = "m",
) -> None:
    for _ in range(n):
        metrics.observe_request(
            api=api,
            method="predict",
            model=model,
            version=version,
            label=label,
            code=code,
            seconds=seconds,
        )


def snap(metrics: ServerMetrics, seconds: float = 0.0) -> Snapshot:
    return Snapshot.from_text(metrics.render(), T0 + timedelta(seconds=seconds))


def test_parse_exposition_escapes_special_values_timestamps_and_comments() -> None:
    text = "\n".join(
        [
            "# HELP x_total A help text with \\n an escape.",
            "# TYPE x_total counter",
            'x_total{a="back\\\\slash",b="q\\"uote",c="line\\nnext"} 3 1700000000000',
            'x_total{a="brace}, comma",b="",} +Inf',
            "  y NaN  ",
            "z -Inf 1700000000000",
            'h_bucket{le="+Inf"} 7 # {trace_id="abc"} 0.5 1700000000.0',
            "not a sample line",
            "# EOF",
        ]
    )
    samples = parse_exposition(text)
    assert set(samples) == {"x_total", "y", "z", "h_bucket"}
    first, second = samples["x_total"]
    assert first == ({"a": "back\\slash", "b": 'q"uote', "c": "line\nnext"}, 3.0)
    assert second == ({"a": "brace}, comma", "b": ""}, math.inf)
    assert math.isnan(samples["y"][0][1])
    assert samples["z"] == [({}, -math.inf)]
    assert samples["h_bucket"] == [({"le": "+Inf"}, 7.0)]


def test_parse_exposition_round_trips_server_metrics_and_is_fast() -> None:
    metrics = server()
    for version in map(str, range(120)):
        predict(metrics, 1, 0.003, version=version, label='odd "la\\bel"\n')
    text = metrics.render()
    assert text.count("\n") > 2000
    elapsed = math.inf
    for _ in range(3):  # the best of three: a loaded test machine should not fail this
        started = time.perf_counter()
        samples = parse_exposition(text)
        elapsed = min(elapsed, time.perf_counter() - started)
    counts = samples["aimass_serving_requests_total"]
    assert len(counts) == 120
    assert counts[0][0]["label"] == 'odd "la\\bel"\n'
    assert elapsed < 0.1, f"parsing {text.count(chr(10))} lines took {elapsed:.3f} s"


def test_rates_per_version_with_labels_error_rate_and_interpolated_quantiles() -> None:
    metrics = server()
    predict(metrics, 10, 0.003)
    predict(metrics, 4, 0.2, version="3")
    metrics.observe_request(
        api="rest", method="metadata", model="m", version="2", label="", code="OK", seconds=9.0
    )
    prev = snap(metrics)
    # 100 Predicts on v2 over 10 s (stable label named or not, REST and gRPC), 5 failed.
    predict(metrics, 60, 0.003, label="stable")
    predict(metrics, 35, 0.03, api="grpc")
    predict(metrics, 5, 0.03, code="INTERNAL")
    # 20 on v3, all failing; metadata calls are not traffic.
    predict(metrics, 20, 0.2, version="3", code="UNAVAILABLE")
    for _ in range(50):
        metrics.observe_request(
            api="rest", method="metadata", model="m", version="2", label="", code="OK", seconds=9.0
        )
    cur = snap(metrics, 10)

    points = rates(prev, cur)["m"]
    assert set(points) == {"v2 (stable)", "v3 (canary)", "v1 (previous)"}
    stable, canary, previous = points["v2 (stable)"], points["v3 (canary)"], points["v1 (previous)"]
    assert stable.at == cur.at
    assert stable.rps == pytest.approx(10.0)
    assert stable.error_rate == pytest.approx(0.05)
    # rank 50 of 100: 60 in (2.5, 5] ms -> 2.5 + 2.5 * 50/60; rank 99: 40 in (25, 50] ms.
    assert stable.p50_ms == pytest.approx(2.5 + 2.5 * 50 / 60)
    assert stable.p99_ms == pytest.approx(25 + 25 * 39 / 40)
    assert canary.rps == pytest.approx(2.0)
    assert canary.error_rate == pytest.approx(1.0)
    assert canary.p50_ms == pytest.approx(100 + 150 * 10 / 20)
    assert canary.p99_ms == pytest.approx(100 + 150 * 19.8 / 20)
    # Labelled but never asked: a flat line, no ratio or latency.
    assert (previous.rps, previous.error_rate, previous.p50_ms, previous.p99_ms) == (
        0.0,
        None,
        None,
        None,
    )


def test_snapshot_reads_cumulative_counts_and_version_labels() -> None:
    metrics = server({("m", "stable", "2"): 1.0, ("m", "previous", "2"): 1.0})
    predict(metrics, 3, 0.004)
    predict(metrics, 1, 0.004, code="NOT_FOUND", version="")
    snapshot = snap(metrics)
    assert snapshot.requests == {("m", "2"): 3.0, ("m", ""): 1.0}
    assert snapshot.errors == {("m", ""): 1.0}
    assert snapshot.buckets[("m", "2")][0.005] == 3.0
    assert snapshot.buckets[("m", "2")][math.inf] == 3.0
    assert snapshot.labels == {"m": {"2": "stable, previous"}}
    later = snap(metrics, 1)
    assert set(rates(snapshot, later)["m"]) == {"v2 (stable, previous)", "unresolved"}


def test_no_requests_in_the_interval_and_not_later_snapshots() -> None:
    metrics = server({})
    predict(metrics, 5, 0.003, version="7")
    prev, cur = snap(metrics), snap(metrics, 10)
    point = rates(prev, cur)["m"]["v7"]
    assert (point.rps, point.error_rate, point.p50_ms, point.p99_ms) == (0.0, None, None, None)
    assert rates(cur, prev) == {}


def test_latency_beyond_the_last_bucket_reports_the_highest_finite_bound() -> None:
    metrics = server({})
    prev = snap(metrics)
    predict(metrics, 90, 0.001)
    predict(metrics, 10, 60.0)
    point = rates(prev, snap(metrics, 1))["m"]["v2"]
    assert point.p50_ms == pytest.approx(0.5 + 0.5 * 50 / 90)  # rank 50 of the 90 in (0.5, 1]
    assert point.p99_ms == pytest.approx(10_000.0)  # rank 99 is past 10 s: the top finite bound
    assert histogram_quantile(0.99, {0.5: 0.0, 10.0: 0.0, math.inf: 5.0}) == 10.0
    assert histogram_quantile(0.5, {0.5: 0.0, math.inf: 0.0}) is None
    assert histogram_quantile(0.5, {0.5: 3.0}) is None  # no +Inf bucket


def test_a_counter_reset_counts_from_zero() -> None:
    before = server()
    predict(before, 500, 0.003)
    predict(before, 50, 0.003, code="INTERNAL")
    prev = snap(before)
    restarted = server()  # the server restarted: its counters start again
    predict(restarted, 18, 0.03)
    predict(restarted, 2, 0.03, code="INTERNAL")
    point = rates(prev, snap(restarted, 10))["m"]["v2 (stable)"]
    assert point.rps == pytest.approx(2.0)
    assert point.error_rate == pytest.approx(0.1)
    assert point.p50_ms == pytest.approx(25 + 25 * 10 / 20)


def test_tf_serving_families_are_the_fallback() -> None:
    metrics = server()
    predict(metrics, 10, 0.003)
    prev_text = metrics.render()
    predict(metrics, 40, 0.003, version="3")
    predict(metrics, 10, 0.5, code="INVALID_ARGUMENT")  # TF Serving: no latency for errors
    cur_text = metrics.render()

    def tf_only(text: str) -> str:
        return "\n".join(line for line in text.splitlines() if "aimass_serving_" not in line)

    prev = Snapshot.from_text(tf_only(prev_text), T0)
    cur = Snapshot.from_text(tf_only(cur_text), T0 + timedelta(seconds=5))
    assert cur.labels == {}
    point = rates(prev, cur)["m"]["all versions"]
    assert point.rps == pytest.approx(10.0)
    assert point.error_rate == pytest.approx(0.2)
    bounds = TF_SERVING_LATENCY_BUCKETS_US
    upper = next(i for i, bound in enumerate(bounds) if bound >= 3000)
    low, high = bounds[upper - 1] / 1000, bounds[upper] / 1000  # microseconds -> ms
    assert point.p50_ms == pytest.approx(low + (high - low) * 0.5)
    # With the aimass families present they win: per version, not "all versions".
    assert set(rates(Snapshot.from_text(prev_text, T0), snap(metrics, 5))["m"]) == {
        "v2 (stable)",
        "v3 (canary)",
        "v1 (previous)",
    }


def test_prometheus_client_style_names_and_created_samples() -> None:
    def text(requests: int, errors: int) -> str:
        labels = 'model="m",version="4",label="",api="rest",method="predict"'
        return "\n".join(
            [
                "# TYPE aimass_serving_requests counter",
                f"aimass_serving_requests_total{{{labels}}} {requests}.0",
                f"aimass_serving_requests_created{{{labels}}} 1.7e9",
                f'aimass_serving_request_errors_total{{{labels},code="INTERNAL"}} {errors}.0',
                f'aimass_serving_request_errors_created{{{labels},code="INTERNAL"}} 1.7e9',
                f'aimass_serving_request_latency_seconds_bucket{{{labels},le="0.01"}} {requests}.0',
                f'aimass_serving_request_latency_seconds_bucket{{{labels},le="+Inf"}} {requests}.0',
                "some_other_family_total 12",
                "# EOF",
            ]
        )

    prev = Snapshot.from_text(text(10, 1), T0)
    point = rates(prev, Snapshot.from_text(text(30, 3), T0 + timedelta(seconds=4)))["m"]["v4"]
    assert point.rps == pytest.approx(5.0)
    assert point.error_rate == pytest.approx(0.1)
    assert point.p50_ms == pytest.approx(5.0)


def test_history_is_a_bounded_ring_keyed_by_the_newest_labels() -> None:
    labels: dict[tuple[str, ...], float] = {("m", "canary", "3"): 1.0}
    metrics = server(labels)
    history = MetricsHistory(maxlen=3)
    assert history.series("m") == {} and history.latest("m") == {}
    for step in range(6):
        predict(metrics, 10 * (step + 1), 0.003, version="3")
        history.observe(snap(metrics, 10 * step))
    history.observe(snap(metrics, 10))  # older than the newest: ignored
    assert len(history) == 3
    assert history.models() == ["m"]
    series = history.series("m")
    assert list(series) == ["v3 (canary)"]
    assert [p.rps for p in series["v3 (canary)"]] == pytest.approx([4.0, 5.0, 6.0])
    assert history.latest("m")["v3 (canary)"].rps == pytest.approx(6.0)
    assert history.last_sample_at == T0 + timedelta(seconds=50)
    # Promoted: the whole line now reads as stable.
    labels.clear()
    labels[("m", "stable", "3")] = 1.0
    history.observe(snap(metrics, 60))
    assert list(history.series("m")) == ["v3 (stable)"]
    assert len(history.series("m")["v3 (stable)"]) == 3
