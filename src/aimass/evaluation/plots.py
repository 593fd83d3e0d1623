"""Inline SVG plots for the model card: line/point charts and horizontal bars.

In the console's chart style (``aimass.console.charts``, which the evaluation center may not
import): one ``<svg class="chart chart-KIND" role="img">`` with a ``<title>``, Okabe-Ito
colours, axis titles and tick labels as real text, no scripts and nothing fetched, so the
card opens the same from the report dir, an MLflow artifact view or the console. The output
is deterministic (same data, same bytes).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from markupsafe import Markup, escape

PALETTE = ("#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#000000")
GRID, AXIS, REFERENCE = "#d0d0d0", "#808080", "#999999"
Point = tuple[float, float]


def _f(x: float) -> str:
    return f"{x:.1f}"


def _label(value: float) -> str:
    if value == 0:
        return "0"
    size = abs(value)
    if size >= 1000 or size < 0.01:
        return f"{value:.2g}"
    return f"{value:.3g}"


def ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    """About ``count`` round values (1, 2 or 5 x 10^k apart) from ``lo`` to ``hi``."""
    if lo > hi:
        lo, hi = hi, lo
    if lo == hi:
        lo, hi = (lo - 1, hi + 1) if lo == 0 else (lo - abs(lo) * 0.1, hi + abs(hi) * 0.1)
    raw = (hi - lo) / max(count - 1, 1)
    mag = 10.0 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 5, 10) if m * mag >= raw)
    first, last = math.floor(lo / step + 1e-9), math.ceil(hi / step - 1e-9)
    digits = max(0, -math.floor(math.log10(step)))
    return [round(k * step, digits) + 0.0 for k in range(first, last + 1)]


def _text(x: float, y: float, text: str, anchor: str = "middle", extra: str = "") -> str:
    return f'<text x="{_f(x)}" y="{_f(y)}" text-anchor="{anchor}"{extra}>{escape(text)}</text>'


def _svg(kind: str, title: str, width: int, height: int, body: list[str]) -> Markup:
    head = (
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart chart-{kind}" '
        f'viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img" '
        f'aria-label="{escape(title)}" font-family="sans-serif" font-size="11" '
        f'fill="currentColor"><title>{escape(title)}</title>'
        + _text(4, 14, title, "start", ' font-size="12" font-weight="600"')
    )
    return Markup(head + "".join(body) + "</svg>")


def empty(kind: str, title: str, why: str, width: int = 360, height: int = 80) -> Markup:
    """A placeholder chart that says why there is nothing to draw."""
    return _svg(kind, title, width, height, [_text(width / 2, 50, why, extra=' fill="#808080"')])


def xy_chart(
    series: Sequence[tuple[str, Sequence[Point]]],
    *,
    title: str,
    x_label: str,
    y_label: str,
    x_range: tuple[float, float] | None = None,
    y_range: tuple[float, float] | None = None,
    errors: Sequence[Sequence[float]] | None = None,
    reference: str = "",
    markers: bool = True,
    width: int = 360,
    height: int = 300,
) -> Markup:
    """Lines through each series' points (x, y), with a legend when there are several.

    Args:
        errors: per series, one half-width per point, drawn as a vertical whisker.
        reference: ``"diagonal"`` (y = x, perfect calibration; chance ROC) or ``"zero"``
            (y = 0, no residual), drawn dashed under the data.
    """
    finite = [(x, y) for _, pts in series for x, y in pts if math.isfinite(x) and math.isfinite(y)]
    if not finite:
        return empty("xy", title, "no points to draw", width)
    spread = [0.0] * len(finite)
    if errors:
        spread = [e for errs in errors for e in errs]
    xs = [p[0] for p in finite]
    ys = [p[1] for p in finite] + [y + e for (_, y), e in zip(finite, spread, strict=False)]
    ys += [y - e for (_, y), e in zip(finite, spread, strict=False)]
    if reference == "zero":
        ys.append(0.0)
    x_ticks = ticks(*(x_range or (min(xs), max(xs))))
    y_ticks = ticks(*(y_range or (min(ys), max(ys))))
    legend_h = 16 * math.ceil(len(series) / 4) if len(series) > 1 else 0
    left, top, right, bottom = 52.0, 26.0 + legend_h, width - 12.0, height - 40.0

    def sx(x: float) -> float:
        return left + (x - x_ticks[0]) / (x_ticks[-1] - x_ticks[0]) * (right - left)

    def sy(y: float) -> float:
        return bottom - (y - y_ticks[0]) / (y_ticks[-1] - y_ticks[0]) * (bottom - top)

    body = []
    for t in y_ticks:
        body.append(
            f'<line x1="{_f(left)}" y1="{_f(sy(t))}" x2="{_f(right)}" y2="{_f(sy(t))}" stroke="{GRID}"/>'
        )
        body.append(_text(left - 4, sy(t) + 4, _label(t), "end"))
    for t in x_ticks:
        body.append(_text(sx(t), bottom + 14, _label(t)))
    body.append(
        f'<rect x="{_f(left)}" y="{_f(top)}" width="{_f(right - left)}" '
        f'height="{_f(bottom - top)}" fill="none" stroke="{AXIS}"/>'
    )
    body.append(_text((left + right) / 2, height - 8, x_label, extra=' class="axis-title"'))
    body.append(
        _text(
            12,
            (top + bottom) / 2,
            y_label,
            extra=f' class="axis-title" transform="rotate(-90 12 {_f((top + bottom) / 2)})"',
        )
    )
    dashed = f'stroke="{REFERENCE}" stroke-dasharray="4 3" fill="none"'
    if reference == "diagonal":
        lo = max(x_ticks[0], y_ticks[0])
        hi = min(x_ticks[-1], y_ticks[-1])
        body.append(
            f'<line class="reference" x1="{_f(sx(lo))}" y1="{_f(sy(lo))}" '
            f'x2="{_f(sx(hi))}" y2="{_f(sy(hi))}" {dashed}/>'
        )
    elif reference == "zero":
        body.append(
            f'<line class="reference" x1="{_f(left)}" y1="{_f(sy(0))}" '
            f'x2="{_f(right)}" y2="{_f(sy(0))}" {dashed}/>'
        )
    for i, (name, pts) in enumerate(series):
        colour = PALETTE[i % len(PALETTE)]
        shown = [(x, y) for x, y in pts if math.isfinite(x) and math.isfinite(y)]
        if len(series) > 1:
            lx = left + (i % 4) * (right - left) / 4
            body.append(
                f'<rect x="{_f(lx)}" y="{20 + 16 * (i // 4)}" width="10" height="10" fill="{colour}"/>'
            )
            body.append(_text(lx + 14, 29 + 16 * (i // 4), name[:24], "start"))
        path = " ".join(f"{_f(sx(x))},{_f(sy(y))}" for x, y in shown)
        body.append(
            f'<polyline class="series" data-series="{escape(name)}" points="{path}" '
            f'fill="none" stroke="{colour}" stroke-width="1.8"/>'
        )
        for j, (x, y) in enumerate(shown):
            if errors and j < len(errors[i]) and errors[i][j] > 0:
                e = errors[i][j]
                body.append(
                    f'<line x1="{_f(sx(x))}" y1="{_f(sy(y - e))}" x2="{_f(sx(x))}" '
                    f'y2="{_f(sy(y + e))}" stroke="{colour}"/>'
                )
            if markers:
                body.append(f'<circle cx="{_f(sx(x))}" cy="{_f(sy(y))}" r="2.5" fill="{colour}"/>')
    return _svg("xy", title, width, height, body)


def bar_chart(
    bars: Sequence[tuple[str, float, float]],
    *,
    title: str,
    x_label: str,
    width: int = 560,
    bar_height: int = 18,
) -> Markup:
    """Horizontal bars (label, value, spread), a whisker of ± spread, the value written beside."""
    if not bars:
        return empty("bars", title, "no values to draw", width)
    label_w = min(200, 8 + 6.6 * max(len(label) for label, _, _ in bars))
    lo = min(0.0, *(v - s for _, v, s in bars))
    hi = max(0.0, *(v + s for _, v, s in bars))
    scale = ticks(lo, hi)
    left, right, top = label_w, width - 60.0, 26.0
    height = int(top + len(bars) * (bar_height + 4) + 40)
    bottom = height - 40.0

    def sx(x: float) -> float:
        return left + (x - scale[0]) / (scale[-1] - scale[0]) * (right - left)

    body = []
    for t in scale:
        body.append(
            f'<line x1="{_f(sx(t))}" y1="{_f(top)}" x2="{_f(sx(t))}" y2="{_f(bottom)}" stroke="{GRID}"/>'
        )
        body.append(_text(sx(t), bottom + 14, _label(t)))
    body.append(_text((left + right) / 2, height - 8, x_label, extra=' class="axis-title"'))
    for i, (label, value, spread) in enumerate(bars):
        y = top + i * (bar_height + 4)
        x0, x1 = sorted((sx(0.0), sx(value)))
        body.append(_text(left - 6, y + bar_height * 0.7, label, "end"))
        body.append(
            f'<rect class="bar" data-label="{escape(label)}" x="{_f(x0)}" y="{_f(y)}" '
            f'width="{_f(max(x1 - x0, 0.5))}" height="{bar_height}" fill="{PALETTE[0]}"/>'
        )
        if spread > 0:
            mid = y + bar_height / 2
            body.append(
                f'<line x1="{_f(sx(value - spread))}" y1="{_f(mid)}" '
                f'x2="{_f(sx(value + spread))}" y2="{_f(mid)}" stroke="#000"/>'
            )
        body.append(
            _text(max(x1, sx(value + spread)) + 4, y + bar_height * 0.7, _label(value), "start")
        )
    body.append(
        f'<line x1="{_f(sx(0))}" y1="{_f(top)}" x2="{_f(sx(0))}" y2="{_f(bottom)}" stroke="{AXIS}"/>'
    )
    return _svg("bars", title, width, height, body)
