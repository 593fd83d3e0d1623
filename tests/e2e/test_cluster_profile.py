"""The production profile runs the same DAGs with the same outcomes (issue 18).

`make up PROFILE=cluster` natively: PostgreSQL holds Airflow's and MLflow's stores, Redis
carries Celery's queue to two Celery workers, MLflow keeps artifacts on S3, and Spark jobs
run on a standalone master with two workers (aimass.stack.cluster). On it, in order:

1. a retrain of the taxi data, with the embedded e2e's outcomes (rows conserved, gate passed,
   version 1 deployed and answering), and proof that each production engine did the work;
2. a file landing for the penguins, which starts a run that processes it once;
3. PostgreSQL restarted while a run trains: the supervisor brings the database back, and
   the Airflow components that exited with it, and the run finishes;
4. both Celery workers SIGKILLed while the second taxi run trains: the task is retried on
   the restarted workers, and the lake batch and the registry version exist once;
5. a rollback back to version 1.
"""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from e2ekit import (
    BAD_LINES,
    DAG_ID,
    ROWS,
    predict_stable,
    run_retrain,
    running_stack,
    task_log_tail,
)
from testkit import PENGUINS_CSV

from aimass.platform.airflow_api import AirflowClient
from aimass.platform.settings import Settings, safe_name
from aimass.stack import cluster, services

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.cluster]

DS = "2026-11-01"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Settings, AirflowClient]]:
    with running_stack(tmp_path_factory.mktemp("cluster") / "var", profile="cluster") as started:
        yield started


def _sql(settings: Settings, database: str, query: str, *args: object) -> list[tuple]:
    import psycopg2

    conn = psycopg2.connect(cluster.db_uri(settings, database, driver="postgresql"))
    try:
        with conn.cursor() as cur:
            cur.execute(query, args)
            return list(cur.fetchall())
    finally:
        conn.close()


def _s3_keys(settings: Settings, prefix: str) -> list[str]:
    pages = (
        cluster.s3_client(settings)
        .get_paginator("list_objects_v2")
        .paginate(Bucket=cluster.BUCKET, Prefix=prefix)
    )
    return [obj["Key"] for page in pages for obj in page.get("Contents", [])]


def _spark_apps(settings: Settings) -> list[str]:
    url = f"http://{settings.host}:{cluster.Ports.from_env().spark_webui}/json/"
    with urllib.request.urlopen(url, timeout=10) as resp:
        state = json.load(resp)
    assert state["aliveworkers"] == 2, state
    return [app["name"] for app in state["completedapps"] + state["activeapps"]]


def _wait_running(client: AirflowClient, run_id: str, task: str, timeout_s: float = 600) -> None:
    deadline = time.monotonic() + timeout_s
    while client.task_states(DAG_ID, run_id).get(task) != "running":
        assert time.monotonic() < deadline, f"{task} of {run_id} never ran"
        time.sleep(1)


def _tries(client: AirflowClient, run_id: str, task: str) -> int:
    body = client.request("GET", f"/api/v2/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances/{task}")
    return int(body["try_number"])


