"""The ``aimass_monitor`` DAG's stage: check each champion for drift and ask for a retrain once.

For each dataset, ``aimass.data.monitor.monitor_dataset`` compares the champion's recent
requests and newest unseen batch with its reference. On critical drift the first check with
this champion announces a drift event (``emit``), which schedules ``aimass_retrain``; later
checks with the same champion alert without queueing another retrain.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any

from aimass.data.monitor import CRITICAL, claim_drift_event, drift_asset_name, monitor_dataset
from aimass.platform.alerts import alert_on_drift
from aimass.platform.settings import Settings

log = logging.getLogger(__name__)

# Called with (dataset, extra) for each drift event to announce.
Emit = Callable[[str, dict[str, Any]], None]


def check_champion_drift(
    settings: Settings, datasets: Iterable[str], *, min_rows: int, emit: Emit
) -> list[dict[str, Any]]:
    """Monitor ``datasets``; ``emit`` a drift event for each newly critical one. Returns each
    dataset's monitor result, with ``event`` saying what was announced."""
    results = []
    for dataset in datasets:
        result = monitor_dataset(settings, dataset, min_rows=min_rows)
        results.append(result)
        if result["status"] != CRITICAL:
            continue
        if not claim_drift_event(settings, result):
            # This champion already asked for a retrain on drift: alert, do not queue another.
            result["event"] = "already announced for this champion"
            alert_on_drift({**result, "action": "announced"}, dataset=dataset, settings=settings)
            continue
        result["event"] = drift_asset_name(dataset)
        emit(
            dataset,
            {
                "dataset": dataset,
                "reason": result["reason"],
                "report": result["report_html"],
                "champion_version": result.get("champion_version"),
            },
        )
        # A retrain run follows (aimass_retrain is scheduled on the drift asset).
        alert_on_drift({**result, "action": "retrain"}, dataset=dataset, settings=settings)
    return results
