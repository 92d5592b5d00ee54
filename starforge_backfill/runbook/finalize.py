"""Runbook step "Post-backfill": `finalize --job-id`, the post-backfill checklist as one command.

1. Only a done job: a paused, failed or pending job, or one still running (a live worker), is refused
   before anything is written (exit 1). A job whose every chunk is done but whose row still says running
   (its last worker stopped first) is marked done with finished_at.
2. `verify --full` over the job's range must pass; `--force --reason` finalizes anyway and records what it
   overrode (event `forced`).
3. The placeholder catalog rows still there are reported (and listed in finalize.json).
4. The job is marked finalized (finalized_at, finalized_by = the operator; event `finalized`).
5. The final report (report.{md,html,json}, which shows the finalized state), the job's audit log
   (audit-log.jsonl: every event with its operator), a quarantine list and finalize.json are written
   into the job's folder with its sha256 manifest, and the whole folder is archived as
   `<artifacts>/archives/<job_id>.tar.gz` (+ `.sha256` beside it).

A job finalized before is not finalized again: its archive is returned as it is, or written again when it
is missing (the database said finalized, the archive never landed). No click or rich here.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import tarfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

from starforge_backfill import artifacts, jobs, operator, templates
from starforge_backfill.artifacts import jsonable
from starforge_backfill.config import Config
from starforge_backfill.db import connect_cfg, translate_errors
from starforge_backfill.errors import GateFailed, UsageError
from starforge_backfill.jobs import JobStatus
from starforge_backfill.runbook import report as report_step
from starforge_backfill.runbook.verify import check_placeholders, verify
from starforge_backfill.schema import check_schema

ARCHIVES = "archives"
QUARANTINE_LIST = "quarantine-list.json"
AUDIT_LOG = "audit-log.jsonl"
FINALIZE_FILE = "finalize.json"
Notify = Callable[[str], None]


@dataclasses.dataclass
class FinalizeResult:
    """What finalize did (or found already done)."""

    job_id: str
    job: dict[str, Any]
    already: bool = False
    marked_done: bool = False
    verify_passed: bool | None = None
    verify_failed: list[str] = dataclasses.field(default_factory=list)
    verify_detail: str | None = None
    verify_artifact: Path | None = None
    forced: bool = False
    reason: str | None = None
    placeholders: dict[str, Any] = dataclasses.field(default_factory=dict)
    archive: Path | None = None
    archive_sha256: str | None = None
    members: list[str] = dataclasses.field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """`finalize --json` (docs/JSON.md)."""
        return jsonable(
            {
                "job_id": self.job_id,
                "already_finalized": self.already,
                "marked_done": self.marked_done,
                "finalized_at": self.job.get("finalized_at"),
                "finalized_by": self.job.get("finalized_by"),
                "verify": {
                    "passed": self.verify_passed,
                    "failed": self.verify_failed,
                    "detail": self.verify_detail,
                    "artifact": str(self.verify_artifact) if self.verify_artifact else None,
                },
                "forced": self.forced,
                "reason": self.reason,
                "placeholders": self.placeholders,
                "archive": str(self.archive) if self.archive else None,
                "archive_sha256": self.archive_sha256,
                "members": self.members,
            }
        )


def archive_path(cfg: Config, job_id: str) -> Path:
    """Where a job's archive goes: `<artifacts>/archives/<job_id>.tar.gz`."""
    return Path(cfg.artifacts_dir) / ARCHIVES / f"{job_id}.tar.gz"


def finalize(
    cfg: Config,
    *,
    job_id: str,
    force: bool = False,
    reason: str | None = None,
    sample_users: int | None = None,
    notify: Notify | None = None,
) -> FinalizeResult:
    """Check, verify, mark and archive one job (see the module docstring)."""
    say = notify or (lambda _m: None)
    if force and not (reason and reason.strip()):
        raise UsageError("--force needs --reason (it is recorded in the job's audit trail)")
    with connect_cfg(cfg, autocommit=True) as conn, translate_errors(cfg.database.dsn):
        check_schema(conn)
        job = jobs.get_job(conn, job_id)
        if job is None:
            raise UsageError(f"no job {job_id!r}", hint="`starforge-backfill status` lists the jobs")
        if job.get("finalized_at") is not None:
            res = FinalizeResult(job_id, jobs.public_row(job), already=True)
            target = archive_path(cfg, job_id)
            if target.is_file():
                res.archive, res.archive_sha256 = target, artifacts.sha256_file(target)
                return res
            say(f"job {job_id} is finalized but its archive is missing: writing it again")
            _archive(cfg, job_id, res)
            return res
        marked_done = _ready(conn, cfg, job)
    say(f"verify --full for job {job_id} ...")
    vres = verify(cfg, job_id=job_id, mode="full", sample_users=sample_users, notify=notify)
    res = FinalizeResult(job_id, {}, marked_done=marked_done, verify_passed=vres.passed, verify_failed=vres.failed)
    res.verify_artifact = vres.artifact
    failing = [c for c in vres.checks if not c.passed]
    res.verify_detail = "; ".join(f"{c.name}: {c.detail}" for c in failing)[:2000] or None
    if failing and not force:
        raise GateFailed(
            f"verify --full failed ({', '.join(vres.failed)}): {failing[0].detail[:300]}",
            hint=f"see {vres.artifact}; fix and finalize again, or --force --reason '...'",
        )
    res.forced, res.reason = bool(failing) and force, reason
    with connect_cfg(cfg, autocommit=True) as conn, translate_errors(cfg.database.dsn), conn.transaction():
        placeholders = check_placeholders(conn)
        res.placeholders = {"count": placeholders.data["count"], "by_kind": placeholders.data["by_kind"]}
        if res.forced:
            jobs.record_event(
                conn,
                job_id,
                "forced",
                f"finalized with --force although verify failed ({', '.join(vres.failed)})",
                {"reason": reason, "overridden": vres.failed, "verify_artifact": str(vres.artifact)},
            )
        row = templates.fetch_one(conn, "finalize/mark.sql", {"job_id": job_id, "operator": operator.current()})
        if row is None:  # changed meanwhile (another finalize, a reprocess resuming it)
            raise GateFailed(f"job {job_id} changed while it was being finalized: run finalize again")
        jobs.record_event(
            conn,
            job_id,
            "finalized",
            "job finalized"
            + (" (forced)" if res.forced else "")
            + f"; {res.placeholders['count']} placeholder(s) left",
            {"verify_passed": vres.passed, "forced": res.forced, "reason": reason, "placeholders": res.placeholders},
        )
        res.job = jobs.public_row(row)
    folder = artifacts.job_dir(cfg.artifacts_dir, job_id)
    artifacts.write_json(
        folder / FINALIZE_FILE,
        "finalize",
        job_id,
        {k: v for k, v in res.to_json().items() if k not in ("archive", "archive_sha256", "members")},
    )
    _archive(cfg, job_id, res)
    return res


