"""Compressed variants against their candidate: figures, the spec's bars, and the choice.

Every variant is measured as the candidate is, in the same call: its size (bytes on disk and
gzip of a tar of the SavedModel folder), its model-server latency at batch 1 and 64
(:mod:`aimass.serving.latency`, one sandbox for all of them) and its holdout metrics
(:func:`aimass.evaluation.metrics.evaluate`, the gate's own code).

A variant **clears the bars** of the spec's ``compression`` section when

- no gated metric (those the ``gate`` names, and those ``max_metric_loss`` names) is worse
  than the candidate's by more than its ``max_metric_loss`` (0 when unlisted), in the
  metric's direction (a drop in auc, a rise in rmse);
- it still clears the gate's absolute bars (``gate.min``/``gate.max``);
- it is at least ``min_size_gain`` smaller (gzip bytes) **or** ``min_latency_gain`` faster
  (at both batch sizes) than the candidate.

The **best** variant among those that clear every bar is the smallest (gzip bytes; ties: the
faster at batch 1). None clears: the candidate itself is deployed, and the record says why.
"""

from __future__ import annotations

import gzip
import io
import logging
import os
import tarfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from aimass.data.spec import GATE_BARS, DatasetSpec

log = logging.getLogger(__name__)

CANDIDATE = "candidate"


def folder_bytes(folder: Path) -> int:
    """Bytes of every file under ``folder`` (what the SavedModel takes on disk)."""
    return sum(p.stat().st_size for p in Path(folder).rglob("*") if p.is_file())


def gzip_bytes(folder: Path) -> int:
    """Bytes of a gzip-compressed tar of ``folder`` (what a registry or image stores)."""
    buffer = io.BytesIO()
    with gzip.GzipFile(fileobj=buffer, mode="wb", compresslevel=6, mtime=0) as gz:
        with tarfile.open(fileobj=gz, mode="w") as tar:
            for path in sorted(Path(folder).rglob("*")):
                if path.is_file():
                    tar.add(path, arcname=os.path.relpath(path, folder), recursive=False)
    return len(buffer.getvalue())


def gated_metrics(spec: DatasetSpec) -> list[str]:
    """The metrics a variant is held to: every metric the gate or ``max_metric_loss`` names."""
    named = {m for kind in GATE_BARS for m in spec.gate.bars(kind)}
    named |= set(spec.compression.losses())
    return sorted(m for m in named if m in spec.metrics)


def judge(spec: DatasetSpec, candidate: Mapping[str, Any], variant: Mapping[str, Any]) -> dict:
    """How ``variant`` compares with ``candidate`` and whether it clears every bar.

    Both are figures as :func:`measure` makes them (``metrics``, ``gzip_bytes``, ``bytes``,
    ``batch1_ms``, ``batch64_ms``). Returns ``{"clears", "reasons", "deltas", "losses",
    "size_ratio", "disk_ratio", "latency_ratio", "size_gain", "latency_gain"}``; ``reasons``
    names every bar missed (empty when it clears). A variant that failed to build or measure
    (``error``) never clears.
    """
    comp = spec.compression
    if variant.get("error"):
        return {"clears": False, "reasons": [f"not measured: {variant['error']}"]}
    bars = comp.losses()
    reasons: list[str] = []
    deltas: dict[str, float] = {}
    losses: dict[str, float] = {}
    ours, theirs = variant["metrics"], candidate["metrics"]
    for metric in gated_metrics(spec):
        if metric not in ours or metric not in theirs:
            reasons.append(f"{metric} not measured")
            continue
        delta = float(ours[metric]) - float(theirs[metric])
        loss = -delta if spec.metrics[metric] else delta
        deltas[metric], losses[metric] = round(delta, 6), round(loss, 6)
        allowed = bars.get(metric, 0.0)
        if loss > allowed + 1e-12:
            reasons.append(
                f"{metric} {theirs[metric]:.4f} -> {ours[metric]:.4f}: loses {loss:.4f}, "
                f"more than max_metric_loss.{metric} {allowed:g}"
            )
    for metric, low in spec.gate.bars("min").items():
        if metric in ours and float(ours[metric]) < low:
            reasons.append(f"{metric} {ours[metric]:.4f} is under gate.min.{metric} {low:g}")
    for metric, high in spec.gate.bars("max").items():
        if metric in ours and float(ours[metric]) > high:
            reasons.append(f"{metric} {ours[metric]:.4f} is over gate.max.{metric} {high:g}")
    size_ratio = variant["gzip_bytes"] / max(1, candidate["gzip_bytes"])
    disk_ratio = variant["bytes"] / max(1, candidate["bytes"])
    latency_ratio = max(
        variant["batch1_ms"] / max(1e-9, candidate["batch1_ms"]),
        variant["batch64_ms"] / max(1e-9, candidate["batch64_ms"]),
    )
    size_gain, latency_gain = 1 - size_ratio, 1 - latency_ratio
    if size_gain < comp.min_size_gain and latency_gain < comp.min_latency_gain:
        reasons.append(
            f"gains too small: {size_gain:+.0%} size (bar {comp.min_size_gain:.0%}), "
            f"{latency_gain:+.0%} latency (bar {comp.min_latency_gain:.0%})"
        )
    return {
        "clears": not reasons,
        "reasons": reasons,
        "deltas": deltas,
        "losses": losses,
        "size_ratio": round(size_ratio, 4),
        "disk_ratio": round(disk_ratio, 4),
        "latency_ratio": round(latency_ratio, 4),
        "size_gain": round(size_gain, 4),
        "latency_gain": round(latency_gain, 4),
    }


