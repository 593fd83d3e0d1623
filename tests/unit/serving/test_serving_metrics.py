"""Prometheus exposition of the model server's metrics (aimass.serving.metrics, prometheus_client)."""

from __future__ import annotations

import re
import threading

import pytest

from aimass.console.live import Snapshot
from aimass.serving.metrics import ServerMetrics

pytestmark = pytest.mark.unit

# One sample line of the text format: name, optional {labels}, value.
_LABEL = r'[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\\\|\\"|\\n)*"'
_SAMPLE = re.compile(
    rf"(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{{(?P<labels>{_LABEL}(?:,{_LABEL})*)\}})? "
    r"(?P<value>[-+]?(?:\d+(?:\.\d*)?(?:e[-+]?\d+)?|Inf|NaN))"
)
_PAIR = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse(text: str) -> tuple[dict[str, str], dict[tuple[str, frozenset[tuple[str, str]]], float]]:
    """The families' TYPE lines and every sample, checking each line against the grammar."""
    assert text.endswith("\n")
    types: dict[str, str] = {}
    samples: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
    for line in text.splitlines():
        if line.startswith("# HELP "):
            continue
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ")
            assert kind in ("counter", "gauge", "histogram")
            assert name not in types, f"family {name} twice"
            types[name] = kind
            continue
        match = _SAMPLE.fullmatch(line)
        assert match, f"not a valid sample line: {line!r}"
        labels = frozenset(_PAIR.findall(match["labels"] or ""))
        key = (match["name"], labels)
        assert key not in samples, f"duplicate series {line!r}"
        samples[key] = float(match["value"].replace("Inf", "inf"))
    return types, samples


def sample(samples: dict, name: str, **labels: str) -> float:
    return samples[(name, frozenset(labels.items()))]


def test_families_without_samples_keep_their_header_and_gauges_are_computed_at_scrape() -> None:
    values: dict[tuple[str, ...], float] = {("m", "AVAILABLE"): 1.0}
    metrics = ServerMetrics(version_states=lambda: values)
    first = metrics.render()
    assert "# TYPE aimass_serving_requests_total counter\n" in first
    assert "# TYPE :tensorflow:serving:request_count counter\n" in first
    assert 'aimass_serving_model_versions{model="m",state="AVAILABLE"} 1.0\n' in first
    values[("m", "AVAILABLE")] = 0.0
    values[("m", "END")] = 2.0
    second = metrics.render()
    assert 'aimass_serving_model_versions{model="m",state="AVAILABLE"} 0.0\n' in second
    assert 'aimass_serving_model_versions{model="m",state="END"} 2.0\n' in second


def test_every_server_has_its_own_registry() -> None:
    one, two = ServerMetrics(), ServerMetrics()
    one.observe_request(
        api="grpc", method="predict", model="m", version="1", label="", code="OK", seconds=0.1
    )
    _, samples = parse(two.render())
    assert not any(name == "aimass_serving_requests_total" for name, _ in samples)
    _, samples = parse(one.render())
    grpc = {"model": "m", "version": "1", "label": "", "api": "grpc", "method": "predict"}
    assert sample(samples, "aimass_serving_requests_total", **grpc) == 1


def test_label_values_are_escaped() -> None:
    metrics = ServerMetrics()
    odd = 'quote " back \\ new\nline'
    metrics.observe_request(
        api="rest", method="predict", model=odd, version="1", label="", code="OK", seconds=0.1
    )
    text = metrics.render()
    assert 'model="quote \\" back \\\\ new\\nline"' in text
    _, samples = parse(text)
    assert (
        sample(
            samples,
            ":tensorflow:serving:request_count",
            model_name='quote \\" back \\\\ new\\nline',
            status="OK",
        )
        == 1
    )


