"""Analyse a gated candidate and store its model card beside the gate report and in MLflow.

Called by ``evaluate_candidate`` once the gate has decided. Nothing here may stop a run: a
part that cannot be made is logged as a warning and named in the card's ``missing``, and a
card that cannot be made at all (or logged to MLflow) is a warning, never an exception.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aimass.evaluation.card import CARD_HTML, build_card, write_card

if TYPE_CHECKING:
    from aimass.data.spec import DatasetSpec
    from aimass.platform.records import GateDecision, RunRequest, TrainingResult
    from aimass.platform.settings import Settings

log = logging.getLogger(__name__)

# Artifact folder of the model's MLflow run that holds the card and the analysis.
ARTIFACT_PATH = "model_card"
# Registry version tag: "complete", or "partial: <missing parts>".
CARD_TAG = "aimass.model_card"


def split_rows(partition: Path) -> dict[str, int | None]:
    """Rows of each split of a clean partition (counted from the Parquet metadata and split)."""
    import pyarrow.compute as pc

    from aimass.data.lake import open_partition
    from models.tabular.inputs import SPLIT_COLUMN

    dataset = open_partition(partition)
    return {
        split: int(dataset.count_rows(filter=pc.field(SPLIT_COLUMN) == split))
        for split in ("train", "holdout")
    }


def analyse_holdout(
    spec: DatasetSpec, partition: Path, saved_model_dir: Path
) -> tuple[dict[str, Any], dict[str, str]]:
    """The analysis of the model on the partition's holdout, and the parts that failed before it.

    The model inputs are whatever columns ``load_arrays`` gives for the spec (the raw columns
    the SavedModel takes), never a list of this module's own.
    """
    from aimass.evaluation.analysis import analyze
    from aimass.evaluation.metrics import load_slices
    from models.tabular.export import load_predict_fn
    from models.tabular.inputs import load_arrays

    missing: dict[str, str] = {}
    features, labels = load_arrays(partition, spec, "holdout")
    try:
        slices = load_slices(partition, spec, labels)
    except Exception as exc:
        log.warning("model analysis: no slices: %s", exc)
        slices, missing["slice importance"] = {}, f"{type(exc).__name__}: {exc}"
    predict = load_predict_fn(saved_model_dir)
    metric = spec.primary_metric
    analysis = analyze(
        predict,
        features,
        labels,
        task=spec.task,
        metric=metric,
        larger_is_better=spec.metrics.get(metric, True),
        slices=slices,
        threshold=spec.gate.decision_threshold,
        classes=tuple(spec.label_classes),
    )
    return analysis, missing


def _empty_analysis(reason: str) -> dict[str, Any]:
    parts = ("importance", "calibration", "curves", "residuals")
    return {
        "rows": 0,
        "model_inputs": [],
        **dict.fromkeys(parts),
        "missing": dict.fromkeys(("importance", "calibration or residuals"), reason),
    }


def record_model_card(
    settings: Settings,
    spec: DatasetSpec,
    *,
    run: RunRequest,
    model: TrainingResult,
    gate: GateDecision,
) -> dict[str, Path] | None:
    """Analyse the candidate, write ``analysis.json``, ``model_card.json`` and
    ``model_card.html`` into the run's report dir (beside the gate report), log them to the
    model's MLflow run under ``model_card/`` and tag the registry version with what the card
    holds. Returns the files' paths, or None when no card could be written; never raises."""
    partition = run.training_data
    try:
        analysis, missing = analyse_holdout(spec, partition, Path(model.saved_model_dir))
    except Exception as exc:
        log.warning("model analysis failed; the card goes without it: %s", exc, exc_info=True)
        analysis, missing = _empty_analysis(f"{type(exc).__name__}: {exc}"), {}
    try:
        rows: dict[str, int | None] = split_rows(partition)
    except Exception as exc:
        log.warning("model card: cannot count the partition's rows: %s", exc)
        rows = {"train": None, "holdout": None}
        missing["row counts"] = f"{type(exc).__name__}: {exc}"
    try:
        card = build_card(
            spec, run=run, model=model, gate=gate, analysis=analysis, rows=rows, missing=missing
        )
        paths = write_card(Path(run.report_dir), card, analysis)
    except Exception as exc:
        log.warning("model card could not be written: %s", exc, exc_info=True)
        return None
    for part, reason in card["missing"].items():
        log.warning("model card of v%s lacks %s: %s", model.registry_version, part, reason)
    log.info("model card: %s", paths["html"])
    _log_to_mlflow(settings, spec.name, model, paths, card["missing"])
    return paths


def _log_to_mlflow(
    settings: Settings,
    dataset: str,
    model: TrainingResult,
    paths: dict[str, Path],
    missing: dict[str, str],
) -> None:
    from aimass.platform import tracking

    state = "complete" if not missing else "partial: " + ", ".join(missing)
    try:
        with tracking.resume_run(settings, model.mlflow_run_id) as mlrun:
            for path in paths.values():
                mlrun.file(path, ARTIFACT_PATH)
            mlrun.tags({CARD_TAG: state[:500]})
        tracking.tag_version(settings, dataset, model.registry_version, {CARD_TAG: state[:500]})
    except Exception as exc:
        log.warning(
            "model card not logged to MLflow run %s (it stays in the report dir as %s): %s",
            model.mlflow_run_id,
            paths.get("html", CARD_HTML),
            exc,
        )
