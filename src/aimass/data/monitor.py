"""Production monitoring: check what the model server was asked, and new batches, for drift.

:func:`monitor_dataset` (run by the ``aimass_monitor`` DAG) profiles the recent requests that
the server's request log (``aimass.serving.request_log``) kept, with the bins of the champion's
reference profile, and compares the two with the spec's drift thresholds, as ``check_drift``
does for a new batch of training data. It compares the newest clean batch the champion never
learnt from as well.

Only numpy is imported at module level: the DAG files import its asset helpers while parsed.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aimass.serving.request_log import TIME_COLUMN, VERSION_COLUMN, recent_requests_path

if TYPE_CHECKING:
    import pyarrow as pa

    from aimass.platform.settings import Settings

logger = logging.getLogger(__name__)

DRIFT_ASSET_PREFIX = "aimass_drift_"
OK, WARNING, CRITICAL, SKIPPED = "ok", "warning", "critical", "skipped"


def drift_asset_name(dataset: str) -> str:
    """Name of the asset ``aimass_monitor`` updates when served requests drift critically."""
    return f"{DRIFT_ASSET_PREFIX}{dataset}"


def drift_asset_uri(var_dir: Path, dataset: str) -> str:
    """URI of that asset: the folder its monitor reports go to."""
    return f"file://{Path(var_dir) / 'reports' / dataset / 'monitor'}"


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
    from aimass.data.drift import load_profile
    from aimass.platform import tracking

    champ = tracking.version_by_alias(settings, dataset, tracking.CHAMPION)
    if champ is None:
        return None, None
    with tempfile.TemporaryDirectory(prefix="aimass-monitor-") as tmp:
        try:
            path = tracking.download_reference_profile(settings, champ, Path(tmp))
        except Exception as exc:  # an older champion without a profile: nothing to compare with
            logger.warning(
                "monitor: champion v%s has no reference profile (%s)", champ.version, exc
            )
            return champ, None
        return champ, load_profile(path)


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
    """The newest current clean batch of ``dataset`` written after ``champ`` was registered
    (a day written before batches existed counts as one batch).

    Such a batch is data the champion never saw: a landed file whose candidate the gate
    rejected or whose run stopped, or a day's partition rebuilt since. None when there is
    none, or when the champion carries no registration time.
    """
    registered = getattr(champ, "creation_timestamp", None)
    root = settings.lake_dir / "clean" / dataset
    if registered is None or not root.is_dir():
        return None
    from aimass.data.lake import batch_files, day_batches

    newer = []
    for day in root.glob("ds=*"):
        for batch in day_batches(day):
            files = batch_files(batch)  # as a run reads it: no staging folders
            if not files:
                continue
            written = max(p.stat().st_mtime for p in files)
            if written * 1000 > float(registered):
                newer.append((written, str(batch)))
    return Path(max(newer)[1]) if newer else None


def _judged(report: Any, out: Path, *, subject: str, rows: str, champ: Any) -> dict[str, Any]:
    """Write ``report`` under ``out``; its drift summary and a one-line reason."""
    from aimass.data.drift import write_report, xcom_summary

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

    from aimass.data.drift import compare, profile_partition

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
    from aimass.data.drift import compare, profile_partition

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
    from aimass.data.spec import load_spec

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
    from aimass.data.drift import SEVERITIES

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
