"""Training entry point for one worker: ``python -m models.tabular.train --spec ... --data ...``.

Started once per worker by ``aimass.training.launcher.train``, each process with its own
``TF_CONFIG``. Every worker builds the same model inside
``MultiWorkerMirroredStrategy.scope()`` and trains on its share of each global
batch; only the chief writes ``<run-dir>/export/`` and ``<run-dir>/metrics.json``.
Other workers take part in the save (it runs collectives) but write to a
temporary folder that is deleted afterwards.

Fault tolerance: at the end of every epoch the chief checkpoints the model and
optimizer into ``<run-dir>/checkpoints/`` (the other workers save into a fresh
temporary folder each time and delete it). A worker started on a run dir that
holds a checkpoint of the same run (same spec, data files, epochs, batch sizes,
learning rate, seed and worker count) restores it and resumes after the last
finished epoch, with the shuffle order an uninterrupted run would have used; a
checkpoint of another run is deleted and training starts at epoch 0. The chief
deletes the checkpoints once the export and ``metrics.json`` are written, so a
later run in the same dir trains from scratch. ``metrics.json``'s history covers
every epoch, the restored ones included; ``params.resumed_from_epoch`` says where
this attempt started.

Needs ``TF_USE_LEGACY_KERAS=1`` (tf-keras): Keras 3 ``fit`` fails under
``MultiWorkerMirroredStrategy`` with TF 2.21.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aimass.data.spec import load_spec
from aimass.platform.errors import AimassError, ConfigError
from models.tabular.inputs import count_rows, load_arrays

logger = logging.getLogger(__name__)

EXPORT_DIR = "export"
METRICS_FILE = "metrics.json"
CHECKPOINT_DIR = "checkpoints"
# Written by the chief next to its checkpoints: which run they belong to and the history so far.
CHECKPOINT_STATE = "state.json"
# For tests only: "<worker index>:<epochs>" makes that worker SIGKILL itself once the chief's
# checkpoint of <epochs> finished epochs exists, to simulate a worker lost mid-training.
TEST_CRASH_ENV = "AIMASS_TEST_CRASH_AFTER_EPOCH"
# Set by aimass.training.launcher to the launcher's pid (see _exit_with_parent).
PARENT_PID_ENV = "AIMASS_TRAIN_PARENT_PID"


@dataclass(frozen=True)
class ClusterRole:
    """This process's place in the cluster described by ``TF_CONFIG``."""

    workers: int
    task_type: str
    index: int
    is_chief: bool

    @property
    def label(self) -> str:
        return f"{self.task_type} {self.index}"


def cluster_role(environ: dict[str, str] | None = None) -> ClusterRole:
    """Read ``TF_CONFIG``; without one this process is the only worker and the chief.

    The chief is the ``chief`` task if the cluster has one, else worker 0.
    """
    raw = (os.environ if environ is None else environ).get("TF_CONFIG", "")
    if not raw.strip():
        return ClusterRole(workers=1, task_type="worker", index=0, is_chief=True)
    try:
        config = json.loads(raw)
        cluster = config["cluster"]
        task_type = str(config["task"]["type"])
        index = int(config["task"]["index"])
        has_chief = bool(cluster.get("chief"))
        workers = len(cluster.get("worker", [])) + len(cluster.get("chief", []))
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ConfigError(
            f"TF_CONFIG={raw!r} is not valid ({exc}); it must look like "
            '{"cluster": {"worker": ["host:port", ...]}, "task": {"type": "worker", "index": 0}}'
        ) from exc
    is_chief = task_type == "chief" or (task_type == "worker" and index == 0 and not has_chief)
    return ClusterRole(workers=workers, task_type=task_type, index=index, is_chief=is_chief)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m models.tabular.train", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--spec", required=True, help="dataset spec name or YAML path")
    parser.add_argument("--data", required=True, type=Path, help="clean partition folder (Parquet)")
    parser.add_argument(
        "--run-dir",
        required=True,
        type=Path,
        help="where the chief writes export/ and metrics.json",
    )
    parser.add_argument(
        "--epochs", type=int, default=None, help="default: the spec's training.epochs"
    )
    parser.add_argument(
        "--batch-size", type=int, default=None, help="per-worker batch (default: spec)"
    )
    parser.add_argument(
        "--learning-rate",
        type=float,
        default=None,
        help="default: the spec's training.learning_rate",
    )
    parser.add_argument(
        "--seed", type=int, default=42, help="seed for weights and shuffling (same on every worker)"
    )
    parser.add_argument(
        "--mixed-precision",
        action="store_true",
        help="float16 compute with float32 weights where a GPU is visible (ignored on CPU)",
    )
    return parser.parse_args(argv)


def _configure_logging(role: ClusterRole) -> None:
    logging.basicConfig(
        stream=sys.stderr,
        level=logging.INFO,
        format=f"%(asctime)s {role.task_type}-{role.index} %(levelname)s %(name)s: %(message)s",
        force=True,
    )


