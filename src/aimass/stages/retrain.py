"""The retraining stages as plain functions; DAG tasks are thin wrappers around these.

Each function takes the run context made by :func:`prepare_run` (a JSON-able dict that
travels through XCom), does one stage's work and returns a short JSON-able summary.
Outputs are addressed by (dataset, ds) and the Airflow run id, so a retry or a rerun
overwrites its own outputs instead of adding new ones.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
import subprocess
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from aimass.platform.errors import StageError
from aimass.platform.settings import Settings

log = logging.getLogger(__name__)


def _safe(run_id: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", run_id)


def _read_json(path: Path, what: str) -> dict[str, Any]:
    if not path.exists():
        raise StageError(
            f"{what} not found at {path}; did the previous stage run for this partition?"
        )
    return json.loads(path.read_text(encoding="utf-8"))


def git_commit(root: Path) -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short=12", "HEAD"],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return out.stdout.strip() if out.returncode == 0 else "unknown"


def prepare_run(
    params: dict[str, Any],
    *,
    dag_id: str,
    run_id: str,
    run_date: datetime,
    landed: list[dict[str, Any]] | None = None,
    drifted: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Validate the params and lay out where every stage of this run reads and writes.

    ``landed``: the payloads of the landing-zone events that scheduled this run. The run
    then takes the claimed files of the first event's dataset (``aimass.data.landing.take``) and
    cleans the day's landed files (``processed/ds=<ds>/``) into that day's partition.

    ``drifted``: the extras (``dataset``, ``reason``, ``report``) of the drift events
    ``aimass_monitor`` emitted. Without landed files, the run retrains the first event's
    dataset on its spec's source; ``ctx["trigger"]`` records why the run started.

    Raises:
        ConfigError: a bad param, named with its fix.
        NothingLanded: landing events whose files another run already took.
    """
    from aimass.data import landing
    from aimass.stages.params import validate_params

    settings = Settings.from_env()
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
        params = {
            **params,
            "dataset": dataset,
            "ds": day,
            "input_path": zone.day_input(day),
        }
        log.info("run %s: %d landed file(s) of %s: %s", run_id, len(taken), dataset, landed_files)
    p = validate_params(params, settings, run_date=run_date)
    report_dir = settings.report_dir(p.dataset, p.ds)
    report_dir.mkdir(parents=True, exist_ok=True)
    ctx = {
        **p.to_dict(),
        "dag_id": dag_id,
        "run_id": run_id,
        "run_key": f"{dag_id}/{run_id}",
        "clean_dir": str(settings.clean_partition(p.dataset, p.ds)),
        "quarantine_dir": str(settings.quarantine_partition(p.dataset, p.ds)),
        "report_dir": str(report_dir),
        "clean_summary": str(report_dir / "clean_summary.json"),
        "run_dir": str(settings.runs_dir / p.dataset / _safe(run_id)),
        "landed_files": landed_files,
        "trigger": trigger,
    }
    log.info("run %s: dataset=%s ds=%s input=%s", run_id, p.dataset, p.ds, p.input_path)
    return ctx


def validate_quality(ctx: dict[str, Any]) -> dict[str, Any]:
    """Check the clean partition with the spec's GX suite; a critical failure raises.

    The suite is generated from ``spec.quality``, plus ``conf/expectations/<dataset>.yaml``
    when that file exists.
    """
    from aimass.data.quality import find_expectations_file, raise_for_critical, validate_partition
    from aimass.data.spec import load_spec

    settings = Settings.from_env()
    spec = load_spec(ctx["dataset"], settings.conf_dir)
    expectations = find_expectations_file(settings.conf_dir, spec.name)
    if expectations is None:
        log.info(
            "quality: no expectations file at %s; the suite is generated from spec.quality only",
            settings.conf_dir / "expectations" / f"{spec.name}.yaml",
        )
    else:
        log.info("quality: expectations file %s is added to the suite", expectations)
    clean = _read_json(Path(ctx["clean_summary"]), "clean summary")
    log.info(
        "clean: %s rows in, %s clean, %s quarantined, %s duplicates removed",
        clean["rows_in"],
        clean["rows_clean"],
        clean["rows_quarantined"],
        clean.get("rows_duplicate", 0),
    )
    quality = validate_partition(
        spec, Path(ctx["clean_dir"]), Path(ctx["report_dir"]), expectations_file=expectations
    )
    log.info("quality report (Data Docs): %s", quality.get("data_docs"))
    raise_for_critical(quality)
    return {"clean": clean, "quality": _quality_brief(quality)}


