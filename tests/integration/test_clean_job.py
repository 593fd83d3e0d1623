"""The clean job end to end: real spark-submit on a slice of the Chicago Taxi sample."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from aimass.platform.errors import ConfigError, StageError
from aimass.platform.settings import REPO_ROOT, Settings

pytestmark = pytest.mark.integration

DS = "2024-01-01"
SPARK_SUBMIT = Path(sys.executable).parent / "spark-submit"
GOOD = "60,27.05,10,2,3,1380593700,41.836150155,-87.648787952,,,12.6,,,Cash,Taxi Affiliation Services,1380,,0.0"
# Injected lines and the reason each one must be quarantined with.
BAD_LINES: dict[bytes, str] = {
    b"60,27.05,10,2,3": "malformed: wrong field count",
    GOOD.replace("27.05", "abc").encode(): "unparseable double in fare: 'abc'",
    GOOD.replace(",10,2,3,", ",1O,2,3,").encode(): "unparseable long in trip_start_month: '1O'",
    GOOD.replace("27.05", "-4.5").encode(): "rule fare_not_negative",
    GOOD.replace("Taxi Affiliation", "Caf\xe9").encode("latin-1"): "malformed: bad encoding",
    # Longer than the 500 characters a summary sample keeps of a raw line.
    b"60,27.05," + b"x" * 600: "malformed: wrong field count",
}


def _rule_breakers(data: bytes) -> dict[str, str]:
    """Lines of the real sample that break a spec rule, found without Spark (csv module).

    The taxi spec quarantines zero-second trips with miles; the sample has a few.
    """
    lines = data.decode("utf-8").splitlines()
    header = next(csv.reader(lines[:1]))
    seconds, miles = header.index("trip_seconds"), header.index("trip_miles")
    out = {}
    for line in lines[1:]:
        fields = next(csv.reader([line]))
        if fields[seconds] and fields[miles] and float(fields[seconds]) == 0 < float(fields[miles]):
            out[line] = "rule zero_second_trip_with_miles"
    return out


def _args(settings: Settings, input_path: Path) -> list[str]:
    return [
        "--spec",
        "chicago_taxi",
        "--input",
        str(input_path),
        "--ds",
        DS,
        "--out",
        str(settings.clean_partition("chicago_taxi", DS)),
        "--quarantine",
        str(settings.quarantine_partition("chicago_taxi", DS)),
        "--summary",
        str(settings.report_dir("chicago_taxi", DS) / "clean_summary.json"),
    ]


@pytest.fixture(scope="module")
def job(taxi_csv: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One real spark-submit run on the 3,000-row slice plus the injected bad lines."""
    base = tmp_path_factory.mktemp("clean_job")
    settings = Settings(root=REPO_ROOT, var_dir=base / "var")
    landing = base / "landing"
    landing.mkdir()
    data = taxi_csv.read_bytes()
    (landing / "trips.csv").write_bytes(data + b"\n".join(BAD_LINES) + b"\n")
    env = {
        **os.environ,
        **settings.env(),
        "PYSPARK_PYTHON": sys.executable,
        "PYSPARK_DRIVER_PYTHON": sys.executable,
    }
    cmd = [
        str(SPARK_SUBMIT),
        "--master",
        "local[2]",
        "jobs/clean/main.py",
        *_args(settings, landing),
    ]
    proc = subprocess.run(
        cmd, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=600, check=False
    )
    assert proc.returncode == 0, (
        f"{' '.join(cmd)} exited {proc.returncode}:\n{(proc.stdout + proc.stderr)[-4000:]}"
    )
    summary_path = settings.report_dir("chicago_taxi", DS) / "clean_summary.json"
    return {
        "settings": settings,
        "landing": landing,
        "rows_in": data.count(b"\n") - 1 + len(BAD_LINES),
        "rule_breakers": _rule_breakers(data),
        "summary": json.loads(summary_path.read_text()),
        # spark-submit forwards the Python driver's stderr to its own stdout.
        "log": proc.stdout + proc.stderr,
    }


