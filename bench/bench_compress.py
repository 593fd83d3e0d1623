"""Benchmark of the compression stage: each variant's size and latency over its candidate's.

Run with ``make bench-compress`` (a few minutes on 2 cores), or
``.venv/bin/python bench/bench_compress.py --datasets chicago_taxi --requests 20`` for a
quick look.

For each shipped spec (``--datasets``) the candidate is the project's tabular model trained
in this process on the spec's sample, with the spec's training values (one worker), on the
clean partition ``tests/testkit.py`` computes without Spark (a hash split), or, for a spec it
cannot clean (seattle_weather's dates), the Spark clean job's (the spec's own split).
Then the stage's own code runs, MLflow aside: ``aimass.training.compression.build_variants``
builds the variants the spec's ``compression`` section lists (also when it is not enabled),
``aimass.evaluation.compression.measure`` measures candidate and variants in the same run
(bytes on disk, gzip of a tar of the folder, median gRPC Predict latency at batch 1 and 64 in
one sandbox model server, holdout metrics) and ``choose`` applies the spec's bars.

Ratios, per dataset and variant (``<dataset>_<variant>_<what>``), each over the candidate
measured in the same run: ``gzip`` and ``disk`` (size), ``b1`` and ``b64`` (latency). The
metric changes, the verdicts and the variant each spec would deploy are in ``figures``.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT / "tests"))
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")  # the project's Keras (models/tabular/model.py)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import _results  # noqa: E402

log = logging.getLogger("bench_compress")

BENCH_DIR = ROOT / "var" / "bench" / "compress"
DATASETS = ("chicago_taxi", "palmer_penguins", "penguins_body_mass", "seattle_weather")
DS = "2024-01-01"
SHORT = {"gzip_bytes": "gzip", "bytes": "disk", "batch1_ms": "b1", "batch64_ms": "b64"}


def parse_cli(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    p.add_argument("--datasets", default=",".join(DATASETS), help="comma-separated spec names")
    p.add_argument("--requests", type=int, default=60, help="timed requests per batch size")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--name", default="compress", help="results name (bench/results/<name>.json)")
    return p.parse_args(argv)


def sample_csv(spec: Any) -> Path:
    from aimass.data.sample_data import raw_dir

    path = Path(spec.resolved_source_path(ROOT / "var"))
    if not path.exists():
        path = raw_dir(ROOT / "var", spec.name) / path.name
    if not path.exists():
        raise SystemExit(f"sample data missing at {path}; run `make setup` first")
    return path


def spark_clean(spec: Any, partition: Path) -> None:
    """The clean partition written by the Spark clean job (``jobs/clean/main.py``) itself."""
    from aimass.platform.spark import get_session
    from jobs.clean.main import parse_args, run

    spark = get_session(app_name="bench-compress", master="local[2]")
    try:
        args = [
            *("--spec", spec.name, "--input", str(sample_csv(spec)), "--ds", DS),
            *("--out", str(partition), "--quarantine", str(partition.parent / "quarantine")),
            *("--summary", str(partition.parent / "clean_summary.json")),
        ]
        run(spark, parse_args(args))
    finally:
        spark.stop()


def train_candidate(spec: Any, seed: int) -> tuple[Path, Path, float]:
    """The clean partition and a candidate trained on it with the spec's values; seconds."""
    import tf_keras
    from testkit import write_partition

    from models.tabular.export import export_saved_model
    from models.tabular.inputs import load_arrays, make_dataset
    from models.tabular.model import build_model

    base = BENCH_DIR / spec.name
    partition = base / "clean" / f"ds={DS}"
    if not (partition / "_SUCCESS").exists():
        try:
            write_partition(sample_csv(spec), partition, spec, files=1)
        except Exception as exc:  # testkit's DuckDB cleaning lacks some functions (dates)
            log.warning("%s: cleaning with the Spark job instead (%s)", spec.name, exc)
            spark_clean(spec, partition)
    started = time.monotonic()
    tf_keras.utils.set_random_seed(seed)
    x, y = load_arrays(partition, spec, "train")
    model = build_model(spec, adapt_data=x, adapt_labels=y)
    model.fit(
        make_dataset(
            partition, spec, split="train", batch_size=spec.training.batch_size, shuffle=True
        ),
        epochs=spec.training.epochs,
        verbose=0,
    )
    candidate = export_saved_model(model, spec, base / "candidate")
    return partition, candidate, time.monotonic() - started


def bench_dataset(name: str, args: argparse.Namespace) -> tuple[dict[str, float], dict[str, Any]]:
    from aimass.data.spec import load_spec
    from aimass.evaluation.compression import CANDIDATE, choose, measure, summary_lines
    from aimass.training.compression import build_variants
    from models.tabular.inputs import count_rows, load_arrays

    spec = load_spec(name, ROOT / "conf")
    partition, candidate_dir, train_s = train_candidate(spec, args.seed)
    started = time.monotonic()
    built = build_variants(
        spec, saved_model_dir=candidate_dir, partition=partition, out_dir=BENCH_DIR / name / "v"
    )
    build_s = time.monotonic() - started
    features, labels = load_arrays(partition, spec, "holdout")
    started = time.monotonic()
    measured = measure(
        spec,
        [{"name": CANDIDATE, "saved_model_dir": str(candidate_dir)}, *built],
        features,
        labels,
        requests=args.requests,
    )
    measure_s = time.monotonic() - started
    candidate, variants = measured[0], measured[1:]
    choice = choose(spec, candidate, variants)
    for line in summary_lines(choice, candidate):
        print(f"{name}: {line}")
    ratios: dict[str, float] = {}
    for v in choice["variants"]:
        if v.get("error"):
            continue
        for key, short in SHORT.items():
            ratios[f"{name}_{v['name']}_{short}"] = round(v[key] / candidate[key], 3)
    figures = {
        "candidate": {k: candidate[k] for k in (*SHORT, "metrics")},
        "variants": {
            v["name"]: {
                k: v.get(k)
                for k in (
                    *SHORT,
                    "deltas",
                    "clears",
                    "reasons",
                    "error",
                    "sparsity",
                    "hidden_units",
                    "parameters",
                    "build_seconds",
                )
            }
            for v in choice["variants"]
        },
        "chosen": choice["chosen"],
        "why": choice["why"],
        "bars": spec.compression.to_dict(),
        "seconds": {
            "train": round(train_s, 1),
            "build_variants": round(build_s, 1),
            "measure": round(measure_s, 1),
        },
        "rows": {"train": count_rows(partition, spec, "train"), "holdout": len(labels)},
    }
    return ratios, figures


def main(argv: list[str] | None = None) -> int:
    args = parse_cli(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    names = [n.strip() for n in args.datasets.split(",") if n.strip()]
    ratios: dict[str, float] = {}
    figures: dict[str, Any] = {}
    for name in names:
        r, f = bench_dataset(name, args)
        ratios.update(r)
        figures[name] = f
    _results.write(
        args.name,
        ratios=ratios,
        figures=figures,
        params={"datasets": names, "requests": args.requests, "seed": args.seed},
    )
    print("\nchosen: " + ", ".join(f"{n} -> {figures[n]['chosen'] or 'candidate'}" for n in names))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
