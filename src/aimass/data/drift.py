"""Drift: profile a clean partition and compare a new batch with the champion's reference.

A *profile* is a JSON-able dict describing one clean partition (or one split of it):
row count, Parquet schema, null share per column, binned counts per numeric feature
(quantile edges with -inf/+inf outer edges) and value frequencies per categorical
feature (top values plus an ``__other__`` bucket). The reference profile is made once
from the champion's training data; each new batch is profiled *with the reference's
bin edges and categories* (``edges_from=reference``) so the two line up bucket by bucket.

:func:`compare` turns two profiles into a :class:`DriftReport`: PSI per feature,
null-share changes, new/vanished categories and schema differences, each with a
severity from the spec's :class:`~aimass.data.spec.DriftSpec` thresholds.

Only numpy and pyarrow are used, and partitions are streamed record batch by record
batch; the values of one numeric column at a time are held to compute its quantiles.
"""

from __future__ import annotations

import html
import json
import logging
import math
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads

from aimass.data.lake import open_partition
from aimass.data.spec import DatasetSpec, DriftSpec
from aimass.platform.errors import ConfigError

logger = logging.getLogger(__name__)

PROFILE_FORMAT = "aimass.drift.profile/1"
SPLIT_COLUMN = "split"
SPLITS = ("train", "holdout")
OTHER = "__other__"
TOP_CATEGORIES = 200
# Share given to an empty bucket so PSI stays finite (a common choice for PSI).
EPSILON = 1e-4
# New/vanished categories listed per feature in reports (the counts are always complete).
MAX_LISTED = 20
# Reference categories below this share are pooled into __other__ when computing PSI.
MIN_CATEGORY_SHARE = 0.01

OK, WARNING, CRITICAL = "ok", "warning", "critical"
SEVERITIES = (OK, WARNING, CRITICAL)
NO_ACTION = "none"

# --------------------------------------------------------------------------- profiling


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


# --------------------------------------------------------------------------- comparing


def psi(expected: np.ndarray, actual: np.ndarray, epsilon: float = EPSILON) -> float:
    """Population stability index of two count (or share) vectors over the same buckets."""
    e = np.asarray(expected, dtype=np.float64)
    a = np.asarray(actual, dtype=np.float64)
    if e.shape != a.shape:
        raise ValueError(f"PSI needs buckets of the same shape, got {e.shape} and {a.shape}")
    e = np.maximum(e / e.sum(), epsilon) if e.sum() > 0 else np.full(e.shape, epsilon)
    a = np.maximum(a / a.sum(), epsilon) if a.sum() > 0 else np.full(a.shape, epsilon)
    return float(np.sum((a - e) * np.log(a / e)))


def _worst(severities: Iterable[str]) -> str:
    return max(severities, key=SEVERITIES.index, default=OK)


@dataclass(frozen=True)
class FeatureDrift:
    """Drift of one feature: PSI, null share and categories, with its severity."""

    feature: str
    kind: str  # "numeric" or "categorical"
    psi: float | None
    severity: str
    null_share_reference: float | None
    null_share_current: float | None
    new_categories: tuple[str, ...] = ()
    vanished_categories: tuple[str, ...] = ()
    new_category_count: int = 0
    vanished_category_count: int = 0
    # (bucket label, reference share, current share) over non-null values.
    buckets: tuple[tuple[str, float, float], ...] = ()
    reasons: tuple[str, ...] = ()


@dataclass(frozen=True)
class NullShareChange:
    """Change of one column's share of nulls between reference and current."""

    column: str
    reference: float
    current: float
    change: float
    severity: str


@dataclass(frozen=True)
class SchemaChange:
    """A column added, removed or retyped in the current partition."""

    column: str
    change: str  # "added", "removed" or "type_changed"
    reference_type: str | None
    current_type: str | None
    severity: str


