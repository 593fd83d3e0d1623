"""The scale-out stack's compose file agrees with the settings the platform writes with.

There is no Docker engine where the tests run, so this checks what can be checked without
one: the official TF Serving reads the models.config and base path the deploy task writes on
the shared volume, and every AI Mass process reaches it under the same name and ports.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from aimass.platform.settings import REPO_ROOT, Settings

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
        if name in ("postgres", "tf-serving"):
            continue
        assert service.get("image", "").startswith("aimass:"), f"{name} is not the AI Mass image"
        assert service["environment"]["AIMASS_VAR_DIR"] == "/var/aimass", name
