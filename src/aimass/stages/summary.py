"""A retrain run's summary: its outcome, every stage's record, its lineage and links."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from aimass.platform.records import (
    DataChecks,
    Deployment,
    DriftResult,
    GateDecision,
    Lineage,
    RunRequest,
    RunSummary,
    TrainingResult,
)
from aimass.platform.settings import Settings

log = logging.getLogger(__name__)


def _outcome(
    model: TrainingResult | None, decision: GateDecision | None, deployment: Deployment | None
) -> str:
    if deployment is not None:
        return "deployed"
    if decision is not None and not decision.deploy:
        return "rejected"
    if decision is not None:
        return "not deployed"
    return "trained" if model is not None else "stopped"


def publish_summary(
    run: RunRequest | Mapping[str, Any],
    checks: DataChecks | Mapping[str, Any] | None,
    model: TrainingResult | Mapping[str, Any] | None,
    decision: GateDecision | Mapping[str, Any] | None,
    deployment: Deployment | Mapping[str, Any] | None,
    drift: DriftResult | Mapping[str, Any] | None = None,
    approval: dict[str, Any] | None = None,
) -> RunSummary:
    """Collect the run's outcome and lineage in one record (XCom, ``summary.json``), and log
    the run's later records to its model's MLflow run (``records/``).

    ``approval`` is the human approval step's answer, when the DAG has that step.
    """
    run = RunRequest.of(run)
    data = None if checks is None else DataChecks.of(checks)
    trained = None if model is None else TrainingResult.of(model)
    gate = None if decision is None else GateDecision.of(decision)
    deployed = None if deployment is None else Deployment.of(deployment)
    drifted = None if drift is None else DriftResult.of(drift)
    settings = Settings.from_env()
    summary = RunSummary(
        dataset=run.dataset,
        ds=run.ds,
        run_id=run.run_id,
        dag_id=run.dag_id,
        outcome=_outcome(trained, gate, deployed),
        # Why the run started: schedule_or_manual, landing (which files), drift (why).
        trigger=run.trigger,
        clean=None if data is None else data.clean,
        quality=None if data is None else data.quality,
        drift=drifted,
        model=trained,
        gate=None
        if gate is None
        else {
            "passed": gate.passed,
            "candidate": gate.candidate,
            "champion": gate.champion,
            "champion_version": gate.champion_version,
            "task": gate.task,
            "primary_metric": gate.primary_metric,
            "checks": [c["message"] for c in gate.checks],
            "reasons": gate.reasons,
            "verdict": gate.verdict,
            "forced": gate.forced,
            "force_reason": gate.force_reason,
            "forced_by": gate.forced_by,
            "report_html": gate.report_html,
            "compression": gate.compression,
        },
        deployment=deployed,
        approval=None
        if approval is None
        else {
            "chosen": list(approval.get("chosen_options") or []),
            "by": approval.get("responded_by_user"),
            "at": None if approval.get("responded_at") is None else str(approval["responded_at"]),
        },
        lineage=Lineage.of_run(run, trained, deployed),
        links={
            "mlflow_run": None if trained is None else trained.mlflow_run_url,
            "data_docs": None if data is None else data.quality.data_docs,
            "drift_report": None if drifted is None else drifted.report_html,
            "gate_report": None if gate is None else gate.report_html,
            "model_card": _model_card(None if gate is None else gate.report_html),
            "serving_rest": f"{settings.serving_rest_url}/v1/models/{run.dataset}",
        },
        requested_at=run.requested_at,
    )
    path = summary.write(run.records_dir)
    log.info("run summary (%s): %s", summary.outcome, path)
    if settings.lake_prune:
        _prune(settings, run.dataset)
    if trained is not None:
        # The MLflow run keeps the records of what became of its model, beside the model.
        from aimass.platform import tracking

        with tracking.resume_run(settings, trained.mlflow_run_id) as mlrun:
            for record in (drifted, gate, deployed, summary):
                if record is not None:
                    mlrun.record(record)
    return summary


def _model_card(gate_report: str | None) -> str | None:
    """The version's model card, written beside the gate report (None when it is not there)."""
    from aimass.evaluation.card import CARD_HTML

    if not gate_report:
        return None
    card = Path(gate_report).with_name(CARD_HTML)
    return str(card) if card.exists() else None


def _prune(settings: Settings, dataset: str) -> None:
    """Retention after the run (``AIMASS_LAKE_PRUNE``): never fails the run."""
    from aimass.stages.batches import prune_dataset

    try:
        removed = prune_dataset(settings, dataset)
    except Exception as exc:  # retention is housekeeping: say so, go on
        log.warning("lake: pruning %s's superseded batches failed: %s", dataset, exc)
        return
    if removed:
        log.info("lake: %d superseded batch(es) of %s removed", len(removed), dataset)
