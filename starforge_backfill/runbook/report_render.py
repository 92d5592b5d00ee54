"""Render a job report (the dict `report.collect` builds) as Markdown and as self-contained HTML.

The HTML has inline CSS and an inline SVG chart of throughput (snapshots/s) and failed snapshots over time;
it loads nothing from anywhere (no scripts, fonts, images or stylesheet links), so it can be archived and
opened offline; the only anchors are the quarantine table's `s3://` copies (`Link` cells), never fetched.
Every value is escaped. No click or rich here.
"""

from __future__ import annotations

import datetime as dt
import html as _html
import re
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


_ISO_TIME = re.compile(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}(:?\d{2})?)?")


def when(text: str) -> str:
    """An ISO time to the second, in UTC ("2024-01-01T00:00:05Z"); any other text unchanged."""
    if not _ISO_TIME.fullmatch(text):
        return text
    try:
        t = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return text
    if t.tzinfo is None:
        return t.replace(microsecond=0).isoformat()
    return t.astimezone(dt.UTC).replace(microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ")


def _fmt(value: Any) -> str:
    """A cell's text: times to the second, mappings as `key: value` lists, lists comma-separated (a list of
    mappings one per line). Lines are separated by newlines (HTML: <br>, Markdown: `; `)."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, dt.datetime):
        return when(value.isoformat())
    if isinstance(value, dict):
        return "\n".join(f"{k}: {_inline(v)}" for k, v in sorted(value.items())) or "-"
    if isinstance(value, list | tuple):
        if any(isinstance(v, dict) for v in value):
            return "\n".join(_inline(v) for v in value) or "-"
        return ", ".join(_inline(v) for v in value) or "-"
    if isinstance(value, float):
        return f"{value:g}"
    return when(str(value))


def _inline(value: Any) -> str:
    """A nested value on one line: `{a: 1, b: [x, y]}`."""
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_inline(v)}" for k, v in sorted(value.items())) + "}"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_inline(v) for v in value) + "]"
    return _fmt(value)


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


Section = tuple[str, Sequence[str], list[list[Any]], str | None]

_JOB_FIELDS = (
    "job_id",
    "mode",
    "status",
    "status_reason",
    "owner",
    "operator",
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
    "finalized_at",
    "finalized_by",
    "last_checkpoint",
    "rows_written",
    "tool_version",
    "config_fingerprint",
)
_JOB_LABELS = {
    "processed_count": "processed_count (job row)",
    "error_count": "error_count (job row)",
    "placeholder_count": "placeholder_count (job row)",
    "concurrency": "concurrency (most workers allowed; see Workers over time for those used)",
}


def _job(data: dict[str, Any]) -> Section:
    job = data["job"]
    rows = [[_JOB_LABELS.get(f, f), job.get(f)] for f in _JOB_FIELDS if f in job]
    workers = data.get("workers") or {}
    if workers.get("most") is not None:
        rows.append(["workers used (most at once)", workers["most"]])
    rows.append(["database", data.get("database") or "-"])
    budget = data.get("error_budget")
    if budget:
        rows.append(["error budget", ("OVER: " if budget["over"] else "within: ") + budget["line"]])
    notes = [] if data.get("config_matches_job") else ["the current config's fingerprint differs from the job's"]
    agrees = data.get("job_row_agrees") or {}
    notes += [f"the job row's {k} count disagrees with its {k} as defined below" for k, ok in agrees.items() if not ok]
    return ("Job", ("field", "value"), rows, "; ".join(notes) or None)


def _definitions(data: dict[str, Any]) -> Section:
    counts = data.get("counts") or {}
    rows = [[name, counts.get(name), text] for name, text in (data.get("definitions") or {}).items()]
    return (
        "Counts and their definitions",
        ("count", "this job", "definition"),
        rows,
        "every count in this report means what this table says; other jobs over the range are counted the same "
        "way in the next table (in_selection and not_taken: this job only)",
    )


def _range_jobs(data: dict[str, Any]) -> Section:
    rows = [
        [
            j["job_id"],
            j["mode"],
            j["when"],
            j["status"],
            j["created_at"],
            j["handled"],
            j["processed"],
            j["failed"],
            j["placeholders"],
            j.get("operator"),
        ]
        for j in data.get("range_jobs") or []
    ]
    others = len(rows) - 1
    note = (
        f"{others} other job(s) over this range: their rows are theirs (a canary's placeholders, a reprocess's "
        "errors); the verification below covers the range as it stands after all of them"
        if others > 0
        else "no other job over this range"
    )
    header = ("job", "mode", "when", "status", "created", "handled", "processed", "failed", "placeholders", "operator")
    return ("Jobs over this range", header, rows, note)


def _preflight(data: dict[str, Any]) -> list[Section]:
    pre = data["preflight"]
    out: list[Section] = [
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
    ]
    if pre.get("checks"):
        out.append(("Preflight items", _CHECK_HEADER, [_check_cells(c) for c in pre["checks"]], None))
    return out


_CHECK_HEADER = ("item", "result", "detail", "value", "threshold", "note")


def _check_cells(c: dict[str, Any]) -> list[Any]:
    note = "; ".join(x for x in (c.get("warning"), c.get("note")) if x) or None
    return [c["name"], c.get("result"), c.get("detail"), c.get("value"), c.get("threshold"), note]


def _canary(data: dict[str, Any]) -> list[Section]:
    can = data.get("canary")
    if not can:
        return []
    sel = can.get("selection") or {}
    rows = [
        ["outcome", can.get("outcome")],
        ["canary job", can.get("job_id")],
        ["selection", {k: sel.get(k) for k in ("how", "users", "from_ts", "to_ts")}],
        ["concurrency", can.get("concurrency")],
        ["observed (s)", can.get("observed_s")],
        ["observation asked (s)", can.get("observe_s")],
        ["sampled every (s)", can.get("sample_every_s")],
        ["samples taken", can.get("samples")],
        ["run", can.get("run")],
    ]
    rows += [["reason", r] for r in can.get("reasons") or []] + [["warning", w] for w in can.get("warnings") or []]
    out: list[Section] = [("Canary", ("item", "value"), rows, None)]
    if can.get("checks"):
        out.append(("Canary gates", _CHECK_HEADER, [_check_cells(c) for c in can["checks"]], None))
    return out


def _timeline(data: dict[str, Any]) -> list[Section]:
    bands = data.get("bands") or []
    workers = data.get("workers") or {}
    series = workers.get("series") or []
    return [
        (
            "Workers over time",
            ("at", "workers live"),
            [[w["at"], w["workers"]] for w in series],
            f"the job allows {workers.get('concurrency')}; a production run ramps up to it while the guard is healthy"
            if series
            else "no worker_start/worker_end events recorded for this job",
        ),
        (
            "Pauses, holds and interruptions",
            ("from", "to", "lasted", "kind", "what"),
            [[b["from"], b["to"], _duration(b["seconds"]), b["kind"], b["label"]] for b in bands],
            "shaded on the chart" if bands else "none",
        ),
    ]


def _manifest(data: dict[str, Any]) -> Section:
    man = data.get("manifest") or {"files": [], "only_in_manifest_json": []}
    return (
        "Manifest (sha256)",
        ("file", "bytes", "sha256"),
        [[f["file"], f["bytes"], f["sha256"]] for f in man["files"]],
        "every file of the job folder, the gate artifacts it relied on (gates/) included; "
        f"{', '.join(man['only_in_manifest_json'])} cannot hold their own hash: manifest.json, written after "
        "them, lists them too (`report --verify-manifest` re-hashes all)",
    )


def _sections(data: dict[str, Any]) -> list[Section]:
    """The report's tables: (title, header, rows, note) shared by both renderings."""
    out: list[Section] = [_job(data), _definitions(data), _range_jobs(data), *_preflight(data)]
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
            f"verify.json of {_fmt(ver.get('generated_at'))}: it checks the range as it stood then, after every job "
            "over it (see Jobs over this range), so its counts are the range's, not this job's"
            if ver
            else "no verify.json in the job folder (run `starforge-backfill verify --job-id ...`)",
        )
    )
    out += _canary(data)
    tp = data["throughput"]
    out.append(
        (
            "Throughput",
            ("item", "value"),
            [
                ["batches", tp.get("batches")],
                ["snapshots handled", tp.get("snapshots")],
                ["failed (per batch, as committed)", tp.get("failed")],
                ["average rate (snapshots/s, pauses included)", tp.get("average_rate_per_s")],
                ["peak rate (snapshots/s)", tp.get("peak_rate_per_s")],
                ["bucket width", _duration(tp["bucket_s"]) if tp.get("bucket_s") else "-"],
            ],
            None,
        )
    )
    out += _timeline(data)
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
            "Failed snapshots by error type (this job's etl_errors rows)",
            ("error type", "snapshots"),
            [[k, v] for k, v in sorted(errs.items(), key=lambda kv: (-int(kv[1]), kv[0]))],
            None if errs else "no failed snapshot",
        )
    )
    if data["error_messages"]:
        out.append(
            (
                "Most frequent error messages (this job's etl_errors rows)",
                ("error type", "count", "message", "example snapshot"),
                [[m["error_type"], m["errors"], m["message"], m["example_snapshot"]] for m in data["error_messages"]],
                None,
            )
        )
    out.append(_quarantine_section(data["quarantine"]))
    ph = data["placeholders"]
    out.append(
        (
            f"Placeholder catalog rows created by this job ({ph['count']})",
            ("kind", "id"),
            [[p["kind"], p["id"]] for p in ph["rows"][:500]],
            "replace them with authoritative catalog data (runbook: post-backfill tasks); other jobs' placeholders "
            "are counted in Jobs over this range"
            if ph["count"]
            else "none",
        )
    )
    out.append(_manifest(data))
    return out


