"""Prometheus text exposition of the model server's metrics (aimass.serving.metrics)."""

from __future__ import annotations

import re
import threading

import pytest

from aimass.platform.errors import ConfigError
from aimass.serving.metrics import (
    CallbackGauge,
    Counter,
    Histogram,
    Registry,
    ServerMetrics,
    escape_label_value,
    format_value,
)

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


def test_counter_renders_sorted_series_with_escaped_labels() -> None:
    registry = Registry()
    counter = registry.register(Counter("things_total", "Things\nseen \\ here.", ("kind",)))
    counter.inc(("b",))
    counter.inc(("a",), 2.5)
    counter.inc(('quote " back \\ new\nline',))
    assert registry.render() == (
        "# HELP things_total Things\\nseen \\\\ here.\n"
        "# TYPE things_total counter\n"
        'things_total{kind="a"} 2.5\n'
        'things_total{kind="b"} 1\n'
        'things_total{kind="quote \\" back \\\\ new\\nline"} 1\n'
    )
    _, samples = parse(registry.render())
    assert sample(samples, "things_total", kind='quote \\" back \\\\ new\\nline') == 1


def test_counter_rejects_bad_use() -> None:
    counter = Counter("c_total", "c", ("a", "b"))
    with pytest.raises(ValueError, match="cannot decrease"):
        counter.inc(("x", "y"), -1)
    with pytest.raises(ValueError, match="takes labels"):
        counter.inc(("only one",))
    assert counter.value(("x", "y")) == 0


@pytest.mark.parametrize(
    ("name", "labels"),
    [("9starts_with_digit", ()), ("has-dash", ()), ("ok", ("le",)), ("ok", ("__reserved",))],
)
def test_invalid_names_are_refused(name: str, labels: tuple[str, ...]) -> None:
    with pytest.raises(ConfigError):
        Counter(name, "help", labels)


def test_a_registry_refuses_a_name_twice() -> None:
    registry = Registry()
    registry.register(Counter("x_total", "x", ()))
    with pytest.raises(ConfigError, match="twice"):
        registry.register(Counter("x_total", "x", ()))


def test_histogram_buckets_are_cumulative_and_le_inclusive() -> None:
    registry = Registry()
    hist = registry.register(Histogram("lat_seconds", "latency", ("api",), [0.1, 1.0, 0.5]))
    for value in (0.05, 0.1, 0.3, 1.0, 7.0):
        hist.observe(("grpc",), value)
    assert registry.render() == (
        "# HELP lat_seconds latency\n"
        "# TYPE lat_seconds histogram\n"
        'lat_seconds_bucket{api="grpc",le="0.1"} 2\n'
        'lat_seconds_bucket{api="grpc",le="0.5"} 3\n'
        'lat_seconds_bucket{api="grpc",le="1.0"} 4\n'
        'lat_seconds_bucket{api="grpc",le="+Inf"} 5\n'
        'lat_seconds_sum{api="grpc"} 8.45\n'
        'lat_seconds_count{api="grpc"} 5\n'
    )
    with pytest.raises(ConfigError, match="distinct"):
        Histogram("h", "h", (), [1.0, 1.0])


def test_families_without_samples_keep_their_header_and_gauges_are_computed_at_scrape() -> None:
    values: dict[tuple[str, ...], float] = {("m", "AVAILABLE"): 1.0}
    registry = Registry()
    registry.register(Counter("none_total", "nothing yet", ()))
    registry.register(CallbackGauge("versions", "versions", ("model", "state"), lambda: values))
    first = registry.render()
    assert "# TYPE none_total counter\n# HELP versions" in first
    assert 'versions{model="m",state="AVAILABLE"} 1\n' in first
    values[("m", "AVAILABLE")] = 0.0
    values[("m", "END")] = 2.0
    second = registry.render()
    assert 'versions{model="m",state="AVAILABLE"} 0\n' in second
    assert 'versions{model="m",state="END"} 2\n' in second


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (3.0, "3"),
        (0.25, "0.25"),
        (float("inf"), "+Inf"),
        (float("-inf"), "-Inf"),
        (2**60, "1.152921504606847e+18"),
    ],
)
def test_format_value(value: float, text: str) -> None:
    assert format_value(value) == text
    assert format_value(float("nan")) == "NaN"
    assert escape_label_value('a"b') == 'a\\"b'


def test_concurrent_updates_are_all_counted() -> None:
    counter = Counter("n_total", "n", ("t",))
    hist = Histogram("h_seconds", "h", ("t",), [0.5])

    def work() -> None:
        for _ in range(2000):
            counter.inc(("x",))
            hist.observe(("x",), 0.25)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert counter.value(("x",)) == 16000
    cumulative, total = hist.snapshot(("x",))
    assert cumulative == [16000, 16000] and total == pytest.approx(4000.0)


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
