"""Benchmark of batch scoring: the Spark job against one in-memory SavedModel call, per core.

Run with ``make bench-batch`` (or ``.venv/bin/python bench/bench_batch.py --rows 1m``).

It generates (or reuses) a synthetic raw CSV of the taxi spec (``bench/datagen.py``), cleans
it once with the clean job into a partition, and builds and exports a model of the spec's
shape (not trained: scoring cost does not depend on the weights). Then, taking turns:

- **in_memory** (the baseline): the whole partition already in memory as the model's input
  arrays, fed to the SavedModel's signature in one process (``load_predict_fn``, 8,192 rows
  a call) with TensorFlow held to one thread: rows per second on one core;
- **spark**: ``jobs.score.main.run`` on a warm ``local[*]`` session, reading the partition,
  scoring through ``mapInArrow`` and writing predictions and rejected rows: rows per second
  divided by the cores Spark used.

The ratio ``spark_per_core_over_in_memory`` is the share of a core's bare model throughput
the distributed job keeps with its reading, typing, Arrow transfer and writing; target
>= 0.8. Every run's time is reported, not only the median.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import _results  # noqa: E402
import datagen  # noqa: E402
from bench_clean import SAMPLE, parse_size, size_label  # noqa: E402

from aimass.data.spec import load_spec  # noqa: E402

BENCH_DIR = ROOT / "var" / "bench" / "batch"
DS = "2024-01-01"
TARGET = 0.8


def _partition(spark: Any, spec_name: str, raw: Path, out: Path) -> Path:
    """The clean partition of ``raw`` (the real clean job), made once per input."""
    from jobs.clean.main import parse_args, run

    day = out / "clean" / f"ds={DS}"
    marker = out / "clean.source"
    if day.is_dir() and marker.exists() and marker.read_text() == str(raw):
        return day
    run(
        spark,
        parse_args(
            [
                *("--spec", spec_name, "--input", str(raw), "--ds", DS, "--out", str(day)),
                *("--quarantine", str(out / "quarantine" / f"ds={DS}")),
                *("--summary", str(out / "clean_summary.json")),
            ]
        ),
    )
    marker.write_text(str(raw))
    return day


def _model(spec: Any, day: Path, out: Path, hidden: list[int] | None) -> Path:
    from models.tabular.export import export_saved_model
    from models.tabular.inputs import load_arrays
    from models.tabular.model import build_model

    features, _ = load_arrays(day, spec, "train")
    sample = {k: v[:50_000] for k, v in features.items()}
    model = build_model(spec, adapt_data=sample, hidden_units=hidden)
    name = "model" if not hidden else "model_" + "x".join(map(str, hidden))
    return export_saved_model(model, spec, out / name)


def _in_memory(model: Path, features: dict[str, Any]) -> float:
    """Seconds for the whole partition through the SavedModel in this process."""
    from models.tabular.export import load_predict_fn

    predict = load_predict_fn(model)
    predict({k: v[:8192] for k, v in features.items()})  # the first call traces
    start = time.perf_counter()
    predict(features)
    return time.perf_counter() - start


def _spark(spark: Any, spec_name: str, day: Path, model: Path, out: Path) -> dict[str, Any]:
    from jobs.score.main import parse_args, run

    argv = [
        *("--spec", spec_name, "--input", str(day), "--model", str(model)),
        *("--model-name", spec_name, "--model-version", "1", "--ds", DS),
        *("--out", str(out / "predictions" / f"ds={DS}")),
        *("--summary", str(out / "scoring_summary.json")),
    ]
    start = time.perf_counter()
    summary = run(spark, parse_args(argv))
    return {"seconds": time.perf_counter() - start, "summary": summary}


def parse_cli(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", default="1m", help="rows to score (e.g. 200k, 1m)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs of each, in turns")
    parser.add_argument("--spec", default="chicago_taxi")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--hidden",
        default="",
        help="hidden layer sizes, e.g. 512,256 (default: the spec's); a costlier model shows "
        "how the ratio moves with the model's share of the work",
    )
    parser.add_argument("--name", default="batch", help="results file bench/results/<name>.json")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_cli(argv)
    # One TensorFlow thread in this process: the baseline is one core's throughput.
    os.environ["TF_NUM_INTRAOP_THREADS"] = "1"
    os.environ["TF_NUM_INTEROP_THREADS"] = "1"
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)

    from aimass.platform.spark import get_session
    from models.tabular.inputs import load_arrays

    spec = load_spec(args.spec)
    n = parse_size(args.rows)
    gen = datagen.generate(spec, SAMPLE, n, args.seed, BENCH_DIR / "raw")
    out = BENCH_DIR / f"{spec.name}_{size_label(n)}"
    spark = get_session(app_name="aimass-bench-batch", master="local[*]")
    cores = spark.sparkContext.defaultParallelism
    day = _partition(spark, spec.name, gen.path, out)
    hidden = [int(x) for x in args.hidden.split(",") if x.strip()] or None
    model = _model(spec, day, out, hidden)
    features, _ = load_arrays(day, spec, None)
    rows = len(next(iter(features.values())))
    print(f"{rows:,} clean rows of {n:,} generated; Spark on {cores} cores")

    _spark(spark, spec.name, day, model, out)  # warm-up: JIT, Python workers, model loads
    memory_runs: list[float] = []
    spark_runs: list[float] = []
    scored = 0
    for i in range(args.repeats):
        memory_runs.append(_in_memory(model, features))
        run = _spark(spark, spec.name, day, model, out)
        spark_runs.append(run["seconds"])
        scored = run["summary"]["rows_scored"]
        print(
            f"run {i + 1}: in-memory {memory_runs[-1]:.2f} s, spark {spark_runs[-1]:.2f} s "
            f"({scored:,} scored, {run['summary']['rows_rejected']:,} rejected)"
        )
    spark.stop()
    memory_rate = rows / statistics.median(memory_runs)
    spark_rate = rows / statistics.median(spark_runs)
    ratio = spark_rate / cores / memory_rate
    label = size_label(n)
    print(
        f"in-memory: {memory_rate:,.0f} rows/s on 1 core; spark: {spark_rate:,.0f} rows/s on "
        f"{cores} cores = {spark_rate / cores:,.0f} per core; ratio {ratio:.2f} "
        f"(target >= {TARGET})"
    )
    _results.write(
        args.name,
        ratios={f"spark_per_core_over_in_memory_{label}": round(ratio, 3)},
        figures={
            "rows": rows,
            "rows_scored": scored,
            "cores": cores,
            "in_memory_seconds": [round(s, 3) for s in memory_runs],
            "spark_seconds": [round(s, 3) for s in spark_runs],
            "in_memory_rows_per_second": round(memory_rate, 1),
            "spark_rows_per_second": round(spark_rate, 1),
            "spark_rows_per_second_per_core": round(spark_rate / cores, 1),
        },
        params={
            "spec": spec.name,
            "rows": n,
            "repeats": args.repeats,
            "seed": args.seed,
            "targets": {f"spark_per_core_over_in_memory_{label}": f">= {TARGET}"},
            "tf_threads_per_worker": 1,
            "hidden_units": hidden or list(spec.training.hidden_units),
        },
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
