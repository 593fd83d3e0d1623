"""Alerts: a failed DAG run, a rejected candidate, critical drift, a rollback.

Every alert is logged (one WARNING line) and appended to the alerts store,
``<var_dir>/alerts/alerts.jsonl`` (:mod:`aimass.platform.alert_store`; one JSON object a
line, newest last, at most :data:`MAX_ALERTS` lines), which a console can read with
:func:`read_alerts`. When ``AIMASS_ALERT_CONN_ID`` names an Airflow connection, the alert is
also delivered through it, by Airflow's HTTP or SMTP provider hook
(:mod:`aimass.platform.alert_delivery`, which says what each connection type takes):

* ``http`` (or ``https``): a webhook; the JSON body has a Slack-compatible ``text`` line and
  the structured ``alert``;
* ``smtp`` (or ``email``): a plain-text mail to the recipients in ``extra.to``.

The connection is read from ``AIRFLOW_CONN_<ID>`` (URI or JSON,
:mod:`aimass.platform.alert_connection`) when that is set, the way Airflow itself looks
first, so the CLI and tests need no Airflow database or secrets backend; otherwise through
Airflow's ``BaseHook.get_connection`` (task workers and the DAG processor, which runs DAG
callbacks). A delivery that fails is logged and recorded in the store; it never fails the
caller.

This module is the alerts API: what callers and tests use is importable from here.
"""

from __future__ import annotations

import json
import logging
import os
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from aimass.platform.alert_connection import AlertConnection, env_var_name, parse_connection
from aimass.platform.alert_delivery import (
    DEFAULT_TIMEOUT_S,
    EMAIL_TYPES,
    HTTP_TYPES,
    AlertDeliveryError,
    deliver,
    webhook_url,
)
from aimass.platform.alert_store import MAX_ALERTS, STORE_NAME, AlertStore, read_alerts, store_path
from aimass.platform.settings import Settings

__all__ = [
    "CANDIDATE_REJECTED",
    "DEFAULT_TIMEOUT_S",
    "DRIFT_DETECTED",
    "EMAIL_TYPES",
    "FAILED_RUN",
    "GENERIC",
    "HTTP_TYPES",
    "KINDS",
    "MAX_ALERTS",
    "ROLLBACK",
    "STORE_NAME",
    "AlertConnection",
    "AlertDeliveryError",
    "AlertStore",
    "alert_line",
    "alert_on_drift",
    "env_var_name",
    "get_connection",
    "notify_failed_run",
    "parse_connection",
    "read_alerts",
    "send_alert",
    "store_path",
    "webhook_url",
]

log = logging.getLogger(__name__)

FAILED_RUN = "failed_run"
CANDIDATE_REJECTED = "candidate_rejected"
DRIFT_DETECTED = "drift_detected"
ROLLBACK = "rollback"
GENERIC = "generic"
KINDS = (FAILED_RUN, CANDIDATE_REJECTED, DRIFT_DETECTED, ROLLBACK, GENERIC)


# --------------------------------------------------------------------- the connection


def _airflow_connection(conn_id: str) -> AlertConnection:
    """Through Airflow's secrets chain (task workers and the DAG processor)."""
    from airflow.sdk import BaseHook

    return AlertConnection.from_airflow(conn_id, BaseHook.get_connection(conn_id))


def get_connection(conn_id: str) -> AlertConnection:
    """``AIRFLOW_CONN_<ID>`` if set (as Airflow looks first), else Airflow's lookup.

    Raises:
        ConfigError: the variable does not parse.
        Exception: whatever Airflow raises when the connection is not defined.
    """
    raw = os.environ.get(env_var_name(conn_id))
    if raw:
        return parse_connection(conn_id, raw)
    return _airflow_connection(conn_id)


