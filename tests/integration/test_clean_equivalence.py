"""The single-pass clean job writes what the earlier, multi-pass one wrote.

The job now parses each raw row once into a cache, finds duplicates with a hash aggregate
and counts while it writes (jobs/clean/main.py, jobs/clean/dedupe.py). The reference here
is the earlier pipeline, step by step: ``parse_rows``, ``add_derived``, ``apply_rules``,
``add_label``, ``add_split`` on the raw rows, then two window sorts (first copy per
schema row, then per dedupe key, in file order) and counts recomputed from the frames.
Both run on every shipped spec's sample and on a corpus of bad rows and duplicates spread
over two files; the clean rows, the quarantined rows and every count must be equal.
"""

from __future__ import annotations

import shutil
from collections import Counter
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from aimass.data.spec import DatasetSpec, load_spec
from aimass.platform.settings import Settings

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = sorted(p.stem for p in (ROOT / "conf" / "datasets").glob("*.yaml"))
DS = "2024-01-01"
TAXI_GOOD = (
    "60,27.05,10,2,3,1380593700,41.836150155,-87.648787952,,,12.6,,,Cash,"
    "Taxi Affiliation Services,1380,,0.0"
)


def _reference(spark: Any, spec: DatasetSpec, input_path: Path) -> dict[str, Any]:
    """The earlier job's rows and counts for ``input_path``, computed step by step."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    from jobs.clean.dedupe import POSITION_COLUMN
    from jobs.clean.inputs import check_input, read_batch
    from jobs.clean.transforms import (
        SPLIT_COLUMN,
        add_derived,
        add_label,
        add_split,
        apply_rules,
        parse_rows,
    )

    raw = read_batch(spark, check_input(spec, str(input_path)), spec).cache()
    assert POSITION_COLUMN in raw.columns  # read_batch gives each row its file position
    typed, malformed = parse_rows(raw, spec=spec)
    ok, broken = apply_rules(add_derived(typed, spec=spec), spec=spec)
    rows = add_split(add_label(ok, spec=spec), spec=spec)
    rows = rows.select(*spec.clean_columns, spec.label_name, SPLIT_COLUMN, POSITION_COLUMN)

    order = [F.col(POSITION_COLUMN).asc(), *(F.col(c).asc_nulls_first() for c in spec.columns)]
    ranked = rows.withColumn(
        "__first", F.row_number().over(Window.partitionBy(*spec.columns).orderBy(*order)) == 1
    )
    kind = F.when(~F.col("__first"), F.lit("exact"))
    if spec.dedupe_key:
        key = Window.partitionBy(*spec.dedupe_key, "__first").orderBy(*order)
        kind = kind.when(F.row_number().over(key) > 1, F.lit("key"))
    staged = ranked.withColumn("__duplicate", kind).cache()
    kept = staged.where(F.col("__duplicate").isNull()).drop("__first", "__duplicate")
    kept = kept.drop(POSITION_COLUMN)
    duplicates = Counter(
        r["__duplicate"] for r in staged.where(F.col("__duplicate").isNotNull()).collect()
    )
    quarantine = malformed.unionByName(broken)
    result = {
        "rows_in": raw.count(),
        "clean": Counter(tuple(r) for r in kept.collect()),
        "quarantine": Counter(tuple(r) for r in quarantine.collect()),
        "duplicates": {"exact": duplicates["exact"], "key": duplicates["key"]},
    }
    staged.unpersist()
    raw.unpersist()
    return result


def _job(spark: Any, spec: DatasetSpec, input_path: Path, base: Path) -> dict[str, Any]:
    """The job's summary and the rows it wrote for ``input_path``."""
    from jobs.clean.main import parse_args, run

    out, quarantine = base / "clean" / f"ds={DS}", base / "quarantine" / f"ds={DS}"
    summary = run(
        spark,
        parse_args(
            [
                "--spec",
                str(ROOT / "conf" / "datasets" / f"{spec.name}.yaml"),
                "--input",
                str(input_path),
                "--ds",
                DS,
                "--out",
                str(out),
                "--quarantine",
                str(quarantine),
                "--summary",
                str(base / "summary.json"),
            ]
        ),
    )
    columns = [*spec.clean_columns, spec.label_name, "split"]
    clean = pq.read_table(out).select(columns).to_pylist()
    rejected = pq.read_table(quarantine).select(["raw", "reason"]).to_pylist()
    return {
        "summary": summary,
        "clean": Counter(tuple(r[c] for c in columns) for r in clean),
        "quarantine": Counter((r["raw"], r["reason"]) for r in rejected),
    }


def _assert_same(spark: Any, spec: DatasetSpec, input_path: Path, base: Path) -> dict[str, Any]:
    expected = _reference(spark, spec, input_path)
    got = _job(spark, spec, input_path, base)
    summary = got["summary"]

    assert summary["rows_in"] == expected["rows_in"]
    assert got["clean"] == expected["clean"]
    assert got["quarantine"] == expected["quarantine"]
    assert summary["duplicates"] == expected["duplicates"]
    assert summary["rows_clean"] == sum(expected["clean"].values())
    splits = Counter(row[-1] for row in expected["clean"].elements())
    assert (summary["rows_train"], summary["rows_holdout"]) == (
        splits["train"],
        splits["holdout"],
    )
    return summary


@pytest.mark.parametrize("name", SHIPPED)
def test_every_shipped_sample_cleans_as_before(spark: Any, tmp_path: Path, name: str) -> None:
    from aimass.data.sample_data import fetch_sample

    spec = load_spec(name, ROOT / "conf")
    var_dir = Settings.from_env().var_dir
    fetch_sample(var_dir)
    sample = Path(spec.resolved_source_path(var_dir))
    # The sample twice, in two files: every row of the second is an exact duplicate.
    folder = tmp_path / "in"
    folder.mkdir()
    for copy in ("a", "b"):
        shutil.copy(sample, folder / f"{copy}{sample.suffix}")

    summary = _assert_same(spark, spec, folder, tmp_path / "job")

    assert summary["duplicates"]["exact"] >= summary["rows_clean"] > 0


def test_the_bad_input_corpus_cleans_as_before(spark: Any, tmp_path: Path) -> None:
    spec = load_spec("chicago_taxi", ROOT / "conf")
    good = [TAXI_GOOD.replace("1380593700", str(1380593700 + 60 * i)) for i in range(40)]
    fields = TAXI_GOOD.split(",")
    unparseable = ",".join(["x60", *fields[1:]])
    negative_fare = ",".join([fields[0], "-3", *fields[2:]])
    no_label = ",".join([*fields[:-1], ""])  # tips empty: the label is null
    key_copy = good[3].replace(",Cash,", ",Credit Card,")
    header = ",".join(spec.columns)
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "a.csv").write_text(
        "\n".join([header, *good[:30], good[0], "1,2,3", unparseable, negative_fare]) + "\n",
        encoding="utf-8",
    )
    (folder / "b.csv").write_bytes(
        (
            "\n".join([header, good[0], key_copy, *good[30:], no_label, TAXI_GOOD + ",extra"])
            + "\n"
        ).encode()
        + b"61,\xff\xfe,10,2,3,1380593700,,,,,1,,,Cash,X,1,,0.0\n"
    )

    summary = _assert_same(spark, spec, folder, tmp_path / "job")

    assert summary["duplicates"] == {"exact": 2, "key": 1}
    assert set(summary["quarantine_reasons"]) >= {
        "malformed: wrong field count",
        "malformed: bad encoding",
        "unparseable double in pickup_community_area",
        "rule fare_not_negative",
        "null label big_tipper: tips > 0.2 * fare",
    }
