"""Actions: retrain, roll back, approve or reject, each a call to Airflow's REST API as the user.

Each route needs the permission of the Airflow call it makes (a 403 before anything else),
a form token of the caller's session, and parameters that pass the same checks as the
trigger forms (a 400 naming the field). Then Airflow checks the permission again and audits
the call under the user's name.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Annotated, Any

from fastapi import APIRouter, Form, HTTPException, Request
from fastapi.responses import HTMLResponse
from starlette.concurrency import run_in_threadpool

from aimass.console.actions import (
    APPROVE,
    REJECT,
    ActionError,
    retrain_conf,
    rollback_conf,
)
from aimass.console.context import render, state
from aimass.console.routes.models import known_dataset
from aimass.console.security import (
    RETRAIN_DAG,
    ROLLBACK_DAG,
    CsrfChecked,
    UserName,
    can_approve,
    can_read,
    can_roll_back,
    can_trigger_retrain,
)
from aimass.platform.errors import ConfigError
from aimass.stages.params import RETRAIN_PARAMS

router = APIRouter(prefix="/actions", dependencies=[can_read])
APPROVAL_TASK = "check_approval"


@router.post(
    "/retrain", response_class=HTMLResponse, dependencies=[can_trigger_retrain, CsrfChecked]
)
async def retrain(request: Request, user: UserName) -> str:
    console = state(request)
    form = {k: str(v) for k, v in (await request.form()).items() if k != "csrf"}
    unknown = set(form) - {f.name for f in RETRAIN_PARAMS}
    if unknown:
        raise HTTPException(400, f"unknown parameters {sorted(unknown)}")
    try:
        conf = await run_in_threadpool(retrain_conf, form, console.settings)
    except ConfigError as exc:
        raise HTTPException(400, str(exc)) from None
    return await _done(request, user, RETRAIN_DAG, conf, f"retrain of {conf['dataset']}")


@router.post("/rollback", response_class=HTMLResponse, dependencies=[can_roll_back, CsrfChecked])
async def rollback(
    request: Request,
    user: UserName,
    dataset: Annotated[str, Form()],
    version: Annotated[str, Form()],
    reason: Annotated[str, Form()] = "",
) -> str:
    console = state(request)
    known_dataset(console, dataset)
    serving = await run_in_threadpool(console.read.serving, dataset)
    try:
        conf = rollback_conf(dataset, version, reason, serving.versions)
    except ConfigError as exc:
        raise HTTPException(400, str(exc)) from None
    what = f"rollback of {dataset} to serving version {conf['version']}"
    return await _done(request, user, ROLLBACK_DAG, conf, what)


@router.post("/approval", response_class=HTMLResponse, dependencies=[can_approve, CsrfChecked])
async def approval(
    request: Request,
    user: UserName,
    run_id: Annotated[str, Form()],
    decision: Annotated[str, Form()],
) -> str:
    if decision not in (APPROVE, REJECT):
        raise HTTPException(400, f"decision must be {APPROVE!r} or {REJECT!r}, not {decision!r}")
    airflow = state(request).airflow(request)
    answer = airflow.respond(RETRAIN_DAG, run_id, APPROVAL_TASK, decision)
    what = f"{decision.lower()} of the deployment waiting in run {run_id}"
    await _acted(answer)
    return _done_page(request, user, what, RETRAIN_DAG, run_id, {"decision": decision})


async def _done(request: Request, user: str, dag_id: str, conf: dict, what: str) -> str:
    airflow = state(request).airflow(request)
    run = await _acted(airflow.trigger(dag_id, conf, note=f"from the AI Mass console by {user}"))
    return _done_page(request, user, what, dag_id, run["dag_run_id"], conf)


async def _acted(call: Awaitable[Any]) -> Any:
    """Airflow's answer to an action; its refusal as the same HTTP status for the user."""
    try:
        return await call
    except ActionError as exc:
        raise HTTPException(exc.status, exc.message) from None


def _done_page(request: Request, user: str, what: str, dag_id: str, run_id: str, conf: dict) -> str:
    return render(
        request,
        "action_done.html",
        user=user,
        what=what,
        dag_id=dag_id,
        run_id=run_id,
        conf=conf,
    )
