"""The console's read model: what each page shows, joined from the stage records.

It reads the typed records (:class:`aimass.platform.records.RecordStore`, parsed once per
file change), the model server's config file and status endpoint, the landing ledger, the
alert store and the monitor's newest drift report. Nothing here scans the lake or parses
logs, so a page costs the same with 500 runs as with 5 once their records are cached.
"""

from __future__ import annotations

import json
import logging
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

from aimass.platform.alert_store import AlertStore, store_path
from aimass.platform.errors import ConfigError
from aimass.platform.records import (
    CleanResult,
    DataChecks,
    Deployment,
    GateDecision,
    Lineage,
    QualityResult,
    Record,
    RecordStore,
    RollbackRecord,
    RunRequest,
    RunSummary,
    TrainingResult,
)
from aimass.platform.settings import Settings

log = logging.getLogger(__name__)

T = TypeVar("T")
# Alerts younger than this count as open on the overview.
OPEN_ALERT_HOURS = 24
MONITOR_DIR = "monitor"
# Figures in a gate's candidate dict that are not metrics.
NOT_METRICS = frozenset({"rows"})
DRIFT_REPORT = "drift_report.json"


@dataclass(frozen=True)
class VersionView:
    """One registry version: the run that trained it, its gate decision and where it went."""

    registry_version: str
    run_id: str
    ds: str
    dag_id: str
    requested_at: str
    training: TrainingResult
    gate: GateDecision | None = None
    deployment: Deployment | None = None
    lineage: Lineage | None = None
    outcome: str | None = None
    request: RunRequest | None = None

    @property
    def name(self) -> str:
        return f"v{self.registry_version}"

    @property
    def metrics(self) -> dict[str, float]:
        """The candidate's holdout metrics, as the gate scored them (not its row count)."""
        if self.gate is None:
            return {}
        return {
            k: float(v)
            for k, v in self.gate.candidate.items()
            if isinstance(v, int | float) and not isinstance(v, bool) and k not in NOT_METRICS
        }

    @property
    def holdout_rows(self) -> int | None:
        rows = self.gate.candidate.get("rows") if self.gate is not None else None
        return int(rows) if isinstance(rows, int | float) else None

    @property
    def serving_version(self) -> int | None:
        if self.deployment is not None:
            return self.deployment.serving_version
        return self.lineage.serving_version if self.lineage else None


@dataclass(frozen=True)
class ServingView:
    """What the model server holds for one model: labels, versions and their load state."""

    labels: dict[str, int] = field(default_factory=dict)
    versions: list[int] = field(default_factory=list)
    states: dict[int, str] = field(default_factory=dict)
    error: str | None = None

    def labels_of(self, version: int | None) -> list[str]:
        return sorted(label for label, v in self.labels.items() if v == version)


@dataclass(frozen=True)
class Champion:
    """The registry version that serves as champion, and the event that made it so."""

    registry_version: str
    serving_version: int | None
    since: str
    how: str
    run_id: str | None = None


@dataclass(frozen=True)
class Partition:
    """One run's clean partition: its counts, quarantine and quality outcome."""

    ds: str
    run_id: str
    dag_id: str
    requested_at: str
    clean: CleanResult
    quality: QualityResult | None


class TTLCache:
    """A tiny per-key cache for slow lookups (the model server's status, an S3 ledger).

    ``ttl_of(value)`` may keep some values longer: a failed lookup is not retried on every
    page while the other side is down.
    """

    def __init__(self, ttl_s: float, ttl_of: Callable[[Any], float] | None = None) -> None:
        self.ttl_s = ttl_s
        self._ttl_of = ttl_of
        self._items: dict[str, tuple[float, Any]] = {}

    def get(self, key: str, make: Callable[[], T]) -> T:
        now = time.monotonic()
        hit = self._items.get(key)
        if hit is not None and now < hit[0]:
            return hit[1]  # type: ignore[no-any-return]
        value = make()
        ttl = self._ttl_of(value) if self._ttl_of else self.ttl_s
        self._items[key] = (now + ttl, value)
        return value


