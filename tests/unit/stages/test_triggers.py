"""What started a retrain run, decoded from its triggering asset events (aimass.stages.triggers)."""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from types import SimpleNamespace

import pytest

from aimass.data.spec import load_spec
from aimass.platform.errors import ConfigError
from aimass.platform.settings import Settings
from aimass.stages.triggers import (
    check_dataset,
    known_datasets,
    resolve_input,
    resolve_trigger,
    triggering_events,
)
from aimass.stages.validation import check_datasets, validate_params

pytestmark = pytest.mark.unit

DRIFT = "aimass_drift_"


@dataclass(frozen=True)
class _Asset:
    """What the decoding reads of an Airflow asset: its name (and it keys a dict)."""

    name: str


def _asset(name: str) -> _Asset:
    return _Asset(name)


def _event(extra: dict | None) -> SimpleNamespace:
    return SimpleNamespace(extra=extra)


def test_landing_payloads_and_drift_extras_are_told_apart() -> None:
    payload = {"dataset": "chicago_taxi", "file": ".claimed/a.csv"}
    drift = {"dataset": "palmer_penguins", "reason": "critical drift in bill_length_mm"}
    events = {
        _asset("aimass_landing_chicago_taxi"): [_event({"payload": payload})],
        _asset("aimass_drift_palmer_penguins"): [_event(drift)],
    }
    landed, drifted = triggering_events(events, drift_prefix=DRIFT)
    assert landed == [payload] and drifted == [drift]


def test_events_of_other_assets_or_without_what_a_run_needs_are_ignored() -> None:
    events = {
        _asset("aimass_clean_chicago_taxi"): [_event({"payload": {"dataset": "x"}})],
        _asset("aimass_landing_chicago_taxi"): [_event(None), _event({"payload": "not a dict"})],
        _asset("aimass_drift_chicago_taxi"): [_event({"reason": "no dataset named"})],
    }
    assert triggering_events(events, drift_prefix=DRIFT) == ([], [])


def test_a_scheduled_or_manual_run_has_no_events() -> None:
    assert triggering_events(None, drift_prefix=DRIFT) == ([], [])


# -- a run's input and dataset, checked at run time ----------------------------------------


def _landed(settings, ds: str, name: str = "a.csv") -> Path:  # type: ignore[no-untyped-def]
    folder = settings.var_dir / "landing" / "chicago_taxi" / "processed" / f"ds={ds}"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"20261101T000000000000Z-{name}").write_text("x\n", encoding="utf-8")
    return folder


def test_a_run_without_input_path_reads_the_newest_landed_day_then_the_source(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = load_spec("chicago_taxi")
    source = spec.resolved_source_path(settings.var_dir)
    # 1. nothing landed: the spec's source.path
    choice = resolve_input({}, spec, settings)
    assert (choice.origin, choice.path) == ("source", source)
    # 2. landed days: the newest one that holds files, all its files
    _landed(settings, "2026-11-01")
    newest = _landed(settings, "2026-11-03")
    _landed(settings, "2026-11-03", "b.data")
    (newest.parent / "ds=2026-12-01").mkdir()  # an empty day is no data
    choice = resolve_input({}, spec, settings)
    assert (choice.origin, choice.path) == ("landing", str(newest))
    assert "2 file(s) taken on ds=2026-11-03" in choice.detail
    # 3. input_path, when given, wins over both
    choice = resolve_input({"input_path": "/data/x.csv"}, spec, settings)
    assert (choice.origin, choice.path) == ("input_path", "/data/x.csv")
    # 4. a landing-only spec (no source.path) with nothing landed: how to give it data
    bare = dataclasses.replace(spec, source_path="")
    monkeypatch.setenv("AIMASS_LANDING_ROOT", str(settings.var_dir / "elsewhere"))
    with pytest.raises(ConfigError) as err:
        resolve_input({}, bare, Settings.from_env())
    message = str(err.value)
    assert "\n" not in message and "has no data to clean" in message
    assert f"nothing has landed in {settings.var_dir / 'elsewhere' / 'chicago_taxi'}" in message
    assert "drop a CSV or Parquet file in that folder" in message
    assert "or set input_path" in message


def test_a_manual_run_records_and_logs_where_its_input_came_from(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    newest = _landed(settings, "2026-11-03")
    with caplog.at_level(logging.INFO, logger="aimass.stages.triggers"):
        params, trigger, landed = resolve_trigger(
            settings, {}, run_id="manual__1", run_date=date(2026, 11, 25), landed=[], drifted=[]
        )
    assert params["input_path"] == str(newest) and landed == []
    assert trigger["kind"] == "schedule_or_manual"
    assert trigger["input"]["from"] == "landing" and trigger["input"]["path"] == str(newest)
    assert any(
        f"input {newest} (the newest landed data of chicago_taxi" in m for m in caplog.messages
    )
    # validation reads the same input the record names
    run = validate_params(params, settings, run_date=date(2026, 11, 25))
    assert run.input_path == str(newest.resolve())


def test_a_spec_saved_after_the_last_parse_is_accepted_and_an_unknown_one_listed(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import shutil

    root = tmp_path / "root"
    (root / "conf" / "datasets").mkdir(parents=True)
    shutil.copy(settings.conf_dir / "datasets" / "chicago_taxi.yaml", root / "conf" / "datasets")
    monkeypatch.setattr(Settings, "conf_dir", property(lambda self: root / "conf"))
    assert known_datasets(settings) == ["chicago_taxi"]
    with pytest.raises(ConfigError) as err:
        check_dataset("taxi_v2", settings)
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith("param dataset='taxi_v2': there is no spec ")
    assert "known datasets: chicago_taxi." in message
    # the spec is saved: accepted at once, no DAG parse needed
    shutil.copy(
        root / "conf" / "datasets" / "chicago_taxi.yaml", root / "conf/datasets/taxi_v2.yaml"
    )
    assert check_dataset("taxi_v2", settings) == "taxi_v2"
    with pytest.raises(ConfigError, match="not a path; known datasets: chicago_taxi, taxi_v2"):
        check_dataset("../taxi_v2", settings)
    # the monitor's list is checked the same way
    assert check_datasets(["taxi_v2"], settings) == ["taxi_v2"]
    with pytest.raises(ConfigError, match="dataset='nope': there is no spec"):
        check_datasets(["chicago_taxi", "nope"], settings)


def test_an_unknown_dataset_fails_the_first_task_in_one_line(settings: Settings) -> None:
    from aimass.stages.retrain import prepare_run

    with pytest.raises(ConfigError) as err:
        prepare_run(
            {"dataset": "nope"}, dag_id="aimass_retrain", run_id="manual__2", run_date=date.today()
        )
    assert "\n" not in str(err.value) and "known datasets: chicago_taxi" in str(err.value)
