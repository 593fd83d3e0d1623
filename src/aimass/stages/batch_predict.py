"""The ``aimass_batch_predict`` DAG's stages: check what to score with which model, then
(after the Spark job ``jobs/score``) record what came out.

``prepare_scoring`` → (scoring job) → ``publish_scoring``. Records go to
``reports/<dataset>/batch_predict/ds=<ds>/<run>/records/`` and the run to MLflow, in the
dataset's experiment, tagged ``aimass.kind=batch_predict`` and linked to the model version.
"""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from aimass.platform.errors import ConfigError, StageError
from aimass.platform.records import RECORDS_DIR
from aimass.platform.scoring_records import BATCH_PREDICT_DIR, ScoringRequest, ScoringResult
from aimass.platform.settings import Settings, safe_name

log = logging.getLogger(__name__)

ALIASES = ("champion", "previous")
CLEAN_ASSET_PREFIX = "aimass_clean_"


def _model_version(settings: Settings, name: str, wanted: str) -> Any:
    """The registry version ``wanted`` names (an alias or a number), or a ConfigError that
    lists what there is."""
    from aimass.platform import tracking

    if wanted in ALIASES:
        version = tracking.version_by_alias(settings, name, wanted)
    else:
        try:
            version = tracking.client(settings).get_model_version(name, wanted)
        except Exception:  # noqa: BLE001 - MLflow says RESOURCE_DOES_NOT_EXIST its own way
            version = None
    if version is None:
        try:
            known = sorted(
                int(v.version)
                for v in tracking.client(settings).search_model_versions(f"name='{name}'")
            )
        except Exception:  # noqa: BLE001 - no registered model yet
            known = []
        hint = f"versions {known}" if known else "no versions yet: run aimass_retrain first"
        raise ConfigError(f"param model={wanted!r}: model {name} has no such version ({hint})")
    return version


def _day_inputs(settings: Settings, dataset: str, ds: str) -> list[Path]:
    """The clean partition's current batches (a legacy day without batches: the day)."""
    from aimass.data.lake import current_batches

    day = settings.clean_partition(dataset, ds)
    batches = [b for b in current_batches(day) if b.is_dir()] if day.is_dir() else []
    if not batches and day.is_dir() and any(day.glob("*.parquet")):
        batches = [day]
    if not batches:
        raise ConfigError(
            f"param ds={ds!r}: {dataset} has no clean rows at {day}; pick a day that "
            "aimass_retrain cleaned, or set input_path"
        )
    return batches


def _clean_event(events: list[dict[str, Any]] | None) -> dict[str, Any] | None:
    """The newest clean-partition event (its asset names the dataset), if any triggered."""
    for event in reversed(events or []):
        name = str(event.get("name") or "")
        extra = dict(event.get("extra") or {})
        if name.startswith(CLEAN_ASSET_PREFIX) and extra.get("batch"):
            return {"dataset": name.removeprefix(CLEAN_ASSET_PREFIX), **extra}
    return None


def prepare_scoring(
    params: dict[str, Any],
    *,
    dag_id: str,
    run_id: str,
    run_date: datetime,
    events: list[dict[str, Any]] | None = None,
) -> ScoringRequest:
    """Check the params, resolve the rows and the model version, fetch the model.

    ``events``: the clean-partition asset events that scheduled the run (``name`` and
    ``extra``); the run then scores the new batch of the newest one.

    Raises:
        ConfigError: an unknown dataset or version, a bad day or input, naming the fix.
    """
    from aimass.platform import tracking
    from aimass.stages.validation import _DS, _check_local_input, _spec, latest_partition

    settings = Settings.from_env()
    event = _clean_event(events)
    if event is not None:
        params = {**params, "dataset": event["dataset"], "ds": event["ds"], "input_path": ""}
    spec = _spec(params, settings)
    ds = str(params.get("ds") or "")
    if ds and not _DS.match(ds):
        raise ConfigError(f"param ds={ds!r} must be a date like 2026-11-25 (or empty)")
    raw_input = str(params.get("input_path") or "").strip()
    wanted = str(params.get("model") or "champion").strip()
    if wanted not in ALIASES and not wanted.isdigit():
        raise ConfigError(f"param model={wanted!r}: use champion, previous or a version number")
    if event is not None:
        inputs, source = [Path(event["batch"])], f"clean batch {event['batch']}"
    elif raw_input:
        if "://" in raw_input:
            raise ConfigError(
                f"param input_path={raw_input!r}: batch scoring reads local files; land the "
                "objects with aimass_retrain (it cleans them into the lake) and score the day"
            )
        inputs, source = [_check_local_input(raw_input, settings)], raw_input
        ds = ds or run_date.date().isoformat()
    else:
        ds = ds or latest_partition(settings, spec.name)
        inputs, source = _day_inputs(settings, spec.name, ds), f"clean partition ds={ds}"

    version = _model_version(settings, spec.name, wanted)
    report_dir = (
        settings.reports_dir / spec.name / BATCH_PREDICT_DIR / f"ds={ds}" / safe_name(run_id)
    )
    report_dir.mkdir(parents=True, exist_ok=True)
    model_dir = settings.runs_dir / spec.name / BATCH_PREDICT_DIR / safe_name(run_id) / "model"
    shutil.rmtree(model_dir, ignore_errors=True)
    model_dir.mkdir(parents=True)
    fetched = tracking.download_version(settings, version, model_dir)
    found = sorted(fetched.rglob("saved_model.pb"))
    if not found:
        raise StageError(f"{spec.name} version {version.version} has no SavedModel at {fetched}")
    args_file = report_dir / "score_inputs.args"
    args_file.write_text("".join(f"--input\n{p}\n" for p in inputs), encoding="utf-8")
    request = ScoringRequest(
        dataset=spec.name,
        ds=ds,
        inputs=[str(p) for p in inputs],
        input_source=source,
        model=wanted,
        model_name=spec.name,
        model_version=str(version.version),
        model_run_id=str(getattr(version, "run_id", "") or ""),
        model_dir=str(found[0].parent),
        output_dir=str(settings.predictions_partition(spec.name, ds)),
        report_dir=str(report_dir),
        summary_file=str(report_dir / "scoring_summary.json"),
        args_file=str(args_file),
        dag_id=dag_id,
        run_id=run_id,
        trigger={"kind": "clean_partition", **event} if event else {"kind": "manual"},
    )
    request.write(report_dir / RECORDS_DIR)
    log.info(
        "batch predict %s: %s with %s v%s (%s) -> %s",
        run_id,
        source,
        spec.name,
        version.version,
        wanted,
        request.output_dir,
    )
    return request