def _quality_brief(quality: dict[str, Any]) -> dict[str, Any]:
    results = quality.get("results", [])
    return {
        "success": bool(quality.get("success")),
        "expectations": len(results),
        "passed": sum(1 for r in results if r.get("success")),
        "critical_failures": quality.get("critical_failures", []),
        "warnings": quality.get("warnings", []),
        "data_docs": quality.get("data_docs"),
        "results": [
            {
                k: r.get(k)
                for k in ("expectation", "column", "severity", "source", "success", "observed")
            }
            for r in results
        ],
    }


def check_drift(ctx: dict[str, Any]) -> dict[str, Any]:
    """Compare the new batch with the reference recorded for the champion (PSI, nulls, schema).

    Returns the drift summary; raises when drift is critical and the spec says
    ``drift.on_critical: fail``. With no champion (or an old one without a reference
    profile) there is nothing to compare with, and the result says so.
    """
    from aimass.data.drift import compare, profile_partition, write_report, xcom_summary
    from aimass.data.monitor import champion_reference
    from aimass.data.spec import load_spec
    from aimass.platform.errors import DataQualityError

    settings = Settings.from_env()
    spec = load_spec(ctx["dataset"], settings.conf_dir)
    champ, reference = champion_reference(settings, spec.name)
    if champ is None:
        log.info("drift: no champion yet, nothing to compare with")
        return {"status": "skipped", "reason": "no champion yet"}
    if reference is None:  # an older champion without a profile: do not block retraining
        log.warning("drift: champion v%s has no reference profile; skipping", champ.version)
        return {
            "status": "skipped",
            "reason": f"champion v{champ.version} has no reference profile",
        }
    current = profile_partition(Path(ctx["clean_dir"]), spec, edges_from=reference)
    report = compare(reference, current, spec.drift)
    paths = write_report(report, Path(ctx["report_dir"]) / "drift")
    for line in report.summary().splitlines():
        log.info("drift: %s", line)
    log.info("drift report: %s", paths["html"])
    summary = {
        **xcom_summary(report, paths),
        "champion_version": str(champ.version),
    }
    if report.status == "critical":
        from aimass.platform.alerts import alert_on_drift

        alert_on_drift(summary, dataset=spec.name, settings=settings)
    if report.action == "fail":
        raise DataQualityError(
            f"critical drift against champion v{champ.version} in {summary['critical_features'] or summary['schema_changes']}; "
            f"see {paths['html']}. Fix the feed, or set drift.on_critical: flag in the spec to retrain anyway"
        )
    return summary


def reset_run_dir(run_dir: Path) -> None:
    """Empty ``run_dir`` for a training attempt, keeping the previous attempt's checkpoints.

    A retry starts from a clean slate except for the epoch checkpoints, which the workers
    resume from (``models.tabular.train`` checks they belong to the same run and discards
    them otherwise).
    """
    from models.tabular.train import CHECKPOINT_DIR

    if run_dir.exists():
        for entry in run_dir.iterdir():
            if entry.name == CHECKPOINT_DIR:
                log.info("train: keeping %s of the previous attempt to resume from", entry)
            elif entry.is_dir():
                shutil.rmtree(entry)
            else:
                entry.unlink()
    run_dir.mkdir(parents=True, exist_ok=True)


def resolve_hparams(settings: Settings, spec: Any, ctx: dict[str, Any]) -> tuple[Any, str]:
    """The spec to train with: its ``training`` < the latest search's best < the run's params.

    A search's values are used unless the run says ``use_tuned_hparams: false``; the run's
    ``learning_rate`` and ``batch_size`` params win over both. Returns the spec with the
    chosen values and a line saying where they came from (logged and tagged in MLflow).
    """
    from aimass.platform.errors import ConfigError
    from aimass.training.tuning import apply_hparams, tuned_hparams

    source = "spec"
    if ctx.get("use_tuned_hparams", True):
        found = tuned_hparams(settings, spec.name)
        if found is not None:
            tuned, tuning_run = found
            try:
                spec = apply_hparams(spec, tuned)
                source = f"tuned by MLflow run {tuning_run}: {json.dumps(tuned, sort_keys=True)}"
            except ConfigError as exc:
                log.warning(
                    "train: ignoring the best values of tuning run %s (%s); using the spec's",
                    tuning_run,
                    exc,
                )
        else:
            log.info("train: no finished hyperparameter search for %s; using the spec's", spec.name)
    else:
        log.info("train: use_tuned_hparams is off; using the spec's hyperparameters")
    overrides = {k: ctx[k] for k in ("learning_rate", "batch_size") if ctx.get(k) is not None}
    if overrides:
        spec = apply_hparams(spec, overrides)
        source += f"; run params override {json.dumps(overrides, sort_keys=True)}"
    t = spec.training
    log.info(
        "train: learning_rate=%g batch_size=%d hidden_units=%s dropout=%g (%s)",
        t.learning_rate,
        t.batch_size,
        list(t.hidden_units),
        t.dropout,
        source,
    )
    return spec, source


