"""Prometheus metrics in the text exposition format (0.0.4), without a client library.

Counters and histograms are updated on the request path, so an update is one dict lookup
and one short lock per metric; rendering (a scrape) sorts and formats everything. Gauges
are computed at scrape time by a callback, so they cost nothing between scrapes.

The model server (`aimass.serving.server`) serves `ServerMetrics.render()` at
``GET /monitoring/prometheus/metrics``, the path TF Serving uses.
"""

from __future__ import annotations

import math
import re
import threading
from bisect import bisect_left
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TypeVar

from aimass.platform.errors import ConfigError

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
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

_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_LABEL = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")

Labels = tuple[str, ...]
_M = TypeVar("_M", bound="_Metric")


def _check_names(name: str, labelnames: Sequence[str]) -> None:
    if not _NAME.fullmatch(name):
        raise ConfigError(f"metric name {name!r} is not a valid Prometheus name")
    for label in labelnames:
        if not _LABEL.fullmatch(label) or label.startswith("__") or label == "le":
            raise ConfigError(f"label name {label!r} of metric {name} is not allowed")


def escape_label_value(value: str) -> str:
    """A label value as the text format writes it between double quotes."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def format_value(value: float) -> str:
    """A sample value: integers without a decimal point, +Inf/-Inf/NaN spelled as Prometheus does."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if float(value).is_integer() and abs(value) < 2**53:
        return str(int(value))
    return repr(float(value))


def _series(name: str, labelnames: Sequence[str], labels: Labels, extra: str = "") -> str:
    pairs = [f'{k}="{escape_label_value(v)}"' for k, v in zip(labelnames, labels, strict=True)]
    if extra:
        pairs.append(extra)
    return f"{name}{{{','.join(pairs)}}}" if pairs else name


class _Metric:
    kind = ""

    def __init__(self, name: str, help_text: str, labelnames: Sequence[str]) -> None:
        _check_names(name, labelnames)
        self.name = name
        self.help = help_text
        self.labelnames = tuple(labelnames)
        self._lock = threading.Lock()

    def _check_labels(self, labels: Labels) -> None:
        if len(labels) != len(self.labelnames):
            raise ValueError(
                f"metric {self.name} takes labels {self.labelnames}, got {len(labels)} values"
            )

    def header(self) -> list[str]:
        return [f"# HELP {self.name} {_escape_help(self.help)}", f"# TYPE {self.name} {self.kind}"]

    def lines(self) -> list[str]:
        raise NotImplementedError


class Counter(_Metric):
    """A monotonically increasing count per label set."""

    kind = "counter"

    def __init__(self, name: str, help_text: str, labelnames: Sequence[str]) -> None:
        super().__init__(name, help_text, labelnames)
        self._values: dict[Labels, float] = {}

    def inc(self, labels: Labels, amount: float = 1.0) -> None:
        if amount < 0:
            raise ValueError(f"counter {self.name} cannot decrease (amount {amount})")
        with self._lock:
            value = self._values.get(labels)
            if value is None:
                self._check_labels(labels)
                value = 0.0
            self._values[labels] = value + amount

    def value(self, labels: Labels) -> float:
        with self._lock:
            return self._values.get(labels, 0.0)

    def lines(self) -> list[str]:
        with self._lock:
            items = sorted(self._values.items())
        return [
            f"{_series(self.name, self.labelnames, labels)} {format_value(value)}"
            for labels, value in items
        ]


class Histogram(_Metric):
    """Observations counted into cumulative ``le`` buckets, with ``_sum`` and ``_count``."""

    kind = "histogram"

    def __init__(
        self, name: str, help_text: str, labelnames: Sequence[str], buckets: Iterable[float]
    ) -> None:
        super().__init__(name, help_text, labelnames)
        bounds = sorted(float(b) for b in buckets if not math.isinf(b))
        if not bounds or len(set(bounds)) != len(bounds):
            raise ConfigError(f"histogram {name} needs distinct finite buckets, got {bounds}")
        self.bounds = tuple(bounds)
        # Per label set: counts per bucket (the last one is +Inf, not cumulative) and the sum.
        self._cells: dict[Labels, tuple[list[int], list[float]]] = {}

    def observe(self, labels: Labels, value: float) -> None:
        index = bisect_left(self.bounds, value)  # first bound >= value: the `le` bucket
        with self._lock:
            cell = self._cells.get(labels)
            if cell is None:
                self._check_labels(labels)
                cell = self._cells[labels] = ([0] * (len(self.bounds) + 1), [0.0])
            cell[0][index] += 1
            cell[1][0] += value

    def snapshot(self, labels: Labels) -> tuple[list[int], float]:
        """Cumulative bucket counts (the last is +Inf, i.e. the count) and the sum."""
        with self._lock:
            counts, total = self._cells.get(labels, ([0] * (len(self.bounds) + 1), [0.0]))
            counts, value = list(counts), total[0]
        cumulative, running = [], 0
        for count in counts:
            running += count
            cumulative.append(running)
        return cumulative, value

    def lines(self) -> list[str]:
        with self._lock:
            labelsets = sorted(self._cells)
        out = []
        bounds = [repr(b) for b in self.bounds]
        for labels in labelsets:
            cumulative, total = self.snapshot(labels)
            for bound, count in zip([*bounds, "+Inf"], cumulative, strict=True):
                series = _series(f"{self.name}_bucket", self.labelnames, labels, f'le="{bound}"')
                out.append(f"{series} {count}")
            out.append(
                f"{_series(self.name + '_sum', self.labelnames, labels)} {format_value(total)}"
            )
            out.append(f"{_series(self.name + '_count', self.labelnames, labels)} {cumulative[-1]}")
        return out


