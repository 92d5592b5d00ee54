"""Runbook step "Artifacts & audit": one report of a job (Markdown, HTML, JSON) and a sha256 manifest.

Sources: the job row, its events (gates, throttle, pauses, placeholders), its batches (the throughput
series), the gates recorded for its config fingerprint (preflight with the backup id and approvals,
dry-run, canary, verify), its artifacts folder (verify.json, canary.json, quarantine/). The report is
written into the job's folder next to them; `manifest.json` then lists the sha256 of every file of the
folder (but itself), and `verify_manifest` re-hashes them so any later change, removal or addition shows.
No click or rich here; rendering is in `report_render`.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from pathlib import Path
from typing import Any

import psycopg

from starforge_backfill import __version__, artifacts, error_budget, jobs, templates
from starforge_backfill.artifacts import jsonable
from starforge_backfill.config import Config
from starforge_backfill.db import connect_cfg, translate_errors
from starforge_backfill.errors import ExitCode, UsageError
from starforge_backfill.redact import redact_dsn
from starforge_backfill.runbook import report_guard, report_render
from starforge_backfill.schema import check_schema

FORMATS = ("md", "html", "json")
MANIFEST = "manifest.json"
REPORT_FILES = {"md": "report.md", "html": "report.html", "json": "report.json"}
BUCKETS = 60
EVENT_KINDS_GATES = ("gate", "throttle", "paused", "resumed", "forced", "interrupted", "canary", "verify")


def parse_formats(text: str | None) -> tuple[str, ...]:
    """`md,html,json` (any subset, any order) -> a tuple in canonical order."""
    if not text:
        return FORMATS
    wanted = {part.strip().lower() for part in text.split(",") if part.strip()}
    unknown = wanted - set(FORMATS)
    if unknown or not wanted:
        raise UsageError(f"--format: unknown format(s) {', '.join(sorted(unknown)) or '(none)'}; use md,html,json")
    return tuple(f for f in FORMATS if f in wanted)


@dataclasses.dataclass
class ReportResult:
    """Files a report wrote."""

    job_id: str
    folder: Path
    files: dict[str, Path]
    manifest: Path
    data: dict[str, Any]
    exit_code: ExitCode = ExitCode.OK

    def to_json(self) -> dict[str, Any]:
        """`report --json`."""
        return {
            "job_id": self.job_id,
            "folder": str(self.folder),
            "files": {k: str(v) for k, v in self.files.items()},
            "manifest": str(self.manifest),
            "job_status": self.data["job"].get("status"),
            "schema_version": artifacts.SCHEMA_VERSION,
        }


@dataclasses.dataclass
class ManifestCheck:
    """What `report --verify-manifest` found."""

    job_id: str
    manifest: Path
    checked: int
    changed: list[str]
    missing: list[str]
    added: list[str]

    @property
    def ok(self) -> bool:
        """True when every file matches the manifest."""
        return not (self.changed or self.missing or self.added)

    @property
    def exit_code(self) -> ExitCode:
        """0 when the folder matches its manifest, else 1."""
        return ExitCode.OK if self.ok else ExitCode.CHECK_FAILED

    def to_json(self) -> dict[str, Any]:
        """`report --verify-manifest --json`."""
        return {
            "job_id": self.job_id,
            "manifest": str(self.manifest),
            "ok": self.ok,
            "checked": self.checked,
            "changed": self.changed,
            "missing": self.missing,
            "added": self.added,
        }


def _find_key(obj: Any, names: tuple[str, ...]) -> Any:
    """The value of the first of `names` found at any depth (preflight records nest their attestations)."""
    for name in names:
        found = _find_one(obj, name)
        if found is not None:
            return found
    return None


def _find_one(obj: Any, name: str) -> Any:
    if isinstance(obj, dict):
        if obj.get(name) not in (None, "", [], {}):
            return obj[name]
        children = list(obj.values())
    elif isinstance(obj, list):
        children = obj
    else:
        return None
    for value in children:
        found = _find_one(value, name)
        if found is not None:
            return found
    return None


def _read_artifact(path: Path | str | None) -> dict[str, Any] | None:
    if not path:
        return None
    try:
        return artifacts.read_json(Path(path))
    except (OSError, ValueError):
        return None


def _preflight(gates: list[dict[str, Any]]) -> dict[str, Any]:
    """Backup id and approvals from the newest preflight of the fingerprint (gate details, then artifact)."""
    pre = [g for g in gates if g["kind"] == "preflight"]
    if not pre:
        return {"recorded": False, "backup_id": None, "approvals": None, "passed": None}
    newest = pre[-1]
    sources = [newest.get("details") or {}, _read_artifact(newest.get("artifact")) or {}]
    backup = next((v for v in (_find_key(s, ("backup_id", "backup")) for s in sources) if v is not None), None)
    approvals = next((v for v in (_find_key(s, ("approvals", "approved_by")) for s in sources) if v is not None), None)
    return {
        "recorded": True,
        "passed": newest["passed"],
        "at": newest["created_at"],
        "artifact": newest.get("artifact"),
        "backup_id": backup,
        "approvals": approvals,
    }


def _gate_summary(g: dict[str, Any]) -> str:
    d = g.get("details") or {}
    for key in ("reasons", "failed", "problems"):
        if d.get(key):
            value = d[key]
            return "; ".join(map(str, value)) if isinstance(value, list) else str(value)
    return "passed" if g["passed"] else "failed"


def _throughput(conn: psycopg.Connection[Any], job_id: str) -> dict[str, Any]:
    """Snapshots/s and failures per time bucket; a batch's snapshots are spread over the time it ran."""
    batches = [
        (r["finished_at"] - dt.timedelta(milliseconds=int(r["duration_ms"])), r["finished_at"], r)
        for r in templates.fetch_all(conn, "report/batches.sql", {"job_id": job_id})
    ]
    if not batches:
        return {"bucket_s": None, "start": None, "series": [], "snapshots": 0, "failed": 0, "batches": 0}
    t0 = min(b[0] for b in batches)
    span = max((max(b[1] for b in batches) - t0).total_seconds(), 1.0)
    width = max(span / BUCKETS, 1.0)
    n = int(span // width) + 1
    snaps, failed, count, slowest = [0.0] * n, [0] * n, [0] * n, [0] * n
    for start, end, r in batches:
        a, z = (start - t0).total_seconds(), (end - t0).total_seconds()
        last = min(int(z // width), n - 1)
        count[last] += 1
        failed[last] += int(r["failed"])
        slowest[last] = max(slowest[last], int(r["duration_ms"]))
        if z - a <= 0:
            snaps[last] += int(r["snapshots"])
            continue
        for i in range(min(int(a // width), n - 1), last + 1):
            overlap = min(z, (i + 1) * width) - max(a, i * width)
            if overlap > 0:
                snaps[i] += int(r["snapshots"]) * overlap / (z - a)
    series = [
        {
            "t_s": round(i * width, 3),
            "at": t0 + dt.timedelta(seconds=i * width),
            "batches": count[i],
            "snapshots": round(snaps[i], 2),
            "failed": failed[i],
            "rate_per_s": round(snaps[i] / width, 2),
            "max_batch_ms": slowest[i] or None,
        }
        for i in range(n)
    ]
    return {
        "bucket_s": width,
        "start": t0,
        "series": series,
        "snapshots": sum(int(b[2]["snapshots"]) for b in batches),
        "failed": sum(failed),
        "batches": len(batches),
        "peak_rate_per_s": max(p["rate_per_s"] for p in series),
        "average_rate_per_s": round(sum(int(b[2]["snapshots"]) for b in batches) / span, 2),
    }


def _quarantine(folder: Path) -> dict[str, Any]:
    qdir = folder / "quarantine"
    files = sorted(qdir.glob("*.json")) if qdir.is_dir() else []
    out = []
    for path in files:  # one at a time: a quarantined payload can be large
        entry: dict[str, Any] = {"file": str(path.relative_to(folder)), "bytes": path.stat().st_size}
        try:
            data = json.loads(path.read_bytes())
        except (OSError, ValueError):
            entry["unreadable"] = True
        else:
            entry |= {k: data.get(k) for k in ("snapshot_id", "error_type", "message")}
        out.append(entry)
    return {"count": len(out), "folder": str(qdir), "snapshots": out}


def _placeholders(events: list[dict[str, Any]]) -> dict[str, Any]:
    ids: dict[tuple[str, int], None] = {}
    for e in events:
        if e["kind"] == "placeholders":
            for kind, i in (e.get("details") or {}).get("ids") or []:
                ids[(str(kind), int(i))] = None
    listed = [{"kind": k, "id": i} for k, i in sorted(ids)]
    return {"count": len(listed), "rows": listed}


def _files(folder: Path, exclude: set[str]) -> list[dict[str, Any]]:
    out = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        rel = path.relative_to(folder).as_posix()
        if rel in exclude or path.name.startswith("."):
            continue
        out.append({"file": rel, "bytes": path.stat().st_size})
    return out


def collect(cfg: Config, conn: psycopg.Connection[Any], job_id: str) -> dict[str, Any]:
    """Everything the report shows, JSON-ready."""
    row = jobs.get_job(conn, job_id)
    if row is None:
        raise UsageError(f"no job {job_id!r}", hint="`starforge-backfill status` lists the jobs")
    folder = Path(cfg.artifacts_dir) / job_id
    fp = row.get("config_fingerprint") or cfg.fingerprint()
    events = templates.fetch_all(conn, "report/events.sql", {"job_id": job_id})
    gates = templates.fetch_all(conn, "report/gates.sql", {"config_fingerprint": fp})
    sel = jobs.Selector.from_job(row)
    scope = {
        "from_ts": sel.from_ts,
        "to_ts": sel.to_ts,
        "namecodes": list(sel.namecodes) if sel.namecodes is not None else None,
        "ids": list(sel.ids) if sel.ids is not None else None,
    }
    messages = templates.fetch_all(conn, "report/error_messages.sql", scope | {"limit": 20})
    verification = _read_artifact(folder / "verify.json")
    canary = _read_artifact(folder / "canary.json")
    steps = [
        {
            "kind": g["kind"],
            "passed": g["passed"],
            "at": g["created_at"],
            "job_id": g["job_id"],
            "artifact": g["artifact"],
            "summary": _gate_summary(g),
        }
        for g in gates
    ]
    throughput = _throughput(conn, job_id)
    data = {
        "job": jobs.public_row(row) | {"created_at": row.get("created_at"), "selector": row.get("selector")},
        "database": redact_dsn(cfg.database.dsn or ""),
        "config_fingerprint": fp,
        "config_matches_job": fp == cfg.fingerprint(),
        "preflight": _preflight(gates),
        "steps": steps,
        "latest_steps": {s["kind"]: s for s in steps},
        "verification": None
        if verification is None
        else {
            "passed": verification.get("passed"),
            "generated_at": verification.get("generated_at"),
            "checks": [
                {"name": c["name"], "passed": c["passed"], "summary": c["detail"], "note": c.get("note")}
                for c in verification.get("checks", [])
            ],
        },
        "canary": None
        if canary is None
        else {k: canary.get(k) for k in ("outcome", "reasons", "warnings", "selection", "observe_s", "concurrency")},
        "events": [
            {"at": e["created_at"], "kind": e["kind"], "message": e["message"], "details": e["details"]} for e in events
        ],
        "gate_events": [
            {"at": e["created_at"], "kind": e["kind"], "message": e["message"]}
            for e in events
            if e["kind"] in EVENT_KINDS_GATES
        ],
        "errors_by_type": row.get("errors_by_type") or {},
        "error_budget": error_budget.of_job(
            conn, row, jobs.Selector.from_job(row).params(), cfg.throttle.failure_rate_max
        ).to_json(),
        "error_messages": messages,
        "quarantine": _quarantine(folder),
        "placeholders": _placeholders(events),
        "throughput": throughput,
        "guard": report_guard.collect(conn, job_id, throughput["start"], events),
        "artifacts": _files(folder, {MANIFEST, *REPORT_FILES.values()}) if folder.is_dir() else [],
    }
    return jsonable(data)


def write_manifest(folder: Path, job_id: str) -> Path:
    """sha256 and size of every file of the job folder except the manifest itself."""
    files = {
        f["file"]: {"sha256": artifacts.sha256_file(folder / f["file"]), "bytes": f["bytes"]}
        for f in _files(folder, {MANIFEST})
    }
    return artifacts.write_json(folder / MANIFEST, "manifest", job_id, {"algorithm": "sha256", "files": files})


def report(cfg: Config, *, job_id: str, formats: tuple[str, ...] = FORMATS) -> ReportResult:
    """Write report.{md,html,json} into the job's artifact folder, then its manifest.json."""
    with connect_cfg(cfg, autocommit=True) as conn, translate_errors(cfg.database.dsn):
        check_schema(conn)
        data = collect(cfg, conn, job_id)
    folder = artifacts.job_dir(cfg.artifacts_dir, job_id)
    meta = {"tool_version": __version__, "schema_version": artifacts.SCHEMA_VERSION}
    written: dict[str, Path] = {}
    if "json" in formats:
        written["json"] = artifacts.write_json(folder / REPORT_FILES["json"], "report", job_id, data)
        meta["generated_at"] = artifacts.read_json(written["json"])["generated_at"]
    meta.setdefault("generated_at", artifacts.utcnow().isoformat())
    if "md" in formats:
        text = report_render.markdown(job_id, data, meta)
        written["md"] = artifacts.write_bytes_atomic(folder / REPORT_FILES["md"], text.encode())
    if "html" in formats:
        text = report_render.html(job_id, data, meta)
        written["html"] = artifacts.write_bytes_atomic(folder / REPORT_FILES["html"], text.encode())
    manifest = write_manifest(folder, job_id)
    return ReportResult(job_id, folder, written, manifest, data)


def verify_manifest(cfg: Config, *, job_id: str) -> ManifestCheck:
    """Re-hash the job folder against manifest.json: changed, missing and added files."""
    folder = Path(cfg.artifacts_dir) / job_id
    path = folder / MANIFEST
    if not path.is_file():
        raise UsageError(f"no manifest at {path}", hint=f"write one with `starforge-backfill report --job-id {job_id}`")
    try:
        listed: dict[str, dict[str, Any]] = artifacts.read_json(path, "manifest")["files"]
    except (ValueError, KeyError) as exc:
        return ManifestCheck(job_id, path, 0, [f"{MANIFEST} ({exc})"], [], [])
    present = {f["file"] for f in _files(folder, {MANIFEST})}
    changed, missing = [], []
    for rel, entry in sorted(listed.items()):
        target = folder / rel
        if not target.is_file():
            missing.append(rel)
        elif artifacts.sha256_file(target) != entry.get("sha256"):
            changed.append(rel)
    added = sorted(present - set(listed))
    return ManifestCheck(job_id, path, len(listed), changed, missing, added)
