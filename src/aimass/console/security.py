"""Who may see and do what in the console: Airflow's own auth, as route dependencies.

A plugin's FastAPI app inherits no authentication from the Airflow API server, so every
route depends on one of the dependencies here, all built on
``airflow.api_fastapi.core_api.security``: reading needs read access to DAG runs (any
logged-in Airflow user with the viewer role or more); each action needs the permission the
Airflow REST call it makes needs. The action itself is then made through Airflow's REST API
with the caller's own token (:mod:`aimass.console.actions`), so Airflow checks the
permission again, writes its audit log entry and names the user.

Forms post back to the console with a CSRF token derived from the caller's JWT: another site
cannot read it, and a token from another session does not match.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Annotated

from airflow.api_fastapi.auth.managers.base_auth_manager import COOKIE_NAME_JWT_TOKEN
from airflow.api_fastapi.auth.managers.models.resource_details import DagAccessEntity
from airflow.api_fastapi.core_api.security import GetUserDep, requires_access_dag
from fastapi import Depends, Form, HTTPException, Request, status

RETRAIN_DAG = "aimass_retrain"
ROLLBACK_DAG = "aimass_rollback"

# Read access: seeing DAG runs, which is what every console page shows.
can_read = Depends(requires_access_dag(method="GET", access_entity=DagAccessEntity.RUN))
# Actions, each with the permission of the Airflow REST call it makes.
can_trigger_retrain = Depends(
    requires_access_dag(method="POST", access_entity=DagAccessEntity.RUN, param_dag_id=RETRAIN_DAG)
)
can_roll_back = Depends(
    requires_access_dag(method="POST", access_entity=DagAccessEntity.RUN, param_dag_id=ROLLBACK_DAG)
)
can_approve = Depends(
    requires_access_dag(
        method="PUT", access_entity=DagAccessEntity.HITL_DETAIL, param_dag_id=RETRAIN_DAG
    )
)


def user_token(request: Request) -> str:
    """The caller's Airflow JWT: the bearer header if sent, else the UI's session cookie."""
    header = request.headers.get("authorization", "")
    if header.lower().startswith("bearer "):
        return header[7:].strip()
    token = request.cookies.get(COOKIE_NAME_JWT_TOKEN)
    if not token:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "Not authenticated")
    return token


def csrf_token(token: str) -> str:
    """The form token of a session: a keyed hash of its JWT (never the JWT itself)."""
    return hmac.new(token.encode(), b"aimass-console-form", hashlib.sha256).hexdigest()[:40]


def check_csrf(request: Request, csrf: Annotated[str, Form()] = "") -> None:
    """Refuse a form post whose CSRF token does not belong to the caller's session."""
    if not hmac.compare_digest(csrf, csrf_token(user_token(request))):
        raise HTTPException(
            status.HTTP_403_FORBIDDEN,
            "the form's security token does not match your session; reload the page and retry",
        )


def username(user: GetUserDep) -> str:
    """The logged-in user's name, for the page header."""
    return str(user.get_name())


UserName = Annotated[str, Depends(username)]
CsrfChecked = Depends(check_csrf)
