"""aimass_monitor: hourly drift checks of served requests and new batches that schedule aimass_retrain."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import defaultdict
from types import SimpleNamespace
from typing import Any

import pytest

from aimass.platform.settings import Settings

pytestmark = pytest.mark.dags


def test_monitor_runs_hourly_one_at_a_time_and_announces_through_an_alias() -> None:
    import dags.aimass_monitor as module

    dag = module.dag
    assert dag.timetable.expression == "0 * * * *"
    assert dag.max_active_runs == 1 and dag.catchup is False
    assert dag.task_ids == ["check_champion_drift"]
    [alias] = dag.get_task("check_champion_drift").outlets
    assert type(alias).__name__ == "AssetAlias"  # only drifted datasets get an event
    assert dag.params["datasets"] == [] and dag.params["min_rows"] == 200


def test_the_monitor_schedule_comes_from_the_environment() -> None:
    code = "import dags.aimass_monitor as m; print(m.dag.timetable.__class__.__name__)"
    env = {**os.environ, "AIMASS_MONITOR_SCHEDULE": "none"}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip().splitlines()[-1] == "NullTimetable"


def _names(condition: Any) -> list[str]:
    """Asset names in an asset condition (AssetAny nests when assets are joined with |)."""
    if hasattr(condition, "objects"):
        return [n for obj in condition.objects for n in _names(obj)]
    return [condition.name]


def test_retrain_is_scheduled_by_landing_and_drift_assets() -> None:
    import dags.aimass_retrain as module

    names = {a.name for a in module.DRIFTED}
    assert names == {f"aimass_drift_{d}" for d in module.DATASETS}
    scheduled = set(_names(module.dag.timetable.asset_condition))
    assert names | {a.name for a in module.LANDED} <= scheduled


class _Outlets(defaultdict):
    def __init__(self) -> None:
        super().__init__(lambda: SimpleNamespace(added=[], add=None))

    def __missing__(self, key: Any) -> Any:
        added: list = []
        value = SimpleNamespace(
            added=added, add=lambda asset, extra=None: added.append((asset, extra))
        )
        self[key] = value
        return value


def test_critical_drift_emits_an_event_and_alerts(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    import dags.aimass_monitor as module
    from aimass.data import monitor

    monkeypatch.delenv("AIMASS_ALERT_CONN_ID", raising=False)
    results = {
        "chicago_taxi": {
            "dataset": "chicago_taxi",
            "status": "critical",
            "reason": "critical drift of served requests in fare",
            "report_html": "/r/drift_report.html",
            "critical_features": ["fare"],
            "champion_version": "3",
        },
        "palmer_penguins": {"dataset": "palmer_penguins", "status": "skipped", "reason": "x"},
    }
    monkeypatch.setattr(monitor, "monitor_dataset", lambda s, d, min_rows: results[d])
    outlets = _Outlets()
    context = {
        "params": {"datasets": ["chicago_taxi", "palmer_penguins"], "min_rows": 10},
        "outlet_events": outlets,
    }
    monkeypatch.setattr(module, "get_current_context", lambda: context)
    out = module.dag.get_task("check_champion_drift").python_callable()
    assert [r["status"] for r in out] == ["critical", "skipped"]
    [(asset, extra)] = outlets[module.DRIFT_EVENTS].added
    assert asset.name == "aimass_drift_chicago_taxi"
    assert extra == {
        "dataset": "chicago_taxi",
        "reason": "critical drift of served requests in fare",
        "report": "/r/drift_report.html",
        "champion_version": "3",
    }
    assert out[0]["event"] == "aimass_drift_chicago_taxi"
    [stored] = [
        json.loads(line)
        for line in (settings.var_dir / "alerts" / "alerts.jsonl").read_text().splitlines()
    ]
    assert stored["kind"] == "drift_detected" and "fare" in stored["title"]
    assert "a retrain is queued" in stored["title"]

    # The same champion, still drifted an hour later: an alert, but no second retrain.
    again = module.dag.get_task("check_champion_drift").python_callable()
    assert again[0]["event"] == "already announced for this champion"
    assert len(outlets[module.DRIFT_EVENTS].added) == 1
    lines = (settings.var_dir / "alerts" / "alerts.jsonl").read_text().splitlines()
    assert len(lines) == 2 and "already asked for" in json.loads(lines[1])["title"]


def test_prepare_run_hands_drift_events_to_the_pipeline(monkeypatch: pytest.MonkeyPatch) -> None:
    import dags.aimass_retrain as module
    from aimass.stages import retrain as pipeline

    seen: dict[str, Any] = {}
    monkeypatch.setattr(
        pipeline, "prepare_run", lambda params, **kw: seen.update(kw) or SimpleNamespace(dump=dict)
    )
    extra = {"dataset": "chicago_taxi", "reason": "fare drifted", "report": "/r.html"}
    context = {
        "params": {},
        "dag_run": SimpleNamespace(
            dag_id="aimass_retrain", run_id="asset__1", logical_date=None, run_after="2026-11-26"
        ),
        "triggering_asset_events": {module.DRIFTED[0]: [SimpleNamespace(extra=extra)]},
    }
    monkeypatch.setattr(module, "get_current_context", lambda: context)
    module.dag.get_task("prepare_run").python_callable()
    assert seen["landed"] == [] and seen["drifted"] == [extra]
