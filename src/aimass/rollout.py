"""Put a SavedModel into service: next integer version, load first, then move `stable`.

The model server and the official TF Serving read the same layout
(``<base>/<model>/<version>/``) and the same ``models.config``; this module only talks to
the server through :class:`aimass.serving.client.ServingClient`, so the rollout is the
same against either. Any failure puts the previous config back: ``stable`` keeps pointing
at the version that was serving before.
"""

from __future__ import annotations

import json
import logging
import math
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from aimass.config import Settings
from aimass.errors import ServingError
from aimass.serving.config import (
    ModelServerConfig,
    find_model,
    list_versions,
    model_config,
    next_version,
    read_config,
    server_config,
    write_config,
)

log = logging.getLogger(__name__)

STABLE = "stable"
MARKER = "aimass_version.json"


def serving_config_path(settings: Settings) -> Path:
    return settings.serving_config


def _current_config(path: Path) -> ModelServerConfig:
    return read_config(path) if path.exists() else server_config([])


def _with_model(config: ModelServerConfig, model: Any) -> ModelServerConfig:
    """``config`` with ``model``'s entry added or replaced."""
    others = [entry for entry in config.model_config_list.config if entry.name != model.name]
    return server_config([*others, model])


def _apply(client: Any, path: Path, config: ModelServerConfig) -> None:
    """Persist the config (a restarted server comes back the same) and tell the server."""
    write_config(path, config)
    client.reload_config(config)


def existing_version(base: Path, registry_version: str) -> int | None:
    """The serving version already made from this registry version (a retried deploy reuses it)."""
    for version in list_versions(base):
        marker = base / str(version) / MARKER
        if marker.exists() and json.loads(marker.read_text())["registry_version"] == str(
            registry_version
        ):
            return version
    return None


def copy_version(
    saved_model_dir: Path,
    base: Path,
    registry_version: str,
    lineage: dict[str, str] | None = None,
) -> int:
    """Copy a SavedModel in as the next version: into a hidden temp folder, then one rename.

    A half-copied SavedModel can load and then fail on requests, so the server must never
    see the version folder before it is complete. The version folder's ``MARKER`` file
    names the registry version and ``lineage`` (MLflow run, data partition, ...), so a
    served version leads back to how it was made even without the registry.
    """
    if not (saved_model_dir / "saved_model.pb").exists():
        raise ServingError(
            f"{saved_model_dir} is not a SavedModel (no saved_model.pb); re-run train_model"
        )
    base.mkdir(parents=True, exist_ok=True)
    version = next_version(base)
    tmp = Path(tempfile.mkdtemp(prefix=f".incoming-{version}-", dir=base))
    try:
        shutil.copytree(saved_model_dir, tmp, dirs_exist_ok=True)
        marker = {**(lineage or {}), "registry_version": str(registry_version)}
        (tmp / MARKER).write_text(json.dumps(marker, indent=2, sort_keys=True))
        tmp.rename(base / str(version))
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log.info("copied %s to %s", saved_model_dir, base / str(version))
    return version


def _json_rows(sample: dict[str, np.ndarray]) -> list[dict[str, Any]]:
    n = len(next(iter(sample.values())))
    rows = []
    for i in range(n):
        row = {}
        for name, values in sample.items():
            raw = values[i]
            # float32 -> the shortest decimal that round-trips (12.45, not 12.449999809265137)
            value = (
                float(str(raw))
                if isinstance(raw, np.floating)
                else raw.item()
                if hasattr(raw, "item")
                else raw
            )
            if isinstance(value, bytes):
                value = value.decode("utf-8")
            if isinstance(value, float) and math.isnan(value):
                value = None
            row[name] = value
        rows.append(row)
    return rows