def test_summary_follows_the_contract_and_conserves_rows(job: dict[str, Any]) -> None:
    summary = job["summary"]
    assert {
        "dataset",
        "ds",
        "input",
        "rows_in",
        "rows_clean",
        "rows_quarantined",
        "rows_train",
        "rows_holdout",
        "quarantine_reasons",
    } <= set(summary)
    assert (summary["dataset"], summary["ds"]) == ("chicago_taxi", DS)
    assert summary["rows_in"] == job["rows_in"] == 3000 + len(BAD_LINES)
    assert summary["rows_in"] == summary["rows_clean"] + summary["rows_quarantined"]
    breakers = len(job["rule_breakers"])
    assert breakers > 0  # the real sample has zero-second trips with miles
    assert summary["rows_quarantined"] == len(BAD_LINES) + breakers
    assert summary["rows_train"] + summary["rows_holdout"] == summary["rows_clean"]
    assert summary["quarantine_reasons"] == {
        "malformed: wrong field count": 2,
        "unparseable double in fare": 1,
        "unparseable long in trip_start_month": 1,
        "rule fare_not_negative": 1,
        "malformed: bad encoding": 1,
        "rule zero_second_trip_with_miles": breakers,
    }
    assert f"read {3000 + len(BAD_LINES)} raw rows" in job["log"]


def test_summary_keeps_a_few_sample_lines_per_quarantine_reason(job: dict[str, Any]) -> None:
    from aimass.platform.records import CleanResult

    summary = job["summary"]
    samples = summary["quarantine_samples"]
    bad = {line.decode("utf-8", errors="replace"): r for line, r in BAD_LINES.items()}
    bad.update(job["rule_breakers"])
    # Every kind, in the counts' order (most common first).
    assert list(samples) == list(summary["quarantine_reasons"])
    for kind, rows in samples.items():
        assert 1 <= len(rows) <= 3
        assert len(rows) == min(3, summary["quarantine_reasons"][kind])
        for row in rows:
            assert set(row) == {"raw", "reason"}
            assert row["reason"].split(": '")[0] == kind
            if row["raw"].endswith("\u2026"):
                # Cut to 500 characters: the beginning of one of the input's bad lines.
                assert len(row["raw"]) == 501
                (full,) = [line for line in bad if line.startswith(row["raw"][:-1])]
                assert len(full) > 500
                assert bad[full] == row["reason"]
            else:
                assert bad[row["raw"]] == row["reason"]
    # More rule breakers than samples: capped at 3.
    assert len(job["rule_breakers"]) > 3
    assert len(samples["rule zero_second_trip_with_miles"]) == 3
    assert any(r["raw"].endswith("\u2026") for r in samples["malformed: wrong field count"])
    # The typed record carries them through (DataChecks and RunSummary embed it).
    assert CleanResult.of(summary).quarantine_samples == samples


def test_clean_partition_is_typed_labelled_and_split(job: dict[str, Any]) -> None:
    partition = job["settings"].clean_partition("chicago_taxi", DS)
    assert list(partition.glob("*.parquet"))
    table = pq.read_table(partition)
    types = {f.name: str(f.type) for f in table.schema}
    assert types["fare"] == "double"
    assert types["trip_start_hour"] == "int64"
    assert types["company"] == "string"
    assert types["big_tipper"] == "int32"
    assert table.num_rows == job["summary"]["rows_clean"]
    frame = table.to_pandas()
    assert set(frame["big_tipper"].unique()) == {0, 1}
    assert (frame["big_tipper"] == (frame["tips"] > 0.2 * frame["fare"]).astype(int)).all()
    holdout = (frame["split"] == "holdout").mean()
    assert set(frame["split"].unique()) == {"train", "holdout"}
    assert 0.15 < holdout < 0.25
    assert (frame["fare"] >= 0).all()
    # The spec's derived column, computed by the job.
    assert types["trip_speed_mph"] == "double"
    moving = frame[frame["trip_seconds"] > 0]
    expected_speed = moving["trip_miles"] * 3600.0 / moving["trip_seconds"]
    assert (moving["trip_speed_mph"] - expected_speed).abs().max() < 1e-9
    assert frame.loc[frame["trip_seconds"] == 0, "trip_speed_mph"].isna().all()


