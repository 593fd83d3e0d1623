"""Delivering an alert through its Airflow connection: a webhook (``http``) or a mail (``smtp``).

* ``http`` (or ``https``): a POST whose JSON body has a Slack-compatible ``text`` line and
  the structured ``alert``. URL: ``host`` (``https://…`` allowed), ``port``, ``schema`` (the
  protocol when it is ``http``/``https``, as Airflow's HttpHook reads it, else a path), then
  ``extra.endpoint``; ``login``/``password`` give basic auth, ``extra.headers`` more headers.
* ``smtp`` (or ``email``): a plain-text mail to ``host``/``port`` with ``login``/``password``;
  ``extra``: ``to`` (required; a list or comma-separated), ``from``, ``starttls``, ``ssl``.

Both take ``extra.timeout`` (seconds, default 10). The talking is done by Airflow's provider
hooks (:mod:`aimass.platform.alert_hooks`): HttpHook builds the HTTP session (base URL, basic
auth, headers), SmtpHook opens the SMTP session (SSL or STARTTLS, login). The URL, the mail
and the error messages are made here. The POST goes out on the hook's session rather than
through ``HttpHook.run``, which logs a failed request with its full URL: a webhook's path is
often its secret (Slack, Teams), so it is never logged or recorded.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Callable, Mapping
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import Any
from urllib.parse import urlsplit

from aimass.platform.alert_connection import AlertConnection, extra_dict

DEFAULT_TIMEOUT_S = 10.0
HTTP_TYPES = ("http", "https")
EMAIL_TYPES = ("smtp", "email")
_TRUE = ("true", "1", "yes", "on")


class AlertDeliveryError(Exception):
    """An alert could not be delivered through the configured connection."""


def _flag(value: Any) -> bool:
    return value is True or str(value).strip().lower() in _TRUE


def _timeout(conn: AlertConnection) -> float:
    try:
        return float(conn.extra.get("timeout", DEFAULT_TIMEOUT_S))
    except (TypeError, ValueError):
        return DEFAULT_TIMEOUT_S


def _hook_connection(conn: AlertConnection, **fields: Any) -> Any:
    """An Airflow ``Connection`` for a provider hook, from the connection already read."""
    from airflow.sdk import Connection

    return Connection(
        conn_id=conn.conn_id,
        conn_type=conn.conn_type,
        login=conn.login or None,
        password=conn.password or None,
        **fields,
    )


# ------------------------------------------------------------------------- webhook


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


def _reason(exc: BaseException) -> str:
    """Why a request failed, from its innermost cause: ``[Errno 111] Connection refused``.

    requests and urllib3 put the whole URL in their own messages, so none of theirs is used.
    """
    root, seen = exc, {id(exc)}
    while (cause := root.__cause__ or root.__context__) is not None and id(cause) not in seen:
        root = cause
        seen.add(id(cause))
    if type(root).__module__.partition(".")[0] in ("requests", "urllib3"):
        return type(root).__name__
    return str(root) or type(root).__name__


def post_webhook(conn: AlertConnection, text: str, record: Mapping[str, Any]) -> str:
    """POST the alert to the connection's webhook; ``HTTP <status>`` when it took it.

    Raises:
        AlertDeliveryError: no host, no answer, or an answer other than 2xx.
    """
    import requests

    from aimass.platform.alert_hooks import WebhookHook

    url = webhook_url(conn)
    shown = _shown(url)
    parts = urlsplit(url)
    base = f"{parts.scheme}://{parts.netloc}"
    body = json.dumps({"text": text, "alert": record}, default=str).encode("utf-8")
    headers = {"Content-Type": "application/json", "User-Agent": "aimass-alerts"}
    extra_headers = conn.extra.get("headers") or {}
    if isinstance(extra_headers, str):
        extra_headers = extra_dict(extra_headers, conn.conn_id)
    headers.update({str(k): str(v) for k, v in extra_headers.items()})
    # The host carries the protocol and port, so the hook's base URL is exactly ``base``.
    hook = WebhookHook(_hook_connection(conn, host=base))
    try:
        with hook.get_conn(headers=headers) as session:
            response = session.post(
                hook.url_from_endpoint(url[len(base) :]), data=body, timeout=_timeout(conn)
            )
    except requests.RequestException as exc:
        raise AlertDeliveryError(f"POST {shown} failed: {_reason(exc)}") from None
    if not 200 <= response.status_code < 300:
        raise AlertDeliveryError(
            f"POST {shown} answered HTTP {response.status_code} {response.reason}"
        )
    return f"HTTP {response.status_code}"


# ---------------------------------------------------------------------------- mail


def _recipients(conn: AlertConnection) -> list[str]:
    raw = conn.extra.get("to") or []
    items = raw.split(",") if isinstance(raw, str) else [str(r) for r in raw]
    return [r.strip() for r in items if r.strip()]


def send_email(conn: AlertConnection, text: str, record: Mapping[str, Any]) -> str:
    """Mail the alert (the line as subject, the record as JSON below it) to extra ``to``.

    Raises:
        AlertDeliveryError: no host or recipients, the SMTP session failed, or the server
            refused every recipient.
    """
    if not conn.host:
        raise AlertDeliveryError(f"connection {conn.conn_id!r} has no host")
    recipients = _recipients(conn)
    if not recipients:
        raise AlertDeliveryError(
            f"connection {conn.conn_id!r} has no recipients; set extra 'to' "
            '(e.g. {"to": "ops@example.com"})'
        )
    use_ssl = _flag(conn.extra.get("ssl", False))
    starttls = _flag(conn.extra.get("starttls", False)) and not use_ssl
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

    from aimass.platform.alert_hooks import SMTP_ERRORS, AlertSmtpHook

    # SmtpHook's switches say what to turn off: SSL and STARTTLS are on unless disabled.
    # One try (retry_limit 0): an alert that fails is recorded, and the task goes on.
    settings = {"disable_ssl": not use_ssl, "disable_tls": not starttls, "retry_limit": 0}
    hook = AlertSmtpHook(
        _hook_connection(conn, host=conn.host, port=port, extra=json.dumps(settings)),
        timeout_s=_timeout(conn),
    )
    try:
        refused = hook.send(msg, sender, recipients)
    except SMTP_ERRORS as exc:
        raise AlertDeliveryError(
            f"SMTP {conn.host}:{port} failed: {type(exc).__name__}: {exc}"
        ) from None
    sent = len(recipients) - len(refused)
    if not sent:
        raise AlertDeliveryError(f"SMTP {conn.host}:{port} refused every recipient")
    return f"mailed to {sent} of {len(recipients)} recipients"


def deliver(
    conn: AlertConnection, text: str, record: Mapping[str, Any]
) -> tuple[str, dict[str, Any]]:
    """Send through ``conn`` by its type; (channel, status) whatever happens, never raised."""
    send: Callable[[AlertConnection, str, Mapping[str, Any]], str]
    if conn.conn_type in HTTP_TYPES:
        channel, send = "webhook", post_webhook
    elif conn.conn_type in EMAIL_TYPES:
        channel, send = "email", send_email
    else:
        return "connection", {
            "status": "failed",
            "conn_id": conn.conn_id,
            "error": f"connection {conn.conn_id!r} has type {conn.conn_type!r}; "
            f"use one of {list(HTTP_TYPES + EMAIL_TYPES)}",
        }
    try:
        detail = send(conn, text, record)
    except Exception as exc:  # delivery is best effort: record it, never fail the task
        return channel, {
            "status": "failed",
            "conn_id": conn.conn_id,
            "error": str(exc) if isinstance(exc, AlertDeliveryError) else repr(exc),
        }
    return channel, {"status": "sent", "conn_id": conn.conn_id, "detail": detail}
