"""Put a SavedModel into service safely, and take it out again: rollout and rollback.

The model server and the official TF Serving read the same layout
(``<base>/<model>/<version>/``) and the same ``models.config``; this module only talks to
the server through :class:`aimass.serving.client.ServingClient`, so the rollout is the
same against either.

A rollout (:func:`rollout`):

1. **stages** the SavedModel in a hidden folder beside the versions, with its lineage
   marker and TF Serving warm-up requests (``assets.extra/tf_serving_warmup_requests``)
   built from holdout rows, so the first request after a load is not slow;
2. **infra-validates** the staged copy in a sandbox model server (its own process and
   ports): a SavedModel that fails to load or to answer the warm-up rows is rejected here
   and production never sees it;
3. **publishes** it as the next integer version with one rename (a half-copied SavedModel
   can load and then fail on requests, so the server never sees a partial folder);
4. **loads** it beside ``stable`` (labels unchanged), then labels it ``canary`` (a label
   may only point at a loaded version) and runs the **canary analysis**: the same holdout
   rows to ``canary`` and ``stable``, comparing error rate, p99 latency and the
   distribution of predictions against :class:`CanaryPolicy`'s bars;
5. **promotes**: ``stable`` moves to the candidate and ``previous`` to the old stable,
   which stays loaded for an instant rollback; versions beyond ``keep_versions`` unload.

Any failure puts the previous config back: ``stable`` keeps pointing at the version that
was serving before. :func:`rollback` moves ``stable`` back to ``previous`` (or a given
version) the same way, load first, then the label.

This module runs the steps in order and is the API callers import from; the steps live
by concern in :mod:`aimass.serving.staging` (1-3: staging, infra validation, publishing),
:mod:`aimass.serving.canary` (4: the analysis and its policy) and
:mod:`aimass.serving.labels` (the labels, the config edits behind 4-5, and rollback).
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from aimass.platform.errors import ServingError
from aimass.platform.settings import Settings
from aimass.serving.canary import (
    CanaryPolicy,
    CanaryReport,
    canary_analysis,
    prediction_psi,
    prediction_shift,
)
from aimass.serving.config import find_model
from aimass.serving.labels import (
    CANARY,
    DEFAULT_KEEP_VERSIONS,
    PREVIOUS,
    STABLE,
    current_config,
    kept_versions,
    labels_of,
    restore,
    rollback,
    serve,
    serving_config_path,
    versions_of,
)
from aimass.serving.staging import (
    MARKER,
    WARMUP_FILE,
    CandidateRejected,
    copy_version,
    existing_version,
    infra_validate,
    publish_version,
    read_marker,
    smoke,
    stage_version,
    write_warmup_requests,
)

# The rollout's API, wherever each piece lives: callers import them all from here.
__all__ = [
    "CANARY",
    "DEFAULT_KEEP_VERSIONS",
    "MARKER",
    "PREVIOUS",
    "STABLE",
    "WARMUP_FILE",
    "CanaryPolicy",
    "CanaryReport",
    "CandidateRejected",
    "canary_analysis",
    "copy_version",
    "existing_version",
    "infra_validate",
    "prediction_psi",
    "prediction_shift",
    "publish_version",
    "read_marker",
    "rollback",
    "rollout",
    "serving_config_path",
    "smoke",
    "stage_version",
    "write_warmup_requests",
]

log = logging.getLogger(__name__)


def rollout(
    settings: Settings,
    client: Any,
    *,
    model_name: str,
    saved_model_dir: Path,
    registry_version: str,
    sample: dict[str, np.ndarray],
    canary_rows: dict[str, np.ndarray] | None = None,
    load_timeout_s: float = 120.0,
    lineage: dict[str, str] | None = None,
    policy: CanaryPolicy | None = None,
    keep_versions: int = DEFAULT_KEEP_VERSIONS,
    infra_validation: bool = True,
) -> dict[str, Any]:
    """Deploy ``saved_model_dir`` as the next version of ``model_name`` and label it ``stable``.

    See the module docstring for the steps. ``sample`` (a few holdout rows) is used for the
    warm-up requests, infra validation and the smoke tests; ``canary_rows`` (more holdout
    rows; default ``sample``) for the canary analysis. A retried rollout of the same
    registry version reuses the version it published.

    Returns:
        ``serving_version``, ``previous_version``, ``infra_validation``, ``canary`` (the
        report, None for a first deploy) and the smoke answers.

    Raises:
        ServingError: the candidate was rejected or the rollout failed; ``stable`` is unchanged.
    """
    policy = policy or CanaryPolicy.from_env()
    path = serving_config_path(settings)
    base = settings.serving_base / model_name
    before = current_config(path)
    current = find_model(before, model_name)
    labels = labels_of(current)
    stable = labels.get(STABLE)
    loaded = versions_of(current)

    infra: dict[str, Any] | None = None
    version = existing_version(base, registry_version)
    if version is None:
        staged = stage_version(
            saved_model_dir, base, registry_version, lineage, sample, model_name=model_name
        )
        try:
            if infra_validation:
                infra = infra_validate(staged, model_name, sample, timeout_s=load_timeout_s)
            version = publish_version(staged, base)
        except BaseException as exc:
            shutil.rmtree(staged, ignore_errors=True)
            if isinstance(exc, ServingError):
                kind = CandidateRejected if isinstance(exc, CandidateRejected) else ServingError
                raise kind(f"{exc}\nProduction is untouched: 'stable' stays at {stable}") from exc
            raise
    if stable == version:
        log.info("%s version %d is already stable; nothing to roll out", model_name, version)
        return {
            "serving_version": version,
            "previous_version": labels.get(PREVIOUS),
            "infra_validation": infra,
            "canary": None,
            **smoke(client, model_name, sample, label=STABLE),
        }
    canary: CanaryReport | None = None
    try:
        # 1. load the candidate beside what is served; labels unchanged
        keep_labels = {k: v for k, v in labels.items() if k != CANARY and v in loaded}
        serve(client, path, before, model_name, base, sorted({*loaded, version}), keep_labels)
        client.wait_available(model_name, version, timeout_s=load_timeout_s)
        log.info("%s version %d loaded; smoke-testing it by version", model_name, version)
        smoke(client, model_name, sample, version=version)
        if stable is not None:
            # 2. label it canary (it is loaded now) and compare it with stable
            labelled = {**keep_labels, CANARY: version}
            serve(client, path, before, model_name, base, sorted({*loaded, version}), labelled)
            canary = canary_analysis(client, model_name, canary_rows or sample, policy)
            if not canary.passed:
                failed = [c for c in canary.checks if c.startswith("FAIL")]
                raise CandidateRejected(f"canary analysis failed: {'; '.join(failed)}")
        # 3. promote: stable -> candidate, previous -> old stable; older versions unload
        keep = kept_versions(version, stable, loaded, keep_versions)
        new_labels = {STABLE: version, **({PREVIOUS: stable} if stable in keep else {})}
        serve(client, path, before, model_name, base, keep, new_labels)
        result = smoke(client, model_name, sample, label=STABLE)
    except Exception as exc:
        log.error(
            "rollout of %s version %d failed (%s); restoring the previous config",
            model_name,
            version,
            exc,
        )
        restore(client, path, before)
        kind = CandidateRejected if isinstance(exc, CandidateRejected) else ServingError
        raise kind(
            f"rollout of {model_name} version {version} failed: {exc}; 'stable' stays at {stable}"
        ) from exc
    log.info("%s: label %s -> version %d (previous %s)", model_name, STABLE, version, stable)
    return {
        "serving_version": version,
        "previous_version": stable,
        "infra_validation": infra,
        "canary": None if canary is None else canary.to_dict(),
        **result,
    }
