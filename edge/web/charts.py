"""Line charts drawn on the server as inline SVG: no script, no CDN, readable on a phone.

Colours come from CSS classes (`series-<name>`), so the stylesheet themes them and the
Content-Security-Policy needs no inline styles.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from itertools import pairwise

from markupsafe import Markup, escape

WIDTH, HEIGHT = 400, 190
LEFT, RIGHT, TOP, BOTTOM = 36, 10, 10, 24
_HOUR = timedelta(hours=1)
_STEPS = [
    _HOUR,
    3 * _HOUR,
    6 * _HOUR,
    12 * _HOUR,
    24 * _HOUR,
    48 * _HOUR,
    7 * 24 * _HOUR,
    14 * 24 * _HOUR,
    28 * 24 * _HOUR,
    91 * 24 * _HOUR,
]


@dataclass(frozen=True, slots=True)
class Line:
    """One series: a CSS class suffix, a legend name and a value per time (None: gap)."""

    css: str
    name: str
    values: Sequence[float | None]


def y_scale(value: float, most: int = 5) -> tuple[float, float]:
    """(top, step) of a 0-based axis that holds `value` in at most `most` 1/2/5 x 10^n steps."""
    value = max(value, 1e-9)
    magnitude = 10 ** math.floor(math.log10(value / most))
    step = next(f * magnitude for f in (1, 2, 5, 10) if f * magnitude * most >= value)
    return math.ceil(value / step - 1e-9) * step, step


def time_ticks(
    start: datetime, end: datetime, local: Callable[[datetime], datetime], most: int = 6
) -> list[tuple[datetime, str]]:
    """Tick times aligned to local hours or midnights, with their labels."""
    span = end - start
    step = next(
        (s for s in _STEPS if span / s <= most), _STEPS[-1] * math.ceil(span / _STEPS[-1] / most)
    )
    first = local(start).replace(minute=0, second=0, microsecond=0)
    if step >= 24 * _HOUR:
        first = first.replace(hour=0)
        fmt = "%d %b"
    else:
        hours = int(step / _HOUR)
        first = first.replace(hour=first.hour - first.hour % hours)
        fmt = "%H:%M"
    ticks = []
    at = first
    while at <= end:
        if at >= start:
            ticks.append((at, at.strftime(fmt)))
        at += step
    return ticks


def line_chart(
    title: str,
    times: Sequence[datetime],
    lines: Sequence[Line],
    start: datetime,
    end: datetime,
    local: Callable[[datetime], datetime],
    y_max: float | None = None,
    unit: str = "%",
) -> Markup:
    """An SVG line chart of `lines` over [start, end]; y runs from 0 to `y_max` (or fits)."""
    known = [v for line in lines for v in line.values if v is not None]
    top, step = y_scale(y_max if y_max is not None else max(max(known, default=1.0), 1.0))
    span = max((end - start).total_seconds(), 1.0)
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def x(at: datetime) -> float:
        return LEFT + plot_w * (at - start).total_seconds() / span

    def y(value: float) -> float:
        return TOP + plot_h * (1 - min(max(value, 0.0), top) / top)

    parts = [
        f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
        f'aria-label="{escape(title)}" xmlns="http://www.w3.org/2000/svg">',
        f"<title>{escape(title)}</title>",
    ]
    ticks = round(top / step)
    for i in range(ticks + 1):
        value = step * i
        parts.append(
            f'<line class="grid" x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y(value):.1f}" '
            f'y2="{y(value):.1f}"/>'
            f'<text class="tick" x="{LEFT - 4}" y="{y(value) + 4:.1f}" text-anchor="end">'
            f"{_number(value, step)}{escape(unit) if i == ticks else ''}</text>"
        )
    for at, text in time_ticks(start, end, local):
        parts.append(
            f'<line class="grid" x1="{x(at):.1f}" x2="{x(at):.1f}" y1="{TOP}" '
            f'y2="{TOP + plot_h}"/>'
            f'<text class="tick" x="{x(at):.1f}" y="{HEIGHT - 6}" text-anchor="middle">'
            f"{escape(text)}</text>"
        )
    gap = _gap_limit(times)
    for line in lines:
        for segment in _segments(times, line.values, gap):
            points = [(x(at), y(v)) for at, v in segment]
            if len(points) == 1:
                px, py = points[0]
                parts.append(
                    f'<circle class="series-{line.css}" cx="{px:.1f}" cy="{py:.1f}" r="2.5"/>'
                )
            else:
                coords = " ".join(f"{px:.1f},{py:.1f}" for px, py in points)
                parts.append(f'<polyline class="series-{line.css}" points="{coords}"/>')
    if not known:
        parts.append(
            f'<text class="empty" x="{LEFT + plot_w / 2:.0f}" y="{TOP + plot_h / 2:.0f}" '
            'text-anchor="middle">no data in this range</text>'
        )
    parts.append("</svg>")
    return Markup("".join(parts))


def _number(value: float, step: float) -> str:
    decimals = max(0, -math.floor(math.log10(step))) if step < 1 else 0
    return f"{value:.{decimals}f}"


def _gap_limit(times: Sequence[datetime]) -> timedelta:
    """Points further apart than this are not joined (the device was off)."""
    if len(times) < 3:
        return timedelta.max
    steps = sorted(b - a for a, b in pairwise(times))
    return steps[len(steps) // 2] * 3


def _segments(
    times: Sequence[datetime], values: Sequence[float | None], gap: timedelta
) -> list[list[tuple[datetime, float]]]:
    segments: list[list[tuple[datetime, float]]] = []
    current: list[tuple[datetime, float]] = []
    for at, value in zip(times, values, strict=True):
        if value is None or (current and at - current[-1][0] > gap):
            if current:
                segments.append(current)
            current = []
        if value is not None:
            current.append((at, value))
    if current:
        segments.append(current)
    return segments
