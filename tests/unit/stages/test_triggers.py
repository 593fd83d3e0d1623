"""What started a retrain run, decoded from its triggering asset events (aimass.stages.triggers)."""

from __future__ import annotations

from dataclasses import dataclass
from types import SimpleNamespace

import pytest

from aimass.stages.triggers import triggering_events

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
