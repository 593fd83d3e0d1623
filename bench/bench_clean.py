"""Benchmark of the clean stage: Spark (warm session and spark-submit) against DuckDB.

Run with ``make bench-clean`` (or ``.venv/bin/python bench/bench_clean.py --sizes 1m,5m``).

For each size N it generates (or reuses) a synthetic raw CSV (``bench/datagen.py``: the
real sample resampled with noise and a small share of bad rows) and times:

- **spark_warm**: ``jobs.clean.main.run(spark, args)`` in one SparkSession that is already
  up (median of ``--repeats`` runs after one warm-up run, taking turns with DuckDB);
- **spark_cold**: ``spark-submit jobs/clean/main.py ...`` as a subprocess (wall time,
  JVM start included);
- **duckdb**: the same cleaning in DuckDB SQL generated from the same spec (typed parse
  with TRY_CAST and a reason per bad row, the spec's rules, the label expression, a hashed
  split, clean + quarantine Parquet, then the counts read back from what was written, as
  the Spark job does); median of ``--repeats`` runs after one warm-up run;
- **gx**: ``aimass.data.quality.validate_partition`` on the clean partition Spark wrote.

DuckDB's clean, quarantine and duplicate counts (and quarantine reason kinds) must equal Spark's
exactly, or the script fails. The split uses another hash function (DuckDB ``hash`` vs
Spark ``xxhash64``), so the holdout counts may differ: they must agree within
``SPLIT_TOLERANCE`` (share of clean rows).

Known differences of the DuckDB translation (none occur in the generated data):
Spark's string->double cast accepts Java literals such as ``1d`` or ``0x1p3``, DuckDB's
accepts ``1_000``; rule and label expressions must be in the SQL subset both engines
read the same way (comparisons and arithmetic, as in the shipped specs).
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import _results  # noqa: E402
import datagen  # noqa: E402

from aimass.data.spec import load_spec  # noqa: E402

if TYPE_CHECKING:
    from duckdb import DuckDBPyConnection
    from pyspark.sql import SparkSession

    from aimass.data.spec import DatasetSpec

log = logging.getLogger("bench_clean")

SPLIT_TOLERANCE = 0.01  # |holdout share Spark - holdout share DuckDB| allowed
BENCH_DIR = ROOT / "var" / "bench" / "clean"
SAMPLE = ROOT / "var" / "data" / "raw" / "chicago_taxi" / "data.csv"
DS = "2024-01-01"
WRONG_FIELD_COUNT = "malformed: wrong field count"
BAD_ENCODING = "malformed: bad encoding"
_LONG_LIMIT = float(2**63)


# -- sizes ------------------------------------------------------------------------------------


def parse_size(text: str) -> int:
    text = text.strip().lower().replace("_", "")
    for suffix, factor in (("m", 1_000_000), ("k", 1_000)):
        if text.endswith(suffix):
            return int(float(text[: -len(suffix)]) * factor)
    return int(text)


def size_label(n: int) -> str:
    if n % 1_000_000 == 0:
        return f"{n // 1_000_000}m"
    if n % 1_000 == 0:
        return f"{n // 1_000}k"
    return str(n)


# -- DuckDB: the clean job generated from the spec -------------------------------------------


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _lit(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _typed_sql(value: str, dtype: str) -> str:
    """``value`` (trimmed, non-empty or null) cast as the Spark job does; null if unparseable."""
    if dtype == "string":
        return value
    as_double = f"TRY_CAST({value} AS DOUBLE)"
    if dtype == "double":
        return as_double
    # long: digits only (DuckDB would round '8.5'), else an integral decimal such as '8.0'.
    return (
        f"CASE WHEN regexp_full_match({value}, '[+-]?[0-9]+') THEN TRY_CAST({value} AS BIGINT) "
        f"WHEN {as_double} = floor({as_double}) AND abs({as_double}) < {_LONG_LIMIT!r} "
        f"THEN CAST({as_double} AS BIGINT) END"
    )


def _csv_field_sql(col: str) -> str:
    needs = f"(contains({col}, ',') OR contains({col}, '\"') OR contains({col}, chr(10)))"
    quoted = f"'\"' || replace({col}, '\"', '\"\"') || '\"'"
    return f"coalesce(CASE WHEN {needs} THEN {quoted} ELSE {col} END, '')"


_DUCKDB_TYPES = {"double": "DOUBLE", "long": "BIGINT", "string": "VARCHAR"}


def duckdb_statements(
    spec: DatasetSpec, input_path: Path, clean_dir: Path, quarantine_dir: Path
) -> dict[str, str]:
    """The clean job as DuckDB SQL, generated from ``spec`` (name -> statement, in order)."""
    cols = list(spec.columns)
    columns = "{" + ", ".join(f"{_lit(c)}: 'VARCHAR'" for c in cols) + "}"
    read = (
        f"CREATE OR REPLACE TEMP TABLE raw AS SELECT * FROM read_csv({_lit(str(input_path))}, "
        f"header={'true' if spec.header else 'false'}, columns={columns}, auto_detect=false, "
        "delim=',', quote='\"', escape='\"', all_varchar=true, null_padding=false, "
        "store_rejects=true, rejects_table='bench_rejects', rejects_scan='bench_scans')"
    )
    # v: trimmed values (empty -> null); t: typed values next to them.
    values = ", ".join(f"nullif(trim({_q(c)}), '') AS {_q('__v_' + c)}" for c in cols)
    raw_line = " || ',' || ".join(_csv_field_sql(_q(c)) for c in cols)
    typed = ", ".join(
        f"{_typed_sql(_q('__v_' + c), t)} AS {_q(c)}, {_q('__v_' + c)}" for c, t in spec.schema
    )
    checks: list[str] = []
    for c, t in spec.schema:
        if t == "string":
            continue
        v = _q("__v_" + c)
        checks.append(
            f"CASE WHEN {v} IS NOT NULL AND {_q(c)} IS NULL "
            f"THEN {_lit(f'unparseable {t} in {c}: ')} || '''' || {v} || '''' END"
        )
    for rule in spec.rules:
        checks.append(
            f"CASE WHEN NOT coalesce(({rule.expression}), true) THEN {_lit(f'rule {rule.name}')} END"
        )
    checks.append(
        f"CASE WHEN ({spec.label_expression}) IS NULL "
        f"THEN {_lit(f'null label {spec.label_name}: {spec.label_expression}')} END"
    )
    hashed = ", ".join(_q(c) for c in cols)
    # Derived columns (DuckDB lets one refer to those before it, as the Spark job does).
    derived = "".join(
        f", CAST(({d.expression}) AS {_DUCKDB_TYPES[d.dtype]}) AS {_q(d.name)}"
        for d in spec.derived
    )
    clean_data_cols = [*cols, *(d.name for d in spec.derived)]
    staged = (
        "CREATE OR REPLACE TEMP VIEW staged AS "
        f"SELECT {', '.join(_q(c) for c in clean_data_cols)}, "
        f"CAST(({spec.label_expression}) AS INTEGER) AS {_q(spec.label_name)}, "
        f"CASE WHEN hash({hashed}) % 100 < {spec.holdout_percent} "
        "THEN 'holdout' ELSE 'train' END AS split, "
        f"coalesce({', '.join(checks)}) AS reason, __raw AS raw, __pos "
        f"FROM (SELECT *{derived} FROM (SELECT {typed}, __raw, __pos FROM "
        f"(SELECT {values}, {raw_line} AS __raw, rowid AS __pos FROM raw)))"
    )
    # Duplicates among rows that passed: exact (all columns), then key among first copies;
    # the earlier row in file order is kept, as in jobs.clean.transforms.drop_duplicates.
    all_cols = ", ".join(_q(c) for c in cols)
    ranked = (
        "CREATE OR REPLACE TEMP VIEW ranked AS SELECT *, "
        f"row_number() OVER (PARTITION BY {all_cols} ORDER BY __pos) = 1 AS __first "
        "FROM staged WHERE reason IS NULL"
    )
    key_dup = ""
    if spec.dedupe_key:
        key = ", ".join(_q(c) for c in spec.dedupe_key)
        key_dup = (
            f"WHEN row_number() OVER (PARTITION BY {key}, __first ORDER BY __pos) > 1 THEN 'key' "
        )
    deduped = (
        "CREATE OR REPLACE TEMP VIEW deduped AS SELECT *, "
        f"CASE WHEN NOT __first THEN 'exact' {key_dup}END AS __dup FROM ranked"
    )
    clean_cols = ", ".join(_q(c) for c in (*clean_data_cols, spec.label_name, "split"))
    rejects = (
        "SELECT csv_line AS raw, CASE WHEN error_type IN ('MISSING COLUMNS', 'TOO MANY COLUMNS') "
        f"THEN {_lit(WRONG_FIELD_COUNT)} WHEN error_type = 'INVALID ENCODING' "
        f"THEN {_lit(BAD_ENCODING)} ELSE 'malformed: ' || lower(CAST(error_type AS VARCHAR)) END "
        "AS reason FROM (SELECT DISTINCT ON (file_id, line) * FROM bench_rejects "
        "ORDER BY file_id, line, column_idx)"
    )
    clean_file = clean_dir / "part-0.parquet"
    quarantine_file = quarantine_dir / "part-0.parquet"
    return {
        "read": read,
        "staged": staged,
        "ranked": ranked,
        "deduped": deduped,
        "write_clean": (
            f"COPY (SELECT {clean_cols} FROM deduped WHERE __dup IS NULL) "
            f"TO {_lit(str(clean_file))} (FORMAT parquet, COMPRESSION snappy)"
        ),
        "write_quarantine": (
            f"COPY (SELECT raw, reason FROM staged WHERE reason IS NOT NULL UNION ALL {rejects}) "
            f"TO {_lit(str(quarantine_file))} (FORMAT parquet, COMPRESSION snappy)"
        ),
        "count_duplicates": (
            "SELECT __dup, count(*) FROM deduped WHERE __dup IS NOT NULL GROUP BY __dup"
        ),
        "count_splits": (
            f"SELECT split, count(*) FROM read_parquet({_lit(str(clean_file))}) GROUP BY split"
        ),
        "count_reasons": (
            "SELECT regexp_replace(reason, ': ''.*$', '') AS kind, count(*) "
            f"FROM read_parquet({_lit(str(quarantine_file))}) GROUP BY kind"
        ),
        "count_in": "SELECT (SELECT count(*) FROM raw) + (SELECT count(DISTINCT (file_id, line)) "
        "FROM bench_rejects)",
    }


def run_duckdb(
    con: DuckDBPyConnection, spec: DatasetSpec, input_path: Path, out_dir: Path
) -> dict[str, Any]:
    """One DuckDB clean of ``input_path`` into ``out_dir``; returns a summary like Spark's."""
    clean_dir, quarantine_dir = out_dir / "clean", out_dir / "quarantine"
    for d in (clean_dir, quarantine_dir):
        shutil.rmtree(d, ignore_errors=True)
        d.mkdir(parents=True)
    sql = duckdb_statements(spec, input_path, clean_dir, quarantine_dir)
    con.execute("DROP TABLE IF EXISTS bench_rejects")
    con.execute("DROP TABLE IF EXISTS bench_scans")
    for name in ("read", "staged", "ranked", "deduped", "write_clean", "write_quarantine"):
        con.execute(sql[name])
    duplicates = {k: int(v) for k, v in con.execute(sql["count_duplicates"]).fetchall()}
    splits = dict(con.execute(sql["count_splits"]).fetchall())
    reasons = dict(con.execute(sql["count_reasons"]).fetchall())
    (rows_in,) = con.execute(sql["count_in"]).fetchone() or (0,)
    con.execute("DROP TABLE IF EXISTS raw")
    return {
        "rows_in": int(rows_in),
        "rows_clean": int(sum(splits.values())),
        "rows_quarantined": int(sum(reasons.values())),
        "rows_duplicate": sum(duplicates.values()),
        "duplicates": {"exact": duplicates.get("exact", 0), "key": duplicates.get("key", 0)},
        "rows_train": int(splits.get("train", 0)),
        "rows_holdout": int(splits.get("holdout", 0)),
        "quarantine_reasons": {k: int(v) for k, v in reasons.items()},
    }


