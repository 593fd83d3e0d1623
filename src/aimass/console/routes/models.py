"""Models: every version with its metrics, gate decision, lineage, deploys and rollbacks."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse

from aimass.console import charts
from aimass.console.context import ConsoleState, render, state
from aimass.console.readmodel import ReadModel, VersionView
from aimass.console.security import UserName, can_read
from aimass.evaluation.card import CARD_HTML
from aimass.stages.params import RETRAIN_PARAMS

router = APIRouter(dependencies=[can_read])

# Versions drawn in the metrics chart (the newest ones); the table lists them all.
CHART_VERSIONS = 50
MAX_CHARTS = 4


def known_dataset(console: ConsoleState, dataset: str) -> str:
    """``dataset`` if the console knows it; otherwise a 404 that lists the known ones."""
    names = console.read.datasets()
    if dataset not in names:
        raise HTTPException(404, f"no dataset {dataset!r}; known datasets: {', '.join(names)}")
    return dataset


@router.get("/models", response_class=RedirectResponse, status_code=303)
def models_index(request: Request) -> str:
    names = state(request).read.datasets()
    base = request.scope.get("root_path", "")
    return f"{base}/models/{names[0]}" if names else f"{base}/"


@router.get("/models/{dataset}", response_class=HTMLResponse)
def model_page(request: Request, dataset: str, user: UserName) -> str:
    console = state(request)
    known_dataset(console, dataset)
    read = console.read
    versions = read.versions(dataset)
    serving = read.serving(dataset)
    champion = read.champion(dataset, versions)
    rollbacks = read.rollbacks(dataset)
    forced = [v for v in versions if v.gate is not None and v.gate.forced]
    return render(
        request,
        "models.html",
        page="models",
        dataset=dataset,
        user=user,
        versions=versions,
        serving=serving,
        champion=champion,
        rollbacks=rollbacks,
        forced=forced,
        charts=metrics_charts(versions),
        retrain_fields=RETRAIN_PARAMS,
    )


@router.get("/models/{dataset}/versions/{version}", response_class=HTMLResponse)
def model_card(request: Request, dataset: str, version: str, user: UserName) -> str:
    """One version's card: data, features, metrics, gate decision and lineage."""
    console = state(request)
    known_dataset(console, dataset)
    # A compressed variant's version shows the card of the candidate it was made from.
    found = [
        v
        for v in console.read.versions(dataset)
        if version in (v.registry_version, v.deployment and v.deployment.registry_version)
    ]
    if not found:
        raise HTTPException(404, f"{dataset} has no registry version {version!r}")
    view = found[0]
    records = console.read.find_run(view.run_id) if view.run_id else None
    return render(
        request,
        "model_card.html",
        page="models",
        dataset=dataset,
        user=user,
        v=view,
        records=records[1] if records else {},
        serving=console.read.serving(dataset),
        card=card_link(console.read, view.request.report_dir if view.request else None),
    )


def card_link(read: ReadModel, report_dir: str | None) -> str | None:
    """The ``files/…`` link of the stored model card in a run's report dir, if it has one.

    The card is served by the reports route, with its login and its refusal of paths that
    leave the reports folder.
    """
    if not report_dir or not (Path(report_dir) / CARD_HTML).is_file():
        return None
    return read.report_link(str(Path(report_dir) / CARD_HTML))


def metrics_charts(versions: list[VersionView]) -> list[str]:
    """One chart per holdout metric (primary first) over the newest versions, oldest left:
    small multiples, since metrics differ in scale (AUC against RMSE in dollars)."""
    shown = list(reversed(versions[:CHART_VERSIONS]))
    primary = next((v.gate.primary_metric for v in versions if v.gate is not None), "")
    names: list[str] = []
    for v in shown:
        names += [m for m in v.metrics if m not in names]
    names.sort(key=lambda m: (m != primary, m))
    return [
        str(
            charts.version_chart(
                {metric: [(v.name, v.metrics.get(metric)) for v in shown]},
                title=f"{metric} on the holdout, by registry version"
                + (" (gate's primary metric)" if metric == primary else ""),
                y_label=metric,
                width=560,
                height=220,
            )
        )
        for metric in names[:MAX_CHARTS]
    ]
