"""Production monitoring: record what the model server is asked, and check it for drift.

Two halves share this module:

* :class:`RequestLog` lives in the model server. It samples Predict requests (a share of
  them, ``AIMASS_REQUEST_LOG_SAMPLE``), keeps the last N rows per model in memory (a ring
  buffer) and a background thread persists each model's buffer atomically as
  ``<dir>/<model>/recent.parquet``: one column per request input, plus ``request_time``
  (UTC) and ``model_version``. The request thread only appends references to arrays it
  already holds; conversion and disk I/O happen in the flush thread.
* :func:`monitor_dataset` (run by the ``aimass_monitor`` DAG) profiles those recent requests
  with the bins of the champion's reference profile and compares the two with the spec's
  drift thresholds, as ``check_drift`` does for a new batch of training data.

Only numpy is imported at module level: the server imports this module, and the DAG files
import its asset helpers while being parsed.
"""

from __future__ import annotations

import logging
import os
import random
import tempfile
import threading
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from aimass.errors import ConfigError

if TYPE_CHECKING:
    import pyarrow as pa

    from aimass.config import Settings

logger = logging.getLogger(__name__)

RECENT_FILE = "recent.parquet"
TIME_COLUMN = "request_time"
VERSION_COLUMN = "model_version"
DRIFT_ASSET_PREFIX = "aimass_drift_"
OK, WARNING, CRITICAL, SKIPPED = "ok", "warning", "critical", "skipped"


def drift_asset_name(dataset: str) -> str:
    """Name of the asset ``aimass_monitor`` updates when served requests drift critically."""
    return f"{DRIFT_ASSET_PREFIX}{dataset}"


def drift_asset_uri(var_dir: Path, dataset: str) -> str:
    """URI of that asset: the folder its monitor reports go to."""
    return f"file://{Path(var_dir) / 'reports' / dataset / 'monitor'}"


def recent_requests_path(requests_dir: Path, model: str) -> Path:
    return Path(requests_dir) / model / RECENT_FILE


# --------------------------------------------------------------------------- request log


@dataclass
class _Chunk:
    """One sampled request: its columns (1-D arrays of equal length), time and version."""

    columns: dict[str, np.ndarray]
    rows: int
    at: float
    version: str


@dataclass
class _ModelBuffer:
    chunks: deque[_Chunk] = field(default_factory=deque)
    rows: int = 0
    dirty: bool = False


def _column(value: np.ndarray) -> np.ndarray | None:
    """A request input as one value per row, or None when it is not a per-row scalar."""
    if value.ndim == 1:
        return value
    if value.ndim == 2 and value.shape[1] == 1:
        return value[:, 0]
    return None


