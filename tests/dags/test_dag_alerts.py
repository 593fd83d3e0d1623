"""Alert policy: every DAG sends an alert when one of its runs fails (aimass.platform.alerts)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from aimass.platform.alerts import notify_failed_run
from aimass.platform.settings import Settings

pytestmark = pytest.mark.dags

DAGS_DIR = Path(__file__).resolve().parents[2] / "dags"


@pytest.fixture(scope="module")
def dagbag():  # type: ignore[no-untyped-def]
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(DAGS_DIR))
    assert bag.import_errors == {}
    return bag


def _callbacks(dag) -> list:  # type: ignore[no-untyped-def]
    found = dag.on_failure_callback
    return list(found) if isinstance(found, list | tuple) else [found]


def test_every_dag_alerts_on_a_failed_run(dagbag) -> None:  # type: ignore[no-untyped-def]
    assert {"aimass_retrain", "aimass_tune", "aimass_rollback"} <= set(dagbag.dag_ids)
    for dag_id, dag in dagbag.dags.items():
        assert notify_failed_run in _callbacks(dag), (
            f"{dag_id} has no on_failure_callback=aimass.platform.alerts.notify_failed_run"
        )


def test_the_callback_as_the_dag_processor_calls_it_stores_an_alert(
    dagbag,  # type: ignore[no-untyped-def]
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The DAG processor passes at least dag, run_id and reason (no task instance)."""
    monkeypatch.delenv("AIMASS_ALERT_CONN_ID", raising=False)
    dag = dagbag.dags["aimass_rollback"]
    for callback in _callbacks(dag):
        callback({"dag": dag, "run_id": "manual__2026-11-02", "reason": "task_failure"})
    lines = (settings.var_dir / "alerts" / "alerts.jsonl").read_text().splitlines()
    [stored] = [json.loads(line) for line in lines]
    assert stored["kind"] == "failed_run"
    assert (stored["dag_id"], stored["run_id"]) == ("aimass_rollback", "manual__2026-11-02")
    assert stored["details"] == {"reason": "task_failure"}