# -- Spark ------------------------------------------------------------------------------------


def spark_session(conf: dict[str, str]) -> SparkSession:
    """``aimass.platform.spark.get_session``; with ``conf``, the same settings plus the overrides."""
    from aimass.platform.spark import SMALL_MACHINE_CONF, get_session

    if conf:
        from pyspark.sql import SparkSession

        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
        builder = SparkSession.builder.appName("aimass-bench-clean").master("local[*]")
        for key, value in {**SMALL_MACHINE_CONF, **conf}.items():
            builder = builder.config(key, value)
        builder.getOrCreate()
    return get_session(app_name="aimass-bench-clean", master="local[*]")


def job_args(spec_name: str, input_path: Path, out_dir: Path) -> list[str]:
    return [
        "--spec",
        spec_name,
        "--input",
        str(input_path),
        "--ds",
        DS,
        "--out",
        str(out_dir / "clean" / f"ds={DS}"),
        "--quarantine",
        str(out_dir / "quarantine" / f"ds={DS}"),
        "--summary",
        str(out_dir / "clean_summary.json"),
    ]


def run_spark_warm(
    spark: SparkSession, spec_name: str, input_path: Path, out_dir: Path
) -> dict[str, Any]:
    from jobs.clean.main import parse_args, run

    return run(spark, parse_args(job_args(spec_name, input_path, out_dir)))


