"""Training launcher: real TensorFlow worker processes on loopback, their results and their failures."""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psutil
import pytest
from testkit import TAXI_SPEC, write_partition

from aimass.data.spec import DatasetSpec, load_spec
from aimass.platform.errors import StageError
from aimass.training.local import run_workers, train
from aimass.training.run import spec_to_dict
from models.tabular.checkpoints import CHECKPOINT_STATE, TEST_CRASH_ENV
from models.tabular.train import CHECKPOINT_DIR

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
    assert result.params["resumed_from_epoch"] == 0
    # Only the chief wrote into the run dir; no temporary exports are left behind, and the
    # checkpoints went once the export was written.
    assert sorted(p.name for p in run_dir.iterdir()) == ["export", "metrics.json", "spec.yaml"]
    for i in range(workers):
        assert any(r.getMessage().startswith(f"[worker {i}] ") for r in caplog.records), i
        assert any("no checkpoint, starting at epoch 0" in x for x in _worker_lines(caplog, i)), i
    assert "checkpoint after epoch 2" in caplog.text
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
from aimass.training.local import train
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


def _worker_lines(caplog: pytest.LogCaptureFixture, index: int) -> list[str]:
    prefix = f"[worker {index}] "
    return [
        r.getMessage()[len(prefix) :] for r in caplog.records if r.getMessage().startswith(prefix)
    ]


def _epochs_run(lines: list[str], epochs: int) -> list[int]:
    """The epochs Keras announced (``Epoch k/N``, verbose=2), 1-based."""
    return [k for k in range(1, epochs + 1) for line in lines if line == f"Epoch {k}/{epochs}"]


def test_a_killed_worker_is_resumed_from_the_last_checkpoint(
    spec: DatasetSpec,
    partition: Path,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    caplog.set_level(logging.INFO, logger="aimass.training")
    kwargs = {"workers": 2, "epochs": 6, "batch_size": 64, "timeout_s": 400}
    reference = train(spec, data=partition, run_dir=tmp_path / "uninterrupted", **kwargs)

    # Worker 1 SIGKILLs itself once the chief has checkpointed 3 finished epochs.
    run_dir = tmp_path / "run"
    monkeypatch.setenv(TEST_CRASH_ENV, "1:3")
    caplog.clear()
    with pytest.raises(StageError, match=r"worker 1 \(pid \d+\) exited with code -9"):
        train(spec, data=partition, run_dir=run_dir, **kwargs)
    assert not _our_workers()
    assert _epochs_run(_worker_lines(caplog, 1), 6) == [1, 2, 3]
    state = json.loads((run_dir / CHECKPOINT_DIR / CHECKPOINT_STATE).read_text())
    assert state["epochs_done"] >= 3  # the chief may have begun epoch 4 before it was stopped
    assert not (run_dir / "export").exists()

    # The retry (same run dir, as an Airflow retry has) resumes after epoch 3 and finishes.
    monkeypatch.delenv(TEST_CRASH_ENV)
    caplog.clear()
    result = train(spec, data=partition, run_dir=run_dir, **kwargs)
    for i in range(2):
        lines = _worker_lines(caplog, i)
        assert any("resuming from epoch 3:" in line for line in lines), i
        assert _epochs_run(lines, 6) == [4, 5, 6], i  # finished epochs were not redone
    assert result.params["resumed_from_epoch"] == 3
    assert (result.saved_model_dir / "saved_model.pb").exists()
    # Same state and same shuffle order per epoch: the result is the uninterrupted run's.
    assert result.history.keys() == reference.history.keys()
    for name, values in reference.history.items():
        assert result.history[name] == pytest.approx(values, rel=1e-6), name
    assert result.holdout == pytest.approx(reference.holdout, rel=1e-6)
    assert sorted(p.name for p in run_dir.iterdir()) == ["export", "metrics.json", "spec.yaml"]
    assert not _our_workers()

    # A finished run leaves nothing to resume: running it again trains again.
    caplog.clear()
    again = train(spec, data=partition, run_dir=run_dir, workers=1, epochs=1, timeout_s=400)
    assert "no checkpoint, starting at epoch 0" in caplog.text
    assert again.params["resumed_from_epoch"] == 0
    assert len(again.history["loss"]) == 1
    assert not _our_workers()


def test_a_finished_training_is_exported_and_another_runs_checkpoint_is_not_resumed(
    spec: DatasetSpec,
    partition: Path,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    caplog.set_level(logging.INFO, logger="aimass.training")
    run_dir = tmp_path / "run"
    # The only worker dies after its last epoch's checkpoint, before the export.
    monkeypatch.setenv(TEST_CRASH_ENV, "0:2")
    with pytest.raises(StageError, match=r"worker 0 \(pid \d+\) exited with code -9"):
        train(spec, data=partition, run_dir=run_dir, workers=1, epochs=2, timeout_s=400)
    monkeypatch.delenv(TEST_CRASH_ENV)
    assert not (run_dir / "export").exists()
    other_run = tmp_path / "other"
    shutil.copytree(run_dir / CHECKPOINT_DIR, other_run / CHECKPOINT_DIR)

    # Its retry trains no more epochs: it exports the restored model.
    caplog.clear()
    result = train(spec, data=partition, run_dir=run_dir, workers=1, epochs=2, timeout_s=400)
    assert "resuming from epoch 2:" in caplog.text
    assert "all 2 epochs were done before; exporting the restored model" in caplog.text
    assert _epochs_run(_worker_lines(caplog, 0), 2) == []
    assert result.params["resumed_from_epoch"] == 2
    assert len(result.history["loss"]) == 2  # the history came back with the checkpoint
    assert (result.saved_model_dir / "saved_model.pb").exists()
    assert not (run_dir / CHECKPOINT_DIR).exists()

    # A checkpoint of a run with other settings is deleted, not resumed.
    caplog.clear()
    result = train(spec, data=partition, run_dir=other_run, workers=1, epochs=3, timeout_s=400)
    assert "is from another run (differs in ['epochs']); starting at epoch 0" in caplog.text
    assert _epochs_run(_worker_lines(caplog, 0), 3) == [1, 2, 3]
    assert result.params["resumed_from_epoch"] == 0
    assert len(result.history["loss"]) == 3
    assert not (other_run / CHECKPOINT_DIR).exists()
    assert not _our_workers()