@dataclass(frozen=True)
class DriftReport:
    """Result of :func:`compare`: findings, overall ``status`` and the ``action`` to take."""

    status: str
    action: str  # "fail" or "flag" when critical (from drift.on_critical), else "none"
    features: tuple[FeatureDrift, ...]
    nulls: tuple[NullShareChange, ...]
    schema_changes: tuple[SchemaChange, ...]
    thresholds: DriftSpec
    rows_reference: int
    rows_current: int
    reference: str = ""
    current: str = ""

    @property
    def critical_features(self) -> list[str]:
        return [f.feature for f in self.features if f.severity == CRITICAL]

    @property
    def warning_features(self) -> list[str]:
        return [f.feature for f in self.features if f.severity == WARNING]

    def to_dict(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "action": self.action,
            "critical_features": self.critical_features,
            "warning_features": self.warning_features,
            "reference": self.reference,
            "current": self.current,
            "rows": {"reference": self.rows_reference, "current": self.rows_current},
            "thresholds": asdict(self.thresholds),
            "features": [asdict(f) for f in self.features],
            "nulls": [asdict(n) for n in self.nulls],
            "schema_changes": [asdict(s) for s in self.schema_changes],
        }

    def summary(self) -> str:
        """One header line, then one line per feature and per schema change."""
        lines = [
            f"drift {self.status} (action {self.action}): {self.rows_current} rows vs "
            f"{self.rows_reference} reference rows; critical {self.critical_features or '-'}, "
            f"warning {self.warning_features or '-'}"
        ]
        width = max((len(f.feature) for f in self.features), default=0)
        for f in self.features:
            psi_text = "   n/a" if f.psi is None else f"{f.psi:6.4f}"
            extra = ""
            if f.new_category_count or f.vanished_category_count:
                extra = f" new={f.new_category_count} vanished={f.vanished_category_count}"
            reasons = f" ({'; '.join(f.reasons)})" if f.reasons else ""
            lines.append(
                f"  {f.feature:<{width}} {f.kind:<11} psi={psi_text} "
                f"nulls {_pct(f.null_share_reference)}->{_pct(f.null_share_current)} "
                f"{f.severity}{extra}{reasons}"
            )
        for s in self.schema_changes:
            lines.append(
                f"  schema: {s.column} {s.change} ({s.reference_type or '-'} -> {s.current_type or '-'}) {s.severity}"
            )
        return "\n".join(lines)


def _pct(share: float | None) -> str:
    return "n/a" if share is None else f"{100 * share:.1f}%"


def _psi_severity(value: float, drift: DriftSpec) -> str:
    if value >= drift.psi_critical:
        return CRITICAL
    if value >= drift.psi_warning:
        return WARNING
    return OK


def _null_severity(change: float, drift: DriftSpec) -> str:
    # null_share_change is the largest allowed change: beyond it the column is critical.
    return CRITICAL if abs(change) > drift.null_share_change + 1e-12 else OK


def _check_profile(profile: dict[str, Any], which: str) -> None:
    if not isinstance(profile, dict) or profile.get("format") != PROFILE_FORMAT:
        raise ConfigError(
            f"the {which} profile is not a drift profile (expected format {PROFILE_FORMAT!r}); "
            "make it with aimass.data.drift.profile_partition"
        )


def _compare_numeric(
    name: str, ref: dict[str, Any], cur: dict[str, Any]
) -> tuple[float | None, tuple[tuple[str, float, float], ...], list[str]]:
    if ref["edges"] != cur["edges"]:
        raise ConfigError(
            f"numeric feature '{name}' was binned with different edges in the current profile; "
            "profile the current batch with profile_partition(..., edges_from=reference)"
        )
    ref_counts = np.array(ref["counts"], dtype=np.float64)
    cur_counts = np.array(cur["counts"], dtype=np.float64)
    edges = ref["edges"]
    labels = [f"({edges[i]}, {edges[i + 1]}]" for i in range(len(edges) - 1)]
    buckets = tuple(
        zip(labels, _shares(ref_counts).tolist(), _shares(cur_counts).tolist(), strict=True)
    )
    if ref_counts.sum() == 0 or cur_counts.sum() == 0:
        return None, buckets, ["no non-null values on one side; see the null share"]
    return psi(ref_counts, cur_counts), buckets, []


def _shares(counts: np.ndarray) -> np.ndarray:
    total = counts.sum()
    return counts / total if total > 0 else np.zeros_like(counts, dtype=np.float64)


