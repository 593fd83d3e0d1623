"""StandaloneCluster without starting JVMs: URLs, ports, environment and misuse errors."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from aimass.platform.errors import ConfigError, StageError
from aimass.platform.sparkcluster import StandaloneCluster, group_members, spark_class

pytestmark = pytest.mark.unit


def test_urls_and_given_ports(tmp_path: Path) -> None:
    cluster = StandaloneCluster(tmp_path, master_port=7001, webui_port=7002)
    assert cluster.master_url == "spark://127.0.0.1:7001"
    assert cluster.webui_url == "http://127.0.0.1:7002"


def test_free_ports_are_distinct_when_not_given(tmp_path: Path) -> None:
    cluster = StandaloneCluster(tmp_path)
    ports = {
        cluster.master_port,
        cluster.webui_port,
        cluster.worker_port,
        cluster.worker_webui_port,
    }
    assert len(ports) == 4 and all(p > 0 for p in ports)


def test_daemons_bind_loopback_use_this_python_and_keep_work_files_in_log_dir(
    tmp_path: Path,
) -> None:
    env = StandaloneCluster(tmp_path, daemon_memory="300m").env()
    assert env["SPARK_LOCAL_IP"] == "127.0.0.1"
    assert env["PYSPARK_PYTHON"] == sys.executable
    assert env["SPARK_DAEMON_MEMORY"] == "300m"
    assert env["SPARK_WORKER_DIR"] == str(tmp_path / "work")
    assert env["PATH"].split(":")[0] == str(Path(sys.executable).parent)
    assert "spark.master.rest.enabled=false" in env["SPARK_MASTER_OPTS"]


def test_spark_class_comes_from_the_venv() -> None:
    assert spark_class() == str(Path(sys.executable).parent / "spark-class")


def test_zero_cores_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="worker_cores=0"):
        StandaloneCluster(tmp_path, worker_cores=0)


def test_wait_ready_before_start_names_the_fix(tmp_path: Path) -> None:
    cluster = StandaloneCluster(tmp_path)
    with pytest.raises(StageError, match=r"was not started; call start\(\)"):
        cluster.wait_ready(timeout_s=1)
    cluster.stop()  # stopping a cluster that never started is a no-op
    assert not cluster.running


def test_group_members_lists_live_processes_of_a_group() -> None:
    assert os.getpid() in group_members(os.getpgid(0))
    assert group_members(2**22 + 12345) == []
