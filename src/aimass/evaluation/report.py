"""The gate decision as files: JSON for machines, one self-contained HTML page for people.

Both are rendered from the decision's JSON form (``GateDecision.to_dict()`` plus what the
pipeline adds: dataset, versions, task), so a stored ``gate_decision.json`` can be turned
into the page again. The page has no scripts and no external assets (inline CSS only), so
it opens the same from the report dir, an MLflow artifact view or an e-mail attachment.
"""

from __future__ import annotations

import json
import math
from html import escape
from pathlib import Path
from typing import Any

JSON_NAME = "gate_decision.json"
HTML_NAME = "gate_report.html"

_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2em; color: #222; }
h1 { font-size: 1.4em; } h2 { font-size: 1.15em; margin-top: 1.6em; }
table { border-collapse: collapse; margin: 0.5em 0; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: left; vertical-align: top; }
th { background: #f3f3f3; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
.badge { display: inline-block; padding: 0.15em 0.6em; border-radius: 0.3em; color: #fff; }
.passed, .ok { background: #2e7d32; } .rejected, .FAIL { background: #c62828; }
.forced { background: #ef6c00; } .skip { background: #757575; }
tr.FAIL td { background: #fdecea; } tr.skip td { color: #666; }
code { background: #f3f3f3; padding: 0 0.2em; }
"""


def _text(value: Any) -> str:
    """A value for the page, escaped (numbers with 4 decimals, None as n/a)."""
    if value is None:
        return "n/a"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.4f}" if math.isfinite(value) else str(value)
    return escape(str(value), quote=True)


def _cell(value: Any) -> str:
    numeric = isinstance(value, int | float) and not isinstance(value, bool)
    return f'<td class="num">{_text(value)}</td>' if numeric else f"<td>{_text(value)}</td>"


def _table(header: list[str], rows: list[list[Any]], row_classes: list[str] | None = None) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    body = []
    for i, row in enumerate(rows):
        cls = f' class="{escape(row_classes[i], quote=True)}"' if row_classes else ""
        body.append(f"<tr{cls}>" + "".join(_cell(v) for v in row) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


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


def render_html(report: dict[str, Any]) -> str:
    """The decision as one HTML page: verdict, every check line, metrics overall and by slice."""
    verdict = str(report.get("verdict") or ("passed" if report.get("passed") else "rejected"))
    dataset = report.get("dataset", "")
    title = f"Gate decision: {dataset} candidate v{report.get('candidate_version', '?')}"
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{_text(title)}</title><style>{_CSS}</style></head><body>",
        f'<h1>{_text(title)} <span class="badge {_text(verdict)}">{_text(verdict.upper())}</span></h1>',
        f"<p>{_text(report.get('headline', ''))}</p>",
    ]
    meta = [
        ["dataset", dataset],
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
    parts.append(_table(["", "value"], [row for row in meta if row[1] is not None]))

    reasons = report.get("reasons") or []
    if reasons:
        parts.append("<h2>Why the gate failed</h2><ul>")
        parts += [f"<li><code>{_text(r)}</code></li>" for r in reasons]
        parts.append("</ul>")

    checks = report.get("checks") or []
    parts.append(f"<h2>Checks ({len(checks)})</h2>")
    if checks:
        parts.append(
            _table(
                ["verdict", "check", "metric", "slice", "rows", "value", "bar", "champion", "note"],
                [
                    [
                        c.get("verdict"),
                        c.get("name"),
                        c.get("metric"),
                        c.get("slice"),
                        c.get("rows"),
                        c.get("value"),
                        c.get("bar"),
                        c.get("champion"),
                        c.get("note") or "",
                    ]
                    for c in checks
                ],
                [str(c.get("verdict", "")) for c in checks],
            )
        )
        parts.append("<h2>Check lines (as logged)</h2><pre>")
        parts += [_text(c.get("message", "")) + "\n" for c in checks]
        parts.append("</pre>")
    else:
        parts.append("<p>The gate has no bars.</p>")

    candidate = report.get("candidate") or {}
    champion = report.get("champion")
    parts.append("<h2>Holdout metrics, overall</h2>")
    parts.append(
        _table(
            ["metric", "candidate", "champion", "candidate - champion"],
            [
                [
                    name,
                    candidate.get(name),
                    (champion or {}).get(name),
                    _delta(candidate.get(name), (champion or {}).get(name)),
                ]
                for name in _metric_names(candidate, champion)
            ],
        )
    )

    slices = report.get("slices") or []
    if slices:
        parts.append(
            f"<h2>Holdout metrics by slice</h2><p>Slices with fewer than "
            f"{_text(report.get('min_slice_rows'))} rows are reported, not gated.</p>"
        )
    for column in dict.fromkeys(str(s.get("column")) for s in slices):
        rows_of = [s for s in slices if str(s.get("column")) == column]
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
        parts.append(f"<h3>{_text(column)}</h3>" + _table(header, table_rows))
    parts.append("</body></html>")
    return "\n".join(parts)


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