def _compare_categorical(
    ref: dict[str, Any], cur: dict[str, Any]
) -> tuple[float | None, tuple[tuple[str, float, float], ...], dict[str, Any], list[str]]:
    ref_values: dict[str, int] = ref["values"]
    cur_values: dict[str, int] = cur["values"]
    ref_total = sum(ref_values.values()) + ref["other"]
    # Categories rare in the reference are pooled with __other__ for PSI: one bucket per rare
    # value makes PSI mostly sampling noise (a 20% holdout of the same rows would warn).
    keys = [k for k, n in ref_values.items() if n >= MIN_CATEGORY_SHARE * ref_total]
    ref_pooled = ref_total - sum(ref_values[k] for k in keys)
    ref_counts = np.array([ref_values[k] for k in keys] + [ref_pooled], dtype=np.float64)
    in_ref = sum(cur_values.get(k, 0) for k in keys)
    cur_total = sum(cur_values.values()) + cur["other"]
    cur_counts = np.array([cur_values.get(k, 0) for k in keys] + [cur_total - in_ref], np.float64)
    buckets = tuple(
        zip(
            [*keys, OTHER],
            _shares(ref_counts).tolist(),
            _shares(cur_counts).tolist(),
            strict=True,
        )
    )
    new = [k for k in cur_values if k not in ref_values]
    vanished = [k for k in ref_values if k not in cur_values]
    reasons: list[str] = []
    if new and ref["other"]:
        # The reference kept only its top categories; a "new" value may be a rare old one.
        reasons.append(f"reference kept its top {len(ref_values)} values; new ones may be rare")
    categories = {"new": new, "vanished": vanished}
    if ref_counts.sum() == 0 or cur_counts.sum() == 0:
        return None, buckets, categories, ["no non-null values on one side; see the null share"]
    return psi(ref_counts, cur_counts), buckets, categories, reasons


def compare(reference: dict[str, Any], current: dict[str, Any], drift: DriftSpec) -> DriftReport:
    """Compare the current batch's profile with the reference profile.

    ``current`` must come from ``profile_partition(..., edges_from=reference)``.
    Severity per feature is the worst of its PSI (``psi_warning``/``psi_critical``) and its
    null-share change (critical beyond ``null_share_change``); a feature missing on either
    side is critical. Schema: a removed or retyped column is critical, an added one a warning.
    The report's status is the worst severity found; its action is ``drift.on_critical``
    when the status is critical, else ``"none"``.

    Raises:
        ConfigError: a profile is not a drift profile, or was binned with other edges.
    """
    _check_profile(reference, "reference")
    _check_profile(current, "current")

    ref_schema: dict[str, str] = reference["schema"]
    cur_schema: dict[str, str] = current["schema"]
    schema_changes: list[SchemaChange] = []
    for col, typ in ref_schema.items():
        if col not in cur_schema:
            schema_changes.append(SchemaChange(col, "removed", typ, None, CRITICAL))
        elif cur_schema[col] != typ:
            schema_changes.append(SchemaChange(col, "type_changed", typ, cur_schema[col], CRITICAL))
    for col, typ in cur_schema.items():
        if col not in ref_schema:
            schema_changes.append(SchemaChange(col, "added", None, typ, WARNING))

    nulls: list[NullShareChange] = []
    null_by_column: dict[str, NullShareChange] = {}
    for col in ref_schema:
        if col in reference["columns"] and col in current["columns"]:
            r = float(reference["columns"][col]["null_share"])
            c = float(current["columns"][col]["null_share"])
            finding = NullShareChange(col, r, c, c - r, _null_severity(c - r, drift))
            nulls.append(finding)
            null_by_column[col] = finding

    features: list[FeatureDrift] = []
    for kind in ("numeric", "categorical"):
        ref_feats: dict[str, Any] = reference[kind]
        cur_feats: dict[str, Any] = current[kind]
        for name in [*ref_feats, *(n for n in cur_feats if n not in ref_feats)]:
            features.append(
                _feature_drift(
                    name,
                    kind,
                    ref_feats.get(name),
                    cur_feats.get(name),
                    current,
                    drift,
                    null_by_column,
                )
            )

    severities = [
        *(f.severity for f in features),
        *(n.severity for n in nulls),
        *(s.severity for s in schema_changes),
    ]
    status = _worst(severities)
    action = drift.on_critical if status == CRITICAL else NO_ACTION
    report = DriftReport(
        status=status,
        action=action,
        features=tuple(features),
        nulls=tuple(nulls),
        schema_changes=tuple(schema_changes),
        thresholds=drift,
        rows_reference=int(reference["rows"]),
        rows_current=int(current["rows"]),
        reference=_describe(reference),
        current=_describe(current),
    )
    logger.info("%s", report.summary())
    return report


def _describe(profile: dict[str, Any]) -> str:
    split = profile.get("split")
    return f"{profile.get('partition', '?')}" + (f" (split {split})" if split else "")