def train_model(ctx: dict[str, Any], checks: dict[str, Any]) -> dict[str, Any]:
    """Train a candidate across worker processes, track it in MLflow and register a version."""
    import mlflow

    from aimass.data.spec import load_spec
    from aimass.platform import tracking
    from aimass.training.launcher import launch

    settings = Settings.from_env()
    spec = load_spec(ctx["dataset"], settings.conf_dir)
    spec, hparams_source = resolve_hparams(settings, spec, ctx)
    run_dir = Path(ctx["run_dir"])
    reset_run_dir(run_dir)

    exp_id = tracking.experiment_id(settings, spec.name)
    tracking.client(settings)
    started = time.monotonic()
    with mlflow.start_run(
        experiment_id=exp_id, run_name=f"train {spec.name} ds={ctx['ds']}"
    ) as run:
        mlflow.set_tags(
            {
                "aimass.dataset": spec.name,
                "aimass.ds": ctx["ds"],
                "aimass.partition": ctx["clean_dir"],
                "aimass.run_key": ctx["run_key"],
                "aimass.git_commit": git_commit(settings.root),
                "aimass.quality": "passed" if checks["quality"]["success"] else "warnings",
                "aimass.hparams_source": hparams_source,
            }
        )
        result = launch(
            settings,
            spec,
            data=Path(ctx["clean_dir"]),
            run_dir=run_dir,
            workers=int(ctx["workers"]),
            epochs=ctx.get("epochs"),
            mixed_precision=bool(ctx.get("mixed_precision", False)),
        )
        mlflow.log_params(
            {
                k: json.dumps(v) if isinstance(v, list) else v
                for k, v in result.params.items()
                if not isinstance(v, dict)
            }
        )
        mlflow.log_params(
            {
                "workers": result.workers,
                "input_path": ctx["input_path"],
                "ds": ctx["ds"],
                "hparams_source": hparams_source[:500],
            }
        )
        for metric, values in result.history.items():
            for epoch, value in enumerate(values):
                mlflow.log_metric(f"train_{metric}", float(value), step=epoch)
        clean = checks["clean"]
        mlflow.log_metrics(
            {
                "rows_in": clean["rows_in"],
                "rows_clean": clean["rows_clean"],
                "rows_quarantined": clean["rows_quarantined"],
                "rows_duplicate": clean.get("rows_duplicate", 0),
                "train_seconds": time.monotonic() - started,
            }
        )
        mlflow.log_artifacts(str(result.saved_model_dir), artifact_path=tracking.MODEL_ARTIFACT)
        mlflow.log_artifact(str(result.metrics_path), artifact_path="training")
        if (run_dir / "spec.yaml").exists():
            mlflow.log_artifact(str(run_dir / "spec.yaml"), artifact_path="training")
        mlflow.log_artifact(ctx["clean_summary"], artifact_path="data")
        report_dir = Path(ctx["report_dir"])
        # The reference the next runs' drift check compares against, kept with this model.
        from aimass.data.drift import profile_partition, save_profile

        profile = save_profile(
            profile_partition(Path(ctx["clean_dir"]), spec, split="train"),
            run_dir / tracking.REFERENCE_PROFILE,
        )
        mlflow.log_artifact(str(profile), artifact_path=tracking.REFERENCE_ARTIFACT)
        if (report_dir / "drift").is_dir():
            mlflow.log_artifacts(str(report_dir / "drift"), artifact_path="drift")
        if (report_dir / "quality_summary.json").exists():
            mlflow.log_artifact(str(report_dir / "quality_summary.json"), artifact_path="data")
        if (report_dir / "data_docs").is_dir():
            mlflow.log_artifacts(str(report_dir / "data_docs"), artifact_path="data/data_docs")
        quality = checks["quality"]
        mlflow.log_metrics(
            {"quality_expectations": quality["expectations"], "quality_passed": quality["passed"]}
        )
        run_id = run.info.run_id
    version = tracking.register_version(
        settings,
        spec.name,
        run_id=run_id,
        run_key=ctx["run_key"],
        tags={
            "aimass.ds": ctx["ds"],
            "aimass.partition": ctx["clean_dir"],
            "aimass.git_commit": git_commit(settings.root),
            "aimass.quality": "passed" if checks["quality"]["success"] else "warnings",
        },
    )
    url = tracking.run_url(settings, exp_id, run_id)
    log.info(
        "trained %s registry version %s in %.1fs; MLflow run %s",
        spec.name,
        version,
        time.monotonic() - started,
        url,
    )
    return {
        "mlflow_run_id": run_id,
        "experiment_id": exp_id,
        "mlflow_run_url": url,
        "registry_version": version,
        "saved_model_dir": str(result.saved_model_dir),
        "workers": result.workers,
        "hparams_source": hparams_source,
        "train_seconds": round(time.monotonic() - started, 1),
    }


