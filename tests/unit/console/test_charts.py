"""The console's server-side SVG charts (aimass.console.charts), read the way a person reads them.

Every chart is parsed as XML (an inline SVG must be well-formed) and the assertions are on the
text a reader sees: axis titles with units, tick labels, values written beside points and bars.
"""

from __future__ import annotations

import math
import re
import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta

import pytest

from aimass.console import charts
from aimass.console.charts import (
    bar_chart,
    format_value,
    histogram_pair,
    nice_ticks,
    text_width,
    time_chart,
    version_chart,
)

pytestmark = pytest.mark.unit

SVG = "{http://www.w3.org/2000/svg}"


def _parse(markup: str) -> ET.Element:
    root = ET.fromstring(str(markup))
    assert root.tag == f"{SVG}svg"
    return root


def _with_class(root: ET.Element, cls: str, tag: str = "*") -> list[ET.Element]:
    return [e for e in root.iter(f"{SVG}{tag}") if cls in e.get("class", "").split()]


def _texts(root: ET.Element, cls: str) -> list[str]:
    return [e.text or "" for e in _with_class(root, cls, "text")]


def _auc_acc(versions: int) -> dict[str, list[tuple[str, float | None]]]:
    return {
        "auc": [(f"v{i}", 0.8 + 0.001 * i) for i in range(1, versions + 1)],
        "accuracy": [(f"v{i}", 0.7 + 0.001 * i) for i in range(1, versions + 1)],
    }


def _all_charts() -> list[str]:
    t0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
    return [
        version_chart(_auc_acc(3), title="Quality", y_label="score"),
        time_chart(
            {"v2": [(t0, 1.0), (t0 + timedelta(minutes=5), 2.0)]}, title="Rate", y_label="r"
        ),
        time_chart({}, title="Rate", y_label="r"),
        histogram_pair(["a", "b"], [0.5, 0.5], [0.4, 0.6], title="Fare", x_label="fare"),
        bar_chart([("fare", 0.3)], title="PSI", x_label="PSI"),
    ]


@pytest.mark.parametrize("index", range(5))
def test_every_chart_is_an_accessible_svg_with_a_title(index: int) -> None:
    markup = _all_charts()[index]
    root = _parse(markup)
    assert "chart" in root.get("class", "").split()
    assert root.get("role") == "img" and root.get("aria-label")
    assert re.fullmatch(r"0 0 \d+ \d+", root.get("viewBox", ""))
    assert root[0].tag == f"{SVG}title" and root[0].text
    assert "font-family" not in markup or 'font-family="inherit"' in markup
    assert set(re.findall(r'fill="(#[0-9A-Fa-f]{6})"', markup)) <= {
        *charts.PALETTE,
        *charts.LEVEL_COLOURS,
        "#808080",
    }


def test_charts_are_deterministic() -> None:
    assert _all_charts() == _all_charts()


def test_version_chart_writes_every_version_and_each_value() -> None:
    series = {"auc": [("v1", 0.8), ("v2", 0.9)], "accuracy": [("v1", 0.7), ("v2", 0.75)]}
    root = _parse(version_chart(series, title="Quality", y_label="latency", unit="ms"))
    assert _texts(root, "x-tick") == ["v1", "v2"]
    assert "latency (ms)" in _texts(root, "y-title")
    assert _texts(root, "x-title") == ["model version"]
    labels = {
        (e.get("data-series"), e.get("data-version")): e.text
        for e in _with_class(root, "point-label", "text")
    }
    assert labels[("auc", "v2")] == "0.900"
    assert labels[("auc", "v1")] == "0.800"
    assert labels[("accuracy", "v2")] == "0.750"
    assert _texts(root, "legend-label") == ["auc", "accuracy"]
    assert len(_texts(root, "tick")) >= len(_texts(root, "x-tick")) + 2  # y ticks too


def test_version_chart_single_series_has_no_legend_but_tells_which_way_is_better() -> None:
    root = _parse(
        version_chart({"auc": [("v1", 0.8)]}, title="Q", y_label="AUC", higher_is_better=True)
    )
    assert _texts(root, "legend-label") == []
    assert _texts(root, "hint") == ["↑ higher is better"]
    assert len(_with_class(root, "best", "circle")) == 1


def test_version_chart_thins_labels_for_many_versions() -> None:
    values = [0.85 + 0.01 * math.sin(i) for i in range(50)]
    values[19], values[32] = 0.70, 0.99  # min at v20, max at v33
    series = {
        "auc": [(f"v{i + 1}", v) for i, v in enumerate(values)],
        "accuracy": [(f"v{i + 1}", v - 0.1) for i, v in enumerate(values)],
    }
    root = _parse(version_chart(series, title="Quality", y_label="score"))
    ticks = sorted(
        ((float(e.get("x", "0")), e.text or "") for e in _with_class(root, "x-tick", "text")),
    )
    names = [name for _, name in ticks]
    assert names[0] == "v1" and names[-1] == "v50" and 3 < len(names) < 50
    for (x1, a), (x2, b) in zip(ticks, ticks[1:], strict=False):
        assert x2 - x1 >= (text_width(a) + text_width(b)) / 2, (a, b)
    auc = sorted(
        (float(e.get("x", "0")), e.get("data-version"), e.text or "")
        for e in _with_class(root, "point-label", "text")
        if e.get("data-series") == "auc"
    )
    labelled = {version for _, version, _ in auc}
    assert {"v1", "v50", "v20", "v33"} <= labelled and len(labelled) < 50
    assert ("v20", "0.700") in {(v, t) for _, v, t in auc}
    for (x1, _, a), (x2, _, b) in zip(auc, auc[1:], strict=False):
        assert x2 - x1 >= (text_width(a, 10) + text_width(b, 10)) / 2
    assert len(_with_class(root, "point", "circle")) == 100  # every point is still drawn


