"""Comparing a batch's drift profile with the reference's: PSI, null shares, schema.

:func:`compare` turns two profiles into a :class:`~aimass.data.drift.findings.DriftReport`,
each finding with a severity from the spec's :class:`~aimass.data.spec.DriftSpec` thresholds.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from aimass.data.drift.findings import (
    CRITICAL,
    NO_ACTION,
    OK,
    WARNING,
    DriftReport,
    FeatureDrift,
    NullShareChange,
    SchemaChange,
    percent,
    worst,
)
from aimass.data.drift.profile import OTHER, PROFILE_FORMAT
from aimass.data.spec import DriftSpec
from aimass.platform.errors import ConfigError

logger = logging.getLogger(__name__)

# Share given to an empty bucket so PSI stays finite (a common choice for PSI).
EPSILON = 1e-4
# New/vanished categories listed per feature in reports (the counts are always complete).
MAX_LISTED = 20
# Reference categories below this share are pooled into __other__ when computing PSI.
MIN_CATEGORY_SHARE = 0.01


def psi(expected: np.ndarray, actual: np.ndarray, epsilon: float = EPSILON) -> float:
    """Population stability index of two count (or share) vectors over the same buckets."""
    e = np.asarray(expected, dtype=np.float64)
    a = np.asarray(actual, dtype=np.float64)
    if e.shape != a.shape:
        raise ValueError(f"PSI needs buckets of the same shape, got {e.shape} and {a.shape}")
    e = np.maximum(e / e.sum(), epsilon) if e.sum() > 0 else np.full(e.shape, epsilon)
    a = np.maximum(a / a.sum(), epsilon) if a.sum() > 0 else np.full(a.shape, epsilon)
    return float(np.sum((a - e) * np.log(a / e)))


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
    status = worst(severities)
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
            f"null share {percent(null_finding.reference)} -> {percent(null_finding.current)} "
            f"(allowed change {percent(drift.null_share_change)})"
        )
        severity = worst([severity, null_finding.severity])
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