def evaluate_candidate(
    ctx: dict[str, Any], model: dict[str, Any], *, triggered_by: str | None = None
) -> dict[str, Any]:
    """Score candidate and champion on the same holdout, overall and per slice; decide.

    The decision (one line per check) goes to the task log, to ``gate_decision.json`` and
    ``gate_report.html`` in the run's report dir, and to the MLflow run (artifacts under
    ``evaluation/``, tag ``aimass.evaluation.gate``). With the run's ``force_deploy`` a rejected
    candidate is marked forced, with the reason and ``triggered_by`` (the run's user).
    """
    import mlflow

    from aimass.data.spec import BINARY, load_spec
    from aimass.evaluation.gate import decide, force
    from aimass.evaluation.metrics import evaluate_with_slices, load_slices
    from aimass.evaluation.report import (
        HTML_NAME,
        JSON_NAME,
        approval_markdown,
        json_safe,
        write_report,
    )
    from aimass.platform import tracking
    from models.tabular.inputs import load_arrays

    settings = Settings.from_env()
    spec = load_spec(ctx["dataset"], settings.conf_dir)
    partition = Path(ctx["clean_dir"])
    features, labels = load_arrays(partition, spec, "holdout")
    slices = load_slices(partition, spec, labels)
    threshold = spec.gate.decision_threshold
    candidate = evaluate_with_slices(
        Path(model["saved_model_dir"]),
        features,
        labels,
        slices,
        task=spec.task,
        threshold=threshold,
    )

    champion = None
    champion_version = None
    champ = tracking.version_by_alias(settings, spec.name, tracking.CHAMPION)
    if champ is not None and str(champ.version) != str(model["registry_version"]):
        champion_version = str(champ.version)
        champ_dir = tracking.download_version(settings, champ)
        try:
            champion = evaluate_with_slices(
                champ_dir, features, labels, slices, task=spec.task, threshold=threshold
            )
        finally:
            shutil.rmtree(champ_dir, ignore_errors=True)
    decision = decide(
        spec.gate,
        candidate.overall,
        champion.overall if champion is not None else None,
        metrics=spec.metrics,
        min_auc=ctx.get("min_auc"),
        candidate_slices=candidate.slices,
        champion_slices=champion.slices if champion is not None else None,
    )
    if ctx.get("force_deploy"):
        decision = force(decision, reason=str(ctx.get("force_reason") or ""), user=triggered_by)
    for line in decision.summary().splitlines():
        log.info("%s", line)

    report_dir = Path(ctx["report_dir"])
    out = {
        **decision.to_dict(),
        "dataset": spec.name,
        "ds": ctx["ds"],
        "run_id": ctx["run_id"],
        "champion_version": champion_version,
        "candidate_version": model["registry_version"],
        "task": spec.task,
        "primary_metric": spec.primary_metric,
        "threshold": threshold if spec.task == BINARY else None,
        "mlflow_run_url": model.get("mlflow_run_url"),
        "report_json": str(report_dir / JSON_NAME),
        "report_html": str(report_dir / HTML_NAME),
    }
    out["approval_md"] = approval_markdown(out)
    out = json_safe(out)
    paths = write_report(out, report_dir)
    log.info("gate report: %s (JSON: %s)", paths["html"], paths["json"])
    tags = {"aimass.gate": decision.verdict}
    if decision.forced:
        # MLflow tag values are limited to 5000 characters; the reason is at most 500.
        tags.update(
            {
                "aimass.force_reason": str(decision.force_reason),
                "aimass.forced_by": str(decision.forced_by),
            }
        )
    tracking.client(settings)
    with mlflow.start_run(run_id=model["mlflow_run_id"]):
        mlflow.log_metrics({f"holdout_{k}": v for k, v in candidate.overall.items()})
        if champion is not None:
            mlflow.log_metrics({f"champion_holdout_{k}": v for k, v in champion.overall.items()})
        mlflow.set_tags(tags)
        mlflow.log_artifact(str(paths["json"]), artifact_path="evaluation")
        mlflow.log_artifact(str(paths["html"]), artifact_path="evaluation")
    mlc = tracking.client(settings)
    for key, value in tags.items():
        mlc.set_model_version_tag(spec.name, model["registry_version"], key, value)
    return out


