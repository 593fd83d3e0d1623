"""Server-side SVG charts for the console's pages.

Why SVG drawn on the server: the console ships no JavaScript, so there is nothing to install,
build or serve, and nothing is fetched from a CDN (the Airflow UI may run where no CDN can be
reached). An inline ``<svg>`` is plain markup in the page: its text is real text, so screen
readers, ``Ctrl+F`` and browser tests read the axis titles, tick labels and the values written
beside the points without any hovering. Output is deterministic (same data, same bytes).

Every chart is one ``<svg class="chart chart-KIND" role="img">`` with a ``<title>``. Sizes are
viewBox units; the stylesheet sizes the element through the ``chart`` class. Colours and fonts
are presentation attributes (lowest CSS precedence), so a stylesheet can override any of them.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from types import MappingProxyType

from markupsafe import Markup, escape

# Okabe-Ito: distinguishable with the common colour-vision deficiencies.
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#000000")
LEVEL_COLOURS = ("#0072B2", "#E69F00", "#D55E00")  # below every threshold, above one, above two+
GRID, AXIS = "#d0d0d0", "#808080"
FONT_SIZE = 11.0
SMALL = 10.0
_NO_THRESHOLDS: Mapping[str, float] = MappingProxyType({})
_TIME_STEPS = (10, 15, 20, 30, 60, 120, 180, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200)
Scale = Callable[[float], float]
Box = tuple[float, float, float, float]  # left, top, right, bottom of the plot area


def text_width(text: str, size: float = FONT_SIZE) -> float:
    """A generous estimate of the rendered width of ``text`` (used to avoid overlapping labels)."""
    return len(text) * size * 0.6


def nice_ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    """About ``count`` round tick values (1, 2 or 5 x 10^k apart) covering ``lo``..``hi``.

    Never more than ``count + 1`` ticks nor fewer than two; an empty range is widened.
    """
    if lo > hi:
        lo, hi = hi, lo
    if lo == hi:
        lo, hi = (0.0, 1.0) if lo == 0 else (lo - abs(lo) * 0.1, hi + abs(hi) * 0.1)
    raw = (hi - lo) / max(count - 1, 1)
    mag = 10.0 ** math.floor(math.log10(raw))
    steps = [m * mag for m in (1, 2, 5, 10, 20, 50, 100)]
    fraction = raw / mag
    i = 0 if fraction < 1.5 else 1 if fraction < 3 else 2 if fraction < 7 else 3
    while True:
        step = steps[i]
        first, last = math.floor(lo / step + 1e-9), math.ceil(hi / step - 1e-9)
        if last - first + 1 <= count + 1 or i == len(steps) - 1:
            break
        i += 1
    digits = max(0, -math.floor(math.log10(step)))
    return [round(k * step, digits) + 0.0 for k in range(first, last + 1)]


def format_value(value: float | None, unit: str = "") -> str:
    """A short reading of ``value``: "0.912", "12.3 ms", "1.2k", "45 %" ("–" for no value)."""
    if value is None or not math.isfinite(value):
        return "–"
    size, suffix = abs(value), ""
    for div, name in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if size >= div * 0.9995:  # so that 999 999 reads "1M", never "1e+03k"
            value, size, suffix = value / div, size / div, name
            break
    if size >= 99.95:
        text = f"{value:.0f}"
    elif size >= 1 or value == 0 or suffix:
        text = f"{value:.3g}"
    else:
        text = f"{value:.3f}" if size >= 0.01 else f"{value:.2g}"
    return f"{text}{suffix} {unit}" if unit else f"{text}{suffix}"


def _clean(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else float(value)


def _colour(i: int) -> str:
    return PALETTE[i % len(PALETTE)]


def _f(x: float) -> str:
    return f"{x:.1f}"


def _text(x: float, y: float, text: str, cls: str, anchor: str = "middle", extra: str = "") -> str:
    return (
        f'<text class="{cls}" x="{_f(x)}" y="{_f(y)}" text-anchor="{anchor}"{extra}>'
        f"{escape(text)}</text>"
    )


def _svg(kind: str, title: str, label: str, width: int, height: int, body: list[str]) -> Markup:
    head = (
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart chart-{kind}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="{escape(label)}" '
        f'font-family="inherit" font-size="{FONT_SIZE:g}" fill="currentColor">'
        f"<title>{escape(title)}</title>"
        + _text(4, 14, title, "chart-title", "start", ' font-size="12" font-weight="600"')
    )
    return Markup(head + "".join(body) + "</svg>")


def _empty(kind: str, title: str, width: int, height: int) -> Markup:
    body = [_text(width / 2, height / 2 + 4, "no data yet", "empty", extra=' fill="#808080"')]
    return _svg(kind, title, f"{title}: no data yet", width, height, body)


def _legend(names: Sequence[str], width: int, y: float = 30) -> tuple[list[str], float]:
    """Swatch + name per series, left to right, wrapping into rows; returns the rows' height."""
    parts, x, y0 = ['<g class="legend">'], 4.0, y
    for i, name in enumerate(names):
        w = 14 + text_width(name, SMALL) + 12
        if x > 4 and x + w > width:
            x, y = 4.0, y + 14
        parts.append(
            f'<rect class="swatch series-{i}" x="{_f(x)}" y="{_f(y - 8)}" width="10" height="10" '
            f'fill="{_colour(i)}"/>'
            + _text(x + 14, y + 1, name, "legend-label", "start", f' font-size="{SMALL:g}"')
        )
        x += w
    return [*parts, "</g>"], y - y0 + 14


