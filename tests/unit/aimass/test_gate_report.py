from __future__ import annotations

import importlib.resources
import json
import re
import tomllib
from fnmatch import fnmatch
from html.parser import HTMLParser
from pathlib import Path

import pytest

# The escaping the page's template applies (Jinja2 autoescape): &#34; for a double quote.
from markupsafe import escape

from aimass.data.spec import CLASSIFICATION_METRICS, GateSpec
from aimass.evaluation.gate import decide, force
from aimass.evaluation.metrics import SliceMetrics
from aimass.evaluation.report import (
    HTML_NAME,
    JSON_NAME,
    TEMPLATE_NAME,
    approval_markdown,
    json_safe,
    render_html,
    write_report,
)

pytestmark = pytest.mark.unit

GATE = GateSpec.from_dict(
    {
        "min": {"auc": 0.6},
        "max_regression": {"auc": 0.01},
        "max_slice_regression": {"auc": 0.05},
        "min_slice_rows": 30,
    },
    "test",
)
HOSTILE = '<script>alert("x")</script>'


def _report(*, forced: bool = False) -> dict:
    cand = [
        SliceMetrics("payment", "cash", 400, {"auc": 0.60, "rows": 400.0}),
        SliceMetrics("payment", HOSTILE, 12, {"auc": 0.50, "rows": 12.0}),
    ]
    champ = [
        SliceMetrics("payment", "cash", 400, {"auc": 0.70, "rows": 400.0}),
        SliceMetrics("payment", HOSTILE, 12, {"auc": 0.90, "rows": 12.0}),
    ]
    decision = decide(
        GATE,
        {"auc": 0.58, "accuracy": 0.7},
        {"auc": 0.72, "accuracy": 0.7},
        metrics=CLASSIFICATION_METRICS,
        candidate_slices=cand,
        champion_slices=champ,
    )
    if forced:
        decision = force(decision, reason="INC-7 <b>urgent</b> & needed", user="eve")
    return {
        **decision.to_dict(),
        "dataset": "chicago_taxi",
        "ds": "2026-11-25",
        "candidate_version": "7",
        "champion_version": "6",
        "task": "binary",
        "threshold": 0.5,
    }


def test_html_holds_every_check_line_escaped() -> None:
    report = _report()
    page = render_html(report)
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
    for check in report["checks"]:
        assert escape(check["message"]) in page
    for reason in report["reasons"]:
        assert escape(reason) in page
    assert "REJECTED" in page and "chicago_taxi" in page


def test_html_escapes_values_and_is_self_contained() -> None:
    page = render_html(_report(forced=True))
    assert HOSTILE not in page and "&lt;script&gt;" in page
    assert "<b>urgent</b>" not in page and "INC-7 &lt;b&gt;urgent&lt;/b&gt; &amp; needed" in page
    assert "FORCED" in page and "eve" in page
    # No scripts, no external assets: nothing to fetch when the page opens.
    assert not re.search(r"<script|<link|<img|src=|href=|@import|url\(", page, re.IGNORECASE)


def test_html_shows_slices_with_both_models_and_the_small_one_not_gated() -> None:
    page = render_html(_report())
    assert "Holdout metrics by slice" in page and "<h3>payment</h3>" in page
    assert "not gated: 12 rows &lt; min_slice_rows 30" in page
    assert "0.6000" in page and "0.7000" in page


def test_report_files_are_strict_json_and_html(tmp_path: Path) -> None:
    report = _report()
    report["candidate"]["log_loss"] = float("nan")  # a broken model's metric
    paths = write_report(report, tmp_path / "reports")
    assert paths == {
        "json": tmp_path / "reports" / JSON_NAME,
        "html": tmp_path / "reports" / HTML_NAME,
    }
    stored = json.loads(paths["json"].read_text(encoding="utf-8"))
    assert stored["candidate"]["log_loss"] is None
    assert [c["message"] for c in stored["checks"]] == [c["message"] for c in report["checks"]]
    # The page is rendered from what the JSON holds, so a stored decision renders the same.
    assert paths["html"].read_text(encoding="utf-8") == render_html(stored)


def test_json_safe_replaces_only_non_finite_floats() -> None:
    value = {"a": [1.0, float("inf"), {"b": float("nan")}], "c": "nan", "d": 2}
    assert json_safe(value) == {"a": [1.0, None, {"b": None}], "c": "nan", "d": 2}


def test_approval_markdown_lists_every_check() -> None:
    report = _report(forced=True)
    body = approval_markdown(report)
    assert body.startswith("**gate REJECTED against the champion; deployment FORCED by eve")
    for check in report["checks"]:
        assert f"- `{check['message']}`" in body


class _Markup(HTMLParser):
    """The elements and attributes of a page, and its text as a browser shows it."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: set[str] = set()
        self.attributes: list[tuple[str, str | None]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.add(tag)
        self.attributes += attrs

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def test_every_data_value_is_escaped_in_text_and_attributes() -> None:
    hostile = "<b id='h'>x & \"y\"</b>"
    report = _report(forced=True)
    for key in ("dataset", "ds", "run_id", "candidate_version", "champion_version", "task"):
        report[key] = f"{key} {hostile}"
    report.update(
        headline=f"headline {hostile}",
        mlflow_run_url=f"http://mlflow/{hostile}",
        overrides={f"min.{hostile}": hostile},
        forced_by=hostile,
        reasons=[f"reason {hostile}"],
    )
    report["candidate"][hostile] = 0.5  # a metric name is data too
    for check in report["checks"]:
        check.update(name=hostile, metric=hostile, note=hostile, message=f"line {hostile}")
    report["checks"][0]["verdict"] = f'FAIL" onmouseover="{hostile}'  # a class attribute
    report["slices"][0].update(column=hostile, value=hostile)
    report["slices"][0]["candidate"][hostile] = 0.25

    page = render_html(report)
    parsed = _Markup()
    parsed.feed(page)
    # Only the template's own elements and attributes: nothing from the data became markup.
    assert parsed.tags == {
        "html", "head", "meta", "title", "style", "body", "h1", "h2", "h3", "p", "span",
        "table", "thead", "tbody", "tr", "th", "td", "ul", "li", "code", "pre",
    }  # fmt: skip
    assert {name for name, _ in parsed.attributes} == {"lang", "charset", "class"}
    assert "<b id" not in page and escape(hostile) in page
    # ...and each value still reads as written once the browser unescapes it.
    text = "".join(parsed.text)
    for shown in (
        f"dataset {hostile}",
        f"run_id {hostile}",
        f"headline {hostile}",
        f"override min.{hostile}",
        f"reason {hostile}",
        f"line {hostile}",
        f"{hostile} candidate",
    ):
        assert shown in text, shown
    assert f'FAIL" onmouseover="{hostile}' in {value for _, value in parsed.attributes}


def test_the_template_ships_as_package_data() -> None:
    template = importlib.resources.files("aimass.evaluation") / "templates" / TEMPLATE_NAME
    assert template.is_file()
    pyproject = tomllib.loads(
        (Path(__file__).resolve().parents[3] / "pyproject.toml").read_text(encoding="utf-8")
    )
    patterns = pyproject["tool"]["setuptools"]["package-data"]["aimass"]
    assert any(fnmatch(f"evaluation/templates/{TEMPLATE_NAME}", p) for p in patterns)
