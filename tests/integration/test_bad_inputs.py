"""The clean job on a corpus of bad inputs: each ends in quarantine or in a clear error.

Policies (see the jobs/clean/main.py docstring):

- bad rows, even 100 % of them, are quarantined with reasons and the job succeeds (an
  empty clean partition plus a warning; the quality suite's min_rows stops the run);
- a CSV with a header and no rows is a valid empty batch: empty partitions, rows_in 0 and
  a warning in the summary;
- anything that says the input or spec is wrong as a whole (missing path, 0-byte file,
  header or Parquet schema that does not fit, bad expression) is an error naming the
  problem and the fix, raised before a write, so the previous partitions survive.

Most cases run in-process through ``run``; one goes through spark-submit for the exit code.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from testkit import TAXI_SPEC

from aimass.data.spec import load_spec
from aimass.platform.errors import ConfigError
from aimass.platform.settings import REPO_ROOT

pytestmark = pytest.mark.integration

DS = "2024-01-01"
SPEC = load_spec(TAXI_SPEC)
HEADER = ",".join(SPEC.columns)
GOOD = "60,27.05,10,2,3,1380593700,41.836150155,-87.648787952,,,12.6,,,Cash,Taxi Affiliation Services,1380,,0.0"
SPARK_SUBMIT = Path(sys.executable).parent / "spark-submit"


def good_lines(n: int, start: int = 0) -> list[str]:
    """``n`` distinct valid rows (distinct trip_start_timestamp, so distinct dedupe keys)."""
    return [GOOD.replace("1380593700", str(1380593700 + 60 * i)) for i in range(start, start + n)]


def write_csv(path: Path, lines: list[str], header: str = HEADER) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join([header, *lines]) + "\n", encoding="utf-8")
    return path


def argv(base: Path, input_path: Path, spec: str | Path = "chicago_taxi") -> list[str]:
    return [
        "--spec",
        str(spec),
        "--input",
        str(input_path),
        "--ds",
        DS,
        "--out",
        str(base / "clean" / f"ds={DS}"),
        "--quarantine",
        str(base / "quarantine" / f"ds={DS}"),
        "--summary",
        str(base / "reports" / "clean_summary.json"),
    ]


def run_job(spark: Any, base: Path, input_path: Path, spec: str | Path = "chicago_taxi") -> Any:
    from jobs.clean.main import parse_args, run

    return run(spark, parse_args(argv(base, input_path, spec)))


def assert_conserved(summary: dict[str, Any], base: Path) -> None:
    assert summary["rows_in"] == (
        summary["rows_clean"] + summary["rows_quarantined"] + summary["rows_duplicate"]
    )
    assert pq.read_table(base / "clean" / f"ds={DS}").num_rows == summary["rows_clean"]
    quarantined = pq.read_table(base / "quarantine" / f"ds={DS}")
    assert quarantined.num_rows == summary["rows_quarantined"]
    on_disk = json.loads((base / "reports" / "clean_summary.json").read_text())
    assert on_disk["rows_in"] == summary["rows_in"]


def snapshot(base: Path) -> dict[str, bytes]:
    """Every file under ``base`` (partitions and summary) with its bytes."""
    return {
        str(p.relative_to(base)): p.read_bytes() for p in sorted(base.rglob("*")) if p.is_file()
    }


# -- rows that end in quarantine ---------------------------------------------------------------


def test_non_utf8_bytes_quarantine_only_their_rows(spark: Any, tmp_path: Path) -> None:
    lines = [line.encode() for line in good_lines(6)]
    lines[1] = lines[1].replace(b"Taxi Affiliation", b"Caf\xe9")
    lines[4] = lines[4].replace(b"Cash", b"\xff\xfeCash")
    data = tmp_path / "in" / "trips.csv"
    data.parent.mkdir()
    data.write_bytes(b"\n".join([HEADER.encode(), *lines]) + b"\n")

    summary = run_job(spark, tmp_path, data)

    assert (summary["rows_in"], summary["rows_clean"], summary["rows_quarantined"]) == (6, 4, 2)
    assert summary["quarantine_reasons"] == {"malformed: bad encoding": 2}
    assert summary["warnings"] == []
    assert_conserved(summary, tmp_path)


def test_all_bad_rows_give_an_empty_typed_clean_partition_and_a_warning(
    spark: Any, tmp_path: Path
) -> None:
    # One batch of two files: a numeric column full of text, and rows bad in other ways.
    text = [line.replace("27.05", f"n/a{i}") for i, line in enumerate(good_lines(3))]
    write_csv(tmp_path / "in" / "text_fares.csv", text)
    good = good_lines(3, start=10)
    other = [
        "60,27.05,10",  # wrong field count
        good[0].replace("27.05", "-1"),  # rule fare_not_negative
        good[1].replace(",0.0", ","),  # tips empty: null label
        good[2].replace(",10,2,3,", ",13.5,2,3,"),  # long with a fraction
    ]
    write_csv(tmp_path / "in" / "other.csv", other)

    summary = run_job(spark, tmp_path, tmp_path / "in")

    assert (summary["rows_in"], summary["rows_clean"], summary["rows_quarantined"]) == (7, 0, 7)
    assert summary["quarantine_reasons"] == {
        "unparseable double in fare": 3,
        "malformed: wrong field count": 1,
        "null label big_tipper: tips > 0.2 * fare": 1,
        "rule fare_not_negative": 1,
        "unparseable long in trip_start_month": 1,
    }
    raw = pq.read_table(tmp_path / "quarantine" / f"ds={DS}").to_pylist()
    assert {f"unparseable double in fare: 'n/a{i}'" for i in range(3)} <= {r["reason"] for r in raw}
    assert len(summary["warnings"]) == 1
    assert (
        "no row survived cleaning (most common reason: unparseable double in fare)"
        in (summary["warnings"][0])
    )
    clean = pq.read_table(tmp_path / "clean" / f"ds={DS}")
    assert clean.schema.field("fare").type == pa.float64()
    assert clean.schema.field("big_tipper").type == pa.int32()
    assert_conserved(summary, tmp_path)


def test_header_only_is_an_empty_batch_with_a_warning(spark: Any, tmp_path: Path) -> None:
    summary = run_job(spark, tmp_path, write_csv(tmp_path / "in.csv", []))

    assert (summary["rows_in"], summary["rows_clean"], summary["rows_quarantined"]) == (0, 0, 0)
    assert "no data rows (header only)" in summary["warnings"][0]
    clean = pq.read_table(tmp_path / "clean" / f"ds={DS}")
    assert clean.num_rows == 0 and clean.schema.names[-2:] == ["big_tipper", "split"]
    assert_conserved(summary, tmp_path)


def test_csv_folder_duplicates_are_dropped_and_counted(spark: Any, tmp_path: Path) -> None:
    lines = good_lines(5)
    key_copy = lines[2].replace(",Cash,", ",Credit Card,")  # same trip, other payment type
    write_csv(tmp_path / "in" / "a.csv", [*lines, lines[0]])
    write_csv(tmp_path / "in" / "b.csv", [lines[0], key_copy, *good_lines(2, start=10)])

    summary = run_job(spark, tmp_path, tmp_path / "in")

    assert summary["rows_in"] == 10
    assert summary["duplicates"] == {"exact": 2, "key": 1}
    assert (summary["rows_clean"], summary["rows_duplicate"]) == (7, 3)
    # The first copy (a.csv, Cash) is the one kept.
    kept = pq.read_table(tmp_path / "clean" / f"ds={DS}").to_pandas()
    assert set(kept["payment_type"]) == {"Cash"}
    assert_conserved(summary, tmp_path)


def test_parquet_folder_is_read_by_name_and_cast_with_reasons(spark: Any, tmp_path: Path) -> None:
    def table(fares: list[str], first_ts: int) -> pa.Table:
        n = len(fares)
        columns: dict[str, pa.Array] = {"note": pa.array(["extra column"] * n)}
        for col, dtype in reversed(SPEC.schema):  # another column order than the spec's
            if col == "fare":
                columns[col] = pa.array(fares)  # string in the file, double in the spec
            elif col == "trip_start_timestamp":
                columns[col] = pa.array([first_ts + i for i in range(n)], pa.int64())
            elif col == "trip_start_month":
                columns[col] = pa.array([10] * n, pa.int32())
            elif col.endswith(("_latitude", "_longitude")):  # in Chicago, as the rules want
                columns[col] = pa.array([41.9 if "lat" in col else -87.6] * n, pa.float64())
            elif dtype == "long":
                columns[col] = pa.array([3] * n, pa.int64())
            elif dtype == "string":
                columns[col] = pa.array(["Cash"] * n)
            else:
                columns[col] = pa.array([1.5] * n, pa.float64())
        return pa.table(columns)

    folder = tmp_path / "in"
    folder.mkdir()
    pq.write_table(table(["10.0", "abc", "12"], 1000), folder / "part-0.parquet")
    # The first row repeats the first row of part-0 exactly.
    pq.write_table(table(["10.0", "-2", "7.25"], 1000), folder / "part-1.parquet")
    (folder / "_SUCCESS").write_text("")

    summary = run_job(spark, tmp_path, folder)

    assert summary["format"] == "parquet"
    assert summary["rows_in"] == 6
    assert summary["quarantine_reasons"] == {
        "unparseable double in fare": 1,
        "rule fare_not_negative": 1,
    }
    assert summary["duplicates"] == {"exact": 1, "key": 0}
    clean = pq.read_table(tmp_path / "clean" / f"ds={DS}")
    assert clean.schema.names == [*SPEC.clean_columns, "big_tipper", "split"]
    assert sorted(clean.column("fare").to_pylist()) == [7.25, 10.0, 12.0]
    assert clean.schema.field("trip_start_month").type == pa.int64()
    assert_conserved(summary, tmp_path)


# -- inputs that are errors; the previous partitions survive -------------------------------------


def _empty_file(tmp: Path) -> Path:
    path = tmp / "empty.csv"
    path.write_bytes(b"")
    return path


def _renamed_column(tmp: Path) -> Path:
    return write_csv(tmp / "renamed.csv", good_lines(2), HEADER.replace("fare,", "fare_amount,"))


def _missing_column(tmp: Path) -> Path:
    header = HEADER.replace(",company", "")
    lines = [line.replace(",Taxi Affiliation Services", "") for line in good_lines(2)]
    return write_csv(tmp / "missing.csv", lines, header)


def _extra_column(tmp: Path) -> Path:
    return write_csv(tmp / "extra.csv", [f"{line},x" for line in good_lines(2)], f"{HEADER},note")


def _empty_file_in_a_folder(tmp: Path) -> Path:
    write_csv(tmp / "in" / "a.csv", good_lines(2))
    (tmp / "in" / "b.csv").write_bytes(b"")
    return tmp / "in"


def _mixed_formats(tmp: Path) -> Path:
    write_csv(tmp / "in" / "a.csv", good_lines(2))
    pq.write_table(pa.table({"fare": [1.0]}), tmp / "in" / "b.parquet")
    return tmp / "in"


def _parquet_missing_column(tmp: Path) -> Path:
    path = tmp / "trips.parquet"
    pq.write_table(pa.table({c: ["1"] for c in SPEC.columns if c != "tips"}), path)
    return path


def _not_parquet(tmp: Path) -> Path:
    path = tmp / "trips.parquet"
    path.write_text(HEADER + "\n" + GOOD + "\n")
    return path


def _nowhere(tmp: Path) -> Path:
    return tmp / "nowhere" / "trips.csv"


BAD_INPUTS: dict[str, tuple[Callable[[Path], Path], str]] = {
    "empty file": (_empty_file, r"empty\.csv is empty \(0 bytes.*re-export it"),
    "wrong header": (
        _renamed_column,
        r"missing columns \['fare'\], unexpected columns \['fare_amount'\].*Fix the file",
    ),
    "missing column": (_missing_column, r"missing columns \['company'\], unexpected columns \[\]"),
    "extra column": (_extra_column, r"missing columns \[\], unexpected columns \['note'\]"),
    "empty file in a folder": (_empty_file_in_a_folder, r"b\.csv is empty \(0 bytes"),
    "mixed formats": (_mixed_formats, r"mixes CSV and Parquet files.*own folder"),
    "parquet missing column": (
        _parquet_missing_column,
        r"trips\.parquet lacks the columns \['tips'\].*fix the export or the spec",
    ),
    "not parquet": (_not_parquet, r"trips\.parquet is not a readable Parquet file"),
    "no such path": (_nowhere, r"nowhere/trips\.csv does not exist; pass --input"),
}


@pytest.fixture(scope="module")
def good_run(spark: Any, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A base folder whose partitions and summary come from one good run."""
    base = tmp_path_factory.mktemp("good_run")
    summary = run_job(spark, base, write_csv(base / "landing" / "trips.csv", good_lines(20)))
    assert summary["rows_clean"] == 20
    return base


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_is_a_clear_error_and_keeps_the_previous_partition(
    case: str, spark: Any, good_run: Path, tmp_path: Path
) -> None:
    make_input, message = BAD_INPUTS[case]
    before = snapshot(good_run)

    with pytest.raises(ConfigError, match=message):
        run_job(spark, good_run, make_input(tmp_path))

    assert snapshot(good_run) == before
    assert sorted(p.name for p in (good_run / "clean").iterdir()) == [f"ds={DS}"]


