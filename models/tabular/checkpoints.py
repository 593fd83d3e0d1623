"""Epoch checkpoints of a training run, and their restore when a worker is started again.

At the end of every epoch the chief checkpoints the model and optimizer into
``<run-dir>/checkpoints/`` beside a ``state.json`` that says which run they belong to
(``run_identity``: spec, data files and knobs) and holds the history so far. A worker
started on a run dir with a checkpoint of the same run resumes after its last finished
epoch; a checkpoint of another run is deleted and training starts at epoch 0.
``check_same_start`` makes sure every worker agrees on where to start.

TensorFlow is imported inside the functions that need it, so the identity and the
state file can be handled without it.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import tempfile
import time
from pathlib import Path
from typing import Any, Protocol

from aimass.platform.errors import ConfigError

logger = logging.getLogger(__name__)

# The folder under the run dir; aimass.stages.retrain imports it (from models.tabular.train).
CHECKPOINT_DIR = "checkpoints"
# Written by the chief next to its checkpoints: which run they belong to and the history so far.
CHECKPOINT_STATE = "state.json"
# For tests only: "<worker index>:<epochs>" makes that worker SIGKILL itself once the chief's
# checkpoint of <epochs> finished epochs exists, to simulate a worker lost mid-training.
TEST_CRASH_ENV = "AIMASS_TEST_CRASH_AFTER_EPOCH"


class WorkerRole(Protocol):
    """What the checkpoints need to know of this process's place in the cluster.

    ``models.tabular.train.ClusterRole`` (read from ``TF_CONFIG``) is one; a protocol
    keeps this module free of the ``TF_CONFIG`` handling.
    """

    @property
    def task_type(self) -> str: ...

    @property
    def index(self) -> int: ...

    @property
    def is_chief(self) -> bool: ...

    @property
    def label(self) -> str: ...


def write_json(path: Path, payload: dict[str, Any]) -> None:
    """Write ``payload`` as sorted, indented JSON, renamed into place (no half-written file)."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def run_identity(spec: dict[str, Any], data: Path, knobs: dict[str, Any]) -> dict[str, Any]:
    """What a checkpoint must share with this run to be resumed: spec, data files and knobs.

    Data files are listed with size and modification time, so a partition that a
    rerun of the clean stage rewrote is not trained on from a checkpoint of the old one.
    """
    from aimass.data.lake import partition_files

    files = []
    for path in partition_files(data):  # a folder's files, or those of a view's batches
        stat = path.stat()
        name = path.relative_to(data).as_posix() if path.is_relative_to(data) else str(path)
        files.append([name, stat.st_size, stat.st_mtime_ns])
    identity = {"spec": spec, "data": str(data.resolve()), "data_files": files, **knobs}
    return dict(json.loads(json.dumps(identity, sort_keys=True)))  # as state.json reads back


