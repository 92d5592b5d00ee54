"""outages.Outages: connection failures from any number of workers and attempts make one `outage` event,
written when a statement goes through again; other errors open no outage."""

from __future__ import annotations

import time

import psycopg
import pytest
from psycopg import errors as pg_errors

from starforge_backfill import outages
from starforge_backfill.outages import Outages


def outage_events(conn: psycopg.Connection, job_id: str) -> list[dict]:
    rows = conn.execute(
        "SELECT details FROM backfill_events WHERE job_id = %s AND kind = 'outage' ORDER BY id", [job_id]
    ).fetchall()
    return [r[0] for r in rows]


def test_one_event_per_outage_however_many_failures(pg_conn: psycopg.Connection) -> None:
    job = "job-outage-1"
    seen = Outages()
    seen.recovered(pg_conn, job)  # nothing open: nothing written
    assert not seen.open and outage_events(pg_conn, job) == []
    seen.failed(pg_errors.DeadlockDetected("not an outage"))
    assert not seen.open
    for _worker in range(2):
        for attempt in range(3):
            seen.failed(psycopg.OperationalError("connection to server at 127.0.0.1 failed: refused"), attempt)
    seen.failed(pg_errors.AdminShutdown("terminating connection due to administrator command"))
    assert seen.open
    time.sleep(0.2)
    seen.recovered(pg_conn, job)
    seen.recovered(pg_conn, job)  # the other worker comes back too: still one event
    events = outage_events(pg_conn, job)
    assert len(events) == 1
    assert events[0]["attempts"] == 7 and events[0]["seconds"] >= 0.2 and events[0]["sqlstate"] is None
    assert "refused" in events[0]["error"]


def test_a_stale_connection_failing_just_after_is_the_same_outage(
    pg_conn: psycopg.Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    job = "job-outage-2"
    seen = Outages()
    seen.failed(psycopg.OperationalError("server closed the connection unexpectedly"))
    seen.recovered(pg_conn, job)
    seen.failed(psycopg.OperationalError("server closed the connection unexpectedly"))  # an idle worker's
    assert not seen.open
    monkeypatch.setattr(outages, "SAME_OUTAGE_S", 0.0)  # later on, a new failure is a new outage
    seen.failed(pg_errors.CannotConnectNow("the database system is starting up"))
    assert seen.open
    seen.recovered(pg_conn, job)
    assert [e["sqlstate"] for e in outage_events(pg_conn, job)] == [None, "57P03"]


def test_a_failed_record_keeps_the_outage_open(pg_conn: psycopg.Connection, pg_dsn: str) -> None:
    seen = Outages()
    seen.failed(psycopg.OperationalError("connection lost"))
    broken = psycopg.connect(pg_dsn, autocommit=True)
    broken.close()
    seen.recovered(broken, "job-outage-3")  # the database went away again before the record
    assert seen.open
    seen.recovered(pg_conn, "job-outage-3")
    assert len(outage_events(pg_conn, "job-outage-3")) == 1
