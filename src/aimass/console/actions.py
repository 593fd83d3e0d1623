"""The console's actions, made through Airflow's REST API as the logged-in user.

No action writes platform state itself. A retrain or a rollback is a DAG run triggered with
the caller's token, and an approval is the answer to the retraining DAG's approval task
(Airflow's human-in-the-loop API). So Airflow checks the caller's permission, records the
call in its audit log under the caller's name, and the DAG does the work with its usual
retries, records and alerts.

The parameters are checked here first with the same definitions as the trigger forms
(:mod:`aimass.stages.params`, :mod:`aimass.stages.validation`), so a mistake is a message on
the page rather than a failed run.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import httpx

from aimass.platform.errors import ConfigError
from aimass.platform.settings import Settings
from aimass.stages.params import MIN_ROLLBACK_REASON, RETRAIN_PARAMS, ParamField
from aimass.stages.validation import validate_params

log = logging.getLogger(__name__)

API = "/api/v2"
APPROVE, REJECT = "Approve", "Reject"


class ActionError(Exception):
    """An action Airflow refused or could not take; ``status`` is the HTTP status to show."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class AirflowAsUser:
    """Airflow's REST API with one user's token."""

    def __init__(
        self,
        base_url: str,
        token: str,
        *,
        client: httpx.AsyncClient | None = None,
        timeout_s: float = 15.0,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._headers = {"Authorization": f"Bearer {token}"}
        self.timeout_s = timeout_s
        self._client = client

    async def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        url = self.base_url + API + path
        try:
            if self._client is not None:
                reply = await self._client.request(
                    method, url, json=body, headers=self._headers, timeout=self.timeout_s
                )
            else:
                async with httpx.AsyncClient(timeout=self.timeout_s) as client:
                    reply = await client.request(method, url, json=body, headers=self._headers)
        except httpx.HTTPError as exc:
            raise ActionError(
                502, f"Airflow's API at {self.base_url} did not answer: {exc}"
            ) from None
        if reply.status_code >= 400:
            raise ActionError(reply.status_code, _detail(reply))
        return reply.json() if reply.content else None

    async def trigger(self, dag_id: str, conf: dict[str, Any], note: str = "") -> dict[str, Any]:
        body: dict[str, Any] = {"logical_date": None, "conf": conf}
        if note:
            body["note"] = note
        run: dict[str, Any] = await self.call("POST", f"/dags/{dag_id}/dagRuns", body)
        log.info("console triggered %s run %s", dag_id, run.get("dag_run_id"))
        return run

    async def respond(self, dag_id: str, run_id: str, task_id: str, option: str) -> Any:
        path = f"/dags/{dag_id}/dagRuns/{quote(run_id, safe='')}/taskInstances/{task_id}/-1"
        return await self.call("PATCH", path + "/hitlDetails", {"chosen_options": [option]})

    async def dag(self, dag_id: str) -> dict[str, Any] | None:
        try:
            found: dict[str, Any] = await self.call("GET", f"/dags/{dag_id}")
        except ActionError:
            return None
        return found

    async def waiting_approvals(self, dag_id: str) -> list[dict[str, Any]]:
        """Approval tasks of ``dag_id`` that wait for an answer."""
        try:
            found = await self.call(
                "GET", f"/dags/{dag_id}/dagRuns/~/hitlDetails?response_received=false"
            )
        except ActionError:
            return []
        return list((found or {}).get("hitl_details", []))


def retrain_conf(form: dict[str, str], settings: Settings) -> dict[str, Any]:
    """The retrain DAG's conf from the console's form, checked as the trigger form's is.

    Raises:
        ConfigError: naming the bad field and what to set instead.
    """
    conf = {f.name: _typed(f, form.get(f.name, "")) for f in RETRAIN_PARAMS}
    conf = {k: v for k, v in conf.items() if v is not None and v != ""}
    validate_params(conf, settings, run_date=datetime.now(UTC))
    return conf


def rollback_conf(dataset: str, version: str, reason: str, versions: list[int]) -> dict[str, Any]:
    """The rollback DAG's conf; the version must be one the model server holds."""
    reason = reason.strip()
    if len(reason) < MIN_ROLLBACK_REASON:
        raise ConfigError(
            f"give a reason of at least {MIN_ROLLBACK_REASON} characters (what went wrong, a "
            "ticket); it is recorded with the rollback"
        )
    try:
        target = int(version)
    except ValueError:
        raise ConfigError(f"version {version!r} is not a serving version number") from None
    if target not in versions:
        raise ConfigError(
            f"version {target} is not loaded by the model server; choose one of {versions}"
        )
    return {"dataset": dataset, "version": target, "reason": reason}


def _typed(field: ParamField, raw: str) -> Any:
    """A form value as the param's JSON type (empty → the param's default)."""
    raw = raw.strip()
    kinds = field.type if isinstance(field.type, tuple) else (field.type,)
    if raw == "":
        return field.default
    if "boolean" in kinds:
        return raw.lower() in ("1", "true", "on", "yes")
    if "integer" in kinds:
        try:
            return int(raw)
        except ValueError:
            if "string" in kinds:  # e.g. workers: a number or "auto"; validate_params checks it
                return raw
            raise ConfigError(
                f"{field.title} ({field.name}) must be a whole number, not {raw!r}"
            ) from None
    if "number" in kinds:
        try:
            return float(raw)
        except ValueError:
            raise ConfigError(
                f"{field.title} ({field.name}) must be a number, not {raw!r}"
            ) from None
    return raw


def _detail(reply: httpx.Response) -> str:
    try:
        detail = reply.json().get("detail")
    except ValueError:
        detail = reply.text[:300]
    if isinstance(detail, list):
        detail = "; ".join(str(d.get("msg", d)) for d in detail if isinstance(d, dict))
    return f"Airflow answered {reply.status_code}: {detail or reply.reason_phrase}"