def _spec_with_label(tmp: Path, expression: str) -> Path:
    text = TAXI_SPEC.read_text().replace('"tips > 0.2 * fare"', f'"{expression}"')
    assert expression in text
    path = tmp / "taxi_renamed_label.yaml"
    path.write_text(text)
    return path


def test_label_on_an_absent_column_is_a_clear_error(
    spark: Any, good_run: Path, tmp_path: Path
) -> None:
    spec = _spec_with_label(tmp_path, "tip_amount > 0.2 * fare")
    before = snapshot(good_run)

    with pytest.raises(ConfigError, match=r"label.expression .*'tip_amount > 0.2 \* fare'") as err:
        run_job(spark, good_run, good_run / "landing" / "trips.csv", spec)

    assert "tip_amount" in str(err.value) and str(spec) in str(err.value)
    assert snapshot(good_run) == before


# -- through spark-submit: the exit code and the message an operator reads ---------------------
# One case is enough: an exception from run() takes the same way out of main(), and
# test_clean_job.py covers a whole spark-submit run.


def _spark_submit(args: list[str]) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYSPARK_PYTHON": sys.executable, "PYSPARK_DRIVER_PYTHON": sys.executable}
    cmd = [str(SPARK_SUBMIT), "--master", "local[1]", "jobs/clean/main.py", *args]
    return subprocess.run(
        cmd, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300, check=False
    )


def test_spark_submit_exits_non_zero_on_a_missing_input(tmp_path: Path) -> None:
    proc = _spark_submit(argv(tmp_path, tmp_path / "nowhere.csv"))

    assert proc.returncode != 0
    assert f"ConfigError: input {tmp_path / 'nowhere.csv'} does not exist" in (
        proc.stdout + proc.stderr
    )
    assert not (tmp_path / "clean").exists()
