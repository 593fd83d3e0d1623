"""The connection an alert is delivered through, read the way Airflow reads it.

``AIMASS_ALERT_CONN_ID`` names an Airflow connection; :func:`parse_connection` reads the
value of its ``AIRFLOW_CONN_<ID>`` variable (Airflow's URI or JSON form) into an
:class:`AlertConnection`, so the CLI and tests need no Airflow. The lookup order lives in
:func:`aimass.platform.alerts.get_connection`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from aimass.platform.errors import ConfigError


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

    @classmethod
    def from_airflow(cls, conn_id: str, conn: Any) -> AlertConnection:
        """The fields of a connection that Airflow's own lookup returned."""
        return cls(
            conn_id=conn_id,
            conn_type=normalize_type(conn.conn_type or ""),
            host=conn.host or "",
            port=conn.port,
            schema=conn.schema or "",
            login=conn.login or "",
            password=conn.password or "",
            extra=dict(conn.extra_dejson),
        )


def env_var_name(conn_id: str) -> str:
    """The environment variable Airflow reads connection ``conn_id`` from."""
    return f"AIRFLOW_CONN_{conn_id.upper()}"


def normalize_type(conn_type: str) -> str:
    """A connection type as compared here: trimmed, lower case, ``_`` for ``-``."""
    return conn_type.strip().lower().replace("-", "_")


def extra_dict(raw: Any, conn_id: str) -> dict[str, Any]:
    """A connection's extra (a dict or its JSON text) as a dict."""
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
            conn_type=normalize_type(str(data["conn_type"])),
            host=str(data.get("host") or ""),
            port=port_number,
            schema=str(data.get("schema") or ""),
            login=str(data.get("login") or ""),
            password=str(data.get("password") or ""),
            extra=extra_dict(data.get("extra"), conn_id),
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
    extra = extra_dict(query["__extra__"], conn_id) if "__extra__" in query else query
    return AlertConnection(
        conn_id=conn_id,
        conn_type=normalize_type(scheme),
        host=f"{protocol}://{hostname}" if protocol and hostname else hostname,
        port=port_number,
        schema=unquote(parts.path[1:]),
        login=unquote(parts.username or ""),
        password=unquote(parts.password or ""),
        extra=extra,
    )
