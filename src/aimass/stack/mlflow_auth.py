"""MLflow with a login: the basic-auth app's config, its admin, and the platform's own user.

The MLflow server runs MLflow's basic-auth app with workspaces on (:data:`SERVER_FLAGS`).
Every request but ``/health`` needs a login, so an anonymous caller gets 401. Every user
reads everything in the ``default`` workspace (``default_permission = READ``, inherited
there), and creates nothing: without workspaces, MLflow lets any logged-in user create a
registered model and own it, so a viewer could take a dataset's model name before its first
run and set its ``champion``. The platform acts as its own user, :data:`SERVICE_USER`, with
the grants in :data:`SERVICE_GRANTS`. It may create experiments and registered models, log
runs, register versions and move aliases on any of them, and delete nothing. The admin (for
people, in the UI) and the service user get generated passwords kept 0600 in
``<var>/mlflow/aimass-secrets.json``. The service user gets them through
``MLFLOW_TRACKING_USERNAME``/``MLFLOW_TRACKING_PASSWORD`` in the environment of Airflow's
components, never through argv or logs.

``python -m aimass.stack.mlflow_auth config|provision`` runs the same two steps in the
docker/ stack, with the passwords from ``AIMASS_MLFLOW_*`` variables (docker/.env).
"""

from __future__ import annotations

import argparse
import base64
import json
import logging
import os
import secrets
import sys
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from aimass.platform.errors import StageError
from aimass.platform.settings import Settings
from aimass.stack.state import secrets_file, write_private

log = logging.getLogger(__name__)

ADMIN_USER = "admin"
SERVICE_USER = "aimass"
SERVICE_ROLE = "aimass-platform"
WORKSPACE = "default"
# Workspace USE lets it create experiments and registered models (it gets MANAGE on what it
# creates); EDIT on every experiment and registered model lets it log runs, register versions,
# set tags and move aliases on those a person made as well. It deletes nothing.
SERVICE_GRANTS = (
    ("workspace", "*", "USE"),
    ("experiment", "*", "EDIT"),
    ("registered_model", "*", "EDIT"),
)
SERVER_FLAGS = ("--app-name", "basic-auth", "--enable-workspaces")
# Values that replace the generated ones (docker/.env hands them to the containers).
ENV_OVERRIDES = {
    "admin_password": "AIMASS_MLFLOW_ADMIN_PASSWORD",
    "service_password": "AIMASS_MLFLOW_SERVICE_PASSWORD",
    "flask_secret_key": "AIMASS_MLFLOW_SECRET_KEY",
}


def secrets_path(settings: Settings) -> Path:
    return settings.mlflow_secrets


def config_path(settings: Settings) -> Path:
    return settings.mlflow_dir / "basic_auth.ini"


def auth_db_uri(settings: Settings) -> str:
    """Where MLflow keeps users and permissions: ``AIMASS_MLFLOW_AUTH_DB_URI``, or SQLite
    beside the tracking store."""
    return os.environ.get("AIMASS_MLFLOW_AUTH_DB_URI") or (
        f"sqlite:///{settings.mlflow_dir / 'basic_auth.db'}"
    )


def credentials(settings: Settings) -> dict[str, str]:
    """The admin's and the service user's passwords and the Flask secret key: the
    ``AIMASS_MLFLOW_*`` variables where set, else generated once per install (0600)."""
    given = {key: os.environ[var] for key, var in ENV_OVERRIDES.items() if os.environ.get(var)}
    if len(given) == len(ENV_OVERRIDES):
        return given
    settings.mlflow_dir.mkdir(parents=True, exist_ok=True)
    stored = secrets_file(
        secrets_path(settings),
        {
            "admin_password": lambda: secrets.token_urlsafe(18),
            "service_password": lambda: secrets.token_urlsafe(24),
            "flask_secret_key": lambda: secrets.token_urlsafe(32),
        },
    )
    return {**stored, **given}


def write_config(settings: Settings, database_uri: str | None = None) -> Path:
    """The basic-auth app's config (0600): the auth database, the admin's name, READ for
    every user in the default workspace. The admin's password goes by environment."""
    text = "\n".join(
        [
            "# Written by AI Mass (aimass.stack.mlflow_auth); changes are overwritten.",
            "[mlflow]",
            "default_permission = READ",
            f"database_uri = {database_uri or auth_db_uri(settings)}",
            f"admin_username = {ADMIN_USER}",
            "authorization_function = mlflow.server.auth:authenticate_request_basic_auth",
            "grant_default_workspace_access = true",
            "",
        ]
    )
    path = config_path(settings)
    if not path.exists() or path.read_text(encoding="utf-8") != text:
        write_private(path, text)
    return path


def server_env(settings: Settings, database_uri: str | None = None) -> dict[str, str]:
    """What ``mlflow server --app-name basic-auth`` needs in its environment (``database_uri``:
    where users and permissions live, default :func:`auth_db_uri`)."""
    creds = credentials(settings)
    return {
        "MLFLOW_AUTH_CONFIG_PATH": str(write_config(settings, database_uri)),
        "MLFLOW_AUTH_ADMIN_USERNAME": ADMIN_USER,
        "MLFLOW_AUTH_ADMIN_PASSWORD": creds["admin_password"],
        "MLFLOW_FLASK_SERVER_SECRET_KEY": creds["flask_secret_key"],
    }


