"""Alerts: the alert store, filtered by dataset, kind and time."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import HTMLResponse

from aimass.console.context import render, state
from aimass.console.readmodel import alert_dataset
from aimass.console.security import UserName, can_read
from aimass.platform.alerts import KINDS

router = APIRouter(dependencies=[can_read])

# The "since" choices of the filter, in hours (0 = all).
WINDOWS = {"1h": 1, "24h": 24, "7d": 24 * 7, "30d": 24 * 30, "all": 0}


@router.get("/alerts", response_class=HTMLResponse)
def alerts_page(
    request: Request, user: UserName, dataset: str = "", kind: str = "", since: str = "7d"
) -> str:
    console = state(request)
    if kind and kind not in KINDS:
        raise HTTPException(400, f"unknown alert kind {kind!r}; use one of {', '.join(KINDS)}")
    if since not in WINDOWS:
        raise HTTPException(400, f"unknown window {since!r}; use one of {', '.join(WINDOWS)}")
    hours = WINDOWS[since]
    start = datetime.now(UTC) - timedelta(hours=hours) if hours else None
    found = console.read.alerts(dataset=dataset or None, kind=kind or None, since=start)
    return render(
        request,
        "alerts.html",
        page="alerts",
        user=user,
        alerts=found,
        dataset=dataset,
        kind=kind,
        since=since,
        kinds=KINDS,
        windows=list(WINDOWS),
        alert_dataset=alert_dataset,
    )
