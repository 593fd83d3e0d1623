"""Alerts (aimass.platform.alerts): the store, the log line, connections, the hooks in the pipeline."""

from __future__ import annotations

import dataclasses
import json
import logging
import sys
import threading
import types
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from aimass.platform import alerts
from aimass.platform.alerts import (
    AlertConnection,
    AlertStore,
    parse_connection,
    send_alert,
    webhook_url,
)
from aimass.platform.errors import ConfigError
from aimass.platform.settings import Settings

pytestmark = pytest.mark.unit


@pytest.fixture(autouse=True)
def _no_airflow_context(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("AIRFLOW_CTX_DAG_ID", "AIRFLOW_CTX_DAG_RUN_ID", "AIMASS_ALERT_CONN_ID"):
        monkeypatch.delenv(name, raising=False)


def _lines(settings: Settings) -> list[dict[str, Any]]:
    path = settings.var_dir / "alerts" / "alerts.jsonl"
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


# ---------------------------------------------------------------------------- the store


def test_an_alert_is_stored_with_its_fields(settings: Settings) -> None:
    before = datetime.now(UTC)
    record = send_alert(
        "generic", "disk nearly full", {"free_gb": 3}, settings=settings, dag_id="d", run_id="r1"
    )
    [stored] = _lines(settings)
    assert stored["kind"] == "generic" and stored["title"] == "disk nearly full"
    assert stored["details"] == {"free_gb": 3}
    assert (stored["dag_id"], stored["run_id"]) == ("d", "r1")
    assert stored["id"] == record["id"] and len(stored["id"]) == 32
    assert stored["ts"].endswith("Z")
    ts = datetime.fromisoformat(stored["ts"].replace("Z", "+00:00"))
    assert ts.tzinfo is not None and before.replace(microsecond=0) <= ts
    assert stored["delivery"] == {"log": {"status": "sent"}}  # no connection configured
    assert record["delivery"]["store"]["status"] == "sent"


def test_dag_and_run_ids_default_to_the_task_environment(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AIRFLOW_CTX_DAG_ID", "aimass_retrain")
    monkeypatch.setenv("AIRFLOW_CTX_DAG_RUN_ID", "manual__2026")
    send_alert("generic", "t", {}, settings=settings)
    send_alert("generic", "t", {}, settings=settings, dag_id="other", run_id="x")
    first, second = _lines(settings)
    assert (first["dag_id"], first["run_id"]) == ("aimass_retrain", "manual__2026")
    assert (second["dag_id"], second["run_id"]) == ("other", "x")


def test_details_that_are_not_json_are_stored_as_text(settings: Settings) -> None:
    send_alert("generic", "t", {"path": Path("/a/b"), "n": None}, settings=settings)
    assert _lines(settings)[0]["details"] == {"path": "/a/b", "n": None}


def test_an_unknown_kind_is_a_programming_error(settings: Settings) -> None:
    with pytest.raises(ValueError, match="'oops' is unknown"):
        send_alert("oops", "t", {}, settings=settings)


def test_the_store_is_trimmed_to_its_newest_lines(tmp_path: Path) -> None:
    store = AlertStore(tmp_path / "alerts.jsonl", max_lines=20)
    for i in range(55):
        store.append({"kind": "generic", "n": i})
    lines = (tmp_path / "alerts.jsonl").read_text().splitlines()
    assert 18 <= len(lines) <= 20
    numbers = [json.loads(line)["n"] for line in lines]
    assert numbers == list(range(55 - len(numbers), 55))  # the newest, in order
    assert [r["n"] for r in store.read(limit=3)] == [54, 53, 52]  # newest first


def test_concurrent_appends_from_threads_lose_and_tear_no_line(tmp_path: Path) -> None:
    store = AlertStore(tmp_path / "alerts.jsonl", max_lines=10_000)
    pad = "x" * 3000  # long lines: a torn write would show as a line that does not parse

    def write(worker: int) -> None:
        for i in range(40):
            store.append({"worker": worker, "i": i, "pad": pad})

    threads = [threading.Thread(target=write, args=(w,)) for w in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    lines = (tmp_path / "alerts.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines]
    assert len(records) == 320
    assert {(r["worker"], r["i"]) for r in records} == {(w, i) for w in range(8) for i in range(40)}


def test_concurrent_appends_with_trimming_keep_the_bound(tmp_path: Path) -> None:
    store = AlertStore(tmp_path / "alerts.jsonl", max_lines=50)

    def write(worker: int) -> None:
        for i in range(60):
            store.append({"worker": worker, "i": i})

    threads = [threading.Thread(target=write, args=(w,)) for w in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    records = store.read()
    assert 45 <= len(records) <= 50
    assert all(set(r) == {"worker", "i"} for r in records)


def test_read_skips_a_broken_line_and_filters_by_kind(settings: Settings) -> None:
    send_alert("rollback", "a", {}, settings=settings)
    path = settings.var_dir / "alerts" / "alerts.jsonl"
    with open(path, "a", encoding="utf-8") as fh:
        fh.write("{not json\n")
    send_alert("generic", "b", {}, settings=settings)
    assert [r["title"] for r in alerts.read_alerts(settings)] == ["b", "a"]
    assert [r["title"] for r in alerts.read_alerts(settings, kind="rollback")] == ["a"]


def test_a_store_that_cannot_be_written_does_not_fail_the_caller(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    (settings.var_dir / "alerts").write_text("a file where the folder should be")
    record = send_alert("generic", "t", {}, settings=settings)
    assert record["delivery"]["store"]["status"] == "failed"
    assert "not stored" in caplog.text


# ---------------------------------------------------------------------------- the log


def test_the_log_has_one_readable_warning_line_with_the_details(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="aimass.platform.alerts")
    send_alert(
        "candidate_rejected",
        "taxi candidate v3 rejected",
        {"failed_checks": ["auc 0.61 < 0.70"]},
        settings=settings,
        dag_id="aimass_retrain",
        run_id="manual__1",
    )
    [rec] = [r for r in caplog.records if r.name == "aimass.platform.alerts"]
    assert rec.levelno == logging.WARNING
    message = rec.getMessage()
    assert "\n" not in message
    assert message.startswith(
        "ALERT candidate_rejected: taxi candidate v3 rejected "
        "(dag_id aimass_retrain, run_id manual__1) | "
    )
    assert json.loads(message.split(" | ", 1)[1]) == {"failed_checks": ["auc 0.61 < 0.70"]}


# ---------------------------------------------------------------------- connections


def test_a_uri_connection_is_parsed_like_airflow_does() -> None:
    conn = parse_connection(
        "alerts",
        "smtp://ops%40example.com:p%40ss%2Fw@mail.example.com:2525/"
        "?to=a%40example.com,b%40example.com&starttls=true",
    )
    assert conn.conn_type == "smtp" and conn.host == "mail.example.com" and conn.port == 2525
    assert (conn.login, conn.password) == ("ops@example.com", "p@ss/w")
    assert conn.extra == {"to": "a@example.com,b@example.com", "starttls": "true"}
    assert "p@ss/w" not in repr(conn)


def test_a_uri_connection_takes_nested_extras_and_a_host_with_its_protocol() -> None:
    extra = json.dumps({"endpoint": "services/T1/B2", "headers": {"X-Team": "ml"}})
    conn = parse_connection(
        "hook", f"http://https://hooks.example.com/base?__extra__={extra.replace('&', '%26')}"
    )
    assert conn.conn_type == "http" and conn.host == "https://hooks.example.com"
    assert conn.schema == "base"
    assert conn.extra == {"endpoint": "services/T1/B2", "headers": {"X-Team": "ml"}}
    assert webhook_url(conn) == "https://hooks.example.com/base/services/T1/B2"


def test_a_json_connection_is_parsed() -> None:
    conn = parse_connection(
        "hook",
        json.dumps(
            {
                "conn_type": "http",
                "host": "127.0.0.1",
                "port": "8099",
                "schema": "https",
                "login": "u",
                "password": "p",
                "extra": json.dumps({"endpoint": "/alerts"}),
            }
        ),
    )
    assert (conn.host, conn.port, conn.schema, conn.login, conn.password) == (
        "127.0.0.1",
        8099,
        "https",
        "u",
        "p",
    )
    assert conn.extra == {"endpoint": "/alerts"}
    # schema http/https is the protocol, as Airflow's HttpHook reads it
    assert webhook_url(conn) == "https://127.0.0.1:8099/alerts"


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("{not json", "is not valid JSON"),
        (json.dumps({"host": "h"}), "needs a conn_type"),
        (json.dumps({"conn_type": "http", "extra": "[1]"}), "is not a JSON object"),
        ("just-a-host", "neither JSON nor a URI"),
        ("http://h:notaport/", "port is not a number"),
    ],
)
def test_a_bad_connection_value_is_explained(value: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_connection("x", value)


def test_the_environment_variable_comes_before_airflow(monkeypatch: pytest.MonkeyPatch) -> None:
    def airflow_lookup(conn_id: str) -> AlertConnection:
        return AlertConnection(conn_id=conn_id, conn_type="smtp", host="from-airflow")

    monkeypatch.setattr(alerts, "_airflow_connection", airflow_lookup)
    monkeypatch.setenv("AIRFLOW_CONN_MY_ALERTS", "http://from-env:81/")
    assert alerts.get_connection("my_alerts").host == "from-env"
    monkeypatch.delenv("AIRFLOW_CONN_MY_ALERTS")
    assert alerts.get_connection("my_alerts").host == "from-airflow"


def test_a_missing_connection_is_recorded_not_raised(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def airflow_lookup(conn_id: str) -> AlertConnection:
        raise LookupError(f"The conn_id `{conn_id}` isn't defined")

    monkeypatch.setattr(alerts, "_airflow_connection", airflow_lookup)
    configured = dataclasses.replace(settings, alert_conn_id="nowhere")
    record = send_alert("generic", "t", {}, settings=configured)
    status = record["delivery"]["connection"]
    assert status["status"] == "failed" and "isn't defined" in status["error"]
    assert _lines(settings)[0]["delivery"]["connection"]["status"] == "failed"
    assert "not delivered" in caplog.text


def test_an_unsupported_connection_type_is_recorded(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_PG", "postgres://u:p@db:5432/x")
    configured = dataclasses.replace(settings, alert_conn_id="pg")
    status = send_alert("generic", "t", {}, settings=configured)["delivery"]["connection"]
    assert status["status"] == "failed" and "type 'postgres'" in status["error"]


def test_the_connection_id_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIMASS_ALERT_CONN_ID", " ops_webhook ")
    assert Settings.from_env().alert_conn_id == "ops_webhook"
    monkeypatch.setenv("AIMASS_ALERT_CONN_ID", "has space")
    with pytest.raises(ConfigError, match="AIMASS_ALERT_CONN_ID='has space'"):
        Settings.from_env()


# --------------------------------------------------------------------------- the hooks


def test_critical_drift_alerts_and_other_drift_does_not(settings: Settings) -> None:
    summary = {
        "status": "critical",
        "action": "flag",
        "critical_features": ["fare"],
        "warning_features": [],
        "schema_changes": ["tips: removed"],
        "report_html": "/r/drift.html",
        "champion_version": "4",
    }
    record = alerts.alert_on_drift(summary, dataset="chicago_taxi", settings=settings)
    assert record is not None and record["kind"] == "drift_detected"
    assert "fare, tips: removed" in record["title"] and "goes on" in record["title"]
    assert record["details"]["critical_features"] == ["fare"]
    assert record["details"]["report_html"] == "/r/drift.html"
    failing = alerts.alert_on_drift({**summary, "action": "fail"}, dataset="x", settings=settings)
    assert failing is not None and "the run stops" in failing["title"]
    queued = alerts.alert_on_drift(
        {**summary, "action": "retrain", "reason": "critical drift of the new batch ds=x"},
        dataset="x",
        settings=settings,
    )
    assert queued is not None and "a retrain is queued" in queued["title"]
    assert queued["details"]["reason"] == "critical drift of the new batch ds=x"
    for status in ("warning", "ok"):
        quiet = {**summary, "status": status}
        assert alerts.alert_on_drift(quiet, dataset="x", settings=settings) is None
    assert len(_lines(settings)) == 3


def test_a_failed_dag_run_callback_alerts_with_the_last_task(settings: Settings) -> None:
    ti = types.SimpleNamespace(
        task_id="train_model", try_number=2, log_url="http://127.0.0.1:8080/dags/x"
    )
    dag_run = types.SimpleNamespace(
        dag_id="aimass_retrain", run_id="scheduled__1", run_type="scheduled", logical_date=None
    )
    context = {
        "dag": types.SimpleNamespace(dag_id="aimass_retrain"),
        "run_id": "scheduled__1",
        "reason": "task_failure",
        "ti": ti,
        "dag_run": dag_run,
        "params": {"dataset": "chicago_taxi"},
    }
    alerts.notify_failed_run(context)
    [stored] = _lines(settings)
    assert stored["kind"] == "failed_run"
    assert stored["title"] == "aimass_retrain run failed at task train_model"
    assert (stored["dag_id"], stored["run_id"]) == ("aimass_retrain", "scheduled__1")
    assert stored["details"]["reason"] == "task_failure"
    assert stored["details"]["try_number"] == 2
    assert stored["details"]["dataset"] == "chicago_taxi"
    assert stored["details"]["log_url"] == "http://127.0.0.1:8080/dags/x"


def test_a_failed_dag_run_callback_works_with_the_minimal_context(settings: Settings) -> None:
    """Airflow passes only dag, run_id and reason when the run has no last task instance."""
    alerts.notify_failed_run(
        {"dag": types.SimpleNamespace(dag_id="aimass_tune"), "run_id": "m1", "reason": "timed_out"}
    )
    [stored] = _lines(settings)
    assert stored["title"] == "aimass_tune run failed"
    assert stored["details"] == {"reason": "timed_out"}


def test_reject_candidate_alerts_with_the_failing_checks(settings: Settings) -> None:
    from aimass.stages.retrain import reject_candidate

    decision = {
        "passed": False,
        "deploy": False,
        "verdict": "rejected",
        "task": "binary",
        "primary_metric": "auc",
        "dataset": "chicago_taxi",
        "ds": "2026-11-02",
        "run_id": "manual__9",
        "candidate_version": "7",
        "champion_version": "6",
        "reasons": ["overall auc 0.61 < bar 0.70", "slice payment_type=Cash auc -0.08"],
        "report_html": "/r/gate_report.html",
    }
    reject_candidate(decision)
    [stored] = _lines(settings)
    assert stored["kind"] == "candidate_rejected" and stored["run_id"] == "manual__9"
    assert "candidate v7 rejected (2 failed checks)" in stored["title"]
    assert stored["details"]["failed_checks"] == decision["reasons"]
    assert stored["details"]["champion_version"] == "6"
    assert stored["details"]["report_html"] == "/r/gate_report.html"


def test_roll_back_alerts_with_who_why_and_versions(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The model server is faked: this checks the alert, test_rollout.py the rollback itself."""
    from aimass.stages.rollback import roll_back

    class FakeClient:
        def __init__(self, *args: object) -> None:
            pass

        def close(self) -> None:
            pass

    def fake_rollback(settings: Settings, client: object, **kw: Any) -> dict[str, Any]:
        return {"marker": {}, "rolled_back_from": 5, "serving_version": 4, "seconds": 0.1}

    monkeypatch.setitem(
        sys.modules, "aimass.serving.rollout", types.SimpleNamespace(rollback=fake_rollback)
    )
    monkeypatch.setitem(
        sys.modules, "aimass.serving.client", types.SimpleNamespace(ServingClient=FakeClient)
    )
    ctx = {
        "dataset": "chicago_taxi",
        "version": 4,
        "stable": 5,
        "reason": "complaints about v5",
        "who": "ana",
    }
    roll_back(ctx)
    [stored] = _lines(settings)
    assert stored["kind"] == "rollback"
    assert stored["title"] == "chicago_taxi rolled back: stable 5 -> 4 by ana"
    details = stored["details"]
    assert (details["who"], details["reason"]) == ("ana", "complaints about v5")
    assert (details["from_serving_version"], details["to_serving_version"]) == (5, 4)
    assert Path(details["record"]).exists()