def reject_candidate(decision: dict[str, Any]) -> dict[str, Any]:
    """Log why the gate kept the candidate out, one line per failed check; nothing changes."""
    log.warning(
        "candidate version %s rejected; production unchanged (%d failed checks)",
        decision["candidate_version"],
        len(decision["reasons"]),
    )
    for reason in decision["reasons"]:
        log.warning("%s", reason)
    if decision.get("report_html"):
        log.warning("gate report: %s", decision["report_html"])
    from aimass.platform.alerts import CANDIDATE_REJECTED, send_alert

    send_alert(
        CANDIDATE_REJECTED,
        f"{decision.get('dataset') or 'model'} candidate v{decision['candidate_version']} "
        f"rejected ({len(decision['reasons'])} failed checks); production unchanged",
        {
            "dataset": decision.get("dataset"),
            "ds": decision.get("ds"),
            "candidate_version": decision["candidate_version"],
            "champion_version": decision.get("champion_version"),
            "failed_checks": list(decision["reasons"]),
            "report_html": decision.get("report_html"),
            "mlflow_run_url": decision.get("mlflow_run_url"),
        },
        run_id=decision.get("run_id"),
    )
    return {
        "candidate_version": decision["candidate_version"],
        "reasons": list(decision["reasons"]),
        "report_html": decision.get("report_html"),
    }


def deploy_model(ctx: dict[str, Any], model: dict[str, Any]) -> dict[str, Any]:
    """Roll the candidate out to the model server as the next version and make it champion."""
    from aimass.data.spec import load_spec
    from aimass.platform import tracking
    from aimass.serving.client import ServingClient
    from aimass.serving.rollout import CanaryPolicy, rollout
    from models.tabular.inputs import load_arrays

    settings = Settings.from_env()
    spec = load_spec(ctx["dataset"], settings.conf_dir)
    features, _ = load_arrays(Path(ctx["clean_dir"]), spec, "holdout")
    sample = smoke_sample(features)
    policy = CanaryPolicy.from_env()
    # The canary replays holdout rows (NaN is fine over gRPC) and the newest recorded live
    # requests, when the server keeps a request log, to canary and stable.
    canary_rows = {k: v[: policy.requests] for k, v in features.items()}
    recent = recent_request_rows(settings, spec, policy.requests)
    if recent is not None:
        canary_rows = {k: np.concatenate([v, recent[k]]) for k, v in canary_rows.items()}
    client = ServingClient(settings.serving_grpc_target, settings.serving_rest_url)
    try:
        result = rollout(
            settings,
            client,
            model_name=spec.name,
            saved_model_dir=Path(model["saved_model_dir"]),
            registry_version=str(model["registry_version"]),
            sample=sample,
            canary_rows=canary_rows,
            policy=policy,
            keep_versions=settings.serving_keep_versions,
            lineage={
                "mlflow_run_id": str(model["mlflow_run_id"]),
                "partition": ctx["clean_dir"],
                "ds": ctx["ds"],
                "dag_run": ctx["run_key"],
            },
        )
    finally:
        client.close()
    previous = tracking.promote(settings, spec.name, str(model["registry_version"]))
    tracking.client(settings).set_model_version_tag(
        spec.name,
        str(model["registry_version"]),
        tracking.SERVING_VERSION_TAG,
        str(result["serving_version"]),
    )
    return {**result, "registry_version": model["registry_version"], "previous_champion": previous}


