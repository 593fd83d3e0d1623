"""The landing zone: settle, claim, take exactly once; and the watcher's events."""

from __future__ import annotations

import asyncio
import os
from datetime import datetime
from pathlib import Path

import pytest

from aimass.data import landing
from aimass.platform.settings import Settings

pytestmark = pytest.mark.unit


def _drop(folder: Path, name: str, text: str = "") -> Path:
    """A landed file; by default a CSV with the chicago_taxi spec's header and one row."""
    from aimass.data.spec import load_spec

    columns = load_spec("chicago_taxi").columns
    text = text or ",".join(columns) + "\n" + ",".join("1" for _ in columns) + "\n"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


def test_a_file_is_ready_only_once_it_stopped_changing(tmp_path: Path) -> None:
    seen: dict[str, landing.Watch] = {}
    path = _drop(tmp_path, "trips.csv")
    _drop(tmp_path, ".hidden.csv")
    _drop(tmp_path, "trips2.csv.tmp")
    _drop(tmp_path, "trips3.csv.PART")
    # Any other name is looked at: its content tells its format (aimass.data.landing_check).
    other = _drop(tmp_path, "adult.data")
    assert landing.settled(tmp_path, seen, settle_s=2, now=100.0) == []  # first sight
    assert landing.settled(tmp_path, seen, settle_s=2, now=101.0) == []  # not settled yet
    with open(path, "a", encoding="utf-8") as fh:  # still being written
        fh.write("3,4\n")
    os.utime(path, ns=(1, 2))
    assert landing.settled(tmp_path, seen, settle_s=2, now=102.5) == [other]
    assert landing.settled(tmp_path, seen, settle_s=2, now=104.6) == [other, path]
    path.unlink()
    other.unlink()
    assert landing.settled(tmp_path, seen, settle_s=2, now=110.0) == [] and seen == {}


def test_claim_and_take_move_each_file_exactly_once(settings: Settings) -> None:
    zone = landing.zone_for(settings, "chicago_taxi")
    assert isinstance(zone, landing.LocalZone)
    assert zone.folder == settings.var_dir / "landing" / "chicago_taxi"
    _drop(zone.folder, "a.csv")
    _drop(zone.folder, "b.csv")
    first, second = zone.claim("a.csv"), zone.claim("b.csv")
    assert first is not None and second is not None
    assert zone.claim("gone.csv") is None
    assert zone.pending() == sorted([first, second])
    payload = zone.payload(first)
    assert payload["original"] == "a.csv" and payload["bytes"] > 0

    taken = zone.take(ds="2026-11-26", run_id="r1")
    assert sorted(e["file"] for e in taken) == sorted([first, second])
    out = Path(zone.day_input("2026-11-26"))
    assert out == zone.folder / "processed" / "ds=2026-11-26"
    assert sorted(p.name for p in out.iterdir()) == sorted([first, second])
    assert zone.pending() == []
    # a duplicate event for another run finds nothing; a retry of r1 finds its own files
    assert zone.take(ds="2026-11-26", run_id="r2") == []
    again = zone.take(ds="2026-11-26", run_id="r1")
    assert sorted(e["file"] for e in again) == sorted(e["file"] for e in taken)
    assert len(zone.ledger()) == 2


def test_prepare_run_cleans_the_days_landed_files_or_skips_a_duplicate(
    settings: Settings,
) -> None:
    from aimass.stages.retrain import prepare_run

    zone = settings.var_dir / "landing" / "chicago_taxi"
    claimed = landing.claim(_drop(zone, "trips.csv"))
    assert claimed is not None
    payload = landing.event_payload("chicago_taxi", claimed)
    when = datetime(2026, 11, 26, 9, 30)
    ctx = prepare_run(
        {}, dag_id="aimass_retrain", run_id="asset__1", run_date=when, landed=[payload]
    )
    assert ctx.dataset == "chicago_taxi" and ctx.ds == "2026-11-26"
    assert ctx.input_path == str(zone / "processed" / "ds=2026-11-26")
    assert ctx.landed_files == [claimed.name]
    with pytest.raises(landing.NothingLanded, match="taken by another run"):
        prepare_run({}, dag_id="aimass_retrain", run_id="asset__2", run_date=when, landed=[payload])


def test_the_watcher_claims_each_landed_file_and_announces_leftovers(tmp_path: Path) -> None:
    from aimass.data.landing_trigger import LandingZoneTrigger

    zone = tmp_path / "landing" / "chicago_taxi"
    leftover = landing.claim(_drop(zone, "before_restart.csv"))
    assert leftover is not None
    _drop(zone, "new.csv")
    trigger = LandingZoneTrigger(str(zone), "chicago_taxi", poke_interval=0.05, settle_seconds=0.1)

    async def first_two() -> list[dict]:
        events = []
        async for event in trigger.run():
            events.append(event.payload)
            if len(events) == 2:
                break
        return events

    replayed, fresh = asyncio.run(asyncio.wait_for(first_two(), timeout=10))
    assert replayed["file"] == leftover.name and replayed["replay"] is True
    assert fresh["original"] == "new.csv" and fresh["replay"] is False
    assert not (zone / "new.csv").exists()
    assert (zone / landing.CLAIMED / fresh["file"]).is_file()  # moved, never deleted


def test_the_landing_root_may_be_another_folder(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from aimass.stages.validation import allowed_roots

    monkeypatch.setenv("AIMASS_LANDING_ROOT", str(tmp_path / "drop"))
    moved = Settings.from_env()
    zone = landing.zone_for(moved, "chicago_taxi")
    assert isinstance(zone, landing.LocalZone)
    assert zone.folder == (tmp_path / "drop" / "chicago_taxi").resolve()
    # what lands there may be read by a run, like the var dir
    assert (tmp_path / "drop").resolve() in allowed_roots(moved)


def test_a_watcher_stored_by_an_older_install_still_inflates(tmp_path: Path) -> None:
    """Airflow keeps the trigger's kwargs in its database; older ones name the folder
    ``directory``, and a trigger that fails to inflate is not retried by the triggerer."""
    from aimass.data.landing_trigger import LandingZoneTrigger

    old = LandingZoneTrigger(
        **{"directory": str(tmp_path), "dataset": "chicago_taxi", "poke_interval": 5.0}
    )
    assert old.serialize()[1]["location"] == str(tmp_path)
    with pytest.raises(ValueError, match="location and a dataset"):
        LandingZoneTrigger(dataset="chicago_taxi")