def _linear(d0: float, d1: float, r0: float, r1: float) -> Scale:
    return lambda v: r0 + (v - d0) / (d1 - d0) * (r1 - r0)


def _line(x1: float, y1: float, x2: float, y2: float, cls: str, extra: str = "") -> str:
    return (
        f'<line class="{cls}" x1="{_f(x1)}" x2="{_f(x2)}" y1="{_f(y1)}" y2="{_f(y2)}" '
        f'stroke="{GRID if cls == "grid" else AXIS}"{extra}/>'
    )


def _tick_labels(ticks: Sequence[float], unit: str = "") -> list[str]:
    if len(ticks) > 1 and max(abs(t) for t in ticks) < 1000:
        digits = max(0, -math.floor(math.log10(ticks[1] - ticks[0]) + 1e-9))
        return [f"{t:.{digits}f}" + (f" {unit}" if unit else "") for t in ticks]
    return [format_value(t, unit) for t in ticks]


def _y_axis(
    ticks: Sequence[float], labels: Sequence[str], ys: Scale, left: float, right: float
) -> list[str]:
    parts = ['<g class="y-axis">']
    for tick, label in zip(ticks, labels, strict=True):
        y = ys(tick)
        parts.append(
            _line(left, y, right, y, "grid") + _text(left - 4, y + 4, label, "tick", "end")
        )
    return [*parts, "</g>"]


def _frame(x_title: str, y_title: str, unit: str, box: Box, height: int) -> list[str]:
    """The x axis line and both axis titles (the y title, with its unit, along the left edge)."""
    left, top, right, bottom = box
    cy, y_title = (top + bottom) / 2, f"{y_title} ({unit})" if unit else y_title
    return [
        _line(left, bottom, right, bottom, "axis"),
        _text((left + right) / 2, height - 4, x_title, "axis-title x-title"),
        _text(12, cy, y_title, "axis-title y-title", extra=f' transform="rotate(-90 12 {_f(cy)})"'),
    ]


def _lines(
    points: Sequence[tuple[float, float] | None], cls: str, colour: str, name: str
) -> list[str]:
    """One ``<path>`` per run of consecutive values: a None breaks the line."""
    runs: list[list[tuple[float, float]]] = [[]]
    for point in points:
        runs.append([]) if point is None else runs[-1].append(point)
    return [
        f'<path class="line {cls}" data-series="{escape(name)}" fill="none" stroke="{colour}" '
        f'stroke-width="1.5" d="M' + " L".join(f"{_f(x)} {_f(y)}" for x, y in run) + '"/>'
        for run in runs
        if len(run) > 1
    ]


def _spread(n: int, step: float, label_width: float, must: set[int]) -> list[int]:
    """Which of ``n`` labels ``step`` apart to write so that none overlaps: every k-th one and
    those in ``must``, leaving out the k-th ones nearer than k to one in ``must``."""
    k = max(1, math.ceil((label_width + 4) / step)) if step > 0 else n
    chosen = set(must)
    chosen.update(i for i in range(0, n, k) if all(abs(i - m) >= k for m in must))
    return sorted(chosen)


