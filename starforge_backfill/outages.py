"""Database outages a run rode through: a restart, a failover, a pooler restart, seen as connection errors.

The retries themselves are `db.retrying`'s (a connection-class error is retried until `retry.max_delay` is
spent). This module only keeps the audit trail: one `outage` event per outage, written once the connection
is back, however many workers and attempts met it. The workers of one process share one `Outages`.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import psycopg

from starforge_backfill import jobs
from starforge_backfill.db import is_connection_error, redact_dsn
from starforge_backfill.errors import DatabaseUnavailable

# A connection that broke in an outage may be used (and fail) only after another worker saw the database
# come back: a failure this soon after the end of an outage belongs to it, not to a new one.
SAME_OUTAGE_S = 5.0


class Outages:
    """Connection-class failures, grouped into outages; `recovered` records an ended one as an event."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._started: float | None = None  # monotonic time of the first failure of the open outage
        self._attempts = 0
        self._first_error = ""
        self._sqlstate: str | None = None
        self._ended = float("-inf")
        self.recorded = 0

    @property
    def open(self) -> bool:
        """True while an outage is open (read without the lock: a stale answer only delays the record)."""
        return self._started is not None

    def failed(self, exc: BaseException, _attempt: int = 0) -> None:
        """An attempt failed (a `retrying` on_retry callback): open an outage or count into the open one."""
        if not is_connection_error(exc):
            return
        now = time.monotonic()
        with self._lock:
            if self._started is None:
                if now - self._ended < SAME_OUTAGE_S:
                    return
                self._started = now
                self._attempts = 0
                self._first_error = redact_dsn((str(exc).strip().splitlines() or [type(exc).__name__])[0])[:200]
                self._sqlstate = getattr(exc, "sqlstate", None)
            self._attempts += 1

    def recovered(self, conn: psycopg.Connection[Any], job_id: str) -> None:
        """A statement went through: if an outage was open, record it on the job (once) and close it."""
        with self._lock:
            if self._started is None:
                return
            seconds = time.monotonic() - self._started
            attempts, error, sqlstate = self._attempts, self._first_error, self._sqlstate
            try:
                jobs.record_event(
                    conn,
                    job_id,
                    "outage",
                    f"database connection lost for {seconds:.1f}s ({attempts} failed attempt(s)), "
                    f"then back: the work was retried ({error})",
                    {"seconds": round(seconds, 3), "attempts": attempts, "error": error, "sqlstate": sqlstate},
                )
            except (psycopg.Error, DatabaseUnavailable):
                return  # away again: still open, recorded at the next success
            self._started = None
            self._ended = time.monotonic()
            self.recorded += 1
