"""Drift profiles: what one clean partition (or one split of it) looks like, as JSON.

A profile holds the row count, the Parquet schema, the null share per column, binned counts
per numeric feature (quantile edges with -inf/+inf outer edges) and value frequencies per
categorical feature (top values plus an ``__other__`` bucket). The reference profile is made
once from the champion's training data; each new batch is profiled *with the reference's bin
edges and categories* (``edges_from=reference``) so the two line up bucket by bucket.

Only numpy and pyarrow are used, and partitions are streamed record batch by record batch;
the values of one numeric column at a time are held to compute its quantiles.
"""

from __future__ import annotations

import json
import logging
import math
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads

from aimass.data.lake import open_partition
from aimass.data.spec import DatasetSpec
from aimass.platform.errors import ConfigError

logger = logging.getLogger(__name__)

PROFILE_FORMAT = "aimass.drift.profile/1"
SPLIT_COLUMN = "split"
SPLITS = ("train", "holdout")
OTHER = "__other__"
TOP_CATEGORIES = 200


def _split_filter(dataset: pads.Dataset, partition: Path, split: str | None) -> Any:
    if split is None:
        return None
    if split not in SPLITS:
        raise ConfigError(f"split '{split}' is unknown; use one of {SPLITS} or None for all rows")
    if SPLIT_COLUMN not in dataset.schema.names:
        raise ConfigError(
            f"clean partition {partition} has no '{SPLIT_COLUMN}' column to select split "
            f"'{split}'; pass split=None or rerun the clean stage"
        )
    return pc.field(SPLIT_COLUMN) == split


def _is_numeric(dtype: pa.DataType) -> bool:
    return bool(
        pa.types.is_integer(dtype) or pa.types.is_floating(dtype) or pa.types.is_decimal(dtype)
    )


def _finite_or_null(column: pa.Array) -> pa.Array:
    """``column`` as float64 with NaN turned into null (NaN is "missing" on the wire)."""
    values = pc.cast(column, pa.float64())
    return pc.if_else(pc.is_nan(values), pa.scalar(None, pa.float64()), values)


def _as_categories(column: pa.Array) -> pa.Array:
    """Categories compare as strings; NaN in a double column counts as null."""
    if pa.types.is_floating(column.type):
        column = pc.if_else(pc.is_nan(column), pa.scalar(None, column.type), column)
    if pa.types.is_dictionary(column.type):
        column = column.dictionary_decode()
    return pc.cast(column, pa.string())


def _nan_count(column: pa.Array) -> int:
    if pa.types.is_floating(column.type):
        return int(pc.sum(pc.is_nan(column)).as_py() or 0)
    return 0


def _edges_to_json(edges: np.ndarray) -> list[float | str]:
    out: list[float | str] = []
    for e in edges.tolist():
        out.append("-inf" if e == -math.inf else "inf" if e == math.inf else float(e))
    return out


def _edges_from_json(edges: Iterable[float | str]) -> np.ndarray:
    return np.array([float(e) for e in edges], dtype=np.float64)


def quantile_edges(values: np.ndarray, bins: int) -> np.ndarray:
    """Bin edges at the ``bins``-quantiles of ``values``, deduplicated, with ±inf outer edges."""
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return np.array([-math.inf, math.inf])
    # Edges are observed values (inverted CDF), so with bins (a, b] each edge's ties stay below
    # it and a column with few distinct values gets one bin per value rather than split ties.
    quantiles = np.linspace(0.0, 1.0, bins + 1)[1:-1]
    inner = np.unique(np.quantile(finite, quantiles, method="inverted_cdf"))
    return np.concatenate(([-math.inf], inner, [math.inf]))


