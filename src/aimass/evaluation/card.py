"""The model card of a registry version: one JSON document and one self-contained HTML page.

:func:`build_card` puts together what a reader of a version needs on one page: the data it
was trained and judged on (partition, rows, split), its features (numeric, categorical,
derived with their expressions, and the raw columns the model takes), its holdout metrics
overall and per slice, the analysis (:mod:`aimass.evaluation.analysis`: importance,
calibration, ROC/PR points or residuals), the gate's decision with its reasons, and its
lineage. :func:`render_html` draws the card from that JSON alone, so a stored
``model_card.json`` renders the same page again. The page is the Jinja2 template
``templates/model_card.html`` (autoescaped), with inline CSS and inline SVG plots: no
scripts, links to fetch or fonts.
"""

from __future__ import annotations

import functools
import json
import math
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jinja2
from markupsafe import Markup

from aimass.evaluation import plots
from aimass.evaluation.report import json_safe
from aimass.platform.templates import environment

if TYPE_CHECKING:
    from aimass.data.spec import DatasetSpec
    from aimass.platform.records import GateDecision, RunRequest, TrainingResult

CARD_JSON = "model_card.json"
CARD_HTML = "model_card.html"
ANALYSIS_JSON = "analysis.json"
CARD_SCHEMA = 1
# Bars in the importance chart (the table lists every input) and per-slice rows shown.
TOP_FEATURES = 20
TOP_SLICE_FEATURES = 5


def _text(value: Any, digits: int = 4) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.{digits}f}" if math.isfinite(value) else str(value)
    if isinstance(value, list | tuple):
        return ", ".join(str(v) for v in value) or "none"
    return str(value)


@functools.cache
def _environment() -> jinja2.Environment:
    return environment("aimass.evaluation", "templates", filters={"text": _text})


def _features(spec: DatasetSpec, model_inputs: list[str]) -> dict[str, Any]:
    features = set(spec.features)
    try:
        raw = list(spec.model_inputs)
    except Exception as exc:  # an expression outside the language: say so, keep the card
        raw = [f"(not known: {exc})"]
    return {
        "numeric": list(spec.numeric_features),
        "categorical": list(spec.categorical_features),
        "derived": [
            {
                "name": d.name,
                "expression": d.expression,
                "dtype": d.dtype,
                "feature": d.name in features,
            }
            for d in spec.derived
        ],
        "raw_inputs": raw,
        "model_inputs": model_inputs,
    }


def build_card(
    spec: DatasetSpec,
    *,
    run: RunRequest,
    model: TrainingResult,
    gate: GateDecision,
    analysis: dict[str, Any],
    rows: dict[str, int | None],
    missing: dict[str, str] | None = None,
) -> dict[str, Any]:
    """The card's JSON: data, features, metrics, analysis, gate decision and lineage.

    Args:
        rows: ``{"train": n, "holdout": m}`` of the partition (None where not counted).
        missing: parts that could not be made, part -> reason, besides the analysis' own.
    """
    absent = {**(missing or {}), **(analysis.get("missing") or {})}
    card = {
        "schema_version": CARD_SCHEMA,
        "kind": "model_card",
        "dataset": spec.name,
        "description": spec.description,
        "registry_version": model.registry_version,
        "task": spec.task,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "data": {
            "dataset": spec.name,
            "ds": run.ds,
            "partition": run.clean_dir,
            "input_path": run.input_path,
            "rows_train": rows.get("train"),
            "rows_holdout": rows.get("holdout"),
            "split": {
                "by": spec.split.by,
                "column": spec.split.column,
                "cutoff": spec.split.cutoff,
                "key": list(spec.split.key),
                "holdout_percent": spec.holdout_percent,
            },
            "label": spec.label_name,
            "classes": list(spec.label_classes),
        },
        "features": _features(spec, list(analysis.get("model_inputs") or [])),
        "metrics": {
            "primary": gate.primary_metric,
            "larger_is_better": spec.metrics.get(gate.primary_metric, True),
            "overall": dict(gate.candidate),
            "champion": dict(gate.champion) if gate.champion is not None else None,
            "slices": [
                {
                    "column": s.get("column"),
                    "value": s.get("value"),
                    "rows": s.get("rows"),
                    "metrics": s.get("candidate") or {},
                }
                for s in gate.slices
            ],
        },
        "importance": analysis.get("importance"),
        "calibration": analysis.get("calibration"),
        "curves": analysis.get("curves"),
        "residuals": analysis.get("residuals"),
        "gate": {
            "verdict": gate.verdict,
            "passed": gate.passed,
            "deploy": gate.deploy,
            "headline": gate.headline,
            "reasons": list(gate.reasons),
            "forced": gate.forced,
            "force_reason": gate.force_reason,
            "forced_by": gate.forced_by,
            "report_html": gate.report_html,
        },
        "lineage": {
            "dag_id": run.dag_id,
            "run_id": run.run_id,
            "run_key": run.run_key,
            "mlflow_run_id": model.mlflow_run_id,
            "mlflow_run_url": model.mlflow_run_url,
            "registry_version": model.registry_version,
            "partition": run.clean_dir,
            "ds": run.ds,
            "input_path": run.input_path,
            "landed_files": list(run.landed_files),
            "champion_compared_with": gate.champion_version,
        },
        "missing": absent,
    }
    return dict(json_safe(card))


