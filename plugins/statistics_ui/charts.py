"""Inline SVG charts: no script, no font download, every text escaped."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from html import escape

from markupsafe import Markup

WIDTH, HEIGHT, PAD = 640, 150, 28


@dataclass(frozen=True)
class Series:
    """One line or set of bars of a chart, one value per day."""

    name: str
    color: str
    values: Sequence[float]
    bars: bool = False


def chart(title: str, days: Sequence[date], series: Sequence[Series]) -> Markup:
    """Return an SVG chart of some series over days (oldest first), each scaled to its own maximum."""
    inner_w, inner_h = WIDTH - 2 * PAD, HEIGHT - 2 * PAD
    step = inner_w / max(len(days), 1)
    parts = [
        f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" width="100%" role="img" '
        f'xmlns="http://www.w3.org/2000/svg"><title>{escape(title)}</title>',
        f'<line x1="{PAD}" y1="{HEIGHT - PAD}" x2="{WIDTH - PAD}" y2="{HEIGHT - PAD}" stroke="#999"/>',
    ]
    for n, line in enumerate(series):
        top = max((float(v) for v in line.values), default=0.0) or 1.0
        points = [(PAD + step * (i + 0.5), HEIGHT - PAD - inner_h * float(v) / top) for i, v in enumerate(line.values)]
        if line.bars:
            width = max(step * 0.6, 1.0)
            for x, y in points:
                parts.append(
                    f'<rect x="{x - width / 2:.1f}" y="{y:.1f}" width="{width:.1f}" '
                    f'height="{HEIGHT - PAD - y:.1f}" fill="{escape(line.color)}" opacity="0.75"/>'
                )
        elif points:
            path = " ".join(f"{x:.1f},{y:.1f}" for x, y in points)
            parts.append(f'<polyline points="{path}" fill="none" stroke="{escape(line.color)}" stroke-width="2"/>')
        label = f"{line.name} (max {top:,.0f})" if top != 1.0 else line.name
        parts.append(
            f'<text x="{PAD + n * 200}" y="16" font-size="12" fill="{escape(line.color)}">{escape(label)}</text>'
        )
    if days:
        parts.append(f'<text x="{PAD}" y="{HEIGHT - 8}" font-size="11" fill="#555">{days[0].isoformat()}</text>')
        parts.append(
            f'<text x="{WIDTH - PAD}" y="{HEIGHT - 8}" font-size="11" fill="#555" text-anchor="end">'
            f"{days[-1].isoformat()}</text>"
        )
    parts.append("</svg>")
    return Markup("".join(parts))
