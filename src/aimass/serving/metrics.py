"""The model server's Prometheus metrics, through ``prometheus_client`` (one registry per server).

The model server (`aimass.serving.server`) serves `ServerMetrics.render()` at
``GET /monitoring/prometheus/metrics``, the path TF Serving uses, in the text format 0.0.4.

Families: ``aimass_serving_requests_total``, ``aimass_serving_request_errors_total`` (by gRPC
code), ``aimass_serving_request_latency_seconds`` (histogram), the batching histograms, and the
gauges ``aimass_serving_model_versions`` and ``aimass_serving_model_version_label``, computed at
scrape time by a collector. TF Serving's own ``:tensorflow:serving:request_latency`` is a
``prometheus_client`` histogram too (names may start with ``:``). Its counter
``:tensorflow:serving:request_count`` is not: ``prometheus_client`` exposes every counter
family as ``<name>_total`` (its ``TYPE`` line included), and TF Serving's sample has no suffix,
so that one family is counted here and written in TF Serving's exact form after the registry's
output. Dashboards and checks written for the official image then read this server too.

On the request path an update is one dict lookup of the cached label children and
``prometheus_client``'s own short lock per value; rendering happens at scrape time.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Mapping, Sequence

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4
METRICS_PATH = "/monitoring/prometheus/metrics"

# Seconds; covers a sub-millisecond in-memory call up to a request stuck behind a reload.
LATENCY_BUCKETS_S = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)
# TF Serving's request_latency buckets (microseconds): 10 * 1.8**i for i in 0..32.
TF_SERVING_LATENCY_BUCKETS_US = tuple(10.0 * 1.8**i for i in range(33))
BATCH_ROWS_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)

REQUEST_LABELS = ("model", "version", "label", "api", "method")
TF_REQUEST_COUNT = ":tensorflow:serving:request_count"

Labels = tuple[str, ...]


def escape_label_value(value: str) -> str:
    """A label value as the text format writes it between double quotes."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


class _VersionGauges(Collector):
    """``aimass_serving_model_versions`` and ``..._version_label``, asked for at scrape time."""

    def __init__(
        self,
        version_states: Callable[[], Mapping[Labels, float]],
        version_labels: Callable[[], Mapping[Labels, float]],
    ) -> None:
        self._states = version_states
        self._labels = version_labels

    def collect(self) -> Iterator[Metric]:
        states = GaugeMetricFamily(
            "aimass_serving_model_versions",
            "Versions of each model per state (START, LOADING, AVAILABLE, END).",
            labels=("model", "state"),
        )
        for labels, value in sorted(self._states().items()):
            states.add_metric(labels, value)
        yield states
        pointers = GaugeMetricFamily(
            "aimass_serving_model_version_label",
            "1 for each version label and the version it points at.",
            labels=("model", "label", "version"),
        )
        for labels, value in sorted(self._labels().items()):
            pointers.add_metric(labels, value)
        yield pointers


