"""MLflow's login for the embedded stack: generated secrets, the auth app's config, and who
gets which credentials (the integration test ``test_abuse_platform`` runs the real server)."""

from __future__ import annotations

import configparser
import json
import stat
from pathlib import Path

import pytest

from aimass.platform.settings import Settings
from aimass.stack import mlflow_auth, services

pytestmark = pytest.mark.unit


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_credentials_are_made_once_and_kept_private(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in mlflow_auth.ENV_OVERRIDES.values():
        monkeypatch.delenv(name, raising=False)
    first = mlflow_auth.credentials(settings)
    assert set(first) == {"admin_password", "service_password", "flask_secret_key"}
    assert len(set(first.values())) == 3 and all(len(v) >= 24 for v in first.values())
    assert mlflow_auth.credentials(settings) == first
    assert _mode(settings.mlflow_secrets) == 0o600
    assert json.loads(settings.mlflow_secrets.read_text()) == first


def test_docker_env_values_replace_the_generated_ones(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    for key, name in mlflow_auth.ENV_OVERRIDES.items():
        monkeypatch.setenv(name, f"given-{key}")
    creds = mlflow_auth.credentials(settings)
    assert creds == {key: f"given-{key}" for key in mlflow_auth.ENV_OVERRIDES}
    assert not settings.mlflow_secrets.exists()


def test_config_reads_every_user_in_and_keeps_the_admin_password_out(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AIMASS_MLFLOW_AUTH_DB_URI", raising=False)
    env = mlflow_auth.server_env(settings)
    path = mlflow_auth.config_path(settings)
    assert env["MLFLOW_AUTH_CONFIG_PATH"] == str(path)
    assert _mode(path) == 0o600
    parser = configparser.ConfigParser()
    parser.read(path)
    section = parser["mlflow"]
    assert section["default_permission"] == "READ"
    assert section["grant_default_workspace_access"] == "true"
    assert section["admin_username"] == mlflow_auth.ADMIN_USER
    assert section["database_uri"] == f"sqlite:///{settings.mlflow_dir / 'basic_auth.db'}"
    assert "admin_password" not in section
    creds = mlflow_auth.credentials(settings)
    assert env["MLFLOW_AUTH_ADMIN_PASSWORD"] == creds["admin_password"]
    assert env["MLFLOW_FLASK_SERVER_SECRET_KEY"] == creds["flask_secret_key"]
    assert creds["admin_password"] not in path.read_text()


def test_the_server_runs_the_auth_app_with_secrets_in_its_env_not_its_argv(
    settings: Settings,
) -> None:
    svc = services.definitions(settings)["mlflow"]
    creds = mlflow_auth.credentials(settings)
    argv = " ".join(svc.argv)
    assert "--app-name basic-auth --enable-workspaces" in argv
    assert all(secret not in argv for secret in creds.values())
    assert svc.env["MLFLOW_AUTH_ADMIN_PASSWORD"] == creds["admin_password"]
    assert svc.ready_url and svc.ready_url.endswith("/health")


def test_airflow_tasks_log_in_as_the_service_user_to_the_embedded_server(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AIMASS_MLFLOW_TRACKING_URI")
    env = services.airflow_env(settings)
    assert env["AIMASS_MLFLOW_TRACKING_URI"] == f"http://127.0.0.1:{settings.mlflow_port}"
    assert env["MLFLOW_TRACKING_USERNAME"] == mlflow_auth.SERVICE_USER
    assert env["MLFLOW_TRACKING_PASSWORD"] == mlflow_auth.credentials(settings)["service_password"]


def test_an_external_store_gets_none_of_the_embedded_credentials(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AIMASS_MLFLOW_TRACKING_URI", "https://mlflow.example.com")
    monkeypatch.delenv("MLFLOW_TRACKING_PASSWORD", raising=False)
    env = services.airflow_env(settings)
    assert "MLFLOW_TRACKING_PASSWORD" not in env
    assert not settings.mlflow_secrets.exists()


def test_airflow_gets_a_fernet_key_made_once_per_install(settings: Settings) -> None:
    from cryptography.fernet import Fernet

    key = services.airflow_env(settings)["AIRFLOW__CORE__FERNET_KEY"]
    Fernet(key.encode())
    assert services.airflow_env(settings)["AIRFLOW__CORE__FERNET_KEY"] == key
    assert _mode(settings.airflow_secrets) == 0o600
    # an older install's secrets file gains the key and keeps what it had
    stored = json.loads(settings.airflow_secrets.read_text())
    del stored["fernet_key"]
    settings.airflow_secrets.write_text(json.dumps(stored))
    services.airflow_env(settings)
    grown = json.loads(settings.airflow_secrets.read_text())
    assert {k: grown[k] for k in stored} == stored and grown["fernet_key"] != key
