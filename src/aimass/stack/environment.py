"""The environment of the services and their tasks: settings, Airflow's per-install
secrets and users, and Airflow's configuration for this var dir and profile."""

from __future__ import annotations

import json
import os
import secrets
import sys
from pathlib import Path

from aimass.platform.settings import Settings
from aimass.stack import cluster, mlflow_auth
from aimass.stack.state import secrets_file, write_private

ADMIN_USER = "admin"
# Airflow's users (simple auth manager) and their roles: an admin who operates, and a
# read-only viewer for people who watch (the console shows them everything, lets them do nothing).
USERS = {ADMIN_USER: "admin", "viewer": "viewer"}


def airflow_home(settings: Settings) -> Path:
    return settings.airflow_home


def airflow_secrets_path(settings: Settings) -> Path:
    return settings.airflow_secrets


def _fernet_key() -> str:
    from cryptography.fernet import Fernet

    return Fernet.generate_key().decode("ascii")


def _airflow_secrets(settings: Settings) -> dict[str, str]:
    """Per-install secrets (JWT, API secret key, Fernet key, the users' passwords), made once,
    kept 0600 under the var dir; a value a newer AI Mass needs is added to an older install's
    file."""
    home = airflow_home(settings)
    home.mkdir(parents=True, exist_ok=True)
    return secrets_file(
        airflow_secrets_path(settings),
        {
            "jwt_secret": lambda: secrets.token_urlsafe(64),
            "secret_key": lambda: secrets.token_urlsafe(32),
            "admin_password": lambda: secrets.token_urlsafe(12),
            "viewer_password": lambda: secrets.token_urlsafe(12),
            # Connections (webhook URLs, SMTP passwords) and variables are stored encrypted.
            "fernet_key": _fernet_key,
        },
    )


def admin_password(settings: Settings) -> str:
    return _airflow_secrets(settings)["admin_password"]


def user_password(settings: Settings, user: str) -> str:
    """The generated password of one of :data:`USERS`."""
    return _airflow_secrets(settings)[f"{user}_password"]


def base_env(settings: Settings) -> dict[str, str]:
    """Environment for every service and task: settings, the venv on PATH, Spark/TF defaults."""
    env = dict(os.environ)
    env.update(settings.env())
    venv_bin = str(Path(sys.executable).parent)
    env["PATH"] = venv_bin + os.pathsep + env.get("PATH", "")
    env.setdefault("TF_USE_LEGACY_KERAS", "1")
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    # Spark binds its driver to the first non-loopback interface unless told otherwise.
    env.setdefault("SPARK_LOCAL_IP", settings.host if settings.host != "0.0.0.0" else "127.0.0.1")
    env["PYSPARK_PYTHON"] = sys.executable
    env["PYSPARK_DRIVER_PYTHON"] = sys.executable
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


def airflow_env(settings: Settings) -> dict[str, str]:
    """Airflow's settings for this var dir: home, DAGs, SQLite DB, ports, secrets, connections."""
    home = airflow_home(settings)
    sec = _airflow_secrets(settings)
    passwords = home / "simple_auth_manager_passwords.json"
    wanted = {user: sec[f"{user}_password"] for user in USERS}
    known = json.loads(passwords.read_text(encoding="utf-8")) if passwords.exists() else {}
    if any(user not in known for user in USERS):
        write_private(passwords, json.dumps({**wanted, **known}))
    base_url = f"http://{settings.host}:{settings.airflow_port}"
    env = base_env(settings)
    env.update(
        {
            "AIRFLOW_HOME": str(home),
            "AIRFLOW_CONFIG": str(settings.root / "airflow.cfg"),
            "AIRFLOW__CORE__DAGS_FOLDER": str(settings.root / "dags"),
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(settings.root / "plugins"),
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords),
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": ",".join(
                f"{user}:{role}" for user, role in USERS.items()
            ),
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{base_url}/execution/",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
            "AIRFLOW__API__HOST": settings.host,
            "AIRFLOW__API__PORT": str(settings.airflow_port),
            "AIRFLOW__API__BASE_URL": base_url,
            "AIRFLOW__API__SECRET_KEY": sec["secret_key"],
            "AIRFLOW__API_AUTH__JWT_SECRET": sec["jwt_secret"],
            "AIRFLOW__CORE__FERNET_KEY": sec["fernet_key"],
            "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(home / "logs"),
            "AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_STORAGE_PATH": str(home / "dag_bundles"),
        }
    )
    # Tasks record to the MLflow server started beside Airflow, as the platform's own MLflow
    # user, unless a store was configured (its credentials then come from the environment).
    if "AIMASS_MLFLOW_TRACKING_URI" not in os.environ:
        env["AIMASS_MLFLOW_TRACKING_URI"] = f"http://{settings.host}:{settings.mlflow_port}"
        env.update(mlflow_auth.client_env(settings))
    # Spark runs jobs in local mode by default; point this connection at spark://, yarn or k8s:// to scale out.
    env.setdefault(
        "AIRFLOW_CONN_SPARK_DEFAULT", json.dumps({"conn_type": "spark", "host": "local[*]"})
    )
    if cluster.profile(settings) == "cluster":
        env.update(cluster.airflow_overrides(settings))
    return env