def version_chart(
    series: Mapping[str, Sequence[tuple[str, float | None]]],
    *,
    title: str,
    y_label: str,
    unit: str = "",
    width: int = 640,
    height: int = 240,
    higher_is_better: bool | None = None,
) -> Markup:
    """Metrics across model versions: one line with labelled points per series."""
    versions = list(dict.fromkeys(v for points in series.values() for v, _ in points))
    data = {name: {v: _clean(x) for v, x in points} for name, points in series.items()}
    values = [x for d in data.values() for x in d.values() if x is not None]
    if not values:
        return _empty("version", title, width, height)
    names = list(series)
    ticks = nice_ticks(min(values), max(values), 5)
    labels = _tick_labels(ticks)
    legend, legend_h = _legend(names, width) if len(names) > 1 else ([], 0.0)
    left = 26 + max(text_width(s) for s in labels)
    top, right, bottom = 36 + legend_h, width - 16.0, height - 36.0
    band = (right - left) / len(versions)
    xs, ys = (
        _linear(-0.5, len(versions) - 0.5, left, right),
        _linear(ticks[0], ticks[-1], bottom, top),
    )
    body = _y_axis(ticks, labels, ys, left, right) + legend
    body += _frame("model version", y_label, unit, (left, top, right, bottom), height)
    if higher_is_better is not None:
        hint = "↑ higher is better" if higher_is_better else "↓ lower is better"
        body.append(_text(width - 4, 14, hint, "hint", "end", f' font-size="{SMALL:g}"'))
    many, n = len(versions) > 12, len(versions)
    shown = _spread(n, band, max(text_width(v) for v in versions) if many else 0, {0, n - 1})
    body.append('<g class="x-axis">')
    body += [_text(xs(j), bottom + 14, versions[j], "tick x-tick") for j in shown]
    body.append("</g>")
    small = max(abs(v) for v in values) <= 1  # metrics such as AUC: always three decimals
    label_width = text_width("-0.000", SMALL) * 1.5 if many else 0  # room for clamping at the ends
    for i, name in enumerate(names):
        cls, colour, column = f"series-{i}", _colour(i), [data[name].get(v) for v in versions]
        got = {j: x for j, x in enumerate(column) if x is not None}
        if not got:
            continue
        present = list(got)
        body += _lines(
            [None if x is None else (xs(j), ys(x)) for j, x in enumerate(column)], cls, colour, name
        )
        lo_j, hi_j = min(got, key=got.__getitem__), max(got, key=got.__getitem__)
        best = None if higher_is_better is None or i else (hi_j if higher_is_better else lo_j)
        must = {present[0], present[-1]} | ({lo_j, hi_j} if i == 0 else set())
        labelled = set(_spread(n, band, label_width, must))
        for j in present:
            x, y, value = xs(j), ys(got[j]), got[j]
            attrs = f' data-version="{escape(versions[j])}" data-series="{escape(name)}"'
            body.append(
                f'<circle class="point {cls}{" best" if j == best else ""}" cx="{_f(x)}" '
                f'cy="{_f(y)}" r="{4.5 if j == best else 3}" fill="{colour}"{attrs}/>'
            )
            if j in labelled:
                below = (i % 2 == 1 or (i == 0 and j == lo_j != hi_j)) and y + 14 < bottom - 2
                text = f"{value:.3f}" if small else format_value(value)
                half = text_width(text, SMALL) / 2
                x, y = min(max(x, left + half), width - half), y + 14 if below else y - 6
                extra = f' font-size="{SMALL:g}"{attrs}'
                body.append(_text(x, y, text, f"point-label {cls}", extra=extra))
    label = f"{title}: {', '.join(names)} across {len(versions)} model versions"
    return _svg("version", title, label, width, height, body)


def _utc(t: datetime) -> float:
    return (t.replace(tzinfo=UTC) if t.tzinfo is None else t).timestamp()