def choose(
    spec: DatasetSpec, candidate: Mapping[str, Any], variants: Sequence[Mapping[str, Any]]
) -> dict[str, Any]:
    """Judge every variant and pick the best that clears every bar (module doc).

    Returns ``{"chosen": <variant name> | None, "why": <one line>, "variants": [each variant's
    figures with its judgement]}``.
    """
    judged = [{**v, **judge(spec, candidate, v)} for v in variants]
    clearing = [v for v in judged if v["clears"]]
    if not clearing:
        why = (
            "no variant clears the compression bars; the uncompressed candidate is deployed"
            if judged
            else "no variant was built; the uncompressed candidate is deployed"
        )
        return {"chosen": None, "why": why, "variants": judged}
    best = min(clearing, key=lambda v: (v["gzip_bytes"], v["batch1_ms"]))
    why = (
        f"{best['name']} clears every bar and is the smallest of {len(clearing)} that do: "
        f"size {best['size_ratio']:.2f}x, latency {best['latency_ratio']:.2f}x the candidate, "
        + ", ".join(f"{m} {d:+.4f}" for m, d in best["deltas"].items())
    )
    return {"chosen": best["name"], "why": why, "variants": judged}


def measure(
    spec: DatasetSpec,
    entries: Sequence[Mapping[str, Any]],
    features: dict[str, np.ndarray],
    labels: np.ndarray,
    *,
    requests: int,
) -> list[dict[str, Any]]:
    """Size, latency and holdout metrics of each entry (``{"name", "saved_model_dir", ...}``).

    The candidate is one of the entries. Entries with an ``error`` are passed through. The
    latency is measured for all of them in one sandbox model server.
    """
    from aimass.evaluation.metrics import evaluate
    from aimass.serving.latency import measure as measure_latency

    ready = [dict(e) for e in entries if not e.get("error")]
    for entry in ready:
        folder = Path(entry["saved_model_dir"])
        entry["bytes"] = folder_bytes(folder)
        entry["gzip_bytes"] = gzip_bytes(folder)
        entry["metrics"] = {
            k: round(float(v), 6)
            for k, v in evaluate(
                folder,
                features,
                labels,
                task=spec.task,
                threshold=spec.gate.decision_threshold,
            ).items()
        }
    timings = measure_latency(
        spec.name,
        [Path(e["saved_model_dir"]) for e in ready],
        features,
        requests=requests,
    )
    for entry, timing in zip(ready, timings, strict=True):
        entry.update(timing)
    by_name = {e["name"]: e for e in ready}
    return [by_name.get(e["name"], dict(e)) for e in entries]


def summary_lines(result: Mapping[str, Any], candidate: Mapping[str, Any]) -> list[str]:
    """One line per variant and the choice, as the task log and the reports show them."""
    lines = [
        f"compress: candidate {candidate['gzip_bytes'] / 1024:.0f} KiB gzip "
        f"({candidate['bytes'] / 1024:.0f} KiB on disk), batch-1 {candidate['batch1_ms']:.2f} ms, "
        f"batch-64 {candidate['batch64_ms']:.2f} ms"
    ]
    for v in result["variants"]:
        if v.get("error"):
            lines.append(f"compress: {v['name']} failed: {v['error']}")
            continue
        deltas = ", ".join(f"{m} {d:+.4f}" for m, d in v.get("deltas", {}).items())
        verdict = "clears bars" if v["clears"] else "misses: " + "; ".join(v["reasons"])
        lines.append(
            f"compress: {v['name']}: size {v['size_ratio']:.2f}x gzip ({v['disk_ratio']:.2f}x "
            f"on disk), latency {v['latency_ratio']:.2f}x, {deltas} -> {verdict}"
        )
    lines.append(f"compress: {result['why']}")
    return lines