def test_a_retrain_runs_on_postgres_celery_s3_and_the_spark_cluster(
    stack: tuple[Settings, AirflowClient],
) -> None:
    from mlflow import MlflowClient

    settings, client = stack
    run_id, state, summary = run_retrain(client, {"epochs": 3, "ds": DS, "workers": 2})
    assert state == "success", task_log_tail(settings, run_id)
    assert summary is not None
    # the embedded e2e's outcomes
    counts = summary["clean"]
    assert counts["rows_in"] == ROWS + len(BAD_LINES)
    assert counts["rows_in"] == (
        counts["rows_clean"] + counts["rows_quarantined"] + counts["rows_duplicate"]
    )
    assert summary["quality"]["success"] is True
    assert summary["gate"]["verdict"] == "passed", summary["gate"]["checks"]
    assert summary["deployment"]["serving_version"] == 1
    assert predict_stable(settings, "chicago_taxi", summary["deployment"]["rest_instance"])
    # What serves is what compress_candidate chose: a compressed variant's own version, or
    # the candidate's.
    version = summary["deployment"]["registry_version"]
    mlflow_run = summary["model"]["mlflow_run_id"]
    uri = f"http://{settings.host}:{settings.mlflow_port}"
    mlc = MlflowClient(tracking_uri=uri, registry_uri=uri)
    assert mlc.get_model_version_by_alias("chicago_taxi", "champion").version == str(version)

    # ... and each production engine did its part:
    # Airflow's metadata and MLflow's runs are in PostgreSQL,
    assert _sql(settings, "airflow", "SELECT state FROM dag_run WHERE run_id = %s", run_id) == [
        ("success",)
    ]
    assert _sql(settings, "mlflow", "SELECT status FROM runs WHERE run_uuid = %s", mlflow_run) == [
        ("FINISHED",)
    ]
    # the tasks went through Redis to the Celery workers,
    worker_logs = "".join(
        (settings.logs_dir / f"{name}.log").read_text(errors="replace")
        for name in cluster.CELERY_WORKERS
    )
    received = worker_logs.count("] received")  # celery: "execute_workload[<id>] received"
    assert received >= len(client.task_states(DAG_ID, run_id)) - 1  # all but the skipped one
    # the model's files are on S3, through MLflow's proxy,
    keys = _s3_keys(settings, "artifacts/")
    assert any(mlflow_run in key and "/saved_model/" in key for key in keys), keys[:20]
    # and the clean job ran on the standalone master's two workers.
    assert any(name.startswith("aimass-clean") for name in _spark_apps(settings))


def test_a_landed_file_starts_a_run_that_processes_it_once(
    stack: tuple[Settings, AirflowClient],
) -> None:
    settings, client = stack
    zone = settings.var_dir / "landing" / "palmer_penguins"
    zone.mkdir(parents=True, exist_ok=True)
    before = {r["dag_run_id"] for r in client.runs(DAG_ID, run_type="asset_triggered")}
    partial = zone / ".penguins.csv.tmp"
    partial.write_text(PENGUINS_CSV.read_text(encoding="utf-8"), encoding="utf-8")
    partial.rename(zone / "penguins.csv")
    deadline = time.monotonic() + 300
    while not (
        runs := {r["dag_run_id"] for r in client.runs(DAG_ID, run_type="asset_triggered")} - before
    ):
        assert time.monotonic() < deadline, "the landed file started no run"
        time.sleep(2)
    states = {run: client.wait_for_run(DAG_ID, run, timeout_s=900) for run in runs}
    assert set(states.values()) == {"success"}, [task_log_tail(settings, r) for r in runs]
    ledger = [
        json.loads(line) for line in (zone / "processed" / "ledger.jsonl").read_text().splitlines()
    ]
    assert [e["file"].split("-", 1)[1] for e in ledger] == ["penguins.csv"]
    summary = client.xcom(DAG_ID, ledger[0]["run_id"], "publish_summary")
    assert summary["trigger"]["kind"] == "landing"
    assert summary["clean"]["rows_in"] == 344 and summary["gate"]["verdict"] == "passed"
    assert summary["deployment"]["serving_version"] == 1


def test_a_postgres_restart_during_a_run_is_recovered(
    stack: tuple[Settings, AirflowClient],
) -> None:
    settings, client = stack
    run_id = client.trigger(DAG_ID, {"dataset": "palmer_penguins", "epochs": 2, "workers": 1})
    _wait_running(client, run_id, "train_model")
    old = services.pid_of(settings, "postgres")
    services.stop(settings, ["postgres"])  # a fast shutdown: every connection is cut
    deadline = time.monotonic() + 120
    while services.pid_of(settings, "postgres") in (None, old):
        assert time.monotonic() < deadline, "the supervisor did not start PostgreSQL again"
        time.sleep(1)
    services.wait_ready(settings, ["postgres"], timeout_s=60)
    state = client.wait_for_run(DAG_ID, run_id, timeout_s=900)
    assert state == "success", task_log_tail(settings, run_id)
    supervised = (settings.logs_dir / "supervisor.log").read_text()
    assert "postgres is not running: starting it again" in supervised
    # each service is running again, once
    assert all(services.status(settings).values()), services.status(settings)


