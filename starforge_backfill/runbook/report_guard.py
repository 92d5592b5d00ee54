"""The report's section "Did we hurt production?": the production guard's readings over the job's time.

`collect` reads `guard_readings` and the job's guard events; `svg` draws one inline SVG in the style of the
throughput chart, three panels on one time axis (probe latency vs its baseline; other active sessions and
replica lag; the backfill's throughput), with the guard's hold periods shaded across all three; `markdown`
and `html` give the section with its one-line answer. report_render only calls these.
"""

from __future__ import annotations

import datetime as dt
import html as _html
import math
from typing import Any

import psycopg

from starforge_backfill import templates

CHART_POINTS = 300  # readings drawn and tabulated at most (a 10-hour job has ~7000 at 5 s)


def collect(
    conn: psycopg.Connection[Any], job_id: str, start: dt.datetime | None, events: list[dict[str, Any]]
) -> dict[str, Any]:
    """Readings as (t_s since `start`, or since the first reading) series, hold periods and the answer."""
    rows = templates.fetch_all(conn, "guard/readings.sql", {"job_id": job_id})
    disabled = any(e["kind"] == "guard_disabled" for e in events)
    yields = sum(1 for e in events if e["kind"] == "yielded")
    if not rows:
        return {
            "enabled": not disabled,
            "readings": [],
            "readings_total": 0,
            "holds": [],
            "yields": yields,
            "answer": _answer(None, [], yields, disabled),
        }
    t0 = start or rows[0]["taken_at"]
    series = [
        {
            "t_s": round((r["taken_at"] - t0).total_seconds(), 3),
            "probe_ms": r["probe_ms"],
            "baseline_ms": r["baseline_ms"],
            "active_sessions": r["active_sessions"],
            "replica_lag_s": r["replica_lag_s"],
            "blocked_by_backfill": r["blocked_by_backfill"],
            "state": r["state"],
            "reason": r["reason"],
        }
        for r in rows
    ]
    holds = _holds(series)
    shown = _thin(series, CHART_POINTS)
    return {
        "enabled": not disabled,
        "readings": shown,
        "readings_total": len(series),
        "holds": holds,
        "yields": yields,
        "answer": _answer(series, holds, yields, disabled),
    }