class RequestLog:
    """Sampled, bounded log of the features the model server was asked to score.

    Args:
        directory: where ``<model>/recent.parquet`` files are written.
        sample: share of requests recorded (0..1); a recorded request keeps all its rows.
        max_rows: rows kept per model; older ones are dropped first.
        flush_seconds: how often the background thread persists changed buffers.
        seed: seeds the sampling (tests); None draws from the OS.
    """

    def __init__(
        self,
        directory: str | Path,
        *,
        sample: float = 0.1,
        max_rows: int = 10_000,
        flush_seconds: float = 30.0,
        seed: int | None = None,
    ) -> None:
        if not 0.0 <= sample <= 1.0:
            raise ConfigError(f"request log sample={sample}; use a share 0..1, e.g. 0.1")
        if max_rows < 1:
            raise ConfigError(f"request log max_rows={max_rows}; keep at least 1 row per model")
        if flush_seconds <= 0:
            raise ConfigError(f"request log flush_seconds={flush_seconds}; use more than 0")
        self.directory = Path(directory)
        self.sample = sample
        self.max_rows = max_rows
        self.flush_seconds = flush_seconds
        self._random = random.Random(seed)
        self._lock = threading.Lock()
        self._buffers: dict[str, _ModelBuffer] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def record(self, model: str, version: int | str, inputs: Mapping[str, np.ndarray]) -> bool:
        """Maybe keep one request's inputs (hot path: no copies, no conversion, no I/O).

        Returns whether the request was recorded.
        """
        if self.sample <= 0.0 or (self.sample < 1.0 and self._random.random() >= self.sample):
            return False
        columns: dict[str, np.ndarray] = {}
        rows = -1
        for name, value in inputs.items():
            column = _column(np.asarray(value))
            if column is None:
                continue  # not one value per row (e.g. a sequence input): not profiled
            if rows not in (-1, len(column)):
                return False  # inputs of different lengths: not a table
            rows = len(column)
            columns[name] = column
        if rows <= 0:
            return False
        if rows > self.max_rows:  # rare: copy the tail so the whole request is not kept alive
            columns = {k: v[-self.max_rows :].copy() for k, v in columns.items()}
            rows = self.max_rows
        chunk = _Chunk(columns=columns, rows=rows, at=time.time(), version=str(version))
        with self._lock:
            buffer = self._buffers.setdefault(model, _ModelBuffer())
            buffer.chunks.append(chunk)
            buffer.rows += rows
            # Drop whole old chunks while the rest still fill the buffer.
            while buffer.rows - buffer.chunks[0].rows >= self.max_rows:
                buffer.rows -= buffer.chunks.popleft().rows
            buffer.dirty = True
        return True

    def rows(self, model: str) -> int:
        """Rows held for ``model`` (at most ``max_rows`` are written)."""
        with self._lock:
            buffer = self._buffers.get(model)
            return min(buffer.rows, self.max_rows) if buffer else 0

    def start(self) -> RequestLog:
        """Persist changed buffers every ``flush_seconds`` in a daemon thread."""
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(
                target=self._loop, name="model-server-request-log", daemon=True
            )
            self._thread.start()
            logger.info(
                "recording %.0f%% of Predict requests (last %d rows per model) under %s",
                100 * self.sample,
                self.max_rows,
                self.directory,
            )
        return self

    def stop(self) -> None:
        """Stop the flush thread and persist what is left."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None
        self.flush()

    def _loop(self) -> None:
        while not self._stop.wait(self.flush_seconds):
            try:
                self.flush()
            except Exception:  # a full disk must not stop serving; say so and try again later
                logger.exception("request log: flush to %s failed", self.directory)

    def flush(self) -> list[Path]:
        """Write every changed model's buffer; returns the files written."""
        with self._lock:
            todo = {
                model: list(buffer.chunks)
                for model, buffer in self._buffers.items()
                if buffer.dirty and buffer.chunks
            }
            for model in todo:
                self._buffers[model].dirty = False
        written = []
        for model, chunks in todo.items():
            table = self._table(model, chunks)
            if table is not None:
                written.append(_write_atomic(table, recent_requests_path(self.directory, model)))
        return written

    def _table(self, model: str, chunks: list[_Chunk]) -> pa.Table | None:
        import pyarrow as pa

        tables = []
        for chunk in chunks:
            data: dict[str, Any] = {}
            for name, values in chunk.columns.items():
                if values.dtype == object:  # TF strings arrive as bytes
                    values = np.array(
                        [
                            v.decode("utf-8", "replace") if isinstance(v, bytes) else v
                            for v in values
                        ],
                        dtype=object,
                    )
                data[name] = values
            stamp = datetime.fromtimestamp(chunk.at, UTC)
            data[TIME_COLUMN] = pa.array([stamp] * chunk.rows, pa.timestamp("us", tz="UTC"))
            data[VERSION_COLUMN] = pa.array([chunk.version] * chunk.rows, pa.string())
            try:
                tables.append(pa.table(data))
            except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
                logger.warning("request log: a request to %s is not tabular: %s", model, exc)
        if not tables:
            return None
        try:
            table = pa.concat_tables(tables, promote_options="permissive")
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            # Versions with other input types: keep the requests shaped like the newest one.
            last = tables[-1].schema
            table = pa.concat_tables([t for t in tables if t.schema.equals(last)])
        if table.num_rows > self.max_rows:
            table = table.slice(table.num_rows - self.max_rows)
        return table


