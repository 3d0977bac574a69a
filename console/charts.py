"""Charts drawn on the server as inline SVG: no chart library, no script, nothing fetched.

Three shapes cover the reports: vertical bars (optionally stacked series), horizontal bars
for rankings, and lines. Every chart is a `Markup` string sized by its viewBox, so it
scales to the page on a phone or a desktop, and carries <title> tooltips for its values.
"""

from __future__ import annotations

from markupsafe import Markup, escape

PALETTE = ("#c0392b", "#2b6cb0", "#2f855a", "#b7791f", "#6b46c1", "#319795", "#d53f8c", "#718096")
W, H = 720, 300
LEFT, RIGHT, TOP, BOTTOM = 56, 16, 16, 56


def _nice_max(value: float) -> float:
    if value <= 0:
        return 1.0
    magnitude = 10 ** (len(str(int(value))) - 1)
    for step in (1, 2, 2.5, 5, 10):
        if value <= step * magnitude:
            return step * magnitude
    return 10 * magnitude


def _fmt(v: float) -> str:
    return f"{v:,.0f}" if abs(v) >= 100 or float(v).is_integer() else f"{v:,.1f}"


def _frame(top: float, parts: list[str], title: str) -> str:
    axis = []
    for i in range(5):
        value = top * i / 4
        y = H - BOTTOM - (H - TOP - BOTTOM) * i / 4
        axis.append(f'<line x1="{LEFT}" x2="{W - RIGHT}" y1="{y:.1f}" y2="{y:.1f}" stroke="#e2e8f0"/>'
                    f'<text x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end" font-size="11" fill="#616e7c">{_fmt(value)}</text>')
    return (f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {W} {H}" role="img" aria-label="{escape(title)}">'
            f'<title>{escape(title)}</title>{"".join(axis)}{"".join(parts)}</svg>')


def _legend(names: list[str]) -> str:
    out, x = [], LEFT
    for i, name in enumerate(names):
        out.append(f'<rect x="{x}" y="{H - 16}" width="10" height="10" fill="{PALETTE[i % len(PALETTE)]}"/>'
                   f'<text x="{x + 14}" y="{H - 7}" font-size="11">{escape(name)}</text>')
        x += 24 + 12 * len(name)
    return "".join(out)


def bars(categories: list[str], series: list[tuple[str, list[float]]], title: str, stacked: bool = True) -> Markup:
    """Vertical bars: one group per category, one bar (or one stacked segment) per series."""
    if not categories or not series:
        return Markup('<p class="muted">暂无数据。</p>')
    totals = [sum(s[1][i] for s in series) for i in range(len(categories))] if stacked else \
        [max(s[1][i] for s in series) for i in range(len(categories))]
    top = _nice_max(max(totals))
    plot_w, plot_h = W - LEFT - RIGHT, H - TOP - BOTTOM
    slot = plot_w / len(categories)
    bar_w = slot * 0.7 if stacked else slot * 0.8 / len(series)
    parts = []
    for i, label in enumerate(categories):
        x0 = LEFT + slot * i + slot * 0.15 if stacked else LEFT + slot * i + slot * 0.1
        base = 0.0
        for j, (name, values) in enumerate(series):
            v = values[i]
            h = plot_h * v / top
            x = x0 if stacked else x0 + bar_w * j
            y = H - BOTTOM - (plot_h * base / top if stacked else 0) - h
            if v:
                parts.append(f'<rect x="{x:.1f}" y="{y:.1f}" width="{bar_w:.1f}" height="{h:.1f}" '
                             f'fill="{PALETTE[j % len(PALETTE)]}"><title>{escape(label)} · {escape(name)}：{_fmt(v)}</title></rect>')
            if stacked:
                base += v
        parts.append(f'<text x="{LEFT + slot * (i + 0.5):.1f}" y="{H - BOTTOM + 14}" text-anchor="middle" '
                     f'font-size="11">{escape(label[:6])}</text>')
    if len(series) > 1:
        parts.append(_legend([s[0] for s in series]))
    return Markup(_frame(top, parts, title))


def lines(categories: list[str], series: list[tuple[str, list[float | None]]], title: str) -> Markup:
    """Lines over categories (e.g. months); a None value leaves a gap."""
    values = [v for _, vs in series for v in vs if v is not None]
    if not categories or not values:
        return Markup('<p class="muted">暂无数据。</p>')
    top = _nice_max(max(values))
    plot_w, plot_h = W - LEFT - RIGHT, H - TOP - BOTTOM
    step = plot_w / max(1, len(categories))
    parts = []
    for j, (name, vs) in enumerate(series):
        color = PALETTE[j % len(PALETTE)]
        points = []
        for i, v in enumerate(vs):
            if v is None:
                continue
            x, y = LEFT + step * (i + 0.5), H - BOTTOM - plot_h * v / top
            points.append(f"{x:.1f},{y:.1f}")
            parts.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3" fill="{color}"><title>{escape(categories[i])} · '
                         f'{escape(name)}：{_fmt(v)}</title></circle>')
        if len(points) > 1:
            parts.append(f'<polyline fill="none" stroke="{color}" stroke-width="2" points="{" ".join(points)}"/>')
    for i, label in enumerate(categories):
        parts.append(f'<text x="{LEFT + step * (i + 0.5):.1f}" y="{H - BOTTOM + 14}" text-anchor="middle" font-size="11">{escape(label)}</text>')
    parts.append(_legend([s[0] for s in series]))
    return Markup(_frame(top, parts, title))


def hbars(labels: list[str], values: list[float], title: str) -> Markup:
    """Horizontal bars, longest first as given (rankings)."""
    if not labels:
        return Markup('<p class="muted">暂无数据。</p>')
    top = _nice_max(max(values))
    row_h, left = 24, 150
    height = TOP + row_h * len(labels) + 8
    parts = []
    for i, (label, v) in enumerate(zip(labels, values)):
        y = TOP + row_h * i
        w = (W - left - 60) * v / top
        parts.append(f'<text x="{left - 6}" y="{y + 15}" text-anchor="end" font-size="12">{escape(label[:12])}</text>'
                     f'<rect x="{left}" y="{y + 3}" width="{w:.1f}" height="{row_h - 8}" fill="{PALETTE[0]}">'
                     f'<title>{escape(label)}：{_fmt(v)}</title></rect>'
                     f'<text x="{left + w + 4:.1f}" y="{y + 15}" font-size="11">{_fmt(v)}</text>')
    return Markup(f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {W} {height}" role="img" '
                  f'aria-label="{escape(title)}"><title>{escape(title)}</title>{"".join(parts)}</svg>')