class Link(str):
    """A cell that links to `url` (an s3:// object): `[text](url)` in Markdown, `<a href>` in HTML."""

    url: str

    def __new__(cls, text: str, url: str) -> Link:
        obj = super().__new__(cls, text)
        obj.url = url
        return obj


def _quarantine_section(q: dict[str, Any]) -> tuple[str, Sequence[str], list[list[Any]], str | None]:
    """Quarantined snapshots: each one's local copy and its S3 copy (a link) or why it is local only."""
    rows = [
        [
            s.get("snapshot_id"),
            s.get("error_type"),
            s.get("message"),
            s["file"],
            Link(s["s3_url"], s["s3_url"]) if s.get("s3_url") else f"local only ({s.get('local_only_reason')})",
        ]
        for s in q["snapshots"][:200]
    ]
    note = "none"
    if q["count"]:
        note = f"redacted payloads under {q['folder']}"
        if q.get("s3_url"):
            note += f"; {q['uploaded']} copied to {q['s3_url']}, {q['local_only']} local only"
            if q["local_only"]:
                note += " (upload them with `starforge-backfill quarantine push --job-id ...`)"
    header = ("snapshot", "error type", "message", "file", "S3 copy")
    return (f"Quarantined snapshots ({q['count']})", header, rows, note)


