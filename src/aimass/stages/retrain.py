"""The ``aimass_retrain`` DAG's stages: each takes the records of the stages before it and
returns its own (``aimass.platform.records``), written to the run's ``records/`` folder.

``prepare_run`` → (clean job) → ``validate_quality`` → ``check_drift`` → ``train_model`` →
``evaluate_candidate`` → (``compress_candidate``, ``aimass.stages.compress``) → ``deploy_model``
or ``reject_candidate`` → ``publish_summary`` (``aimass.stages.summary``).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from aimass.platform.errors import StageError
from aimass.platform.records import (
    CleanResult,
    CompressionResult,
    DataChecks,
    Deployment,
    DriftResult,
    GateDecision,
    QualityResult,
    RunRequest,
    TrainingResult,
)
from aimass.platform.settings import Settings, safe_name
from aimass.stages.batches import VIEW_FILE, record_run_batch, write_clean_args

log = logging.getLogger(__name__)


def prepare_run(
    params: dict[str, Any],
    *,
    dag_id: str,
    run_id: str,
    run_date: datetime,
    landed: list[dict[str, Any]] | None = None,
    drifted: list[dict[str, Any]] | None = None,
) -> RunRequest:
    """Validate the params and lay out where every stage of this run reads and writes.

    ``landed``: the payloads of the landing-zone events that scheduled this run. The run
    then takes the claimed files of the first event's dataset (``aimass.data.landing.take``) and
    cleans the day's landed files (``processed/ds=<ds>/``) into that day's partition.

    ``drifted``: the extras (``dataset``, ``reason``, ``report``) of the drift events
    ``aimass_monitor`` emitted. Without landed files, the run retrains the first event's
    dataset on its spec's source; ``trigger`` records why the run started.

    Raises:
        ConfigError: a bad param, named with its fix.
        NothingLanded: landing events whose files another run already took.
    """
    from aimass.stages.triggers import resolve_trigger
    from aimass.stages.validation import validate_params

    settings = Settings.from_env()
    params, trigger, landed_files = resolve_trigger(
        settings, params, run_id=run_id, run_date=run_date, landed=landed, drifted=drifted
    )
    p = validate_params(params, settings, run_date=run_date)
    report_dir = settings.run_report_dir(p.dataset, p.ds, run_id)
    report_dir.mkdir(parents=True, exist_ok=True)
    run = RunRequest(
        **p.to_dict(),
        dag_id=dag_id,
        run_id=run_id,
        run_key=f"{dag_id}/{run_id}",
        clean_dir=str(settings.clean_partition(p.dataset, p.ds)),
        batch_dir=str(settings.clean_batch(p.dataset, p.ds, run_id)),
        quarantine_dir=str(settings.quarantine_batch(p.dataset, p.ds, run_id)),
        report_dir=str(report_dir),
        clean_summary=str(report_dir / "clean_summary.json"),
        clean_args=str(report_dir / "clean_inputs.args"),
        view_file=str(report_dir / VIEW_FILE),
        run_dir=str(settings.runs_dir / p.dataset / safe_name(run_id)),
        landed_files=landed_files,
        trigger=trigger,
    )
    write_clean_args(run)
    run.write(run.records_dir)
    log.info("run %s: dataset=%s ds=%s input=%s", run_id, p.dataset, p.ds, p.input_path)
    log.info("run %s: reports and records in %s", run_id, report_dir)
    return run


def _read_json(path: Path, what: str) -> dict[str, Any]:
    if not path.exists():
        raise StageError(
            f"{what} not found at {path}; did the previous stage run for this partition?"
        )
    return dict(json.loads(path.read_text(encoding="utf-8")))


def validate_quality(run: RunRequest | Mapping[str, Any]) -> DataChecks:
    """Check the clean partition with the spec's GX suite; a critical failure raises.

    The suite is generated from ``spec.quality``, plus ``conf/expectations/<dataset>.yaml``
    when that file exists.
    """
    from aimass.data.quality import find_expectations_file, raise_for_critical, validate_partition
    from aimass.data.spec import load_spec

    run = RunRequest.of(run)
    settings = Settings.from_env()
    spec = load_spec(run.dataset, settings.conf_dir)
    expectations = find_expectations_file(settings.conf_dir, spec.name)
    if expectations is None:
        log.info(
            "quality: no expectations file at %s; the suite is generated from spec.quality only",
            settings.conf_dir / "expectations" / f"{spec.name}.yaml",
        )
    else:
        log.info("quality: expectations file %s is added to the suite", expectations)
    clean = CleanResult.of(_read_json(Path(run.clean_summary), "clean summary"))
    log.info(
        "clean: %s rows in, %s clean, %s quarantined, %s duplicates removed",
        clean.rows_in,
        clean.rows_clean,
        clean.rows_quarantined,
        clean.rows_duplicate,
    )
    quality = validate_partition(
        spec, run.new_batch, Path(run.report_dir), expectations_file=expectations
    )
    log.info("quality report (Data Docs): %s", quality.get("data_docs"))
    checks = DataChecks(clean=clean, quality=QualityResult.from_gx(quality))
    # Written before the critical check: a stopped run still shows what failed.
    checks.write(run.records_dir)
    raise_for_critical(quality)
    if run.batch_dir:
        record_run_batch(run, clean)
    return checks


def check_drift(run: RunRequest | Mapping[str, Any]) -> DriftResult:
    """Compare the new batch with the reference recorded for the champion (PSI, nulls, schema).

    Returns the drift result; raises when drift is critical and the spec says
    ``drift.on_critical: fail``. With no champion (or an old one without a reference
    profile) there is nothing to compare with, and the result says so.
    """
    from aimass.data.drift import compare, profile_partition, write_report, xcom_summary
    from aimass.data.monitor import champion_reference
    from aimass.data.spec import load_spec
    from aimass.platform.errors import DataQualityError

    run = RunRequest.of(run)
    settings = Settings.from_env()
    spec = load_spec(run.dataset, settings.conf_dir)
    champ, reference = champion_reference(settings, spec.name)
    if champ is None:
        log.info("drift: no champion yet, nothing to compare with")
        result = DriftResult(status="skipped", reason="no champion yet")
        result.write(run.records_dir)
        return result
    if reference is None:  # an older champion without a profile: do not block retraining
        log.warning("drift: champion v%s has no reference profile; skipping", champ.version)
        result = DriftResult(
            status="skipped", reason=f"champion v{champ.version} has no reference profile"
        )
        result.write(run.records_dir)
        return result
    # The new batch against the champion's reference: what arrived, not the whole day.
    current = profile_partition(run.new_batch, spec, edges_from=reference)
    report = compare(reference, current, spec.drift)
    paths = write_report(report, Path(run.report_dir) / "drift")
    for line in report.summary().splitlines():
        log.info("drift: %s", line)
    log.info("drift report: %s", paths["html"])
    result = DriftResult(**xcom_summary(report, paths), champion_version=str(champ.version))
    result.write(run.records_dir)
    if report.status == "critical":
        from aimass.platform.alerts import alert_on_drift

        alert_on_drift(result.dump(), dataset=spec.name, settings=settings)
    if report.action == "fail":
        raise DataQualityError(
            f"critical drift against champion v{champ.version} in {result.critical_features or result.schema_changes}; "
            f"see {paths['html']}. Fix the feed, or set drift.on_critical: flag in the spec to retrain anyway"
        )
    return result


def train_model(
    run: RunRequest | Mapping[str, Any], checks: DataChecks | Mapping[str, Any]
) -> TrainingResult:
    """Train a candidate across worker processes, track it in MLflow and register a version."""
    from aimass.data.drift import profile_partition, save_profile
    from aimass.data.spec import load_spec
    from aimass.platform import tracking
    from aimass.training.hparams import resolve_hparams
    from aimass.training.launcher import launch
    from aimass.training.run import reset_run_dir

    run, checks = RunRequest.of(run), DataChecks.of(checks)
    settings = Settings.from_env()
    spec, hparams_source = resolve_hparams(
        settings,
        load_spec(run.dataset, settings.conf_dir),
        use_tuned=run.use_tuned_hparams,
        learning_rate=run.learning_rate,
        batch_size=run.batch_size,
    )
    run_dir = Path(run.run_dir)
    reset_run_dir(run_dir)
    report_dir = Path(run.report_dir)
    quality_tag = "passed" if checks.quality.success else "warnings"
    commit = tracking.git_commit(settings.root)
    started = time.monotonic()
    tags = {
        "aimass.dataset": spec.name,
        "aimass.ds": run.ds,
        "aimass.partition": run.clean_dir,
        "aimass.data": str(run.training_data),
        "aimass.run_key": run.run_key,
        "aimass.git_commit": commit,
        "aimass.quality": quality_tag,
        "aimass.hparams_source": hparams_source,
    }
    with tracking.start_run(
        settings, spec.name, name=f"train {spec.name} ds={run.ds}", tags=tags
    ) as mlrun:
        result = launch(
            settings,
            spec,
            data=run.training_data,
            run_dir=run_dir,
            workers=run.workers,
            epochs=run.epochs,
            mixed_precision=run.mixed_precision,
        )
        mlrun.params(
            {
                k: json.dumps(v) if isinstance(v, list) else v
                for k, v in result.params.items()
                if not isinstance(v, dict)
            }
        )
        mlrun.params(
            {
                "workers": result.workers,
                "input_path": run.input_path,
                "ds": run.ds,
                "hparams_source": hparams_source[:500],
            }
        )
        mlrun.history(result.history, prefix="train_")
        mlrun.metrics(
            {
                "rows_in": checks.clean.rows_in,
                "rows_clean": checks.clean.rows_clean,
                "rows_quarantined": checks.clean.rows_quarantined,
                "rows_duplicate": checks.clean.rows_duplicate,
                "train_seconds": time.monotonic() - started,
            }
        )
        mlrun.folder(result.saved_model_dir, tracking.MODEL_ARTIFACT)
        mlrun.file(result.metrics_path, "training")
        if (run_dir / "spec.yaml").exists():
            mlrun.file(run_dir / "spec.yaml", "training")
        mlrun.file(run.clean_summary, "data")
        # The reference the next runs' drift check compares against, kept with this model.
        profile = save_profile(
            profile_partition(run.training_data, spec, split="train"),
            run_dir / tracking.REFERENCE_PROFILE,
        )
        mlrun.file(profile, tracking.REFERENCE_ARTIFACT)
        if (report_dir / "drift").is_dir():
            mlrun.folder(report_dir / "drift", "drift")
        if (report_dir / "quality_summary.json").exists():
            mlrun.file(report_dir / "quality_summary.json", "data")
        if (report_dir / "data_docs").is_dir():
            mlrun.folder(report_dir / "data_docs", "data/data_docs")
        mlrun.record(run)
        mlrun.record(checks)
        mlrun.metrics(
            {
                "quality_expectations": checks.quality.expectations,
                "quality_passed": checks.quality.passed,
            }
        )
    version = tracking.register_version(
        settings,
        spec.name,
        run_id=mlrun.run_id,
        run_key=run.run_key,
        tags={
            "aimass.ds": run.ds,
            "aimass.partition": run.clean_dir,
            "aimass.git_commit": commit,
            "aimass.quality": quality_tag,
        },
    )
    url = tracking.run_url(settings, mlrun.experiment_id, mlrun.run_id)
    log.info(
        "trained %s registry version %s in %.1fs; MLflow run %s",
        spec.name,
        version,
        time.monotonic() - started,
        url,
    )
    model = TrainingResult(
        mlflow_run_id=mlrun.run_id,
        experiment_id=mlrun.experiment_id,
        mlflow_run_url=url,
        registry_version=version,
        saved_model_dir=str(result.saved_model_dir),
        workers=result.workers,
        hparams_source=hparams_source,
        train_seconds=round(time.monotonic() - started, 1),
    )
    model.write(run.records_dir)
    return model


def evaluate_candidate(
    run: RunRequest | Mapping[str, Any],
    model: TrainingResult | Mapping[str, Any],
    *,
    triggered_by: str | None = None,
) -> GateDecision:
    """Score candidate and champion on the same holdout, overall and per slice; decide.

    The decision (one line per check) goes to the task log, to ``gate_decision.json`` and
    ``gate_report.html`` in the run's report dir, to its ``gate`` record, and to the MLflow run
    (artifacts under ``evaluation/``, tag ``aimass.gate``). Then the model card
    (``aimass.evaluation.cardstage``) beside the gate report and under ``model_card/``. With the run's ``force_deploy`` a
    rejected candidate is marked forced, with the reason and ``triggered_by`` (the run's user).
    """
    from aimass.data.spec import BINARY, load_spec
    from aimass.evaluation.assess import assess_candidate
    from aimass.evaluation.cardstage import record_model_card
    from aimass.evaluation.report import (
        HTML_NAME,
        JSON_NAME,
        approval_markdown,
        json_safe,
        write_report,
    )
    from aimass.platform import tracking

    run, model = RunRequest.of(run), TrainingResult.of(model)
    settings = Settings.from_env()
    spec = load_spec(run.dataset, settings.conf_dir)
    result = assess_candidate(
        settings,
        spec,
        partition=run.training_data,
        saved_model_dir=Path(model.saved_model_dir),
        candidate_version=model.registry_version,
        min_auc=run.min_auc,
        force_reason=run.force_reason if run.force_deploy else None,
        forced_by=triggered_by,
    )
    decision = result.decision
    report_dir = Path(run.report_dir)
    out = {
        **decision.to_dict(),
        "dataset": spec.name,
        "ds": run.ds,
        "run_id": run.run_id,
        "champion_version": result.champion_version,
        "candidate_version": model.registry_version,
        "task": spec.task,
        "primary_metric": spec.primary_metric,
        "threshold": spec.gate.decision_threshold if spec.task == BINARY else None,
        "mlflow_run_url": model.mlflow_run_url,
        "report_json": str(report_dir / JSON_NAME),
        "report_html": str(report_dir / HTML_NAME),
    }
    out["approval_md"] = approval_markdown(out)
    out = json_safe(out)
    paths = write_report(out, report_dir)
    log.info("gate report: %s (JSON: %s)", paths["html"], paths["json"])
    record = GateDecision.of(out)
    record.write(run.records_dir)
    tags = {"aimass.gate": decision.verdict}
    if decision.forced:
        # MLflow tag values are limited to 5000 characters; the reason is at most 500.
        tags.update(
            {
                "aimass.force_reason": str(decision.force_reason),
                "aimass.forced_by": str(decision.forced_by),
            }
        )
    with tracking.resume_run(settings, model.mlflow_run_id) as mlrun:
        mlrun.metrics({f"holdout_{k}": v for k, v in result.candidate.overall.items()})
        if result.champion is not None:
            mlrun.metrics({f"champion_holdout_{k}": v for k, v in result.champion.overall.items()})
        mlrun.tags(tags)
        mlrun.file(paths["json"], "evaluation")
        mlrun.file(paths["html"], "evaluation")
    tracking.tag_version(settings, spec.name, model.registry_version, tags)
    # Importance, calibration and the model card; a failure there is a warning, never a stop.
    record_model_card(settings, spec, run=run, model=model, gate=record)
    return record


def reject_candidate(decision: GateDecision | Mapping[str, Any]) -> dict[str, Any]:
    """Log why the gate kept the candidate out, one line per failed check; nothing changes."""
    from aimass.platform.alerts import CANDIDATE_REJECTED, send_alert

    d = GateDecision.of(decision)
    log.warning(
        "candidate version %s rejected; production unchanged (%d failed checks)",
        d.candidate_version,
        len(d.reasons),
    )
    for reason in d.reasons:
        log.warning("%s", reason)
    if d.report_html:
        log.warning("gate report: %s", d.report_html)
    send_alert(
        CANDIDATE_REJECTED,
        f"{d.dataset or 'model'} candidate v{d.candidate_version} "
        f"rejected ({len(d.reasons)} failed checks); production unchanged",
        {
            "dataset": d.dataset,
            "ds": d.ds,
            "candidate_version": d.candidate_version,
            "champion_version": d.champion_version,
            "failed_checks": list(d.reasons),
            "report_html": d.report_html,
            "mlflow_run_url": d.mlflow_run_url,
        },
        run_id=d.run_id,
    )
    return {
        "candidate_version": d.candidate_version,
        "reasons": list(d.reasons),
        "report_html": d.report_html,
    }


def deploy_model(
    run: RunRequest | Mapping[str, Any],
    model: TrainingResult | Mapping[str, Any],
    compression: CompressionResult | Mapping[str, Any] | None = None,
) -> Deployment:
    """Roll out what ``compression`` chose (a variant's own registry version, else the
    candidate) to the model server as the next version and make that version champion."""
    from aimass.data.spec import load_spec
    from aimass.platform import tracking
    from aimass.serving.client import ServingClient
    from aimass.serving.replay import canary_rows, smoke_sample
    from aimass.serving.rollout import CanaryPolicy, rollout
    from models.tabular.inputs import load_arrays

    run, model = RunRequest.of(run), TrainingResult.of(model)
    chosen = None if compression is None else CompressionResult.of(compression)
    version = model.registry_version if chosen is None else chosen.registry_version
    saved_model = model.saved_model_dir if chosen is None else chosen.saved_model_dir
    settings = Settings.from_env()
    spec = load_spec(run.dataset, settings.conf_dir)
    features, _ = load_arrays(run.training_data, spec, "holdout")
    policy = CanaryPolicy.from_env()
    client = ServingClient(settings.serving_grpc_target, settings.serving_rest_url)
    try:
        result = rollout(
            settings,
            client,
            model_name=spec.name,
            saved_model_dir=Path(saved_model),
            registry_version=version,
            sample=smoke_sample(features),
            canary_rows=canary_rows(settings, spec, features, policy.requests),
            policy=policy,
            keep_versions=settings.serving_keep_versions,
            lineage={
                "mlflow_run_id": model.mlflow_run_id,
                "partition": run.clean_dir,
                "ds": run.ds,
                "dag_run": run.run_key,
            },
        )
    finally:
        client.close()
    previous = tracking.promote(settings, spec.name, version)
    tracking.tag_version(
        settings, spec.name, version, {tracking.SERVING_VERSION_TAG: str(result["serving_version"])}
    )
    deployment = Deployment.of(
        {**result, "registry_version": version, "previous_champion": previous}
    )
    deployment.write(run.records_dir)
    return deployment
