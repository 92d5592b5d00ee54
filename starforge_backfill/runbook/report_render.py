"""Render a job report (the dict `report.collect` builds) as Markdown and as self-contained HTML.

The HTML has inline CSS and an inline SVG chart of throughput (snapshots/s) and failed snapshots over time;
it loads nothing from anywhere (no scripts, fonts, images or links), so it can be archived and opened
offline. Every value is escaped. No click or rich here.
"""

from __future__ import annotations

import html as _html
import json
from collections.abc import Iterable, Sequence
from typing import Any

from starforge_backfill.runbook import report_guard

_CSS = """
body{font:14px/1.45 -apple-system,Segoe UI,Helvetica,Arial,sans-serif;color:#1f2328;margin:2rem auto;max-width:1000px;
padding:0 1rem}
h1{font-size:1.6rem;margin-bottom:.2rem}h2{font-size:1.2rem;border-bottom:1px solid #d0d7de;padding-bottom:.2rem;
margin-top:2rem}
table{border-collapse:collapse;margin:.5rem 0;width:100%}th,td{border:1px solid #d0d7de;padding:.3rem .5rem;
text-align:left;vertical-align:top}th{background:#f6f8fa}code{font-family:ui-monospace,Menlo,Consolas,monospace;
font-size:.9em}
.pass{color:#1a7f37;font-weight:600}.fail{color:#cf222e;font-weight:600}.muted{color:#656d76}
.chart{border:1px solid #d0d7de;border-radius:6px;padding:.5rem;background:#fff}
""".strip()


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, dict | list):
        return json.dumps(value, sort_keys=True, default=str)
    return str(value)


def _verdict(passed: Any) -> str:
    return "pass" if passed else ("-" if passed is None else "FAIL")