def test_version_chart_breaks_the_line_at_missing_values() -> None:
    series = {"auc": [("v1", 0.8), ("v2", 0.82), ("v3", None), ("v4", 0.85), ("v5", 0.86)]}
    root = _parse(version_chart(series, title="Quality", y_label="AUC"))
    paths = [e for e in _with_class(root, "line", "path") if e.get("data-series") == "auc"]
    assert len(paths) == 2
    assert len(_with_class(root, "point", "circle")) == 4
    assert "v3" in _texts(root, "x-tick")


def test_version_chart_versions_follow_the_given_order_across_series() -> None:
    series = {"a": [("v2", 1.0), ("v3", 2.0)], "b": [("v1", 1.5), ("v3", 2.5)]}
    assert _texts(_parse(version_chart(series, title="T", y_label="y")), "x-tick") == [
        "v2",
        "v3",
        "v1",
    ]


def test_text_is_escaped() -> None:
    nasty = "<script>&'\""
    markup = version_chart(
        {nasty: [("v<1>", 0.5)], "b": [("v<1>", 0.6)]}, title=nasty, y_label=nasty
    )
    assert "<script>" not in markup and "&lt;script&gt;" in markup
    root = _parse(markup)
    assert nasty in _texts(root, "legend-label")
    assert root[0].text == nasty and _texts(root, "x-tick") == ["v<1>"]
    bars = bar_chart([(nasty, 1.0)], title=nasty, x_label=nasty, thresholds={nasty: 0.5})
    assert "<script>" not in bars
    assert _texts(_parse(bars), "item-label") == [nasty]


def test_time_chart_without_data_says_so() -> None:
    empty: list[dict[str, list[tuple[datetime, float | None]]]] = [
        {},
        {"v2 (stable)": []},
        {"v2": [(datetime(2024, 1, 1, tzinfo=UTC), None)]},
    ]
    for series in empty:
        root = _parse(time_chart(series, title="Requests", y_label="rate"))
        assert _texts(root, "empty") == ["no data yet"]
        assert root[0].text == "Requests" and "Requests" in _texts(root, "chart-title")


def test_time_chart_reads_without_hovering() -> None:
    t0 = datetime(2024, 5, 1, 12, 0)  # naive: taken as UTC
    stable = [(t0 + timedelta(seconds=10 * i), float(i % 37)) for i in range(360)]
    canary = [(t0 + timedelta(seconds=10 * i), 2.5 if i < 359 else None) for i in range(360)]
    root = _parse(
        time_chart(
            {"v2 (stable)": stable, "v3 (canary)": canary},
            title="Requests",
            y_label="rate",
            unit="req/s",
        )
    )
    x_ticks = _texts(root, "x-tick")
    assert 4 <= len(x_ticks) <= 6 and all(re.fullmatch(r"\d\d:\d\d", t) for t in x_ticks)
    assert x_ticks[0] == "12:00"
    y_ticks = [
        e.text for e in _with_class(root, "tick", "text") if "x-tick" not in e.get("class", "")
    ]
    assert 3 <= len(y_ticks) <= 5 and y_ticks[0] == "0"
    steps = {
        round(float(b or 0) - float(a or 0), 9) for a, b in zip(y_ticks, y_ticks[1:], strict=False)
    }
    assert len(steps) == 1 and re.fullmatch(r"[125]0*(\.0+)?", f"{steps.pop():g}")
    assert _texts(root, "legend-label") == ["v2 (stable)", "v3 (canary)"]
    assert "rate (req/s)" in _texts(root, "y-title") and "time (UTC)" in _texts(root, "x-title")
    ends = {e.get("data-series"): e.text for e in _with_class(root, "end-label", "text")}
    assert ends == {"v2 (stable)": f"{359 % 37} req/s", "v3 (canary)": "2.5 req/s"}


