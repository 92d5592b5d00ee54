"""Database-side gauges for the metrics: what no single process can count, read from PostgreSQL itself.

The runbook's alerts need three figures the engine's batch records do not carry:

* connection use against `max_connections` ("DB connections > 80% of max"): the same count the throttle's
  connections gate uses (client backends, server-wide);
* each job's status and the snapshots it still has to do (backlog, job status, a failed job);
* `queue_jobs` depth by type and status, and the age of the oldest due pending row ("queue depth and job
  age").

`watch(metrics, connect)` starts a daemon thread that samples them every `every_s` seconds on a short-lived
connection of its own (opened, three reads, closed: it holds no connection between samples), touches the
metrics' heartbeat and writes the .prom file if a write is due, so a long `run` that is throttled or paused
still refreshes its file; `stop()` (from `Metrics.close`) takes a last sample for the final write. The
values live in a custom collector whose snapshot is swapped whole, so a scrape never sees a half-updated set
and a job that left the window disappears instead of lingering.
A failed sample is logged once per failure streak and never stops the command.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Iterator
from typing import Any

import psycopg

from starforge_backfill import capacity, templates
from starforge_backfill.db import connect_cfg, describe_dsn

log = logging.getLogger("starforge_backfill.metrics")

SAMPLE_EVERY_S = 15.0
RECENT_JOBS_S = 86400.0  # finished or failed jobs stay visible this long (the job-failed alert sees them)
MAX_JOBS = 50
JOB_STATUSES = ("pending", "running", "paused", "failed", "done")


class DatabaseCollector:
    """A `prometheus_client` collector holding the latest database sample (None until the first one)."""

    def __init__(self, database: str) -> None:
        self.database = database
        self._sample: dict[str, Any] | None = None

    def describe(self) -> list[Any]:
        """Nothing to describe up front (registration must not call `collect` before the first sample)."""
        return []

    def sample(self, conn: psycopg.Connection[Any]) -> None:
        """Read connections, jobs and queue depth; replace the held sample in one assignment."""
        cap = capacity.read(conn, 1.0)
        jobs = templates.execute(conn, "metrics/jobs.sql", {"recent_s": RECENT_JOBS_S, "limit": MAX_JOBS}).fetchall()
        queue = templates.execute(conn, "metrics/queue.sql").fetchall()
        self._sample = {
            "connections": (cap.in_use, cap.max_connections, cap.superuser_reserved),
            "jobs": [(str(j), str(s), int(r)) for j, s, r in jobs],
            "queue": [(str(t), str(s), int(n), float(age)) for t, s, n, age in queue],
        }

    def collect(self) -> Iterator[Any]:
        """The gauges of the latest sample."""
        from prometheus_client.core import GaugeMetricFamily

        sample = self._sample
        if sample is None:
            return
        db = [self.database]
        in_use, max_conn, reserved = sample["connections"]
        for name, doc, value in (
            ("starforge_backfill_db_connections", "Client connections open on the server (all sessions).", in_use),
            ("starforge_backfill_db_max_connections", "The server's max_connections.", max_conn),
            (
                "starforge_backfill_db_superuser_reserved_connections",
                "The server's superuser_reserved_connections.",
                reserved,
            ),
        ):
            family = GaugeMetricFamily(name, doc, labels=["database"])
            family.add_metric(db, value)
            yield family
        status = GaugeMetricFamily(
            "starforge_backfill_job_status",
            "1 for the job's current status in backfill_jobs (unfinished jobs, and those of the last day).",
            labels=["database", "job_id", "status"],
        )
        remaining = GaugeMetricFamily(
            "starforge_backfill_job_remaining_snapshots",
            "Snapshots the job still has to handle: total - processed - failed (its backlog).",
            labels=["database", "job_id"],
        )
        for job_id, job_status, left in sample["jobs"]:
            for s in JOB_STATUSES:
                status.add_metric([self.database, job_id, s], 1.0 if s == job_status else 0.0)
            remaining.add_metric([self.database, job_id], left)
        yield status
        yield remaining
        depth = GaugeMetricFamily(
            "starforge_backfill_queue_jobs",
            "queue_jobs rows by type and status (pending ones are the queue depth).",
            labels=["database", "type", "status"],
        )
        oldest = GaugeMetricFamily(
            "starforge_backfill_queue_oldest_pending_age_seconds",
            "Seconds since the oldest due pending queue_jobs row of the type became due (0 when none).",
            labels=["database", "type"],
        )
        ages: dict[str, float] = {}
        for qtype, qstatus, n, age in sample["queue"]:
            depth.add_metric([self.database, qtype, qstatus], n)
            ages[qtype] = max(ages.get(qtype, 0.0), age)
        for qtype, age in sorted(ages.items()):
            oldest.add_metric([self.database, qtype], age)
        yield depth
        yield oldest


class DatabaseSampler:
    """The thread that keeps a `DatabaseCollector` fresh; `stop()` ends it (Metrics.close calls it)."""

    def __init__(
        self,
        metrics: Any,
        connect: Callable[[], psycopg.Connection[Any]],
        database: str,
        every_s: float | None = None,
    ) -> None:
        if every_s is None:
            every_s = float(os.environ.get("STARFORGE_METRICS_DB_EVERY", SAMPLE_EVERY_S))
        self.metrics = metrics
        self.connect = connect
        self.every_s = every_s
        self.collector = DatabaseCollector(database)
        self._stop = threading.Event()
        self._failing = False
        self._thread = threading.Thread(target=self._loop, name="starforge-db-metrics", daemon=True)

    def start(self) -> DatabaseSampler:
        """Register the collector and start sampling in the thread: the first sample at once, never blocking
        the command (a database that does not answer delays only this thread, by database.connect_timeout)."""
        self.metrics.registry.register(self.collector)
        self._thread.start()
        return self

    def sample_once(self) -> bool:
        """One sample; False (logged once per failure streak) when the database cannot be read."""
        try:
            with self.connect() as conn:
                self.collector.sample(conn)
        except Exception as exc:  # metrics never break a backfill
            if not self._failing:
                first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
                log.warning("cannot sample database metrics: %s: %s", type(exc).__name__, first)
            self._failing = True
            return False
        self._failing = False
        return True

    def stop(self) -> None:
        """Stop sampling, then take a last sample for the final write (unless the database was failing)."""
        started = self._thread.is_alive() or self._thread.ident is not None
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=30)
        if started and not self._failing:
            self.sample_once()

    def _loop(self) -> None:
        while True:
            self.sample_once()
            self.metrics.touch()
            self.metrics.maybe_write()
            if self._stop.wait(self.every_s):
                return


def watch(metrics: Any, cfg: Any, every_s: float | None = None) -> DatabaseSampler | None:
    """Sample the database of `cfg` into `metrics` until it closes; None when there is no DSN."""
    if not cfg.database.dsn:
        return None
    sampler = DatabaseSampler(
        metrics,
        lambda: connect_cfg(cfg, autocommit=True, application_name=f"{cfg.database.application_name}:metrics"),
        describe_dsn(cfg.database.dsn),
        every_s,
    )
    metrics.on_close(sampler.stop)
    return sampler.start()