def _feature_drift(
    name: str,
    kind: str,
    ref: dict[str, Any] | None,
    cur: dict[str, Any] | None,
    current: dict[str, Any],
    drift: DriftSpec,
    null_by_column: dict[str, NullShareChange],
) -> FeatureDrift:
    if ref is None or cur is None:
        where = "reference" if ref is None else "current batch"
        why = current.get("unprofiled", {}).get(name) if cur is None else None
        return FeatureDrift(
            feature=name,
            kind=kind,
            psi=None,
            severity=CRITICAL,
            null_share_reference=None if ref is None else float(ref["null_share"]),
            null_share_current=None if cur is None else float(cur["null_share"]),
            reasons=(f"not profiled in the {where}" + (f": {why}" if why else ""),),
        )
    reasons: list[str] = []
    new: list[str] = []
    vanished: list[str] = []
    if kind == "numeric":
        value, buckets, notes = _compare_numeric(name, ref, cur)
    else:
        value, buckets, categories, notes = _compare_categorical(ref, cur)
        new, vanished = categories["new"], categories["vanished"]
    reasons += notes
    severity = OK if value is None else _psi_severity(value, drift)
    if value is not None and severity != OK:
        reasons.append(
            f"PSI {value:.4f} >= {drift.psi_critical if severity == CRITICAL else drift.psi_warning}"
        )
    null_finding = null_by_column.get(name)
    if null_finding is not None and null_finding.severity != OK:
        reasons.append(
            f"null share {_pct(null_finding.reference)} -> {_pct(null_finding.current)} "
            f"(allowed change {_pct(drift.null_share_change)})"
        )
        severity = _worst([severity, null_finding.severity])
    return FeatureDrift(
        feature=name,
        kind=kind,
        psi=value,
        severity=severity,
        null_share_reference=float(ref["null_share"]),
        null_share_current=float(cur["null_share"]),
        new_categories=tuple(new[:MAX_LISTED]),
        vanished_categories=tuple(vanished[:MAX_LISTED]),
        new_category_count=len(new),
        vanished_category_count=len(vanished),
        buckets=buckets,
        reasons=tuple(reasons),
    )


# --------------------------------------------------------------------------- reporting


def write_report(report: DriftReport, out_dir: Path) -> dict[str, Path]:
    """Write ``drift_report.json`` and a self-contained ``drift_report.html`` into ``out_dir``.

    Returns:
        ``{"json": path, "html": path}``.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"json": out_dir / "drift_report.json", "html": out_dir / "drift_report.html"}
    texts = {
        "json": json.dumps(report.to_dict(), indent=1, allow_nan=False),
        "html": render_html(report),
    }
    for key, path in paths.items():
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(texts[key], encoding="utf-8")
        tmp.replace(path)
    logger.info("drift report (%s) written to %s", report.status, paths["html"])
    return paths


def xcom_summary(report: DriftReport, paths: dict[str, Path]) -> dict[str, Any]:
    """The short, JSON-able summary a pipeline task publishes (XCom, MLflow tags)."""
    return {
        "status": report.status,
        "action": report.action,
        "critical_features": report.critical_features,
        "warning_features": report.warning_features,
        "schema_changes": [f"{s.column}: {s.change}" for s in report.schema_changes],
        "rows_reference": report.rows_reference,
        "rows_current": report.rows_current,
        "report_json": str(paths["json"]),
        "report_html": str(paths["html"]),
    }


_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2em;color:#222}
h1{font-size:1.4em} h2{font-size:1.15em;margin-top:1.6em}
table{border-collapse:collapse;margin:.5em 0} th,td{border:1px solid #ccc;padding:.3em .6em;
text-align:left;vertical-align:top;font-size:.92em} th{background:#f3f3f3}
td.num{text-align:right;font-variant-numeric:tabular-nums}
.ok{background:#e6f4ea} .warning{background:#fff4d6} .critical{background:#fde2e1}
.badge{display:inline-block;padding:.15em .6em;border-radius:.8em;font-weight:600}
details{margin:.3em 0} summary{cursor:pointer} code{font-size:.9em}
"""


def _e(value: object) -> str:
    return html.escape(str(value))


def _num(value: float | None, digits: int = 4) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _list(values: tuple[str, ...], total: int) -> str:
    if not total:
        return "-"
    shown = ", ".join(_e(v) for v in values)
    return shown + (f" … (+{total - len(values)} more)" if total > len(values) else "")