def run_spark_cold(spec_name: str, input_path: Path, out_dir: Path, conf: dict[str, str]) -> None:
    cmd = [str(Path(sys.executable).with_name("spark-submit")), "--master", "local[*]"]
    for key, value in conf.items():
        cmd += ["--conf", f"{key}={value}"]
    cmd += [str(ROOT / "jobs" / "clean" / "main.py"), *job_args(spec_name, input_path, out_dir)]
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(ROOT), str(ROOT / "src"), env.get("PYTHONPATH", "")) if p
    )
    env.setdefault("PYSPARK_PYTHON", sys.executable)
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise SystemExit(
            f"spark-submit failed (exit {proc.returncode}):\n{' '.join(cmd)}\n{proc.stderr[-4000:]}"
        )


# -- timing -----------------------------------------------------------------------------------


def timed(fn: Callable[[], Any]) -> tuple[float, Any, float]:
    """(seconds, result, 1-minute load average at the end)."""
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result, os.getloadavg()[0]


def interleaved(
    fns: dict[str, Callable[[], Any]], repeats: int
) -> dict[str, tuple[float, list[float], Any, list[float]]]:
    """Run each of ``fns`` ``repeats`` times, taking turns; per name: (median, every run's
    seconds, the last result, the load average after each run)."""
    runs: dict[str, tuple[list[float], list[float]]] = {name: ([], []) for name in fns}
    results: dict[str, Any] = {}
    for _ in range(repeats):
        for name, fn in fns.items():
            seconds, results[name], load = timed(fn)
            runs[name][0].append(round(seconds, 3))
            runs[name][1].append(round(load, 2))
    return {
        name: (statistics.median(times), times, results[name], loads)
        for name, (times, loads) in runs.items()
    }


