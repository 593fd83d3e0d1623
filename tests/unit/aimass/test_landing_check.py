"""What the landing zone takes: the spec's format told by content, the rest moved aside with
a reason and an alert (aimass.data.landing_check)."""

from __future__ import annotations

import asyncio
import dataclasses
import io

import pytest

from aimass.data import landing, landing_check
from aimass.data.spec import DatasetSpec, load_spec
from aimass.platform.alerts import read_alerts
from aimass.platform.settings import Settings

pytestmark = pytest.mark.unit


@pytest.fixture
def spec() -> DatasetSpec:
    return load_spec("chicago_taxi")


def _csv(spec: DatasetSpec, *, delimiter: str = ",", header: list[str] | None = None) -> bytes:
    columns = header if header is not None else list(spec.columns)
    row = delimiter.join("1" for _ in spec.columns)
    return (delimiter.join(columns) + "\n" + row + "\n").encode("utf-8")


def _parquet(spec: DatasetSpec) -> bytes:
    import pyarrow as pa
    import pyarrow.parquet as pq

    sink = io.BytesIO()
    pq.write_table(pa.table({c: ["1"] for c in spec.columns}), sink)
    return sink.getvalue()


def _zone(settings: Settings, files: dict[str, bytes]) -> landing.LocalZone:
    zone = landing.zone_for(settings, "chicago_taxi")
    assert isinstance(zone, landing.LocalZone)
    zone.folder.mkdir(parents=True, exist_ok=True)
    for name, content in files.items():
        (zone.folder / name).write_bytes(content)
    return zone


def _refusal(spec: DatasetSpec, name: str, content: bytes) -> str | None:
    size = len(content)
    sample = landing_check.Sample(content[: landing_check.SAMPLE_BYTES], content[-4:], size)
    return landing_check.refusal(spec, name, sample)


def test_a_csv_is_taken_whatever_its_suffix(spec: DatasetSpec) -> None:
    for name in ("adult.data", "trips", "trips.CSV", "export.txt"):
        assert _refusal(spec, name, _csv(spec)) is None, name
    # a BOM and CRLF line ends are still the spec's header
    assert _refusal(spec, "win.data", b"\xef\xbb\xbf" + _csv(spec).replace(b"\n", b"\r\n")) is None


def test_the_spec_delimiter_and_quote_split_the_header(spec: DatasetSpec) -> None:
    semi = dataclasses.replace(spec, delimiter=";")
    assert _refusal(semi, "trips.data", _csv(spec, delimiter=";")) is None
    why = _refusal(semi, "trips.data", _csv(spec))
    assert why is not None and "delimiter ';'" in why and "missing columns" in why
    quoted = ",".join(f'"{c}"' for c in spec.columns).encode() + b"\n"
    assert _refusal(spec, "quoted.data", quoted) is None


def test_a_parquet_file_needs_no_suffix_in_a_parquet_dataset(spec: DatasetSpec) -> None:
    parquet_spec = dataclasses.replace(spec, source_format="parquet")
    content = _parquet(spec)
    assert content[:4] == content[-4:] == b"PAR1"
    assert _refusal(parquet_spec, "export", content) is None
    assert _refusal(parquet_spec, "export.parquet", content) is None
    # the same bytes in a CSV dataset's zone: taken only when the name says parquet
    assert _refusal(spec, "export.parquet", content) is None
    why = _refusal(spec, "export", content)
    assert why is not None and "declares source.format csv" in why
    # a CSV in a Parquet dataset's zone, under a name that does not say csv
    why = _refusal(parquet_spec, "trips.data", _csv(spec))
    assert (
        why is not None
        and "it is csv, but spec 'chicago_taxi' declares source.format parquet" in why
    )


def test_a_name_that_lies_about_the_format_is_refused(spec: DatasetSpec) -> None:
    why = _refusal(spec, "trips.csv", _parquet(spec))
    assert why is not None and "it is parquet but named *.csv" in why


