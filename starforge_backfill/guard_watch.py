"""The guard's blocking watcher: a backfill must never hold up production.

A small thread with its own connection looks every `block_check_s` for a production session (any session
whose application_name is not the backfill's) whose `pg_blocking_pids()` holds one of this process's
worker backends, and cuts that backfill batch short: `pg_cancel_backend` on our own pid (a statement that
is running), or `pg_terminate_backend` when the session sits idle in its transaction (a cancel never reaches
it) twice in a row. The worker's transaction rolls back, the blocked session goes through, and the engine
retries the batch at half the size (engine.ChunkWorker._apply). Each cut is a `yielded` event.

Only the pids this process's workers reported are touched (`note_pid`): never another host's worker, never
a production session. Behind PgBouncer the server pid of a worker is not known, so nothing is cut there.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

import psycopg

from starforge_backfill import jobs, templates
from starforge_backfill.errors import DatabaseUnavailable

log = logging.getLogger("starforge_backfill.guard")
YIELD_TTL_S = 10.0  # a QueryCanceled within this long after our cancel is our yield


class _Guarded(Protocol):
    job_id: str

    @property
    def settings(self) -> Any: ...


class BlockingWatcher:
    """Cancels this process's backfill statements that block production sessions (see the module docstring)."""

    def __init__(self, guard: _Guarded, connect: Callable[[], psycopg.Connection[Any]]) -> None:
        self.guard = guard
        self.interval_s = float(guard.settings.block_check_s)
        self._connect = connect
        self._lock = threading.Lock()
        self._pids: dict[str, int] = {}  # worker -> its backend pid
        self._cancelled: dict[str, float] = {}  # worker -> when we cancelled its statement
        self._idle_seen: set[int] = set()
        self._yields = 0  # since the guard's last reading
        self.total_yields = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def note_pid(self, worker: str, pid: int) -> None:
        """A worker's backend pid; the thread starts with the first one."""
        with self._lock:
            self._pids[worker] = pid
            if self._thread is None and not self._stop.is_set():
                self._thread = threading.Thread(target=self._run, name="guard-watcher", daemon=True)
                self._thread.start()

    def pending(self, worker: str) -> bool:
        """Whether this worker's statement was cancelled by us lately."""
        with self._lock:
            at = self._cancelled.get(worker)
            return at is not None and time.monotonic() - at < YIELD_TTL_S

    def take(self, worker: str) -> bool:
        """Consume the cancel of this worker's statement."""
        with self._lock:
            at = self._cancelled.pop(worker, None)
            return at is not None and time.monotonic() - at < YIELD_TTL_S

    def yields_since_check(self) -> int:
        """Batches cut short since the previous call (the guard's reading counts them as blocking)."""
        with self._lock:
            n, self._yields = self._yields, 0
            return n

    def close(self) -> None:
        """Stop the thread (it closes its connection)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _run(self) -> None:
        conn: psycopg.Connection[Any] | None = None
        try:
            while not self._stop.wait(max(0.05, self.interval_s) if self.interval_s > 0 else 0.5):
                if self.interval_s <= 0:
                    continue
                try:
                    if conn is None or conn.closed:
                        conn = self._connect()
                    self.sweep(conn)
                except (psycopg.Error, DatabaseUnavailable) as exc:  # the database is away: look again next time
                    log.debug("blocking watcher: %s", exc)
                    if conn is not None:
                        conn.close()
                    conn = None
        finally:
            if conn is not None:
                conn.close()

    def sweep(self, conn: psycopg.Connection[Any]) -> int:
        """One look: cut short every batch of ours that blocks a production session; how many were cut."""
        with self._lock:
            by_pid = {pid: w for w, pid in self._pids.items()}
        if not by_pid:
            return 0
        params = {"app_prefix": self.guard.settings.app_prefix + "%", "pids": list(by_pid)}
        rows = templates.fetch_all(conn, "guard/blockers.sql", params)
        idle_now: set[int] = set()
        cut = 0
        done: set[int] = set()
        for r in rows:
            pid, state = int(r["blocker"]), str(r["state"] or "")
            if pid in done:
                continue
            done.add(pid)
            idle = state.startswith("idle in transaction")
            if idle and pid not in self._idle_seen:
                idle_now.add(pid)  # it may be between two statements: cut it next time if it still blocks
                continue
            how = "terminated" if idle else "cancelled"
            with self._lock:
                self._cancelled[by_pid[pid]] = time.monotonic()
                self._yields += 1
                self.total_yields += 1
            templates.execute(conn, "guard/cancel.sql", {"pid": pid, "terminate": idle})
            cut += 1
            jobs.record_event(
                conn,
                self.guard.job_id,
                "yielded",
                f"batch of worker {by_pid[pid]} {how}: it blocked production session {r['blocked']}",
                {"worker": by_pid[pid], "blocker_pid": pid, "blocked_pid": int(r["blocked"]), "how": how},
            )
        self._idle_seen = idle_now
        return cut
