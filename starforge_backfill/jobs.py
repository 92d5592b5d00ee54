"""Job and chunk bookkeeping in PostgreSQL: every worker on every host sees the same truth."""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import itertools
import os
import secrets
import socket
import uuid
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg.types.json import Jsonb

from starforge_backfill import __version__, artifacts, operator, templates
from starforge_backfill.artifacts import jsonable
from starforge_backfill.errors import UsageError
from starforge_backfill.timerange import parse_ts

if TYPE_CHECKING:
    from starforge_backfill.config import Config

NIL_UUID = uuid.UUID(int=0)
STATUS_FIELDS = (
    "job_id",
    "status",
    "mode",
    "from_ts",
    "to_ts",
    "processed_count",
    "error_count",
    "last_checkpoint",
    "started_at",
    "finished_at",
)


class JobStatus(enum.StrEnum):
    """`backfill_jobs.status` (the schema's CHECK list)."""

    PENDING = "pending"
    RUNNING = "running"
    PAUSED = "paused"
    FAILED = "failed"
    DONE = "done"


class RunOutcome(enum.StrEnum):
    """How a worker, or a whole run, ended: a job status it saw, or a reason of its own."""

    DONE = "done"
    PAUSED = "paused"  # by an operator, a gate, or database errors that outlasted the retries
    FAILED = "failed"
    INTERRUPTED = "interrupted"  # Ctrl-C or SIGTERM: the checkpoint is saved
    MISSING = "missing"  # the job row is gone
    ERROR = "error"  # the worker raised; the run re-raises it
    PENDING = "pending"  # the job was set back to pending meanwhile


class ChunkOutcome(enum.StrEnum):
    """How working one chunk ended, when the worker should not go on with the job."""

    DONE = "chunk-done"  # the chunk is finished: claim the next one


@dataclasses.dataclass(frozen=True)
class Selector:
    """Which snapshots of `hero_snapshots` a job wants."""

    from_ts: dt.datetime
    to_ts: dt.datetime
    reprocess: bool = False
    retry_failed: bool = False
    namecodes: tuple[str, ...] | None = None
    ids: tuple[uuid.UUID, ...] | None = None

    @classmethod
    def parse(
        cls,
        from_ts: str | dt.datetime,
        to_ts: str | dt.datetime,
        *,
        reprocess: bool = False,
        retry_failed: bool = False,
        namecodes: Iterable[str] | None = None,
        ids: Iterable[Any] | None = None,
    ) -> Selector:
        """A selector from operator input: ISO-8601 ends (UTC when naive), `from` before `to`."""
        f, t = parse_ts(from_ts, "--from"), parse_ts(to_ts, "--to")
        if f >= t:
            raise UsageError(f"--from ({f.isoformat()}) must be before --to ({t.isoformat()})")
        return cls(
            from_ts=f,
            to_ts=t,
            reprocess=reprocess,
            retry_failed=retry_failed,
            namecodes=tuple(namecodes) if namecodes is not None else None,
            ids=tuple(uuid.UUID(str(i)) for i in ids) if ids is not None else None,
        )

    def params(self) -> dict[str, Any]:
        """The bound parameters of `sql/jobs/_selector.sql`."""
        return {
            "from_ts": self.from_ts,
            "to_ts": self.to_ts,
            "reprocess": self.reprocess,
            "retry_failed": self.retry_failed,
            "namecodes": list(self.namecodes) if self.namecodes is not None else None,
            "ids": list(self.ids) if self.ids is not None else None,
        }

    def to_json(self) -> dict[str, Any]:
        """The selector as stored on the job row."""
        return {
            "reprocess": self.reprocess,
            "retry_failed": self.retry_failed,
            "namecodes": list(self.namecodes) if self.namecodes is not None else None,
            "ids": [str(i) for i in self.ids] if self.ids is not None else None,
        }

    @classmethod
    def from_job(cls, row: dict[str, Any]) -> Selector:
        """Rebuild the selector of an existing job row."""
        sel = row.get("selector") or {}
        return cls(
            from_ts=row["from_ts"],
            to_ts=row["to_ts"],
            reprocess=bool(sel.get("reprocess", row.get("reprocess", False))),
            retry_failed=bool(sel.get("retry_failed", False)),
            namecodes=tuple(sel["namecodes"]) if sel.get("namecodes") is not None else None,
            ids=tuple(uuid.UUID(i) for i in sel["ids"]) if sel.get("ids") is not None else None,
        )


