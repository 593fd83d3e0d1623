"""Alerts: a failed DAG run, a rejected candidate, critical drift, a rollback.

Every alert is logged (one WARNING line) and appended to the alerts store,
``<var_dir>/alerts/alerts.jsonl`` (one JSON object a line, newest last, at most
:data:`MAX_ALERTS` lines), which a console can read with :func:`read_alerts`. When
``AIMASS_ALERT_CONN_ID`` names an Airflow connection, the alert is also delivered through it:

* ``http`` (or ``https``): a webhook. The JSON body has a Slack-compatible ``text`` line and
  the structured ``alert``. URL: ``host`` (``https://…`` allowed), ``port``, ``schema`` (the
  protocol when it is ``http``/``https``, as Airflow's HttpHook reads it, else a path), then
  ``extra.endpoint``; ``login``/``password`` give basic auth, ``extra.headers`` more headers.
* ``smtp`` (or ``email``): a mail via smtplib to ``host``/``port`` with ``login``/``password``;
  ``extra``: ``to`` (required; a list or comma-separated), ``from``, ``starttls``, ``ssl``.

The connection is read from ``AIRFLOW_CONN_<ID>`` (URI or JSON) when that is set, the way
Airflow itself looks first, so the CLI and tests need no Airflow; otherwise through Airflow's
``BaseHook.get_connection`` (task workers and the DAG processor, which runs DAG callbacks).
A delivery that fails is logged and recorded in the store; it never fails the caller.
"""

from __future__ import annotations

import base64
import fcntl
import json
import logging
import os
import smtplib
import socket
import ssl
import urllib.error
import urllib.request
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from aimass.platform.errors import ConfigError
from aimass.platform.settings import Settings

log = logging.getLogger(__name__)

FAILED_RUN = "failed_run"
CANDIDATE_REJECTED = "candidate_rejected"
DRIFT_DETECTED = "drift_detected"
ROLLBACK = "rollback"
GENERIC = "generic"
KINDS = (FAILED_RUN, CANDIDATE_REJECTED, DRIFT_DETECTED, ROLLBACK, GENERIC)

STORE_NAME = "alerts.jsonl"
# The store keeps the newest MAX_ALERTS lines; trimming drops a tenth more so that it does
# not rewrite the file on every alert once it is full.
MAX_ALERTS = 10_000
DEFAULT_TIMEOUT_S = 10.0
HTTP_TYPES = ("http", "https")
EMAIL_TYPES = ("smtp", "email")
_TRUE = ("true", "1", "yes", "on")


class AlertDeliveryError(Exception):
    """An alert could not be delivered through the configured connection."""


# --------------------------------------------------------------------------- the store


def store_path(settings: Settings) -> Path:
    return settings.var_dir / "alerts" / STORE_NAME


