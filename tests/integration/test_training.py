"""Training launcher: real TensorFlow worker processes on loopback, their results and their failures."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psutil
import pytest
from testkit import TAXI_SPEC, write_partition

from aimass.errors import StageError
from aimass.spec import DatasetSpec, load_spec
from aimass.training import run_workers, spec_to_dict, train

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def spec() -> DatasetSpec:
    return load_spec(TAXI_SPEC)


@pytest.fixture(scope="module")
def partition(taxi_csv: Path, spec: DatasetSpec, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_partition(taxi_csv, tmp_path_factory.mktemp("clean") / "ds=2024-01-01", spec)


def _our_workers() -> list[psutil.Process]:
    """Live training workers among this test process's descendants (zombies excluded).

    Other descendants (the session's Spark JVM, say) belong to other fixtures.
    """
    out = []
    for child in psutil.Process().children(recursive=True):
        try:
            if child.status() != psutil.STATUS_ZOMBIE and "models.tabular.train" in " ".join(
                child.cmdline()
            ):
                out.append(child)
        except psutil.NoSuchProcess:
            pass
    return out


def _holdout_auc(spec: DatasetSpec, partition: Path, export_dir: Path) -> float:
    from sklearn.metrics import roc_auc_score

    from models.tabular.export import load_predict_fn
    from models.tabular.inputs import load_arrays

    x, y = load_arrays(partition, spec, "holdout")
    return float(roc_auc_score(y, load_predict_fn(export_dir)(x)))


def test_spec_round_trips_through_the_yaml_the_workers_read(spec: DatasetSpec) -> None:
    assert DatasetSpec.from_dict(spec_to_dict(spec)) == spec


@pytest.mark.parametrize("workers", [1, 2])
def test_train_exports_a_model_and_metrics(
    workers: int,
    spec: DatasetSpec,
    partition: Path,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="aimass.training")
    run_dir = tmp_path / "run"
    result = train(
        spec,
        data=partition,
        run_dir=run_dir,
        workers=workers,
        epochs=2,
        batch_size=64,
        timeout_s=400,
    )

    assert result.workers == workers
    assert result.saved_model_dir == run_dir / "export"
    assert (result.saved_model_dir / "saved_model.pb").exists()
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert result.metrics_path == run_dir / "metrics.json"
    assert set(metrics) == {"history", "params", "holdout"}
    for name in ("loss", "auc", "accuracy"):
        assert len(metrics["history"][name]) == 2, name
    assert metrics["history"]["loss"][1] < metrics["history"]["loss"][0]
    assert result.params["workers"] == workers
    assert result.params["global_batch_size"] == 64 * workers
    assert result.params["epochs"] == 2
    assert metrics["holdout"]["auc"] > 0.6
    # The export itself, not only the logged metric, separates the classes.
    assert _holdout_auc(spec, partition, result.saved_model_dir) > 0.6
    # Only the chief wrote into the run dir; no temporary exports are left behind.
    assert sorted(p.name for p in run_dir.iterdir()) == ["export", "metrics.json", "spec.yaml"]
    for i in range(workers):
        assert any(r.getMessage().startswith(f"[worker {i}] ") for r in caplog.records), i
    assert not _our_workers()


def test_failing_workers_raise_stage_error(
    spec: DatasetSpec, taxi_csv: Path, tmp_path: Path
) -> None:
    no_label = write_partition(taxi_csv, tmp_path / "ds=2024-01-02", spec, label=False)
    with pytest.raises(StageError) as info:
        train(spec, data=no_label, run_dir=tmp_path / "run", workers=2, epochs=1, timeout_s=300)
    message = str(info.value)
    assert "exited with code 2" in message
    assert "big_tipper" in message  # the worker's own error is among the last lines
    assert not (tmp_path / "run" / "export").exists()
    assert not _our_workers()


def _python(code: str) -> list[str]:
    return [sys.executable, "-c", textwrap.dedent(code)]


HANGS = _python(
    """
    import signal, time
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # like a worker stuck in a collective
    print("waiting", flush=True)
    time.sleep(120)
    """
)


def test_a_failed_worker_stops_the_others(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="aimass.training")
    fails = _python("import sys, time; time.sleep(0.5); print('boom', flush=True); sys.exit(3)")
    started = time.monotonic()
    with pytest.raises(StageError, match=r"worker 1 \(pid \d+\) exited with code 3") as info:
        run_workers([HANGS, fails], [dict(os.environ)] * 2)
    assert "boom" in str(info.value)
    assert time.monotonic() - started < 30  # not the 120 s the hanging worker wanted
    assert "[worker 0] waiting" in caplog.text
    assert not _our_workers()


def test_timeout_stops_the_workers() -> None:
    with pytest.raises(StageError, match="timeout_s=1"):
        run_workers([HANGS], [dict(os.environ)], timeout_s=1)
    assert not _our_workers()


LAUNCHER = """
import os, sys
from pathlib import Path
from aimass.training import train
train(sys.argv[1], data=Path(sys.argv[2]), run_dir=Path(sys.argv[3]), workers=1, epochs=50)
"""


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["SIGTERM", "SIGKILL"])
def test_no_worker_outlives_its_launcher(sig: int, partition: Path, tmp_path: Path) -> None:
    launcher = subprocess.Popen(
        [sys.executable, "-c", LAUNCHER, str(TAXI_SPEC), str(partition), str(tmp_path / "run")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        workers: list[psutil.Process] = []
        while not workers and time.monotonic() < deadline:
            time.sleep(0.2)
            workers = [
                p
                for p in psutil.Process(launcher.pid).children()
                if "models.tabular.train" in " ".join(p.cmdline())
            ]
        assert workers, "the launcher never started its worker"
        launcher.send_signal(sig)
        launcher.wait(timeout=30)
        _, alive = psutil.wait_procs(workers, timeout=15)
        assert not alive, f"worker survived {signal.Signals(sig).name} of its launcher"
        if sig == signal.SIGTERM:
            # The launcher's handler stopped the worker and raised StageError (exit 1),
            # rather than dying at once (-15) and leaving the worker to notice on its own.
            assert launcher.returncode == 1
        else:
            assert launcher.returncode == -signal.SIGKILL  # the worker's parent watchdog did it
    finally:
        for proc in [*_our_workers(), *([launcher] if launcher.poll() is None else [])]:
            proc.kill()
        launcher.wait()