_WORKER_NUMBERS = itertools.count()


def worker_name() -> str:
    """A worker identity that names its host and process, unique within it: `host:pid:n` (n counts the
    workers this process started). Unique, so that a worker may take back a chunk held under its own name."""
    return f"{socket.gethostname()}:{os.getpid()}:{next(_WORKER_NUMBERS)}"


def dead_local_workers(names: list[str]) -> list[str]:
    """Workers of this host whose process no longer exists (their chunks can be claimed at once)."""
    host = socket.gethostname()
    dead = []
    for name in names:
        parts = name.rsplit(":", 2)
        if len(parts) != 3 or parts[0] != host or not parts[1].isdigit():
            continue
        pid = int(parts[1])
        if pid == os.getpid():
            continue
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            dead.append(name)
        except PermissionError:
            pass
    return dead


def new_job_id(mode: str = "run") -> str:
    """A readable, unique job id: `<mode>-YYYYMMDDTHHMMSS-<hex>`."""
    return f"{mode}-{dt.datetime.now(dt.UTC):%Y%m%dT%H%M%S}-{secrets.token_hex(3)}"


def start_job(
    conn: psycopg.Connection[Any],
    cfg: Config,
    selector: Selector,
    *,
    mode: str,
    batch_size: int,
    concurrency: int,
    reason: str | None,
    job_id: str | None = None,
    owner: str | None = None,
    by: str | None = None,
    batch_fixed: bool = False,
) -> dict[str, Any]:
    """Create a job under this config (row, chunks, `created` event) and write its `config.json` artifact.

    The one way every path (run, canary, the queue worker) starts a job; `by` is its operator (default: this
    process's)."""
    job = create_job(
        conn,
        job_id=job_id or new_job_id(mode),
        owner=owner or cfg.job.owner,
        mode=mode,
        selector=selector,
        batch_size=batch_size,
        concurrency=concurrency,
        chunk_size=cfg.job.chunk_size,
        config_fingerprint=cfg.fingerprint(),
        tool_version=__version__,
        reason=reason,
        by=by,
        batch_fixed=batch_fixed,
    )
    artifacts.write_json(
        artifacts.job_dir(cfg.artifacts_dir, str(job["job_id"])) / "config.json",
        "config",
        str(job["job_id"]),
        {"fingerprint": cfg.fingerprint(), "config": cfg.to_dict(redact=True)},
    )
    return job


def create_job(
    conn: psycopg.Connection[Any],
    *,
    job_id: str,
    owner: str,
    mode: str,
    selector: Selector,
    batch_size: int,
    concurrency: int,
    chunk_size: int,
    config_fingerprint: str,
    tool_version: str,
    reason: str | None,
    by: str | None = None,
    batch_fixed: bool = False,
) -> dict[str, Any]:
    """Create a job and its chunks in one transaction (`by`: its operator); returns the job row.

    `batch_fixed`: every batch holds `batch_size` snapshots (the byte cap aside); else sizes adapt."""
    with conn.transaction():
        templates.fetch_one(
            conn,
            "jobs/create_job.sql",
            {
                "job_id": job_id,
                "owner": owner,
                "mode": mode,
                "from_ts": selector.from_ts,
                "to_ts": selector.to_ts,
                "batch_size": batch_size,
                "batch_fixed": batch_fixed,
                "concurrency": concurrency,
                "reprocess": selector.reprocess,
                "selector": Jsonb(selector.to_json()),
                "config_fingerprint": config_fingerprint,
                "tool_version": tool_version,
                "reason": reason,
                "operator": by or operator.current(),
            },
        )
        wanted = templates.execute(conn, "jobs/count_wanted.sql", selector.params()).fetchone()
        size = effective_chunk_size(int(wanted[0]) if wanted else 0, chunk_size, batch_size, concurrency)
        templates.fetch_one(conn, "jobs/create_chunks.sql", {"job_id": job_id, "chunk_size": size, **selector.params()})
        record_event(conn, job_id, "created", f"{mode} job created", {"selector": selector.to_json()}, by=by)
    job = get_job(conn, job_id)
    assert job is not None
    return job