@pytest.mark.parametrize(
    ("name", "content", "reason"),
    [
        ("wrong.csv", b"a,b,c\n1,2,3\n", "missing columns ['pickup_community_area'"),
        ("empty.data", b"", "empty (0 bytes)"),
        ("photo.jpg", b"\xff\xd8\xff\xe0\x00\x10JFIF\x00", "binary (NUL bytes)"),
        ("trips.csv.gz", b"\x1f\x8b\x08\x00rest", "gzip-compressed"),
        ("cut.parquet", b"PAR1" + b"x" * 100, "no PAR1 footer"),
        ("latin1.data", "café,x\n".encode("latin-1"), "not UTF-8 text"),
    ],
)
def test_files_the_zone_will_not_take(
    spec: DatasetSpec, name: str, content: bytes, reason: str
) -> None:
    why = _refusal(spec, name, content)
    assert why is not None and reason in why


def test_a_headerless_spec_checks_the_field_count(spec: DatasetSpec) -> None:
    bare = dataclasses.replace(spec, header=False)
    row = ",".join("1" for _ in spec.columns).encode() + b"\n"
    assert _refusal(bare, "rows.data", row) is None
    why = _refusal(bare, "rows.data", b"1;2;3\n")
    assert why is not None and "1 field(s) on ','" in why


def test_a_refused_file_is_moved_aside_with_its_reason_and_an_alert(
    settings: Settings, spec: DatasetSpec
) -> None:
    zone = _zone(settings, {"adult.data": _csv(spec), "wrong.csv": b"a;b\n1;2\n"})
    assert landing_check.admit(zone, spec, "adult.data", settings=settings) is True
    assert (zone.folder / "adult.data").is_file()  # taken: left for the claim
    assert landing_check.admit(zone, spec, "wrong.csv", settings=settings) is False
    assert not (zone.folder / "wrong.csv").exists()
    rejected = zone.folder / landing.REJECTED
    (moved,) = [p for p in rejected.iterdir() if not p.name.endswith(".reason.txt")]
    assert moved.name.endswith("-wrong.csv") and moved.read_bytes() == b"a;b\n1;2\n"
    reason = (rejected / (moved.name + ".reason.txt")).read_text(encoding="utf-8")
    assert reason.startswith("wrong.csv was not taken for chicago_taxi: its header does not")
    (alert,) = read_alerts(settings)
    assert alert["title"] == "landed file wrong.csv of chicago_taxi rejected"
    assert alert["details"]["reason"] == reason.strip()
    assert alert["details"]["moved_to"] == str(moved)
    # a file that vanished before it was looked at is neither taken nor moved
    assert landing_check.admit(zone, spec, "gone.csv", settings=settings) is False


def test_the_watcher_claims_a_dot_data_csv_and_moves_a_bad_file_aside(
    settings: Settings, spec: DatasetSpec
) -> None:
    from aimass.data.landing_trigger import LandingZoneTrigger

    zone = _zone(settings, {"bad.csv": b"\x00\x01\x02", "adult.data": _csv(spec)})
    (zone.folder / ".hidden").write_bytes(b"\x00")
    (zone.folder / "upload.part").write_bytes(b"\x00")
    trigger = LandingZoneTrigger(
        zone.location, "chicago_taxi", poke_interval=0.05, settle_seconds=0.1
    )

    async def first() -> dict:
        async for event in trigger.run():
            return event.payload
        raise AssertionError("the watcher stopped")

    payload = asyncio.run(asyncio.wait_for(first(), timeout=10))
    assert payload["original"] == "adult.data"
    assert (zone.folder / landing.CLAIMED / payload["file"]).is_file()
    rejected = sorted(p.name for p in (zone.folder / landing.REJECTED).iterdir())
    assert len(rejected) == 2 and rejected[0].endswith("-bad.csv")
    assert rejected[1].endswith("-bad.csv.reason.txt")
    # hidden and partial uploads are left where they are
    assert (zone.folder / ".hidden").exists() and (zone.folder / "upload.part").exists()
    assert [a["details"]["file"] for a in read_alerts(settings)] == ["bad.csv"]
