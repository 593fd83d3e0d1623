"""Live serving: traffic, errors and latency by version and label, and drift of recent requests."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from starlette.concurrency import run_in_threadpool

from aimass.console import charts
from aimass.console.context import render, state
from aimass.console.routes.models import known_dataset
from aimass.console.security import UserName, can_read

router = APIRouter(dependencies=[can_read])

# How fresh the newest traffic sample must be when a page is drawn.
MAX_SAMPLE_AGE_S = 15.0
# (attribute of a sample point, chart title, axis label, unit, scale)
PANELS = (
    ("rps", "Requests per second", "requests/s", "", 1.0),
    ("error_rate", "Error rate", "errors / requests", "%", 100.0),
    ("p50_ms", "Latency p50", "latency", "ms", 1.0),
    ("p99_ms", "Latency p99", "latency", "ms", 1.0),
)


@router.get("/live/{dataset}", response_class=HTMLResponse)
async def live_page(request: Request, dataset: str, user: UserName, feature: str = "") -> str:
    console = state(request)
    known_dataset(console, dataset)
    console.sampler.start()
    await run_in_threadpool(console.sampler.ensure_recent, MAX_SAMPLE_AGE_S)
    series = console.sampler.history.series(dataset)
    panels = [
        str(
            charts.time_chart(
                {
                    key: [
                        (p.at, None if getattr(p, attr) is None else getattr(p, attr) * scale)
                        for p in points
                    ]
                    for key, points in series.items()
                },
                title=title,
                y_label=label,
                unit=unit,
            )
        )
        for attr, title, label, unit, scale in PANELS
    ]
    drift = await run_in_threadpool(console.read.live_drift, dataset)
    psi_chart = histogram = ""
    features: list[dict[str, Any]] = []
    chosen: dict[str, Any] | None = None
    if drift is not None:
        _, report, _ = drift
        features = sorted(report.get("features", []), key=lambda f: -(f.get("psi") or 0.0))
        thresholds = report.get("thresholds", {})
        psi_chart = str(
            charts.bar_chart(
                [(f["feature"], float(f.get("psi") or 0.0)) for f in features],
                title="PSI of recent requests against the champion's reference, per feature",
                x_label="population stability index",
                thresholds={
                    "warning": float(thresholds.get("psi_warning", 0.1)),
                    "critical": float(thresholds.get("psi_critical", 0.25)),
                },
            )
        )
        chosen = next((f for f in features if f["feature"] == feature), None) or (
            features[0] if features else None
        )
        if chosen is not None and chosen.get("buckets"):
            bins = [str(b[0]) for b in chosen["buckets"]]
            histogram = str(
                charts.histogram_pair(
                    bins,
                    [float(b[1]) for b in chosen["buckets"]],
                    [float(b[2]) for b in chosen["buckets"]],
                    title=f"{chosen['feature']}: reference (training data) beside live requests",
                    x_label=chosen["feature"],
                )
            )
    return render(
        request,
        "live.html",
        page="live",
        dataset=dataset,
        user=user,
        panels=panels,
        series_keys=sorted(series),
        latest={key: points[-1] for key, points in series.items() if points},
        drift=drift,
        features=features,
        chosen=chosen,
        psi_chart=psi_chart,
        histogram=histogram,
        refresh=MAX_SAMPLE_AGE_S,
        metrics_url=console.sampler.url,
    )
