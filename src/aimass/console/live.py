"""Live traffic of the model server for the console: requests/s, error rate, p50/p99 latency.

The console samples the server's own Prometheus endpoint (``METRICS_PATH``) like a tiny
Prometheus: every ``interval_s`` it scrapes the cumulative counters and the latency histogram,
and the difference between two scrapes is one chart point (rate, error ratio, and quantiles
interpolated inside the histogram's buckets as ``histogram_quantile`` does). This needs nothing
but the endpoint, so it works for the official TF Serving image too: when no ``aimass_serving_*``
family is present, it falls back to TF Serving's ``:tensorflow:serving:request_count{model_name,
status}`` and ``:tensorflow:serving:request_latency_bucket{model_name,API,entrypoint}``
(microseconds, successful requests only), with the one series ``all versions`` per model.

Only ``method="predict"`` counts as traffic. Series are per model and per version, keyed by the
version and its label(s) in the newest scrape: ``"v2 (stable)"``, ``"v3 (canary)"``, ``"v5"``.

The history lives in the memory of the API server process: it starts empty after a restart and
covers ``maxlen`` samples (an hour at 10 s). In production, point a real Prometheus at the same
endpoint for anything longer.
"""

from __future__ import annotations

import logging
import math
import re
import threading
import time
import urllib.request
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime

from aimass.serving.metrics import METRICS_PATH

log = logging.getLogger(__name__)

Samples = dict[str, list[tuple[dict[str, str], float]]]
Key = tuple[str, str]  # (model, version)

ALL_VERSIONS = "*"  # the version of the TF Serving fallback's one series per model
_LABEL_ORDER = {"stable": 0, "canary": 1, "previous": 2}
_PAIR = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*=\s*"((?:[^"\\]|\\.)*)"\s*(,)?')
_FAST_PAIRS = re.compile(r'(?:^|,)\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*=\s*"([^"]*)"')
_LABEL_CACHE: dict[str, dict[str, str]] = {}  # label text -> labels: scrapes repeat them
_ESCAPE = re.compile(r"\\(.)")
_ERROR_LOG_EVERY_S = 60.0
# A page's own scrape gives up sooner than the sampling thread's.
_PAGE_TIMEOUT_S = 0.5
_FIRST_GAP_S = 1.0  # between the two samples ensure_recent takes when the history has no point


def _parse_line(line: str) -> tuple[str, dict[str, str], float]:
    brace = line.find("{")
    if brace < 0:
        name, rest = line.split(None, 1)
        return name, {}, float(rest.split(None, 1)[0])
    name, pos = line[:brace].strip(), brace + 1
    inner, _, rest = line[pos:].partition("}")
    if "\\" in inner or inner.count('"') % 2:  # an escape, or a "}" inside a value
        labels: dict[str, str] = {}
        while match := _PAIR.match(line, pos):
            labels[match[1]] = _ESCAPE.sub(lambda m: "\n" if m[1] == "n" else m[1], match[2])
            pos = match.end()
            if not match[3]:
                break
        close = line.index("}", pos)
        if line[pos:close].strip():
            raise ValueError("bad label set")
        return name, labels, float(line[close + 1 :].split(None, 1)[0])
    if (cached := _LABEL_CACHE.get(inner)) is None:
        if len(_LABEL_CACHE) >= 50_000:
            _LABEL_CACHE.clear()
        cached = _LABEL_CACHE[inner] = dict(_FAST_PAIRS.findall(inner))
    return name, cached.copy(), float(rest.split(None, 1)[0])  # a timestamp/exemplar may follow


def parse_exposition(text: str) -> Samples:
    """Sample name -> [(labels, value)] from the text exposition format (or OpenMetrics).

    Comments (``# HELP``/``# TYPE``/``# EOF``) are skipped, label values unescaped, ``+Inf``/
    ``NaN`` parsed as floats, timestamps and exemplars dropped; a malformed line is skipped.
    """
    out: Samples = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line[0] == "#":
            continue
        try:
            name, labels, value = _parse_line(line)
        except (ValueError, IndexError):
            log.debug("skipping a malformed exposition line: %r", line[:200])
            continue
        out.setdefault(name, []).append((labels, value))
    return out