def compare(size: str, spark: dict[str, Any], duck: dict[str, Any]) -> dict[str, Any]:
    """Fail unless DuckDB cleaned exactly like Spark (split within SPLIT_TOLERANCE)."""
    problems = []
    for key in ("rows_in", "rows_clean", "rows_quarantined", "rows_duplicate", "duplicates"):
        if spark.get(key, 0) != duck[key]:
            problems.append(f"{key}: spark {spark[key]} != duckdb {duck[key]}")
    if spark["quarantine_reasons"] != duck["quarantine_reasons"]:
        problems.append(
            f"quarantine reasons: spark {spark['quarantine_reasons']} != "
            f"duckdb {duck['quarantine_reasons']}"
        )
    clean = max(spark["rows_clean"], 1)
    split_gap = abs(spark["rows_holdout"] - duck["rows_holdout"]) / clean
    if split_gap > SPLIT_TOLERANCE:
        problems.append(
            f"holdout share differs by {split_gap:.4f} > {SPLIT_TOLERANCE} "
            f"(spark {spark['rows_holdout']}, duckdb {duck['rows_holdout']})"
        )
    print(
        f"  check {size}: rows_in {spark['rows_in']}/{duck['rows_in']}, "
        f"clean {spark['rows_clean']}/{duck['rows_clean']}, "
        f"quarantined {spark['rows_quarantined']}/{duck['rows_quarantined']}, "
        f"duplicate {spark.get('rows_duplicate', 0)}/{duck['rows_duplicate']}, "
        f"holdout {spark['rows_holdout']}/{duck['rows_holdout']} (spark/duckdb)"
    )
    if problems:
        raise SystemExit(
            f"DuckDB baseline does not clean like Spark at {size}:\n  " + "\n  ".join(problems)
        )
    return {"holdout_share_gap": round(split_gap, 5)}