class CallbackGauge(_Metric):
    """A gauge whose values a callback computes at scrape time (label values -> value)."""

    kind = "gauge"

    def __init__(
        self,
        name: str,
        help_text: str,
        labelnames: Sequence[str],
        collect: Callable[[], Mapping[Labels, float]],
    ) -> None:
        super().__init__(name, help_text, labelnames)
        self._collect = collect

    def lines(self) -> list[str]:
        values = self._collect()
        for labels in values:
            self._check_labels(labels)
        return [
            f"{_series(self.name, self.labelnames, labels)} {format_value(value)}"
            for labels, value in sorted(values.items())
        ]


class Registry:
    """An ordered set of metrics rendered together."""

    def __init__(self) -> None:
        self._metrics: list[_Metric] = []
        self._names: set[str] = set()

    def register(self, metric: _M) -> _M:
        if metric.name in self._names:
            raise ConfigError(f"metric {metric.name} is registered twice")
        self._names.add(metric.name)
        self._metrics.append(metric)
        return metric

    def render(self) -> str:
        """Every metric in the text exposition format (families without samples included)."""
        out: list[str] = []
        for metric in self._metrics:
            out.extend(metric.header())
            out.extend(metric.lines())
        return "\n".join(out) + "\n"


# --------------------------------------------------------------------------- the model server's


REQUEST_LABELS = ("model", "version", "label", "api", "method")


class ServerMetrics:
    """The model server's metric families.

    ``aimass_serving_*`` families carry the model, the version that answered, the version label
    the request named (if any), the API (``grpc``/``rest``) and the method (``predict``,
    ``metadata``, ``status``, ``reload``). TF Serving's own ``:tensorflow:serving:request_count``
    and ``:tensorflow:serving:request_latency`` (microseconds) are kept for Predict with TF
    Serving's labels, so dashboards and checks written for the official image read this server
    too.

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
        self.registry = Registry()
        add = self.registry.register
        self.requests = add(
            Counter(
                "aimass_serving_requests_total",
                "Requests answered, successful or not.",
                REQUEST_LABELS,
            )
        )
        self.errors = add(
            Counter(
                "aimass_serving_request_errors_total",
                "Requests answered with an error, by gRPC status code.",
                (*REQUEST_LABELS, "code"),
            )
        )
        self.latency = add(
            Histogram(
                "aimass_serving_request_latency_seconds",
                "Wall time from the request's arrival to its answer, errors included.",
                REQUEST_LABELS,
                LATENCY_BUCKETS_S,
            )
        )
        self.batch_rows = add(
            Histogram(
                "aimass_serving_batch_rows",
                "Rows in each batch run by server-side batching.",
                ("model", "version"),
                BATCH_ROWS_BUCKETS,
            )
        )
        self.batch_requests = add(
            Histogram(
                "aimass_serving_batch_requests",
                "Predict requests merged into each batch run by server-side batching.",
                ("model", "version"),
                BATCH_ROWS_BUCKETS,
            )
        )
        self.batch_queue = add(
            Histogram(
                "aimass_serving_batch_queue_seconds",
                "Time a batched Predict request waited in the queue before its batch ran.",
                ("model", "version"),
                LATENCY_BUCKETS_S,
            )
        )
        add(
            CallbackGauge(
                "aimass_serving_model_versions",
                "Versions of each model per state (START, LOADING, AVAILABLE, END).",
                ("model", "state"),
                version_states,
            )
        )
        add(
            CallbackGauge(
                "aimass_serving_model_version_label",
                "1 for each version label and the version it points at.",
                ("model", "label", "version"),
                version_labels,
            )
        )
        self.tf_request_count = add(
            Counter(
                ":tensorflow:serving:request_count",
                "The total number of requests.",
                ("model_name", "status"),
            )
        )
        self.tf_request_latency = add(
            Histogram(
                ":tensorflow:serving:request_latency",
                "Distribution of wall time (in microseconds) for Tensorflow Serving request.",
                ("model_name", "API", "entrypoint"),
                TF_SERVING_LATENCY_BUCKETS_US,
            )
        )

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
        self.requests.inc(labels)
        self.latency.observe(labels, seconds)
        if code != "OK":
            self.errors.inc((*labels, code))
        if method == "predict":
            # As TF Serving: every Predict counts by status, latency only for successful ones.
            self.tf_request_count.inc((model, code))
            if code == "OK":
                entrypoint = "GRPC" if api == "grpc" else "REST"
                self.tf_request_latency.observe((model, "Predict", entrypoint), seconds * 1e6)

    def observe_batch(
        self, *, model: str, version: str, rows: int, requests: int, waits: Sequence[float]
    ) -> None:
        """Record one batch run: its rows, how many requests it merged and their queue waits."""
        labels = (model, version)
        self.batch_rows.observe(labels, rows)
        self.batch_requests.observe(labels, requests)
        for wait in waits:
            self.batch_queue.observe(labels, wait)

    def render(self) -> str:
        return self.registry.render()
