"""Charts for the console's analytics pages, drawn as inline SVG on the server.

No charting library, no script and no CDN: the console's Content-Security-Policy allows
neither inline scripts nor inline styles, and the pages must work offline. Each chart is a
small ``<svg role="img">`` whose ``<title>`` and ``<desc>`` say what it shows (the numbers
included) for screen readers; colours come from classes that ``console.css`` fills, so the
palette lives in one place. Every value goes into the markup through
:meth:`markupsafe.Markup.format`, which escapes it: labels can be a customer's words.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, timedelta

from markupsafe import Markup

FONT = 12  # user units; the SVGs scale with the page, so this is the size at full width
LABEL_CHARS = 24  # longer labels are cut with an ellipsis (the full text is in <title>)


@dataclass(frozen=True)
class Bar:
    """One bar of a horizontal bar chart.

    Attributes:
        label: What the bar is (left of it).
        value: Its length, on the chart's scale.
        text: The value as shown right of the bar, e.g. ``"3 · 25%"``.
        tone: The CSS colour class suffix (``bar-<tone>``).
        maximum: This bar's own full length (a track behind it); the chart's otherwise.
    """

    label: str
    value: float
    text: str
    tone: str = "accent"
    maximum: float | None = None


@dataclass(frozen=True)
class Series:
    """One layer of a stacked bar chart: its name, colour and a value per day."""

    name: str
    tone: str
    values: Sequence[int]


def _n(value: float) -> str:
    """A coordinate: short, and never ``-0``."""
    text = f"{value:.1f}".rstrip("0").rstrip(".")
    return "0" if text in {"-0", ""} else text


def _cut(label: str, limit: int = LABEL_CHARS) -> str:
    return label if len(label) <= limit else label[: limit - 1] + "…"


def _open(ident: str, width: int, height: int, title: str, desc: str, css: str) -> Markup:
    """The opening tag with its accessible name (``<title>``) and description."""
    return Markup(
        '<svg class="chart {css}" role="img" viewBox="0 0 {w} {h}" width="{w}" height="{h}" '
        'aria-labelledby="{ident}-title {ident}-desc" xmlns="http://www.w3.org/2000/svg" '
        'font-size="{font}"><title id="{ident}-title">{title}</title>'
        '<desc id="{ident}-desc">{desc}</desc>'
    ).format(css=css, w=width, h=height, ident=ident, font=FONT, title=title, desc=desc)


_CLOSE = Markup("</svg>")


def _join(parts: list[Markup]) -> Markup:
    return Markup("").join(parts)


def short_day(day: date) -> str:
    """``3 Nov``: axis labels."""
    return f"{day.day} {day:%b}"


def days_between(first: date, last: date) -> list[date]:
    """Every day from ``first`` to ``last``, both included."""
    return [first + timedelta(days=n) for n in range((last - first).days + 1)]


def hbar_chart(bars: Sequence[Bar], *, ident: str, title: str, maximum: float | None = None,
               width: int = 560, label_width: int = 170) -> Markup:
    """Horizontal bars, one per row: label, bar (over a light track) and value.

    ``maximum`` fixes the scale (5 for CSAT); by default the longest bar fills the row.
    A ``label_width`` of 0 leaves the labels out (the page names the bar itself).
    """
    value_width = 110
    row, thickness = 30, 18
    plot = width - label_width - value_width
    scale = maximum if maximum is not None else max((b.value for b in bars), default=0.0)
    height = max(row * len(bars), row)
    desc = "; ".join(f"{b.label}: {b.text}" for b in bars) or "no data"
    parts = [_open(ident, width, height, title, desc, "chart-hbar")]
    for index, bar in enumerate(bars):
        top = index * row + (row - thickness) / 2
        middle = index * row + row / 2
        full = bar.maximum if bar.maximum is not None else scale
        track = plot * (full / scale) if scale > 0 else plot
        length = plot * (bar.value / scale) if scale > 0 else 0.0
        length = max(length, 2.0) if bar.value > 0 else 0.0  # tiny values stay visible
        parts.append(Markup('<g class="chart-row"><title>{}: {}</title>').format(
            bar.label, bar.text))
        if label_width:
            parts.append(Markup(
                '<text class="chart-label" x="{x}" y="{y}" text-anchor="end" '
                'dominant-baseline="middle">{label}</text>'
            ).format(x=label_width - 8, y=_n(middle), label=_cut(bar.label)))
        parts.append(Markup(
            '<rect class="bar-track" x="{x}" y="{y}" width="{track}" height="{h}" rx="3"/>'
            '<rect class="bar bar-{tone}" x="{x}" y="{y}" width="{length}" height="{h}" rx="3"/>'
            '<text class="chart-value" x="{vx}" y="{my}" dominant-baseline="middle">{text}</text>'
            "</g>"
        ).format(x=label_width, y=_n(top), track=_n(track), h=thickness, tone=bar.tone,
                 length=_n(length), vx=_n(label_width + max(track, length) + 6),
                 my=_n(middle), text=bar.text))
    parts.append(_CLOSE)
    return _join(parts)


def spark_bars(counts: Mapping[str, int], days: Sequence[date], *, ident: str,
               title: str, width: int = 180, height: int = 32) -> Markup:
    """One thin bar per day (a sparkline): the shape of a count over the range."""
    values = [int(counts.get(day.isoformat(), 0)) for day in days]
    peak = max(values, default=0)
    step = width / max(len(values), 1)
    gap = 1.0 if step >= 3 else 0.0
    busy = [f"{short_day(d)}: {v}" for d, v in zip(days, values, strict=True) if v]
    desc = ("per day, " + ", ".join(busy)) if busy else "nothing in this range"
    parts = [
        _open(ident, width, height, title, desc, "chart-spark"),
        Markup('<line class="chart-axis" x1="0" y1="{y}" x2="{w}" y2="{y}"/>').format(
            y=_n(height - 0.5), w=width),
    ]
    for index, value in enumerate(values):
        if not value:
            continue
        tall = max((height - 2) * value / peak, 2.0)
        parts.append(Markup(
            '<rect class="bar bar-accent" x="{x}" y="{y}" width="{w}" height="{h}"/>'
        ).format(x=_n(index * step), y=_n(height - tall), w=_n(max(step - gap, 0.5)),
                 h=_n(tall)))
    parts.append(_CLOSE)
    return _join(parts)


def _day_ticks(days: Sequence[date]) -> list[int]:
    """Indexes of the days that get an axis label: first, last and a few between."""
    if not days:
        return []
    count = len(days)
    wanted = min(count, 6)
    if wanted == 1:
        return [0]
    return sorted({round(i * (count - 1) / (wanted - 1)) for i in range(wanted)})


def _y_ticks(peak: int) -> list[int]:
    """Whole-number gridlines: 0, the peak, and the middle when there is room for one."""
    if peak <= 0:
        return [0]
    return sorted({0, peak // 2, peak}) if peak >= 2 else [0, peak]


def _gridline(left: int, right: float, y: float, label: str) -> Markup:
    return Markup(
        '<line class="chart-grid" x1="{left}" y1="{y}" x2="{right}" y2="{y}"/>'
        '<text class="chart-tick" x="{tx}" y="{y}" text-anchor="end" '
        'dominant-baseline="middle">{label}</text>'
    ).format(left=left, right=_n(right), y=_n(y), tx=left - 6, label=label)


def _x_label(x: float, y: float, anchor: str, day: date) -> Markup:
    return Markup(
        '<text class="chart-tick" x="{x}" y="{y}" text-anchor="{anchor}">{label}</text>'
    ).format(x=_n(x), y=_n(y), anchor=anchor, label=short_day(day))


def stacked_day_bars(days: Sequence[date], series: Sequence[Series], *, ident: str,
                     title: str, width: int = 640, height: int = 200) -> Markup:
    """A bar per day, each made of the series stacked in order (first at the bottom)."""
    left, right, top, bottom = 34, 8, 8, 22
    plot_w, plot_h = width - left - right, height - top - bottom
    totals = [sum(s.values[i] for s in series) for i in range(len(days))]
    peak = max(totals, default=0)
    step = plot_w / max(len(days), 1)
    thickness = max(min(step * 0.7, 28.0), 1.0)
    described = [
        f"{short_day(day)}: " + ", ".join(f"{s.values[i]} {s.name}" for s in series)
        for i, day in enumerate(days) if totals[i]
    ]
    desc = "; ".join(described) if described else "nothing in this range"
    parts = [_open(ident, width, height, title, desc, "chart-stacked")]
    for tick in _y_ticks(peak):
        y = top + plot_h - (plot_h * tick / peak if peak else 0)
        parts.append(_gridline(left, width - right, y, str(tick)))
    for index, day in enumerate(days):
        if not totals[index]:
            continue
        x = left + index * step + (step - thickness) / 2
        base = float(top + plot_h)
        tip = ", ".join(f"{s.values[index]} {s.name}" for s in series)
        parts.append(Markup("<g><title>{}: {}</title>").format(short_day(day), tip))
        for layer in series:
            value = layer.values[index]
            if not value:
                continue
            tall = plot_h * value / peak
            base -= tall
            parts.append(Markup(
                '<rect class="bar bar-{tone}" x="{x}" y="{y}" width="{w}" height="{h}"/>'
            ).format(tone=layer.tone, x=_n(x), y=_n(base), w=_n(thickness), h=_n(tall)))
        parts.append(Markup("</g>"))
    last = len(days) - 1
    for index in _day_ticks(days):
        if last and index == 0:
            parts.append(_x_label(left, height - 6, "start", days[index]))
        elif last and index == last:
            parts.append(_x_label(width - right, height - 6, "end", days[index]))
        else:
            parts.append(_x_label(left + index * step + step / 2, height - 6, "middle",
                                  days[index]))
    parts.append(_CLOSE)
    return _join(parts)


@dataclass(frozen=True)
class Zone:
    """A horizontal band behind a line chart (e.g. the at-risk scores)."""

    low: float
    high: float
    tone: str
    name: str


def line_chart(points: Sequence[tuple[date, float]], *, first: date, last: date, ident: str,
               title: str, zones: Sequence[Zone] = (), low: float = 0.0, high: float = 100.0,
               width: int = 640, height: int = 220) -> Markup:
    """A value over days (``first`` to ``last``), over optional coloured zones.

    Points are joined in day order; a single point is drawn as a dot.
    """
    left, right, top, bottom = 34, 12, 8, 22
    plot_w, plot_h = width - left - right, height - top - bottom
    span = max((last - first).days, 1)

    def x_of(day: date) -> float:
        return left + plot_w * min(max((day - first).days, 0), span) / span

    def y_of(value: float) -> float:
        clipped = min(max(value, low), high)
        return top + plot_h * (1 - (clipped - low) / (high - low))

    ordered = sorted(points)
    desc = ("; ".join(f"{short_day(d)}: {v:g}" for d, v in ordered)
            if ordered else "no data in this range")
    parts = [_open(ident, width, height, title, desc, "chart-line")]
    for zone in zones:
        parts.append(Markup(
            '<rect class="zone zone-{tone}" x="{x}" y="{y}" width="{w}" height="{h}">'
            "<title>{name}: {low:g}–{high:g}</title></rect>"
        ).format(tone=zone.tone, x=left, y=_n(y_of(zone.high)), w=plot_w,
                 h=_n(y_of(zone.low) - y_of(zone.high)), name=zone.name, low=zone.low,
                 high=zone.high))
    for tick in sorted({low, high, *(z.low for z in zones), *(z.high for z in zones)}):
        parts.append(_gridline(left, width - right, y_of(tick), f"{tick:g}"))
    middle = first + (last - first) / 2
    parts += [_x_label(x_of(first), height - 6, "start", first),
              _x_label(x_of(middle), height - 6, "middle", middle),
              _x_label(x_of(last), height - 6, "end", last)]
    if len(ordered) > 1:
        path = " ".join(f"{_n(x_of(d))},{_n(y_of(v))}" for d, v in ordered)
        parts.append(Markup('<polyline class="chart-stroke" points="{}" fill="none"/>').format(
            path))
    for day, value in ordered:
        parts.append(Markup(
            '<circle class="chart-dot" cx="{x}" cy="{y}" r="3.5"><title>{day}: {value:g}</title>'
            "</circle>"
        ).format(x=_n(x_of(day)), y=_n(y_of(value)), day=short_day(day), value=value))
    parts.append(_CLOSE)
    return _join(parts)