def recent_request_rows(settings: Settings, spec: Any, limit: int) -> dict[str, Any] | None:
    """The newest ``limit`` requests the model server recorded for ``spec``'s model, as
    model inputs; None without a request log (or one that lacks a feature)."""
    import pyarrow.parquet as pq

    from aimass.platform.errors import ConfigError
    from aimass.serving.request_log import recent_requests_path
    from models.tabular.inputs import feature_arrays

    path = recent_requests_path(settings.requests_dir, spec.name)
    if not path.exists():
        return None
    table = pq.read_table(path)
    table = table.slice(max(table.num_rows - limit, 0))
    try:
        rows = feature_arrays(spec, table)
    except ConfigError as exc:
        log.warning("canary: not replaying recorded requests from %s: %s", path, exc)
        return None
    log.info("canary: replaying %d recorded requests from %s too", table.num_rows, path)
    return rows


def smoke_sample(features: dict[str, Any], rows: int = 3) -> dict[str, Any]:
    """A few holdout rows for smoke requests, complete ones first (JSON has no NaN)."""
    import numpy as np

    complete = np.ones(len(next(iter(features.values()))), dtype=bool)
    for values in features.values():
        if values.dtype.kind == "f":
            complete &= ~np.isnan(values)
        elif values.dtype.kind in "OUS":
            complete &= values != ""
    index = np.flatnonzero(complete)[:rows]
    if index.size == 0:
        index = np.arange(min(rows, complete.size))
    return {name: values[index] for name, values in features.items()}