def smoke(
    client: Any, model: str, sample: dict[str, np.ndarray], **selector: Any
) -> dict[str, Any]:
    """One gRPC Predict and one REST predict; both must answer one finite output per row.

    The output is ``probabilities`` (classification: each in [0, 1], and a multiclass row
    sums to 1) or ``predictions`` (regression).
    """
    grpc_out = client.predict_grpc(model, sample, **selector)
    keys = [k for k in ("probabilities", "predictions") if k in grpc_out]
    if not keys:
        raise ServingError(
            f"{model} {selector}: gRPC predict returned outputs {sorted(grpc_out)}, neither "
            "'probabilities' nor 'predictions'; is this an AI Mass SavedModel?"
        )
    key = keys[0]
    grpc_values = np.asarray(grpc_out[key], dtype=np.float64)
    rows = [r for r in _json_rows(sample) if None not in r.values()] or _json_rows(sample)[:1]
    rest_out = client.predict_rest(
        model,
        [{k: (v if v is not None else float("nan")) for k, v in r.items()} for r in rows],
        **selector,
    )
    rest_values = np.asarray(rest_out, dtype=np.float64)
    for where, values in (("gRPC", grpc_values), ("REST", rest_values)):
        ok = values.size > 0 and bool(np.all(np.isfinite(values)))
        if ok and key == "probabilities":
            ok = bool(np.all((values >= 0) & (values <= 1)))
            if values.ndim == 2:
                ok = ok and bool(np.allclose(values.sum(axis=1), 1.0, atol=1e-3))
        if not ok:
            raise ServingError(
                f"{model} {selector}: {where} predict returned {values!r}, not valid {key}"
            )
    return {
        "output": key,
        f"grpc_{key}": grpc_values.round(4).tolist(),
        f"rest_{key}": rest_values.round(4).tolist(),
        "rest_instance": rows[0],
    }


def rollout(
    settings: Settings,
    client: Any,
    *,
    model_name: str,
    saved_model_dir: Path,
    registry_version: str,
    sample: dict[str, np.ndarray],
    load_timeout_s: float = 120.0,
    lineage: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Deploy ``saved_model_dir`` as the next version of ``model_name`` and label it ``stable``.

    Steps: copy in atomically; load it beside the current ``stable`` (labels unchanged);
    wait until AVAILABLE; predict over gRPC and REST by version; only then move ``stable``;
    keep the previous ``stable`` loaded and unload older versions. On any failure the previous config is
    restored and :class:`ServingError` raised.
    """
    path = serving_config_path(settings)
    base = settings.serving_base / model_name
    before = _current_config(path)
    current = find_model(before, model_name)
    stable = (
        int(current.version_labels[STABLE])
        if current is not None and STABLE in current.version_labels
        else None
    )
    loaded: list[int] = (
        sorted(current.model_version_policy.specific.versions) if current is not None else []
    )

    version = existing_version(base, registry_version) or copy_version(
        saved_model_dir, base, registry_version, lineage
    )
    if stable == version:
        log.info("%s version %d is already stable; nothing to roll out", model_name, version)
        return {
            "serving_version": version,
            "previous_version": None,
            **smoke(client, model_name, sample, label=STABLE),
        }
    try:
        with_candidate = sorted({*loaded, version})
        labels: dict[str, int] = {STABLE: stable} if stable is not None else {}
        _apply(
            client,
            path,
            _with_model(before, model_config(model_name, base, with_candidate, labels)),
        )
        client.wait_available(model_name, version, timeout_s=load_timeout_s)
        log.info("%s version %d loaded; smoke-testing it by version", model_name, version)
        smoke(client, model_name, sample, version=version)

        # The new stable and the one before it stay loaded (instant rollback); older ones go.
        keep = sorted({version, *([stable] if stable is not None else [])})
        _apply(
            client,
            path,
            _with_model(before, model_config(model_name, base, keep, {STABLE: version})),
        )
        result = smoke(client, model_name, sample, label=STABLE)
    except Exception as exc:
        log.error(
            "rollout of %s version %d failed (%s); restoring the previous config",
            model_name,
            version,
            exc,
        )
        try:
            _apply(client, path, before)
        except Exception:  # the original error matters more; the restore failure is logged
            log.exception("restoring the previous serving config failed")
        raise ServingError(
            f"rollout of {model_name} version {version} failed: {exc}; 'stable' stays at {stable}"
        ) from exc
    log.info("%s: label %s -> version %d (previous %s)", model_name, STABLE, version, stable)
    return {"serving_version": version, "previous_version": stable, **result}
