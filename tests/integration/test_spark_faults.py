"""A Spark worker lost in the middle of the clean: the job still writes the same partition.

A standalone cluster of a master and two workers (one core each) runs the clean job through
``spark-submit`` in client mode. Once the job has parsed its input into the cache (the
driver logs ``read N raw rows``), one worker and its executor are killed with SIGKILL: the
cached blocks and shuffle files on it are gone. Spark recomputes them on the other worker,
and the rows, the quarantine and every count (taken while writing, by ``Observation``)
must equal those of the same input cleaned on ``local[*]``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from aimass.data.spec import load_spec
from aimass.platform.sparkcluster import StandaloneCluster

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(900)]

ROOT = Path(__file__).resolve().parents[2]
ROWS = 300_000
DS = "2024-01-01"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StandaloneCluster]:
    with StandaloneCluster(
        log_dir=tmp_path_factory.mktemp("spark_faults"),
        worker_cores=1,
        worker_memory="1g",
        workers=2,
    ) as running:
        yield running


@pytest.fixture(scope="module")
def raw_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The taxi sample resampled to ``ROWS`` rows with bad rows and duplicates in it."""
    sys.path.insert(0, str(ROOT / "bench"))
    import datagen

    from aimass.data.sample_data import fetch_sample
    from aimass.platform.settings import Settings

    spec = load_spec("chicago_taxi")
    var_dir = Settings.from_env().var_dir
    fetch_sample(var_dir)
    sample = Path(spec.resolved_source_path(var_dir))
    out = tmp_path_factory.mktemp("faults_data")
    return Path(datagen.generate(spec, sample, ROWS, 11, out).path)


def _submit(master: str, raw: Path, base: Path) -> subprocess.Popen[str]:
    cmd = [
        str(Path(sys.executable).with_name("spark-submit")),
        "--master",
        master,
        "--conf",
        "spark.executor.memory=768m",
        "--conf",
        "spark.ui.enabled=false",
        str(ROOT / "jobs" / "clean" / "main.py"),
        "--spec",
        "chicago_taxi",
        "--input",
        str(raw),
        "--ds",
        DS,
        "--out",
        str(base / "clean" / "batch=fault"),
        "--quarantine",
        str(base / "quarantine" / "batch=fault"),
        "--summary",
        str(base / "summary.json"),
    ]
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "src")]),
        "PYSPARK_PYTHON": sys.executable,
        "SPARK_LOCAL_IP": "127.0.0.1",
    }
    return subprocess.Popen(
        cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )


def _table(folder: Path) -> Any:
    table = pq.read_table(folder)
    return table.sort_by([(name, "ascending") for name in table.column_names])


def test_a_worker_killed_during_the_clean_changes_nothing_in_the_partition(
    cluster: StandaloneCluster, raw_csv: Path, tmp_path: Path
) -> None:
    import json

    local = _submit("local[2]", raw_csv, tmp_path / "local")
    local_log, _ = local.communicate(timeout=600)
    assert local.returncode == 0, local_log[-3000:]

    proc = _submit(cluster.master_url, raw_csv, tmp_path / "cluster")
    assert proc.stdout is not None
    lines: list[str] = []
    killed_at = None
    deadline = time.monotonic() + 600
    for line in proc.stdout:
        lines.append(line)
        if killed_at is None and "raw rows from" in line:
            # The input is parsed into the executors' caches; the write has not started.
            state = cluster.state()
            assert state["activeapps"], "the job is not running on the cluster"
            # Both workers run an executor of the job: the killed one held cached blocks.
            assert [w["coresused"] for w in state["workers"]] == [1, 1], state["workers"]
            cluster.kill_worker("worker-2")
            killed_at = len(lines)
        assert time.monotonic() < deadline, "".join(lines[-50:])
    assert proc.wait(timeout=60) == 0, "".join(lines[-80:])
    assert killed_at is not None, "".join(lines[-80:])
    assert cluster.state()["aliveworkers"] == 1

    summaries = [
        json.loads((tmp_path / kind / "summary.json").read_text()) for kind in ("local", "cluster")
    ]
    keys = ("rows_in", "rows_clean", "rows_quarantined", "rows_duplicate", "rows_train")
    assert [s[k] for k in keys for s in summaries[:1]] == [summaries[1][k] for k in keys]
    assert summaries[1]["duplicates"] == summaries[0]["duplicates"]
    assert summaries[1]["quarantine_reasons"] == summaries[0]["quarantine_reasons"]
    assert summaries[1]["rows_in"] == ROWS
    assert _table(tmp_path / "cluster" / "clean" / "batch=fault").equals(
        _table(tmp_path / "local" / "clean" / "batch=fault")
    )
    assert _table(tmp_path / "cluster" / "quarantine" / "batch=fault").equals(
        _table(tmp_path / "local" / "quarantine" / "batch=fault")
    )