def publish_summary(
    ctx: dict[str, Any],
    checks: dict[str, Any] | None,
    model: dict[str, Any] | None,
    decision: dict[str, Any] | None,
    deployment: dict[str, Any] | None,
    drift: dict[str, Any] | None = None,
    approval: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Collect the run's outcome in one place (XCom, a JSON file) for the UI and `make demo`.

    ``approval`` is the human approval step's answer, when the DAG has that step.
    """
    settings = Settings.from_env()
    summary = {
        "dataset": ctx["dataset"],
        "ds": ctx["ds"],
        "run_id": ctx["run_id"],
        # Why the run started: schedule_or_manual, landing (which files), drift (why).
        "trigger": ctx.get("trigger"),
        "clean": (checks or {}).get("clean"),
        "quality": (checks or {}).get("quality"),
        "drift": drift,
        "model": model,
        "gate": None
        if decision is None
        else {
            "passed": decision["passed"],
            "candidate": decision["candidate"],
            "champion": decision["champion"],
            "champion_version": decision.get("champion_version"),
            "task": decision.get("task"),
            "primary_metric": decision.get("primary_metric"),
            "checks": [c["message"] for c in decision["checks"]],
            "reasons": decision.get("reasons", []),
            "verdict": decision.get("verdict"),
            "forced": decision.get("forced", False),
            "force_reason": decision.get("force_reason"),
            "forced_by": decision.get("forced_by"),
            "report_html": decision.get("report_html"),
        },
        "deployment": deployment,
        "approval": None
        if approval is None
        else {
            "chosen": list(approval.get("chosen_options") or []),
            "by": approval.get("responded_by_user"),
            "at": None if approval.get("responded_at") is None else str(approval["responded_at"]),
        },
        "links": {
            "mlflow_run": (model or {}).get("mlflow_run_url"),
            "data_docs": ((checks or {}).get("quality") or {}).get("data_docs"),
            "drift_report": (drift or {}).get("report_html"),
            "gate_report": (decision or {}).get("report_html"),
            "serving_rest": f"{settings.serving_rest_url}/v1/models/{ctx['dataset']}",
        },
    }
    path = Path(ctx["report_dir"]) / "run_summary.json"
    path.write_text(json.dumps(summary, indent=2, default=str), encoding="utf-8")
    log.info("run summary: %s", path)
    return summary


def prepare_rollback(params: dict[str, Any], *, who: str) -> dict[str, Any]:
    """Check a rollback's params against what is served now; the context the next task reads.

    Raises:
        ConfigError: an unknown dataset, a version that is not on disk or already stable,
            nothing to roll back to, or a reason too short to tell anyone anything.
    """
    from aimass.data.spec import load_spec
    from aimass.platform.errors import ConfigError
    from aimass.serving.config import find_model, list_versions, read_config
    from aimass.serving.rollout import PREVIOUS, STABLE, serving_config_path

    settings = Settings.from_env()
    spec = load_spec(str(params.get("dataset") or "chicago_taxi"), settings.conf_dir)
    reason = str(params.get("reason") or "").strip()
    if len(reason) < 10:
        raise ConfigError(
            f"param reason={reason!r} is too short; say in a sentence why you roll back "
            "(it is recorded with the rollback)"
        )
    path = serving_config_path(settings)
    entry = find_model(read_config(path), spec.name) if path.exists() else None
    labels = {} if entry is None else dict(entry.version_labels)
    if STABLE not in labels:
        raise ConfigError(
            f"{spec.name} has no stable version on the model server; nothing to roll back"
        )
    on_disk = list_versions(settings.serving_base / spec.name)
    raw = params.get("version")
    target = labels.get(PREVIOUS) if raw in (None, "") else raw
    if target is None:
        raise ConfigError(
            f"{spec.name} has no 'previous' version (stable is {labels[STABLE]}); set param "
            f"version to one of {[v for v in on_disk if v != labels[STABLE]]}"
        )
    if isinstance(target, bool) or not str(target).isdigit() or int(target) not in on_disk:
        raise ConfigError(
            f"param version={target!r} is not a served version of {spec.name}; use one of {on_disk}"
        )
    if int(target) == labels[STABLE]:
        raise ConfigError(f"param version={target} is already stable; pick another of {on_disk}")
    ctx = {
        "dataset": spec.name,
        "version": int(target),
        "stable": labels[STABLE],
        "reason": reason,
        "who": who,
    }
    log.info(
        "rollback of %s: stable %s -> %s by %s: %s", spec.name, labels[STABLE], target, who, reason
    )
    return ctx


def roll_back(ctx: dict[str, Any]) -> dict[str, Any]:
    """Move ``stable`` and the MLflow alias ``champion`` back; record who and why."""
    from datetime import UTC

    from aimass.platform import tracking
    from aimass.serving.client import ServingClient
    from aimass.serving.rollout import rollback

    settings = Settings.from_env()
    client = ServingClient(settings.serving_grpc_target, settings.serving_rest_url)
    try:
        result = rollback(
            settings,
            client,
            model_name=ctx["dataset"],
            version=int(ctx["version"]),
            keep_versions=settings.serving_keep_versions,
        )
    finally:
        client.close()
    registry_version = result["marker"].get("registry_version")
    previous = None
    if registry_version:
        previous = tracking.promote(settings, ctx["dataset"], str(registry_version))
        mlc = tracking.client(settings)
        for key, value in (
            ("aimass.rollback_by", ctx["who"]),
            ("aimass.rollback_reason", ctx["reason"][:4000]),
            ("aimass.rollback_from_serving_version", str(result["rolled_back_from"])),
        ):
            mlc.set_model_version_tag(ctx["dataset"], str(registry_version), key, value)
    else:
        log.warning(
            "serving version %s has no lineage marker; the MLflow alias %s was not moved",
            ctx["version"],
            tracking.CHAMPION,
        )
    at = datetime.now(UTC)
    record = {
        **ctx,
        **{k: v for k, v in result.items() if k != "smoke"},
        "registry_version": registry_version,
        "previous_champion": previous,
        "at": at.isoformat(),
    }
    folder = settings.reports_dir / ctx["dataset"] / "rollbacks"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{at.strftime('%Y%m%dT%H%M%S')}-v{ctx['version']}.json"
    path.write_text(json.dumps(record, indent=2, sort_keys=True), encoding="utf-8")
    log.info(
        "rolled back %s: stable %s -> %s (registry version %s) in %.2f s; record %s",
        ctx["dataset"],
        result["rolled_back_from"],
        result["serving_version"],
        registry_version,
        result["seconds"],
        path,
    )
    from aimass.platform.alerts import ROLLBACK, send_alert

    send_alert(
        ROLLBACK,
        f"{ctx['dataset']} rolled back: stable {result['rolled_back_from']} -> "
        f"{result['serving_version']} by {ctx['who']}",
        {
            "dataset": ctx["dataset"],
            "who": ctx["who"],
            "reason": ctx["reason"],
            "from_serving_version": result["rolled_back_from"],
            "to_serving_version": result["serving_version"],
            "registry_version": registry_version,
            "previous_champion": previous,
            "record": str(path),
        },
        settings=settings,
    )
    return {**record, "record": str(path)}