@dataclass(frozen=True)
class Point:
    """One chart point: the traffic between two samples, stamped with the later one (UTC).

    ``error_rate`` (errors / requests), ``p50_ms`` and ``p99_ms`` are None without requests.
    """

    at: datetime
    rps: float
    error_rate: float | None
    p50_ms: float | None
    p99_ms: float | None


@dataclass(frozen=True)
class Snapshot:
    """Cumulative Predict counts per (model, version) at one scrape.

    ``buckets[(model, version)]`` maps each ``le`` (seconds, ``inf`` included) to its cumulative
    count; ``labels[model][version]`` is the version's label(s), e.g. ``"stable"``.
    """

    at: datetime
    requests: dict[Key, float] = field(default_factory=dict)
    errors: dict[Key, float] = field(default_factory=dict)
    buckets: dict[Key, dict[float, float]] = field(default_factory=dict)
    labels: dict[str, dict[str, str]] = field(default_factory=dict)

    @classmethod
    def from_text(cls, text: str, at: datetime | None = None) -> Snapshot:
        return cls.from_samples(parse_exposition(text), at)

    @classmethod
    def from_samples(cls, samples: Samples, at: datetime | None = None) -> Snapshot:
        """The aimass_serving_* families, else TF Serving's (one ``ALL_VERSIONS`` per model)."""
        at, get = at or datetime.now(UTC), samples.get
        if not any(name.startswith("aimass_serving_") for name in samples):
            tf = ":tensorflow:serving:"
            counts = get(tf + "request_count") or get(tf + "request_count_total", [])
            failed = [row for row in counts if row[0].get("status", "OK") != "OK"]
            latency = get(tf + "request_latency_bucket", [])
            latency = [row for row in latency if row[0].get("API", "Predict").lower() == "predict"]
            return cls(
                at, _totals(counts, tf=True), _totals(failed, tf=True), _buckets(latency, True)
            )
        pre = "aimass_serving_"
        requests = get(pre + "requests_total") or get(pre + "requests", [])
        errors = get(pre + "request_errors_total") or get(pre + "request_errors", [])
        latency = get(pre + "request_latency_seconds_bucket", [])
        found: dict[str, dict[str, list[str]]] = {}
        for labels, value in get(pre + "model_version_label", []):
            if value == 1 and "model" in labels and "version" in labels:
                versions = found.setdefault(labels["model"], {})
                versions.setdefault(labels["version"], []).append(labels.get("label", ""))
        names = {
            model: {v: ", ".join(sorted(ls, key=_label_order)) for v, ls in versions.items()}
            for model, versions in found.items()
        }
        return cls(at, _totals(requests), _totals(errors), _buckets(latency), names)


Rows = list[tuple[dict[str, str], float]]


def _label_order(label: str) -> tuple[int, str]:
    return _LABEL_ORDER.get(label, 9), label


def _key(labels: dict[str, str], tf: bool) -> Key | None:
    if tf:
        return labels.get("model_name", ""), ALL_VERSIONS
    if labels.get("method") != "predict":
        return None
    return labels.get("model", ""), labels.get("version", "")


def _totals(rows: Rows, tf: bool = False) -> dict[Key, float]:
    out: dict[Key, float] = {}
    for labels, value in rows:
        if (key := _key(labels, tf)) is not None:
            out[key] = out.get(key, 0.0) + value
    return out


def _buckets(rows: Rows, tf: bool = False) -> dict[Key, dict[float, float]]:
    out: dict[Key, dict[float, float]] = {}
    for labels, value in rows:
        if "le" in labels and (key := _key(labels, tf)) is not None:
            bound = float(labels["le"]) * (1e-6 if tf else 1.0)  # TF Serving: microseconds
            counts = out.setdefault(key, {})
            counts[bound] = counts.get(bound, 0.0) + value
    return out


def series_key(version: str, label: str = "") -> str:
    """``"v2 (stable)"``, ``"v5"``; ``"all versions"`` (TF Serving) and ``"unresolved"``
    (requests that failed before a version was chosen)."""
    if version == ALL_VERSIONS:
        return "all versions"
    name = f"v{version}" if version else "unresolved"
    return f"{name} ({label})" if label else name


