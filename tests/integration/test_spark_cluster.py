"""The clean job on a real Spark standalone cluster, through the DAG's own SparkSubmitOperator.

A master and one worker (1 core, 1g) start on 127.0.0.1 from the pyspark install. The
``clean_data`` task of ``aimass_retrain`` runs once with the ``spark_default`` connection
pointing at that master and once at ``local[*]``; both must write the same partitions.
"""

from __future__ import annotations

import importlib.util
import json
import os
import socket
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from aimass.platform.errors import StageError
from aimass.platform.settings import REPO_ROOT, Settings
from aimass.platform.sparkcluster import StandaloneCluster, group_members

pytestmark = [pytest.mark.integration, pytest.mark.slow]

DS = "2024-01-01"
DAG_FILE = REPO_ROOT / "dags" / "aimass_retrain.py"
BATCH_DAG_FILE = REPO_ROOT / "dags" / "aimass_batch_predict.py"
GOOD = "60,27.05,10,2,3,1380593700,41.836150155,-87.648787952,,,12.6,,,Cash,Taxi Affiliation Services,1380,,0.0"
# A few lines the job must quarantine, so both quarantine partitions have rows to compare.
BAD_LINES = [
    "60,27.05,10,2,3",
    GOOD.replace("27.05", "abc"),
    GOOD.replace("27.05", "-4.5"),
]


class _TaskInstance:
    """Just enough of a task instance to render the DAG's ``ti.xcom_pull`` templates."""

    def __init__(self, ctx: dict[str, Any], task_id: str = "prepare_run") -> None:
        self._ctx = ctx
        self._task_id = task_id

    def xcom_pull(self, task_ids: str, **_: Any) -> dict[str, Any]:
        assert task_ids == self._task_id, task_ids
        return self._ctx


