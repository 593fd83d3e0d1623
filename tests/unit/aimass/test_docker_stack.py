"""The scale-out stack's compose file agrees with the settings the platform writes with.

There is no Docker engine where the tests run, so this checks what can be checked without
one: the official TF Serving reads the models.config and base path the deploy task writes on
the shared volume, and every AI Mass process reaches it under the same name and ports; MLflow
runs the same auth app with the same config as `make demo`, and Airflow reaches it as the same
service user and encrypts connections as the native stack does.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from aimass.platform.settings import REPO_ROOT, Settings
from aimass.stack import mlflow_auth, services

pytestmark = pytest.mark.unit

COMPOSE = REPO_ROOT / "docker" / "docker-compose.yml"


@pytest.fixture(scope="module")
def compose() -> dict:
    return dict(yaml.safe_load(COMPOSE.read_text(encoding="utf-8")))


def test_tf_serving_reads_what_the_deploy_task_writes(compose: dict) -> None:
    serving = compose["services"]["tf-serving"]
    assert serving["image"].startswith("tensorflow/serving:")
    env = compose["x-aimass"]["environment"]
    settings = Settings(root=REPO_ROOT, var_dir=Path(env["AIMASS_VAR_DIR"]))
    flags = dict(arg.lstrip("-").split("=", 1) for arg in serving["command"])
    assert flags["model_config_file"] == str(settings.serving_config)
    assert (flags["port"], flags["rest_api_port"]) == (
        env["AIMASS_SERVING_GRPC_PORT"],
        env["AIMASS_SERVING_REST_PORT"],
    )
    # the same volume, at the var dir, in TF Serving and in every AI Mass container
    mount = f"aimass-var:{env['AIMASS_VAR_DIR']}"
    assert mount in serving["volumes"] and mount in compose["x-aimass"]["volumes"]
    assert env["AIMASS_SERVING_HOST"] == "tf-serving"


def test_every_aimass_service_shares_the_settings(compose: dict) -> None:
    for name, service in compose["services"].items():
        if name in ("postgres", "redis", "s3", "s3-bucket", "tf-serving"):  # official images
            continue
        assert service.get("image", "").startswith("aimass:"), f"{name} is not the AI Mass image"
        assert service["environment"]["AIMASS_VAR_DIR"] == "/var/aimass", name


def test_mlflow_runs_the_auth_app_as_the_native_stack_does(
    compose: dict, settings: Settings
) -> None:
    mlflow = compose["services"]["mlflow"]
    command = " ".join(mlflow["command"])
    flags = " ".join(mlflow_auth.SERVER_FLAGS)
    native = services.definitions(settings)["mlflow"]
    assert flags in " ".join(native.argv) and flags in command
    # the config is written by the same code before the server starts, where it will read it
    assert command.index("python -m aimass.stack.mlflow_auth config") < command.index(
        "exec mlflow server"
    )
    docker = Settings(
        root=REPO_ROOT, var_dir=Path(compose["x-aimass"]["environment"]["AIMASS_VAR_DIR"])
    )
    env = mlflow["environment"]
    assert set(mlflow_auth.server_env(settings)) <= set(env)
    assert env["MLFLOW_AUTH_CONFIG_PATH"] == str(mlflow_auth.config_path(docker))
    assert env["MLFLOW_AUTH_ADMIN_USERNAME"] == mlflow_auth.ADMIN_USER
    # no database password in the process list
    assert "postgres" not in command and "MLFLOW_BACKEND_STORE_URI" in env


def test_airflow_reaches_mlflow_as_the_service_user_and_encrypts_connections(
    compose: dict, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AIMASS_MLFLOW_TRACKING_URI")
    env = compose["x-aimass"]["environment"]
    native = services.airflow_env(settings)
    for key in (
        "MLFLOW_TRACKING_USERNAME",
        "MLFLOW_TRACKING_PASSWORD",
        "AIRFLOW__CORE__FERNET_KEY",
    ):
        assert key in native and key in env, key
    assert env["MLFLOW_TRACKING_USERNAME"] == native["MLFLOW_TRACKING_USERNAME"]
    users = compose["services"]["mlflow-users"]
    assert users["command"][-2:] == ["provision", env["AIMASS_MLFLOW_TRACKING_URI"]]
    assert set(mlflow_auth.ENV_OVERRIDES.values()) <= set(users["environment"])
    assert users["depends_on"]["mlflow"]["condition"] == "service_healthy"
    for name, service in compose["services"].items():
        if name.startswith("airflow-") and name != "airflow-init":
            assert service["depends_on"]["mlflow-users"] == {
                "condition": "service_completed_successfully"
            }, name
