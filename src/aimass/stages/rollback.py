"""The ``aimass_rollback`` DAG's stages: check the target, then move ``stable`` and
``champion`` back and leave a rollback record (``reports/<dataset>/rollbacks/``)."""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from aimass.platform.records import ROLLBACKS_DIR, RollbackRecord
from aimass.platform.settings import Settings

log = logging.getLogger(__name__)


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
        tracking.tag_version(
            settings,
            ctx["dataset"],
            str(registry_version),
            {
                "aimass.rollback_by": ctx["who"],
                "aimass.rollback_reason": ctx["reason"][:4000],
                "aimass.rollback_from_serving_version": str(result["rolled_back_from"]),
            },
        )
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
    folder = settings.reports_dir / ctx["dataset"] / ROLLBACKS_DIR
    path = RollbackRecord.of(record).write(
        folder, f"{at.strftime('%Y%m%dT%H%M%S')}-v{ctx['version']}"
    )
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
