"""The landing zone under an ``s3://`` prefix, against moto's S3 server on 127.0.0.1.

The same watcher and the same run step as for a local folder: files are claimed one event
each, taken once into the day's prefix and recorded, and a run reads the day's objects
where the clean job lists them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from testkit import moto_s3

from aimass.data import landing
from aimass.platform import s3io
from aimass.platform.settings import Settings

pytestmark = pytest.mark.integration

BUCKET = "aimass-landing"
ROOT = f"s3://{BUCKET}/landing"
ZONE = "landing/chicago_taxi/"
CSV = b"trip_start_timestamp,fare\n1400269500,5.25\n"


@pytest.fixture
def s3(tmp_path: Path, settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """A moto server with an empty bucket; AIMASS_LANDING_ROOT points into it."""
    with moto_s3(tmp_path):
        client = s3io.make_client()
        client.create_bucket(Bucket=BUCKET)
        monkeypatch.setenv("AIMASS_LANDING_ROOT", ROOT)
        yield client


def _keys(client: Any) -> list[str]:
    listed = client.list_objects_v2(Bucket=BUCKET).get("Contents", [])
    return sorted(item["Key"] for item in listed)


def _put(client: Any, name: str, body: bytes = CSV) -> None:
    client.put_object(Bucket=BUCKET, Key=ZONE + name, Body=body)


def _taxi_csv() -> bytes:
    from aimass.data.spec import load_spec

    columns = load_spec("chicago_taxi").columns
    return (",".join(columns) + "\n" + ",".join("1" for _ in columns) + "\n").encode()


def _taxi_parquet() -> bytes:
    import io

    import pyarrow as pa
    import pyarrow.parquet as pq

    from aimass.data.spec import load_spec

    sink = io.BytesIO()
    pq.write_table(pa.table({c: ["1"] for c in load_spec("chicago_taxi").columns}), sink)
    return sink.getvalue()


def test_the_watcher_claims_landed_objects_and_announces_leftovers(
    s3: Any, settings: Settings
) -> None:
    from aimass.data.landing_trigger import LandingZoneTrigger
    from aimass.platform.alerts import read_alerts

    zone = landing.zone_for(Settings.from_env(), "chicago_taxi")
    assert isinstance(zone, landing.S3Zone) and zone.location == f"{ROOT}/chicago_taxi/"
    _put(s3, ".claimed/20261126T000000000000Z-before_restart.csv")
    taxi, parquet = _taxi_csv(), _taxi_parquet()
    sizes = {"a.csv": len(taxi), "adult.data": len(taxi), "b.parquet": len(parquet)}
    for name in ("a.csv", "adult.data", "c.csv.tmp", ".hidden.csv"):
        _put(s3, name, taxi)
    _put(s3, "b.parquet", parquet)
    _put(s3, "notes.txt", b"some notes, not data\n")
    trigger = LandingZoneTrigger(
        zone.location, "chicago_taxi", poke_interval=0.05, settle_seconds=0.1
    )

    async def first(n: int) -> list[dict]:
        events = []
        async for event in trigger.run():
            events.append(event.payload)
            if len(events) == n:
                break
        return events

    replayed, *fresh = asyncio.run(asyncio.wait_for(first(4), timeout=30))
    assert replayed["original"] == "before_restart.csv" and replayed["replay"] is True
    # any suffix: the content says CSV or Parquet (ranged reads of the object)
    assert sorted(e["original"] for e in fresh) == ["a.csv", "adult.data", "b.parquet"]
    assert all(e["replay"] is False and e["bytes"] == sizes[e["original"]] for e in fresh)
    # moved, never deleted: the landed objects are now under .claimed/, the one the zone
    # will not take under rejected/ with its reason; partial and hidden names stay
    keys = _keys(s3)
    (rejected,) = [k for k in keys if k.startswith(ZONE + "rejected/") and k.endswith("notes.txt")]
    assert keys == sorted(
        [ZONE + f".claimed/{replayed['file']}"]
        + [ZONE + f".claimed/{e['file']}" for e in fresh]
        + [ZONE + n for n in ("c.csv.tmp", ".hidden.csv")]
        + [rejected, rejected + ".reason.txt"]
    )
    reason = s3.get_object(Bucket=BUCKET, Key=rejected + ".reason.txt")["Body"].read().decode()
    assert reason.startswith("notes.txt was not taken for chicago_taxi: its header does not")
    (alert,) = read_alerts(settings)
    assert alert["details"]["moved_to"] == f"s3://{BUCKET}/{rejected}"


def test_a_run_takes_the_claimed_objects_once_and_reads_the_days_prefix(s3: Any) -> None:
    from aimass.stages.retrain import prepare_run

    zone = landing.zone_for(Settings.from_env(), "chicago_taxi")
    _put(s3, "a.csv")
    _put(s3, "b.csv", CSV + b"1400269600,7.5\n")
    claimed = [zone.claim("a.csv"), zone.claim("b.csv")]
    assert None not in claimed and zone.claim("gone.csv") is None
    events = [zone.payload(name) for name in claimed if name]
    when = datetime(2026, 11, 26, 9, 30)

    ctx = prepare_run(
        {}, dag_id="aimass_retrain", run_id="asset__1", run_date=when, landed=events
    ).dump()
    day = f"{ROOT}/chicago_taxi/processed/ds=2026-11-26/"
    assert (ctx["dataset"], ctx["ds"], ctx["input_path"]) == ("chicago_taxi", "2026-11-26", day)
    assert sorted(ctx["landed_files"]) == sorted(claimed)
    # what the clean job will read: exactly the two files, not the ledger beside them
    assert sorted(o.name for o in s3io.list_objects(day)) == sorted(claimed)
    assert zone.pending() == []
    # a manual run without input_path reads this day: the newest that holds files
    assert zone.latest_day() == ("2026-11-26", 2)
    manual = prepare_run({}, dag_id="aimass_retrain", run_id="manual__1", run_date=when)
    assert manual.input_path == day and manual.trigger["input"]["from"] == "landing"
    ledger = zone.ledger()
    assert sorted(e["file"] for e in ledger) == sorted(claimed)
    assert {e["run_id"] for e in ledger} == {"asset__1"}
    assert all(e["path"].startswith(day) for e in ledger)

    # a duplicate event skips; a retry of the same run finds what it took
    with pytest.raises(landing.NothingLanded, match="taken by another run"):
        prepare_run({}, dag_id="aimass_retrain", run_id="asset__2", run_date=when, landed=events)
    assert sorted(e["file"] for e in zone.take(ds="2026-11-26", run_id="asset__1")) == sorted(
        claimed
    )


def test_a_move_interrupted_half_way_is_finished_not_repeated(
    s3: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    zone = landing.zone_for(Settings.from_env(), "chicago_taxi")
    assert isinstance(zone, landing.S3Zone)
    _put(s3, "a.csv")
    first = zone.claim("a.csv")
    assert first is not None
    (entry,) = zone.take(ds="2026-11-26", run_id="r1")
    # a take that copied and wrote the ledger but died before deleting the claimed copy
    s3.copy_object(
        Bucket=BUCKET,
        Key=f"{ZONE}.claimed/{first}",
        CopySource={"Bucket": BUCKET, "Key": f"{ZONE}processed/ds=2026-11-26/{first}"},
    )
    assert zone.pending() == [first]
    assert zone.take(ds="2026-11-27", run_id="r2") == []
    assert zone.pending() == [] and [e["run_id"] for e in zone.ledger()] == ["r1"]
    assert not [k for k in _keys(s3) if "ds=2026-11-27" in k]

    # a claim that copied but died before deleting the landed object: claimed again under
    # the same name, so one file still gives one claimed object
    _put(s3, "b.csv")
    delete = zone.client.delete_object
    monkeypatch.setattr(zone.client, "delete_object", _killed)
    with pytest.raises(_Killed):
        zone.claim("b.csv")
    monkeypatch.setattr(zone.client, "delete_object", delete)
    (second,) = zone.pending()
    assert f"{ZONE}b.csv" in _keys(s3)  # copied, not yet deleted
    assert zone.claim("b.csv") == second and zone.pending() == [second]
    assert f"{ZONE}b.csv" not in _keys(s3)


def test_a_new_upload_under_a_claimed_name_is_claimed_on_its_own(
    s3: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    zone = landing.zone_for(Settings.from_env(), "chicago_taxi")
    assert isinstance(zone, landing.S3Zone)
    head = zone._head
    # S3 upload times are whole seconds: both uploads in the same one
    same_second = datetime(2026, 11, 26, 11, 10, 9, tzinfo=UTC)
    monkeypatch.setattr(
        zone,
        "_head",
        lambda key: {**found, "LastModified": same_second} if (found := head(key)) else None,
    )
    _put(s3, "a.csv")
    first = zone.claim("a.csv")
    _put(s3, "a.csv", CSV + b"1400269501,7.5\n")
    second = zone.claim("a.csv")
    assert first and second and first != second
    assert zone.pending() == sorted([first, second])
    assert all(name.split("-", 1)[1] == "a.csv" for name in (first, second))
    taken = zone.take(ds="2026-11-26", run_id="r1")
    assert sorted(e["bytes"] for e in taken) == [len(CSV), len(CSV) + 15]


class _Killed(Exception):
    """The process dying between two S3 calls."""


def _killed(**_: Any) -> None:
    raise _Killed


def test_an_unreachable_zone_says_what_to_fix(
    tmp_path: Path, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    from testkit import free_port

    from aimass.platform.errors import ConfigError

    with moto_s3(tmp_path):
        monkeypatch.setenv(s3io.ENDPOINT_ENV, f"http://127.0.0.1:{free_port()}")
        zone = landing.zone_at(f"{ROOT}/chicago_taxi/", "chicago_taxi")
        with pytest.raises(ConfigError, match="unreachable"):
            zone.settled({}, settle_s=0)


def test_the_landing_root_is_checked_and_allowed_as_an_input(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    from aimass.platform.errors import ConfigError
    from aimass.stages.validation import validate_params

    monkeypatch.setenv("AIMASS_LANDING_ROOT", "s3://x/landing")
    with pytest.raises(ConfigError, match="AIMASS_LANDING_ROOT"):
        Settings.from_env()
    monkeypatch.setenv("AIMASS_LANDING_ROOT", "gs://bucket/landing")
    with pytest.raises(ConfigError, match="AIMASS_LANDING_ROOT"):
        Settings.from_env()
    monkeypatch.setenv("AIMASS_LANDING_ROOT", ROOT)
    assert Settings.from_env().landing_location("penguins") == f"{ROOT}/penguins/"
    when = datetime(2026, 11, 26)
    ok = validate_params(
        {"input_path": f"{ROOT}/chicago_taxi/processed/ds=2026-11-26/"},
        Settings.from_env(),
        run_date=when,
    )
    assert ok.input_path == f"{ROOT}/chicago_taxi/processed/ds=2026-11-26/"
    with pytest.raises(ConfigError, match="outside the allowed S3 roots"):
        validate_params(
            {"input_path": f"s3://{BUCKET}/elsewhere/x.csv"}, Settings.from_env(), run_date=when
        )
