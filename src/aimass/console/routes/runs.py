"""A DAG run's own reports, shown as tabs on Airflow's DAG-run and task-instance pages."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from aimass.console.context import render, state
from aimass.console.routes.models import card_link
from aimass.console.security import UserName, can_read
from aimass.platform.records import DataChecks, DriftResult, GateDecision, RunRequest

router = APIRouter(dependencies=[can_read])

# Which record each retraining task leaves (the task tab shows it).
TASK_RECORDS = {
    "prepare_run": "request",
    "clean_data": "checks",
    "validate_quality": "checks",
    "check_drift": "drift",
    "train_model": "training",
    "evaluate_candidate": "gate",
    "check_approval": "gate",
    "reject_candidate": "gate",
    "deploy_model": "deployment",
    "publish_summary": "summary",
}


@router.get("/runs/{dag}/{run}", response_class=HTMLResponse)
def run_tab(request: Request, dag: str, run: str, user: UserName) -> str:
    return _run_page(request, dag, run, None, user)


@router.get("/runs/{dag}/{run}/tasks/{task}", response_class=HTMLResponse)
def task_tab(request: Request, dag: str, run: str, task: str, user: UserName) -> str:
    return _run_page(request, dag, run, task, user)


def _run_page(request: Request, dag: str, run: str, task: str | None, user: str) -> str:
    read = state(request).read
    found = read.find_run(run)
    # Run ids repeat across DAGs (the monitor's 02:00 run and the nightly retrain's share one).
    asked = found[1].get("request") if found else None
    if found is None or getattr(asked, "dag_id", dag) != dag:
        found = None
    dataset, records = found if found else ("", {})
    kind = TASK_RECORDS.get(task or "")
    reports: dict[str, str | None] = {}
    checks, drift, gate = records.get("checks"), records.get("drift"), records.get("gate")
    if isinstance(checks, DataChecks):
        reports["Data Docs (Great Expectations)"] = read.report_link(checks.quality.data_docs)
    if isinstance(drift, DriftResult):
        reports["Drift report"] = read.report_link(drift.report_html)
    if isinstance(gate, GateDecision):
        reports["Gate report"] = read.report_link(gate.report_html)
    request_record = records.get("request")
    if isinstance(request_record, RunRequest):
        reports["Model card"] = card_link(read, request_record.report_dir)
    training = records.get("training")
    return render(
        request,
        "run.html",
        page="",
        user=user,
        dag=dag,
        run=run,
        task=task,
        dataset=dataset,
        records=records,
        focus=kind,
        reports={k: v for k, v in reports.items() if v},
        model_version=getattr(training, "registry_version", None),
    )
