"""The long-running `worker`: takes `queue_jobs` rows (`backfill_range`, `process_snapshot`) and chunks of any
running job, with the same ETL core as every other path. SIGTERM finishes the current batch, then exits."""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import psycopg

from starforge_backfill import artifacts, jobs, listeners, templates
from starforge_backfill import settings as config_settings
from starforge_backfill.config import Config
from starforge_backfill.db import connect_cfg, is_transient
from starforge_backfill.engine import ChunkWorker
from starforge_backfill.etl.pipeline import BatchResult, ConnectionHolder, process_batch
from starforge_backfill.logs import detail_level

log = logging.getLogger("starforge_backfill.worker")

QUEUE_TYPES = ("backfill_range", "process_snapshot")


@dataclasses.dataclass
class WorkerStats:
    """What a worker did before it stopped."""

    queue_done: int = 0
    queue_failed: int = 0
    jobs_created: list[str] = dataclasses.field(default_factory=list)
    jobs_worked: list[str] = dataclasses.field(default_factory=list)
    snapshots: BatchResult = dataclasses.field(default_factory=BatchResult)

    def to_json(self) -> dict[str, Any]:
        """`worker --json`."""
        return {
            "queue_done": self.queue_done,
            "queue_failed": self.queue_failed,
            "jobs_created": self.jobs_created,
            "jobs_worked": sorted(set(self.jobs_worked)),
            "processed": self.snapshots.applied,
            "failed": self.snapshots.failed,
        }


