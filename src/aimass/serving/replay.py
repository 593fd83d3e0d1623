"""Rows a rollout sends to a new version: smoke samples and recorded live requests."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import numpy as np

from aimass.data.spec import DatasetSpec
from aimass.platform.errors import ConfigError
from aimass.serving.request_log import recent_requests_path

if TYPE_CHECKING:
    from aimass.platform.settings import Settings

log = logging.getLogger(__name__)


def recent_request_rows(
    settings: Settings, spec: DatasetSpec, limit: int
) -> dict[str, np.ndarray] | None:
    """The newest ``limit`` requests the model server recorded for ``spec``'s model, as
    model inputs; None without a request log (or one that lacks a feature)."""
    import pyarrow.parquet as pq

    from models.tabular.inputs import feature_arrays

    path = recent_requests_path(settings.requests_dir, spec.name)
    if not path.exists():
        return None
    table = pq.read_table(path)
    table = table.slice(max(table.num_rows - limit, 0))
    try:
        rows = feature_arrays(spec, table)
    except ConfigError as exc:
        log.warning("canary: not replaying recorded requests from %s: %s", path, exc)
        return None
    log.info("canary: replaying %d recorded requests from %s too", table.num_rows, path)
    return rows


def smoke_sample(features: dict[str, Any], rows: int = 3) -> dict[str, Any]:
    """A few holdout rows for smoke requests, complete ones first (JSON has no NaN)."""
    complete = np.ones(len(next(iter(features.values()))), dtype=bool)
    for values in features.values():
        if values.dtype.kind == "f":
            complete &= ~np.isnan(values)
        elif values.dtype.kind in "OUS":
            complete &= values != ""
    index = np.flatnonzero(complete)[:rows]
    if index.size == 0:
        index = np.arange(min(rows, complete.size))
    return {name: values[index] for name, values in features.items()}


def canary_rows(
    settings: Settings, spec: DatasetSpec, features: dict[str, np.ndarray], requests: int
) -> dict[str, np.ndarray]:
    """What the canary replays to canary and stable: holdout rows (NaN is fine over gRPC) and
    the newest recorded live requests, when the server keeps a request log."""
    rows = {k: v[:requests] for k, v in features.items()}
    recent = recent_request_rows(settings, spec, requests)
    if recent is not None:
        rows = {k: np.concatenate([v, recent[k]]) for k, v in rows.items()}
    return rows