def test_concurrent_updates_are_all_counted() -> None:
    metrics = ServerMetrics()

    def work() -> None:
        for _ in range(2000):
            metrics.observe_request(
                api="grpc",
                method="predict",
                model="m",
                version="1",
                label="",
                code="OK",
                seconds=0.25,
            )

    threads = [threading.Thread(target=work) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    _, samples = parse(metrics.render())
    labels = {"model": "m", "version": "1", "label": "", "api": "grpc", "method": "predict"}
    assert sample(samples, "aimass_serving_requests_total", **labels) == 16000
    assert sample(samples, "aimass_serving_request_latency_seconds_sum", **labels) == 4000.0
    assert (
        sample(samples, ":tensorflow:serving:request_count", model_name="m", status="OK") == 16000
    )


def test_server_metrics_count_requests_errors_and_latency_by_their_labels() -> None:
    metrics = ServerMetrics(
        version_states=lambda: {("taxi", "AVAILABLE"): 2.0},
        version_labels=lambda: {("taxi", "stable", "1"): 1.0},
    )
    common = {"model": "taxi", "version": "1", "label": "stable"}
    metrics.observe_request(api="grpc", method="predict", code="OK", seconds=0.002, **common)
    metrics.observe_request(api="grpc", method="predict", code="OK", seconds=0.004, **common)
    metrics.observe_request(
        api="rest", method="predict", code="INVALID_ARGUMENT", seconds=0.001, **common
    )
    metrics.observe_request(
        api="grpc", method="status", model="taxi", version="", label="", code="OK", seconds=0.0
    )
    metrics.observe_batch(model="taxi", version="1", rows=5, requests=3, waits=[0.001, 0.0, 0.002])
    types, samples = parse(metrics.render())

    grpc = {**common, "api": "grpc", "method": "predict"}
    rest = {**common, "api": "rest", "method": "predict"}
    assert types["aimass_serving_requests_total"] == "counter"
    assert types["aimass_serving_request_latency_seconds"] == "histogram"
    assert types["aimass_serving_model_versions"] == "gauge"
    assert sample(samples, "aimass_serving_requests_total", **grpc) == 2
    assert sample(samples, "aimass_serving_requests_total", **rest) == 1
    assert (
        sample(samples, "aimass_serving_request_errors_total", **rest, code="INVALID_ARGUMENT") == 1
    )
    assert not any(
        name == "aimass_serving_request_errors_total" and ("api", "grpc") in labels
        for name, labels in samples
    )
    assert sample(samples, "aimass_serving_request_latency_seconds_count", **grpc) == 2
    assert sample(samples, "aimass_serving_request_latency_seconds_sum", **grpc) == pytest.approx(
        0.006
    )
    assert (
        sample(samples, "aimass_serving_request_latency_seconds_bucket", **grpc, le="0.0025") == 1
    )
    assert sample(samples, "aimass_serving_request_latency_seconds_bucket", **grpc, le="+Inf") == 2
    assert (
        sample(
            samples,
            "aimass_serving_requests_total",
            model="taxi",
            version="",
            label="",
            api="grpc",
            method="status",
        )
        == 1
    )
    assert sample(samples, "aimass_serving_model_versions", model="taxi", state="AVAILABLE") == 2
    assert (
        sample(
            samples, "aimass_serving_model_version_label", model="taxi", label="stable", version="1"
        )
        == 1
    )
    assert sample(samples, "aimass_serving_batch_rows_sum", model="taxi", version="1") == 5
    assert sample(samples, "aimass_serving_batch_requests_count", model="taxi", version="1") == 1
    assert (
        sample(samples, "aimass_serving_batch_queue_seconds_count", model="taxi", version="1") == 3
    )

    # TF Serving's own families: Predict only, status by code, latency in microseconds for
    # successful requests.
    tf_count = ":tensorflow:serving:request_count"
    assert sample(samples, tf_count, model_name="taxi", status="OK") == 2
    assert sample(samples, tf_count, model_name="taxi", status="INVALID_ARGUMENT") == 1
    tf_latency = ":tensorflow:serving:request_latency"
    grpc_tf = {"model_name": "taxi", "API": "Predict", "entrypoint": "GRPC"}
    assert sample(samples, f"{tf_latency}_count", **grpc_tf) == 2
    assert sample(samples, f"{tf_latency}_sum", **grpc_tf) == pytest.approx(6000.0)
    assert not any(
        name.startswith(tf_latency) and ("entrypoint", "REST") in labels for name, labels in samples
    )


def test_every_histogram_is_consistent() -> None:
    metrics = ServerMetrics()
    for i in range(50):
        metrics.observe_request(
            api="rest",
            method="predict",
            model="m",
            version="3",
            label="",
            code="OK",
            seconds=i / 100,
        )
    _, samples = parse(metrics.render())
    buckets: dict[tuple[str, frozenset], list[tuple[float, float]]] = {}
    for (name, labels), value in samples.items():
        if name.endswith("_bucket"):
            le = dict(labels)["le"]
            rest = frozenset(p for p in labels if p[0] != "le")
            buckets.setdefault((name[: -len("_bucket")], rest), []).append(
                (float(le.replace("+Inf", "inf")), value)
            )
    assert buckets
    for (family, labels), pairs in buckets.items():
        counts = [count for _, count in sorted(pairs)]
        assert counts == sorted(counts), family
        assert counts[-1] == samples[(f"{family}_count", labels)]


def test_the_console_sampler_reads_the_totals_and_ignores_created_samples() -> None:
    """aimass.console.live parses ``aimass_serving_requests_total`` by that sample name."""
    metrics = ServerMetrics(version_labels=lambda: {("m", "stable", "2"): 1.0})
    for code in ("OK", "OK", "INVALID_ARGUMENT"):
        metrics.observe_request(
            api="rest", method="predict", model="m", version="2", label="", code=code, seconds=0.01
        )
    text = metrics.render()
    assert "aimass_serving_requests_created{" in text  # prometheus_client's, ignored
    snapshot = Snapshot.from_text(text)
    assert snapshot.requests == {("m", "2"): 3.0}
    assert snapshot.errors == {("m", "2"): 1.0}
    assert snapshot.labels == {"m": {"2": "stable"}}