def _bin_counts(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    # Bins are (edges[i], edges[i+1]]: a value equal to an inner edge falls in the lower bin.
    index = np.searchsorted(edges[1:-1], values, side="left")
    return np.bincount(index, minlength=len(edges) - 1).astype(np.int64)


@dataclass
class _Numeric:
    edges: np.ndarray | None
    counts: np.ndarray | None = None
    nulls: int = 0


@dataclass
class _Categorical:
    counts: Counter[str] = field(default_factory=Counter)
    nulls: int = 0


def profile_partition(
    partition: Path,
    spec: DatasetSpec,
    *,
    split: str | None = None,
    edges_from: dict[str, Any] | None = None,
    batch_size: int = 65_536,
) -> dict[str, Any]:
    """Profile a clean partition (or one split of it) as a JSON-able dict.

    Args:
        partition: folder of Parquet files written by the clean stage.
        spec: the dataset spec; its features and ``drift.bins`` are used.
        split: ``"train"``, ``"holdout"`` or None for every row.
        edges_from: a reference profile. When given, numeric features are binned with the
            reference's edges and every reference category is counted exactly, so
            :func:`compare` can line the two up. Leave it None for a reference profile.
        batch_size: rows per Arrow record batch while streaming.

    Returns:
        ``{"format", "dataset", "partition", "split", "rows", "schema": {column: type},
        "columns": {column: {"nulls", "null_share"}}, "numeric": {feature: {"edges",
        "counts", "nulls", "null_share"}}, "categorical": {feature: {"values": {value:
        count}, "other", "distinct", "nulls", "null_share"}}, "unprofiled": {feature:
        reason}, "edges_from_reference"}``. Outer bin edges are the strings ``"-inf"``
        and ``"inf"`` so the dict is strict JSON.

    Raises:
        ConfigError: the partition is missing or empty, or ``split`` is unknown.
    """
    partition = Path(partition)
    dataset = open_partition(partition)
    row_filter = _split_filter(dataset, partition, split)
    schema = dataset.schema
    present = set(schema.names)
    reference_numeric = (edges_from or {}).get("numeric", {})
    reference_categorical = (edges_from or {}).get("categorical", {})

    unprofiled: dict[str, str] = {}
    numeric: dict[str, _Numeric] = {}
    for feat in spec.numeric_features:
        if feat not in present:
            unprofiled[feat] = "column missing from the partition"
        elif not _is_numeric(schema.field(feat).type):
            unprofiled[feat] = f"numeric feature stored as {schema.field(feat).type}"
        else:
            ref = reference_numeric.get(feat)
            numeric[feat] = _Numeric(edges=_edges_from_json(ref["edges"]) if ref else None)
    categorical: dict[str, _Categorical] = {}
    for feat in spec.categorical_features:
        if feat not in present:
            unprofiled[feat] = "column missing from the partition"
        else:
            categorical[feat] = _Categorical()
    for feat, reason in unprofiled.items():
        logger.warning("drift profile of %s: feature %s not profiled: %s", partition, feat, reason)

    # Pass 1: every column, batch by batch: null counts, categories, numeric bins with known edges.
    rows = 0
    nulls: Counter[str] = Counter()
    for batch in _stream(dataset, schema.names, row_filter, batch_size):
        rows += batch.num_rows
        for name in schema.names:
            column = batch.column(name)
            nulls[name] += column.null_count + _nan_count(column)
        for feat, acc in numeric.items():
            if acc.edges is None:
                continue
            values = _finite_or_null(batch.column(feat))
            acc.nulls += values.null_count
            counts = _bin_counts(values.drop_null().to_numpy(zero_copy_only=False), acc.edges)
            acc.counts = counts if acc.counts is None else acc.counts + counts
        for feat, cat in categorical.items():
            strings = _as_categories(batch.column(feat))
            cat.nulls += strings.null_count
            tally = pc.value_counts(strings.drop_null())
            cat.counts.update(
                dict(
                    zip(
                        tally.field("values").to_pylist(),
                        tally.field("counts").to_pylist(),
                        strict=True,
                    )
                )
            )

    # Pass 2: numeric features without edges, one column at a time (quantiles need all values).
    for feat, acc in numeric.items():
        if acc.edges is not None:
            continue
        chunks: list[np.ndarray] = []
        for batch in _stream(dataset, [feat], row_filter, batch_size):
            values = _finite_or_null(batch.column(0))
            acc.nulls += values.null_count
            chunks.append(values.drop_null().to_numpy(zero_copy_only=False))
        values_all = np.concatenate(chunks) if chunks else np.empty(0, dtype=np.float64)
        acc.edges = quantile_edges(values_all, spec.drift.bins)
        acc.counts = _bin_counts(values_all, acc.edges)

    def share(n: int) -> float:
        return n / rows if rows else 0.0

    profile: dict[str, Any] = {
        "format": PROFILE_FORMAT,
        "dataset": spec.name,
        "partition": str(partition),
        "split": split,
        "rows": rows,
        "schema": {f.name: str(f.type) for f in schema},
        "columns": {
            name: {"nulls": int(nulls[name]), "null_share": share(nulls[name])}
            for name in schema.names
        },
        "numeric": {},
        "categorical": {},
        "unprofiled": unprofiled,
        "edges_from_reference": edges_from is not None,
    }
    for feat, acc in numeric.items():
        assert acc.edges is not None
        counts = acc.counts if acc.counts is not None else np.zeros(len(acc.edges) - 1, np.int64)
        profile["numeric"][feat] = {
            "edges": _edges_to_json(acc.edges),
            "counts": [int(c) for c in counts],
            "nulls": acc.nulls,
            "null_share": share(acc.nulls),
        }
    for feat, cat in categorical.items():
        keep = [v for v, _ in cat.counts.most_common(TOP_CATEGORIES)]
        ref_values = (reference_categorical.get(feat) or {}).get("values", {})
        # Every reference category is counted exactly, so PSI lines up with the reference.
        top = set(keep)
        keep += [v for v in ref_values if v in cat.counts and v not in top]
        kept = {v: int(cat.counts[v]) for v in keep}
        profile["categorical"][feat] = {
            "values": kept,
            "other": int(sum(cat.counts.values()) - sum(kept.values())),
            "distinct": len(cat.counts),
            "nulls": cat.nulls,
            "null_share": share(cat.nulls),
        }
    logger.info(
        "drift profile of %s (split %s): %d rows, %d numeric and %d categorical features",
        partition,
        split,
        rows,
        len(numeric),
        len(categorical),
    )
    return profile


def _stream(
    dataset: pads.Dataset, columns: list[str], row_filter: Any, batch_size: int
) -> Iterator[pa.RecordBatch]:
    for batch in dataset.to_batches(columns=columns, filter=row_filter, batch_size=batch_size):
        if batch.num_rows:
            yield batch


def save_profile(profile: dict[str, Any], path: Path) -> Path:
    """Write a profile as strict JSON (kept beside the champion as its drift reference)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(profile, indent=1, allow_nan=False), encoding="utf-8")
    tmp.replace(path)
    return path


def load_profile(path: Path) -> dict[str, Any]:
    """Read a profile written by :func:`save_profile`."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(
            f"drift profile {path} does not exist; profile the reference partition with "
            "aimass.data.drift.profile_partition and save it with save_profile first"
        )
    profile = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(profile, dict) or profile.get("format") != PROFILE_FORMAT:
        raise ConfigError(
            f"{path} is not a drift profile (format {profile.get('format') if isinstance(profile, dict) else None!r}, "
            f"expected {PROFILE_FORMAT!r}); regenerate it with aimass.data.drift.profile_partition"
        )
    return profile