def test_quarantine_keeps_the_raw_line_and_the_reason(job: dict[str, Any]) -> None:
    partition = job["settings"].quarantine_partition("chicago_taxi", DS)
    rows = pq.read_table(partition).to_pylist()
    got = {r["raw"]: r["reason"] for r in rows}
    expected = {
        line.decode("utf-8", errors="replace"): reason for line, reason in BAD_LINES.items()
    }
    assert got == {**expected, **job["rule_breakers"]}


def test_rerun_replaces_its_partition_instead_of_duplicating_it(
    job: dict[str, Any], spark: Any
) -> None:
    from jobs.clean.main import parse_args, run

    settings = job["settings"]
    partition = settings.clean_partition("chicago_taxi", DS)
    before = sorted(p.name for p in partition.glob("*.parquet"))

    summary = run(spark, parse_args(_args(settings, job["landing"])))

    after = sorted(p.name for p in partition.glob("*.parquet"))
    assert after and after != before  # new files, old ones gone
    assert (
        pq.read_table(partition).num_rows == summary["rows_clean"] == job["summary"]["rows_clean"]
    )
    assert pq.read_table(settings.quarantine_partition("chicago_taxi", DS)).num_rows == len(
        BAD_LINES
    ) + len(job["rule_breakers"])
    # Nothing left behind next to the partitions (staging or old copies).
    assert [p.name for p in partition.parent.iterdir()] == [partition.name]
    # Reruns split identically.
    assert summary["rows_holdout"] == job["summary"]["rows_holdout"]


def test_failed_run_leaves_the_previous_partition_in_place(
    job: dict[str, Any], spark: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import jobs.clean.transforms as transforms
    from jobs.clean.main import parse_args, run

    settings = job["settings"]
    partition = settings.clean_partition("chicago_taxi", DS)
    before = sorted(p.name for p in partition.glob("*.parquet"))
    real_split_rows = transforms.split_rows

    def losing_rows(df: Any, *, spec: Any) -> Any:
        clean, quarantine = real_split_rows(df, spec=spec)
        return clean.limit(10), quarantine

    monkeypatch.setattr(transforms, "split_rows", losing_rows)
    with pytest.raises(StageError, match="rows are not conserved"):
        run(spark, parse_args(_args(settings, job["landing"])))

    assert sorted(p.name for p in partition.glob("*.parquet")) == before
    assert [p.name for p in partition.parent.iterdir()] == [partition.name]


def test_missing_input_names_the_path(spark: Any, settings: Settings, tmp_path: Path) -> None:
    from jobs.clean.main import parse_args, run

    missing = tmp_path / "nowhere" / "trips.csv"
    with pytest.raises(ConfigError, match=f"{missing}.*does not exist"):
        run(spark, parse_args(_args(settings, missing)))


def test_header_mismatch_names_the_columns(spark: Any, settings: Settings, tmp_path: Path) -> None:
    from aimass.data.spec import load_spec
    from jobs.clean.main import parse_args, run

    columns = ["fare_amount" if c == "fare" else c for c in load_spec("chicago_taxi").columns]
    csv = tmp_path / "renamed.csv"
    csv.write_text(",".join(columns) + "\n" + GOOD + "\n")
    with pytest.raises(
        ConfigError, match=r"missing columns \['fare'\], unexpected columns \['fare_amount'\]"
    ):
        run(spark, parse_args(_args(settings, csv)))
    assert not settings.clean_partition("chicago_taxi", DS).exists()


def test_cli_rejects_a_ds_that_is_not_yyyy_mm_dd(
    settings: Settings, taxi_csv: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from jobs.clean.main import parse_args

    argv = _args(settings, taxi_csv)
    assert parse_args(argv).ds == DS
    argv[argv.index(DS)] = "01/02/2024"
    with pytest.raises(SystemExit):
        parse_args(argv)
    assert "pass it as YYYY-MM-DD" in capsys.readouterr().err