def _holds(series: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The hold periods: from a hold reading to the next reading that is not a hold."""
    holds: list[dict[str, Any]] = []
    for i, p in enumerate(series):
        if p["state"] != "hold":
            continue
        end = series[i + 1]["t_s"] if i + 1 < len(series) else p["t_s"]
        if holds and holds[-1]["to_s"] >= p["t_s"] - 1e-9:
            holds[-1]["to_s"] = end
        else:
            holds.append({"from_s": p["t_s"], "to_s": end, "reason": p["reason"]})
    return holds


def _thin(series: list[dict[str, Any]], most: int) -> list[dict[str, Any]]:
    """At most about `most` readings for the page: evenly spaced, plus every change of state (the answer and
    the hold periods are computed from all of them)."""
    if len(series) <= most:
        return series
    step = len(series) / most
    keep = {int(i * step) for i in range(most)} | {len(series) - 1}
    keep |= {i for i in range(1, len(series)) if series[i]["state"] != series[i - 1]["state"]}
    return [series[i] for i in sorted(keep)]


def _answer(series: list[dict[str, Any]] | None, holds: list[dict[str, Any]], yields: int, disabled: bool) -> str:
    if disabled:
        return "Unknown: the production guard was off for this job (throttle.enabled: false)."
    if not series:
        return "No guard readings recorded for this job."
    ratios = [p["probe_ms"] / p["baseline_ms"] for p in series if p["probe_ms"] and p["baseline_ms"]]
    worst = max(ratios) if ratios else None
    held = sum(h["to_s"] - h["from_s"] for h in holds)
    parts = [f"probe latency peaked at {worst:.1f}x its baseline" if worst is not None else "no probe latency"]
    parts.append(f"{len(holds)} hold(s) totalling {held:.0f}s" if holds else "no hold")
    parts.append(
        f"{yields} batch(es) cut short because they blocked a production session"
        if yields
        else "no batch blocked a production session"
    )
    return "; ".join(parts) + f" ({len(series)} readings)."


def _scale(values: list[float]) -> float:
    """A round axis maximum >= every value."""
    top = max([v for v in values if v is not None] or [0.0])
    if top <= 0:
        return 1.0
    mag = 10.0 ** math.floor(math.log10(top))
    return next(step * mag for step in (1, 2, 2.5, 5, 10) if step * mag >= top)


def svg(guard: dict[str, Any], throughput: dict[str, Any], width: int = 900) -> str:
    """Three panels on one time axis; hold periods shaded; every point has a tooltip."""
    e = _html.escape
    series = guard.get("readings") or []
    tp = throughput.get("series") or []
    bucket = throughput.get("bucket_s") or 0
    panel_h, gap, left, right, top = 90, 26, 60, 60, 24
    height = top + 3 * panel_h + 2 * gap + 34
    pw = width - left - right
    parts = [
        f'<svg viewBox="0 0 {width} {height}" width="100%" role="img" aria-labelledby="guard-title">',
        '<title id="guard-title">Probe latency vs baseline, other active sessions and replica lag, and throughput'
        " over the job's time; guard holds shaded</title>",
    ]
    if not series:
        parts.append(
            f'<text x="{width / 2}" y="{height / 2}" text-anchor="middle" fill="#656d76">no guard readings</text>'
        )
        return "\n".join([*parts, "</svg>"])
    span = max([p["t_s"] for p in series] + [p["t_s"] + bucket for p in tp] + [1.0])

    def x(t: float) -> float:
        return left + pw * max(0.0, t) / span

    ys = [top + i * (panel_h + gap) for i in range(3)]
    for h in guard.get("holds") or []:
        w = max(x(h["to_s"]) - x(h["from_s"]), 2.0)
        parts.append(
            f'<rect x="{x(h["from_s"]):.1f}" y="{top}" width="{w:.1f}" height="{3 * panel_h + 2 * gap}"'
            f' fill="#d29922" fill-opacity="0.18"><title>hold +{h["from_s"]:.0f}s..+{h["to_s"]:.0f}s: '
            f"{e(str(h['reason']))}</title></rect>"
        )
    panels = [
        ("probe ms (orange) vs baseline (grey)", [("probe_ms", "#bc4c00", series), ("baseline_ms", "#8c959f", series)]),
        (
            "other active sessions (purple), replica lag s (green)",
            [("active_sessions", "#8250df", series), ("replica_lag_s", "#1a7f37", series)],
        ),
        ("backfill snapshots/s (blue)", [("rate_per_s", "#0969da", [p | {"t_s": p["t_s"] + bucket / 2} for p in tp])]),
    ]
    for y0, (label, lines) in zip(ys, panels, strict=True):
        parts.append(f'<rect x="{left}" y="{y0}" width="{pw}" height="{panel_h}" fill="none" stroke="#d0d7de"/>')
        parts.append(f'<text x="{left}" y="{y0 - 6}" font-size="12" fill="#24292f">{e(label)}</text>')
        vmax = _scale([float(p[k]) for k, _, pts in lines for p in pts if p.get(k) is not None])
        parts.append(
            f'<text x="{left - 6}" y="{y0 + 10}" text-anchor="end" font-size="11" fill="#656d76">{vmax:g}</text>'
        )
        parts.append(
            f'<text x="{left - 6}" y="{y0 + panel_h}" text-anchor="end" font-size="11" fill="#656d76">0</text>'
        )
        for key, colour, pts in lines:
            coords = [
                (x(p["t_s"]), y0 + panel_h * (1 - float(p[key]) / vmax), p) for p in pts if p.get(key) is not None
            ]
            if not coords:
                continue
            dash = ' stroke-dasharray="4 3"' if key == "baseline_ms" else ""
            path = " ".join(f"{cx:.1f},{cy:.1f}" for cx, cy, _ in coords)
            parts.append(f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="1.8"{dash}/>')
            for cx, cy, p in coords:
                parts.append(
                    f'<circle cx="{cx:.1f}" cy="{cy:.1f}" r="2" fill="{colour}"><title>{key} {p[key]} at '
                    f"+{p['t_s']:.0f}s{(' (' + e(str(p['state'])) + ')') if p.get('state') else ''}</title></circle>"
                )
    for i in range(6):
        t = span * i / 5
        parts.append(
            f'<text x="{x(t):.1f}" y="{height - 14}" text-anchor="middle" font-size="11" fill="#656d76">'
            f"+{t:.0f}s</text>"
        )
    parts.append("</svg>")
    return "\n".join(parts)


def markdown(guard: dict[str, Any]) -> list[str]:
    """The section's Markdown lines: the answer, the holds, the readings (sampled)."""
    lines = ["## Did we hurt production?", "", guard["answer"], ""]
    if guard["holds"]:
        lines += ["| hold from | to | why |", "|---|---|---|"]
        lines += [f"| +{h['from_s']:.0f}s | +{h['to_s']:.0f}s | {h['reason']} |" for h in guard["holds"]]
        lines.append("")
    if guard["readings"]:
        if guard.get("readings_total", 0) > len(guard["readings"]):
            lines += [
                f"_{len(guard['readings'])} of {guard['readings_total']} readings shown (every state change kept)._",
                "",
            ]
        lines += [
            "| t | probe ms | baseline ms | active sessions | replica lag s | state |",
            "|---|---|---|---|---|---|",
        ]
        lines += [
            f"| +{p['t_s']:.0f}s | {p['probe_ms']} | {p['baseline_ms']} | {p['active_sessions']} | "
            f"{'' if p['replica_lag_s'] is None else p['replica_lag_s']} | {p['state']} |"
            for p in guard["readings"]
        ]
        lines.append("")
    return lines


def html(guard: dict[str, Any], throughput: dict[str, Any]) -> list[str]:
    """The section's HTML: the answer and the chart."""
    e = _html.escape
    return [
        "<h2>Did we hurt production?</h2>",
        f"<p><strong>{e(guard['answer'])}</strong></p>",
        f'<div class="chart">{svg(guard, throughput)}</div>',
    ]
