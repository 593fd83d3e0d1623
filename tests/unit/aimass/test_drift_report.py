"""The drift report's HTML page (aimass.data.drift.report), rendered from its Jinja2 template."""

from __future__ import annotations

from html.parser import HTMLParser
from pathlib import Path

import pytest

from aimass.data import drift
from aimass.data.spec import DriftSpec

pytestmark = pytest.mark.unit

# A name with every character HTML gives a meaning to: it must show as text, never as markup.
NASTY = "company<b>&'\""
THRESHOLDS = DriftSpec(
    psi_warning=0.12, psi_critical=0.3, null_share_change=0.05, bins=7, on_critical="fail"
)


def _report() -> drift.DriftReport:
    features = (
        drift.FeatureDrift(
            "fare",
            "numeric",
            0.51234,
            drift.CRITICAL,
            0.0,
            0.012,
            buckets=(("(-inf, 3.25]", 0.1, 0.02), ("(3.25, inf]", 0.9, 0.98)),
            reasons=("PSI 0.5123 >= 0.3",),
        ),
        drift.FeatureDrift(
            NASTY,
            "categorical",
            0.12,
            drift.WARNING,
            0.01,
            0.2,
            new_categories=("A & B", "<script>x</script>"),
            vanished_categories=("old'one",),
            new_category_count=25,
            vanished_category_count=1,
            buckets=(("Flash <Cab>", 0.5, 0.4), (drift.OTHER, 0.5, 0.6)),
            reasons=("new ones may be rare", "null share 1.0% -> 20.0%"),
        ),
        drift.FeatureDrift(
            "hour",
            "categorical",
            None,
            drift.CRITICAL,
            None,
            0.3,
            reasons=("not profiled in the reference",),
        ),
        drift.FeatureDrift("miles", "numeric", 0.001, drift.OK, 0.0, 0.0),
    )
    nulls = (
        drift.NullShareChange("fare", 0.0, 0.012, 0.012, drift.OK),
        drift.NullShareChange("x", 0.3, 0.1, -0.2, drift.CRITICAL),
    )
    schema = (
        drift.SchemaChange("new<col>", "added", None, "string", drift.WARNING),
        drift.SchemaChange("tips", "type_changed", "double", "int64", drift.CRITICAL),
    )
    return drift.DriftReport(
        drift.CRITICAL,
        "fail",
        features,
        nulls,
        schema,
        THRESHOLDS,
        rows_reference=5000,
        rows_current=1234,
        reference="/lake/ref<&>/ds=1 (split train)",
        current="/lake/cur/ds=2",
    )