class _TfRequestCount:
    """TF Serving's ``:tensorflow:serving:request_count{model_name,status}``, written exactly."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._values: dict[tuple[str, str], float] = {}

    def inc(self, model: str, status: str) -> None:
        with self._lock:
            self._values[(model, status)] = self._values.get((model, status), 0.0) + 1.0

    def render(self) -> str:
        with self._lock:
            items = sorted(self._values.items())
        lines = [
            f"# HELP {TF_REQUEST_COUNT} The total number of requests.",
            f"# TYPE {TF_REQUEST_COUNT} counter",
        ]
        lines += [
            f'{TF_REQUEST_COUNT}{{model_name="{escape_label_value(model)}",'
            f'status="{escape_label_value(status)}"}} {floatToGoString(value)}'
            for (model, status), value in items
        ]
        return "\n".join(lines) + "\n"


class ServerMetrics:
    """The model server's metric families, in a registry of their own.

    ``aimass_serving_*`` families carry the model, the version that answered, the version label
    the request named (if any), the API (``grpc``/``rest``) and the method (``predict``,
    ``metadata``, ``status``, ``reload``). TF Serving's ``:tensorflow:serving:request_count``
    and ``:tensorflow:serving:request_latency`` (microseconds) are kept for Predict with TF
    Serving's labels.

    Args:
        version_states: at scrape time, ``{(model, state): number of versions}``.
        version_labels: at scrape time, ``{(model, label, version): 1}``.
    """

    def __init__(
        self,
        *,
        version_states: Callable[[], Mapping[Labels, float]] = dict,
        version_labels: Callable[[], Mapping[Labels, float]] = dict,
    ) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        registry = self.registry
        self.requests = Counter(
            "aimass_serving_requests_total",
            "Requests answered, successful or not.",
            REQUEST_LABELS,
            registry=registry,
        )
        self.errors = Counter(
            "aimass_serving_request_errors_total",
            "Requests answered with an error, by gRPC status code.",
            (*REQUEST_LABELS, "code"),
            registry=registry,
        )
        self.latency = Histogram(
            "aimass_serving_request_latency_seconds",
            "Wall time from the request's arrival to its answer, errors included.",
            REQUEST_LABELS,
            buckets=LATENCY_BUCKETS_S,
            registry=registry,
        )
        batch_labels = ("model", "version")
        self.batch_rows = Histogram(
            "aimass_serving_batch_rows",
            "Rows in each batch run by server-side batching.",
            batch_labels,
            buckets=BATCH_ROWS_BUCKETS,
            registry=registry,
        )
        self.batch_requests = Histogram(
            "aimass_serving_batch_requests",
            "Predict requests merged into each batch run by server-side batching.",
            batch_labels,
            buckets=BATCH_ROWS_BUCKETS,
            registry=registry,
        )
        self.batch_queue = Histogram(
            "aimass_serving_batch_queue_seconds",
            "Time a batched Predict request waited in the queue before its batch ran.",
            batch_labels,
            buckets=LATENCY_BUCKETS_S,
            registry=registry,
        )
        registry.register(_VersionGauges(version_states, version_labels))
        self.tf_request_latency = Histogram(
            ":tensorflow:serving:request_latency",
            "Distribution of wall time (in microseconds) for Tensorflow Serving request.",
            ("model_name", "API", "entrypoint"),
            buckets=TF_SERVING_LATENCY_BUCKETS_US,
            registry=registry,
        )
        self.tf_request_count = _TfRequestCount()
        # Label children by label values: `labels()` validates and locks on every call.
        self._children: dict[Labels, tuple[Counter, Histogram]] = {}
        self._error_children: dict[Labels, Counter] = {}
        self._tf_latency_children: dict[Labels, Histogram] = {}

    def observe_request(
        self,
        *,
        api: str,
        method: str,
        model: str,
        version: str,
        label: str,
        code: str,
        seconds: float,
    ) -> None:
        """Count one answered request; `code` is the gRPC status code name (``OK`` on success)."""
        labels = (model, version, label, api, method)
        children = self._children.get(labels)
        if children is None:
            children = self._children.setdefault(
                labels, (self.requests.labels(*labels), self.latency.labels(*labels))
            )
        children[0].inc()
        children[1].observe(seconds)
        if code != "OK":
            key = (*labels, code)
            errors = self._error_children.get(key)
            if errors is None:
                errors = self._error_children.setdefault(key, self.errors.labels(*key))
            errors.inc()
        if method == "predict":
            # As TF Serving: every Predict counts by status, latency only for successful ones.
            self.tf_request_count.inc(model, code)
            if code == "OK":
                tf_key = (model, "Predict", "GRPC" if api == "grpc" else "REST")
                latency = self._tf_latency_children.get(tf_key)
                if latency is None:
                    latency = self._tf_latency_children.setdefault(
                        tf_key, self.tf_request_latency.labels(*tf_key)
                    )
                latency.observe(seconds * 1e6)

    def observe_batch(
        self, *, model: str, version: str, rows: int, requests: int, waits: Sequence[float]
    ) -> None:
        """Record one batch run: its rows, how many requests it merged and their queue waits."""
        self.batch_rows.labels(model, version).observe(rows)
        self.batch_requests.labels(model, version).observe(requests)
        queue = self.batch_queue.labels(model, version)
        for wait in waits:
            queue.observe(wait)

    def render(self) -> str:
        """Every family in the text exposition format 0.0.4 (`CONTENT_TYPE`)."""
        return generate_latest(self.registry).decode("utf-8") + self.tf_request_count.render()