def publish_scoring(request: ScoringRequest | Mapping[str, Any]) -> ScoringResult:
    """Read the job's summary, check it adds up, record it and log it to MLflow."""
    from aimass.platform import tracking

    request = ScoringRequest.of(request)
    path = Path(request.summary_file)
    if not path.exists():
        raise StageError(f"the scoring job wrote no summary at {path}; see score_rows' log")
    summary = json.loads(path.read_text(encoding="utf-8"))
    if summary["rows_in"] != summary["rows_scored"] + summary["rows_rejected"]:
        raise StageError(f"scoring summary {path} does not add up: {summary}")
    settings = Settings.from_env()
    tags = {
        "aimass.kind": "batch_predict",
        "aimass.ds": request.ds,
        "aimass.model_version": request.model_version,
        "aimass.airflow_run": request.run_id,
    }
    with tracking.start_run(
        settings,
        request.dataset,
        name=f"batch_predict {request.ds} v{request.model_version}",
        tags=tags,
    ) as mlrun:
        mlrun.params(
            {
                "model": request.model,
                "model_version": request.model_version,
                "model_run_id": request.model_run_id,
                "input_source": request.input_source[:250],
                "output": request.output_dir[:250],
            }
        )
        mlrun.metrics(
            {
                "rows_in": summary["rows_in"],
                "rows_scored": summary["rows_scored"],
                "rows_rejected": summary["rows_rejected"],
                "rows_per_second": float(summary.get("rows_per_second") or 0.0),
            }
        )
        url = tracking.run_url(settings, mlrun.experiment_id, mlrun.run_id)
        result = ScoringResult(
            dataset=request.dataset,
            ds=request.ds,
            model_name=request.model_name,
            model_version=request.model_version,
            rows_in=summary["rows_in"],
            rows_scored=summary["rows_scored"],
            rows_rejected=summary["rows_rejected"],
            reasons=summary.get("reasons") or {},
            output_dir=summary["output"],
            rejected_dir=summary["rejected"],
            seconds=summary.get("seconds"),
            rows_per_second=summary.get("rows_per_second"),
            mlflow_run_url=url,
        )
        mlrun.record(result)
    result.write(Path(request.report_dir) / RECORDS_DIR)
    log.info(
        "batch predict %s: %d rows scored, %d rejected, by %s v%s -> %s (MLflow: %s)",
        request.run_id,
        result.rows_scored,
        result.rows_rejected,
        result.model_name,
        result.model_version,
        result.output_dir,
        url,
    )
    for reason, n in result.reasons.items():
        log.warning("rejected %d rows: %s", n, reason)
    return result


def clean_events(events: Mapping[Any, Any] | None) -> list[dict[str, Any]]:
    """A run's triggering asset events as ``{"name", "extra"}`` (the clean partitions)."""
    return [
        {"name": str(getattr(asset, "name", "")), "extra": dict(event.extra or {})}
        for asset, asset_events in (events or {}).items()
        for event in asset_events
    ]