# -- main -------------------------------------------------------------------------------------


def parse_cli(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument(
        "--sizes", default="1m,5m,10m", help="comma-separated row counts (1m, 250k, ...)"
    )
    p.add_argument("--repeats", type=int, default=3, help="timed runs per engine and size")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--spec", default="chicago_taxi")
    p.add_argument("--sample", type=Path, default=SAMPLE, help="real sample CSV to resample")
    p.add_argument("--bad-share", type=float, default=0.002, help="share of injected bad rows")
    p.add_argument(
        "--conf",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra Spark conf for the warm session and spark-submit (tuning experiments)",
    )
    p.add_argument(
        "--tuned-conf",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="Spark conf for an extra spark-submit run per size (spark_cold_tuned)",
    )
    p.add_argument("--no-cold", action="store_true", help="skip spark-submit runs")
    p.add_argument("--no-gx", action="store_true", help="skip the Great Expectations timing")
    p.add_argument("--name", default="clean", help="results name (bench/results/<name>.json)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_cli(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    conf = dict(item.split("=", 1) for item in args.conf)
    tuned = dict(item.split("=", 1) for item in args.tuned_conf)
    sizes = [parse_size(s) for s in args.sizes.split(",") if s.strip()]
    spec = load_spec(args.spec)
    load_start = os.getloadavg()

    files: dict[int, Path] = {}
    figures: dict[str, Any] = {"load_avg_start": [round(x, 2) for x in load_start]}
    for n in sizes:
        seconds, gen, _ = timed(
            lambda n=n: datagen.generate(
                spec, args.sample, n, args.seed, BENCH_DIR, bad_share=args.bad_share
            )
        )
        files[n] = gen.path
        figures[f"datagen_{size_label(n)}"] = {
            "seconds": round(seconds, 2),
            "cached": gen.cached,
            "injected_bad_rows": gen.injected,
            "bytes": gen.path.stat().st_size,
        }
        print(
            f"data {size_label(n)}: {gen.path} ({'cached' if gen.cached else f'{seconds:.1f} s'})"
        )

    import duckdb

    con = duckdb.connect()
    con.execute(f"SET threads = {os.cpu_count() or 1}")
    out = BENCH_DIR / "out"
    rows: list[tuple[str, str, float, list[float], float]] = []
    ratios: dict[str, float] = {}

    seconds, spark, _ = timed(lambda: spark_session(conf))
    figures["spark_session_start_s"] = round(seconds, 2)
    smallest = files[min(sizes)]
    # Warm-ups (JIT, Python imports, DuckDB extension loading), not timed.
    run_spark_warm(spark, args.spec, smallest, out / "warmup" / "spark")
    run_duckdb(con, spec, smallest, out / "warmup" / "duckdb")

    for n in sizes:
        label, path = size_label(n), files[n]
        # The engines take turns, so a change in the machine's load hits both alike.
        timings = interleaved(
            {
                "spark": lambda p=path, o=out / label / "spark": run_spark_warm(
                    spark, args.spec, p, o
                ),
                "duckdb": lambda p=path, o=out / label / "duckdb": run_duckdb(con, spec, p, o),
            },
            args.repeats,
        )
        s_med, s_times, s_summary, s_loads = timings["spark"]
        d_med, d_times, d_summary, d_loads = timings["duckdb"]
        print(f"  {label}: spark warm runs {s_times} s, duckdb runs {d_times} s")
        check = compare(label, s_summary, d_summary)
        rows += [(label, "spark_warm", s_med, s_times, n / s_med)]
        rows += [(label, "duckdb", d_med, d_times, n / d_med)]
        ratios[f"spark_over_duckdb_warm_{label}"] = round(s_med / d_med, 3)
        figures[f"size_{label}"] = {
            "rows": n,
            "spark_warm_s": s_times,
            "duckdb_s": d_times,
            "load_avg_1m_spark": s_loads,
            "load_avg_1m_duckdb": d_loads,
            "spark_summary": {
                k: v
                for k, v in s_summary.items()
                if k.startswith("rows") or k in ("quarantine_reasons", "duplicates")
            },
            "duckdb_summary": d_summary,
            **check,
        }
        if not args.no_gx:
            from aimass.data.quality import validate_partition

            partition = out / label / "spark" / "clean" / f"ds={DS}"
            if n == min(sizes):  # warm-up: GX imports and first context
                validate_partition(spec, partition, out / label / "gx", spark=spark)
            g_sec, g_summary, g_load = timed(
                lambda part=partition, o=out / label / "gx": validate_partition(
                    spec, part, o, spark=spark
                )
            )
            rows += [(label, "gx_validate", g_sec, [round(g_sec, 3)], n / g_sec)]
            ratios[f"gx_over_spark_clean_{label}"] = round(g_sec / s_med, 3)
            figures[f"size_{label}"] |= {
                "gx_s": round(g_sec, 3),
                "gx_success": g_summary["success"],
                "load_avg_1m_gx": round(g_load, 2),
            }
    spark.stop()

    if not args.no_cold:
        for n in sizes:
            label, path = size_label(n), files[n]
            c_sec, _, c_load = timed(
                lambda p=path, o=out / label / "spark_cold": run_spark_cold(args.spec, p, o, conf)
            )
            d_med = statistics.median(figures[f"size_{label}"]["duckdb_s"])
            rows += [(label, "spark_cold", c_sec, [round(c_sec, 3)], n / c_sec)]
            ratios[f"spark_cold_over_duckdb_{label}"] = round(c_sec / d_med, 3)
            figures[f"size_{label}"] |= {
                "spark_cold_s": round(c_sec, 3),
                "load_avg_1m_spark_cold": round(c_load, 2),
            }
            if tuned:
                t_sec, _, t_load = timed(
                    lambda p=path, o=out / label / "spark_cold_tuned": run_spark_cold(
                        args.spec, p, o, {**conf, **tuned}
                    )
                )
                rows += [(label, "spark_cold_tuned", t_sec, [round(t_sec, 3)], n / t_sec)]
                ratios[f"spark_cold_tuned_over_duckdb_{label}"] = round(t_sec / d_med, 3)
                figures[f"size_{label}"] |= {
                    "spark_cold_tuned_s": round(t_sec, 3),
                    "load_avg_1m_spark_cold_tuned": round(t_load, 2),
                }

    warm = {n: statistics.median(figures[f"size_{size_label(n)}"]["spark_warm_s"]) for n in sizes}
    smallest_n = min(sizes)
    for n in sizes:
        if n != smallest_n:
            name = f"spark_warm_{size_label(n)}_over_{size_label(smallest_n)}"
            ratios[name] = round(warm[n] / warm[smallest_n], 3)
    figures["load_avg_end"] = [round(x, 2) for x in os.getloadavg()]
    print(f"\n{'rows':>6}  {'engine':<16} {'median s':>9} {'rows/s':>12}  runs")
    for label, engine, sec, times, rate in rows:
        print(f"{label:>6}  {engine:<16} {sec:9.2f} {rate:12,.0f}  {times}")
    print(f"load average start {figures['load_avg_start']}, end {figures['load_avg_end']}")

    params = {
        "sizes": sizes,
        "repeats": args.repeats,
        "seed": args.seed,
        "spec": args.spec,
        "bad_share": args.bad_share,
        "spark_conf_overrides": conf,
        "spark_cold_tuned_conf": tuned,
        "spark_master": "local[*]",
        "duckdb_threads": os.cpu_count(),
        "duckdb_version": duckdb.__version__,
        "split_tolerance": SPLIT_TOLERANCE,
    }
    _results.write(args.name, ratios=ratios, figures=figures, params=params)
    return 0


if __name__ == "__main__":
    sys.exit(main())