def time_chart(
    series: Mapping[str, Sequence[tuple[datetime, float | None]]],
    *,
    title: str,
    y_label: str,
    unit: str = "",
    width: int = 320,
    height: int = 160,
) -> Markup:
    """Small time series from zero, with the latest value written at the end of each line."""
    data = {
        name: sorted(((_utc(t), _clean(v)) for t, v in points), key=lambda p: p[0])
        for name, points in series.items()
    }
    values = [v for points in data.values() for _, v in points if v is not None]
    if not values:
        return _empty("time", title, width, height)
    names = list(data)
    times = [t for points in data.values() for t, _ in points]
    t0, t1 = min(times), max(times)
    if t1 - t0 < 60:
        t0, t1 = t0 - 30, t1 + 30
    ticks = nice_ticks(min(0.0, min(values)), max(values), 4)
    labels = _tick_labels(ticks)
    last = {
        n: next(((t, v) for t, v in reversed(p) if v is not None), None) for n, p in data.items()
    }
    latest = {name: point[1] for name, point in last.items() if point is not None}
    ends = {name: format_value(v, unit) for name, v in latest.items()}
    left = 26 + max(text_width(s) for s in labels)
    right = width - 8 - max(text_width(s, SMALL) + 4 for s in ends.values())
    legend, legend_h = _legend(names, width)
    top, bottom = 32 + legend_h + 6, height - 32.0
    xs, ys = _linear(t0, t1, left, right), _linear(ticks[0], ticks[-1], bottom, top)
    body = _y_axis(ticks, labels, ys, left, right) + legend
    body += _frame("time (UTC)", y_label, unit, (left, top, right, bottom), height)
    span = t1 - t0
    fmt = "%H:%M:%S" if span < 300 else "%H:%M" if span <= 86400 else "%m-%d %H:%M"
    most = max(2, min(6, int((right - left) / (text_width(fmt.replace("%", "0")) + 6))))
    step = next((s for s in _TIME_STEPS if span / s < most), 86400 * math.ceil(span / most / 86400))
    body.append('<g class="x-axis">')
    for k in range(math.ceil(t0 / step), math.floor(t1 / step) + 1):
        x, when = xs(k * step), datetime.fromtimestamp(k * step, UTC)
        body.append(
            _line(x, bottom, x, bottom + 3, "tick-mark")
            + _text(x, bottom + 14, when.strftime(fmt), "tick x-tick")
        )
    body.append("</g>")
    placed: list[float] = []
    for name in sorted(latest, key=lambda n: ys(latest[n])):  # top down, nudged apart
        y = max([ys(latest[name]) + 4] + [p + 12 for p in placed[-1:]])
        placed.append(y)
        i, x = names.index(name), xs((last[name] or (0.0, 0.0))[0]) + 4
        extra = f' font-size="{SMALL:g}" data-series="{escape(name)}"'
        body.append(_text(x, y, ends[name], f"end-label series-{i}", "start", extra))
    for i, name in enumerate(names):
        points = [None if v is None else (xs(t), ys(v)) for t, v in data[name]]
        body += _lines(points, f"series-{i}", _colour(i), name)
    label = ", ".join(f"{n} {ends.get(n, 'no value')}" for n in names)
    return _svg("time", title, f"{title}: {label}", width, height, body)


def _percent(share: float, digits: int = 0, space: bool = True) -> str:
    return f"{share * 100:.{digits}f}{' ' if space else ''}%"


def histogram_pair(
    bins: Sequence[str],
    reference: Sequence[float],
    live: Sequence[float],
    *,
    title: str,
    x_label: str,
    y_label: str = "share of rows",
    width: int = 640,
    height: int = 240,
) -> Markup:
    """Reference and live share of rows per bin as grouped bars."""
    if not len(bins) == len(reference) == len(live):
        raise ValueError(f"{len(bins)} bins, {len(reference)} reference and {len(live)} live")
    if not bins:
        return _empty("histogram", title, width, height)
    top_share = max([*reference, *live, 0.0])
    ticks = nice_ticks(0.0, top_share if top_share > 0 else 1.0, 5)
    digits = max(0, -math.floor(math.log10((ticks[1] - ticks[0]) * 100) + 1e-9))
    labels = [_percent(t, digits) for t in ticks]
    left = 26 + max(text_width(s) for s in labels)
    top, right, bottom = 36 + 14.0, width - 16.0, height - 36.0
    band = (right - left) / len(bins)
    bar, ys = band * 0.4, _linear(ticks[0], ticks[-1], bottom, top)
    body = _y_axis(ticks, labels, ys, left, right) + _legend(["reference", "live"], width)[0]
    shown = _spread(len(bins), band, max(text_width(b) for b in bins), {0, len(bins) - 1})
    body.append('<g class="x-axis">')
    body += [_text(left + (j + 0.5) * band, bottom + 14, bins[j], "tick x-tick") for j in shown]
    body.append("</g>")
    shares = [*reference, *live]
    formats = [(1, True), (0, True), (0, False)]
    fit = next(
        (f for f in formats if max(text_width(_percent(s, *f), 9) for s in shares) <= bar + 2),
        formats[-1],
    )
    for i, (name, column) in enumerate((("reference", reference), ("live", live))):
        body.append(f'<g class="bars series-{i}" data-series="{name}">')
        for j, share in enumerate(column):
            x, y = left + j * band + band * 0.1 + i * bar, ys(max(share, 0.0))
            attrs = f' data-bin="{escape(bins[j])}" data-series="{name}"'
            body.append(
                f'<rect class="bar series-{i}" x="{_f(x)}" y="{_f(y)}" width="{_f(bar)}" '
                f'height="{_f(bottom - y)}" fill="{_colour(i)}"{attrs}/>'
            )
            if len(bins) <= 12:
                text = _percent(share, *fit)
                body.append(
                    _text(x + bar / 2, y - 3, text, "bar-label", extra=f' font-size="9"{attrs}')
                )
        body.append("</g>")
    body += _frame(x_label, y_label, "", (left, top, right, bottom), height)
    label = f"{title}: reference and live share of rows in {len(bins)} bins of {x_label}"
    return _svg("histogram", title, label, width, height, body)