class _Page(HTMLParser):
    """The page's text by element: headings, table rows (cell texts), summaries, anchors."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[str] = []
        self.rows: list[list[str]] = []
        self.classes: list[str | None] = []
        self.headings: list[str] = []
        self.summaries: list[str] = []
        self.hrefs: list[str] = []
        self.ids: list[str] = []
        self._cell: list[str] | None = None
        self._text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        found = dict(attrs)
        if tag == "tr":
            self.rows.append([])
            self.classes.append(found.get("class"))
        elif tag in ("td", "th"):
            self._cell = []
        elif tag in ("h1", "h2", "summary"):
            self._text = []
        if tag == "a" and found.get("href"):
            self.hrefs.append(str(found["href"]))
        if found.get("id"):
            self.ids.append(str(found["id"]))

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None:
            self.rows[-1].append("".join(self._cell).strip())
            self._cell = None
        elif tag in ("h1", "h2"):
            self.headings.append("".join(self._text).strip())
        elif tag == "summary":
            self.summaries.append("".join(self._text).strip())

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)
        self._text.append(data)


def _page(report: drift.DriftReport) -> _Page:
    page = _Page()
    page.feed(drift.render_html(report))
    return page


def test_the_page_shows_status_features_psi_and_findings() -> None:
    page = _page(_report())
    assert page.headings == [
        "Drift report: critical",
        "Features",
        "Schema changes",
        "Null share per column",
        "Thresholds",
        "Distributions",
    ]
    rows = page.rows
    assert ["action", "fail"] in rows
    assert ["reference", "/lake/ref<&>/ds=1 (split train), 5000 rows"] in rows
    assert ["current", "/lake/cur/ds=2, 1234 rows"] in rows
    assert ["critical features", "fare, hour"] in rows
    assert ["warning features", NASTY] in rows
    # One row per feature: name, kind, PSI (4 digits), severity, null shares, categories, notes.
    assert [
        "fare",
        "numeric",
        "0.5123",
        "critical",
        "0.0%",
        "1.2%",
        "-",
        "-",
        "PSI 0.5123 >= 0.3",
    ] in rows
    assert [
        NASTY,
        "categorical",
        "0.1200",
        "warning",
        "1.0%",
        "20.0%",
        "A & B, <script>x</script> … (+23 more)",
        "old'one",
        "new ones may be rare; null share 1.0% -> 20.0%",
    ] in rows
    assert [
        "hour",
        "categorical",
        "n/a",
        "critical",
        "n/a",
        "30.0%",
        "-",
        "-",
        "not profiled in the reference",
    ] in rows
    assert ["miles", "numeric", "0.0010", "ok", "0.0%", "0.0%", "-", "-", ""] in rows
    # Each feature's row is coloured by its severity.
    feature_rows = [i for i, row in enumerate(rows) if len(row) == 9 and row[0] != "feature"]
    assert [page.classes[i] for i in feature_rows] == ["critical", "warning", "critical", "ok"]


def test_the_page_shows_schema_nulls_thresholds_and_distributions() -> None:
    page = _page(_report())
    rows = page.rows
    assert ["new<col>", "added", "-", "string", "warning"] in rows
    assert ["tips", "type_changed", "double", "int64", "critical"] in rows
    assert ["fare", "0.0%", "1.2%", "+1.2 pt", "ok"] in rows
    assert ["x", "30.0%", "10.0%", "-20.0 pt", "critical"] in rows
    assert ["PSI warning from", "0.12"] in rows
    assert ["PSI critical from", "0.3"] in rows
    assert ["largest allowed null-share change", "0.05"] in rows
    assert ["bins (numeric)", "7"] in rows
    assert ["on critical", "fail"] in rows
    assert ["PSI epsilon (empty buckets)", str(drift.EPSILON)] in rows
    assert page.summaries == [
        "fare: PSI 0.5123, critical",
        f"{NASTY}: PSI 0.1200, warning",
        "hour: PSI n/a, critical",
        "miles: PSI 0.0010, ok",
    ]
    assert ["(-inf, 3.25]", "10.00%", "2.00%"] in rows
    assert ["Flash <Cab>", "50.00%", "40.00%"] in rows
    assert [drift.OTHER, "50.00%", "60.00%"] in rows
    # The features table links each feature to its distribution.
    assert page.hrefs == [f"#{i}" for i in page.ids]
    assert page.ids == [f"f-{name}" for name in ("fare", NASTY, "hour", "miles")]


def test_values_from_the_data_are_escaped() -> None:
    html = drift.render_html(_report())
    # Only the page's own elements: no <b>, <script>, <col> or <cab> from the data.
    assert set(_page(_report()).tags) == {
        "html",
        "head",
        "meta",
        "title",
        "style",
        "body",
        "h1",
        "span",
        "table",
        "tr",
        "th",
        "td",
        "code",
        "h2",
        "a",
        "details",
        "summary",
        "p",
    }
    for raw in ("<b>", "<script>", "<col>", "<Cab>", "&'"):
        assert raw not in html
    assert "company&lt;b&gt;&amp;" in html and "&lt;script&gt;x&lt;/script&gt;" in html
    assert "<link" not in html and "<style>" in html


def test_a_report_without_findings_says_so() -> None:
    empty = drift.DriftReport(drift.OK, drift.NO_ACTION, (), (), (), DriftSpec(), 0, 0)
    html = drift.render_html(empty)
    page = _page(empty)
    assert page.headings[0] == "Drift report: ok"
    assert "<p>No schema changes.</p>" in html
    assert ["critical features", "-"] in page.rows and ["warning features", "-"] in page.rows
    assert page.summaries == []


def test_write_report_writes_the_rendered_page(tmp_path: Path) -> None:
    report = _report()
    paths = drift.write_report(report, tmp_path / "reports")
    assert paths["html"].read_text(encoding="utf-8") == drift.render_html(report)
