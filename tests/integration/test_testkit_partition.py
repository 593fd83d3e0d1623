"""testkit's clean partition against the real clean job, on the same raw rows.

Most training, gate, drift and monitor tests read partitions that testkit.write_partition
writes without Spark. These tests run jobs/clean on the rows the stand-in is given and
check that both write the same partition: columns and types, rows, label and split.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from testkit import PENGUINS_CSV, spark_xxhash64, write_partition

from aimass.data.spec import DatasetSpec, load_spec

pytestmark = pytest.mark.integration

DS = "2024-01-01"


def _run_job(spark: Any, spec: str, raw: Path, base: Path) -> tuple[Path, dict[str, Any]]:
    from jobs.clean.main import parse_args, run

    out = base / "job" / f"ds={DS}"
    argv = ["--spec", spec, "--input", str(raw), "--ds", DS, "--out", str(out)]
    argv += ["--quarantine", str(base / "quarantine"), "--summary", str(base / "summary.json")]
    return out, run(spark, parse_args(argv))


def _assert_same_partition(kit: Path, job: Path, spec: DatasetSpec) -> pd.DataFrame:
    """Assert that the two partitions hold the same table, whatever the row order and files.

    Returns the job's rows, sorted.
    """
    got, want = pq.read_table(kit), pq.read_table(job)
    fields = [(f.name, str(f.type), f.nullable) for f in want.schema]
    assert [(f.name, str(f.type), f.nullable) for f in got.schema] == fields
    assert got.num_rows == want.num_rows

    data = list(spec.clean_columns)
    order = [(c, "ascending") for c in got.column_names]
    got_rows = got.sort_by(order).to_pandas()
    want_rows = want.sort_by(order).to_pandas()
    # The data columns identify a row (the job drops duplicates), so after sorting row i
    # of one is row i of the other and the label and split can be compared row by row.
    pd.testing.assert_frame_equal(got_rows[data], want_rows[data], check_exact=True)
    for column in (spec.label_name, "split"):
        differ = got_rows[column] != want_rows[column]
        assert not differ.any(), (
            f"{column} differs on {int(differ.sum())} of {len(differ)} rows, e.g.:\n"
            + want_rows.loc[differ, [*data[:4], column]].head().to_string()
            + f"\ntestkit wrote: {got_rows.loc[differ, column].head().tolist()}"
        )
    return want_rows


@pytest.fixture(scope="module")
def taxi_raw(taxi_csv: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A few hundred rows of the slice the stand-in gets (``taxi_csv``), and the kinds of
    row the job does not simply keep: the slice's rule breakers (zero-second trips with
    miles), an exact duplicate, a key duplicate, a copy with fields padded by spaces, a
    long written as 5.0, a row without a label and a malformed one."""
    lines = taxi_csv.read_text(encoding="utf-8").splitlines()
    header = next(csv.reader(lines[:1]))
    seconds, miles = header.index("trip_seconds"), header.index("trip_miles")
    payment, month = header.index("payment_type"), header.index("trip_start_month")
    stamp, tips = header.index("trip_start_timestamp"), header.index("tips")
    rows = [next(csv.reader([line])) for line in lines[1:]]
    breakers = [
        r for r in rows if r[seconds] and r[miles] and float(r[seconds]) == 0 < float(r[miles])
    ]
    assert breakers, "the slice has zero-second trips with miles"
    picked = [*rows[:300], *breakers]
    key_copy = list(rows[1])
    key_copy[payment] = "Mobile" if key_copy[payment] != "Mobile" else "Cash"
    padded = [f" {f} " if f else f for f in rows[2]]
    decimal = list(rows[3])
    decimal[month], decimal[stamp] = f"{decimal[month]}.0", str(int(decimal[stamp]) + 1)
    unlabelled = list(rows[4])
    unlabelled[tips] = ""
    picked += [list(rows[0]), key_copy, padded, decimal, unlabelled, rows[5][:3]]
    path = tmp_path_factory.mktemp("testkit_taxi") / "trips.csv"
    with open(path, "w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(picked)
    return path


def test_taxi_partition_equals_the_clean_jobs(spark: Any, taxi_raw: Path, tmp_path: Path) -> None:
    spec = load_spec("chicago_taxi")
    job, summary = _run_job(spark, "chicago_taxi", taxi_raw, tmp_path)
    kit = write_partition(taxi_raw, tmp_path / "kit" / f"ds={DS}", spec)

    rows = _assert_same_partition(kit, job, spec)

    # The input held what the stand-in must handle as the job does.
    assert summary["quarantine_reasons"]["rule zero_second_trip_with_miles"] > 0
    assert summary["quarantine_reasons"]["malformed: wrong field count"] == 1
    assert summary["duplicates"] == {"exact": 2, "key": 1}  # the copy, the padded one, the key
    assert set(rows["split"]) == {"train", "holdout"}
    assert set(rows[spec.label_name]) == {0, 1}
    assert len(rows) == summary["rows_clean"]


@pytest.mark.parametrize("name", ["palmer_penguins", "penguins_body_mass"])
def test_penguin_partition_equals_the_clean_jobs(name: str, spark: Any, tmp_path: Path) -> None:
    spec = load_spec(name)
    job, summary = _run_job(spark, name, PENGUINS_CSV, tmp_path)
    kit = write_partition(PENGUINS_CSV, tmp_path / "kit" / f"ds={DS}", spec)

    rows = _assert_same_partition(kit, job, spec)

    assert len(rows) == summary["rows_clean"]
    assert set(rows["split"]) == {"train", "holdout"}


def test_split_hash_is_sparks_xxhash64(spark: Any) -> None:
    """testkit's hash on values that cross XXH64's 4-, 8- and 32-byte steps, signs, zeros,
    NaN and nulls."""
    from pyspark.sql import functions as F

    letters = "abcdefghijklmnopqrstuvwxyz0123456789" * 2
    texts = [None, "", "é", "Flash Cab", *(letters[:k] for k in range(1, 45))]
    longs = [None, 0, -1, 2**63 - 1, -(2**63), *range(-22, 21)]
    doubles = [
        None,
        0.0,
        -0.0,
        float("nan"),
        float("inf"),
        1e-300,
        *(k / 3 for k in range(-21, 21)),
    ]
    assert len(texts) == len(longs) == len(doubles) == 48
    rows = list(zip(texts, longs, doubles, strict=True))
    frame = spark.createDataFrame(rows, "s string, l long, d double")
    table = pa.table(
        {
            "s": pa.array(texts, pa.string()),
            "l": pa.array(longs, pa.int64()),
            "d": pa.array(doubles, pa.float64()),
        }
    )
    want = [r[0] for r in frame.select(F.xxhash64("s", "l", "d")).collect()]
    assert spark_xxhash64(table, ["s", "l", "d"]).tolist() == want