def render_html(report: DriftReport) -> str:
    """The report as one HTML page with inline CSS (no external files or scripts)."""
    t = report.thresholds
    out: list[str] = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        "<title>AI Mass drift report</title>",
        f"<style>{_CSS}</style></head><body>",
        "<h1>Drift report: "
        f"<span class='badge {_e(report.status)}'>{_e(report.status)}</span></h1>",
        "<table>",
        f"<tr><th>action</th><td>{_e(report.action)}</td></tr>",
        f"<tr><th>reference</th><td><code>{_e(report.reference)}</code>, "
        f"{report.rows_reference} rows</td></tr>",
        f"<tr><th>current</th><td><code>{_e(report.current)}</code>, "
        f"{report.rows_current} rows</td></tr>",
        f"<tr><th>critical features</th><td>{_e(', '.join(report.critical_features) or '-')}</td></tr>",
        f"<tr><th>warning features</th><td>{_e(', '.join(report.warning_features) or '-')}</td></tr>",
        "</table>",
        "<h2>Features</h2><table><tr><th>feature</th><th>kind</th><th>PSI</th><th>severity</th>"
        "<th>null share (reference)</th><th>null share (current)</th><th>new categories</th>"
        "<th>vanished categories</th><th>notes</th></tr>",
    ]
    for f in report.features:
        out.append(
            f"<tr class='{_e(f.severity)}'><td><a href='#f-{_e(f.feature)}'>{_e(f.feature)}</a></td>"
            f"<td>{_e(f.kind)}</td><td class='num'>{_num(f.psi)}</td><td>{_e(f.severity)}</td>"
            f"<td class='num'>{_pct(f.null_share_reference)}</td>"
            f"<td class='num'>{_pct(f.null_share_current)}</td>"
            f"<td>{_list(f.new_categories, f.new_category_count)}</td>"
            f"<td>{_list(f.vanished_categories, f.vanished_category_count)}</td>"
            f"<td>{_e('; '.join(f.reasons))}</td></tr>"
        )
    out.append("</table>")

    out.append("<h2>Schema changes</h2>")
    if report.schema_changes:
        out.append(
            "<table><tr><th>column</th><th>change</th><th>reference type</th>"
            "<th>current type</th><th>severity</th></tr>"
        )
        for s in report.schema_changes:
            out.append(
                f"<tr class='{_e(s.severity)}'><td>{_e(s.column)}</td><td>{_e(s.change)}</td>"
                f"<td>{_e(s.reference_type or '-')}</td><td>{_e(s.current_type or '-')}</td>"
                f"<td>{_e(s.severity)}</td></tr>"
            )
        out.append("</table>")
    else:
        out.append("<p>No schema changes.</p>")

    out.append(
        "<h2>Null share per column</h2><table><tr><th>column</th><th>reference</th>"
        "<th>current</th><th>change</th><th>severity</th></tr>"
    )
    for n in report.nulls:
        out.append(
            f"<tr class='{_e(n.severity)}'><td>{_e(n.column)}</td>"
            f"<td class='num'>{_pct(n.reference)}</td><td class='num'>{_pct(n.current)}</td>"
            f"<td class='num'>{100 * n.change:+.1f} pt</td><td>{_e(n.severity)}</td></tr>"
        )
    out.append("</table>")

    out.append(
        "<h2>Thresholds</h2><table>"
        f"<tr><th>PSI warning from</th><td class='num'>{t.psi_warning}</td></tr>"
        f"<tr><th>PSI critical from</th><td class='num'>{t.psi_critical}</td></tr>"
        f"<tr><th>largest allowed null-share change</th><td class='num'>{t.null_share_change}</td></tr>"
        f"<tr><th>bins (numeric)</th><td class='num'>{t.bins}</td></tr>"
        f"<tr><th>on critical</th><td>{_e(t.on_critical)}</td></tr>"
        f"<tr><th>PSI epsilon (empty buckets)</th><td class='num'>{EPSILON}</td></tr>"
        "</table>"
    )

    out.append("<h2>Distributions</h2>")
    for f in report.features:
        out.append(
            f"<details id='f-{_e(f.feature)}'><summary class='{_e(f.severity)}'>"
            f"{_e(f.feature)}: PSI {_num(f.psi)}, {_e(f.severity)}</summary>"
        )
        if f.buckets:
            out.append(
                "<table><tr><th>bucket</th><th>reference share</th><th>current share</th></tr>"
            )
            for label, r, c in f.buckets:
                out.append(
                    f"<tr><td>{_e(label)}</td><td class='num'>{100 * r:.2f}%</td>"
                    f"<td class='num'>{100 * c:.2f}%</td></tr>"
                )
            out.append("</table>")
        else:
            out.append("<p>No distribution to show.</p>")
        out.append("</details>")
    out.append("</body></html>")
    return "\n".join(out)
