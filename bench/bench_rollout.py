"""Benchmark of a rollout and a rollback under steady load: failed requests and p50/p99 by phase.

Run with ``make bench-rollout`` (about two minutes on 2 cores), or
``.venv/bin/python bench/bench_rollout.py --steady-seconds 3`` for a quick look.

Model: the taxi model ``bench/bench_serve.py`` builds and caches (the project's tabular
model, one epoch on the sample), served by ``python -m aimass.serving.server`` as its own
process, reading the platform's ``models.config`` in a temporary var dir. Version 1 is
rolled out first, without load. Then ``bench/loadgen.py`` sends ``--rate`` batch-1 requests
per second over gRPC and as many over REST, all for the ``stable`` label, holdout rows,
through these phases:

1. ``steady``: version 1 serving, nothing else happening (``--steady-seconds``);
2. ``rollout``: ``aimass.serving.rollout.rollout`` of version 2 with every step: warm-up requests
   written, infra validation in a sandbox server (a second TensorFlow process on the same
   cores), publish, load, canary analysis against stable, promotion;
3. ``after rollout``: version 2 serving;
4. ``rollback``: ``aimass.serving.rollout.rollback`` to version 1 (still loaded);
5. ``after rollback``.

Ratios: ``p99_during_rollout_over_steady`` (target <= 3) and
``p99_during_rollback_over_steady``, over both APIs; ``failed_requests`` must be 0.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT / "tests"))
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import _results  # noqa: E402
import bench_serve  # noqa: E402
from loadgen import LoadGenerator, start_model_server  # noqa: E402

PHASES = ("steady", "rollout", "after rollout", "rollback", "after rollback")


def parse_cli(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    p.add_argument("--rate", type=float, default=40.0, help="requests per second per API")
    p.add_argument("--steady-seconds", type=float, default=10.0, help="length of quiet phases")
    p.add_argument("--canary-requests", type=int, default=200, help="rows the canary replays")
    p.add_argument("--name", default="rollout", help="results name (bench/results/<name>.json)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_cli(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    started = time.perf_counter()
    load_start = [round(x, 2) for x in os.getloadavg()]
    base, partition, _ = bench_serve.build_model(1)
    export = base / "1"
    rows = bench_serve.holdout_rows(partition, 512)
    sample = {k: v[:3] for k, v in rows.items()}

    with tempfile.TemporaryDirectory(prefix="bench-rollout-") as tmp:
        os.environ["AIMASS_VAR_DIR"] = str(Path(tmp) / "var")
        (Path(tmp) / "var").mkdir()
        from aimass.platform.settings import Settings
        from aimass.serving.rollout import CanaryPolicy, rollback, rollout

        settings = Settings.from_env()
        policy = CanaryPolicy(requests=args.canary_requests)
        from aimass.serving.rollout import serving_config_path

        proc, client = start_model_server(
            serving_config_path(settings), settings.var_dir / "server.log"
        )
        seconds: dict[str, float] = {}
        try:

            def deploy(registry: str) -> dict[str, Any]:
                return rollout(
                    settings,
                    client,
                    model_name=bench_serve.MODEL,
                    saved_model_dir=export,
                    registry_version=registry,
                    sample=sample,
                    canary_rows=rows,
                    policy=policy,
                )

            deploy("1")
            load = LoadGenerator(
                client.grpc_target, client.rest_url, bench_serve.MODEL, rows, rate_per_s=args.rate
            )
            with load:
                load.mark("steady")
                time.sleep(args.steady_seconds)
                load.mark("rollout")
                t0 = time.perf_counter()
                second = deploy("2")
                seconds["rollout"] = round(time.perf_counter() - t0, 2)
                load.mark("after rollout")
                time.sleep(args.steady_seconds)
                load.mark("rollback")
                t0 = time.perf_counter()
                back = rollback(settings, client, model_name=bench_serve.MODEL, sample=sample)
                seconds["rollback"] = round(time.perf_counter() - t0, 2)
                load.mark("after rollback")
                time.sleep(args.steady_seconds / 2)
        finally:
            client.close()
            proc.terminate()
            proc.wait(timeout=30)
    report = load.report()
    print(f"\n{'phase':<16}{'api':<6}{'requests':>9}{'failed':>8}{'p50 ms':>9}{'p99 ms':>9}")
    for phase in PHASES:
        for api in ("grpc", "rest", "all"):
            r = report[phase][api]
            print(
                f"{phase:<16}{api:<6}{r['requests']:>9}{r['failed']:>8}"
                f"{r['p50_ms']:>9.2f}{r['p99_ms']:>9.2f}"
            )
    print(
        f"rollout took {seconds['rollout']} s (canary {second['canary']['passed']}), "
        f"rollback {seconds['rollback']} s"
    )
    steady = report["steady"]["all"]["p99_ms"]
    ratios = {
        "p99_during_rollout_over_steady": round(report["rollout"]["all"]["p99_ms"] / steady, 3),
        "p99_during_rollback_over_steady": round(report["rollback"]["all"]["p99_ms"] / steady, 3)
        if report["rollback"]["all"]["requests"]
        else 0.0,
        "p99_after_rollout_over_steady": round(
            report["after rollout"]["all"]["p99_ms"] / steady, 3
        ),
        "failed_requests": float(load.failed),
    }
    _results.write(
        args.name,
        ratios=ratios,
        figures={
            "phases": report,
            "seconds": seconds,
            "canary": second["canary"],
            "infra_validation": second["infra_validation"],
            "rolled_back_to": back["serving_version"],
            "load_avg_start": load_start,
            "load_avg_end": [round(x, 2) for x in os.getloadavg()],
            "total_s": round(time.perf_counter() - started, 1),
        },
        params={
            "rate_per_s_per_api": args.rate,
            "steady_seconds": args.steady_seconds,
            "canary_requests": args.canary_requests,
            "model": str(export),
            "targets": {"p99_during_rollout_over_steady": 3.0, "failed_requests": 0},
        },
    )
    return 1 if load.failed else 0


if __name__ == "__main__":
    sys.exit(main())
