"""The ETL's event outbox writer: a batch's snapshot_processed / snapshot_failed rows in `etl_events`.

`emit` runs once per committed batch, inside the transaction that writes the batch's outcomes, as one
INSERT ... SELECT (`sql/etl/events.sql`): a rolled-back batch leaves no event, a committed one leaves one
event per applied or failed snapshot. `duration_ms` of every event of a batch is the batch's apply time
(from the start of `pipeline.apply_in_transaction` to the events insert) divided by its events; a set-based
batch has no per-snapshot time. With `notify`, one pg_notify per batch on `CHANNEL` with the highest
id (readers: `outbox.listen`). Before the insert a batch takes a transaction-level advisory lock, held to
its commit (`sql/etl/events_lock.sql`): ids are drawn one batch at a time, so id order is commit order and
a cursor (`id > N`) never skips a lower id that commits later. Imports neither click nor rich.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from typing import Any

import psycopg

from starforge_backfill import templates

CHANNEL = "starforge_etl_events"
EVENTS = ("snapshot_processed", "snapshot_failed")


def emit(
    conn: psycopg.Connection[Any],
    *,
    applied: int,
    failures: Sequence[tuple[uuid.UUID, str]],
    job_id: str | None,
    started: float,
    notify: bool = False,
    staged: bool = True,
) -> int:
    """Write a batch's events: `applied` snapshot_processed rows (the staged ok snapshots) and one
    snapshot_failed row per (snapshot id, error type) of `failures`; returns how many. `started` is the
    batch's `time.perf_counter()` at its start; `staged` is False when the staging tables were not filled in
    this transaction (a failure recorded on its own)."""
    count = (applied if staged else 0) + len(failures)
    if count == 0:
        return 0
    templates.execute(conn, "etl/events_lock.sql")  # held to the commit: ids in commit order
    elapsed_ms = (time.perf_counter() - started) * 1000.0
    row = templates.execute(
        conn,
        "etl/events.sql",
        {
            "failed_ids": [sid for sid, _ in failures],
            "failed_types": [error_type for _, error_type in failures],
            "job_id": job_id,
            "duration_ms": round(elapsed_ms / count, 3),
        },
        staged=staged,
        notify=notify,
    ).fetchone()
    return int(row[0]) if row else 0