class QueueWorker:
    """Drains queue_jobs, then works on chunks of running jobs; repeats until stopped (or idle with once)."""

    def __init__(
        self,
        cfg: Config,
        *,
        stop: threading.Event,
        once: bool = False,
        poll_s: float = 1.0,
        notify: Callable[[str], None] | None = None,
    ) -> None:
        self.cfg = cfg
        self.stop = stop
        self.once = once
        self.poll_s = poll_s
        self.name = jobs.worker_name()
        self.stats = WorkerStats()
        self.notify = notify or (lambda _m: None)
        self.holder = ConnectionHolder(lambda: connect_cfg(cfg, autocommit=True, application_name=self._app()))

    def _app(self) -> str:
        return f"{self.cfg.database.application_name}:worker"

    def run(self) -> WorkerStats:
        """Loop until stopped; with `once`, until there is nothing left to do."""
        try:
            while not self.stop.is_set():
                did = self._queue_step() or self._job_step()
                if not did:
                    if self.once:
                        break
                    self.stop.wait(self.poll_s)
        finally:
            self.holder.close()
        return self.stats

    def _queue_step(self) -> bool:
        conn = self.holder.get()
        row = templates.fetch_one(
            conn, "queue/claim.sql", {"types": list(QUEUE_TYPES), "stale_s": self.cfg.job.claim_ttl_s}
        )
        if row is None:
            return False
        try:
            if row["type"] == "backfill_range":
                self._backfill_range(conn, row)
            else:
                self._process_snapshot(row)
            templates.execute(conn, "queue/finish.sql", {"id": row["id"]})
            self.stats.queue_done += 1
        except Exception as exc:
            if isinstance(exc, psycopg.Error) and is_transient(exc):
                self.holder.close()
            conn = self.holder.get()
            retry_in = min(300.0, 2.0 ** int(row["attempts"]))
            templates.execute(
                conn,
                "queue/fail.sql",
                {"id": row["id"], "error": f"{type(exc).__name__}: {str(exc)[:500]}", "retry_in_s": retry_in},
            )
            self.stats.queue_failed += 1
            self.notify(f"queue job {row['id']} ({row['type']}) failed: {type(exc).__name__}: {str(exc)[:200]}")
        return True

    def _backfill_range(self, conn: psycopg.Connection[Any], row: dict[str, Any]) -> None:
        """Create (once) the backfill job a `backfill_range` row asks for; workers then process its chunks."""
        payload = row["payload"] or {}
        job_id = f"queue-{row['id']}"
        if jobs.get_job(conn, job_id) is not None:
            return
        selector = jobs.Selector.parse(
            payload["from_created_at"], payload["to_created_at"], reprocess=bool(payload.get("reprocess", False))
        )
        job = jobs.start_job(
            conn,
            self.cfg,
            selector,
            job_id=job_id,
            owner=str(payload.get("owner") or self.cfg.job.owner),
            mode="queue",
            batch_size=int(payload.get("batch_size") or self.cfg.etl.batch_size),
            concurrency=int(payload.get("concurrency") or 1),
            reason=f"queue_jobs {row['id']}",
            by=str(payload.get("owner") or self.cfg.job.owner),  # the queue job acts for its payload's owner
        )
        requested_by = payload.get("requested_by")
        if requested_by:  # enqueued through the admin API: the trail says by which token (its name)
            jobs.record_event(
                conn,
                job_id,
                "requested",
                f"enqueued through the admin API by {requested_by}",
                {"queue_id": str(row["id"]), "via": "api"},
                by=str(requested_by),
            )
        self.stats.jobs_created.append(job["job_id"])
        self.notify(f"created job {job_id} from queue: {job['total_count']} snapshot(s)")

    def _process_snapshot(self, row: dict[str, Any]) -> None:
        """The real-time path: one snapshot through the same ETL core."""
        sid = uuid.UUID(str((row["payload"] or {})["snapshot_id"]))
        settings = config_settings.etl(
            self.cfg, quarantine_dir=self.cfg.artifacts_dir / "realtime" / "quarantine", job_id="realtime"
        )
        started = time.monotonic()
        res = process_batch(self.holder, [(sid, None)], settings, retry=config_settings.retry(self.cfg))
        duration = time.monotonic() - started
        self.stats.snapshots.add(res)
        fields = listeners.batch_fields("realtime", self.name, 1, res, duration, snapshot_id=str(sid))
        outcome = "failed" if res.failed else "applied"
        log.log(
            detail_level(),
            "real-time snapshot %s: %s, %d ms",
            sid,
            outcome,
            duration * 1000,
            extra=fields | {"event": "batch"},
        )
        listeners.announce("batch", fields)  # the same record as the engine's batches: metrics count it too

    def _job_step(self) -> bool:
        conn = self.holder.get()
        ids = [
            r[0]
            for r in templates.execute(
                conn,
                "jobs/claimable_jobs.sql",
                {"claim_ttl_s": self.cfg.job.claim_ttl_s},
            )
        ]
        if not ids:
            return False
        job_id = ids[0]
        row = jobs.get_job(conn, job_id)
        assert row is not None
        folder = artifacts.job_dir(self.cfg.artifacts_dir, job_id)
        options = config_settings.engine(
            self.cfg, int(row["batch_size"]), folder, job_id, fixed=bool(row.get("batch_fixed"))
        )

        def on_batch(_w: str, res: BatchResult, _d: float) -> None:
            self.stats.snapshots.add(res)

        worker = ChunkWorker(
            lambda: connect_cfg(self.cfg, autocommit=True, application_name=self._app()),
            job_id,
            self.name,
            options,
            self.stop,
            on_batch,
        )
        try:
            outcome = worker.run()
        finally:
            close = getattr(options.throttle, "close", None)  # the production guard's thread and connections
            if close is not None:
                close()
        self.stats.jobs_worked.append(job_id)
        self.notify(f"job {job_id}: {outcome}")
        return True


def run_worker(
    cfg: Config,
    *,
    once: bool = False,
    poll_s: float = 1.0,
    stop: threading.Event | None = None,
    notify: Callable[[str], None] | None = None,
) -> WorkerStats:
    """Run one queue worker in this thread until stopped (or idle, with `once`)."""
    return QueueWorker(cfg, stop=stop or threading.Event(), once=once, poll_s=poll_s, notify=notify).run()