def _importance_plot(importance: dict[str, Any] | None) -> Markup | None:
    if not importance:
        return None
    bars = [
        (f["feature"], f["mean"], f["std"] or 0.0)
        for f in importance.get("features", [])[:TOP_FEATURES]
        if f.get("mean") is not None
    ]
    return plots.bar_chart(
        bars,
        title=f"Permutation importance: drop of {importance.get('metric')} when shuffled",
        x_label=f"drop of {importance.get('metric')} (mean ± std over "
        f"{importance.get('repeats')} shuffles)",
    )


def _calibration_plot(calibration: dict[str, Any] | None) -> Markup | None:
    if not calibration:
        return None
    bins = calibration.get("bins") or []
    return plots.xy_chart(
        [("observed", [(b["mean_predicted"], b["observed"]) for b in bins])],
        title="Calibration (reliability bins)",
        x_label=f"mean predicted: {calibration.get('of')}",
        y_label="observed rate",
        x_range=(0.0, 1.0),
        y_range=(0.0, 1.0),
        reference="diagonal",
    )


def _curve_plots(curves: list[dict[str, Any]] | None) -> list[Markup]:
    if not curves:
        return []
    roc = [(c["of"], [(p["fpr"], p["tpr"]) for p in c.get("roc") or []]) for c in curves]
    pr = [(c["of"], [(p["recall"], p["precision"]) for p in c.get("pr") or []]) for c in curves]
    unit = (0.0, 1.0)
    return [
        plots.xy_chart(
            [s for s in roc if s[1]],
            title="ROC curve",
            x_label="false positive rate",
            y_label="true positive rate",
            x_range=unit,
            y_range=unit,
            reference="diagonal",
            markers=False,
        ),
        plots.xy_chart(
            [s for s in pr if s[1]],
            title="Precision-recall curve",
            x_label="recall",
            y_label="precision",
            x_range=unit,
            y_range=unit,
            markers=False,
        ),
    ]


def _residual_plot(residuals: list[dict[str, Any]] | None) -> Markup | None:
    if not residuals:
        return None
    return plots.xy_chart(
        [("mean residual", [(b["mean_predicted"], b["mean_residual"]) for b in residuals])],
        errors=[[b["std_residual"] for b in residuals]],
        title="Residuals by predicted value (mean ± std per bin)",
        x_label="predicted value (bin mean)",
        y_label="label - prediction",
        reference="zero",
        width=480,
    )


def split_text(split: dict[str, Any]) -> str:
    """How the holdout was chosen, in words: "time by date from 2024-06-01"."""
    text = str(split.get("by", "hash"))
    if split.get("column"):
        text += f" by {split['column']}"
    if split.get("key"):
        text += f" on key {', '.join(split['key'])}"
    if split.get("cutoff"):
        return f"{text}: holdout from {split['cutoff']}"
    return f"{text}: {split.get('holdout_percent')} % holdout"


def render_html(card: dict[str, Any]) -> str:
    """The card as one HTML page with its plots inline."""
    importance = card.get("importance")
    return (
        _environment()
        .get_template("model_card.html")
        .render(
            card=card,
            split_text=split_text(card.get("data", {}).get("split") or {}),
            title=f"Model card: {card.get('dataset')} v{card.get('registry_version')}",
            importance_plot=_importance_plot(importance),
            calibration_plot=_calibration_plot(card.get("calibration")),
            curve_plots=_curve_plots(card.get("curves")),
            residual_plot=_residual_plot(card.get("residuals")),
            top_slice_features=TOP_SLICE_FEATURES,
        )
    )


def write_card(out_dir: Path, card: dict[str, Any], analysis: dict[str, Any]) -> dict[str, Path]:
    """Write ``analysis.json``, ``model_card.json`` and ``model_card.html`` into ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {
        "analysis": out_dir / ANALYSIS_JSON,
        "json": out_dir / CARD_JSON,
        "html": out_dir / CARD_HTML,
    }
    safe = json_safe(card)
    paths["analysis"].write_text(
        json.dumps(json_safe(analysis), indent=2, allow_nan=False), encoding="utf-8"
    )
    paths["json"].write_text(json.dumps(safe, indent=2, allow_nan=False), encoding="utf-8")
    paths["html"].write_text(render_html(safe), encoding="utf-8")
    return paths


def add_compression(out_dir: Path, compression: dict[str, Any]) -> dict[str, Path] | None:
    """Add the compression stage's choice to the card in ``out_dir`` and draw it again.

    Returns the card's paths, or None when the run has no card (its writing failed earlier).
    """
    path = out_dir / CARD_JSON
    if not path.exists():
        return None
    card = json.loads(path.read_text(encoding="utf-8"))
    card["compression"] = compression
    safe = json_safe(card)
    path.write_text(json.dumps(safe, indent=2, allow_nan=False), encoding="utf-8")
    (out_dir / CARD_HTML).write_text(render_html(safe), encoding="utf-8")
    return {"json": path, "html": out_dir / CARD_HTML}