def test_histogram_pair_shows_shares_as_percentages() -> None:
    bins = ["< 10", "10–20", "20–50", "≥ 50"]
    reference, live = [0.1, 0.2, 0.3, 0.4], [0.25, 0.25, 0.25, 0.25]
    root = _parse(histogram_pair(bins, reference, live, title="Fare", x_label="fare (USD)"))
    assert _texts(root, "x-tick") == bins
    assert _texts(root, "legend-label") == ["reference", "live"]
    assert "fare (USD)" in _texts(root, "x-title") and "share of rows" in _texts(root, "y-title")
    y_ticks = [
        e.text or ""
        for e in _with_class(root, "tick", "text")
        if "x-tick" not in e.get("class", "")
    ]
    assert y_ticks and all(t.endswith("%") for t in y_ticks)
    for series, expected in (("reference", reference), ("live", live)):
        labels = [
            e.text or ""
            for e in _with_class(root, "bar-label", "text")
            if e.get("data-series") == series
        ]
        assert len(labels) == 4 and all(t.endswith("%") for t in labels)
        shown = [float(t.rstrip("% ")) for t in labels]
        assert shown == pytest.approx([100 * s for s in expected])
        assert sum(shown) == pytest.approx(100)
    colours = {e.get("fill") for e in _with_class(root, "bar", "rect")}
    assert len(colours) == 2


def test_histogram_pair_with_many_bins_thins_labels_and_drops_bar_values() -> None:
    bins = [f"bin {i}" for i in range(40)]
    shares = [1 / 40] * 40
    root = _parse(histogram_pair(bins, shares, shares, title="Age", x_label="age"))
    ticks = _texts(root, "x-tick")
    assert ticks[0] == "bin 0" and ticks[-1] == "bin 39" and len(ticks) < 40
    assert _texts(root, "bar-label") == []
    assert len(_with_class(root, "bar", "rect")) == 80


def test_histogram_pair_rejects_mismatched_lengths() -> None:
    with pytest.raises(ValueError):
        histogram_pair(["a", "b"], [1.0], [0.5, 0.5], title="T", x_label="x")


def test_bar_chart_thresholds_and_colours() -> None:
    items = [("fare", 0.51), ("age", 0.12), ("city", 0.05)]
    thresholds = {"warning": 0.1, "critical": 0.25}
    root = _parse(bar_chart(items, title="PSI", x_label="PSI", thresholds=thresholds))
    assert _texts(root, "item-label") == ["fare", "age", "city"]
    assert _texts(root, "bar-value") == ["0.510", "0.120", "0.050"]
    assert _texts(root, "x-title") == ["PSI"]
    groups = {g.get("data-threshold"): g for g in _with_class(root, "threshold", "g")}
    assert set(groups) == {"warning", "critical"}
    for name, group in groups.items():
        line = group.find(f"{SVG}line")
        assert line is not None and line.get("stroke-dasharray")
        assert name and name in "".join(group.itertext())
    fills = [e.get("fill") for e in _with_class(root, "bar", "rect")]
    assert fills == [charts.LEVEL_COLOURS[2], charts.LEVEL_COLOURS[1], charts.LEVEL_COLOURS[0]]
    levels = [g.get("data-level") for g in _with_class(root, "item", "g")]
    assert levels == ["critical", "warning", "ok"]


def test_bar_chart_grows_with_items_and_says_when_empty() -> None:
    def height(n: int) -> float:
        root = _parse(bar_chart([(f"r{i}", float(i)) for i in range(n)], title="T", x_label="rows"))
        return float(root.get("viewBox", "").split()[3])

    assert height(10) > height(2)
    assert _texts(_parse(bar_chart([], title="T", x_label="rows")), "empty") == ["no data yet"]


@pytest.mark.parametrize(
    ("lo", "hi", "count", "expected"),
    [
        (0, 1, 6, [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]),
        (0, 100, 5, [0.0, 20.0, 40.0, 60.0, 80.0, 100.0]),
        (0, 0, 5, None),
        (-3, 7, 5, None),
        (-10, -2, 5, None),
        (0.81, 0.93, 5, None),
        (1e-6, 3e-6, 4, None),
        (5, 5, 5, None),
        (7, 3, 5, None),
    ],
)
def test_nice_ticks(lo: float, hi: float, count: int, expected: list[float] | None) -> None:
    ticks = nice_ticks(lo, hi, count)
    if expected is not None:
        assert ticks == expected
    assert 2 <= len(ticks) <= count + 1
    assert ticks[0] <= min(lo, hi) and ticks[-1] >= max(lo, hi)
    steps = [b - a for a, b in zip(ticks, ticks[1:], strict=False)]
    step = steps[0]
    assert all(s == pytest.approx(step) for s in steps)
    mantissa = step / 10 ** math.floor(math.log10(step))
    assert any(mantissa == pytest.approx(m) for m in (1, 2, 5))
    if lo == hi == 0:
        assert ticks[0] == 0 and ticks[-1] > 0
    if lo < 0 < hi:
        assert 0.0 in ticks


@pytest.mark.parametrize(
    ("value", "unit", "expected"),
    [
        (0.912, "", "0.912"),
        (0.9, "", "0.900"),
        (12.34, "ms", "12.3 ms"),
        (45, "%", "45 %"),
        (1200, "", "1.2k"),
        (1234, "rows", "1.23k rows"),
        (999_999, "", "1M"),
        (250, "", "250"),
        (0, "", "0"),
        (-0.25, "", "-0.250"),
        (0.0012, "", "0.0012"),
        (None, "", "–"),
        (float("nan"), "ms", "–"),
    ],
)
def test_format_value(value: float | None, unit: str, expected: str) -> None:
    assert format_value(value, unit) == expected