def histogram_quantile(q: float, buckets: dict[float, float]) -> float | None:
    """The q-quantile of cumulative ``le`` -> count buckets, interpolated linearly inside the
    bucket as Prometheus does (the highest finite bound when it falls in ``+Inf``)."""
    bounds = sorted(buckets)
    if not bounds or not math.isinf(bounds[-1]) or buckets[bounds[-1]] <= 0:
        return None
    rank = q * buckets[bounds[-1]]
    lower, below = 0.0, 0.0
    for i, upper in enumerate(bounds):
        count = buckets[upper]
        if count >= rank:
            if math.isinf(upper):
                return bounds[i - 1] if i > 0 else None
            inside = count - below
            return lower + (upper - lower) * ((rank - below) / inside if inside > 0 else 1.0)
        lower, below = upper, count
    return None


def version_points(prev: Snapshot, cur: Snapshot) -> dict[str, dict[str, Point]]:
    """Per model, per version: the Point between two snapshots (see `rates`)."""
    dt = (cur.at - prev.at).total_seconds()
    out: dict[str, dict[str, Point]] = {}
    if dt <= 0:
        return out
    keys = set(cur.requests) | {(m, v) for m, vs in cur.labels.items() for v in vs}
    for key in sorted(keys):
        req, err = cur.requests.get(key, 0.0), cur.errors.get(key, 0.0)
        hist = cur.buckets.get(key, {})
        p_req, p_err = prev.requests.get(key, 0.0), prev.errors.get(key, 0.0)
        p_hist = prev.buckets.get(key, {})
        if req < p_req or err < p_err or any(hist.get(le, 0.0) < n for le, n in p_hist.items()):
            p_req, p_err, p_hist = 0.0, 0.0, {}  # a counter reset: the server restarted
        requests = req - p_req
        delta = {le: n - p_hist.get(le, 0.0) for le, n in hist.items()} if requests > 0 else {}
        p50, p99 = (histogram_quantile(q, delta) for q in (0.5, 0.99))
        error_rate = (err - p_err) / requests if requests > 0 else None
        point = Point(cur.at, requests / dt, error_rate, p50 and p50 * 1e3, p99 and p99 * 1e3)
        out.setdefault(key[0], {})[key[1]] = point
    return out


def rates(prev: Snapshot, cur: Snapshot) -> dict[str, dict[str, Point]]:
    """Per model, per series key (``"v2 (stable)"``, labels as of `cur`): the traffic between
    the two snapshots. A counter lower than before (a restart) counts from zero; no requests
    gives ``rps=0`` and None for the rest; ``{}`` when `cur` is not later than `prev`."""
    return {
        model: {
            series_key(version, cur.labels.get(model, {}).get(version, "")): point
            for version, point in versions.items()
        }
        for model, versions in version_points(prev, cur).items()
    }


class MetricsHistory:
    """A thread-safe ring of the last `maxlen` samples' points (per model, per version).

    Series are keyed with the labels of the newest snapshot, so a version keeps one line when
    its label moves (a canary promoted to stable shows as ``"v3 (stable)"`` all along).
    """

    def __init__(self, maxlen: int = 360) -> None:
        self._lock = threading.Lock()
        self._ring: deque[dict[str, dict[str, Point]]] = deque(maxlen=maxlen)
        self._last: Snapshot | None = None

    def observe(self, snapshot: Snapshot) -> None:
        """Add the points between the previous snapshot and this one (the first only primes)."""
        with self._lock:
            last = self._last
            if last is not None and snapshot.at <= last.at:
                return  # out of order: a concurrent older scrape
            self._last = snapshot
            if last is not None:
                self._ring.append(version_points(last, snapshot))

    @property
    def last_sample_at(self) -> datetime | None:
        """When the newest observed snapshot was taken (None before the first)."""
        with self._lock:
            return None if self._last is None else self._last.at

    def __len__(self) -> int:
        """Points per series at most: samples observed minus one, up to `maxlen`."""
        with self._lock:
            return len(self._ring)

    def models(self) -> list[str]:
        with self._lock:
            return sorted({model for entry in self._ring for model in entry})

    def _key(self, model: str, version: str) -> str:
        labels = {} if self._last is None else self._last.labels.get(model, {})
        return series_key(version, labels.get(version, ""))

    def series(self, model: str) -> dict[str, list[Point]]:
        """Series key -> points, oldest first (a version absent from a sample has no point)."""
        out: dict[str, list[Point]] = {}
        with self._lock:
            for entry in self._ring:
                for version, point in entry.get(model, {}).items():
                    out.setdefault(self._key(model, version), []).append(point)
        return out

    def latest(self, model: str) -> dict[str, Point]:
        """Series key -> the newest point ({} before two samples)."""
        with self._lock:
            if not self._ring:
                return {}
            versions = self._ring[-1].get(model, {})
            return {self._key(model, version): point for version, point in versions.items()}


