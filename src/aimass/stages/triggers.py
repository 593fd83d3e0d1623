"""Why a retrain run started, and what that means for its params.

A run starts on the nightly schedule or by hand (its params as given), on landed files (the run
takes them from the landing zone and cleans that day's landed files), or on drift announced by
``aimass_monitor`` (the run retrains that dataset on its spec's source).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from datetime import date, datetime
from typing import Any

from aimass.data import landing
from aimass.platform.settings import Settings

log = logging.getLogger(__name__)

LANDING_ASSET_PREFIX = "aimass_landing_"


def triggering_events(
    events: Mapping[Any, Iterable[Any]] | None, *, drift_prefix: str
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The landing payloads and drift extras among a run's triggering asset events.

    Returns ``(landed, drifted)``: the payload of each landing-zone event (``dataset``,
    ``file``), and the extra of each drift event ``aimass_monitor`` emitted (``dataset``,
    ``reason``, ``report``). Other events are ignored.
    """
    landed: list[dict[str, Any]] = []
    drifted: list[dict[str, Any]] = []
    for asset, asset_events in (events or {}).items():
        name = str(getattr(asset, "name", ""))
        for event in asset_events:
            extra = event.extra or {}
            if name.startswith(LANDING_ASSET_PREFIX) and isinstance(extra.get("payload"), dict):
                landed.append(extra["payload"])
            elif name.startswith(drift_prefix) and extra.get("dataset"):
                drifted.append(dict(extra))
    return landed, drifted


def resolve_trigger(
    settings: Settings,
    params: dict[str, Any],
    *,
    run_id: str,
    run_date: datetime | date,
    landed: list[dict[str, Any]] | None,
    drifted: list[dict[str, Any]] | None,
) -> tuple[dict[str, Any], dict[str, Any], list[str]]:
    """The run's params as its trigger shapes them, the trigger record, and the landed files
    it took.

    Raises:
        NothingLanded: landing events whose files another run already took.
    """
    landed_files: list[str] = []
    trigger: dict[str, Any] = {"kind": "schedule_or_manual"}
    if drifted and not landed:
        event = drifted[0]
        # The spec's own source: drop a manual input_path so validate_params resolves it.
        params = {**params, "dataset": str(event["dataset"]), "input_path": ""}
        trigger = {
            "kind": "drift",
            "dataset": str(event["dataset"]),
            "reason": str(event.get("reason") or ""),
            "report": str(event.get("report") or ""),
        }
        log.info("run %s: retraining %s on drift: %s", run_id, event["dataset"], trigger["reason"])
    if landed:
        dataset = str(landed[0]["dataset"])
        day = (run_date.date() if isinstance(run_date, datetime) else run_date).isoformat()
        zone = landing.zone_for(settings, dataset)
        taken = zone.take(ds=day, run_id=run_id)
        if not taken:
            raise landing.NothingLanded(
                f"the landed files {[e.get('file') for e in landed]} of {dataset} were taken by "
                f"another run (see the ledger, {zone.ledger_location}); nothing to do"
            )
        landed_files = [e["file"] for e in taken]
        trigger = {"kind": "landing", "dataset": dataset, "files": landed_files}
        params = {**params, "dataset": dataset, "ds": day, "input_path": zone.day_input(day)}
        log.info("run %s: %d landed file(s) of %s: %s", run_id, len(taken), dataset, landed_files)
    return params, trigger, landed_files
