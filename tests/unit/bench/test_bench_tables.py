"""tools/bench_tables.py: the benchmark tables in docs/benchmarks.md come from bench/results/*.json."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "tools"))
import bench_tables  # noqa: E402

pytestmark = pytest.mark.unit

DOC = """# Benchmarks

Hand-written text before.

<!-- bench-tables:start -->
stale table
<!-- bench-tables:end -->

Hand-written text after.
"""


@pytest.fixture
def tree(tmp_path: Path) -> dict[str, Path]:
    bench = tmp_path / "bench"
    results = bench / "results"
    results.mkdir(parents=True)
    for name in ("clean", "serve"):
        (bench / f"bench_{name}.py").write_text('"""A benchmark."""\n', encoding="utf-8")
    clean = {
        "ratios": {"spark_over_duckdb_warm_5m": 8.912, "gx_over_spark_clean_5m": 0.041},
        "figures": {"spark_session_start_s": 6.25, "size_5m": {"rows": 5_000_000}},
        "params": {"sizes": [5_000_000], "repeats": 1, "spark_master": "local[*]"},
        "machine": {"cpus": 2, "memory_gib": 23.4, "python": "3.11.9", "platform": "Linux"},
    }
    path = results / "clean.json"
    path.write_text(json.dumps(clean), encoding="utf-8")
    os.utime(path, (1_780_000_000, 1_780_000_000))  # 2026-05-28 20:26 UTC
    doc = tmp_path / "benchmarks.md"
    doc.write_text(DOC, encoding="utf-8")
    return {"bench": bench, "results": results, "doc": doc}


def _run(tree: dict[str, Path]) -> str:
    argv = ["--results", str(tree["results"]), "--bench", str(tree["bench"])]
    assert bench_tables.main([*argv, "--doc", str(tree["doc"])]) == 0
    return tree["doc"].read_text(encoding="utf-8")


def test_rows_from_results_and_not_run_yet(tree: dict[str, Path]) -> None:
    text = _run(tree)
    assert "| `spark_over_duckdb_warm_5m` | 8.912 | ≤ 3 | **no** |" in text
    assert "| `gx_over_spark_clean_5m` | 0.041 |  |  |" in text
    assert "| `spark_session_start_s` | 6.25 |" in text
    assert "size_5m" not in text  # nested figures stay in the JSON
    assert (
        "From `bench/results/clean.json`, written by `bench/bench_clean.py` "
        "(`make bench-clean`) on 2026-05-28 20:26 UTC." in text
    )
    assert "2 CPUs, 23.4 GiB memory, Python 3.11.9" in text
    assert "`repeats=1`" in text and "`spark_master=local[*]`" in text
    assert "### serve\n\nnot run yet: make bench-serve\n\n<!-- bench-tables:end -->" in text
    assert "stale table" not in text


def test_text_outside_the_markers_is_kept_and_a_rerun_changes_nothing(
    tree: dict[str, Path],
) -> None:
    first = _run(tree)
    assert first.startswith(
        "# Benchmarks\n\nHand-written text before.\n\n<!-- bench-tables:start -->\n"
    )
    assert first.endswith("<!-- bench-tables:end -->\n\nHand-written text after.\n")
    assert _run(tree) == first


def test_recorded_targets_override_the_defaults(tree: dict[str, Path]) -> None:
    serve = {
        "ratios": {"grpc_p50_b1_over_inprocess": 1.4, "throughput_batch64_over_batch1": 61.0},
        "figures": {},
        "params": {"targets": {"grpc_p50_b1_over_inprocess": "<= 1.2"}},
        "machine": {},
    }
    (tree["results"] / "serve.json").write_text(json.dumps(serve), encoding="utf-8")
    text = _run(tree)
    assert "| `grpc_p50_b1_over_inprocess` | 1.4 | ≤ 1.2 | **no** |" in text
    assert "| `throughput_batch64_over_batch1` | 61 | ≥ 3 | yes |" in text
    assert "not run yet: make bench-serve" not in text


def test_missing_markers_fail_with_what_to_add(tree: dict[str, Path]) -> None:
    tree["doc"].write_text("# Benchmarks\n", encoding="utf-8")
    with pytest.raises(SystemExit, match="bench-tables:start"):
        _run(tree)


def test_a_table_measured_elsewhere_stays_until_its_benchmark_runs_here(
    tree: dict[str, Path],
) -> None:
    _run(tree)  # clean measured here; serve not run anywhere yet
    moved = tree["results"] / "clean.json"
    kept = tree["results"].parent / "clean.json.elsewhere"
    moved.rename(kept)

    text = _run(tree)  # this machine has no clean results: the doc's table stays

    assert "| `spark_over_duckdb_warm_5m` | 8.912 | ≤ 3 | **no** |" in text
    assert text.count("### clean") == 1
    assert "not run yet: make bench-serve" in text
    kept.rename(moved)
    payload = json.loads(moved.read_text(encoding="utf-8"))
    payload["ratios"]["spark_over_duckdb_warm_5m"] = 2.5
    moved.write_text(json.dumps(payload), encoding="utf-8")
    assert "| `spark_over_duckdb_warm_5m` | 2.5 | ≤ 3 | yes |" in _run(tree)