def _duration(seconds: float) -> str:
    seconds = float(seconds)
    if seconds < 60:
        return f"{seconds:g}s" if seconds == int(seconds) else f"{seconds:.1f}s"
    minutes, sec = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{sec:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def _sections(data: dict[str, Any]) -> list[tuple[str, Sequence[str], list[list[Any]], str | None]]:
    """The report's tables: (title, header, rows, note) shared by both renderings."""
    job = data["job"]
    pre = data["preflight"]
    out: list[tuple[str, Sequence[str], list[list[Any]], str | None]] = []
    fields = (
        "job_id",
        "mode",
        "status",
        "status_reason",
        "owner",
        "from_ts",
        "to_ts",
        "total_count",
        "processed_count",
        "error_count",
        "placeholder_count",
        "batch_size",
        "concurrency",
        "reason",
        "created_at",
        "started_at",
        "finished_at",
        "last_checkpoint",
        "rows_written",
        "tool_version",
        "config_fingerprint",
    )
    job_rows = [[f, job.get(f)] for f in fields if f in job]
    job_rows.append(["database", data.get("database") or "-"])
    budget = data.get("error_budget")
    if budget:
        job_rows.append(["error budget", ("OVER: " if budget["over"] else "within: ") + budget["line"]])
    note = None if data.get("config_matches_job") else "the current config's fingerprint differs from the job's"
    out.append(("Job", ("field", "value"), job_rows, note))
    out.append(
        (
            "Preflight: backup and approvals",
            ("item", "value"),
            [
                ["preflight recorded", pre.get("recorded")],
                ["preflight result", _verdict(pre.get("passed")) if pre.get("recorded") else "-"],
                ["preflight at", pre.get("at")],
                ["backup id", pre.get("backup_id")],
                ["approvals", pre.get("approvals")],
            ],
            None if pre.get("recorded") else "no preflight recorded for this config fingerprint",
        )
    )
    out.append(
        (
            "Steps run (gates of this config fingerprint)",
            ("step", "result", "at", "job", "summary"),
            [[s["kind"], _verdict(s["passed"]), s["at"], s["job_id"], s["summary"]] for s in data["steps"]],
            None if data["steps"] else "no gating step recorded for this config fingerprint",
        )
    )
    ver = data.get("verification")
    out.append(
        (
            "Verification",
            ("check", "result", "summary"),
            [[c["name"], _verdict(c["passed"]), c["summary"]] for c in (ver or {}).get("checks", [])],
            None if ver else "no verify.json in the job folder (run `starforge-backfill verify --job-id ...`)",
        )
    )
    can = data.get("canary")
    if can:
        rows = [["outcome", can.get("outcome")], ["observe_s", can.get("observe_s")]]
        rows += [["reason", r] for r in can.get("reasons") or []] + [["warning", w] for w in can.get("warnings") or []]
        out.append(("Canary", ("item", "value"), rows, None))
    tp = data["throughput"]
    out.append(
        (
            "Throughput",
            ("item", "value"),
            [
                ["batches", tp.get("batches")],
                ["snapshots handled", tp.get("snapshots")],
                ["failed", tp.get("failed")],
                ["average rate (snapshots/s, pauses included)", tp.get("average_rate_per_s")],
                ["peak rate (snapshots/s)", tp.get("peak_rate_per_s")],
                ["bucket width", _duration(tp["bucket_s"]) if tp.get("bucket_s") else "-"],
            ],
            None,
        )
    )
    out.append(
        (
            "Gates and throttle events",
            ("at", "kind", "message"),
            [[e["at"], e["kind"], e["message"]] for e in data["gate_events"]],
            None if data["gate_events"] else "none",
        )
    )
    errs = data["errors_by_type"]
    out.append(
        (
            "Errors by type",
            ("error type", "snapshots"),
            [[k, v] for k, v in sorted(errs.items(), key=lambda kv: (-int(kv[1]), kv[0]))],
            None if errs else "no failed snapshot",
        )
    )
    if data["error_messages"]:
        out.append(
            (
                "Most frequent error messages (snapshots of the job's range, earlier attempts included)",
                ("error type", "count", "message", "example snapshot"),
                [[m["error_type"], m["errors"], m["message"], m["example_snapshot"]] for m in data["error_messages"]],
                None,
            )
        )
    q = data["quarantine"]
    out.append(
        (
            f"Quarantined snapshots ({q['count']})",
            ("snapshot", "error type", "message", "file"),
            [[s.get("snapshot_id"), s.get("error_type"), s.get("message"), s["file"]] for s in q["snapshots"][:200]],
            f"redacted payloads under {q['folder']}" if q["count"] else "none",
        )
    )
    ph = data["placeholders"]
    out.append(
        (
            f"Placeholder catalog rows created ({ph['count']})",
            ("kind", "id"),
            [[p["kind"], p["id"]] for p in ph["rows"][:500]],
            "replace them with authoritative catalog data (runbook: post-backfill tasks)" if ph["count"] else "none",
        )
    )
    out.append(
        (
            "Artifacts",
            ("file", "bytes"),
            [[a["file"], a["bytes"]] for a in data["artifacts"]],
            "sha256 of every file, this report included, in manifest.json",
        )
    )
    return out


def _md_cell(value: Any) -> str:
    return _fmt(value).replace("|", "\\|").replace("\n", " ")


def markdown(job_id: str, data: dict[str, Any], meta: dict[str, Any]) -> str:
    """The report as GitHub-flavoured Markdown."""
    job = data["job"]
    lines = [
        f"# Backfill report: {job_id}",
        "",
        f"Status **{job.get('status')}**, mode {job.get('mode')}. Generated {meta['generated_at']} by "
        f"starforge-backfill {meta['tool_version']} (report schema_version {meta['schema_version']}).",
        "",
    ]
    for title, header, rows, note in _sections(data):
        lines += [f"## {title}", ""]
        if rows:
            lines.append("| " + " | ".join(header) + " |")
            lines.append("|" + "|".join("---" for _ in header) + "|")
            lines += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in rows]
            lines.append("")
        if note:
            lines += [f"_{note}_", ""]
    series = data["throughput"]["series"]
    if series:
        lines += [
            "## Throughput over time",
            "",
            "| t | snapshots/s | failed |",
            "|---|---|---|",
            *[f"| +{_duration(p['t_s'])} | {p['rate_per_s']} | {p['failed']} |" for p in series],
            "",
        ]
    if data.get("guard") is not None:
        lines += report_guard.markdown(data["guard"])
    return "\n".join(lines)


def _nice_max(value: float) -> float:
    """A round axis maximum >= value."""
    if value <= 0:
        return 1.0
    magnitude = 10 ** (len(str(int(value))) - 1) if value >= 1 else 1
    for step in (1, 2, 2.5, 5, 10):
        top = step * magnitude
        if top >= value:
            return float(top)
    return float(10 * magnitude)


