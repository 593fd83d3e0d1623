"""The production profile's S3 store keeps what it was given across a restart.

moto alone holds objects in memory; ``aimass.stack.s3store`` journals every accepted write
and replays the journal at start. Through boto3, as MLflow's artifact repository talks to it:
a bucket, a small object, a 12 MB file (boto3 sends it in multipart parts) and a deleted
object; the store is SIGKILLed (no chance to save anything on the way out) and started again.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from testkit import free_port

from aimass.stack.s3store import ready_marker

pytestmark = pytest.mark.integration


class Store:
    def __init__(self, journal: Path) -> None:
        self.journal = journal
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        ready_marker(self.journal).unlink(missing_ok=True)  # a SIGKILLed store leaves it
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "aimass.stack.s3store", "--port", str(self.port)]
            + ["--journal", str(self.journal)]
        )
        deadline = time.monotonic() + 60
        while not ready_marker(self.journal).exists():
            assert self.proc.poll() is None, "the store exited"
            assert time.monotonic() < deadline, "the store did not get ready"
            time.sleep(0.1)

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait()

    def client(self):  # type: ignore[no-untyped-def]
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=f"http://127.0.0.1:{self.port}",
            aws_access_key_id="aimass",
            aws_secret_access_key="not-checked",
            region_name="us-east-1",
        )


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    running = Store(tmp_path / "s3" / "journal.jsonl")
    running.start()
    yield running
    if running.proc is not None and running.proc.poll() is None:
        running.kill()


def test_objects_outlive_a_killed_store(store: Store, tmp_path: Path) -> None:
    s3 = store.client()
    s3.create_bucket(Bucket="aimass-mlflow")
    s3.put_object(Bucket="aimass-mlflow", Key="runs/1/metrics.json", Body=b'{"auc": 0.9}')
    big = tmp_path / "saved_model.pb"
    big.write_bytes(os.urandom(12 * 1024 * 1024))
    s3.upload_file(str(big), "aimass-mlflow", "runs/1/saved_model/saved_model.pb")
    s3.put_object(Bucket="aimass-mlflow", Key="runs/1/tmp", Body=b"gone")
    s3.delete_object(Bucket="aimass-mlflow", Key="runs/1/tmp")

    store.kill()
    store.start()

    s3 = store.client()
    keys = sorted(o["Key"] for o in s3.list_objects_v2(Bucket="aimass-mlflow")["Contents"])
    assert keys == ["runs/1/metrics.json", "runs/1/saved_model/saved_model.pb"]
    got = s3.get_object(Bucket="aimass-mlflow", Key="runs/1/saved_model/saved_model.pb")
    assert got["Body"].read() == big.read_bytes()
    assert s3.get_object(Bucket="aimass-mlflow", Key="runs/1/metrics.json")["Body"].read() == (
        b'{"auc": 0.9}'
    )
    # reads are not journaled: only the six writes
    assert len(store.journal.read_text().splitlines()) >= 5