def test_a_celery_worker_killed_mid_task_is_retried_and_nothing_is_doubled(
    stack: tuple[Settings, AirflowClient],
) -> None:
    from mlflow import MlflowClient

    from aimass.data.lake import current_batches

    settings, client = stack
    # A stronger candidate than version 1 (3 epochs at the spec's rate), so the gate passes.
    conf = {"epochs": 6, "learning_rate": 0.002, "ds": DS, "workers": 2}
    run_id = client.trigger(DAG_ID, conf)
    _wait_running(client, run_id, "train_model")
    time.sleep(5)
    # A machine lost: both workers and the tasks they run, SIGKILLed as process groups.
    services.stop(settings, list(cluster.CELERY_WORKERS), timeout_s=0)
    state = client.wait_for_run(DAG_ID, run_id, timeout_s=1200)
    assert state == "success", task_log_tail(settings, run_id)
    assert _tries(client, run_id, "train_model") == 2  # retried, on a restarted worker
    summary = client.xcom(DAG_ID, run_id, "publish_summary")
    assert summary["gate"]["verdict"] == "passed", summary["gate"]["checks"]
    # nothing doubled: one batch for this run in the day, and one registry version more
    clean_dir = settings.clean_partition("chicago_taxi", DS)
    mine = [b for b in current_batches(clean_dir) if b.name == f"batch={safe_name(run_id)}"]
    assert len(mine) == 1
    uri = f"http://{settings.host}:{settings.mlflow_port}"
    mlc = MlflowClient(tracking_uri=uri, registry_uri=uri)
    # The retry, on restarted workers, recorded to the same MLflow server (once a restarted
    # worker inherited the supervisor's SQLite default, and registered "version 1" there).
    assert mlc.get_run(summary["model"]["mlflow_run_id"]).info.status == "FINISHED"
    # One candidate version per run; compressed variants (tagged aimass.variant) are versions
    # of their own, at most one per candidate.
    registered = mlc.search_model_versions("name='chicago_taxi'")
    candidates = sorted(int(v.version) for v in registered if "aimass.variant" not in v.tags)
    made_from = [v.tags["aimass.compressed_from"] for v in registered if "aimass.variant" in v.tags]
    assert len(candidates) == 2 and str(summary["model"]["registry_version"]) == str(candidates[1])
    assert len(made_from) == len(set(made_from)) <= 2
    assert summary["deployment"]["serving_version"] == 2


def test_a_rollback_moves_stable_and_champion_back(
    stack: tuple[Settings, AirflowClient],
) -> None:
    from mlflow import MlflowClient

    settings, client = stack
    why = {"reason": "e2e cluster: the rollback DAG moves stable and champion back"}
    run_id = client.trigger("aimass_rollback", why)
    assert client.wait_for_run("aimass_rollback", run_id, timeout_s=300) == "success", (
        task_log_tail(settings, run_id)
    )
    back = client.xcom("aimass_rollback", run_id, "roll_back")
    assert (back["serving_version"], back["rolled_back_from"]) == (1, 2)
    uri = f"http://{settings.host}:{settings.mlflow_port}"
    mlc = MlflowClient(tracking_uri=uri, registry_uri=uri)
    first = [
        v.version
        for v in mlc.search_model_versions("name='chicago_taxi'")
        if v.tags.get("aimass.serving_version") == "1"
    ]
    assert mlc.get_model_version_by_alias("chicago_taxi", "champion").version in first
    assert Path(settings.serving_config).exists()
