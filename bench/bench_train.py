"""Benchmark of the training input pipeline and of multi-worker training.

Run with ``make bench-train`` (1M rows) or ``.venv/bin/python bench/bench_train.py --rows 100k``
for a quick look.

Data: a clean partition of N rows shaped exactly like the clean job's output (typed schema
columns, derived columns, the label, ``split``; several snappy Parquet files and ``_SUCCESS``),
built without Spark by resampling the real sample's rows with small numeric noise (as
``bench/datagen.py`` does for raw CSV), keeping only rows the clean job would keep (rules
pass, label not null, first copy of a ``dedupe_key``). Cached under ``var/bench/train/``.

What is timed, in one process and one run, on the train split:

1. **Lake vs memory, through ``fit``.** The same model (``build_model`` from the spec, adapted
   on the train arrays, same seed), the same batch size (the spec's) and the same number of
   steps, fed (a) from the lake by ``models.tabular.inputs.make_dataset`` (shuffled, as training
   reads it) and (b) from memory: ``tf.data.Dataset.from_tensor_slices`` of the arrays
   ``load_arrays`` returns (permuted once), batched, cached (the cache is filled before timing)
   and prefetched. Each is warmed up (tracing), then ``model.fit(steps_per_epoch=steps)`` is
   timed ``--repeats`` times, the two pipelines alternating; the median gives examples/s.
   Ratio ``lake_over_memory_examples_per_s``.
2. **Input wait.** A custom loop, ``next(iterator)`` then the model's ``train_step`` in a
   ``tf.function`` (eager execution is synchronous on CPU, so the clock around ``next`` is the
   time the step waited for input): ``input_wait_share_lake`` / ``_memory`` is the share of the
   loop's time spent in ``next``. Also the input pipeline alone (batches pulled, no training):
   its examples/s and its time as a share of the ``fit`` time (``input_only_share_*``).
3. **1 vs 2 workers.** ``aimass.training.launcher.train`` with ``workers=1`` and ``workers=2`` on the
   same partition for ``--epochs`` epochs (the spec's per-worker batch, so the global batch
   doubles with two workers): wall time of the call (TensorFlow start-up, reading the arrays,
   holdout evaluation and export included) and the chief's ``fit`` time for the epochs as
   Keras reports it (whole seconds). Ratio ``two_workers_over_one_examples_per_s`` from the
   ``fit`` time (``..._wall_...`` from the wall time). Both workers share this machine's cores,
   so no speed-up is expected here: the figure shows the overhead of the multi-worker path.

Load averages are recorded with each measurement: other jobs share the machine, so only the
ratios (both sides measured in the same run) are meant to be compared across runs.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import re
import shutil
import statistics
import sys
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")  # what the workers use (models/tabular/model.py)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import _results  # noqa: E402
import datagen  # noqa: E402
import numpy as np  # noqa: E402
import pyarrow as pa  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402
from bench_clean import SAMPLE, parse_size, size_label  # noqa: E402

from aimass.data.spec import DatasetSpec, load_spec  # noqa: E402

if TYPE_CHECKING:
    import tensorflow as tf

log = logging.getLogger("bench_train")

PARTITION_VERSION = 1
BENCH_DIR = ROOT / "var" / "bench" / "train"
DS = "2024-01-01"
SPLIT_COLUMN = "split"
NOISE_SHARE = 0.05  # noise std as a share of the column's std (as bench/datagen.py)
TARGET_LAKE_OVER_MEMORY = 0.9
_ARROW = {"double": pa.float64(), "long": pa.int64(), "string": pa.string()}
_DUCKDB = {"double": "DOUBLE", "long": "BIGINT", "string": "VARCHAR"}
# A Keras (tf_keras) verbose=2 end-of-epoch line: "3125/3125 - 41s - 13ms/step - loss: ...".
_KERAS_EPOCH = re.compile(r"^\s*(\d+)/(\d+) - (\d+(?:\.\d+)?)s - ")


# -- pure helpers ------------------------------------------------------------------------------


def clean_arrow_schema(spec: DatasetSpec) -> pa.Schema:
    """The Arrow schema of a clean partition (``jobs.clean.transforms.clean_schema``)."""
    fields = [pa.field(c, _ARROW[t]) for c, t in spec.schema]
    fields += [pa.field(d.name, _ARROW[d.dtype]) for d in spec.derived]
    label = pa.int32() if spec.is_classification else pa.float64()
    fields.append(pa.field(spec.label_name, label))
    fields.append(pa.field(SPLIT_COLUMN, pa.string(), nullable=False))
    return pa.schema(fields)


def keras_epoch_seconds(lines: Iterable[str]) -> list[float]:
    """Seconds per epoch from Keras ``verbose=2`` end-of-epoch lines, in order."""
    out = []
    for line in lines:
        m = _KERAS_EPOCH.match(line)
        if m and m.group(1) == m.group(2):
            out.append(float(m.group(3)))
    return out


def share(part_s: float, total_s: float) -> float:
    """``part_s / total_s`` rounded to 4 places (0 when the total is 0)."""
    return round(part_s / total_s, 4) if total_s > 0 else 0.0


def per_s(examples: int, seconds: float) -> float:
    """Examples per second, rounded to one place."""
    return round(examples / seconds, 1) if seconds > 0 else math.inf


def decimals(values: np.ndarray, limit: int = 6) -> int:
    """Fewest decimals (up to ``limit``) that every finite value is written with."""
    finite = values[np.isfinite(values)]
    for d in range(limit + 1):
        if np.allclose(np.round(finite, d), finite, rtol=0.0, atol=1e-9):
            return d
    return limit


# -- data: a clean partition ------------------------------------------------------------------


@dataclass(frozen=True)
class Partition:
    """A built (or reused) clean partition."""

    path: Path
    rows: int
    files: int
    cached: bool
    seconds: float


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _typed_source(spec: DatasetSpec, sample: Path) -> pa.Table:
    """The sample CSV typed as the clean job types it (trimmed, blank or null value -> null)."""
    import duckdb

    nulls = ", ".join(f"'{v}'" for v in ("", *spec.null_values))
    cols = []
    for c, t in spec.schema:
        v = f"CASE WHEN trim({_q(c)}) IN ({nulls}) THEN NULL ELSE trim({_q(c)}) END"
        if t == "long":
            v = f"TRY_CAST(TRY_CAST({v} AS DOUBLE) AS BIGINT)"
        elif t == "double":
            v = f"TRY_CAST({v} AS DOUBLE)"
        cols.append(f"{v} AS {_q(c)}")
    columns = "{" + ", ".join(f"'{c}': 'VARCHAR'" for c in spec.columns) + "}"
    con = duckdb.connect()
    try:
        return con.sql(
            f"SELECT {', '.join(cols)} FROM read_csv('{sample}', header={str(spec.header).lower()}, "
            f"columns={columns}, auto_detect=false, all_varchar=true, ignore_errors=true)"
        ).to_arrow_table()
    finally:
        con.close()


def _label_sql(spec: DatasetSpec) -> str:
    if spec.label_classes:
        cases = " ".join(
            f"WHEN CAST(({spec.label_expression}) AS VARCHAR) = '{c}' THEN {i}"
            for i, c in enumerate(spec.label_classes)
        )
        return f"CAST(CASE {cases} END AS INTEGER)"
    return f"CAST(({spec.label_expression}) AS {'INTEGER' if spec.is_classification else 'DOUBLE'})"


def _clean_sql(spec: DatasetSpec, table: str) -> str:
    """Derived columns, label, split, rules, dedupe over ``table`` (with a ``__pos`` column)."""
    inner = f"SELECT * FROM {table}"
    for d in spec.derived:  # one level per derived column: later ones may use earlier ones
        inner = (
            f"SELECT *, CAST(({d.expression}) AS {_DUCKDB[d.dtype]}) AS {_q(d.name)} FROM ({inner})"
        )
    keep = [f"coalesce(({r.expression}), true)" for r in spec.rules]
    hashed = ", ".join(_q(c) for c in spec.columns)
    labelled = (
        f"SELECT *, {_label_sql(spec)} AS {_q(spec.label_name)}, "
        f"CASE WHEN hash({hashed}) % 100 < {spec.holdout_percent} THEN 'holdout' ELSE 'train' END "
        f"AS {SPLIT_COLUMN} FROM ({inner}) WHERE {' AND '.join(keep) or 'true'}"
    )
    out = ", ".join(_q(f.name) for f in clean_arrow_schema(spec))
    dedupe = ""
    if spec.dedupe_key:
        key = ", ".join(_q(c) for c in spec.dedupe_key)
        dedupe = f" QUALIFY row_number() OVER (PARTITION BY {key} ORDER BY __pos) = 1"
    return (
        f"SELECT {out} FROM ({labelled}) WHERE {_q(spec.label_name)} IS NOT NULL{dedupe} "
        "ORDER BY __pos"
    )


def _resample(
    spec: DatasetSpec, source: pa.Table, n: int, start: int, rng: np.random.Generator
) -> pa.Table:
    """``n`` rows drawn from ``source`` with noise on ``datagen.jitter_columns``; ``__pos`` from ``start``."""
    idx = rng.integers(0, source.num_rows, size=n)
    table = source.take(pa.array(idx))
    for c in datagen.jitter_columns(spec):
        x = source.column(c).to_numpy(zero_copy_only=False).astype(np.float64)
        finite = x[np.isfinite(x)]
        scale = NOISE_SHARE * float(finite.std()) if finite.size else 0.0
        base = x[idx]
        noisy = base + rng.normal(0.0, scale, size=n) if scale > 0 else base.copy()
        noisy = np.where(base == 0, 0.0, noisy)  # zeros stay zero (e.g. no tip)
        noisy = np.where(base > 0, np.maximum(noisy, 0.0), noisy)  # signs are kept
        noisy = np.round(noisy, decimals(finite))
        pos = table.schema.get_field_index(c)
        table = table.set_column(pos, c, pa.array(noisy, mask=np.isnan(base)))
    return table.append_column("__pos", pa.array(np.arange(start, start + n, dtype=np.int64)))


def partition_path(out_dir: Path, spec: DatasetSpec, n: int, seed: int, files: int) -> Path:
    name = f"{spec.name}_n{n}_s{seed}_f{files}_v{PARTITION_VERSION}"
    return Path(out_dir) / name / "clean" / spec.name / f"ds={DS}"


def build_partition(
    spec: DatasetSpec, sample: Path, n: int, seed: int, out_dir: Path, *, files: int = 4
) -> Partition:
    """Write (or reuse) a clean partition of exactly ``n`` rows; see the module doc."""
    import duckdb

    started = time.perf_counter()
    path = partition_path(out_dir, spec, n, seed, files)
    meta_path = path / "_bench.json"
    if (path / "_SUCCESS").exists() and meta_path.exists():
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        if meta.get("rows") == n and meta.get("files") == files:
            return Partition(path, n, files, True, time.perf_counter() - started)
    source = _typed_source(spec, Path(sample))
    con = duckdb.connect()
    kept: pa.Table | None = None
    drawn, chunk = 0, 0
    while kept is None or kept.num_rows < n:
        have = 0 if kept is None else kept.num_rows
        want = int((n - have) * 1.15) + 1_000
        fresh = _resample(spec, source, want, drawn, np.random.default_rng([seed, chunk]))
        drawn, chunk = drawn + want, chunk + 1
        pool = fresh if kept is None else pa.concat_tables([kept, fresh], promote_options="default")
        con.register("pool", pool)
        kept = con.sql(_clean_sql(spec, "pool")).to_arrow_table()
        kept = kept.append_column("__pos", pa.array(np.arange(kept.num_rows, dtype=np.int64)))
        con.unregister("pool")
        if chunk > 20:
            raise SystemExit(f"could not draw {n} clean rows from {sample} (kept {have})")
    con.close()
    table = kept.drop_columns(["__pos"]).slice(0, n).cast(clean_arrow_schema(spec))

    tmp = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex[:8]}")
    tmp.mkdir(parents=True)
    try:
        step = -(-n // files)
        for i in range(files):
            pq.write_table(
                table.slice(i * step, step),
                tmp / f"part-{i:05d}-bench-c000.snappy.parquet",
                compression="snappy",
            )
        (tmp / "_SUCCESS").write_text("", encoding="utf-8")
        meta = {"rows": n, "files": files, "seed": seed, "version": PARTITION_VERSION}
        (tmp / "_bench.json").write_text(json.dumps(meta), encoding="utf-8")
        shutil.rmtree(path, ignore_errors=True)
        os.replace(tmp, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return Partition(path, n, files, False, time.perf_counter() - started)


# -- lake vs memory ---------------------------------------------------------------------------


def memory_dataset(
    x: dict[str, np.ndarray], y: np.ndarray, batch_size: int, seed: int
) -> tf.data.Dataset:
    """The in-memory baseline: the arrays permuted once, sliced, batched, cached, prefetched."""
    import tensorflow as tf

    order = np.random.default_rng(seed).permutation(len(y))
    features = {k: v[order] for k, v in x.items()}
    labels = y[order].astype(np.float32)  # as make_dataset yields them
    ds = tf.data.Dataset.from_tensor_slices((features, labels)).batch(batch_size).cache()
    return ds.repeat().prefetch(tf.data.AUTOTUNE)


def lake_dataset(partition: Path, spec: DatasetSpec, batch_size: int, seed: int) -> tf.data.Dataset:
    """The lake pipeline as training reads it (shuffled), repeated."""
    from models.tabular.inputs import make_dataset

    ds = make_dataset(
        partition, spec, split="train", batch_size=batch_size, shuffle=True, seed=seed
    )
    return ds.repeat()


def new_model(spec: DatasetSpec, x: dict[str, np.ndarray], y: np.ndarray, seed: int) -> Any:
    import tf_keras

    from models.tabular.model import build_model

    tf_keras.utils.set_random_seed(seed)
    return build_model(spec, adapt_data=x, adapt_labels=y)


def time_fit(model: Any, ds: tf.data.Dataset, steps: int) -> float:
    """Seconds for ``model.fit`` over ``steps`` batches (a fresh iterator)."""
    start = time.perf_counter()
    model.fit(ds, steps_per_epoch=steps, epochs=1, verbose=0)
    return time.perf_counter() - start


def time_loop(model: Any, ds: tf.data.Dataset, steps: int, warmup: int) -> tuple[float, float]:
    """(total seconds, seconds in ``next``) of ``steps`` train steps after ``warmup`` ones."""
    import tensorflow as tf

    step = tf.function(lambda x, y: model.train_step((x, y)))
    it = iter(ds)
    for _ in range(warmup):
        x, y = next(it)
        step(x, y)
    wait = 0.0
    start = time.perf_counter()
    for _ in range(steps):
        t0 = time.perf_counter()
        x, y = next(it)
        wait += time.perf_counter() - t0
        step(x, y)
    return time.perf_counter() - start, wait


def time_pull(ds: tf.data.Dataset, steps: int, warmup: int) -> float:
    """Seconds to pull ``steps`` batches from a fresh iterator (after ``warmup`` batches)."""
    it = iter(ds)
    for _ in range(warmup):
        next(it)
    start = time.perf_counter()
    for _ in range(steps):
        next(it)
    return time.perf_counter() - start


def load() -> float:
    return round(os.getloadavg()[0], 2)


def lake_vs_memory(
    spec: DatasetSpec, partition: Path, args: argparse.Namespace
) -> tuple[dict[str, float], dict[str, Any]]:
    from models.tabular.inputs import load_arrays

    batch = spec.training.batch_size
    steps, warmup = args.steps, args.warmup_steps
    t0 = time.perf_counter()
    x, y = load_arrays(partition, spec, "train")
    load_arrays_s = time.perf_counter() - t0
    rows = len(y)

    pipelines: dict[str, tf.data.Dataset] = {
        "memory": memory_dataset(x, y, batch, args.seed),
        "lake": lake_dataset(partition, spec, batch, args.seed),
    }
    t0 = time.perf_counter()
    time_pull(pipelines["memory"], -(-rows // batch), 0)  # fills the cache
    cache_fill_s = time.perf_counter() - t0
    models = {name: new_model(spec, x, y, args.seed) for name in pipelines}
    for name, ds in pipelines.items():  # warm-up: tracing, first iterator
        time_fit(models[name], ds, warmup)

    fit_s: dict[str, list[float]] = {name: [] for name in pipelines}
    fit_load: dict[str, list[float]] = {name: [] for name in pipelines}
    for r in range(args.repeats):
        order = list(pipelines) if r % 2 == 0 else list(reversed(pipelines))
        for name in order:
            fit_s[name].append(round(time_fit(models[name], pipelines[name], steps), 3))
            fit_load[name].append(load())
            print(f"  fit {name:<6} {steps} steps: {fit_s[name][-1]:.2f} s")

    loop: dict[str, tuple[float, float]] = {}
    pull: dict[str, float] = {}
    for name, ds in pipelines.items():
        loop[name] = time_loop(models[name], ds, steps, warmup)
        pull[name] = time_pull(ds, steps, warmup)
        print(f"  loop {name:<6}: {loop[name][0]:.2f} s, in next() {loop[name][1]:.2f} s")
        print(f"  pull {name:<6}: {pull[name]:.2f} s (input only)")

    examples = steps * batch
    fit_med = {name: statistics.median(times) for name, times in fit_s.items()}
    eps = {name: per_s(examples, s) for name, s in fit_med.items()}
    ratios = {
        "lake_over_memory_examples_per_s": round(eps["lake"] / eps["memory"], 3),
        "input_wait_share_lake": share(loop["lake"][1], loop["lake"][0]),
        "input_wait_share_memory": share(loop["memory"][1], loop["memory"][0]),
        "input_only_share_lake": share(pull["lake"], fit_med["lake"]),
        "input_only_share_memory": share(pull["memory"], fit_med["memory"]),
    }
    figures = {
        "train_rows": rows,
        "load_arrays_s": round(load_arrays_s, 3),
        "memory_cache_fill_s": round(cache_fill_s, 3),
        **{
            name: {
                "fit_s": fit_s[name],
                "fit_median_s": round(fit_med[name], 3),
                "fit_examples_per_s": eps[name],
                "load_avg_1m": fit_load[name],
                "loop_s": round(loop[name][0], 3),
                "loop_next_s": round(loop[name][1], 3),
                "loop_examples_per_s": per_s(examples, loop[name][0]),
                "input_only_s": round(pull[name], 3),
                "input_only_examples_per_s": per_s(examples, pull[name]),
            }
            for name in pipelines
        },
    }
    return ratios, figures


# -- 1 vs 2 workers ---------------------------------------------------------------------------


class _Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


def run_training(
    spec: DatasetSpec, partition: Path, workers: int, epochs: int, run_dir: Path, timeout_s: float
) -> dict[str, Any]:
    """``aimass.training.launcher.train`` with ``workers`` workers; wall time and the chief's fit time."""
    from aimass.training.local import train

    shutil.rmtree(run_dir, ignore_errors=True)  # a leftover checkpoint would be resumed
    logger = logging.getLogger("aimass.training")
    handler, level, propagate = _Lines(), logger.level, logger.propagate
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    start = time.perf_counter()
    try:
        result = train(
            spec,
            data=partition,
            run_dir=run_dir,
            workers=workers,
            epochs=epochs,
            timeout_s=timeout_s,
        )
    finally:
        wall = time.perf_counter() - start
        logger.removeHandler(handler)
        logger.setLevel(level)
        logger.propagate = propagate
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "workers.log").write_text("\n".join(handler.lines) + "\n", encoding="utf-8")
    chief = [
        line.removeprefix("[worker 0] ") for line in handler.lines if line.startswith("[worker 0] ")
    ]
    epoch_s = keras_epoch_seconds(chief)
    train_rows = int(result.params["train_rows"])
    examples = train_rows * epochs
    fit_s = sum(epoch_s) if len(epoch_s) == epochs else None
    return {
        "workers": workers,
        "epochs": epochs,
        "train_rows": train_rows,
        "global_batch_size": result.params["global_batch_size"],
        "wall_s": round(wall, 2),
        "wall_examples_per_s": per_s(examples, wall),
        "fit_epoch_s": epoch_s,
        "fit_examples_per_s": per_s(examples, fit_s) if fit_s else None,
        "history": result.history,
        "holdout": result.holdout,
        "load_avg_1m": load(),
        "log": str(run_dir / "workers.log"),
    }


