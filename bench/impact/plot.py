"""The trade-off: p99 latency ratio (best loaded window / best quiet window) against backfill throughput,
one point per guard setting, as an ASCII plot for the terminal and an SVG for bench/results/."""

from __future__ import annotations

from html import escape
from typing import Any

W, H, PAD = 640, 400, 60


def _usable(points: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [p for p in points if p.get("snapshots_per_s") is not None and p.get("p99_ratio") is not None]


def _bounds(points: list[dict[str, Any]]) -> tuple[float, float]:
    xmax = max(p["snapshots_per_s"] for p in points) * 1.1 or 1.0
    ymax = max(max(p["p99_ratio"] for p in points), 2.0) * 1.1
    return xmax, ymax


def ascii_plot(points: list[dict[str, Any]], width: int = 60, height: int = 16) -> str:
    """Rows of text: y = p99 ratio, x = backfill snap/s; the 2x target as a line of dots; points as letters."""
    pts = _usable(points)
    if not pts:
        return "(no trade-off points)"
    xmax, ymax = _bounds(pts)
    grid = [[" "] * width for _ in range(height)]
    target_row = height - 1 - round(2.0 / ymax * (height - 1))
    for c in range(width):
        grid[target_row][c] = "."
    legend = []
    for i, p in enumerate(pts):
        mark = chr(ord("A") + i)
        col = min(width - 1, round(p["snapshots_per_s"] / xmax * (width - 1)))
        row = height - 1 - round(p["p99_ratio"] / ymax * (height - 1))
        grid[row][col] = mark
        legend.append(f"  {mark} = {p['label']}: {p['snapshots_per_s']:.1f} snap/s, p99 x{p['p99_ratio']:.2f}")
    lines = []
    for r, row in enumerate(grid):
        y = (height - 1 - r) / (height - 1) * ymax
        lines.append(f"{y:5.1f} |" + "".join(row))
    lines.append("      +" + "-" * width)
    lines.append(f"       0{'backfill snapshots/s under the read load'.center(width - 12)}{xmax:.0f}")
    lines.append("  p99 ratio vs quiet (y); dotted line: the 2x target")
    return "\n".join(lines + legend)


def svg(points: list[dict[str, Any]], title: str) -> str:
    """A standalone SVG scatter plot with the 2x line."""
    pts = _usable(points)
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" font-size="12">',
        f'<rect width="{W}" height="{H}" fill="white"/>',
        f'<text x="{W / 2}" y="20" text-anchor="middle" font-size="14">{escape(title)}</text>',
        f'<line x1="{PAD}" y1="{H - PAD}" x2="{W - PAD}" y2="{H - PAD}" stroke="black"/>',
        f'<line x1="{PAD}" y1="{PAD}" x2="{PAD}" y2="{H - PAD}" stroke="black"/>',
        f'<text x="{W / 2}" y="{H - 15}" text-anchor="middle">backfill snapshots/s under the read load</text>',
        f'<text x="15" y="{H / 2}" transform="rotate(-90 15 {H / 2})" text-anchor="middle">'
        "p99 ratio (best loaded / best quiet)</text>",
    ]
    if not pts:
        out.append(f'<text x="{W / 2}" y="{H / 2}" text-anchor="middle">no points</text></svg>')
        return "\n".join(out)
    xmax, ymax = _bounds(pts)

    def x(v: float) -> float:
        return PAD + v / xmax * (W - 2 * PAD)

    def y(v: float) -> float:
        return H - PAD - v / ymax * (H - 2 * PAD)

    for k in range(5):
        xv, yv = xmax * k / 4, ymax * k / 4
        out.append(f'<text x="{x(xv):.0f}" y="{H - PAD + 15}" text-anchor="middle">{xv:.0f}</text>')
        out.append(f'<text x="{PAD - 5}" y="{y(yv) + 4:.0f}" text-anchor="end">{yv:.1f}</text>')
    out.append(
        f'<line x1="{PAD}" y1="{y(2.0):.1f}" x2="{W - PAD}" y2="{y(2.0):.1f}" stroke="red" stroke-dasharray="4 4"/>'
    )
    out.append(f'<text x="{W - PAD}" y="{y(2.0) - 4:.1f}" text-anchor="end" fill="red">2x target</text>')
    for p in pts:
        cx, cy = x(p["snapshots_per_s"]), y(p["p99_ratio"])
        out.append(f'<circle cx="{cx:.1f}" cy="{cy:.1f}" r="5" fill="steelblue"/>')
        out.append(f'<text x="{cx + 8:.1f}" y="{cy - 6:.1f}">{escape(p["label"])}</text>')
    out.append("</svg>")
    return "\n".join(out)
