"""What a drift comparison found: severities, findings per feature and column, the report."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

from aimass.data.spec import DriftSpec

OK, WARNING, CRITICAL = "ok", "warning", "critical"
SEVERITIES = (OK, WARNING, CRITICAL)
NO_ACTION = "none"


def worst(severities: Iterable[str]) -> str:
    """The most severe of ``severities`` (``ok`` when there are none)."""
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
                f"nulls {percent(f.null_share_reference)}->{percent(f.null_share_current)} "
                f"{f.severity}{extra}{reasons}"
            )
        for s in self.schema_changes:
            lines.append(
                f"  schema: {s.column} {s.change} ({s.reference_type or '-'} -> {s.current_type or '-'}) {s.severity}"
            )
        return "\n".join(lines)


def percent(share: float | None) -> str:
    """A share as a percentage with one decimal, ``n/a`` when unknown (reports and logs)."""
    return "n/a" if share is None else f"{100 * share:.1f}%"
