"""Score a candidate and the champion on the same holdout, overall and per slice, and decide."""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from aimass.data.spec import DatasetSpec
from aimass.evaluation.gate import GateDecision, decide, force
from aimass.evaluation.metrics import Evaluation, evaluate_with_slices, load_slices

if TYPE_CHECKING:
    from aimass.platform.settings import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Assessment:
    """The gate's decision with the metrics it was made on."""

    decision: GateDecision
    candidate: Evaluation
    champion: Evaluation | None
    champion_version: str | None


def assess_candidate(
    settings: Settings,
    spec: DatasetSpec,
    *,
    partition: Path,
    saved_model_dir: Path,
    candidate_version: str,
    min_auc: float | None = None,
    force_reason: str | None = None,
    forced_by: str | None = None,
) -> Assessment:
    """Candidate against the registry's champion on ``partition``'s holdout rows.

    With ``force_reason`` a rejected candidate is marked forced, with the reason and
    ``forced_by`` (the run's user). No champion (or the candidate itself is champion): the
    candidate is judged on the absolute bars alone.
    """
    from aimass.platform import tracking
    from models.tabular.inputs import load_arrays

    # With the derived features too: a champion exported before they moved inside the model
    # takes them as inputs (the candidate ignores them).
    features, labels = load_arrays(partition, spec, "holdout", with_derived=True)
    slices = load_slices(partition, spec, labels)
    threshold = spec.gate.decision_threshold
    candidate = evaluate_with_slices(
        saved_model_dir, features, labels, slices, task=spec.task, threshold=threshold
    )
    champion = None
    champion_version = None
    champ = tracking.version_by_alias(settings, spec.name, tracking.CHAMPION)
    if champ is not None and str(champ.version) != str(candidate_version):
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
        min_auc=min_auc,
        candidate_slices=candidate.slices,
        champion_slices=champion.slices if champion is not None else None,
    )
    if force_reason is not None:
        decision = force(decision, reason=force_reason, user=forced_by)
    for line in decision.summary().splitlines():
        log.info("%s", line)
    return Assessment(decision, candidate, champion, champion_version)