def bar_chart(
    items: Sequence[tuple[str, float]],
    *,
    title: str,
    x_label: str,
    thresholds: Mapping[str, float] = _NO_THRESHOLDS,
    width: int = 640,
    bar_height: int = 18,
) -> Markup:
    """Horizontal bars, coloured by the highest threshold each value reaches (value >= line)."""
    row = bar_height + 6
    height = int(36 + 14 + max(len(items), 1) * row + 36)
    if not items:
        return _empty("bar", title, width, height)
    lines = sorted(thresholds.items(), key=lambda kv: kv[1])
    values = [v for _, v in items]
    ticks = nice_ticks(min(0.0, *values), max([*values, *(t for _, t in lines)]), 5)
    texts = [format_value(v) for v in values]
    left = 8 + min(max(text_width(label) for label, _ in items), width * 0.4)
    right = width - 8 - max(text_width(t) + 4 for t in texts)
    top, bottom = 36 + 14.0, height - 36.0
    xs = _linear(ticks[0], ticks[-1], left, right)
    body = ['<g class="x-axis">']
    for tick, label in zip(ticks, _tick_labels(ticks), strict=True):
        x = xs(tick)
        body.append(_line(x, top, x, bottom, "grid") + _text(x, bottom + 14, label, "tick x-tick"))
    body.append("</g>")
    body.append(_text((left + right) / 2, height - 4, x_label, "axis-title x-title"))
    chars = int(left / (FONT_SIZE * 0.6)) - 1
    for k, ((label, value), text) in enumerate(zip(items, texts, strict=True)):
        level = sum(value >= t for _, t in lines)
        colour = LEVEL_COLOURS[min(level, len(LEVEL_COLOURS) - 1)]
        name = lines[level - 1][0] if level else "ok"
        y, x0, x1 = top + k * row + 3, xs(min(value, 0.0)), xs(max(value, 0.0))
        shown = label if len(label) <= chars else label[: max(chars - 1, 1)] + "…"
        body.append(
            f'<g class="item" data-label="{escape(label)}" data-level="{escape(name)}">'
            + _text(left - 6, y + bar_height / 2 + 4, shown, "item-label", "end")
            + f'<rect class="bar level-{min(level, 2)}" x="{_f(x0)}" y="{_f(y)}" '
            f'width="{_f(x1 - x0)}" height="{bar_height}" fill="{colour}"/>'
            + _text(x1 + 4, y + bar_height / 2 + 4, text, "bar-value", "start")
            + "</g>"
        )
    body.append(_line(xs(0), top, xs(0), bottom, "axis"))
    last_end = -math.inf
    for name, value in lines:
        x, text = xs(value), f"{name} {format_value(value)}"
        w = text_width(text, SMALL)
        y = top - 4 if x - w / 2 > last_end else top - 16
        last_end = max(last_end, x + w / 2) if y == top - 4 else last_end
        body.append(
            f'<g class="threshold" data-threshold="{escape(name)}">'
            + _line(x, top - 2, x, bottom, "threshold-line", ' stroke-dasharray="4 3"')
            + _text(x, y, text, "threshold-label", extra=f' font-size="{SMALL:g}"')
            + "</g>"
        )
    return _svg("bar", title, f"{title}: {len(items)} bars of {x_label}", width, height, body)
