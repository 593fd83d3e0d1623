"""Benchmark of the data path's scaling: each stage at several sizes, and how it grows.

Run with ``make bench-scale`` (1M, 5M and 10M rows) or, for a quick curve,
``.venv/bin/python bench/bench_scale.py --sizes 100k,300k,1m``.

For each size N it generates (or reuses) the synthetic raw CSV of ``bench/datagen.py`` and
times, in one warm SparkSession and on this machine:

- **clean**: ``jobs.clean.main.run`` (the job as the DAG runs it, into a batch);
- **validate**: ``aimass.data.quality.validate_partition`` (Great Expectations on Spark);
- **train_epoch**: ``aimass.training.local.train`` on the clean batch with one worker for
  ``--epochs`` epochs; the per-epoch time is the chief's Keras epoch time;
- **evaluate**: the holdout read from the lake (``load_arrays``) and scored by the exported
  SavedModel with the task's metrics (``aimass.evaluation.metrics.evaluate``), as the gate
  does; the second of two calls, so the model's one-off load is not counted.

The baseline of each stage is itself at the smallest size: the ratios are
``<stage>_<size>_over_<smallest>`` (linear growth gives the ratio of the row counts) and
``<stage>_s_per_million_rows_<size>``. ``docs/scaling.md`` projects from them.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import _results  # noqa: E402
import datagen  # noqa: E402
from bench_clean import parse_size, size_label  # noqa: E402
from bench_train import keras_epoch_seconds, run_training  # noqa: E402

from aimass.data.spec import load_spec  # noqa: E402

BENCH_DIR = ROOT / "var" / "bench" / "scale"
CLEAN_DATA = ROOT / "var" / "bench" / "clean"
SAMPLE = ROOT / "var" / "data" / "raw" / "chicago_taxi" / "data.csv"
DS = "2024-01-01"
STAGES = ("clean", "validate", "train_epoch", "evaluate")


def timed(fn: Any) -> tuple[float, Any]:
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def clean(spark: Any, spec_name: str, raw: Path, out: Path) -> tuple[float, Path]:
    from jobs.clean.main import parse_args, run

    shutil.rmtree(out, ignore_errors=True)
    batch = out / "clean" / f"ds={DS}" / "batch=bench"
    args = [
        "--spec",
        spec_name,
        "--input",
        str(raw),
        "--ds",
        DS,
        "--out",
        str(batch),
        "--quarantine",
        str(out / "quarantine" / f"ds={DS}" / "batch=bench"),
        "--summary",
        str(out / "clean_summary.json"),
    ]
    seconds, _ = timed(lambda: run(spark, parse_args(args)))
    return seconds, batch


def evaluate(spec: Any, batch: Path, saved_model: Path) -> float:
    from aimass.evaluation.metrics import evaluate as score
    from models.tabular.inputs import load_arrays

    def go() -> dict[str, float]:
        features, labels = load_arrays(batch, spec, "holdout")
        return score(saved_model, features, labels, task=spec.task)

    # The first call at a size also loads the SavedModel's graph; the second is the one timed
    # (a gate pays the load once per run, whatever the size).
    go()
    seconds, _ = timed(go)
    return seconds


def parse_cli(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sizes", default="1m,5m,10m", help="comma-separated row counts")
    p.add_argument("--epochs", type=int, default=1, help="training epochs per size")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--spec", default="chicago_taxi")
    p.add_argument("--sample", type=Path, default=SAMPLE)
    p.add_argument("--name", default="scale", help="results name (bench/results/<name>.json)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_cli(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    sizes = sorted(parse_size(s) for s in args.sizes.split(",") if s.strip())
    spec = load_spec(args.spec)
    from aimass.platform.spark import get_session

    spark = get_session(app_name="aimass-bench-scale")
    figures: dict[str, Any] = {"load_avg_start": [round(x, 2) for x in os.getloadavg()]}
    per_stage: dict[str, dict[int, float]] = {stage: {} for stage in STAGES}
    warmed = False
    for n in sizes:
        label = size_label(n)
        raw = datagen.generate(spec, args.sample, n, args.seed, CLEAN_DATA).path
        out = BENCH_DIR / label
        if not warmed:  # JIT, imports and GX's first context, not timed
            _, batch = clean(spark, args.spec, raw, BENCH_DIR / "warmup")
            from aimass.data.quality import validate_partition

            validate_partition(spec, batch, BENCH_DIR / "warmup" / "gx", spark=spark)
            warmed = True
        clean_s, batch = clean(spark, args.spec, raw, out)
        from aimass.data.quality import validate_partition

        validate_s, _ = timed(
            lambda b=batch, o=out: validate_partition(spec, b, o / "gx", spark=spark)
        )
        trained = run_training(spec, batch, 1, args.epochs, out / "train", timeout_s=4 * 3600)
        chief = Path(trained["log"]).read_text(encoding="utf-8").splitlines()
        epochs = keras_epoch_seconds(
            [x.removeprefix("[worker 0] ") for x in chief if x.startswith("[worker 0] ")]
        )
        epoch_s = sum(epochs) / len(epochs) if epochs else trained["wall_s"] / args.epochs
        evaluate_s = evaluate(spec, batch, out / "train" / "export")
        seconds = {
            "clean": clean_s,
            "validate": validate_s,
            "train_epoch": epoch_s,
            "evaluate": evaluate_s,
        }
        for stage, value in seconds.items():
            per_stage[stage][n] = value
        figures[f"size_{label}"] = {
            "rows": n,
            **{f"{stage}_s": round(v, 2) for stage, v in seconds.items()},
            "train_rows": trained["train_rows"],
            "train_wall_s": trained["wall_s"],
            "load_avg_1m": round(os.getloadavg()[0], 2),
        }
        print(
            f"{label:>6}: " + ", ".join(f"{stage} {v:8.2f} s" for stage, v in seconds.items()),
            flush=True,
        )
    spark.stop()

    smallest = sizes[0]
    ratios: dict[str, float] = {}
    for stage, by_size in per_stage.items():
        for n, value in by_size.items():
            ratios[f"{stage}_s_per_million_rows_{size_label(n)}"] = round(value / n * 1e6, 3)
            if n != smallest:
                name = f"{stage}_{size_label(n)}_over_{size_label(smallest)}"
                ratios[name] = round(value / by_size[smallest], 3)
    figures["load_avg_end"] = [round(x, 2) for x in os.getloadavg()]
    params = {
        "sizes": sizes,
        "epochs": args.epochs,
        "seed": args.seed,
        "spec": args.spec,
        "spark_master": "local[*]",
        "training_workers": 1,
    }
    _results.write(args.name, ratios=ratios, figures=figures, params=params)
    return 0


if __name__ == "__main__":
    sys.exit(main())
