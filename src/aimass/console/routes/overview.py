"""Overview: per dataset, what serves, how the last run went, and what needs attention."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from starlette.concurrency import run_in_threadpool

from aimass.console.context import ConsoleState, render, state
from aimass.console.readmodel import Champion, ServingView
from aimass.console.security import RETRAIN_DAG, UserName, can_read
from aimass.platform.records import RunRequest, RunSummary

router = APIRouter(dependencies=[can_read])


@dataclass
class DatasetCard:
    """One dataset's row on the overview."""

    name: str
    champion: Champion | None
    serving: ServingView
    last_run: RunSummary | RunRequest | None
    runs: int
    backlog: list[str] | None
    open_alerts: list[dict[str, Any]]
    live_drift: dict[str, Any] | None
    drift_checked: str | None
    versions: int = 0
    labels: list[tuple[str, int, str]] = field(default_factory=list)


def dataset_card(console: ConsoleState, name: str) -> DatasetCard:
    read = console.read
    versions = read.versions(name)
    runs = read.runs(name)
    serving = read.serving(name)
    drift = read.live_drift(name)
    return DatasetCard(
        name=name,
        champion=read.champion(name, versions),
        serving=serving,
        last_run=runs[0] if runs else None,
        runs=len(runs),
        backlog=read.backlog(name),
        open_alerts=read.open_alerts(name),
        live_drift=drift[1] if drift else None,
        drift_checked=drift[0] if drift else None,
        versions=len(versions),
        labels=[
            (label, version, serving.states.get(version, "unknown"))
            for label, version in sorted(serving.labels.items(), key=_label_order)
        ],
    )


@router.get("/", response_class=HTMLResponse)
async def overview(request: Request, user: UserName) -> str:
    console = state(request)
    airflow = console.airflow(request)
    dag, approvals, cards = await asyncio.gather(
        airflow.dag(RETRAIN_DAG),
        airflow.waiting_approvals(RETRAIN_DAG),
        run_in_threadpool(
            lambda: [dataset_card(console, name) for name in console.read.datasets()]
        ),
    )
    return render(
        request,
        "overview.html",
        page="overview",
        user=user,
        cards=cards,
        retrain_dag=dag,
        approvals=approvals,
    )


def _label_order(item: tuple[str, int]) -> int:
    order = {"stable": 0, "canary": 1, "previous": 2}
    return order.get(item[0], 3)
