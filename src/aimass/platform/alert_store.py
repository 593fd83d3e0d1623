"""The alerts store: every alert as one JSON line in ``<var_dir>/alerts/alerts.jsonl``.

:func:`aimass.platform.alerts.send_alert` appends each alert here, delivered or not, so a
console or the CLI can list them (:func:`read_alerts`, newest first) without any channel
configured. The file keeps at most :data:`MAX_ALERTS` lines.
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from aimass.platform.errors import ConfigError
from aimass.platform.settings import Settings

STORE_NAME = "alerts.jsonl"
# The store keeps the newest MAX_ALERTS lines; trimming drops a tenth more so that it does
# not rewrite the file on every alert once it is full.
MAX_ALERTS = 10_000


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
