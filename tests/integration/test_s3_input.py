"""The clean job on ``s3://`` inputs, against moto's S3 server on 127.0.0.1.

The job stages the objects on local disk and runs the same checks and the same Spark read
as for a local input, so an S3 run must give exactly what a local run of the same bytes
gives; errors (missing bucket, empty prefix, no credentials, unreachable endpoint, access
denied) must say what to fix and leave nothing behind.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
from testkit import TAXI_SPEC, free_port, moto_s3

from aimass.data.spec import load_spec
from aimass.platform import s3io
from aimass.platform.errors import ConfigError

pytestmark = pytest.mark.integration

DS = "2024-01-01"
BUCKET = "aimass-landing"
ROWS = 600
SPEC = load_spec(TAXI_SPEC)
_ARROW = {"double": pa.float64(), "long": pa.int64(), "string": pa.string()}


def _csv(lines: list[str]) -> bytes:
    return "".join(lines).encode("utf-8")


@pytest.fixture(scope="module")
def s3(taxi_csv: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A moto S3 server on 127.0.0.1 holding the sample in several layouts."""
    base = tmp_path_factory.mktemp("s3_input")
    with open(taxi_csv, encoding="utf-8") as fh:
        header, *rows = list(itertools.islice(fh, ROWS + 1))
    local_csv = base / "trips.csv"
    local_csv.write_bytes(_csv([header, *rows]))
    local_parquet = base / "trips.parquet"
    types = pacsv.ConvertOptions(column_types={c: _ARROW[t] for c, t in SPEC.schema})
    pq.write_table(pacsv.read_csv(local_csv, convert_options=types), local_parquet)

    with moto_s3(base) as endpoint:
        client = s3io.make_client()
        client.create_bucket(Bucket=BUCKET)
        half = len(rows) // 2
        objects = {
            "taxi/trips.csv": local_csv.read_bytes(),
            # A folder as Spark writers leave it: two parts, markers, a sub-folder.
            "batch/part-a.csv": _csv([header, *rows[:half]]),
            "batch/part-b.csv": _csv([header, *rows[half:]]),
            "batch/_SUCCESS": b"",
            "batch/.part-a.csv.crc": b"crc",
            "batch/older/part-c.csv": b"not,the,header\n",
            "parquet/trips.parquet": local_parquet.read_bytes(),
            "only-markers/_SUCCESS": b"",
            "zero/trips.csv": b"",
        }
        for key, body in objects.items():
            client.put_object(Bucket=BUCKET, Key=key, Body=body)
        yield {
            "endpoint": endpoint,
            "client": client,
            "csv": local_csv,
            "parquet": local_parquet,
            "base": base,
        }


def argv(base: Path, input_path: str) -> list[str]:
    return [
        "--spec",
        "chicago_taxi",
        "--input",
        input_path,
        "--ds",
        DS,
        "--out",
        str(base / "clean" / f"ds={DS}"),
        "--quarantine",
        str(base / "quarantine" / f"ds={DS}"),
        "--summary",
        str(base / "reports" / "clean_summary.json"),
    ]


def run_job(spark: Any, base: Path, input_path: str | Path) -> dict[str, Any]:
    from jobs.clean.main import parse_args, run

    summary: dict[str, Any] = run(spark, parse_args(argv(base, str(input_path))))
    return summary


def counts(summary: dict[str, Any]) -> dict[str, Any]:
    """The summary without the fields that name where the batch came from or went."""
    return {k: v for k, v in summary.items() if k not in {"input", "inputs", "out", "quarantine"}}


def run_summary(base: Path) -> dict[str, Any]:
    summary: dict[str, Any] = json.loads((base / "reports" / "clean_summary.json").read_text())
    return summary


def clean_rows(base: Path) -> list[tuple[Any, ...]]:
    rows = pq.read_table(base / "clean" / f"ds={DS}").to_pylist()
    return sorted((tuple(r.values()) for r in rows), key=repr)


def assert_nothing_left_beside(base: Path) -> None:
    """Only the partitions beside each other: the staged copy of the input is gone."""
    for kind in ("clean", "quarantine"):
        assert [p.name for p in (base / kind).iterdir()] == [f"ds={DS}"]


@pytest.fixture(scope="module")
def local_csv_run(spark: Any, s3: dict[str, Any]) -> Path:
    """The same sample cleaned from local disk: what every S3 CSV run must equal."""
    base = s3["base"] / "local_csv"
    summary = run_job(spark, base, s3["csv"])
    assert summary["rows_in"] == ROWS
    return base


def test_s3_object_gives_what_the_same_local_file_gives(
    spark: Any, s3: dict[str, Any], local_csv_run: Path, tmp_path: Path
) -> None:
    uri = f"s3://{BUCKET}/taxi/trips.csv"

    summary = run_job(spark, tmp_path, uri)

    local = run_summary(local_csv_run)
    assert summary["input"] == uri
    assert summary["inputs"] == [uri]  # what the lake records the batch was cleaned from
    assert summary["format"] == "csv"
    assert summary["rows_in"] == ROWS
    assert counts(summary) == counts(local)
    assert clean_rows(tmp_path) == clean_rows(local_csv_run)
    assert_nothing_left_beside(tmp_path)