class EpochCheckpoints:
    """Epoch-level checkpoints of the model and its optimizer, and their restore on start.

    Every worker saves at the end of every epoch (saving reads distributed variables,
    which runs collectives): the chief into ``directory``, the others each into a fresh
    temporary folder of their own that is deleted straight after. tf-keras'
    ``BackupAndRestore`` instead names a non-chief's folder ``<backup>/workertemp_<i>``
    after its task index only and deletes it after every save, so two processes with
    the same index on one run dir (an attempt not yet dead beside its retry) delete
    each other's files mid-save (docs/architecture.md §11). Build the object and call
    ``restore`` inside the strategy's scope, after the optimizer is built, so its
    slots are restored too.
    """

    def __init__(self, model: Any, directory: Path, role: WorkerRole, identity: dict[str, Any]):
        import tensorflow as tf

        self.directory = directory
        self.role = role
        self.identity = identity
        self.history: dict[str, list[float]] = {}
        self._epochs_done = tf.Variable(0, dtype=tf.int64, trainable=False, name="epochs_done")
        self._checkpoint = tf.train.Checkpoint(
            model=model, optimizer=model.optimizer, epochs_done=self._epochs_done
        )
        self._chief_manager: Any = None

    def _read_state(self) -> dict[str, Any] | None:
        try:
            state = json.loads((self.directory / CHECKPOINT_STATE).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return state if isinstance(state, dict) else None

    def _start_over(self, why: str) -> int:
        logger.warning("%s; starting at epoch 0", why)
        if self.role.is_chief:
            shutil.rmtree(self.directory)
        return 0

    def restore(self, epochs: int) -> int:
        """Restore the newest checkpoint of this same run, if any; return its finished epochs."""
        import tensorflow as tf

        if not self.directory.is_dir():
            logger.info("no checkpoint, starting at epoch 0 (there is no %s)", self.directory)
            return 0
        latest = tf.train.latest_checkpoint(str(self.directory))
        state = self._read_state()
        if latest is None or state is None:
            return self._start_over(
                f"{self.directory} holds no complete checkpoint and {CHECKPOINT_STATE}"
            )
        theirs = state.get("run")
        if theirs != self.identity:
            differ = sorted(
                k
                for k in set(self.identity) | set(theirs if isinstance(theirs, dict) else {})
                if not isinstance(theirs, dict) or theirs.get(k) != self.identity.get(k)
            )
            return self._start_over(
                f"the checkpoint in {self.directory} is from another run (differs in {differ})"
            )
        self._checkpoint.restore(latest).assert_existing_objects_matched()
        done = int(self._epochs_done.numpy())
        if not 0 < done <= epochs:
            return self._start_over(f"checkpoint {latest} says {done} of {epochs} epochs are done")
        history = state.get("history", {})
        self.history = {name: [float(v) for v in values[:done]] for name, values in history.items()}
        short = [name for name, values in self.history.items() if len(values) < done]
        if short:
            logger.warning("%s lacks the history of some restored epochs for %s", latest, short)
        logger.info(
            "resuming from epoch %d: checkpoint %s holds %d of %d finished epochs",
            done,
            latest,
            done,
            epochs,
        )
        return done

    def save(self, epochs_done: int, logs: dict[str, Any] | None) -> None:
        """Checkpoint the state after ``epochs_done`` finished epochs (at each epoch's end)."""
        import tensorflow as tf

        for name, value in (logs or {}).items():
            self.history.setdefault(name, []).append(float(value))
        self._epochs_done.assign(epochs_done)
        if self.role.is_chief:
            if self._chief_manager is None:
                self.directory.mkdir(parents=True, exist_ok=True)
                self._chief_manager = tf.train.CheckpointManager(
                    self._checkpoint, str(self.directory), max_to_keep=1
                )
            # The state goes first, so a checkpoint never has more epochs than the history
            # beside it (a crash in between resumes from the previous checkpoint).
            write_json(
                self.directory / CHECKPOINT_STATE,
                {"run": self.identity, "epochs_done": epochs_done, "history": self.history},
            )
            path = self._chief_manager.save(checkpoint_number=epochs_done)
            logger.info("checkpoint after epoch %d: %s", epochs_done, path)
        else:
            scratch = Path(
                tempfile.mkdtemp(prefix=f"aimass-ckpt-{self.role.task_type}-{self.role.index}-")
            )
            try:
                tf.train.CheckpointManager(self._checkpoint, str(scratch), max_to_keep=1).save(
                    checkpoint_number=epochs_done
                )
            finally:
                shutil.rmtree(scratch, ignore_errors=True)
        _crash_for_test(self.role, epochs_done, self.directory)

    def delete(self) -> None:
        """Remove the checkpoints (chief only): the run is exported, nothing is left to resume."""
        if self.role.is_chief and self.directory.exists():
            shutil.rmtree(self.directory)
            logger.info("deleted %s: this run is finished", self.directory)


def _crash_for_test(role: WorkerRole, epochs_done: int, directory: Path) -> None:
    """SIGKILL this worker when ``TEST_CRASH_ENV`` names it and this epoch (tests only)."""
    raw = os.environ.get(TEST_CRASH_ENV, "")
    if not raw:
        return
    index, _, after = raw.partition(":")
    if not (index.isdigit() and after.isdigit()):
        raise ConfigError(f"{TEST_CRASH_ENV}={raw!r}; use '<worker index>:<epochs>', e.g. '1:3'")
    if int(index) != role.index or int(after) != epochs_done:
        return
    import tensorflow as tf

    # Wait for the chief's checkpoint of this epoch, so the crash point is exact.
    deadline = time.monotonic() + 60
    wanted = f"ckpt-{epochs_done}"
    while time.monotonic() < deadline:
        latest = tf.train.latest_checkpoint(str(directory))
        if latest is not None and Path(latest).name == wanted:
            break
        time.sleep(0.1)
    logger.warning("%s=%s: killing %s after epoch %d", TEST_CRASH_ENV, raw, role.label, epochs_done)
    os.kill(os.getpid(), signal.SIGKILL)


def check_same_start(strategy: Any, initial_epoch: int) -> None:
    """Fail now, not hang in a collective, if the workers would start at different epochs."""
    import tensorflow as tf

    local = strategy.run(lambda: tf.constant([initial_epoch], dtype=tf.int64))
    starts = [int(v) for v in strategy.gather(local, axis=0).numpy()]
    if len(set(starts)) > 1:
        raise ConfigError(
            f"the workers would start at epochs {starts} (worker order); they must all see the "
            f"same {CHECKPOINT_DIR}/ folder: put the run dir on storage every worker shares"
        )
