"""Epoch checkpoints (models/tabular/checkpoints.py): run identity, save, restore, start over."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from aimass.platform.errors import ConfigError
from models.tabular.checkpoints import (
    CHECKPOINT_STATE,
    TEST_CRASH_ENV,
    EpochCheckpoints,
    _crash_for_test,
    check_same_start,
    run_identity,
    write_json,
)
from models.tabular.train import ClusterRole

pytestmark = pytest.mark.unit

CHIEF = ClusterRole(workers=2, task_type="worker", index=0, is_chief=True)
OTHER = ClusterRole(workers=2, task_type="worker", index=1, is_chief=False)
KNOBS = {"epochs": 3, "batch_size": 8, "seed": 42}


# -- state file and run identity -----------------------------------------------------------


def test_write_json_sorts_keys_and_leaves_no_temp_file(tmp_path: Path) -> None:
    path = tmp_path / CHECKPOINT_STATE

    write_json(path, {"run": {"b": 1, "a": 2}, "epochs_done": 1})

    assert path.read_text(encoding="utf-8").splitlines()[1] == '  "epochs_done": 1,'
    assert json.loads(path.read_text(encoding="utf-8")) == {
        "run": {"a": 2, "b": 1},
        "epochs_done": 1,
    }
    assert [p.name for p in tmp_path.iterdir()] == [CHECKPOINT_STATE]


def _partition(root: Path) -> Path:
    (root / "split=train").mkdir(parents=True)
    (root / "split=train" / "part-1.parquet").write_bytes(b"12345")
    (root / "part-0.parquet").write_bytes(b"123")
    return root


def test_run_identity_lists_data_files_with_size_and_mtime(tmp_path: Path) -> None:
    data = _partition(tmp_path / "ds=2024-01-01")

    identity = run_identity({"name": "tiny", "columns": ("a", "b")}, data, KNOBS)

    assert identity["data"] == str(data.resolve())
    assert [f[:2] for f in identity["data_files"]] == [
        ["part-0.parquet", 3],
        ["split=train/part-1.parquet", 5],
    ]
    assert {k: identity[k] for k in KNOBS} == KNOBS
    # As state.json reads it back (tuples become lists), so the two compare equal.
    assert identity["spec"] == {"name": "tiny", "columns": ["a", "b"]}
    assert identity == json.loads(json.dumps(identity))


def test_run_identity_changes_when_the_clean_stage_rewrites_a_file(tmp_path: Path) -> None:
    data = _partition(tmp_path / "ds=2024-01-01")
    before = run_identity({}, data, KNOBS)

    part = data / "part-0.parquet"
    stat = part.stat()
    os.utime(part, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))

    assert run_identity({}, data, KNOBS) != before
    assert run_identity({}, data, {**KNOBS, "seed": 7}) != run_identity({}, data, KNOBS)


# -- the test-only crash hook ----------------------------------------------------------------


def test_crash_for_test_does_nothing_unless_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(TEST_CRASH_ENV, raising=False)
    _crash_for_test(OTHER, 1, Path("unused"))

    # Another worker, or another epoch: this process lives on.
    monkeypatch.setenv(TEST_CRASH_ENV, "0:1")
    _crash_for_test(OTHER, 1, Path("unused"))
    monkeypatch.setenv(TEST_CRASH_ENV, "1:3")
    _crash_for_test(OTHER, 1, Path("unused"))


@pytest.mark.parametrize("raw", ["1", "one:3", "1:", ":3"])
def test_crash_for_test_refuses_a_malformed_setting(
    raw: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(TEST_CRASH_ENV, raw)

    with pytest.raises(ConfigError, match="use '<worker index>:<epochs>'"):
        _crash_for_test(OTHER, 1, Path("unused"))


# -- save and restore, with TensorFlow -------------------------------------------------------


def _model(seed: int) -> Any:
    tf_keras = pytest.importorskip("tf_keras")

    tf_keras.utils.set_random_seed(seed)
    model = tf_keras.Sequential([tf_keras.layers.Dense(2, input_shape=(3,))])
    model.compile(optimizer=tf_keras.optimizers.Adam(0.01), loss="mse")
    # As in training: the optimizer's slots must exist for a checkpoint to restore them.
    model.optimizer.build(model.trainable_variables)
    return model


def _saved(directory: Path, identity: dict[str, Any], epochs: int) -> Any:
    """A chief's checkpoints after ``epochs`` epochs; the model they hold."""
    model = _model(seed=1)
    checkpoints = EpochCheckpoints(model, directory, CHIEF, identity)
    for epoch in range(1, epochs + 1):
        checkpoints.save(epoch, {"loss": 1.0 / epoch, "auc": 0.5 + epoch / 10})
    return model