def _md_cell(value: Any) -> str:
    if isinstance(value, Link):
        return f"[{_md_cell(str(value))}](<{value.url}>)"
    return _fmt(value).replace("|", "\\|").replace("\n", "; ")


def _status(job: dict[str, Any]) -> str:
    """`done`, or `done, finalized <when> by <who>` once `finalize` ran."""
    status = str(job.get("status"))
    if job.get("finalized_at"):
        return f"{status}, finalized {job['finalized_at']} by {job.get('finalized_by')}"
    return status


def markdown(job_id: str, data: dict[str, Any], meta: dict[str, Any]) -> str:
    """The report as GitHub-flavoured Markdown."""
    job = data["job"]
    lines = [
        f"# Backfill report: {job_id}",
        "",
        f"Status **{_status(job)}**, mode {job.get('mode')}. Generated {when(meta['generated_at'])} by "
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
        workers = (data.get("workers") or {}).get("series") or []
        bands = data.get("bands") or []
        width = float(data["throughput"]["bucket_s"])
        lines += [
            "## Throughput over time",
            "",
            f"From {_fmt(data['throughput']['start'])}.",
            "",
            "| t | snapshots/s | failed | workers | during |",
            "|---|---|---|---|---|",
            *[
                f"| +{_duration(p['t_s'])} | {p['rate_per_s']} | {p['failed']} | "
                f"{_fmt(workers_during(workers, p['t_s'], width))} | {_md_cell(_bands_in(bands, p['t_s'], width))} |"
                for p in series
            ],
            "",
        ]
    if data.get("guard") is not None:
        lines += report_guard.markdown(data["guard"])
    return "\n".join(lines)


def workers_during(series: list[dict[str, Any]], t_s: float, width: float) -> int | None:
    """The most workers live during [t_s, t_s + width) (seconds since the chart's origin), from the
    workers-over-time series; None before the first worker_start."""
    live, most = None, None
    for w in series:
        if w.get("at_s") is None or w["at_s"] >= t_s + width:
            break
        if w["at_s"] < t_s:
            live = w["workers"]
            continue
        most = max(most or 0, w["workers"])
    values = [v for v in (live, most) if v is not None]
    return max(values) if values else None


def _bands_in(bands: list[dict[str, Any]], t_s: float, width: float) -> str:
    """The kinds of band that overlap the bucket [t_s, t_s + width)."""
    kinds = [b["kind"] for b in bands if b.get("from_s") is not None and b["from_s"] < t_s + width and b["to_s"] >= t_s]
    return ", ".join(dict.fromkeys(kinds))


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


BAND_COLOURS = {"pause": "#bf8700", "hold": "#8250df", "outage": "#cf222e", "interrupted": "#57606a"}


def svg_chart(
    series: list[dict[str, Any]],
    bucket_s: float | None,
    width: int = 900,
    height: int = 280,
    *,
    bands: list[dict[str, Any]] | None = None,
    workers: list[dict[str, Any]] | None = None,
) -> str:
    """An inline SVG: throughput (snapshots/s, blue line), failed snapshots per bucket (red bars), the live
    workers (green steps, labelled at each change) and labelled shaded bands for pauses, holds, outages and
    interruptions."""
    e = _html.escape
    left, right, top, bottom = 60, 60, 30, 40
    pw, ph = width - left - right, height - top - bottom
    parts = [
        f'<svg viewBox="0 0 {width} {height}" width="100%" role="img" aria-labelledby="chart-title">',
        '<title id="chart-title">Throughput (snapshots/s), failed snapshots and workers over time</title>',
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
    parts += _band_marks(bands or [], x, span, top, ph)
    parts += _worker_steps(workers or [], x, span, top, ph)
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
        "time since the first worker or batch started</text>",
        "</svg>",
    ]
    return "\n".join(parts)


def _band_marks(bands: list[dict[str, Any]], x: Any, span: float, top: float, ph: float) -> list[str]:
    """Shaded, labelled bands (a thin line for an instant), clamped to the chart."""
    e = _html.escape
    parts = []
    for i, b in enumerate(bands):
        if b.get("from_s") is None:
            continue
        a, z = min(max(b["from_s"], 0.0), span), min(max(b["to_s"], 0.0), span)
        colour = BAND_COLOURS.get(b["kind"], "#57606a")
        label = f"{b['label']} ({_duration(b['seconds'])})"
        parts.append(
            f'<rect class="band band-{e(b["kind"])}" x="{x(a):.1f}" y="{top}" width="{max(x(z) - x(a), 1.5):.1f}" '
            f'height="{ph}" fill="{colour}" fill-opacity="0.15"><title>{e(label)}</title></rect>'
        )
        parts.append(
            f'<text x="{x(a) + 2:.1f}" y="{top + 12 + 12 * (i % 3)}" font-size="10" fill="{colour}">'
            f"{e(b['kind'])} {e(_duration(b['seconds']))}</text>"
        )
    return parts


def _worker_steps(workers: list[dict[str, Any]], x: Any, span: float, top: float, ph: float) -> list[str]:
    """The live workers as a green step line on its own scale (the most workers at 1/3 of the height)."""
    points = [w for w in workers if w.get("at_s") is not None]
    if not points:
        return []
    most = max(max(w["workers"] for w in points), 1)

    def y(n: int) -> float:
        return top + ph - (ph / 3) * n / most

    path, prev = [], None
    for w in points:
        t = min(max(w["at_s"], 0.0), span)
        if prev is not None:
            path.append(f"{x(t):.1f},{y(prev):.1f}")
        path.append(f"{x(t):.1f},{y(w['workers']):.1f}")
        prev = w["workers"]
    path.append(f"{x(span):.1f},{y(prev or 0):.1f}")
    parts = [f'<polyline class="workers" points="{" ".join(path)}" fill="none" stroke="#1a7f37" stroke-width="1.5"/>']
    shown = None
    for w in points:
        if w["workers"] != shown and w["workers"]:
            parts.append(
                f'<text x="{x(min(max(w["at_s"], 0.0), span)) + 2:.1f}" y="{y(w["workers"]) - 3:.1f}" font-size="10" '
                f'fill="#1a7f37">{w["workers"]} worker{"s" if w["workers"] != 1 else ""}</text>'
            )
        shown = w["workers"]
    return parts


def _table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    e = _html.escape
    head = "".join(f"<th>{e(h)}</th>" for h in header)
    body = []
    for row in rows:
        cells = []
        for c in row:
            text = _fmt(c)
            cls = {"pass": ' class="pass"', "FAIL": ' class="fail"'}.get(text, "")
            inner = f'<a href="{e(c.url)}">{e(text)}</a>' if isinstance(c, Link) else e(text).replace(chr(10), "<br>")
            cells.append(f"<td{cls}>{inner}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def html(job_id: str, data: dict[str, Any], meta: dict[str, Any]) -> str:
    """The report as one self-contained HTML page (inline CSS and SVG, no external resources)."""
    e = _html.escape
    job = data["job"]
    tp = data["throughput"]
    wk = (data.get("workers") or {}).get("series")
    body = [
        f"<h1>Backfill report: <code>{e(job_id)}</code></h1>",
        f'<p class="muted">Status <strong>{e(_status(job))}</strong>, mode {e(_fmt(job.get("mode")))}. '
        f"Generated {e(when(meta['generated_at']))} by starforge-backfill {e(meta['tool_version'])} "
        f"(report schema_version {e(str(meta['schema_version']))}).</p>",
        "<h2>Throughput, errors and workers over time</h2>",
        f'<div class="chart">{svg_chart(tp["series"], tp.get("bucket_s"), bands=data.get("bands"), workers=wk)}</div>',
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