class AlertStore:
    """Append-only JSON lines, safe for concurrent writers (threads and processes).

    Writers hold an exclusive ``flock`` on a sibling lock file while they append (one
    ``O_APPEND`` write per record) and, when the file holds more than ``max_lines``,
    while they trim it (a new file moved into place), so a reader sees whole lines.
    """

    def __init__(self, path: Path, *, max_lines: int = MAX_ALERTS) -> None:
        if max_lines < 1:
            raise ConfigError(f"max_lines={max_lines}; keep at least 1 alert")
        self.path = path
        self.max_lines = max_lines
        self._lock_path = path.with_name(path.name + ".lock")

    def append(self, record: Mapping[str, Any]) -> None:
        line = (json.dumps(record, default=str, sort_keys=True) + "\n").encode("utf-8")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self._lock_path, "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
                try:
                    view = memoryview(line)
                    while view:
                        view = view[os.write(fd, view) :]
                finally:
                    os.close(fd)
                self._trim()
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _trim(self) -> None:
        """Keep the newest lines once there are more than ``max_lines`` (lock held)."""
        with open(self.path, "rb") as fh:
            lines = fh.readlines()
        if len(lines) <= self.max_lines:
            return
        keep = max(1, self.max_lines - self.max_lines // 10)
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        with open(tmp, "wb") as fh:
            fh.writelines(lines[-keep:])
        os.replace(tmp, self.path)

    def read(self, *, limit: int | None = None, kind: str | None = None) -> list[dict[str, Any]]:
        """Stored alerts, newest first; lines that do not parse are skipped."""
        if not self.path.exists():
            return []
        out: list[dict[str, Any]] = []
        with open(self.path, encoding="utf-8") as fh:
            lines = fh.readlines()
        for raw in reversed(lines):
            try:
                record = json.loads(raw)
            except ValueError:
                continue
            if not isinstance(record, dict) or (kind and record.get("kind") != kind):
                continue
            out.append(record)
            if limit is not None and len(out) >= limit:
                break
        return out


def read_alerts(
    settings: Settings | None = None, *, limit: int | None = 100, kind: str | None = None
) -> list[dict[str, Any]]:
    """The newest stored alerts first (for a console page or the CLI)."""
    return AlertStore(store_path(settings or Settings.from_env())).read(limit=limit, kind=kind)


# --------------------------------------------------------------------- the connection


@dataclass(frozen=True)
class AlertConnection:
    """The fields of an Airflow connection that delivery needs (password kept out of repr)."""

    conn_id: str
    conn_type: str
    host: str = ""
    port: int | None = None
    schema: str = ""
    login: str = ""
    password: str = field(default="", repr=False)
    extra: dict[str, Any] = field(default_factory=dict)


def env_var_name(conn_id: str) -> str:
    return f"AIRFLOW_CONN_{conn_id.upper()}"


def _normalize_type(conn_type: str) -> str:
    return conn_type.strip().lower().replace("-", "_")


def _extra_dict(raw: Any, conn_id: str) -> dict[str, Any]:
    if raw in (None, ""):
        return {}
    if isinstance(raw, dict):
        return dict(raw)
    try:
        value = json.loads(raw)
    except (TypeError, ValueError):
        value = None
    if not isinstance(value, dict):
        # The value is not echoed: extras can hold tokens.
        raise ConfigError(f"connection {conn_id!r}: its extra is not a JSON object")
    return value


def parse_connection(conn_id: str, value: str) -> AlertConnection:
    """A connection from the value of ``AIRFLOW_CONN_<ID>``: a JSON object or a URI.

    The URI form is Airflow's: ``type://login:password@host:port/schema?key=value``, with
    percent-encoded parts, ``__extra__=<json>`` for nested extras and
    ``type://https://host/...`` for a host that carries its own protocol.
    """
    text = value.strip()
    if text.startswith("{"):
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise ConfigError(
                f"{env_var_name(conn_id)} is not valid JSON ({exc}); write a JSON object or a URI"
            ) from None
        if not isinstance(data, dict) or not data.get("conn_type"):
            raise ConfigError(f"{env_var_name(conn_id)}: the JSON form needs a conn_type")
        port = data.get("port")
        try:
            port_number = int(port) if port not in (None, "") else None
        except (TypeError, ValueError):
            raise ConfigError(f"{env_var_name(conn_id)}: port {port!r} is not a number") from None
        return AlertConnection(
            conn_id=conn_id,
            conn_type=_normalize_type(str(data["conn_type"])),
            host=str(data.get("host") or ""),
            port=port_number,
            schema=str(data.get("schema") or ""),
            login=str(data.get("login") or ""),
            password=str(data.get("password") or ""),
            extra=_extra_dict(data.get("extra"), conn_id),
        )
    scheme, sep, rest = text.partition("://")
    if not sep or not scheme:
        raise ConfigError(
            f"{env_var_name(conn_id)} is neither JSON nor a URI like "
            "http://host:port/path or smtp://user:password@host:587?to=ops@example.com"
        )
    protocol = ""
    inner, sep2, after = rest.partition("://")
    if sep2 and "/" not in inner and "@" not in inner and ":" not in inner:
        # <conn type>://https://host/...: the host keeps its own protocol
        protocol, rest = inner, after
    parts = urlsplit("//" + rest)
    try:
        port_number = parts.port
    except ValueError:
        raise ConfigError(f"{env_var_name(conn_id)}: the port is not a number") from None
    hostname = unquote(parts.hostname or "")
    query = dict(parse_qsl(parts.query, keep_blank_values=True))
    extra = _extra_dict(query["__extra__"], conn_id) if "__extra__" in query else query
    return AlertConnection(
        conn_id=conn_id,
        conn_type=_normalize_type(scheme),
        host=f"{protocol}://{hostname}" if protocol and hostname else hostname,
        port=port_number,
        schema=unquote(parts.path[1:]),
        login=unquote(parts.username or ""),
        password=unquote(parts.password or ""),
        extra=extra,
    )


def _airflow_connection(conn_id: str) -> AlertConnection:
    """Through Airflow's secrets chain (task workers and the DAG processor)."""
    from airflow.sdk import BaseHook

    conn = BaseHook.get_connection(conn_id)
    return AlertConnection(
        conn_id=conn_id,
        conn_type=_normalize_type(conn.conn_type or ""),
        host=conn.host or "",
        port=conn.port,
        schema=conn.schema or "",
        login=conn.login or "",
        password=conn.password or "",
        extra=dict(conn.extra_dejson),
    )


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


# ------------------------------------------------------------------------ delivery


def _flag(value: Any) -> bool:
    return value is True or str(value).strip().lower() in _TRUE


def _timeout(conn: AlertConnection) -> float:
    try:
        return float(conn.extra.get("timeout", DEFAULT_TIMEOUT_S))
    except (TypeError, ValueError):
        return DEFAULT_TIMEOUT_S


def webhook_url(conn: AlertConnection) -> str:
    """The URL an ``http`` connection posts to (see the module docstring)."""
    if not conn.host:
        raise AlertDeliveryError(f"connection {conn.conn_id!r} has no host")
    schema = conn.schema.strip()
    if "://" in conn.host:
        base = conn.host.rstrip("/")
        if conn.port and urlsplit(base).port is None:
            base = f"{base}:{conn.port}"
    else:
        protocol = "https" if conn.conn_type == "https" else "http"
        if schema.lower() in HTTP_TYPES:
            protocol = schema.lower()
        base = f"{protocol}://{conn.host}" + (f":{conn.port}" if conn.port else "")
    path = [p.strip("/") for p in (schema, str(conn.extra.get("endpoint") or ""))]
    path = [p for p in path if p and p.lower() not in HTTP_TYPES]
    return base + ("/" + "/".join(path) if path else "")


def _shown(url: str) -> str:
    """The URL without its path: webhook paths often are the secret (Slack, Teams)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    return f"{parts.scheme}://{host}" + (f":{parts.port}" if parts.port else "") + "/..."


def _post_webhook(conn: AlertConnection, text: str, record: Mapping[str, Any]) -> str:
    url = webhook_url(conn)
    shown = _shown(url)
    body = json.dumps({"text": text, "alert": record}, default=str).encode("utf-8")
    headers = {"Content-Type": "application/json", "User-Agent": "aimass-alerts"}
    extra_headers = conn.extra.get("headers") or {}
    if isinstance(extra_headers, str):
        extra_headers = _extra_dict(extra_headers, conn.conn_id)
    headers.update({str(k): str(v) for k, v in extra_headers.items()})
    if conn.login:
        token = base64.b64encode(f"{conn.login}:{conn.password}".encode()).decode("ascii")
        headers["Authorization"] = f"Basic {token}"
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=_timeout(conn)) as response:
            return f"HTTP {response.status}"
    except urllib.error.HTTPError as exc:
        raise AlertDeliveryError(f"POST {shown} answered HTTP {exc.code} {exc.reason}") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise AlertDeliveryError(f"POST {shown} failed: {reason}") from None


def _recipients(conn: AlertConnection) -> list[str]:
    raw = conn.extra.get("to") or []
    items = raw.split(",") if isinstance(raw, str) else [str(r) for r in raw]
    return [r.strip() for r in items if r.strip()]


def _send_email(conn: AlertConnection, text: str, record: Mapping[str, Any]) -> str:
    if not conn.host:
        raise AlertDeliveryError(f"connection {conn.conn_id!r} has no host")
    recipients = _recipients(conn)
    if not recipients:
        raise AlertDeliveryError(
            f"connection {conn.conn_id!r} has no recipients; set extra 'to' "
            '(e.g. {"to": "ops@example.com"})'
        )
    use_ssl = _flag(conn.extra.get("ssl", False))
    sender = str(
        conn.extra.get("from")
        or conn.extra.get("from_email")
        or (conn.login if "@" in conn.login else "")
        or f"aimass@{socket.getfqdn()}"
    )
    msg = EmailMessage()
    msg["Subject"] = f"[aimass] {text}"[:250]
    msg["From"] = sender
    msg["To"] = ", ".join(recipients)
    msg["Date"] = formatdate(localtime=False)
    msg["Message-ID"] = make_msgid(domain="aimass")
    msg.set_content(
        text + "\n\n" + json.dumps(record, indent=2, default=str, sort_keys=True) + "\n"
    )
    port = conn.port or (465 if use_ssl else 25)
    timeout = _timeout(conn)
    try:
        smtp: smtplib.SMTP = (
            smtplib.SMTP_SSL(conn.host, port, timeout=timeout, context=ssl.create_default_context())
            if use_ssl
            else smtplib.SMTP(conn.host, port, timeout=timeout)
        )
        with smtp:
            if _flag(conn.extra.get("starttls", False)) and not use_ssl:
                smtp.starttls(context=ssl.create_default_context())
            if conn.login:
                smtp.login(conn.login, conn.password)
            refused = smtp.send_message(msg, from_addr=sender, to_addrs=recipients)
    except (smtplib.SMTPException, OSError) as exc:
        raise AlertDeliveryError(
            f"SMTP {conn.host}:{port} failed: {type(exc).__name__}: {exc}"
        ) from None
    sent = len(recipients) - len(refused)
    if not sent:
        raise AlertDeliveryError(f"SMTP {conn.host}:{port} refused every recipient")
    return f"mailed to {sent} of {len(recipients)} recipients"


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
    if conn.conn_type in HTTP_TYPES:
        channel, send = "webhook", _post_webhook
    elif conn.conn_type in EMAIL_TYPES:
        channel, send = "email", _send_email
    else:
        return "connection", {
            "status": "failed",
            "conn_id": conn_id,
            "error": f"connection {conn_id!r} has type {conn.conn_type!r}; "
            f"use one of {list(HTTP_TYPES + EMAIL_TYPES)}",
        }
    try:
        detail = send(conn, text, record)
    except Exception as exc:  # delivery is best effort: record it, never fail the task
        return channel, {
            "status": "failed",
            "conn_id": conn_id,
            "error": str(exc) if isinstance(exc, AlertDeliveryError) else repr(exc),
        }
    return channel, {"status": "sent", "conn_id": conn_id, "detail": detail}


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
