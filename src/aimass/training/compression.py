"""Build the compressed variants of a candidate that its spec's ``compression`` section lists.

Each variant (``models.tabular.compress``: pruned, float16, int8, distilled) is exported as a
SavedModel under ``out_dir/<name>/`` with the candidate's serving signature. Fine-tuning and
distillation use at most ``compression.max_rows`` rows of the partition's train split, so the
stage stays cheap on big partitions. A variant that fails to build is reported with its
error and never deployed; the others are still built.
"""

from __future__ import annotations

import logging
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np

from aimass.data.spec import DatasetSpec

log = logging.getLogger(__name__)


def sample_rows(
    features: dict[str, np.ndarray], labels: np.ndarray, max_rows: int, seed: int = 0
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """At most ``max_rows`` rows, drawn without replacement (all of them when fewer)."""
    n = len(labels)
    if n <= max_rows:
        return features, labels
    index = np.sort(np.random.default_rng(seed).choice(n, size=max_rows, replace=False))
    return {k: v[index] for k, v in features.items()}, labels[index]


def build_variants(
    spec: DatasetSpec, *, saved_model_dir: Path, partition: Path, out_dir: Path
) -> list[dict[str, Any]]:
    """Build every variant ``spec.compression.variants`` lists; one entry each.

    Returns ``[{"name", "kind", "saved_model_dir", "build_seconds", ...facts}]``, or for a
    variant that failed ``{"name", "kind", "error"}``.
    """
    from models.tabular import compress
    from models.tabular.inputs import load_arrays

    comp = spec.compression
    features, labels = load_arrays(partition, spec, "train")
    features, labels = sample_rows(features, labels, comp.max_rows)
    teacher = compress.load_keras(saved_model_dir)
    out_dir = Path(out_dir)
    shutil.rmtree(out_dir, ignore_errors=True)
    out_dir.mkdir(parents=True)
    entries: list[dict[str, Any]] = []
    for kind in comp.variants:
        started = time.monotonic()
        try:
            facts = compress.build_variant(
                kind,
                teacher,
                spec,
                features,
                labels,
                out_dir / kind,
                sparsity=comp.sparsity,
                fine_tune_epochs=comp.fine_tune_epochs,
                hidden_units=comp.hidden_units,
                distill_epochs=comp.distill_epochs,
            )
        except Exception as exc:  # one variant failing leaves the others and the candidate
            log.warning("compress: building %s failed: %s", kind, exc, exc_info=True)
            entries.append({"name": kind, "kind": kind, "error": f"{type(exc).__name__}: {exc}"})
            continue
        seconds = round(time.monotonic() - started, 1)
        log.info("compress: built %s in %.1f s (%s)", kind, seconds, _facts(facts))
        entries.append({"name": kind, **facts, "build_seconds": seconds})
    return entries


def _facts(facts: dict[str, Any]) -> str:
    shown = {k: v for k, v in facts.items() if k not in ("kind", "saved_model_dir")}
    return ", ".join(f"{k}={v}" for k, v in shown.items())
