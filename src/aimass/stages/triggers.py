"""Why a retrain run started, and what that means for its params.

A run starts on the nightly schedule or by hand (its params as given), on landed files (the run
takes them from the landing zone and cleans that day's landed files), or on drift announced by
``aimass_monitor`` (the run retrains that dataset on its newest data).

A run without ``input_path`` reads, in this order (:func:`resolve_input`): the newest landed day
of the dataset's landing zone (``processed/ds=<day>/``, every file taken that day), the spec's
``source.path``, or it stops with a one-line error saying how to give it data.

The ``dataset`` param is checked here against the specs in conf/datasets at run time
(:func:`check_dataset`), not against the names the DAG saw when it was last parsed, so a new
spec can be triggered as soon as it is saved.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from aimass.data import landing
from aimass.data.spec import DatasetSpec, load_spec
from aimass.platform.errors import ConfigError
from aimass.platform.settings import Settings
from aimass.stages.params import DATASET

log = logging.getLogger(__name__)

LANDING_ASSET_PREFIX = "aimass_landing_"
_DATASET = re.compile(r"^[a-z][a-z0-9_]*$")


def known_datasets(settings: Settings) -> list[str]:
    """The specs in conf/datasets now (the trigger forms suggest those of the last parse)."""
    return sorted(p.stem for p in (settings.conf_dir / "datasets").glob("*.yaml"))


def check_dataset(dataset: str, settings: Settings) -> str:
    """``dataset`` if conf/datasets holds its spec now; else a one-line error naming the
    known ones.

    Raises:
        ConfigError: not a spec name, or no such spec.
    """
    known = known_datasets(settings)
    shown = ", ".join(known) or "none yet"
    if not _DATASET.match(dataset):
        raise ConfigError(
            f"param dataset={dataset!r} must be the name of a spec in conf/datasets (lower "
            f"case letters, digits, _), not a path; known datasets: {shown}"
        )
    if dataset not in known:
        raise ConfigError(
            f"param dataset={dataset!r}: there is no spec {settings.conf_dir}/datasets/"
            f"{dataset}.yaml; known datasets: {shown}. Pick one, or save the spec there (a "
            "new spec can be triggered as soon as it is saved)"
        )
    return dataset


@dataclass(frozen=True)
class InputChoice:
    """Where a run reads its raw data, and why there."""

    path: str
    # "input_path" (the param), "landing" (the newest landed day) or "source" (source.path)
    origin: str
    detail: str

    def record(self) -> dict[str, str]:
        return {"from": self.origin, "path": self.path, "detail": self.detail}


def resolve_input(params: Mapping[str, Any], spec: DatasetSpec, settings: Settings) -> InputChoice:
    """The run's input: ``input_path`` when set, else the newest landed day of the
    dataset's landing zone, else the spec's ``source.path``.

    Raises:
        ConfigError: none of them: no data, and how to give it some.
    """
    given = str(params.get("input_path") or "")
    if given:
        return InputChoice(given, "input_path", "param input_path")
    zone = landing.zone_for(settings, spec.name)
    newest = zone.latest_day()
    if newest is not None:
        day, count = newest
        return InputChoice(
            zone.day_input(day),
            "landing",
            f"the newest landed data of {spec.name}: {count} file(s) taken on ds={day}",
        )
    source = spec.resolved_source_path(settings.var_dir)
    if source:
        return InputChoice(
            source, "source", f"spec {spec.name}'s source.path (nothing landed in {zone.location})"
        )
    raise ConfigError(
        f"dataset {spec.name!r} has no data to clean: nothing has landed in {zone.location} "
        "and its spec has no source.path; drop a CSV or Parquet file in that folder (it starts "
        "a run by itself) or set input_path"
    )


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
        # The dataset's newest data: drop a manual input_path so resolve_input picks it.
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
        # The run cleans these files only (a batch of its own); earlier landings of the day
        # are batches already.
        trigger = {
            "kind": "landing",
            "dataset": dataset,
            "files": landed_files,
            "paths": [e["path"] for e in taken],
        }
        params = {**params, "dataset": dataset, "ds": day, "input_path": zone.day_input(day)}
        log.info("run %s: %d landed file(s) of %s: %s", run_id, len(taken), dataset, landed_files)
        trigger["input"] = InputChoice(
            params["input_path"], "landing", f"the files landed for ds={day}"
        ).record()
    else:
        dataset = check_dataset(str(params.get("dataset") or DATASET.default), settings)
        choice = resolve_input(params, load_spec(dataset, settings.conf_dir), settings)
        params = {**params, "input_path": choice.path}
        trigger["input"] = choice.record()
        log.info("run %s: input %s (%s)", run_id, choice.path, choice.detail)
    return params, trigger, landed_files