def client_env(settings: Settings) -> dict[str, str]:
    """The service user's login, as the MLflow client reads it from the environment."""
    return {
        "MLFLOW_TRACKING_USERNAME": SERVICE_USER,
        "MLFLOW_TRACKING_PASSWORD": credentials(settings)["service_password"],
    }


class _Admin:
    """Calls to MLflow's auth API as the admin (the password goes in a header, never logged)."""

    def __init__(self, url: str, password: str) -> None:
        self.url = url.rstrip("/")
        token = base64.b64encode(f"{ADMIN_USER}:{password}".encode()).decode()
        self.headers = {"Authorization": f"Basic {token}", "Content-Type": "application/json"}

    def call(
        self, method: str, path: str, body: dict[str, Any] | None = None, ok: tuple[int, ...] = ()
    ) -> tuple[int, dict[str, Any]]:
        url = f"{self.url}{path}"
        if method == "GET" and body:
            url += "?" + urllib.parse.urlencode(body)
            body = None
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(url, data=data, method=method, headers=self.headers)
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                return resp.status, json.loads(resp.read() or b"{}")
        except urllib.error.HTTPError as exc:
            text = exc.read().decode("utf-8", "replace")[:300]
            if exc.code in ok:
                return exc.code, {}
            if exc.code == 401:
                raise StageError(
                    f"MLflow at {self.url} refused the admin login ({method} {path}: 401). The "
                    "admin password in var/mlflow/aimass-secrets.json (or "
                    "AIMASS_MLFLOW_ADMIN_PASSWORD) is not the one the auth database was made "
                    "with: restore it, or stop MLflow and remove basic_auth.db to make the users "
                    "again"
                ) from None
            raise StageError(f"MLflow {method} {path} answered {exc.code}: {text}") from None
        except (OSError, urllib.error.URLError) as exc:
            raise StageError(
                f"MLflow at {self.url} did not answer {method} {path}: {exc}"
            ) from None


def provision(url: str, admin_password: str, service_password: str) -> None:
    """Make sure the service user exists with ``service_password`` and holds the grants of
    :data:`SERVICE_GRANTS` through the role :data:`SERVICE_ROLE`. Safe to repeat.

    Raises:
        StageError: MLflow refused a call (the message names the call and the fix).
    """
    admin = _Admin(url, admin_password)
    status, _ = admin.call(
        "GET", "/api/2.0/mlflow/users/get", {"username": SERVICE_USER}, ok=(404,)
    )
    if status == 404:
        admin.call(
            "POST",
            "/api/2.0/mlflow/users/create",
            {"username": SERVICE_USER, "password": service_password},
        )
        log.info("MLflow: created the service user %r", SERVICE_USER)
    else:
        # The secrets file is the source of truth: a regenerated password is carried over.
        admin.call(
            "PATCH",
            "/api/2.0/mlflow/users/update-password",
            {"username": SERVICE_USER, "password": service_password},
        )
    _, listed = admin.call("GET", "/api/3.0/mlflow/roles/list", {"workspace": WORKSPACE})
    role = next((r for r in listed.get("roles", []) if r.get("name") == SERVICE_ROLE), None)
    if role is None:
        _, made = admin.call(
            "POST",
            "/api/3.0/mlflow/roles/create",
            {
                "name": SERVICE_ROLE,
                "workspace": WORKSPACE,
                "description": "AI Mass: logs runs, registers versions, moves aliases",
            },
        )
        role = made["role"]
    have = {
        (p["resource_type"], p["resource_pattern"], p["permission"])
        for p in role.get("permissions", [])
    }
    for resource_type, pattern, permission in SERVICE_GRANTS:
        if (resource_type, pattern, permission) not in have:
            admin.call(
                "POST",
                "/api/3.0/mlflow/roles/permissions/add",
                {
                    "role_id": role["id"],
                    "resource_type": resource_type,
                    "resource_pattern": pattern,
                    "permission": permission,
                },
            )
    _, assigned = admin.call("GET", "/api/3.0/mlflow/users/roles/list", {"username": SERVICE_USER})
    if not any(r.get("id") == role["id"] for r in assigned.get("roles", [])):
        admin.call(
            "POST",
            "/api/3.0/mlflow/roles/assign",
            {"username": SERVICE_USER, "role_id": role["id"]},
        )
    log.info("MLflow: service user %r holds role %r", SERVICE_USER, SERVICE_ROLE)


def provision_stack(settings: Settings, url: str) -> None:
    """:func:`provision` with this install's credentials."""
    creds = credentials(settings)
    provision(url, creds["admin_password"], creds["service_password"])


def main(argv: list[str] | None = None) -> int:
    """``config``: write the auth config (run before ``mlflow server``); ``provision URL``:
    create or update the service user on a running server."""
    parser = argparse.ArgumentParser(prog="python -m aimass.stack.mlflow_auth")
    sub = parser.add_subparsers(dest="cmd", required=True)
    sub.add_parser("config", help="write the basic-auth config; print its path")
    prov = sub.add_parser("provision", help="create or update the service user and its role")
    prov.add_argument("url", help="the MLflow server, e.g. http://mlflow:5000")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    settings = Settings.from_env()
    if args.cmd == "config":
        print(write_config(settings))
    else:
        provision_stack(settings, args.url)
    return 0


if __name__ == "__main__":
    sys.exit(main())
