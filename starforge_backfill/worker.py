"""The long-running `worker`: takes `queue_jobs` rows (`backfill_range`, `process_snapshot`) and chunks of any
running job, with the same ETL core as every other path. SIGTERM finishes the current batch, then exits."""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import psycopg

from starforge_backfill import __version__, artifacts, jobs, templates
from starforge_backfill.config import Config
from starforge_backfill.db import connect_cfg, is_transient, retry_kwargs
from starforge_backfill.engine import Worker
from starforge_backfill.etl.pipeline import BatchResult, ConnectionHolder, EtlSettings, process_batch
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


def _parse_ts(value: Any) -> dt.datetime:
    ts = dt.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    return ts if ts.tzinfo else ts.replace(tzinfo=dt.UTC)


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
        from starforge_backfill import ops

        self.cfg = cfg
        self.stop = stop
        self.once = once
        self.poll_s = poll_s
        self.name = jobs.worker_name()
        self.stats = WorkerStats()
        self.notify = notify or (lambda _m: None)
        self._ops = ops
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
        selector = jobs.Selector(
            from_ts=_parse_ts(payload["from_created_at"]),
            to_ts=_parse_ts(payload["to_created_at"]),
            reprocess=bool(payload.get("reprocess", False)),
        )
        job = jobs.create_job(
            conn,
            job_id=job_id,
            owner=str(payload.get("owner") or self.cfg.job.owner),
            mode="queue",
            selector=selector,
            batch_size=int(payload.get("batch_size") or self.cfg.etl.batch_size),
            concurrency=int(payload.get("concurrency") or 1),
            chunk_size=self.cfg.job.chunk_size,
            config_fingerprint=self.cfg.fingerprint(),
            tool_version=__version__,
            reason=f"queue_jobs {row['id']}",
        )
        artifacts.write_json(
            artifacts.job_dir(self.cfg.artifacts_dir, job_id) / "config.json",
            "config",
            job_id,
            {"fingerprint": self.cfg.fingerprint(), "config": self.cfg.to_dict(redact=True)},
        )
        self.stats.jobs_created.append(job["job_id"])
        self.notify(f"created job {job_id} from queue: {job['total_count']} snapshot(s)")

    def _process_snapshot(self, row: dict[str, Any]) -> None:
        """The real-time path: one snapshot through the same ETL core."""
        sid = uuid.UUID(str((row["payload"] or {})["snapshot_id"]))
        settings = EtlSettings(
            catalog_policy=self.cfg.etl.catalog_policy,
            fast_path=self.cfg.etl.fast_path,
            quarantine_dir=self.cfg.artifacts_dir / "realtime" / "quarantine",
            job_id="realtime",
        )
        started = time.monotonic()
        res = process_batch(self.holder, [(sid, None)], settings, retry=retry_kwargs(self.cfg))
        duration = time.monotonic() - started
        self.stats.snapshots.add(res)
        log.log(  # the same record as the engine's batches, so metrics count the real-time path too
            detail_level(),
            "real-time snapshot %s: %s, %d ms",
            sid,
            "failed" if res.failed else "applied",
            duration * 1000,
            extra={
                "event": "batch",
                "job_id": "realtime",
                "worker": self.name,
                "snapshot_id": str(sid),
                "snapshots": 1,
                "applied": res.applied,
                "failed": res.failed,
                "errors_by_type": dict(res.errors_by_type),
                "rows_written": dict(res.rows_written),
                "placeholders": len(res.placeholders),
                "duration_ms": round(duration * 1000, 1),
                "duration_s": duration,
            },
        )

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
        options = self._ops.engine_options(self.cfg, int(row["batch_size"]), folder, job_id)

        def on_batch(_w: str, res: BatchResult, _d: float) -> None:
            self.stats.snapshots.add(res)

        worker = Worker(
            lambda: connect_cfg(self.cfg, autocommit=True, application_name=self._app()),
            job_id,
            self.name,
            options,
            self.stop,
            on_batch,
        )
        outcome = worker.run()
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