def _write_atomic(table: pa.Table, path: Path) -> Path:
    """Write Parquet to a temporary file beside ``path``, then rename it over ``path``."""
    import pyarrow.parquet as pq

    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        pq.write_table(table, tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


# --------------------------------------------------------------------------- monitoring

_ARROW_TYPES = {
    "double": "float64",
    "float": "float32",
    "int64": "int64",
    "int32": "int32",
    "string": "string",
    "large_string": "large_string",
    "bool": "bool_",
}


def _as_reference_types(table: pa.Table, schema: Mapping[str, str]) -> pa.Table:
    """Cast request columns to the reference's column types (float32 fare → double)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    for i, name in enumerate(table.column_names):
        wanted = _ARROW_TYPES.get(str(schema.get(name, "")))
        if wanted is None or str(table.schema.field(name).type) == schema.get(name):
            continue
        try:
            table = table.set_column(i, name, pc.cast(table.column(i), getattr(pa, wanted)()))
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
            # Left as it is, the comparison reports the type change.
            logger.warning("monitor: %s cannot be read as %s: %s", name, schema[name], exc)
    return table


def restrict_profile(profile: dict[str, Any], features: set[str]) -> dict[str, Any]:
    """The profile limited to ``features``: requests carry no label, split or other columns."""
    return {
        **profile,
        "schema": {k: v for k, v in profile["schema"].items() if k in features},
        "columns": {k: v for k, v in profile["columns"].items() if k in features},
        "numeric": {k: v for k, v in profile["numeric"].items() if k in features},
        "categorical": {k: v for k, v in profile["categorical"].items() if k in features},
        "unprofiled": {k: v for k, v in profile.get("unprofiled", {}).items() if k in features},
    }


def champion_reference(settings: Settings, dataset: str) -> tuple[Any, dict[str, Any] | None]:
    """The champion's registry version and its reference profile (None when it has none)."""
    import mlflow

    from aimass import tracking
    from aimass.drift import load_profile
    from aimass.pipeline import REFERENCE_ARTIFACT, REFERENCE_PROFILE

    champ = tracking.version_by_alias(settings, dataset, tracking.CHAMPION)
    if champ is None:
        return None, None
    tracking.client(settings)
    with tempfile.TemporaryDirectory(prefix="aimass-monitor-") as tmp:
        try:
            path = mlflow.artifacts.download_artifacts(
                run_id=champ.run_id,
                artifact_path=f"{REFERENCE_ARTIFACT}/{REFERENCE_PROFILE}",
                dst_path=tmp,
            )
        except Exception as exc:  # an older champion without a profile: nothing to compare with
            logger.warning(
                "monitor: champion v%s has no reference profile (%s)", champ.version, exc
            )
            return champ, None
        return champ, load_profile(Path(path))


LAST_EVENT_FILE = "last_drift_event.json"


def claim_drift_event(settings: Settings, result: Mapping[str, Any]) -> bool:
    """Whether a critical result should announce drift (and retrain): once per champion.

    Recent requests stay drifted until a new champion is deployed, so an hourly check would
    otherwise queue a retrain every hour; when retraining keeps the champion (the gate
    rejects the candidate), the alert says so and no further retrain is asked for.
    """
    import json

    marker = settings.reports_dir / str(result["dataset"]) / "monitor" / LAST_EVENT_FILE
    champion = str(result.get("champion_version") or "")
    if marker.is_file():
        try:
            last = json.loads(marker.read_text(encoding="utf-8"))
        except ValueError:
            last = {}
        if str(last.get("champion_version")) == champion:
            return False
    marker.parent.mkdir(parents=True, exist_ok=True)
    tmp = marker.with_name(marker.name + ".tmp")
    tmp.write_text(
        json.dumps(
            {
                "champion_version": champion,
                "reason": result.get("reason"),
                "report": result.get("report_html"),
                "at": datetime.now(UTC).isoformat(),
            }
        ),
        encoding="utf-8",
    )
    tmp.replace(marker)
    return True


def _skipped(dataset: str, reason: str, **extra: Any) -> dict[str, Any]:
    logger.info("monitor %s: skipped: %s", dataset, reason)
    return {"dataset": dataset, "status": SKIPPED, "reason": reason, **extra}


def newest_batch(settings: Settings, dataset: str, champ: Any) -> Path | None:
    """The newest clean partition of ``dataset`` written after ``champ`` was registered.

    Such a batch is data the champion never saw: a landed file whose candidate the gate
    rejected or whose run stopped, or a day's partition rebuilt since. None when there is
    none, or when the champion carries no registration time.
    """
    registered = getattr(champ, "creation_timestamp", None)
    root = settings.lake_dir / "clean" / dataset
    if registered is None or not root.is_dir():
        return None
    from aimass.lake import partition_files

    newer = []
    for partition in root.glob("ds=*"):
        files = partition_files(partition)  # as a run reads it: no staging folders
        if not files:
            continue
        written = max(p.stat().st_mtime for p in files)
        if written * 1000 > float(registered):
            newer.append((written, partition))
    return max(newer)[1] if newer else None


def _judged(report: Any, out: Path, *, subject: str, rows: str, champ: Any) -> dict[str, Any]:
    """Write ``report`` under ``out``; its drift summary and a one-line reason."""
    from aimass.drift import write_report, xcom_summary

    summary = xcom_summary(report, write_report(report, out))
    if report.status == CRITICAL:
        worst = ", ".join(summary["critical_features"] or summary["schema_changes"])
        reason = (
            f"{report.status} drift of {subject} in {worst} "
            f"({rows} vs champion v{champ.version}'s reference)"
        )
    else:
        reason = f"{report.status}: {subject}, {rows} vs champion v{champ.version}"
    return {**summary, "reason": reason}


def _check_requests(
    settings: Settings, spec: Any, champ: Any, reference: dict[str, Any], min_rows: int, out: Path
) -> dict[str, Any]:
    """Recent requests against the reference, on the features the requests carry."""
    import pyarrow.parquet as pq

    from aimass.drift import compare, profile_partition

    path = recent_requests_path(settings.requests_dir, spec.name)
    if not path.is_file():
        return _skipped(
            spec.name,
            f"no recorded requests at {path}; is the model server's request log on "
            "(--request_log_dir, AIMASS_REQUEST_LOG_SAMPLE > 0)?",
        )
    table = pq.read_table(path)
    if table.num_rows < min_rows:
        return _skipped(
            spec.name,
            f"too few requests: {table.num_rows} recorded, {min_rows} needed",
            rows_current=table.num_rows,
        )
    served = [f for f in spec.features if f in table.column_names]
    if not served:
        return _skipped(spec.name, f"the requests carry none of the features {list(spec.features)}")
    times = table.column(TIME_COLUMN) if TIME_COLUMN in table.column_names else None
    versions = (
        sorted(set(table.column(VERSION_COLUMN).to_pylist()))
        if VERSION_COLUMN in table.column_names
        else []
    )
    features = set(served)
    current_table = _as_reference_types(table.select(served), reference["schema"])
    with tempfile.TemporaryDirectory(prefix="aimass-monitor-") as tmp:
        pq.write_table(current_table, Path(tmp) / "part-00000.parquet")
        current = profile_partition(Path(tmp), spec, edges_from=reference)
    current["partition"] = str(path)
    report = compare(
        restrict_profile(reference, features), restrict_profile(current, features), spec.drift
    )
    judged = _judged(
        report, out, subject="served requests", rows=f"{report.rows_current} requests", champ=champ
    )
    return {
        **judged,
        "served_versions": versions,
        "features": served,
        "window": {
            "from": str(min(times.to_pylist())) if times is not None else None,
            "to": str(max(times.to_pylist())) if times is not None else None,
        },
    }


def _check_batch(
    settings: Settings, spec: Any, champ: Any, reference: dict[str, Any], out: Path
) -> dict[str, Any]:
    """The newest batch the champion has not seen against its reference, as check_drift does."""
    from aimass.drift import compare, profile_partition

    partition = newest_batch(settings, spec.name, champ)
    if partition is None:
        return _skipped(spec.name, f"no clean batch newer than champion v{champ.version}")
    report = compare(
        reference, profile_partition(partition, spec, edges_from=reference), spec.drift
    )
    judged = _judged(
        report,
        out,
        subject=f"the new batch {partition.name}",
        rows=f"{report.rows_current} rows",
        champ=champ,
    )
    return {**judged, "partition": str(partition)}


def monitor_dataset(settings: Settings, dataset: str, *, min_rows: int = 200) -> dict[str, Any]:
    """Compare what ``dataset``'s champion now meets with its reference: requests and batches.

    Two checks, each reported under ``<reports>/<dataset>/monitor/<UTC time>/``:

    * **requests**: the recently served requests (``<requests_dir>/<dataset>/recent.parquet``),
      profiled with the reference's bins and categories on the features they carry (requests
      have no label or split column); the report is in the folder itself.
    * **batch**: the newest clean partition written after the champion was registered (data
      it never saw), compared as ``check_drift`` compares a run's batch; report in ``batch/``.

    Returns:
        ``{"dataset", "status": ok|warning|critical|skipped, "reason", "checks": {"requests",
        "batch"}, ...}``: the worst check's drift summary (critical/warning features, rows,
        report paths) at the top level, the reasons of every check that ran, the champion
        version, and for requests the served versions, features and time window.
    """
    from aimass.spec import load_spec

    spec = load_spec(dataset, settings.conf_dir)
    champ, reference = champion_reference(settings, spec.name)
    if champ is None:
        return _skipped(spec.name, "no champion yet")
    if reference is None:
        return _skipped(spec.name, f"champion v{champ.version} has no reference profile")
    out = (
        settings.reports_dir / spec.name / "monitor" / datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    )
    checks = {
        "requests": _check_requests(settings, spec, champ, reference, min_rows, out),
        "batch": _check_batch(settings, spec, champ, reference, out / "batch"),
    }
    ran = [c for c in checks.values() if c["status"] != SKIPPED]
    if not ran:
        reason = "; ".join(c["reason"] for c in checks.values())
        return _skipped(spec.name, reason, checks=checks)
    from aimass.drift import SEVERITIES

    worst = max(ran, key=lambda c: SEVERITIES.index(c["status"]))
    reason = "; ".join(c["reason"] for c in ran if c["status"] == worst["status"])
    logger.info("monitor %s: %s; reports under %s", spec.name, reason, out)
    return {
        **worst,
        "dataset": spec.name,
        "reason": reason,
        "champion_version": str(champ.version),
        "checks": checks,
    }