class FolderCache:
    """Values computed from a set of folders, kept while none of their mtimes changes.

    A run's records are written into its ``records/`` folder by renames, which change the
    folder's mtime, so a stat per run folder says whether anything needs reading again.
    """

    def __init__(self) -> None:
        self._items: dict[str, tuple[Any, Any]] = {}

    def get(self, key: str, signature: Any, make: Callable[[], T]) -> T:
        hit = self._items.get(key)
        if hit is not None and hit[0] == signature:
            return hit[1]  # type: ignore[no-any-return]
        value = make()
        self._items[key] = (signature, value)
        return value


class ReadModel:
    """Every figure the console shows, by dataset."""

    def __init__(
        self,
        settings: Settings,
        *,
        http_timeout_s: float = 0.25,
        status_ttl_s: float = 5.0,
        down_ttl_s: float = 60.0,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.settings = settings
        self.store = RecordStore(settings.reports_dir)
        self.http_timeout_s = http_timeout_s
        self._status = TTLCache(
            status_ttl_s, lambda view: down_ttl_s if view.error else status_ttl_s
        )
        self._remote = TTLCache(status_ttl_s)
        self._folders = FolderCache()
        self._clock = clock

    # datasets and runs ------------------------------------------------------------------

    def datasets(self) -> list[str]:
        """Datasets with a spec in conf/ or any records."""
        try:
            specs = set(self.settings.dataset_names())
        except ConfigError:
            specs = set()
        return sorted(specs | set(self.store.datasets()))

    def runs(self, dataset: str) -> list[RunSummary | RunRequest]:
        """Every run of ``dataset``, newest first: its summary, or its request while it has none."""
        found: list[RunSummary | RunRequest] = []
        for records in self.run_records(dataset):
            run = records.get(RunSummary.kind) or records.get(RunRequest.kind)
            if isinstance(run, RunSummary | RunRequest):
                found.append(run)
        return found

    def run_records(self, dataset: str) -> list[dict[str, Record]]:
        """Every run's records by kind, newest first; re-read only when a run folder changed."""
        folders = sorted(self.store.run_folders(dataset))
        signature = tuple((str(f), f.stat().st_mtime_ns) for f in folders)
        return self._folders.get(
            f"runs:{dataset}", signature, lambda: self.store.run_records(dataset)
        )

    def find_run(self, run_id: str) -> tuple[str, dict[str, Record]] | None:
        """The dataset and records of a DAG run, whatever its dataset."""
        for dataset in self.store.datasets():
            try:
                return dataset, self.store.run(dataset, run_id)
            except ConfigError:
                continue
        return None

    # models -----------------------------------------------------------------------------

    def versions(self, dataset: str) -> list[VersionView]:
        """Every trained registry version of ``dataset``, newest first."""
        views = []
        for records in self.run_records(dataset):
            training = records.get(TrainingResult.kind)
            if not isinstance(training, TrainingResult):
                continue
            request = _as(records.get(RunRequest.kind), RunRequest)
            summary = _as(records.get(RunSummary.kind), RunSummary)
            views.append(
                VersionView(
                    registry_version=training.registry_version,
                    run_id=request.run_id if request else "",
                    ds=request.ds if request else "",
                    dag_id=request.dag_id if request else "aimass_retrain",
                    requested_at=request.requested_at if request else "",
                    training=training,
                    gate=_as(records.get(GateDecision.kind), GateDecision),
                    deployment=_as(records.get(Deployment.kind), Deployment),
                    lineage=summary.lineage if summary else None,
                    outcome=summary.outcome if summary else None,
                    request=request,
                )
            )
        return sorted(views, key=lambda v: _int(v.registry_version), reverse=True)

    def rollbacks(self, dataset: str) -> list[RollbackRecord]:
        return self.store.rollbacks(dataset)

    def champion(self, dataset: str, versions: list[VersionView] | None = None) -> Champion | None:
        """The newest of the deployments and rollbacks decides the champion."""
        events: list[tuple[str, Champion]] = []
        for v in versions if versions is not None else self.versions(dataset):
            if v.deployment is not None:
                when = v.requested_at
                how = "forced deploy" if v.gate is not None and v.gate.forced else "deployed"
                events.append(
                    (
                        when,
                        Champion(
                            # what deployed: a compressed variant's own version, or this one
                            v.deployment.registry_version,
                            v.deployment.serving_version,
                            when,
                            f"{how} by run {v.run_id}",
                            v.run_id,
                        ),
                    )
                )
        for rb in self.rollbacks(dataset):
            if rb.registry_version:
                events.append(
                    (
                        rb.at,
                        Champion(
                            rb.registry_version,
                            rb.serving_version,
                            rb.at,
                            f"rolled back by {rb.who}: {rb.reason}",
                        ),
                    )
                )
        return max(events, key=lambda e: e[0])[1] if events else None

    def serving(self, dataset: str) -> ServingView:
        """Labels and versions from the server's config file; load states from its REST API."""
        return self._status.get(f"serving:{dataset}", lambda: self._serving(dataset))

    def _serving(self, dataset: str) -> ServingView:
        from aimass.serving.config import find_model, read_config
        from aimass.serving.labels import labels_of, versions_of

        try:
            entry = find_model(read_config(self.settings.serving_config), dataset)
        except ConfigError:
            entry = None
        labels, versions = labels_of(entry), versions_of(entry)
        states: dict[int, str] = {}
        error = None
        if entry is not None:
            try:
                states = self._load_states(dataset)
            except Exception as exc:  # the server may be down; the page says so
                error = f"model server unreachable at {self.settings.serving_rest_url}: {exc}"
        return ServingView(labels, versions, states, error)

    def _load_states(self, dataset: str) -> dict[int, str]:
        import httpx

        url = f"{self.settings.serving_rest_url}/v1/models/{dataset}"
        reply = httpx.get(url, timeout=self.http_timeout_s)
        if reply.status_code == 404:
            return {}
        reply.raise_for_status()
        return {
            int(s["version"]): str(s["state"]) for s in reply.json().get("model_version_status", [])
        }

    # data -------------------------------------------------------------------------------

    def partitions(self, dataset: str) -> list[Partition]:
        """Each run's clean counts and quality outcome, newest run first."""
        found = []
        for records in self.run_records(dataset):
            checks = _as(records.get(DataChecks.kind), DataChecks)
            request = _as(records.get(RunRequest.kind), RunRequest)
            if checks is None or request is None:
                continue
            found.append(
                Partition(
                    request.ds,
                    request.run_id,
                    request.dag_id,
                    request.requested_at,
                    checks.clean,
                    checks.quality,
                )
            )
        return found

    @staticmethod
    def quarantine_reasons(
        partitions: Iterable[Partition], top: int = 10
    ) -> list[tuple[str, int, list[dict[str, str]]]]:
        """The most common quarantine reasons over ``partitions``, each with sample lines
        (from the newest partition that has some)."""
        counts: Counter[str] = Counter()
        samples: dict[str, list[dict[str, str]]] = {}
        for p in partitions:
            counts.update(p.clean.quarantine_reasons)
            for reason, lines in getattr(p.clean, "quarantine_samples", {}).items():
                samples.setdefault(reason, list(lines))
        return [(r, n, samples.get(r, [])) for r, n in counts.most_common(top)]

    def ledger(self, dataset: str, *, limit: int | None = None) -> list[dict[str, Any]]:
        """The landing ledger: each taken file, newest first (parsed again only when the
        ledger file changed; an S3 ledger is listed at most every few seconds)."""
        from aimass.data.landing import LocalZone, zone_for

        zone = zone_for(self.settings, dataset)
        if isinstance(zone, LocalZone):
            path = Path(zone.ledger_location)
            stat = path.stat() if path.is_file() else None
            signature = (stat.st_mtime_ns, stat.st_size) if stat else None
            entries = self._folders.get(f"ledger:{dataset}", signature, lambda: _ledger(zone))
        else:
            entries = self._remote.get(f"ledger:{dataset}", lambda: _ledger(zone))
        return entries[:limit] if limit else entries

    def backlog(self, dataset: str) -> list[str] | None:
        """Files waiting in the landing zone (None when it cannot be read)."""
        from aimass.data.landing import zone_for

        try:
            return zone_for(self.settings, dataset).pending()
        except Exception as exc:
            log.warning("cannot list the landing zone of %s: %s", dataset, exc)
            return None

    # alerts and drift -------------------------------------------------------------------

    def alerts(
        self,
        *,
        dataset: str | None = None,
        kind: str | None = None,
        since: datetime | None = None,
        limit: int = 500,
    ) -> list[dict[str, Any]]:
        """Stored alerts, newest first, filtered by dataset, kind and time."""
        found = []
        for alert in AlertStore(store_path(self.settings)).read(kind=kind or None):
            if dataset and alert_dataset(alert) != dataset:
                continue
            if since is not None and _when(alert.get("ts")) < since:
                break  # newest first: everything after is older
            found.append(alert)
            if len(found) >= limit:
                break
        return found

    def open_alerts(self, dataset: str) -> list[dict[str, Any]]:
        since = self._clock() - timedelta(hours=OPEN_ALERT_HOURS)
        return self.alerts(dataset=dataset, since=since)

    def live_drift(self, dataset: str) -> tuple[str, dict[str, Any], Path] | None:
        """The monitor's newest check of served requests: (time, report, folder)."""
        folder = self.settings.reports_dir / dataset / MONITOR_DIR
        if not folder.is_dir():
            return None
        for run in sorted((p for p in folder.iterdir() if p.is_dir()), reverse=True):
            report = run / DRIFT_REPORT
            if report.is_file():
                return _folder_time(run.name), json.loads(report.read_text(encoding="utf-8")), run
        return None

    # files ------------------------------------------------------------------------------

    def report_file(self, relative: str) -> Path:
        """A file under the reports folder; anything else (``..``, links out) is refused."""
        root = self.settings.reports_dir.resolve()
        path = (root / relative).resolve()
        if not path.is_relative_to(root) or not path.is_file():
            raise FileNotFoundError(relative)
        return path

    def report_link(self, path: str | None) -> str | None:
        """The console URL path of a report file, or None when it is not under reports."""
        if not path:
            return None
        try:
            rel = Path(path).resolve().relative_to(self.settings.reports_dir.resolve())
        except ValueError:
            return None
        return f"files/{rel.as_posix()}"


def _ledger(zone: Any) -> list[dict[str, Any]]:
    try:
        entries: list[dict[str, Any]] = zone.ledger()
    except Exception as exc:
        log.warning("cannot read the landing ledger at %s: %s", zone.ledger_location, exc)
        return []
    return sorted(entries, key=lambda e: str(e.get("taken_at", "")), reverse=True)


def alert_dataset(alert: dict[str, Any]) -> str | None:
    details = alert.get("details") or {}
    return alert.get("dataset") or (details.get("dataset") if isinstance(details, dict) else None)


def _as(value: Any, cls: type[T]) -> T | None:
    return value if isinstance(value, cls) else None


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        return -1


def _folder_time(name: str) -> str:
    """A monitor folder's name (``20261207T035400Z``) as an ISO time."""
    try:
        return datetime.strptime(name, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC).isoformat()
    except ValueError:
        return name


def _when(text: Any) -> datetime:
    try:
        when = datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    except ValueError:
        return datetime.min.replace(tzinfo=UTC)
    return when if when.tzinfo else when.replace(tzinfo=UTC)
