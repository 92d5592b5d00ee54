"""Prometheus metrics of one process, with the runbook's names, out through a .prom file, a Pushgateway or HTTP.

Each `Metrics` owns a fresh `CollectorRegistry` (nothing is registered at import time), so two commands in
one process (tests) never share counters. Where the figures come from:

* The engine announces every finished batch through `listeners` (`batch`, and `worker_start`, `worker_end`,
  `throttle`, `gate_pause`). `Metrics.start` subscribes `on_event`, which turns those into counters, so every
  command that runs the engine (run, resume, worker, canary) is measured the same way, with each batch's own
  duration. Log lines are not read: changing one cannot change a metric.
* The command's progress callback (`progress(state)`) adds what only it knows (the job's total, hence the
  progress ratio), and the final job row (`job_row`) sets the job gauges at the end.

Durations: `starforge_etl_processing_duration_seconds` observes, for each snapshot of a batch, the batch's
duration divided by its number of snapshots (so `_count` is snapshots handled and `_sum` the time spent on
them); `starforge_etl_batch_processing_duration_seconds` observes each batch once.

Outputs: `write()` uses `prometheus_client.write_to_textfile` (temp file + rename, atomic) at most every
`write_every_s` while running and always at `close()`; `close()` also pushes to a Pushgateway when one is
configured (`pushadd_to_gateway`); `serve()` exposes `/metrics` over HTTP for long runs and the worker.

The database's own figures (connections vs max_connections, job status and backlog, queue depth) come from
`dbmetrics.watch`, which long commands (run, resume, worker) attach; `touch()` is the heartbeat
(`starforge_backfill_metrics_updated_timestamp_seconds`) that every event, sample and write refreshes.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from starforge_backfill import listeners

log = logging.getLogger("starforge_backfill.metrics")

WRITE_EVERY_S = 5.0
# Per-snapshot latency: from ~1 ms (small payloads, big batches) to minutes (multi-MB snapshots, retries).
SNAPSHOT_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
BATCH_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
UPSERT_BUCKETS = (0, 10, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 25000, 50000, 100000, 250000, 500000)


class Metrics:
    """The metrics of one command invocation; `start()` it, feed it, `close()` it."""

    def __init__(
        self,
        *,
        command: str,
        file: str | Path | None = None,
        pushgateway_url: str | None = None,
        job_name: str = "starforge_backfill",
        write_every_s: float | None = None,
    ) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.command = command
        self.file = Path(file) if file else None
        self.pushgateway_url = pushgateway_url
        self.job_name = job_name
        if write_every_s is None:
            write_every_s = float(os.environ.get("STARFORGE_METRICS_EVERY", WRITE_EVERY_S))
        self.write_every_s = write_every_s
        self.registry = CollectorRegistry()
        r = self.registry
        self.received = Counter(
            "starforge_etl_snapshots_received", "Snapshots taken into a batch for processing.", registry=r
        )
        self.processed = Counter(
            "starforge_etl_snapshots_processed",
            "Snapshots handled, by result (applied or failed).",
            ["result"],
            registry=r,
        )
        self.failed = Counter(
            "starforge_etl_snapshots_failed", "Snapshots that failed, by error type.", ["error_type"], registry=r
        )
        self.duration = Histogram(
            "starforge_etl_processing_duration_seconds",
            "Processing time per snapshot: each batch's duration divided by its snapshots, observed once per snapshot.",
            buckets=SNAPSHOT_BUCKETS,
            registry=r,
        )
        self.batch_duration = Histogram(
            "starforge_etl_batch_processing_duration_seconds",
            "Duration of each batch (one transaction, retries included).",
            buckets=BATCH_BUCKETS,
            registry=r,
        )
        self.upsert_size = Histogram(
            "starforge_etl_batch_upsert_size",
            "Rows written (inserted or updated) in the normalized tables per batch.",
            buckets=UPSERT_BUCKETS,
            registry=r,
        )
        self.rows = Counter(
            "starforge_etl_rows_written", "Rows written in the normalized tables, by table.", ["table"], registry=r
        )
        self.placeholders = Counter(
            "starforge_etl_placeholder_catalog_rows", "Placeholder catalog rows created.", registry=r
        )
        self.in_progress = Gauge(
            "starforge_etl_processing_jobs_in_progress", "Backfill jobs this process is working on now.", registry=r
        )
        self.progress_ratio = Gauge(
            "starforge_backfill_job_progress_ratio",
            "Share of the job's snapshots handled (0..1).",
            ["job_id"],
            registry=r,
        )
        self.rate = Gauge(
            "starforge_backfill_job_rate_snapshots_per_second",
            "Snapshots handled per second for the job by this process.",
            ["job_id"],
            registry=r,
        )
        self.throttled = Gauge(
            "starforge_backfill_job_throttled",
            "1 while the job's workers back off on a health gate.",
            ["job_id"],
            registry=r,
        )
        self.paused = Gauge("starforge_backfill_job_paused", "1 when the job is paused.", ["job_id"], registry=r)
        self.exit_code = Gauge(
            "starforge_backfill_command_exit_code",
            "Exit code of the command (set at its end).",
            ["command"],
            registry=r,
        )
        self.command_duration = Gauge(
            "starforge_backfill_command_duration_seconds", "How long the command has run.", ["command"], registry=r
        )
        self.finished_at = Gauge(
            "starforge_backfill_command_finished_timestamp_seconds",
            "Unix time the command finished (alert when stale).",
            ["command"],
            registry=r,
        )
        self.updated_at = Gauge(
            "starforge_backfill_metrics_updated_timestamp_seconds",
            "Unix time this process last updated its metrics (a batch, a database sample, a write).",
            ["command"],
            registry=r,
        )
        self.processed.labels("applied")
        self.processed.labels("failed")
        self._started = time.monotonic()
        self._lock = threading.Lock()
        self._write_lock = threading.Lock()
        self._last_write = 0.0
        self._jobs: dict[str, dict[str, Any]] = {}
        self._subscribed = False
        self._server: Any = None
        self._closed = False
        self._closers: list[Callable[[], None]] = []

    # -- lifecycle ------------------------------------------------------------------------------------------

    def start(self) -> Metrics:
        """Listen to the engine's announcements and write the file once (so it exists from the start)."""
        if not self._subscribed:
            listeners.subscribe(self.on_event)
            self._subscribed = True
        self.write()
        return self

    def serve(self, port: int, addr: str = "127.0.0.1") -> tuple[str, int]:
        """Serve `/metrics` over HTTP on addr:port (port 0 picks a free one) until `close()`."""
        from prometheus_client import start_http_server

        server, _thread = start_http_server(port, addr=addr, registry=self.registry)
        self._server = server
        host, bound = server.server_address[:2]
        return str(host), int(bound)

    def on_close(self, fn: Callable[[], None]) -> None:
        """Call `fn` first thing in `close()` (the database sampler's stop)."""
        self._closers.append(fn)

    def touch(self) -> None:
        """The heartbeat: this process is alive and its figures are current."""
        self.updated_at.labels(self.command).set(time.time())

    def close(self, exit_code: int | None = None) -> None:
        """Final figures and write, push to the Pushgateway if any, stop the server and the tap. Idempotent."""
        if self._closed:
            return
        self._closed = True
        for fn in self._closers:
            try:
                fn()
            except Exception as exc:  # the command's outcome never depends on its metrics
                log.warning("metrics: %s", exc)
        try:
            if exit_code is not None:
                self.exit_code.labels(self.command).set(exit_code)
            self.finished_at.labels(self.command).set(time.time())
            with self._lock:
                self.in_progress.set(sum(1 for j in self._jobs.values() if j["workers"] > 0))
            self.write(force=True)
            self._push()
        finally:
            if self._subscribed:
                listeners.unsubscribe(self.on_event)
                self._subscribed = False
            if self._server is not None:
                self._server.shutdown()
                self._server.server_close()
                self._server = None

    # -- inputs ---------------------------------------------------------------------------------------------

    def on_event(self, event: str, fields: Mapping[str, Any]) -> None:
        """One announcement from the engine (see the module docstring)."""
        job_id = str(fields.get("job_id") or "")
        if event == "batch":
            self.observe_batch(
                job_id,
                snapshots=int(fields.get("snapshots") or 0),
                applied=int(fields.get("applied") or 0),
                failed=int(fields.get("failed") or 0),
                errors_by_type=fields.get("errors_by_type") or {},
                rows_written=fields.get("rows_written") or {},
                placeholders=int(fields.get("placeholders") or 0),
                duration_s=float(fields.get("duration_s") or (fields.get("duration_ms") or 0) / 1000),
            )
        elif event == "worker_start":
            with self._lock:
                job = self._job(job_id)
                job["workers"] += 1
                self.paused.labels(job_id).set(0)
                self._set_in_progress()
        elif event == "worker_end":
            with self._lock:
                job = self._job(job_id)
                job["workers"] = max(0, job["workers"] - 1)
                if fields.get("outcome") == "paused":
                    self.paused.labels(job_id).set(1)
                if fields.get("outcome") == "done":
                    self.progress_ratio.labels(job_id).set(1.0)
                self._set_in_progress()
        elif event == "throttle":
            self.throttled.labels(job_id).set(1)
        elif event == "gate_pause":
            self.paused.labels(job_id).set(1)
        self.touch()
        self.maybe_write()

    def observe_batch(
        self,
        job_id: str,
        *,
        snapshots: int,
        applied: int,
        failed: int,
        errors_by_type: Mapping[str, int],
        rows_written: Mapping[str, int] | int,
        placeholders: int = 0,
        duration_s: float = 0.0,
    ) -> None:
        """Count one finished batch."""
        handled = applied + failed
        self.received.inc(max(snapshots, handled))
        self.processed.labels("applied").inc(applied)
        self.processed.labels("failed").inc(failed)
        for error_type, n in errors_by_type.items():
            self.failed.labels(error_type).inc(n)
        if isinstance(rows_written, Mapping):
            for table, n in rows_written.items():
                self.rows.labels(table).inc(n)
            total_rows = sum(rows_written.values())
        else:
            total_rows = int(rows_written)
        self.upsert_size.observe(total_rows)
        self.placeholders.inc(placeholders)
        self.batch_duration.observe(duration_s)
        if handled:
            per_snapshot = duration_s / handled
            for _ in range(handled):  # weighted: one observation per snapshot of the batch
                self.duration.observe(per_snapshot)
        if job_id:
            with self._lock:
                job = self._job(job_id)
                job["handled"] += handled
                elapsed = time.monotonic() - job["since"]
                if elapsed > 0:
                    self.rate.labels(job_id).set(job["handled"] / elapsed)
                self.throttled.labels(job_id).set(0)

    def progress(self, state: Any) -> None:
        """A run's progress callback (runbook.run.RunProgress): the progress ratio, then a write if one is due."""
        total = int(getattr(state, "total", 0) or 0)
        if total:
            self.progress_ratio.labels(state.job_id).set(min(1.0, state.done / total))
        self.maybe_write()

    def job_row(self, row: Mapping[str, Any]) -> None:
        """Set the job gauges from a `backfill_jobs` row (the end of a run)."""
        job_id = str(row["job_id"])
        total = int(row.get("total_count") or 0)
        done = int(row.get("processed_count") or 0) + int(row.get("error_count") or 0)
        status = row.get("status")
        if total:
            self.progress_ratio.labels(job_id).set(min(1.0, done / total))
        elif status == "done":
            self.progress_ratio.labels(job_id).set(1.0)
        self.paused.labels(job_id).set(1 if status == "paused" else 0)
        self.throttled.labels(job_id).set(1 if str(row.get("throttle_state") or "").startswith("slow") else 0)

    # -- outputs --------------------------------------------------------------------------------------------

    def maybe_write(self) -> None:
        """Write the file if the last write is older than `write_every_s`."""
        if self.file is not None and time.monotonic() - self._last_write >= self.write_every_s:
            self.write()

    def write(self, *, force: bool = False) -> None:
        """Write the textfile-collector file now (atomic rename); a failure is logged, never raised."""
        if self.file is None:
            return
        from prometheus_client import write_to_textfile

        if not self._write_lock.acquire(blocking=force):
            return  # another thread is writing right now
        try:
            self.command_duration.labels(self.command).set(time.monotonic() - self._started)
            self.touch()
            self.file.parent.mkdir(parents=True, exist_ok=True)
            write_to_textfile(str(self.file), self.registry)
            self._last_write = time.monotonic()
        except OSError as exc:
            log.warning("cannot write the metrics file %s: %s", self.file, exc)
        finally:
            self._write_lock.release()

    def text(self) -> str:
        """The current metrics in Prometheus text format."""
        from prometheus_client import generate_latest

        return generate_latest(self.registry).decode()

    def _push(self) -> None:
        if not self.pushgateway_url:
            return
        from prometheus_client import pushadd_to_gateway

        try:
            pushadd_to_gateway(
                self.pushgateway_url,
                job=self.job_name,
                registry=self.registry,
                grouping_key={"command": self.command, "instance": socket.gethostname()},
                timeout=10,
            )
        except Exception as exc:  # the backfill's outcome does not depend on the Pushgateway
            log.warning("cannot push metrics to the Pushgateway: %s: %s", type(exc).__name__, exc)

    # -- helpers --------------------------------------------------------------------------------------------

    def _job(self, job_id: str) -> dict[str, Any]:
        job = self._jobs.get(job_id)
        if job is None:
            job = self._jobs[job_id] = {"workers": 0, "handled": 0, "since": time.monotonic()}
        return job

    def _set_in_progress(self) -> None:
        self.in_progress.set(sum(1 for j in self._jobs.values() if j["workers"] > 0))
