"""docker/ runs the topology that `make up PROFILE=cluster` runs natively, with its settings.

There is no Docker engine here, so the compose file is compared with the native profile's
own definitions (aimass.stack.cluster, aimass.stack.services): the same services, the same
Airflow executor, broker, result backend and timeouts, the same Celery worker flags, MLflow
on the same databases with artifacts in the same bucket, and as many Spark workers.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from aimass.platform.settings import REPO_ROOT, Settings
from aimass.stack import cluster, services

pytestmark = pytest.mark.unit

COMPOSE = REPO_ROOT / "docker" / "docker-compose.yml"
# Native name -> compose name where they differ; None: compose's restart policy does it.
RENAMED = {"model-server": "tf-serving", cluster.SUPERVISOR: None}
# One-shot jobs of compose, done natively by `services.prepare` and `wait_ready`.
ONE_SHOT = {"airflow-init", "mlflow-users", "s3-bucket"}


@pytest.fixture(scope="module")
def compose() -> dict:
    return dict(yaml.safe_load(COMPOSE.read_text(encoding="utf-8")))


@pytest.fixture
def native(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.setenv("AIMASS_PROFILE", "cluster")
    monkeypatch.delenv("AIMASS_MLFLOW_TRACKING_URI", raising=False)
    return Settings(root=REPO_ROOT, var_dir=tmp_path / "var")


def test_compose_runs_every_native_service_and_only_those(compose: dict, native: Settings) -> None:
    wanted = {RENAMED.get(name, name) for name in services.service_names(native)} - {None}
    assert set(compose["services"]) - ONE_SHOT == wanted
    for name, service in compose["services"].items():
        policy = service.get("restart", compose["x-aimass"]["restart"])
        assert policy == ("no" if name in ONE_SHOT else "unless-stopped"), name


def test_airflow_runs_celery_on_redis_and_postgres_as_natively(
    compose: dict, native: Settings
) -> None:
    env = compose["x-aimass"]["environment"]
    ours = cluster.airflow_overrides(native)
    for key in (
        "AIMASS_PROFILE",
        "AIRFLOW__CORE__EXECUTOR",
        "AIRFLOW__CELERY__WORKER_CONCURRENCY",
        "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT",
    ):
        assert str(env[key]) == ours[key], key
    # the same schemes and databases; hosts and passwords are each side's own
    for key, scheme in (
        ("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", "postgresql+psycopg2://"),
        ("AIRFLOW__CELERY__RESULT_BACKEND", "db+postgresql+psycopg2://"),
        ("AIRFLOW__CELERY__BROKER_URL", "redis://"),
    ):
        assert env[key].startswith(scheme) and ours[key].startswith(scheme), key
        assert env[key].rsplit("/", 1)[1] == ours[key].rsplit("/", 1)[1], key
    assert '"spark://spark-master"' in env["AIRFLOW_CONN_SPARK_DEFAULT"]
    assert '"spark://127.0.0.1"' in ours["AIRFLOW_CONN_SPARK_DEFAULT"]


def test_the_celery_workers_take_the_native_flags(compose: dict, native: Settings) -> None:
    defs = services.definitions(native)
    for name in cluster.CELERY_WORKERS:
        ours = defs[name].argv[1:]  # without the path to `airflow`
        theirs = compose["services"][name]["command"][1:]
        assert len(ours) == len(theirs), name
        for mine, other in zip(ours, theirs, strict=True):
            # the hostname: worker-N@<host> natively, worker-N@%h (the container's) in docker
            assert mine.split("@")[0] == other.split("@")[0], (name, mine, other)


def test_mlflow_keeps_the_same_stores(compose: dict, native: Settings) -> None:
    ours = services.definitions(native)["mlflow"]
    theirs = compose["services"]["mlflow"]["environment"]
    assert "--artifacts-destination" not in ours.argv  # by environment, on both sides
    for key in ("MLFLOW_ARTIFACTS_DESTINATION",):
        assert theirs[key] == ours.env[key] == f"s3://{cluster.BUCKET}/artifacts"
    for key in ("MLFLOW_S3_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        assert key in theirs and key in ours.env, key
    assert theirs["MLFLOW_BACKEND_STORE_URI"].endswith("/mlflow")
    assert ours.env["MLFLOW_BACKEND_STORE_URI"].endswith("/mlflow")
    assert theirs["AIMASS_MLFLOW_AUTH_DB_URI"].endswith("/mlflow_auth")
    config = Path(ours.env["MLFLOW_AUTH_CONFIG_PATH"]).read_text(encoding="utf-8")
    assert "/mlflow_auth\n" in config and "postgresql+psycopg2://" in config
    bucket = " ".join(compose["services"]["s3-bucket"]["entrypoint"])
    assert f"s3/{cluster.BUCKET}" in bucket


def test_postgres_holds_the_same_databases() -> None:
    sql = (REPO_ROOT / "docker" / "postgres-init.sql").read_text(encoding="utf-8")
    made = {line.split()[2].rstrip(";") for line in sql.splitlines() if line.startswith("CREATE")}
    assert made == set(cluster.DATABASES)


def test_spark_has_as_many_workers_with_the_same_resources(compose: dict, native: Settings) -> None:
    defs = services.definitions(native)
    for name in cluster.SPARK[1:]:
        argv = defs[name].argv
        command = compose["services"][name]["command"][-1]
        cores, memory = argv[argv.index("--cores") + 1], argv[argv.index("--memory") + 1]
        assert f"--cores ${{SPARK_WORKER_CORES:-{cores}}}" in command, name
        assert f"--memory ${{SPARK_WORKER_MEMORY:-{memory}}}" in command, name
