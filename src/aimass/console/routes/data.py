"""Data: partitions with their row accounting, quarantine reasons, quality and the ledger."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from aimass.console import charts
from aimass.console.context import render, state
from aimass.console.routes.models import known_dataset
from aimass.console.security import UserName, can_read

router = APIRouter(dependencies=[can_read])

PARTITIONS_SHOWN = 100
LEDGER_SHOWN = 200


@router.get("/data/{dataset}", response_class=HTMLResponse)
def data_page(request: Request, dataset: str, user: UserName) -> str:
    console = state(request)
    known_dataset(console, dataset)
    read = console.read
    partitions = read.partitions(dataset)
    reasons = read.quarantine_reasons(partitions)
    ledger = read.ledger(dataset)
    reasons_chart = (
        str(
            charts.bar_chart(
                [(reason, float(count)) for reason, count, _ in reasons],
                title=f"Quarantined rows by reason, over {len(partitions)} runs",
                x_label="rows",
            )
        )
        if reasons
        else ""
    )
    return render(
        request,
        "data.html",
        page="data",
        dataset=dataset,
        user=user,
        partitions=partitions[:PARTITIONS_SHOWN],
        partitions_total=len(partitions),
        reasons=reasons,
        reasons_chart=reasons_chart,
        ledger=ledger[:LEDGER_SHOWN],
        ledger_total=len(ledger),
        backlog=read.backlog(dataset),
        report_link=read.report_link,
    )