def _deliver(conn_id: str, text: str, record: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """Send through the connection; (channel, status) whatever happens."""
    try:
        conn = get_connection(conn_id)
    except Exception as exc:  # a missing or malformed connection must not fail the caller
        return "connection", {
            "status": "failed",
            "conn_id": conn_id,
            "error": f"cannot read connection {conn_id!r}: {type(exc).__name__}: {exc}",
        }
    return deliver(conn, text, record)


# ----------------------------------------------------------------------------- API


def alert_line(record: Mapping[str, Any]) -> str:
    """The one readable line of an alert (log, webhook ``text``, mail subject)."""
    where = ", ".join(
        f"{key} {record[key]}" for key in ("dag_id", "run_id") if record.get(key) is not None
    )
    return f"{record['kind']}: {record['title']}" + (f" ({where})" if where else "")


def send_alert(
    kind: str,
    title: str,
    details: Mapping[str, Any],
    *,
    settings: Settings | None = None,
    dag_id: str | None = None,
    run_id: str | None = None,
) -> dict[str, Any]:
    """Log an alert, deliver it through ``AIMASS_ALERT_CONN_ID`` if set, and store it.

    ``dag_id``/``run_id`` default to the ones Airflow exports to a running task
    (``AIRFLOW_CTX_DAG_ID``, ``AIRFLOW_CTX_DAG_RUN_ID``). Delivery and storage failures are
    logged and recorded in the returned record's ``delivery``; they are never raised.

    Raises:
        ValueError: ``kind`` is not one of :data:`KINDS` (a programming error).
    """
    if kind not in KINDS:
        raise ValueError(f"alert kind {kind!r} is unknown; use one of {list(KINDS)}")
    settings = settings or Settings.from_env()
    record: dict[str, Any] = {
        "id": uuid.uuid4().hex,
        "ts": datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "kind": kind,
        "title": title,
        "dag_id": dag_id or os.environ.get("AIRFLOW_CTX_DAG_ID") or None,
        "run_id": run_id or os.environ.get("AIRFLOW_CTX_DAG_RUN_ID") or None,
        "details": json.loads(json.dumps(dict(details), default=str)),
    }
    text = alert_line(record)
    log.warning(
        "ALERT %s | %s", text, json.dumps(record["details"], sort_keys=True, ensure_ascii=False)
    )
    delivery: dict[str, Any] = {"log": {"status": "sent"}}
    if settings.alert_conn_id:
        channel, status = _deliver(settings.alert_conn_id, text, record)
        delivery[channel] = status
        if status["status"] == "failed":
            log.error(
                "alert %s not delivered through %s: %s", record["id"], channel, status["error"]
            )
    record["delivery"] = delivery
    try:
        AlertStore(store_path(settings)).append(record)
    except OSError as exc:  # a full disk must not fail the task that raised the alert
        log.error("alert %s not stored in %s: %s", record["id"], store_path(settings), exc)
        delivery["store"] = {"status": "failed", "error": str(exc)}
    else:
        delivery["store"] = {"status": "sent", "path": str(store_path(settings))}
    return record


# What follows critical drift: a run's check_drift stops or goes on (the spec's on_critical);
# the monitor queues a retrain, or not when this champion already asked for one.
_DRIFT_OUTCOMES = {
    "fail": "the run stops",
    "flag": "retraining goes on (flagged)",
    "retrain": "a retrain is queued",
    "announced": "no new retrain: already asked for with this champion",
}


def alert_on_drift(
    summary: Mapping[str, Any], *, dataset: str, settings: Settings | None = None
) -> dict[str, Any] | None:
    """Send ``drift_detected`` when a drift summary (``drift.xcom_summary``) is critical.

    Returns the alert record, or None when the drift is not critical (nothing is sent).
    """
    if summary.get("status") != "critical":
        return None
    features = list(summary.get("critical_features") or [])
    changes = list(summary.get("schema_changes") or [])
    outcome = _DRIFT_OUTCOMES.get(str(summary.get("action")), _DRIFT_OUTCOMES["flag"])
    title = (
        f"critical drift in {dataset}: {', '.join(features + changes) or 'see the report'}; "
        f"{outcome}"
    )
    details = {
        "dataset": dataset,
        **{
            key: summary.get(key)
            for key in (
                "action",
                "reason",
                "critical_features",
                "warning_features",
                "schema_changes",
                "champion_version",
                "rows_reference",
                "rows_current",
                "report_html",
            )
        },
    }
    return send_alert(DRIFT_DETECTED, title, details, settings=settings)


def notify_failed_run(context: Mapping[str, Any]) -> None:
    """DAG-level ``on_failure_callback``: alert that a DAG run failed.

    Airflow 3 runs it in the DAG processor with a context holding at least ``dag``,
    ``run_id`` and ``reason``, and the last task instance (``ti``) when there is one.
    """
    dag = context.get("dag")
    dag_run = context.get("dag_run")
    ti = context.get("ti") or context.get("task_instance")
    dag_id = getattr(dag, "dag_id", None) or getattr(dag_run, "dag_id", None)
    run_id = context.get("run_id") or getattr(dag_run, "run_id", None)
    task_id = getattr(ti, "task_id", None)
    params = context.get("params") or {}
    details: dict[str, Any] = {"reason": context.get("reason")}
    if task_id:
        details["task_id"] = task_id
        details["try_number"] = getattr(ti, "try_number", None)
        try:
            details["log_url"] = getattr(ti, "log_url", None)
        except Exception:  # the URL is a courtesy; the alert matters more
            details["log_url"] = None
    if isinstance(params, Mapping) and params.get("dataset"):
        details["dataset"] = params["dataset"]
    if dag_run is not None:
        for key in ("logical_date", "run_type", "triggering_user_name"):
            value = getattr(dag_run, key, None)
            if value is not None:
                details[key] = str(value)
    title = f"{dag_id} run failed" + (f" at task {task_id}" if task_id else "")
    send_alert(FAILED_RUN, title, details, dag_id=dag_id, run_id=run_id)