def svg_chart(series: list[dict[str, Any]], bucket_s: float | None, width: int = 900, height: int = 280) -> str:
    """An inline SVG: throughput (snapshots/s, blue line) and failed snapshots per bucket (red bars)."""
    e = _html.escape
    left, right, top, bottom = 60, 60, 30, 40
    pw, ph = width - left - right, height - top - bottom
    parts = [
        f'<svg viewBox="0 0 {width} {height}" width="100%" role="img" aria-labelledby="chart-title">',
        '<title id="chart-title">Throughput (snapshots/s) and failed snapshots over time</title>',
        f'<rect x="{left}" y="{top}" width="{pw}" height="{ph}" fill="#fbfcfd" stroke="#d0d7de"/>',
    ]
    if not series or not bucket_s:
        parts.append(
            f'<text x="{width / 2}" y="{height / 2}" text-anchor="middle" fill="#656d76">no batches recorded</text>'
        )
        return "\n".join([*parts, "</svg>"])
    n = len(series)
    span = n * bucket_s
    rate_max = _nice_max(max(p["rate_per_s"] for p in series))
    fail_max = _nice_max(max(p["failed"] for p in series))

    def x(t: float) -> float:
        return left + pw * (t / span)

    for i in range(5):  # horizontal grid and both y axes
        frac = i / 4
        y = top + ph * (1 - frac)
        parts.append(f'<line x1="{left}" y1="{y:.1f}" x2="{left + pw}" y2="{y:.1f}" stroke="#eaeef2"/>')
        parts.append(
            f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end" font-size="11" fill="#0969da">'
            f"{rate_max * frac:g}</text>"
        )
        parts.append(
            f'<text x="{left + pw + 6}" y="{y + 4:.1f}" font-size="11" fill="#cf222e">{fail_max * frac:g}</text>'
        )
    for i in range(6):  # x ticks
        t = span * i / 5
        parts.append(
            f'<text x="{x(t):.1f}" y="{top + ph + 16}" text-anchor="middle" font-size="11" fill="#656d76">'
            f"+{e(_duration(round(t, 1)))}</text>"
        )
    bar_w = max(pw / n * 0.6, 1.0)
    for p in series:
        if p["failed"]:
            h = ph * p["failed"] / fail_max
            cx = x(p["t_s"] + bucket_s / 2)
            parts.append(
                f'<rect x="{cx - bar_w / 2:.1f}" y="{top + ph - h:.1f}" width="{bar_w:.1f}" height="{h:.1f}" '
                f'fill="#cf222e" fill-opacity="0.6"><title>{p["failed"]} failed at +{e(_duration(p["t_s"]))}'
                "</title></rect>"
            )
    points = [(x(p["t_s"] + bucket_s / 2), top + ph * (1 - p["rate_per_s"] / rate_max), p) for p in series]
    path = " ".join(f"{px:.1f},{py:.1f}" for px, py, _ in points)
    parts.append(f'<polyline points="{path}" fill="none" stroke="#0969da" stroke-width="2"/>')
    for px, py, p in points:
        parts.append(
            f'<circle cx="{px:.1f}" cy="{py:.1f}" r="2.5" fill="#0969da"><title>{p["rate_per_s"]} snapshots/s '
            f"at +{e(_duration(p['t_s']))} ({p['batches']} batches)</title></circle>"
        )
    parts += [
        f'<text x="{left}" y="{top - 10}" font-size="12" fill="#0969da">snapshots/s</text>',
        f'<text x="{left + pw}" y="{top - 10}" font-size="12" text-anchor="end" fill="#cf222e">failed per '
        f"{e(_duration(bucket_s))}</text>",
        f'<text x="{left + pw / 2}" y="{height - 6}" font-size="11" text-anchor="middle" fill="#656d76">'
        "time since the first batch started</text>",
        "</svg>",
    ]
    return "\n".join(parts)


def _table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    e = _html.escape
    head = "".join(f"<th>{e(h)}</th>" for h in header)
    body = []
    for row in rows:
        cells = []
        for c in row:
            text = _fmt(c)
            cls = {"pass": ' class="pass"', "FAIL": ' class="fail"'}.get(text, "")
            cells.append(f"<td{cls}>{e(text)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def html(job_id: str, data: dict[str, Any], meta: dict[str, Any]) -> str:
    """The report as one self-contained HTML page (inline CSS and SVG, no external resources)."""
    e = _html.escape
    job = data["job"]
    tp = data["throughput"]
    body = [
        f"<h1>Backfill report: <code>{e(job_id)}</code></h1>",
        f'<p class="muted">Status <strong>{e(_fmt(job.get("status")))}</strong>, mode {e(_fmt(job.get("mode")))}. '
        f"Generated {e(meta['generated_at'])} by starforge-backfill {e(meta['tool_version'])} "
        f"(report schema_version {e(str(meta['schema_version']))}).</p>",
        "<h2>Throughput and errors over time</h2>",
        f'<div class="chart">{svg_chart(tp["series"], tp.get("bucket_s"))}</div>',
        *(report_guard.html(data["guard"], tp) if data.get("guard") is not None else []),
    ]
    for title, header, rows, note in _sections(data):
        body.append(f"<h2>{e(title)}</h2>")
        if rows:
            body.append(_table(header, rows))
        if note:
            body.append(f'<p class="muted">{e(note)}</p>')
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>Backfill report {e(job_id)}</title><style>{_CSS}</style></head>\n<body>\n"
        + "\n".join(body)
        + "\n</body></html>\n"
    )
