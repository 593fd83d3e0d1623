"""A running AI Mass stack for the end-to-end tests, and what they do with it.

Airflow (API server, scheduler, DAG processor, triggerer), the MLflow server (with its
login: the tests read it as the platform's service user) and the model server start as in
`make demo`, on free ports and under a temporary var dir holding a slice
of the taxi sample (with malformed lines) and the penguins CSV. Each e2e module gets its
own stack (`tests/e2e/conftest.py`), so `make test` can run two modules side by side.
"""

from __future__ import annotations

import itertools
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from testkit import PENGUINS_CSV, SAMPLE_CSV, free_port

from aimass.platform.airflow_api import AirflowClient
from aimass.platform.settings import Settings
from aimass.stack import mlflow_auth, services

DAG_ID = "aimass_retrain"
ROWS = 4000
# The model server records every request; the newest SKEWED rows fill its buffer.
SKEWED = 1000
BAD_LINES = [
    "not,enough,fields\n",
    ",abc,5,19,6,1400269500,,,,,0.0,,,Cash,Flash Cab,300,,0.0\n",  # text in a numeric column
    ",-7.5,5,19,6,1400269500,,,,,0.0,,,Cash,Flash Cab,300,,0.0\n",  # breaks fare_not_negative
]


@contextmanager
def running_stack(var: Path, profile: str = "embedded") -> Iterator[tuple[Settings, AirflowClient]]:
    """Start the services on a fresh var dir; stop them and restore the environment after.

    ``profile="cluster"``: the production profile (aimass.stack.cluster), its PostgreSQL,
    Redis, S3 and Spark on free ports too; its PostgreSQL cluster is removed after.
    """
    raw = var / "data" / "raw" / "chicago_taxi"
    raw.mkdir(parents=True)
    with open(SAMPLE_CSV, encoding="utf-8") as src:
        lines = list(itertools.islice(src, ROWS + 1))
    (raw / "data.csv").write_text("".join(lines + BAD_LINES), encoding="utf-8")
    penguins = var / "data" / "raw" / "palmer_penguins"
    penguins.mkdir(parents=True)
    shutil.copy(PENGUINS_CSV, penguins / "penguins.csv")

    mp = pytest.MonkeyPatch()
    env = {
        "AIMASS_VAR_DIR": str(var),
        "AIMASS_AIRFLOW_PORT": str(free_port()),
        "AIMASS_MLFLOW_PORT": str(free_port()),
        "AIMASS_SERVING_GRPC_PORT": str(free_port()),
        "AIMASS_SERVING_REST_PORT": str(free_port()),
        # Only the runs a test triggers: a nightly slot passing mid-test would add its own
        # run and champion (the schedule itself is tested in tests/dags).
        "AIMASS_RETRAIN_SCHEDULE": "none",
        "AIMASS_MONITOR_SCHEDULE": "none",
        "AIMASS_REQUEST_LOG_SAMPLE": "1",
        "AIMASS_REQUEST_LOG_ROWS": str(SKEWED),
        "AIMASS_PROFILE": profile,
    }
    if profile == "cluster":
        for name in ("PG", "REDIS", "S3", "SPARK_MASTER"):
            env[f"AIMASS_{name}_PORT"] = str(free_port())
        env["AIMASS_SPARK_WEBUI_PORT"] = str(_free_run(3))
    for key, value in env.items():
        mp.setenv(key, value)
    mp.delenv("AIMASS_MLFLOW_TRACKING_URI", raising=False)
    settings = Settings.from_env()
    try:
        services.prepare(settings)
        services.start(settings)
        services.wait_ready(settings, timeout_s=300)
        # The tests read MLflow as the platform's own user (the server needs a login).
        for key, value in mlflow_auth.client_env(settings).items():
            mp.setenv(key, value)
        client = AirflowClient(
            f"http://{settings.host}:{settings.airflow_port}",
            services.ADMIN_USER,
            services.admin_password(settings),
        )
        client.wait_for_dag(DAG_ID, timeout_s=180)
        yield settings, client
    finally:
        services.stop(settings)
        if profile == "cluster":
            from aimass.stack import cluster

            cluster.purge_postgres(settings)
        mp.undo()
    # `make stop` ends every process the stack started, the workers a killed scheduler
    # left behind included (test_files_landing_while_airflow_restarts_...).
    from aimass.stack import processes

    left = processes.stack_processes(services.stack_id(settings))
    assert left == {}, f"processes the stack started outlived services.stop: {left}"


def _free_run(count: int) -> int:
    """The first of ``count`` consecutive free ports (the Spark master's and workers' UIs)."""
    import socket

    for _ in range(50):
        first = free_port()
        try:
            for port in range(first, first + count):
                with socket.socket() as sock:
                    sock.bind(("127.0.0.1", port))
        except OSError:
            continue
        return first
    raise RuntimeError(f"no {count} consecutive free ports")


def run_retrain(client: AirflowClient, conf: dict) -> tuple[str, str, dict | None]:
    """Trigger aimass_retrain and wait: its run id, final state and summary (on success)."""
    run_id = client.trigger(DAG_ID, conf)
    state = client.wait_for_run(DAG_ID, run_id, timeout_s=900)
    summary = client.xcom(DAG_ID, run_id, "publish_summary") if state == "success" else None
    return run_id, state, summary


def task_log_tail(settings: Settings, run_id: str) -> str:
    """The last lines of every task log of ``run_id``, for assertion messages."""
    logs = sorted((services.airflow_home(settings) / "logs").rglob("*.log"))
    mine = [p for p in logs if run_id in str(p)]
    return "\n".join(
        f"--- {p}\n" + "\n".join(p.read_text(errors="replace").splitlines()[-25:]) for p in mine
    )


def predict_stable(settings: Settings, model: str, instance: dict) -> list:
    """The stable version's answer for one instance, over REST."""
    from aimass.serving.client import ServingClient

    sc = ServingClient(settings.serving_grpc_target, settings.serving_rest_url)
    try:
        return list(sc.predict_rest(model, [instance], label="stable"))
    finally:
        sc.close()
