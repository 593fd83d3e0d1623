from __future__ import annotations

import json
import re
from html import escape
from pathlib import Path

import pytest

from aimass.data.spec import CLASSIFICATION_METRICS, GateSpec
from aimass.evaluation.gate import decide, force
from aimass.evaluation.metrics import SliceMetrics
from aimass.evaluation.report import (
    HTML_NAME,
    JSON_NAME,
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
        assert escape(check["message"], quote=True) in page
    for reason in report["reasons"]:
        assert escape(reason, quote=True) in page
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