class MetricsSampler:
    """Scrapes `url` every `interval_s` into `history`, from one daemon thread.

    `url` is the server's REST base URL (``METRICS_PATH`` is appended) or the metrics URL itself.
    """

    def __init__(
        self,
        url: str,
        *,
        interval_s: float = 10.0,
        history: MetricsHistory | None = None,
        timeout_s: float = 2.0,
    ) -> None:
        url = url.rstrip("/")
        self.url = url if url.endswith(METRICS_PATH) else url + METRICS_PATH
        self.interval_s = interval_s
        self.timeout_s = timeout_s
        self.history = history if history is not None else MetricsHistory()
        self._lock = threading.Lock()  # start/stop
        self._sample_lock = threading.Lock()  # one scrape at a time
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._last_error_log = -math.inf
        self._last_failure = -math.inf

    def scrape(self, timeout_s: float | None = None) -> Snapshot | None:
        """One scrape; None (logged at most once a minute) when the server cannot be read."""
        try:
            timeout = self.timeout_s if timeout_s is None else timeout_s
            with urllib.request.urlopen(self.url, timeout=timeout) as response:
                text = response.read().decode("utf-8", errors="replace")
            return Snapshot.from_text(text)
        except Exception as exc:  # a chart must never break the page
            now = time.monotonic()
            if now - self._last_error_log >= _ERROR_LOG_EVERY_S:
                self._last_error_log = now
                log.warning("cannot read serving metrics at %s: %s", self.url, exc)
            return None

    def sample_once(self, *, wait: bool = True, timeout_s: float | None = None) -> Snapshot | None:
        """Scrape and add the snapshot to the history. With ``wait=False`` (a page being drawn)
        it returns None at once when another scrape is under way."""
        if not self._sample_lock.acquire(blocking=wait):
            return None
        try:
            snapshot = self.scrape(timeout_s)
            if snapshot is None:
                self._last_failure = time.monotonic()
            else:
                self.history.observe(snapshot)
            return snapshot
        finally:
            self._sample_lock.release()

    def ensure_recent(self, max_age_s: float | None = None) -> None:
        """Sample now if the newest sample is older than `max_age_s` (default: two intervals);
        without any point yet, take a second sample ~1 s after the first so one exists.

        A page never waits on a server that does not answer: no scrape while another is under
        way or when one failed within the interval, and a short timeout when it scrapes.
        """
        max_age = 2 * self.interval_s if max_age_s is None else max_age_s
        last = self.history.last_sample_at
        if last is None or (datetime.now(UTC) - last).total_seconds() > max_age:
            if time.monotonic() - self._last_failure < self.interval_s:
                return
            if self.sample_once(wait=False, timeout_s=_PAGE_TIMEOUT_S) is None:
                return
        if len(self.history) == 0 and (last := self.history.last_sample_at) is not None:
            time.sleep(max(0.0, _FIRST_GAP_S - (datetime.now(UTC) - last).total_seconds()))
            self.sample_once(wait=False, timeout_s=_PAGE_TIMEOUT_S)

    def start(self) -> None:
        """Start the sampling thread unless it runs (idempotent and cheap: call it per request)."""
        if (thread := self._thread) is not None and thread.is_alive():
            return
        with self._lock:
            if (thread := self._thread) is not None and thread.is_alive():
                return
            self._stop = threading.Event()
            self._thread = threading.Thread(
                target=self._run, args=(self._stop,), name="aimass-metrics-sampler", daemon=True
            )
            self._thread.start()

    def stop(self, timeout_s: float = 5.0) -> None:
        """Stop the sampling thread and wait for it (up to `timeout_s`)."""
        with self._lock:
            thread, self._thread = self._thread, None
            self._stop.set()
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout_s)

    def _run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            started = time.monotonic()
            try:
                self.sample_once()
            except Exception:  # keep sampling whatever one scrape did
                log.exception("metrics sampling failed")
            stop.wait(max(0.0, self.interval_s - (time.monotonic() - started)))