def effective_chunk_size(total: int, chunk_size: int, batch_size: int, concurrency: int) -> int:
    """Chunks small enough that C workers all get work (about 4 chunks each), never below one batch."""
    per_worker = -(-total // (4 * max(1, concurrency))) if total else chunk_size
    return max(1, min(chunk_size, max(batch_size, per_worker)))


def get_job(conn: psycopg.Connection[Any], job_id: str) -> dict[str, Any] | None:
    """One job row, or None."""
    return templates.fetch_one(conn, "jobs/get_job.sql", {"job_id": job_id})


def find_resumable(
    conn: psycopg.Connection[Any],
    mode: str,
    from_ts: dt.datetime,
    to_ts: dt.datetime,
    selector: Selector | None = None,
) -> dict[str, Any] | None:
    """The newest unfinished job of this mode and range (and, given `selector`, wanting the same snapshots)."""
    wanted = Jsonb(selector.to_json()) if selector is not None else None
    params = {"mode": mode, "from_ts": from_ts, "to_ts": to_ts, "selector": wanted}
    return templates.fetch_one(conn, "jobs/find_resumable.sql", params)


def list_jobs(
    conn: psycopg.Connection[Any], job_id: str | None = None, limit: int = 50, claim_ttl_s: float = 120.0
) -> list[dict[str, Any]]:
    """Jobs newest first, with chunk and live-worker figures."""
    return templates.fetch_all(
        conn, "jobs/list_jobs.sql", {"job_id": job_id, "limit": limit, "claim_ttl_s": claim_ttl_s}
    )


def set_status(
    conn: psycopg.Connection[Any], job_id: str, status: str, reason: str | None, from_statuses: Sequence[str]
) -> dict[str, Any] | None:
    """Move a job to `status` if it is in one of `from_statuses`; returns the new row or None."""
    return templates.fetch_one(
        conn,
        "jobs/set_status.sql",
        {"job_id": job_id, "status": status, "reason": reason, "from_statuses": list(from_statuses)},
    )


def set_concurrency(conn: psycopg.Connection[Any], job_id: str, concurrency: int) -> dict[str, Any] | None:
    """Set how many workers all of a job's runs together may use; the new row."""
    return templates.fetch_one(conn, "jobs/set_concurrency.sql", {"job_id": job_id, "concurrency": concurrency})


def last_event(conn: psycopg.Connection[Any], job_id: str, kind: str) -> dict[str, Any] | None:
    """The job's newest event of `kind` (created_at, operator, message, details), or None."""
    return templates.fetch_one(conn, "jobs/last_event.sql", {"job_id": job_id, "kind": kind})


def newest_progress(conn: psycopg.Connection[Any], mode: str) -> tuple[str, int, int] | None:
    """(job_id, snapshots handled, total) of the newest job of `mode`, or None when there is none."""
    row = templates.execute(conn, "jobs/newest_progress.sql", {"mode": mode}).fetchone()
    return (str(row[0]), int(row[1]), int(row[2])) if row else None


def job_status(conn: psycopg.Connection[Any], job_id: str) -> tuple[str, str | None]:
    """(status, reason) of a job."""
    row = templates.execute(conn, "jobs/job_status.sql", {"job_id": job_id}).fetchone()
    return (row[0], row[1]) if row else ("missing", None)


def record_event(
    conn: psycopg.Connection[Any],
    job_id: str | None,
    kind: str,
    message: str,
    details: dict[str, Any] | None = None,
    *,
    by: str | None = None,
) -> None:
    """Append an event to the job's audit trail, with who acted (`by`, else this process's operator)."""
    params = {"job_id": job_id, "kind": kind, "message": message, "details": Jsonb(details or {})}
    templates.execute(conn, "jobs/record_event.sql", params | {"operator": by or operator.current()})


def live_workers(conn: psycopg.Connection[Any], job_id: str, claim_ttl_s: float) -> list[str]:
    """Workers of a job that are alive: a running chunk with a fresh heartbeat, and not a dead local process."""
    params = {"job_id": job_id, "claim_ttl_s": claim_ttl_s}
    fresh = [str(r[0]) for r in templates.execute(conn, "jobs/live_workers.sql", params)]
    dead = set(dead_local_workers(fresh))
    return [w for w in fresh if w not in dead]


def claim_chunk(conn: psycopg.Connection[Any], job_id: str, worker: str, claim_ttl_s: float) -> dict[str, Any] | None:
    """Claim the next free (or abandoned) chunk of a job, or None."""
    running = [r[0] for r in templates.execute(conn, "jobs/running_workers.sql", {"job_id": job_id})]
    dead = dead_local_workers(running)
    return templates.fetch_one(
        conn,
        "jobs/claim_chunk.sql",
        {"job_id": job_id, "worker": worker, "claim_ttl_s": claim_ttl_s, "dead_workers": dead},
    )


def next_batch(
    conn: psycopg.Connection[Any],
    chunk: dict[str, Any],
    after: tuple[Any, Any],
    selector: Selector,
    limit: int,
) -> list[tuple[uuid.UUID, dt.datetime, int]]:
    """The next snapshots of a chunk below `after` = (created_at, id), newest first: (id, created_at, size)."""
    params = {
        "after_ts": after[0],
        "after_id": after[1],
        "lo_ts": chunk["lo_created_at"],
        "lo_id": chunk["lo_id"],
        "hi_ts": chunk["hi_created_at"],
        "hi_id": chunk["hi_id"],
        "limit": limit,
        **selector.params(),
    }
    return [(r[0], r[1], int(r[2])) for r in templates.execute(conn, "jobs/next_batch.sql", params)]


def finish_chunk(conn: psycopg.Connection[Any], job_id: str, chunk_no: int, worker: str) -> bool:
    """Mark a chunk done; False if this worker no longer owns it."""
    return (
        templates.fetch_one(conn, "jobs/finish_chunk.sql", {"job_id": job_id, "chunk_no": chunk_no, "worker": worker})
        is not None
    )


def heartbeat(conn: psycopg.Connection[Any], job_id: str, chunk_no: int, worker: str) -> bool:
    """Refresh a held chunk's heartbeat; False if this worker no longer holds it."""
    return (
        templates.fetch_one(conn, "jobs/heartbeat.sql", {"job_id": job_id, "chunk_no": chunk_no, "worker": worker})
        is not None
    )


def release_chunk(conn: psycopg.Connection[Any], job_id: str, chunk_no: int, worker: str) -> None:
    """Give a chunk back so another worker can claim it at once."""
    templates.execute(conn, "jobs/release_chunk.sql", {"job_id": job_id, "chunk_no": chunk_no, "worker": worker})


def finish_job(conn: psycopg.Connection[Any], job_id: str) -> dict[str, Any] | None:
    """Mark the job done if every chunk is; returns the row when it did."""
    return templates.fetch_one(conn, "jobs/finish_job.sql", {"job_id": job_id})


def chunk_progress(conn: psycopg.Connection[Any], job_id: str, claim_ttl_s: float) -> tuple[int, int]:
    """(open chunks, chunks held by a live worker)."""
    row = templates.execute(conn, "jobs/chunk_progress.sql", {"job_id": job_id, "claim_ttl_s": claim_ttl_s}).fetchone()
    return (int(row[0]), int(row[1])) if row else (0, 0)


def public_row(row: dict[str, Any]) -> dict[str, Any]:
    """A job row in the documented `status --json` shape (plus extra fields), JSON-ready."""
    out: dict[str, Any] = {}
    for key in (
        *STATUS_FIELDS,
        "owner",
        "total_count",
        "placeholder_count",
        "rows_written",
        "errors_by_type",
        "batch_size",
        "batch_fixed",
        "concurrency",
        "operator",
        "reason",
        "status_reason",
        "throttle_state",
        "config_fingerprint",
        "tool_version",
        "finalized_at",
        "finalized_by",
    ):
        if key in row:
            out[key] = jsonable(row[key])
    return out