@pytest.fixture(scope="module")
def airflow_settings(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Airflow reads its settings at import: a throwaway home unless a conftest set one."""
    with pytest.MonkeyPatch.context() as mp:
        if "airflow" not in sys.modules and "AIRFLOW_HOME" not in os.environ:
            home = tmp_path_factory.mktemp("airflow_home")
            mp.setenv("AIRFLOW_HOME", str(home))
            mp.setenv("AIRFLOW_CONFIG", str(REPO_ROOT / "airflow.cfg"))
            mp.setenv("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
            mp.setenv("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", f"sqlite:///{home}/airflow.db")
        yield


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StandaloneCluster]:
    """A master and one worker on loopback, stopped (process groups killed) on teardown."""
    with StandaloneCluster(
        log_dir=tmp_path_factory.mktemp("spark_cluster"), worker_cores=1, worker_memory="1g"
    ) as running:
        yield running


def _load_task(dag_file: Path = DAG_FILE, task_id: str = "clean_data") -> Any:
    """A task of a freshly parsed DAG file (default: ``aimass_retrain``'s ``clean_data``)."""
    module_spec = importlib.util.spec_from_file_location(f"_{dag_file.stem}_under_test", dag_file)
    assert module_spec is not None and module_spec.loader is not None
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module.dag.get_task(task_id)


def _clean_through_operator(
    connection: dict[str, Any], base: Path, csv_bytes: bytes, mp: pytest.MonkeyPatch
) -> dict[str, Any]:
    """Run the DAG's clean task as a task would: ctx from prepare_run, templates rendered,
    connection ``spark_default`` from the environment, spark-submit on PATH."""
    from aimass.stages.retrain import prepare_run

    settings = Settings(root=REPO_ROOT, var_dir=base / "var")
    landing = settings.var_dir / "landing"
    landing.mkdir(parents=True)
    (landing / "trips.csv").write_bytes(csv_bytes)
    venv_bin = str(Path(sys.executable).parent)
    mp.setenv("AIMASS_VAR_DIR", str(settings.var_dir))
    mp.setenv("AIRFLOW_CONN_SPARK_DEFAULT", json.dumps(connection))
    mp.setenv("PATH", venv_bin + os.pathsep + os.environ.get("PATH", ""))
    mp.setenv("PYSPARK_PYTHON", sys.executable)
    mp.setenv("PYSPARK_DRIVER_PYTHON", sys.executable)
    mp.setenv("SPARK_LOCAL_IP", "127.0.0.1")

    ctx = prepare_run(
        {"dataset": "chicago_taxi", "ds": DS, "input_path": str(landing)},
        dag_id="aimass_retrain",
        run_id="manual__test_spark_cluster",
        run_date=datetime(2024, 1, 1, tzinfo=UTC),
    ).dump()  # what XCom hands the clean task
    op = _load_task()
    op.render_template_fields({"ti": _TaskInstance(ctx)})
    assert op.application_args[op.application_args.index("--out") + 1] == ctx["batch_dir"]
    op.execute(context={"ti": _TaskInstance(ctx)})
    return {
        "ctx": ctx,
        "master": op._hook._connection["master"],
        "summary": json.loads(Path(ctx["clean_summary"]).read_text(encoding="utf-8")),
    }


@pytest.fixture(scope="module")
def runs(
    airflow_settings: None,
    cluster: StandaloneCluster,
    taxi_csv: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> dict[str, Any]:
    """The clean task on the standalone cluster and on local[*], same input."""
    csv_bytes = taxi_csv.read_bytes() + ("\n".join(BAD_LINES) + "\n").encode()
    out: dict[str, Any] = {"apps_before": len(cluster.state()["completedapps"])}
    with pytest.MonkeyPatch.context() as mp:
        out["cluster"] = _clean_through_operator(
            {"conn_type": "spark", "host": cluster.master_url},
            tmp_path_factory.mktemp("on_cluster"),
            csv_bytes,
            mp,
        )
    out["state"] = cluster.state()
    with pytest.MonkeyPatch.context() as mp:
        out["local"] = _clean_through_operator(
            {"conn_type": "spark", "host": "local[*]"},
            tmp_path_factory.mktemp("on_local"),
            csv_bytes,
            mp,
        )
    out["state_after_local"] = cluster.state()
    return out


def _sorted_table(path: str) -> pa.Table:
    table = pq.read_table(path)
    return table.sort_by([(name, "ascending") for name in table.column_names])


def test_worker_registered_on_loopback_with_small_resources(
    runs: dict[str, Any], cluster: StandaloneCluster
) -> None:
    state = runs["state"]
    assert state["aliveworkers"] == 1
    assert state["url"] == cluster.master_url
    (worker,) = [w for w in state["workers"] if w["state"] == "ALIVE"]
    assert worker["host"] == "127.0.0.1"
    assert (worker["cores"], worker["memory"]) == (1, 1024)


def test_operator_ran_the_job_on_the_standalone_master(
    runs: dict[str, Any], cluster: StandaloneCluster
) -> None:
    assert runs["cluster"]["master"] == cluster.master_url
    assert runs["local"]["master"] == "local[*]"
    finished = runs["state"]["completedapps"]
    assert len(finished) == runs["apps_before"] + 1
    assert finished[-1]["state"] == "FINISHED"
    assert finished[-1]["name"].startswith("aimass-clean")
    # The local[*] run did not go through the cluster.
    assert len(runs["state_after_local"]["completedapps"]) == len(finished)


def test_cluster_and_local_runs_write_the_same_partitions(runs: dict[str, Any]) -> None:
    on_cluster, local = runs["cluster"], runs["local"]
    clean_cluster = _sorted_table(on_cluster["ctx"]["batch_dir"])
    clean_local = _sorted_table(local["ctx"]["batch_dir"])
    assert clean_cluster.schema == clean_local.schema
    assert clean_cluster.num_rows == on_cluster["summary"]["rows_clean"] > 0
    assert clean_cluster.equals(clean_local)

    quarantine_cluster = _sorted_table(on_cluster["ctx"]["quarantine_dir"])
    assert quarantine_cluster.num_rows >= len(BAD_LINES)
    assert quarantine_cluster.equals(_sorted_table(local["ctx"]["quarantine_dir"]))

    paths = {"input", "inputs", "out", "quarantine"}
    counts_cluster = {k: v for k, v in on_cluster["summary"].items() if k not in paths}
    counts_local = {k: v for k, v in local["summary"].items() if k not in paths}
    assert counts_cluster == counts_local
    assert counts_cluster["rows_in"] == 3000 + len(BAD_LINES)


def _score_through_operator(
    connection: dict[str, Any], batch: Path, model: Path, out: Path, mp: pytest.MonkeyPatch
) -> dict[str, Any]:
    """``aimass_batch_predict``'s ``score_rows`` task on ``batch``, as prepare_scoring's
    context would run it (the model fetched from MLflow is the exported folder here)."""
    from aimass.platform.scoring_records import ScoringRequest

    mp.setenv("AIRFLOW_CONN_SPARK_DEFAULT", json.dumps(connection))
    mp.setenv("PATH", str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", ""))
    mp.setenv("PYSPARK_PYTHON", sys.executable)
    mp.setenv("PYSPARK_DRIVER_PYTHON", sys.executable)
    mp.setenv("SPARK_LOCAL_IP", "127.0.0.1")
    out.mkdir(parents=True)
    args_file = out / "score_inputs.args"
    args_file.write_text(f"--input\n{batch}\n", encoding="utf-8")
    ctx = ScoringRequest(
        dataset="chicago_taxi",
        ds=DS,
        inputs=[str(batch)],
        input_source=str(batch),
        model="1",
        model_name="chicago_taxi",
        model_version="1",
        model_dir=str(model),
        output_dir=str(out / "predictions" / f"ds={DS}"),
        report_dir=str(out),
        summary_file=str(out / "scoring_summary.json"),
        args_file=str(args_file),
        dag_id="aimass_batch_predict",
        run_id="manual__test_spark_cluster",
    ).dump()
    op = _load_task(BATCH_DAG_FILE, "score_rows")
    ti = _TaskInstance(ctx, "prepare_scoring")
    op.render_template_fields({"ti": ti})
    op.execute(context={"ti": ti})
    return json.loads(Path(ctx["summary_file"]).read_text(encoding="utf-8"))


def test_batch_scoring_runs_on_the_cluster_as_on_local(
    runs: dict[str, Any], cluster: StandaloneCluster, tmp_path: Path
) -> None:
    import tensorflow as tf

    from aimass.data.spec import load_spec
    from models.tabular.export import export_saved_model
    from models.tabular.inputs import load_arrays
    from models.tabular.model import build_model

    batch = Path(runs["cluster"]["ctx"]["batch_dir"])
    spec = load_spec("chicago_taxi", REPO_ROOT / "conf")
    features, _ = load_arrays(batch, spec, None)
    tf.keras.utils.set_random_seed(3)
    model = export_saved_model(build_model(spec, adapt_data=features), spec, tmp_path / "model")
    before = len(cluster.state()["completedapps"])
    summaries, tables = {}, {}
    for where, master in (("cluster", cluster.master_url), ("local", "local[*]")):
        with pytest.MonkeyPatch.context() as mp:
            summaries[where] = _score_through_operator(
                {"conn_type": "spark", "host": master}, batch, model, tmp_path / where, mp
            )
        tables[where] = _sorted_table(summaries[where]["output"])
    finished = cluster.state()["completedapps"]
    assert len(finished) == before + 1 and finished[-1]["name"].startswith("aimass-score")
    assert finished[-1]["state"] == "FINISHED"
    rows = runs["cluster"]["summary"]["rows_clean"]
    for summary in summaries.values():
        assert (summary["rows_in"], summary["rows_scored"], summary["rows_rejected"]) == (
            rows,
            rows,
            0,
        )
    assert tables["cluster"].num_rows == rows
    assert tables["cluster"].equals(tables["local"])


def _group_members(pgids: set[int]) -> list[int]:
    return [pid for pgid in pgids for pid in group_members(pgid)]


def _port_open(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(1)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def test_stop_ends_every_cluster_process(runs: dict[str, Any], cluster: StandaloneCluster) -> None:
    pgids = set(cluster.pids.values())
    assert cluster.running and len(pgids) == 2 and _group_members(pgids)
    assert _port_open(cluster.master_port)

    cluster.stop()

    assert _group_members(pgids) == []
    assert not _port_open(cluster.master_port)
    assert not _port_open(cluster.webui_port)


def test_a_worker_that_cannot_start_fails_with_its_log_and_stops_the_master(
    tmp_path: Path,
) -> None:
    broken = StandaloneCluster(log_dir=tmp_path / "spark", worker_memory="lots")
    with pytest.raises(StageError, match=r"spark worker `.*Worker.*` exited \d+") as info:
        with broken:
            pass
    assert "last lines of" in str(info.value)
    assert set(broken.pids) == {"master", "worker"}
    assert not broken.running
    assert _group_members(set(broken.pids.values())) == []
    assert not _port_open(broken.master_port)
