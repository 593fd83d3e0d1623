"""Spark sessions tuned for a small machine (2 cores, a few GB of memory).

pyspark is imported inside the function: DAG files import ``aimass`` and must stay
cheap to parse.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

log = logging.getLogger(__name__)

# Defaults for small data on few cores: the stock 200 shuffle partitions would spend
# more time scheduling empty tasks than computing.
SMALL_MACHINE_CONF: dict[str, str] = {
    "spark.sql.shuffle.partitions": "4",
    # Only effective when this process starts the JVM (not under spark-submit, which takes
    # --driver-memory): local mode does all the work in the driver, and 1g spills early.
    "spark.driver.memory": "2g",
    # Smaller input splits keep both cores busy on the last wave of a large file.
    "spark.sql.files.maxPartitionBytes": "32m",
    "spark.sql.adaptive.enabled": "true",
    "spark.sql.adaptive.coalescePartitions.enabled": "true",
    "spark.sql.execution.arrow.pyspark.enabled": "true",
    "spark.sql.execution.arrow.pyspark.fallback.enabled": "true",
    "spark.sql.session.timeZone": "UTC",
    "spark.ui.enabled": "false",
    "spark.ui.showConsoleProgress": "false",
    "spark.log.level": "WARN",
}


def get_session(app_name: str, master: str | None = "local[*]") -> SparkSession:
    """Return a SparkSession for ``app_name`` tuned for a small machine.

    Args:
        app_name: Spark application name (shown in logs and in a cluster UI).
        master: Spark master URL. ``None`` leaves it to ``spark-submit`` (``--master``),
            which is how jobs started by the SparkSubmitOperator get their cluster.

    Returns:
        The active session if one exists (its static settings cannot change any more),
        otherwise a new one.
    """
    from pyspark.sql import SparkSession

    # Executors (local or remote) must run the same Python as the driver.
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    builder = SparkSession.builder.appName(app_name)
    if master is not None:
        builder = builder.master(master)
    for key, value in SMALL_MACHINE_CONF.items():
        builder = builder.config(key, value)
    if master is not None and master.startswith("local"):
        # Local mode: keep the driver's ports on loopback (Spark picks eth0 otherwise).
        host = os.environ.get("SPARK_LOCAL_IP", "127.0.0.1")
        builder = builder.config("spark.driver.bindAddress", host).config("spark.driver.host", host)
    session = builder.getOrCreate()
    session.sparkContext.setLogLevel("WARN")
    log.info(
        "spark session %s on %s (spark %s)",
        app_name,
        session.sparkContext.master,
        session.version,
    )
    return session


# A shuffle partition per this many input bytes at least (raw text; the clean rows are smaller).
SHUFFLE_BYTES_PER_PARTITION = 128 * 1024 * 1024


def size_shuffle_partitions(spark: SparkSession, input_bytes: int) -> int:
    """Set the session's shuffle partitions to the cluster and the input; return the number.

    Two per core the job can use (``defaultParallelism``: the local cores, or every
    executor core of a cluster), and at least one per ``SHUFFLE_BYTES_PER_PARTITION`` of
    input, so a large batch does not spill in a few huge tasks. Adaptive execution then
    merges the ones that come out small.
    """
    cores = max(spark.sparkContext.defaultParallelism, 1)
    by_size = -(-input_bytes // SHUFFLE_BYTES_PER_PARTITION)
    partitions = max(2 * cores, by_size)
    spark.conf.set("spark.sql.shuffle.partitions", str(partitions))
    return partitions
