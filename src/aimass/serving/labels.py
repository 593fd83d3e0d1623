"""Version labels in the serving config: which version is ``stable``, ``canary``, ``previous``.

The rollout (:mod:`aimass.serving.rollout`) and :func:`rollback` change what is served only
by editing the model's entry in ``models.config`` and telling the server: load a version
first, then move a label onto it (a label may only point at a loaded version). The helpers
here write that config (so a restarted server comes back the same), put the previous one
back after a failure, and pick which versions stay loaded.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import numpy as np

from aimass.platform.errors import ServingError
from aimass.platform.settings import Settings
from aimass.serving.config import (
    ModelServerConfig,
    find_model,
    list_versions,
    model_config,
    read_config,
    server_config,
    write_config,
)
from aimass.serving.staging import read_marker, smoke

log = logging.getLogger(__name__)

STABLE = "stable"
CANARY = "canary"
PREVIOUS = "previous"
DEFAULT_KEEP_VERSIONS = 2


def serving_config_path(settings: Settings) -> Path:
    return settings.serving_config


def current_config(path: Path) -> ModelServerConfig:
    """The serving config on disk (an empty one before the first deploy)."""
    return read_config(path) if path.exists() else server_config([])


def _with_model(config: ModelServerConfig, model: Any) -> ModelServerConfig:
    """``config`` with ``model``'s entry added or replaced."""
    others = [entry for entry in config.model_config_list.config if entry.name != model.name]
    return server_config([*others, model])


def _apply(client: Any, path: Path, config: ModelServerConfig) -> None:
    """Persist the config (a restarted server comes back the same) and tell the server."""
    write_config(path, config)
    client.reload_config(config)


def serve(
    client: Any,
    path: Path,
    before: ModelServerConfig,
    name: str,
    base: Path,
    versions: list[int],
    labels: dict[str, int],
) -> None:
    """Apply ``before`` with ``name`` serving exactly ``versions`` under ``labels``."""
    _apply(client, path, _with_model(before, model_config(name, base, versions, labels)))


def restore(client: Any, path: Path, before: ModelServerConfig) -> None:
    """Put the config back after a failure; a failed restore is logged, not raised."""
    try:
        _apply(client, path, before)
    except Exception:  # the original error matters more
        log.exception("restoring the previous serving config failed")


def labels_of(entry: Any) -> dict[str, int]:
    """The version labels of a model's config entry ({} when it has none or no entry)."""
    return {} if entry is None else {k: int(v) for k, v in entry.version_labels.items()}


def versions_of(entry: Any) -> list[int]:
    """The versions a model's config entry loads, ascending."""
    return (
        []
        if entry is None
        else sorted(int(v) for v in entry.model_version_policy.specific.versions)
    )


def kept_versions(version: int, stable: int | None, loaded: list[int], keep: int) -> list[int]:
    """The new stable, the old one (rollback target), then the newest others, ``keep`` in all."""
    order = [version, *([stable] if stable is not None else [])]
    order += [v for v in sorted(loaded, reverse=True) if v not in order]
    return sorted(order[: max(keep, 1)])


def rollback(
    settings: Settings,
    client: Any,
    *,
    model_name: str,
    sample: dict[str, np.ndarray] | None = None,
    version: int | None = None,
    load_timeout_s: float = 120.0,
    keep_versions: int = DEFAULT_KEEP_VERSIONS,
) -> dict[str, Any]:
    """Move ``stable`` back to ``version`` (default: the ``previous`` label), no retraining.

    Load first (it usually is still loaded, so this takes a second), then move the labels:
    ``stable`` to the target and ``previous`` to the version rolled back from, so a second
    rollback rolls forward again. Any failure restores the config.

    Raises:
        ServingError: no such version, nothing to roll back to, or the target did not load.
    """
    path = serving_config_path(settings)
    base = settings.serving_base / model_name
    before = current_config(path)
    current = find_model(before, model_name)
    labels = labels_of(current)
    stable = labels.get(STABLE)
    if stable is None:
        raise ServingError(f"{model_name} has no 'stable' version yet; nothing to roll back")
    target = version if version is not None else labels.get(PREVIOUS)
    on_disk = list_versions(base)
    if target is None:
        raise ServingError(
            f"{model_name} has no 'previous' version to roll back to (stable is {stable}); "
            f"pass a version, one of {[v for v in on_disk if v != stable]}"
        )
    if target == stable:
        raise ServingError(f"{model_name} version {target} is already stable; pick another")
    if target not in on_disk:
        raise ServingError(
            f"{model_name} has no version {target} under {base} (versions: {on_disk}); "
            "pick one of those"
        )
    loaded = versions_of(current)
    started = time.monotonic()
    try:
        unchanged = {k: v for k, v in labels.items() if k not in (CANARY, PREVIOUS)}
        serve(client, path, before, model_name, base, sorted({*loaded, target}), unchanged)
        client.wait_available(model_name, target, timeout_s=load_timeout_s)
        keep = kept_versions(target, stable, loaded, keep_versions)
        serve(client, path, before, model_name, base, keep, {STABLE: target, PREVIOUS: stable})
        answer = smoke(client, model_name, sample, label=STABLE) if sample else None
    except Exception as exc:
        restore(client, path, before)
        raise ServingError(
            f"rollback of {model_name} to version {target} failed: {exc}; 'stable' stays at {stable}"
        ) from exc
    seconds = round(time.monotonic() - started, 2)
    log.info("%s: rolled back, stable %d -> %d in %.2f s", model_name, stable, target, seconds)
    return {
        "serving_version": target,
        "rolled_back_from": stable,
        "seconds": seconds,
        "marker": read_marker(base, target),
        "smoke": answer,
    }
