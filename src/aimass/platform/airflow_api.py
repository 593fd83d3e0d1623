"""A small client for the Airflow 3 REST API (v2): trigger a DAG, follow it, read its XComs."""

from __future__ import annotations

import json
import logging
import urllib.error
import urllib.parse
import urllib.request
from datetime import UTC, datetime
from typing import Any, NoReturn

from aimass.platform.errors import StageError
from aimass.platform.waiting import poll_until

log = logging.getLogger(__name__)

FINISHED = {"success", "failed"}


class AirflowClient:
    def __init__(
        self, base_url: str, username: str, password: str, timeout_s: float = 30.0
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._username = username
        self._password = password
        self._timeout = timeout_s
        self._token: str | None = None

    def _login(self) -> str:
        body = json.dumps({"username": self._username, "password": self._password}).encode()
        req = urllib.request.Request(
            f"{self.base_url}/auth/token",
            data=body,
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        try:
            with urllib.request.urlopen(req, timeout=self._timeout) as resp:
                return str(json.loads(resp.read())["access_token"])
        except urllib.error.HTTPError as exc:
            raise StageError(
                f"Airflow login as '{self._username}' at {self.base_url} failed with HTTP {exc.code}: "
                f"{exc.read()[:300]!r}; check the password in var/airflow/simple_auth_manager_passwords.json"
            ) from exc

    def request(self, method: str, path: str, payload: dict[str, Any] | None = None) -> Any:
        if self._token is None:
            self._token = self._login()
        data = json.dumps(payload).encode() if payload is not None else None
        req = urllib.request.Request(
            f"{self.base_url}{path}",
            data=data,
            method=method,
            headers={"Authorization": f"Bearer {self._token}", "Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(req, timeout=self._timeout) as resp:
                raw = resp.read()
        except urllib.error.HTTPError as exc:
            if exc.code == 401:  # token expired: log in again once
                self._token = None
                return self.request(method, path, payload)
            raise StageError(
                f"Airflow API {method} {path} -> HTTP {exc.code}: {exc.read()[:500]!r}"
            ) from exc
        return json.loads(raw) if raw else None

    def wait_for_dag(self, dag_id: str, timeout_s: float = 180.0) -> dict[str, Any]:
        """Wait until the DAG processor has parsed ``dag_id`` (new installs take a few seconds)."""
        last: list[StageError] = []

        def parsed() -> dict[str, Any] | None:
            try:
                return dict(self.request("GET", f"/api/v2/dags/{dag_id}"))
            except StageError as exc:
                if "HTTP 404" not in str(exc):
                    raise StageError(f"DAG '{dag_id}' not available: {exc}") from exc
                last[:] = [exc]
                return None  # not parsed yet

        def timed_out() -> NoReturn:
            raise StageError(f"DAG '{dag_id}' not available after {timeout_s:.0f}s: {last[-1]}")

        return poll_until(parsed, timeout_s=timeout_s, interval_s=2.0, on_timeout=timed_out)

    def import_errors(self) -> list[dict[str, Any]]:
        return list(self.request("GET", "/api/v2/importErrors").get("import_errors", []))

    def trigger(
        self, dag_id: str, conf: dict[str, Any] | None = None, note: str | None = None
    ) -> str:
        """Queue a manual run; returns its run id. The scheduler picks it up, as for a click in the UI."""
        self.request("PATCH", f"/api/v2/dags/{dag_id}", {"is_paused": False})
        now = datetime.now(UTC)
        body: dict[str, Any] = {
            "dag_run_id": f"manual__aimass__{now.strftime('%Y%m%dT%H%M%S%f')}",
            "logical_date": now.isoformat(),
            "conf": conf or {},
        }
        if note:
            body["note"] = note
        run = self.request("POST", f"/api/v2/dags/{dag_id}/dagRuns", body)
        log.info("triggered %s run %s", dag_id, run["dag_run_id"])
        return str(run["dag_run_id"])

    def runs(self, dag_id: str, *, run_type: str | None = None) -> list[dict[str, Any]]:
        """The DAG's runs, oldest first (optionally only ``manual``, ``scheduled``, ``asset_triggered``)."""
        query = "?order_by=run_after&limit=100" + (f"&run_type={run_type}" if run_type else "")
        return list(self.request("GET", f"/api/v2/dags/{dag_id}/dagRuns{query}")["dag_runs"])

    def asset_events(self, asset_name: str) -> list[dict[str, Any]]:
        """The events recorded on the asset named ``asset_name``, oldest first."""
        query = urllib.parse.urlencode(
            {"name_pattern": asset_name, "order_by": "timestamp", "limit": 100}
        )
        events = self.request("GET", f"/api/v2/assets/events?{query}")["asset_events"]
        return [e for e in events if e.get("name") == asset_name]

    def run_state(self, dag_id: str, run_id: str) -> str:
        quoted = urllib.parse.quote(run_id, safe="")
        return str(self.request("GET", f"/api/v2/dags/{dag_id}/dagRuns/{quoted}")["state"])

    def task_states(self, dag_id: str, run_id: str) -> dict[str, str | None]:
        quoted = urllib.parse.quote(run_id, safe="")
        tis = self.request("GET", f"/api/v2/dags/{dag_id}/dagRuns/{quoted}/taskInstances")[
            "task_instances"
        ]
        return {ti["task_id"]: ti["state"] for ti in tis}

    def wait_for_run(
        self, dag_id: str, run_id: str, timeout_s: float = 1800.0, poll_s: float = 3.0
    ) -> str:
        """Follow a run to its end, logging each task's state change; returns success or failed."""
        seen: dict[str, str | None] = {}
        states: list[str] = []

        def finished() -> str | None:
            state = self.run_state(dag_id, run_id)
            states[:] = [state]
            for task, ti_state in self.task_states(dag_id, run_id).items():
                if seen.get(task) != ti_state:
                    seen[task] = ti_state
                    log.info("  %-20s %s", task, ti_state or "none")
            return state if state in FINISHED else None

        def timed_out() -> NoReturn:
            raise StageError(
                f"{dag_id} run {run_id} still {states[-1] if states else 'unknown'} after "
                f"{timeout_s:.0f}s; see the Airflow UI"
            )

        return poll_until(finished, timeout_s=timeout_s, interval_s=poll_s, on_timeout=timed_out)

    def xcom(self, dag_id: str, run_id: str, task_id: str, key: str = "return_value") -> Any:
        quoted = urllib.parse.quote(run_id, safe="")
        entry = self.request(
            "GET",
            f"/api/v2/dags/{dag_id}/dagRuns/{quoted}/taskInstances/{task_id}/xcomEntries/{key}?deserialize=true",
        )
        value = entry.get("value")
        if isinstance(value, str):
            try:
                return json.loads(value)
            except json.JSONDecodeError:
                return value
        return value