@pytest.fixture(autouse=True)
def _no_crash(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(TEST_CRASH_ENV, raising=False)


def test_restore_without_a_checkpoint_starts_at_epoch_0(tmp_path: Path) -> None:
    checkpoints = EpochCheckpoints(_model(seed=2), tmp_path / "checkpoints", CHIEF, {"run": 1})

    assert checkpoints.restore(3) == 0
    assert checkpoints.history == {}


def test_a_checkpoint_of_the_same_run_is_restored_with_its_history(tmp_path: Path) -> None:
    directory = tmp_path / "checkpoints"
    identity = {"spec": {"name": "tiny"}, **KNOBS}
    saved = _saved(directory, identity, epochs=2)
    state = json.loads((directory / CHECKPOINT_STATE).read_text(encoding="utf-8"))
    assert (state["run"], state["epochs_done"]) == (identity, 2)

    fresh = _model(seed=2)
    checkpoints = EpochCheckpoints(fresh, directory, OTHER, identity)

    assert checkpoints.restore(3) == 2
    assert checkpoints.history == {"loss": [1.0, 0.5], "auc": [0.6, 0.7]}
    for restored, original in zip(fresh.get_weights(), saved.get_weights(), strict=True):
        np.testing.assert_array_equal(restored, original)


def test_a_checkpoint_of_another_run_is_deleted_by_the_chief(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    directory = tmp_path / "checkpoints"
    _saved(directory, {"seed": 1, "epochs": 3}, epochs=1)

    with caplog.at_level(logging.WARNING, logger="models.tabular.checkpoints"):
        other = EpochCheckpoints(_model(seed=2), directory, OTHER, {"seed": 2, "epochs": 3})
        assert other.restore(3) == 0
        assert directory.is_dir()  # only the chief deletes
        chief = EpochCheckpoints(_model(seed=2), directory, CHIEF, {"seed": 2, "epochs": 3})
        assert chief.restore(3) == 0

    assert not directory.exists()
    assert "is from another run (differs in ['seed'])" in caplog.text


def test_a_checkpoint_with_more_epochs_than_the_run_starts_over(tmp_path: Path) -> None:
    directory = tmp_path / "checkpoints"
    _saved(directory, {"run": 1}, epochs=2)

    checkpoints = EpochCheckpoints(_model(seed=2), directory, CHIEF, {"run": 1})

    assert checkpoints.restore(1) == 0
    assert not directory.exists()


def test_a_checkpoint_without_its_state_file_starts_over(tmp_path: Path) -> None:
    directory = tmp_path / "checkpoints"
    _saved(directory, {"run": 1}, epochs=1)
    (directory / CHECKPOINT_STATE).unlink()

    assert EpochCheckpoints(_model(seed=2), directory, CHIEF, {"run": 1}).restore(3) == 0
    assert not directory.exists()


def test_other_workers_save_nothing_in_the_shared_folder(tmp_path: Path) -> None:
    directory = tmp_path / "checkpoints"
    checkpoints = EpochCheckpoints(_model(seed=1), directory, OTHER, {"run": 1})

    checkpoints.save(1, {"loss": 0.5})
    checkpoints.delete()

    assert not directory.exists()
    assert checkpoints.history == {"loss": [0.5]}


def test_delete_removes_the_chiefs_checkpoints(tmp_path: Path) -> None:
    directory = tmp_path / "checkpoints"
    model = _model(seed=1)
    checkpoints = EpochCheckpoints(model, directory, CHIEF, {"run": 1})
    checkpoints.save(1, None)
    assert (directory / CHECKPOINT_STATE).is_file()

    checkpoints.delete()

    assert not directory.exists()


def test_check_same_start_passes_for_a_single_worker() -> None:
    tf = pytest.importorskip("tensorflow")

    check_same_start(tf.distribute.get_strategy(), 2)


def test_run_identity_of_a_view_lists_its_batches_files(tmp_path: Path) -> None:
    from aimass.data.lake import write_view

    day = tmp_path / "ds=2024-01-01"
    batch = _partition(day / "batch=a")
    view = write_view(tmp_path / "clean.view.json", day, [batch])

    identity = run_identity({}, view, KNOBS)

    assert [f[:2] for f in identity["data_files"]] == [
        [str(batch / "part-0.parquet"), 3],
        [str(batch / "split=train" / "part-1.parquet"), 5],
    ]