def _history(history: dict[str, list[Any]]) -> dict[str, list[float]]:
    return {name: [float(v) for v in values] for name, values in history.items()}


def _write_json(path: Path, payload: dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def run_identity(spec: dict[str, Any], data: Path, knobs: dict[str, Any]) -> dict[str, Any]:
    """What a checkpoint must share with this run to be resumed: spec, data files and knobs.

    Data files are listed with size and modification time, so a partition that a
    rerun of the clean stage rewrote is not trained on from a checkpoint of the old one.
    """
    files = []
    for path in sorted(data.rglob("*")):
        if path.is_file():
            stat = path.stat()
            files.append([path.relative_to(data).as_posix(), stat.st_size, stat.st_mtime_ns])
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

    def __init__(self, model: Any, directory: Path, role: ClusterRole, identity: dict[str, Any]):
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
            _write_json(
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


def _crash_for_test(role: ClusterRole, epochs_done: int, directory: Path) -> None:
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


def _check_same_start(strategy: Any, initial_epoch: int) -> None:
    """Fail now, not hang in a collective, if the workers would start at different epochs."""
    import tensorflow as tf

    local = strategy.run(lambda: tf.constant([initial_epoch], dtype=tf.int64))
    starts = [int(v) for v in strategy.gather(local, axis=0).numpy()]
    if len(set(starts)) > 1:
        raise ConfigError(
            f"the workers would start at epochs {starts} (worker order); they must all see the "
            f"same {CHECKPOINT_DIR}/ folder: put the run dir on storage every worker shares"
        )


def precision_policy(mixed_precision: bool, *, gpus: int) -> str:
    """The Keras dtype policy: ``mixed_float16`` when asked for and a GPU is visible.

    On CPU, float16 matrix products are emulated and slower than float32, so the request
    is logged and training stays in float32: the same run works with or without a GPU.
    """
    if not mixed_precision:
        return "float32"
    if gpus:
        logger.info("mixed precision: float16 compute, float32 weights (policy mixed_float16)")
        return "mixed_float16"
    logger.warning("mixed precision was asked for but no GPU is visible; training in float32")
    return "float32"


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Train on the train split, evaluate on holdout, export (chief only); return the metrics payload."""
    role = cluster_role()
    _configure_logging(role)

    # Spec and data are checked with pyarrow before TensorFlow is even imported
    # (~15 s), so a bad spec or partition fails in a second or two.
    if os.environ.get("TF_USE_LEGACY_KERAS") != "1":
        raise ConfigError(
            "TF_USE_LEGACY_KERAS is not '1'; set it: Keras 3 fit fails under MultiWorkerMirroredStrategy"
        )
    spec = load_spec(args.spec)
    epochs = args.epochs if args.epochs is not None else spec.training.epochs
    batch_size = args.batch_size if args.batch_size is not None else spec.training.batch_size
    learning_rate = (
        args.learning_rate if args.learning_rate is not None else spec.training.learning_rate
    )
    if epochs < 1 or batch_size < 1 or not 0 < learning_rate < 1:
        raise ConfigError(
            f"epochs={epochs}, batch_size={batch_size}, learning_rate={learning_rate}: "
            "use epochs >= 1, batch_size >= 1 and 0 < learning_rate < 1"
        )
    global_batch = batch_size * role.workers
    train_x, train_y = load_arrays(args.data, spec, "train")
    train_rows = len(next(iter(train_x.values())))
    if train_rows == 0:
        raise ConfigError(
            f"clean partition {args.data} has no 'train' rows; check the clean stage's split"
        )
    holdout_rows = count_rows(args.data, spec, "holdout")
    logger.info(
        "train rows %d, holdout rows %d, global batch %d", train_rows, holdout_rows, global_batch
    )

    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    for gpu in gpus:
        # Several workers may share one GPU; don't let the first take all its memory.
        tf.config.experimental.set_memory_growth(gpu, True)
    # The strategy must exist before other TensorFlow ops run in this process.
    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    logger.info(
        "%s of %d workers (chief=%s); visible devices: %s; training on %s; replicas in sync: %d",
        role.label,
        role.workers,
        role.is_chief,
        [d.name for d in tf.config.list_physical_devices()],
        f"{len(gpus)} GPU(s)" if gpus else "CPU (no GPU visible)",
        strategy.num_replicas_in_sync,
    )

    import tf_keras

    policy = precision_policy(args.mixed_precision, gpus=len(gpus))
    tf_keras.mixed_precision.set_global_policy(policy)

    from models.tabular.export import export_saved_model
    from models.tabular.inputs import make_dataset
    from models.tabular.model import build_model

    run_dir = Path(args.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    identity = run_identity(
        spec.to_dict(),
        Path(args.data),
        {
            "epochs": epochs,
            "batch_size": batch_size,
            "global_batch_size": global_batch,
            "learning_rate": learning_rate,
            "seed": args.seed,
            "workers": role.workers,
            "precision_policy": policy,
        },
    )
    tf_keras.utils.set_random_seed(args.seed)
    with strategy.scope():
        model = build_model(
            spec,
            adapt_data=train_x,
            adapt_labels=train_y,
            hidden_units=spec.training.hidden_units,
            learning_rate=learning_rate,
            dropout=spec.training.dropout,
        )
        # The optimizer's slots must exist for a checkpoint to restore them.
        model.optimizer.build(model.trainable_variables)
        checkpoints = EpochCheckpoints(model, run_dir / CHECKPOINT_DIR, role, identity)
        initial_epoch = checkpoints.restore(epochs)
    del train_x, train_y
    _check_same_start(strategy, initial_epoch)

    # Epoch k is shuffled the same way whether or not the run was resumed before it. The
    # stream repeats and fit is told the steps per epoch (the generator yields exactly
    # ceil(rows / batch) batches a pass): run until the data ends instead, tf-keras counts
    # one more optimizer step per fit call than it applies, so a resumed run's Adam step
    # count (its bias correction) would be one ahead of an uninterrupted run's.
    train_ds = make_dataset(
        args.data,
        spec,
        split="train",
        batch_size=global_batch,
        shuffle=True,
        seed=args.seed,
        first_epoch=initial_epoch,
    ).repeat()
    steps_per_epoch = -(-train_rows // global_batch)
    if initial_epoch < epochs:
        save_each_epoch = tf_keras.callbacks.LambdaCallback(
            on_epoch_end=lambda epoch, logs: checkpoints.save(epoch + 1, logs)
        )
        model.fit(
            train_ds,
            epochs=epochs,
            initial_epoch=initial_epoch,
            steps_per_epoch=steps_per_epoch,
            verbose=2,
            callbacks=[save_each_epoch],
        )
    else:
        # The last attempt finished training but not the export: export what it trained.
        logger.info("all %d epochs were done before; exporting the restored model", epochs)

    holdout: dict[str, float] = {}
    if holdout_rows:
        holdout_ds = make_dataset(args.data, spec, split="holdout", batch_size=global_batch)
        holdout = {
            k: float(v) for k, v in model.evaluate(holdout_ds, verbose=0, return_dict=True).items()
        }
        logger.info("holdout: %s", holdout)
    else:
        logger.warning(
            "no holdout rows in %s; metrics.json will have an empty 'holdout'", args.data
        )

    payload = {
        "history": _history(checkpoints.history),
        "holdout": holdout,
        "params": {
            "spec": spec.name,
            "task": spec.task,
            "data": str(args.data),
            "epochs": epochs,
            "batch_size": batch_size,
            "global_batch_size": global_batch,
            "learning_rate": learning_rate,
            "hidden_units": list(spec.training.hidden_units),
            "max_vocab": spec.training.max_vocab,
            "dropout": spec.training.dropout,
            "precision_policy": policy,
            "devices": [d.name for d in gpus] or ["CPU"],
            "workers": role.workers,
            "seed": args.seed,
            "train_rows": train_rows,
            "holdout_rows": holdout_rows,
            "resumed_from_epoch": initial_epoch,
        },
    }
    if role.is_chief:
        export_saved_model(model, spec, run_dir / EXPORT_DIR)
        _write_json(run_dir / METRICS_FILE, payload)
        logger.info("wrote %s and %s", run_dir / EXPORT_DIR, run_dir / METRICS_FILE)
        # Only now: a crash before this line resumes (and re-exports) rather than retrains.
        checkpoints.delete()
    else:
        # Saving runs collectives, so every worker saves; only the chief's copy is kept.
        scratch = Path(tempfile.mkdtemp(prefix=f"aimass-{role.task_type}-{role.index}-"))
        try:
            export_saved_model(model, spec, scratch / EXPORT_DIR)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
    return payload


def _exit_with_parent(environ: dict[str, str] | None = None) -> None:
    """Exit when the launcher that started us is gone, so a killed launcher leaves no orphan worker."""
    raw = (os.environ if environ is None else environ).get(PARENT_PID_ENV, "")
    if not raw.isdigit():
        return
    parent = int(raw)

    def watch() -> None:
        while True:
            time.sleep(1.0)
            if os.getppid() != parent:
                logger.error("launcher (pid %d) is gone; exiting", parent)
                os._exit(3)

    threading.Thread(target=watch, name="parent-watchdog", daemon=True).start()


def main(argv: Sequence[str] | None = None) -> int:
    """Run one worker; exit 0 on success, 2 on a configuration/data error, 1 on anything else."""
    args = parse_args(argv)
    _exit_with_parent()
    try:
        run(args)
    except AimassError as exc:
        logger.error("training failed: %s", exc)
        return 2
    except Exception:
        logger.exception("training failed")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