def _ready(conn: Any, cfg: Config, job: dict[str, Any]) -> bool:
    """Refuse a job that is not done; True when a finished job still marked running was marked done."""
    job_id, status = job["job_id"], job["status"]
    if status == JobStatus.DONE:
        return False
    if status == JobStatus.RUNNING:
        live = jobs.live_workers(conn, job_id, cfg.job.claim_ttl_s)
        if live:
            raise GateFailed(
                f"job {job_id} is still running ({len(live)} live worker(s)): finalize it once it is done",
                hint=f"`starforge-backfill status --job-id {job_id}` shows its progress",
            )
        row = templates.fetch_one(conn, "finalize/mark_done.sql", {"job_id": job_id})
        if row is None:
            raise GateFailed(
                f"job {job_id} was interrupted with work left: resume it, then finalize",
                hint=f"`starforge-backfill resume --job-id {job_id}`",
            )
        jobs.record_event(conn, job_id, "finished", "every chunk was done: marked done by finalize", {})
        return True
    why = f" ({job['status_reason']})" if job.get("status_reason") else ""
    hint = {
        JobStatus.PAUSED: f"resume it first: `starforge-backfill resume --job-id {job_id}`",
        JobStatus.FAILED: f"see `starforge-backfill report --job-id {job_id}`; fix, then resume or reprocess",
    }.get(status, "only a done job can be finalized")
    raise GateFailed(f"job {job_id} is {status}{why}: only a done job can be finalized", hint=hint)


def _quarantine_list(folder: Path) -> list[dict[str, Any]]:
    """The quarantined snapshots of the job's folder: id, error type and message (no payload)."""
    out = []
    for path in sorted((folder / "quarantine").glob("*.json")) if (folder / "quarantine").is_dir() else []:
        try:
            body = json.loads(path.read_text())
        except (OSError, ValueError):
            out.append({"file": path.name, "error_type": None, "message": "unreadable"})
            continue
        out.append(
            {
                "snapshot_id": body.get("snapshot_id"),
                "error_type": body.get("error_type"),
                "message": body.get("message"),
                "file": f"quarantine/{path.name}",
            }
        )
    return out


def _archive(cfg: Config, job_id: str, res: FinalizeResult) -> None:
    """Final report + quarantine list + manifest into the folder, then the folder as a .tar.gz."""
    folder = artifacts.job_dir(cfg.artifacts_dir, job_id)
    with connect_cfg(cfg, autocommit=True) as conn, translate_errors(cfg.database.dsn):
        events = templates.fetch_all(conn, "finalize/audit_log.sql", {"job_id": job_id})
    lines = b"".join(orjson.dumps(jsonable(e), option=orjson.OPT_SORT_KEYS) + b"\n" for e in events)
    artifacts.write_bytes_atomic(folder / AUDIT_LOG, lines)
    quarantined = _quarantine_list(folder)
    artifacts.write_json(folder / QUARANTINE_LIST, "quarantine_list", job_id, {"snapshots": quarantined})
    report_step.report(cfg, job_id=job_id)  # report.{md,html,json} and manifest.json (sha256 of every file)
    target = archive_path(cfg, job_id)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{dt.datetime.now(dt.UTC):%Y%m%dT%H%M%S%f}")
    members = sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith("."))
    with tarfile.open(tmp, "w:gz") as tar:
        for path in members:
            tar.add(path, arcname=f"{job_id}/{path.relative_to(folder).as_posix()}", recursive=False)
    tmp.replace(target)
    digest = artifacts.sha256_file(target)
    artifacts.write_bytes_atomic(target.with_name(target.name + ".sha256"), f"{digest}  {target.name}\n".encode())
    res.archive, res.archive_sha256 = target, digest
    res.members = [f"{job_id}/{p.relative_to(folder).as_posix()}" for p in members]
