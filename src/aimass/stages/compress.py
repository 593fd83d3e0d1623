"""The ``aimass_retrain`` DAG's compression stage, between the gate and the rollout.

``compress_candidate`` builds the compressed variants the spec's ``compression`` section
lists (:mod:`aimass.training.compression`), measures each against the candidate on the same
holdout and in a sandbox model server, and picks the best that clears every bar
(:mod:`aimass.evaluation.compression`). A chosen variant is registered as a registry version
of its own (tags ``aimass.variant``, ``aimass.compressed_from``), so what ``deploy_model``
serves is exactly what the ``champion`` alias will resolve to; otherwise the candidate's
version deploys. The choice and every variant's figures go to the task log, the
``compression`` record, the gate decision, the model card and MLflow (a child run per variant
under the candidate's run).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from aimass.platform.records import CompressionResult, GateDecision, RunRequest, TrainingResult
from aimass.platform.settings import Settings

log = logging.getLogger(__name__)

COMPRESSION_TAG = "aimass.compression"
VARIANT_RUN_KIND = "compression_variant"
# Where a chosen variant's SavedModel is kept in the candidate's MLflow run (and registered
# from): ``compressed/<variant>``, beside the candidate's own ``saved_model``.
VARIANT_ARTIFACT = "compressed"
_SKIP = ("saved_model_dir", "metrics", "reasons", "deltas", "losses", "clears", "name")


def compress_candidate(
    run: RunRequest | Mapping[str, Any],
    model: TrainingResult | Mapping[str, Any],
    decision: GateDecision | Mapping[str, Any] | None = None,
) -> CompressionResult:
    """Build, measure and judge the candidate's compressed variants; say what deploys and why.

    ``decision``: the gate's, which gets the choice added (``compression``) and is written
    again with the record.
    """
    from aimass.data.spec import load_spec

    run, model = RunRequest.of(run), TrainingResult.of(model)
    settings = Settings.from_env()
    spec = load_spec(run.dataset, settings.conf_dir)
    comp = spec.compression
    if not comp.enabled:
        result = CompressionResult(
            enabled=False,
            candidate_version=model.registry_version,
            why="compression is off in the spec (compression.enabled); the candidate deploys",
            registry_version=model.registry_version,
            saved_model_dir=model.saved_model_dir,
            bars=comp.to_dict(),
        )
        log.info("compress: %s", result.why)
    else:
        result = _compress(settings, spec, run, model)
    result.write(run.records_dir)
    if decision is not None:
        _add_to_decision(run, GateDecision.of(decision), result)
    return result


def compression_summary(result: CompressionResult) -> dict[str, Any]:
    """The choice and every variant's figures as the gate decision and model card keep them."""
    from aimass.evaluation.report import json_safe

    def strip(entry: Mapping[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in entry.items() if k != "saved_model_dir"}

    return dict(
        json_safe(
            {
                "chosen": result.chosen,
                "why": result.why,
                "registry_version": result.registry_version,
                "candidate_version": result.candidate_version,
                "candidate": strip(result.candidate),
                "variants": [strip(v) for v in result.variants],
                "bars": result.bars,
            }
        )
    )


def with_compression(
    decision: GateDecision | Mapping[str, Any], result: CompressionResult | Mapping[str, Any]
) -> GateDecision:
    """The gate decision with the compression stage's choice added."""
    summary = compression_summary(CompressionResult.of(result))
    return GateDecision.of(decision).model_copy(update={"compression": summary})


def _measure(spec: Any, run: RunRequest, model: TrainingResult) -> tuple[dict, dict]:
    """Build the variants, measure them and the candidate, choose; (candidate, choice)."""
    from aimass.evaluation.compression import CANDIDATE, choose, measure, summary_lines
    from aimass.training.compression import build_variants
    from models.tabular.inputs import load_arrays

    comp = spec.compression
    log.info(
        "compress: building %s from candidate v%s", ", ".join(comp.variants), model.registry_version
    )
    built = build_variants(
        spec,
        saved_model_dir=Path(model.saved_model_dir),
        partition=run.training_data,
        out_dir=Path(run.run_dir) / "compressed",
    )
    features, labels = load_arrays(run.training_data, spec, "holdout")
    candidate_entry = {"name": CANDIDATE, "saved_model_dir": model.saved_model_dir}
    measured = measure(
        spec, [candidate_entry, *built], features, labels, requests=comp.latency_requests
    )
    candidate, choice = measured[0], choose(spec, measured[0], measured[1:])
    for line in summary_lines(choice, candidate):
        log.info("%s", line)
    return candidate, choice


def _compress(
    settings: Settings, spec: Any, run: RunRequest, model: TrainingResult
) -> CompressionResult:
    comp = spec.compression
    try:
        candidate, choice = _measure(spec, run, model)
    except Exception as exc:  # compression is an option: the candidate passed the gate as it is
        log.warning("compress: failed, so the candidate deploys: %s", exc, exc_info=True)
        return CompressionResult(
            candidate_version=model.registry_version,
            why=f"compression failed ({type(exc).__name__}: {exc}); the uncompressed candidate "
            "is deployed",
            registry_version=model.registry_version,
            saved_model_dir=model.saved_model_dir,
            bars=comp.to_dict(),
        )
    chosen = next((v for v in choice["variants"] if v["name"] == choice["chosen"]), None)
    registry_version, saved_model_dir = model.registry_version, model.saved_model_dir
    _log_to_mlflow(settings, spec.name, run, model, candidate, choice)
    if chosen is not None:
        from aimass.platform import tracking

        registry_version = tracking.register_variant(
            settings,
            spec.name,
            run_id=model.mlflow_run_id,
            artifact_path=f"{VARIANT_ARTIFACT}/{chosen['name']}",
            variant_key=f"{run.run_key}/{chosen['name']}",
            tags={
                tracking.VARIANT_TAG: chosen["name"],
                tracking.COMPRESSED_FROM_TAG: model.registry_version,
                "aimass.ds": run.ds,
                "aimass.partition": run.clean_dir,
            },
        )
        saved_model_dir = chosen["saved_model_dir"]
        tracking.tag_version(
            settings,
            spec.name,
            model.registry_version,
            {COMPRESSION_TAG: f"{chosen['name']} deployed as v{registry_version}"},
        )
        log.info(
            "compress: deploying %s as registry version %s (compressed from v%s)",
            chosen["name"],
            registry_version,
            model.registry_version,
        )
    return CompressionResult(
        candidate_version=model.registry_version,
        chosen=choice["chosen"],
        why=choice["why"],
        registry_version=registry_version,
        saved_model_dir=str(saved_model_dir),
        candidate=candidate,
        variants=choice["variants"],
        bars=comp.to_dict(),
    )


def _numbers(entry: Mapping[str, Any]) -> dict[str, float]:
    out = {
        k: float(v)
        for k, v in entry.items()
        if isinstance(v, int | float) and not isinstance(v, bool) and k not in _SKIP
    }
    out.update({f"holdout_{k}": float(v) for k, v in (entry.get("metrics") or {}).items()})
    out.update({f"delta_{k}": float(v) for k, v in (entry.get("deltas") or {}).items()})
    return out


def _log_to_mlflow(
    settings: Settings,
    dataset: str,
    run: RunRequest,
    model: TrainingResult,
    candidate: Mapping[str, Any],
    choice: Mapping[str, Any],
) -> None:
    """One child run per variant under the candidate's run, with its figures; the parent
    run gets the choice as tags and the chosen variant's SavedModel (``compressed/<name>``)."""
    from aimass.platform import tracking

    with tracking.resume_run(settings, model.mlflow_run_id) as parent:
        parent.metrics(
            {
                f"compress_candidate_{k}": v
                for k, v in _numbers(candidate).items()
                if not k.startswith("holdout_")
            }
        )
        for variant in choice["variants"]:
            tags = {
                "aimass.kind": VARIANT_RUN_KIND,
                tracking.VARIANT_TAG: variant["name"],
                tracking.COMPRESSED_FROM_TAG: model.registry_version,
                "aimass.dataset": dataset,
                "aimass.ds": run.ds,
                "aimass.compression_verdict": "clears" if variant["clears"] else "misses",
            }
            with tracking.start_run(
                settings, dataset, name=f"compress {variant['name']}", tags=tags, nested=True
            ) as child:  # a retried task adds another child run; it registers nothing twice
                params = {
                    k: json.dumps(v) if isinstance(v, list) else v
                    for k, v in variant.items()
                    if k in ("kind", "sparsity", "hidden_units", "storage", "error")
                }
                child.params(params)
                child.metrics(_numbers(variant))
                if variant.get("reasons"):
                    child.tags({"aimass.compression_reasons": "; ".join(variant["reasons"])[:4000]})
        chosen = next((v for v in choice["variants"] if v["name"] == choice["chosen"]), None)
        if chosen is not None:
            parent.folder(chosen["saved_model_dir"], f"{VARIANT_ARTIFACT}/{chosen['name']}")
        parent.tags(
            {
                COMPRESSION_TAG: choice["chosen"] or "candidate",
                "aimass.compression_why": str(choice["why"])[:4000],
            }
        )


def _add_to_decision(run: RunRequest, decision: GateDecision, result: CompressionResult) -> None:
    """The gate decision (record and JSON report) and the model card get the choice."""
    from aimass.evaluation.card import add_compression
    from aimass.evaluation.report import JSON_NAME

    updated = with_compression(decision, result)
    updated.write(run.records_dir)
    report = Path(run.report_dir) / JSON_NAME
    if report.exists():
        data = json.loads(report.read_text(encoding="utf-8"))
        data["compression"] = updated.compression
        report.write_text(json.dumps(data, indent=2, allow_nan=False), encoding="utf-8")
    try:
        add_compression(Path(run.report_dir), dict(updated.compression or {}))
    except Exception as exc:  # the card is documentation: never stop a deployment for it
        log.warning("model card: the compression section could not be added: %s", exc)
