"""The operator's controls around a job: `db init`, `status` and `pause` (`resume` lives with `run`)."""

from __future__ import annotations

import dataclasses
from typing import Any

from starforge_backfill import jobs, schema
from starforge_backfill.config import Config
from starforge_backfill.db import connect_cfg, translate_errors
from starforge_backfill.errors import GateFailed, UsageError
from starforge_backfill.jobs import JobStatus
from starforge_backfill.runbook import guard

PAUSED_BY_OPERATOR = "operator"  # a pause event's details.source; gates and retries pause jobs too


@dataclasses.dataclass(frozen=True)
class DbInitResult:
    """What `db init` did."""

    files: tuple[str, ...]
    tables_before: int
    tables_after: int

    def to_json(self) -> dict[str, Any]:
        """JSON shape of `db init --json`."""
        return dataclasses.asdict(self) | {"files": list(self.files)}


def db_init(cfg: Config) -> DbInitResult:
    """Create the toolkit's tables (and the StarForge tables when absent); idempotent."""
    res = schema.init_db(cfg.database.dsn or "")
    return DbInitResult(res.files, res.tables_before, res.tables_after)


@dataclasses.dataclass
class StatusResult:
    """Jobs for `status`."""

    jobs: list[dict[str, Any]]

    def to_json(self) -> dict[str, Any]:
        """`status --json`."""
        return {"jobs": self.jobs}


def status(cfg: Config, *, job_id: str | None = None, limit: int = 50) -> StatusResult:
    """Job rows with progress %, rate, ETA, throttle state and live workers, newest first."""
    with connect_cfg(cfg, autocommit=True) as conn, translate_errors(cfg.database.dsn):
        rows = jobs.list_jobs(conn, job_id, limit, cfg.job.claim_ttl_s)
        guards = {str(r["job_id"]): guard.status_of(conn, str(r["job_id"])) for r in rows}
    if job_id is not None and not rows:
        raise UsageError(f"no job {job_id!r}")
    out = []
    for r in rows:
        pub = jobs.public_row(r)
        total = int(r.get("total_count") or 0)
        done = int(r["processed_count"]) + int(r["error_count"])
        span = float(r.get("recent_span_s") or 0)
        rate = float(r["recent_snapshots"]) / span if span > 0 else None
        remaining = max(total - done, 0)
        live = int(r["live_workers"])
        # "running" in the table with no live worker is a run that was interrupted (Ctrl-C, a crash): no rate,
        # no ETA; `run` on its range (or `resume`) carries on from the checkpoint
        interrupted = r["status"] == JobStatus.RUNNING and live == 0
        if interrupted:
            rate = None
        pub |= {
            "state": "interrupted" if interrupted else str(r["status"]),
            "progress": round(done / total, 4) if total else (1.0 if r["status"] == JobStatus.DONE else 0.0),
            "rate_per_s": round(rate, 2) if rate else None,
            "eta_s": round(remaining / rate) if rate and r["status"] == JobStatus.RUNNING else None,
            "live_workers": live,
            "chunks_done": int(r["chunks_done"]),
            "chunks_total": int(r["chunks_total"]),
            "guard": guards[str(r["job_id"])],
        }
        out.append(pub)
    return StatusResult(out)


@dataclasses.dataclass
class PauseResult:
    """Jobs a pause or resume changed."""

    changed: list[dict[str, Any]]

    def to_json(self) -> dict[str, Any]:
        """`pause --json` / `resume --json --no-wait`."""
        return {"jobs": self.changed}


def pause(
    cfg: Config,
    *,
    job_id: str | None = None,
    all_jobs: bool = False,
    reason: str | None = None,
    by: str | None = None,
) -> PauseResult:
    """Pause one job (or all running ones): its workers stop at their next batch boundary. The event records
    `by` as who acted (the admin API: the token's name), else this process's operator."""
    if (job_id is None) == (not all_jobs):
        raise UsageError("give --job-id ID or --all")
    why = reason or "paused by operator"
    active = [JobStatus.RUNNING, JobStatus.PENDING]
    changed = []
    with connect_cfg(cfg, autocommit=True) as conn, translate_errors(cfg.database.dsn):
        listed = [] if job_id else jobs.list_jobs(conn, None, 1000)
        targets = [job_id] if job_id else [r["job_id"] for r in listed if r["status"] in active]
        for jid in targets:
            row = jobs.set_status(conn, jid, JobStatus.PAUSED, why, active)
            if row is None:
                current = jobs.get_job(conn, jid)
                if current is None:
                    raise UsageError(f"no job {jid!r}")
                if job_id:
                    raise GateFailed(f"job {jid} is {current['status']}, not running: nothing to pause")
                continue
            jobs.record_event(conn, jid, "paused", why, {"source": PAUSED_BY_OPERATOR}, by=by)
            changed.append(jobs.public_row(row))
    return PauseResult(changed)
