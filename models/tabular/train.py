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
this attempt started. The checkpoint machinery is in ``models.tabular.checkpoints``;
this module reads ``TF_CONFIG``, builds the model in the strategy's scope and runs.

Needs ``TF_USE_LEGACY_KERAS=1`` (tf-keras): Keras 3 ``fit`` fails under
``MultiWorkerMirroredStrategy`` with TF 2.21.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
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
from models.tabular.checkpoints import (
    # Also part of this module's interface: aimass.stages.retrain imports it from here.
    CHECKPOINT_DIR,
    EpochCheckpoints,
    check_same_start,
    run_identity,
    write_json,
)
from models.tabular.inputs import count_rows, load_arrays

logger = logging.getLogger(__name__)

EXPORT_DIR = "export"
METRICS_FILE = "metrics.json"
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
    check_same_start(strategy, initial_epoch)

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
        write_json(run_dir / METRICS_FILE, payload)
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