# -- main -------------------------------------------------------------------------------------


def parse_cli(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    p.add_argument("--rows", default="1m", help="rows of the clean partition (1m, 100k, ...)")
    p.add_argument("--files", type=int, default=4, help="Parquet files in the partition")
    p.add_argument("--steps", type=int, default=2000, help="timed steps per pipeline and repeat")
    p.add_argument("--warmup-steps", type=int, default=100, help="untimed steps before timing")
    p.add_argument("--repeats", type=int, default=5, help="timed fits per pipeline (median)")
    p.add_argument("--epochs", type=int, default=1, help="epochs of the 1- and 2-worker runs")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--spec", default="chicago_taxi")
    p.add_argument("--sample", type=Path, default=SAMPLE, help="real sample CSV to resample")
    p.add_argument("--no-workers", action="store_true", help="skip the 1 vs 2 worker runs")
    p.add_argument("--worker-timeout-s", type=float, default=1800.0)
    p.add_argument("--name", default="train", help="results name (bench/results/<name>.json)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    from models.tabular.inputs import CHUNK_ROWS

    args = parse_cli(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    spec = load_spec(args.spec)
    n = parse_size(args.rows)
    label = size_label(n)
    figures: dict[str, Any] = {"load_avg_start": [round(x, 2) for x in os.getloadavg()]}
    started = time.perf_counter()

    part = build_partition(spec, args.sample, n, args.seed, BENCH_DIR, files=args.files)
    figures["partition"] = {
        "path": str(part.path),
        "rows": part.rows,
        "files": part.files,
        "cached": part.cached,
        "seconds": round(part.seconds, 2),
        "bytes": sum(p.stat().st_size for p in part.path.glob("*.parquet")),
    }
    print(
        f"partition {label}: {part.path} ({'cached' if part.cached else f'{part.seconds:.1f} s'})"
    )

    print(
        f"\nlake vs memory: {args.steps} steps of {spec.training.batch_size} rows, {args.repeats} repeats"
    )
    ratios, lvm = lake_vs_memory(spec, part.path, args)
    figures["lake_vs_memory"] = lvm

    workers: dict[int, dict[str, Any]] = {}
    if not args.no_workers:
        print(f"\n1 vs 2 workers: aimass.training.launcher.train, {args.epochs} epoch(s)")
        for w in (1, 2):
            workers[w] = run_training(
                spec,
                part.path,
                w,
                args.epochs,
                BENCH_DIR / "runs" / f"{label}_w{w}",
                args.worker_timeout_s,
            )
            print(
                f"  {w} worker(s): wall {workers[w]['wall_s']:.1f} s, fit {workers[w]['fit_epoch_s']} s"
            )
        one, two = workers[1], workers[2]
        if one["fit_examples_per_s"] and two["fit_examples_per_s"]:
            ratios["two_workers_over_one_examples_per_s"] = round(
                two["fit_examples_per_s"] / one["fit_examples_per_s"], 3
            )
        ratios["two_workers_over_one_wall_examples_per_s"] = round(
            two["wall_examples_per_s"] / one["wall_examples_per_s"], 3
        )
        figures["workers"] = {str(w): r for w, r in workers.items()}
    figures["load_avg_end"] = [round(x, 2) for x in os.getloadavg()]
    figures["total_s"] = round(time.perf_counter() - started, 1)

    batch = spec.training.batch_size
    print(f"\n{'rows':>6}  {'what':<34} {'seconds':>9} {'examples/s':>12}")
    for name in ("memory", "lake"):
        f = lvm[name]
        print(
            f"{label:>6}  {'fit, ' + name:<34} {f['fit_median_s']:9.2f} {f['fit_examples_per_s']:12,.0f}"
        )
    for name in ("memory", "lake"):
        f = lvm[name]
        print(
            f"{label:>6}  {'input only, ' + name:<34} {f['input_only_s']:9.2f} {f['input_only_examples_per_s']:12,.0f}"
        )
    for w, r in workers.items():
        fit = sum(r["fit_epoch_s"]) if r["fit_examples_per_s"] else float("nan")
        print(
            f"{label:>6}  {f'train(), {w} worker(s), fit':<34} {fit:9.0f} {r['fit_examples_per_s'] or 0:12,.0f}"
        )
        print(
            f"{label:>6}  {f'train(), {w} worker(s), wall':<34} {r['wall_s']:9.1f} {r['wall_examples_per_s']:12,.0f}"
        )
    lake_ratio = ratios["lake_over_memory_examples_per_s"]
    verdict = "meets" if lake_ratio >= TARGET_LAKE_OVER_MEMORY else "is below"
    print(f"\nlake / memory = {lake_ratio:.3f}: {verdict} the {TARGET_LAKE_OVER_MEMORY} target")
    if workers:
        print(
            f"both workers share this machine's {os.cpu_count()} cores: no speed-up is expected "
            "here; the 2-worker figure shows the overhead of the multi-worker path"
        )
    print(f"load average start {figures['load_avg_start']}, end {figures['load_avg_end']}")

    params = {
        "rows": n,
        "files": args.files,
        "spec": args.spec,
        "seed": args.seed,
        "batch_size": batch,
        "steps": args.steps,
        "warmup_steps": args.warmup_steps,
        "repeats": args.repeats,
        "worker_epochs": args.epochs,
        "lake_pipeline": (
            "models.tabular.inputs.make_dataset(shuffle=True, shuffle_buffer=10000, "
            f"chunk_rows={CHUNK_ROWS}).repeat()"
        ),
        "memory_pipeline": "from_tensor_slices(load_arrays, permuted once).batch().cache().repeat().prefetch()",
        "worker_note": (
            f"1 and 2 worker processes on one machine of {os.cpu_count()} cores: they share the "
            "cores, so no speed-up is expected; fit time is Keras's whole-second epoch time"
        ),
        "target_lake_over_memory": TARGET_LAKE_OVER_MEMORY,
    }
    _results.write(args.name, ratios=ratios, figures=figures, params=params)
    return 0


if __name__ == "__main__":
    sys.exit(main())
