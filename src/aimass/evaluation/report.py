"""The gate decision as files: JSON for machines, one self-contained HTML page for people.

Both are rendered from the decision's JSON form (``GateDecision.to_dict()`` plus what the
pipeline adds: dataset, versions, task), so a stored ``gate_decision.json`` can be turned
into the page again. The page is the Jinja2 template ``templates/gate_report.html``
(package data), rendered with autoescaping, so every value from the decision comes out
HTML-escaped. It has no scripts and no external assets (inline CSS only), so it opens the
same from the report dir, an MLflow artifact view or an e-mail attachment.
"""

from __future__ import annotations

import functools
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2

from aimass.platform.templates import environment

JSON_NAME = "gate_decision.json"
HTML_NAME = "gate_report.html"
TEMPLATE_NAME = "gate_report.html"


def _text(value: Any) -> str:
    """A value as the page shows it (numbers with 4 decimals, None as n/a); unescaped.

    The template's autoescaping escapes the result, so this only formats.
    """
    if value is None:
        return "n/a"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.4f}" if math.isfinite(value) else str(value)
    return str(value)


def _numeric(value: Any) -> bool:
    """Whether a cell holds a number (right-aligned); a bool is shown as yes/no, not one."""
    return isinstance(value, int | float) and not isinstance(value, bool)


@functools.cache
def _environment() -> jinja2.Environment:
    """The template environment (``templates/`` beside this module), built once per process."""
    env = environment("aimass.evaluation", "templates", filters={"text": _text})
    env.tests["numeric_cell"] = _numeric
    return env


@dataclass(frozen=True)
class _Table:
    """One table for the template: a header, rows of raw values and optional row classes."""

    header: list[str]
    rows: list[list[Any]]
    row_classes: list[str] = field(default_factory=list)


def _delta(candidate: float | None, champion: float | None) -> float | None:
    if candidate is None or champion is None:
        return None
    return candidate - champion


def _metric_names(*sources: dict[str, float] | None) -> list[str]:
    names: list[str] = []
    for source in sources:
        for name in source or {}:
            if name not in names:
                names.append(name)
    return names


def _meta_table(report: dict[str, Any]) -> _Table:
    """What was gated: dataset, partition, run, versions, task, threshold, overrides, force."""
    meta: list[list[Any]] = [
        ["dataset", report.get("dataset", "")],
        ["partition (ds)", report.get("ds")],
        ["Airflow run", report.get("run_id")],
        ["candidate version", report.get("candidate_version")],
        ["champion version", report.get("champion_version") or "none (absolute bars only)"],
        ["task", report.get("task")],
        ["decision threshold", report.get("threshold")],
        ["min_slice_rows", report.get("min_slice_rows")],
        ["deploys", report.get("deploy", report.get("passed"))],
    ]
    for key, value in (report.get("overrides") or {}).items():
        meta.append([f"override {key}", value])
    if report.get("forced"):
        meta += [
            ["forced by", report.get("forced_by")],
            ["force reason", report.get("force_reason")],
        ]
    if report.get("mlflow_run_url"):
        meta.append(["MLflow run", report["mlflow_run_url"]])
    # A field the pipeline did not record is left out rather than shown as n/a.
    return _Table(["", "value"], [row for row in meta if row[1] is not None])


def _checks_table(checks: list[dict[str, Any]]) -> _Table:
    """Every check, one row each, classed by verdict (the page colours FAIL and skip)."""
    columns = ["verdict", "name", "metric", "slice", "rows", "value", "bar", "champion"]
    return _Table(
        ["verdict", "check", "metric", "slice", "rows", "value", "bar", "champion", "note"],
        [[c.get(k) for k in columns] + [c.get("note") or ""] for c in checks],
        [str(c.get("verdict", "")) for c in checks],
    )


def _overall_table(candidate: dict[str, float], champion: dict[str, float] | None) -> _Table:
    """Each metric of either model: candidate, champion and their difference."""
    theirs = champion or {}
    return _Table(
        ["metric", "candidate", "champion", "candidate - champion"],
        [
            [
                name,
                candidate.get(name),
                theirs.get(name),
                _delta(candidate.get(name), theirs.get(name)),
            ]
            for name in _metric_names(candidate, champion)
        ],
    )


def _slice_tables(slices: list[dict[str, Any]]) -> list[tuple[str, _Table]]:
    """One table per slice column: each value's rows, whether it is gated, both models' metrics."""
    tables = []
    for column in dict.fromkeys(str(s.get("column")) for s in slices):
        rows_of = [s for s in slices if str(s.get("column")) == column]
        # rows is already a column of its own; auc_classes is bookkeeping, not a metric.
        names = [
            n
            for n in _metric_names(*(s.get("candidate") for s in rows_of))
            if n not in ("rows", "auc_classes")
        ]
        header = ["value", "rows", "gated"]
        for n in names:
            header += [f"{n} candidate", f"{n} champion"]
        table_rows = []
        for s in rows_of:
            row: list[Any] = [s.get("value"), s.get("rows"), s.get("gated")]
            for n in names:
                row += [(s.get("candidate") or {}).get(n), (s.get("champion") or {}).get(n)]
            table_rows.append(row)
        tables.append((column, _Table(header, table_rows)))
    return tables


def render_html(report: dict[str, Any]) -> str:
    """The decision as one HTML page: verdict, every check line, metrics overall and by slice."""
    verdict = str(report.get("verdict") or ("passed" if report.get("passed") else "rejected"))
    dataset = report.get("dataset", "")
    checks = report.get("checks") or []
    return (
        _environment()
        .get_template(TEMPLATE_NAME)
        .render(
            title=f"Gate decision: {dataset} candidate v{report.get('candidate_version', '?')}",
            verdict=verdict,
            headline=report.get("headline", ""),
            meta=_meta_table(report),
            reasons=report.get("reasons") or [],
            checks=_checks_table(checks),
            check_lines=[c.get("message", "") for c in checks],
            overall=_overall_table(report.get("candidate") or {}, report.get("champion")),
            min_slice_rows=report.get("min_slice_rows"),
            slice_tables=_slice_tables(report.get("slices") or []),
        )
    )


def approval_markdown(report: dict[str, Any]) -> str:
    """The decision in Markdown, for the human approval step's body."""
    lines = [
        f"**{report.get('headline', '')}**",
        "",
        f"Dataset `{report.get('dataset')}` ds {report.get('ds')}: candidate "
        f"v{report.get('candidate_version')}, champion v{report.get('champion_version') or '-'}.",
        "",
    ]
    lines += [f"- `{c.get('message', '')}`" for c in report.get("checks") or []]
    if report.get("report_html"):
        lines += ["", f"Full report: `{report['report_html']}`"]
    return "\n".join(lines)


def json_safe(value: Any) -> Any:
    """``value`` with non-finite floats (a NaN metric of a broken model) as None: strict JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    return value


def write_report(report: dict[str, Any], out_dir: Path) -> dict[str, Path]:
    """Write ``gate_decision.json`` and ``gate_report.html`` into ``out_dir``; their paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"json": out_dir / JSON_NAME, "html": out_dir / HTML_NAME}
    safe = json_safe(report)
    paths["json"].write_text(json.dumps(safe, indent=2, allow_nan=False), encoding="utf-8")
    paths["html"].write_text(render_html(safe), encoding="utf-8")
    return paths
