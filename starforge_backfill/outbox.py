"""Reading and pruning the ETL's event outbox (`etl_events`; `etl/events.py` writes it).

Consumers read with a cursor: the events with `id > cursor`, oldest first (`read`); id order is commit order
(see `etl/events.py`), so a cursor never skips an event. A named consumer's cursor lives in
`etl_event_cursors` (`load_cursor` / `save_cursor`). `Pruner` deletes events older than `events.retain` in
small batches (`events.prune_batch` rows, one short transaction each), at most once per `every_s`: the
`worker` loop and `run`'s control loop call `tick()`. `listen` / `wait` use LISTEN on `CHANNEL` when
`events.notify` is on (a session connection: not through PgBouncer in transaction mode).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import time
import uuid
from collections.abc import Callable
from typing import Any

import psycopg

from starforge_backfill import templates
from starforge_backfill.errors import DatabaseUnavailable
from starforge_backfill.etl.events import CHANNEL, EVENTS

log = logging.getLogger("starforge_backfill.outbox")

__all__ = ["CHANNEL", "EVENTS", "Event", "Pruner", "listen", "load_cursor", "prune", "read", "save_cursor"]


@dataclasses.dataclass(frozen=True)
class Event:
    """One etl_events row."""

    id: int
    event: str
    snapshot_id: uuid.UUID
    namecode: str | None
    job_id: str | None
    outcome: str
    error_type: str | None
    duration_ms: float
    rows_written: int
    created_at: dt.datetime

    def to_json(self) -> dict[str, Any]:
        """JSON shape of one event (docs/JSON.md, `events tail --json`: one per line)."""
        out = dataclasses.asdict(self)
        out["snapshot_id"] = str(self.snapshot_id)
        out["created_at"] = self.created_at.isoformat()
        return out


def _filters(job_id: str | None, event: str | None) -> dict[str, Any]:
    return {"by_job": job_id is not None, "by_event": event is not None}


def read(
    conn: psycopg.Connection[Any], after: int, *, limit: int, job_id: str | None = None, event: str | None = None
) -> list[Event]:
    """At most `limit` events with id > `after`, oldest first (only job `job_id`'s / of kind `event`)."""
    rows = templates.fetch_all(
        conn,
        "events/read.sql",
        {"after": after, "limit": limit, "job_id": job_id, "event": event},
        **_filters(job_id, event),
    )
    return [Event(**r) for r in rows]


def newest_cursor(conn: psycopg.Connection[Any], n: int, *, job_id: str | None = None, event: str | None = None) -> int:
    """The cursor after which exactly the newest `n` matching events follow (like `tail -n`)."""
    row = templates.fetch_one(
        conn, "events/start.sql", {"n": n, "job_id": job_id, "event": event}, **_filters(job_id, event)
    )
    return int(row["after"]) if row else 0


def load_cursor(conn: psycopg.Connection[Any], consumer: str) -> int | None:
    """Consumer `consumer`'s stored cursor; None for a consumer that never read."""
    row = templates.fetch_one(conn, "events/get_cursor.sql", {"consumer": consumer})
    return None if row is None else int(row["last_id"])


def save_cursor(conn: psycopg.Connection[Any], consumer: str, last_id: int) -> None:
    """Store `consumer`'s cursor (the last event id it was handed)."""
    templates.execute(conn, "events/save_cursor.sql", {"consumer": consumer, "last_id": last_id})


def prune(conn: psycopg.Connection[Any], retain_s: float, batch: int) -> int:
    """Delete at most `batch` events older than `retain_s` (one statement); how many were deleted."""
    cur = templates.execute(conn, "events/prune.sql", {"retain_s": retain_s, "batch": batch})
    return max(cur.rowcount, 0)


class Pruner:
    """Retention for the worker and run loops: every `every_s`, delete expired events `batch` rows at a time
    (each delete its own transaction on the autocommit connection `connection()`), at most `max_batches`
    per tick so the loop that calls it stays responsive. Database errors are logged, never raised."""

    def __init__(
        self,
        connection: Callable[[], psycopg.Connection[Any]],
        retain_s: float,
        batch: int,
        *,
        every_s: float = 60.0,
        max_batches: int = 100,
    ) -> None:
        self.connection = connection
        self.retain_s = retain_s
        self.batch = batch
        self.every_s = every_s
        self.max_batches = max_batches
        self._next = 0.0
        self.deleted = 0
        self.batches: list[int] = []  # rows deleted by each delete statement, newest last (bounded)

    def tick(self) -> int:
        """Prune when due; how many events this tick deleted."""
        if time.monotonic() < self._next:
            return 0
        self._next = time.monotonic() + self.every_s
        total = 0
        try:
            conn = self.connection()
            for _ in range(self.max_batches):
                n = prune(conn, self.retain_s, self.batch)
                self.batches = [*self.batches[-99:], n]
                total += n
                if n < self.batch:
                    break
        except (psycopg.Error, DatabaseUnavailable) as exc:  # the database is away: the next tick tries again
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            log.warning("events retention skipped: %s", first[:200])
        if total:
            log.info("events retention: deleted %d event(s) older than %gs", total, self.retain_s)
        self.deleted += total
        return total


def listen(conn: psycopg.Connection[Any]) -> None:
    """LISTEN on the events channel (`conn` autocommit, a session connection)."""
    templates.execute(conn, "events/listen.sql")


def wait(conn: psycopg.Connection[Any], timeout_s: float) -> bool:
    """Wait up to `timeout_s` for a notification on a listening connection; True when one came."""
    return any(True for _ in conn.notifies(timeout=timeout_s, stop_after=1))