def test_s3_prefix_reads_every_part_and_skips_markers_and_sub_folders(
    spark: Any, s3: dict[str, Any], local_csv_run: Path, tmp_path: Path
) -> None:
    # s3a:// names the same objects; the summary keeps the URI as given.
    uri = f"s3a://{BUCKET}/batch"

    summary = run_job(spark, tmp_path, uri)

    assert summary["input"] == uri
    # The two parts hold the local file's rows: the split hashes row content, so all match.
    assert counts(summary) == counts(run_summary(local_csv_run))
    assert clean_rows(tmp_path) == clean_rows(local_csv_run)
    assert_nothing_left_beside(tmp_path)


def test_s3_parquet_object_gives_what_the_same_local_file_gives(
    spark: Any, s3: dict[str, Any], tmp_path: Path
) -> None:
    uri = f"s3://{BUCKET}/parquet/trips.parquet"

    remote = run_job(spark, tmp_path / "s3", uri)
    local = run_job(spark, tmp_path / "local", s3["parquet"])

    assert remote["format"] == "parquet" and remote["input"] == uri
    assert remote["rows_in"] == ROWS
    assert counts(remote) == counts(local)
    assert clean_rows(tmp_path / "s3") == clean_rows(tmp_path / "local")
    assert_nothing_left_beside(tmp_path / "s3")


@pytest.mark.parametrize(
    ("key", "message"),
    [
        (
            "s3://no-such-bucket/trips.csv",
            r"bucket 'no-such-bucket' does not exist at http://127\.0\.0\.1:\d+; fix the bucket",
        ),
        (
            f"s3://{BUCKET}/nothing-here/",
            rf"there are no objects under s3://{BUCKET}/nothing-here/ .*upload the batch",
        ),
        (
            f"s3://{BUCKET}/taxi/trip.csv",
            rf"no object s3://{BUCKET}/taxi/trip\.csv and no objects under",
        ),
        (
            f"s3://{BUCKET}/only-markers",
            r"holds only hidden objects \['_SUCCESS'\] and sub-folders \[\]",
        ),
        # The local check on the staged copy, reported with the object's URI.
        (f"s3://{BUCKET}/zero/", rf"input file s3://{BUCKET}/zero/trips\.csv is empty \(0 bytes"),
    ],
    ids=["missing bucket", "empty prefix", "missing object", "only markers", "empty object"],
)
def test_bad_s3_input_is_a_clear_error_and_writes_nothing(
    spark: Any, s3: dict[str, Any], tmp_path: Path, key: str, message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        run_job(spark, tmp_path, key)

    assert not (tmp_path / "clean" / f"ds={DS}").exists()
    assert not (tmp_path / "reports").exists()
    # No staged copy left behind either.
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []


def test_no_credentials_is_a_clear_error(
    spark: Any, s3: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")

    with pytest.raises(ConfigError, match=r"no AWS credentials .*set AWS_ACCESS_KEY_ID"):
        run_job(spark, tmp_path, f"s3://{BUCKET}/taxi/trips.csv")
    assert not (tmp_path / "clean").exists()


def test_unreachable_endpoint_is_a_clear_error(
    spark: Any, s3: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv(s3io.ENDPOINT_ENV, dead)

    with pytest.raises(
        ConfigError, match=rf"S3 endpoint {dead} is unreachable .*check AIMASS_S3_ENDPOINT_URL"
    ):
        run_job(spark, tmp_path, f"s3://{BUCKET}/taxi/trips.csv")
    assert not (tmp_path / "clean").exists()


def test_access_denied_names_the_permissions(s3: dict[str, Any]) -> None:
    from botocore.stub import Stubber

    client = s3io.make_client()
    with Stubber(client) as stub:
        stub.add_client_error(
            "list_objects_v2", service_error_code="AccessDenied", http_status_code=403
        )
        with pytest.raises(
            ConfigError, match=rf"access denied .*s3:ListBucket on bucket '{BUCKET}'"
        ):
            s3io.list_objects(f"s3://{BUCKET}/batch/", client=client)


def test_endpoint_comes_from_aimass_setting_first_then_aws(
    s3: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    uri = f"s3://{BUCKET}/batch/"
    names = ["part-a.csv", "part-b.csv"]
    # boto3 reads AWS_ENDPOINT_URL itself...
    monkeypatch.delenv(s3io.ENDPOINT_ENV)
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3["endpoint"])
    assert [o.name for o in s3io.list_objects(uri)] == names
    # ...and AIMASS_S3_ENDPOINT_URL wins over it.
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv(s3io.ENDPOINT_ENV, s3["endpoint"])
    assert [o.name for o in s3io.list_objects(uri)] == names


def test_early_check_lists_without_downloading(s3: dict[str, Any]) -> None:
    from jobs.clean.inputs import check_input

    batch = check_input(SPEC, f"s3://{BUCKET}/parquet/")

    assert (batch.path, batch.format, batch.files) == (f"s3://{BUCKET}/parquet/", "parquet", ())


def test_stage_downloads_the_objects_under_their_names(s3: dict[str, Any], tmp_path: Path) -> None:
    files = s3io.stage(f"s3://{BUCKET}/batch", tmp_path / "staged")

    assert [f.name for f in files] == ["part-a.csv", "part-b.csv"]
    assert sorted(p.name for p in (tmp_path / "staged").iterdir()) == ["part-a.csv", "part-b.csv"]
    body = b"".join(f.read_bytes() for f in files)
    assert body.count(b"\n") == ROWS + 2  # two headers
