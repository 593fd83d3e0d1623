"""Writing a drift report: ``drift_report.json``, a self-contained HTML page, the XCom summary.

The HTML page is rendered from the Jinja2 template ``report.html`` shipped beside this module,
with autoescaping on: feature names, categories and paths come from the data and must never
become markup.
"""

from __future__ import annotations

import functools
import json
import logging
from pathlib import Path
from typing import Any

import jinja2

from aimass.data.drift.compare import EPSILON
from aimass.data.drift.findings import DriftReport, percent
from aimass.platform.templates import environment

logger = logging.getLogger(__name__)

TEMPLATE = "report.html"


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


def _num(value: float | None, digits: int = 4) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


@functools.cache
def _template() -> jinja2.Template:
    env = environment(__package__ or "aimass.data.drift", filters={"num": _num, "pct": percent})
    return env.get_template(TEMPLATE)


def render_html(report: DriftReport) -> str:
    """The report as one HTML page with inline CSS (no external files or scripts)."""
    return _template().render(report=report, thresholds=report.thresholds, epsilon=EPSILON)
