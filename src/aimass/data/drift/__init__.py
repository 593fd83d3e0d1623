"""Drift: profile a clean partition and compare a new batch with the champion's reference.

A *profile* is a JSON-able dict describing one clean partition (or one split of it); the
reference profile is made once from the champion's training data and each new batch is
profiled with the reference's bin edges and categories so the two line up bucket by bucket.
:func:`compare` turns two profiles into a :class:`DriftReport`: PSI per feature, null-share
changes, new/vanished categories and schema differences, each with a severity from the
spec's :class:`~aimass.data.spec.DriftSpec` thresholds.

The modules, by concern:

- ``profile``: :func:`profile_partition`, :func:`save_profile`, :func:`load_profile`;
- ``findings``: severities and the report model (:class:`DriftReport` and its findings);
- ``compare``: :func:`psi` and :func:`compare`;
- ``report``: :func:`write_report` (JSON and an HTML page from a Jinja2 template) and
  :func:`xcom_summary`.

Callers import every name from ``aimass.data.drift`` itself.
"""

from __future__ import annotations

from aimass.data.drift.compare import EPSILON, MAX_LISTED, MIN_CATEGORY_SHARE, compare, psi
from aimass.data.drift.findings import (
    CRITICAL,
    NO_ACTION,
    OK,
    SEVERITIES,
    WARNING,
    DriftReport,
    FeatureDrift,
    NullShareChange,
    SchemaChange,
)
from aimass.data.drift.profile import (
    OTHER,
    PROFILE_FORMAT,
    SPLIT_COLUMN,
    SPLITS,
    TOP_CATEGORIES,
    load_profile,
    profile_partition,
    quantile_edges,
    save_profile,
)
from aimass.data.drift.report import render_html, write_report, xcom_summary

__all__ = [
    "CRITICAL",
    "EPSILON",
    "MAX_LISTED",
    "MIN_CATEGORY_SHARE",
    "NO_ACTION",
    "OK",
    "OTHER",
    "PROFILE_FORMAT",
    "SEVERITIES",
    "SPLITS",
    "SPLIT_COLUMN",
    "TOP_CATEGORIES",
    "WARNING",
    "DriftReport",
    "FeatureDrift",
    "NullShareChange",
    "SchemaChange",
    "compare",
    "load_profile",
    "profile_partition",
    "psi",
    "quantile_edges",
    "render_html",
    "save_profile",
    "write_report",
    "xcom_summary",
]
