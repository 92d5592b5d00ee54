"""The etl_events outbox (issue 17) against a real PostgreSQL: one event per snapshot outcome, written in the
outcome's own transaction by every path (set-based batches, the per-snapshot fallback, the real-time queue
path), read with a cursor, pruned in bounded batches, NOTIFY once per batch only when asked."""

from __future__ import annotations

import datetime as dt
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import psycopg
import pytest
from engine_state import load_corpus
from helpers import at, insert_snapshot, payload
from running import run_job

from starforge_backfill import outbox
from starforge_backfill.config import Config, load_config
from starforge_backfill.etl.pipeline import (
    BatchResult,
    ConnectionHolder,
    EtlSettings,
    apply_in_transaction,
    process_batch,
)
from starforge_backfill.queue_worker import QueueWorker
from starforge_backfill.runbook.events import TailOptions, tail

FROM, TO = "2024-01-01T00:00:00Z", "2024-07-01T00:00:00Z"


def make_cfg(dsn: str, tmp_path: Path, **overrides: Any) -> Config:
    base = {
        "database.dsn": dsn,
        "artifacts_dir": str(tmp_path / "artifacts"),
        "etl.batch_size": 25,
        "throttle.failure_rate_max": 0.5,
        "gates.require_preflight": False,
        "gates.require_canary": False,
    }
    return load_config(None, env={}, overrides=base | overrides)


def q(conn: psycopg.Connection[Any], query: str, params: Any = None) -> Any:
    row = conn.execute(query, params).fetchone()
    assert row is not None
    return row[0]


def events(conn: psycopg.Connection[Any], where: str = "true", params: Any = None) -> list[dict[str, Any]]:
    with conn.cursor(row_factory=psycopg.rows.dict_row) as cur:
        return cur.execute(f"SELECT * FROM etl_events WHERE {where} ORDER BY id", params).fetchall()  # type: ignore[arg-type]


def test_a_job_emits_one_event_per_snapshot_outcome(pg_dsn: str, pg_conn: psycopg.Connection, tmp_path: Path) -> None:
    load_corpus(pg_dsn)  # 300 snapshots, 2% malformed on purpose
    res = run_job(make_cfg(pg_dsn, tmp_path), from_ts=FROM, to_ts=TO, concurrency=2, force=True, reason="events")
    assert res.outcome == "done" and res.totals.failed > 0
    job = res.job["job_id"]
    evs = events(pg_conn, "job_id = %s", [job])
    processed = [e for e in evs if e["event"] == "snapshot_processed"]
    failed = [e for e in evs if e["event"] == "snapshot_failed"]
    job_row = pg_conn.execute(
        "SELECT processed_count, error_count FROM backfill_jobs WHERE job_id = %s", [job]
    ).fetchone()
    assert (len(processed), len(failed)) == job_row == (res.totals.applied, res.totals.failed)
    assert len({e["snapshot_id"] for e in evs}) == len(evs) == 300  # one event per snapshot, none twice
    assert {e["snapshot_id"] for e in processed} == {
        r[0] for r in pg_conn.execute("SELECT id FROM hero_snapshots WHERE processed_at IS NOT NULL")
    }
    assert {(e["snapshot_id"], e["error_type"]) for e in failed} == {
        tuple(r) for r in pg_conn.execute("SELECT snapshot_id, error_type FROM etl_errors")
    }
    assert {(e["outcome"], e["error_type"] is None) for e in processed} == {("applied", True)}
    assert {e["outcome"] for e in failed} == {"failed"} and all(e["rows_written"] == 0 for e in failed)
    assert all(e["duration_ms"] > 0 for e in evs)
    # namecode: the snapshot's user's
    wrong = q(
        pg_conn,
        "SELECT count(*) FROM etl_events e JOIN hero_snapshots h ON h.id = e.snapshot_id"
        " JOIN users u ON u.id = h.user_id"
        " WHERE e.event = 'snapshot_processed' AND e.namecode IS DISTINCT FROM u.namecode",
    )
    assert wrong == 0
    # rows written: per snapshot, and in total what the batches counted
    assert sum(e["rows_written"] for e in processed) == sum(res.totals.rows_written.values()) > 0


@pytest.mark.parametrize("fast_path", [True, False], ids=["set-based", "reference"])
def test_rows_written_per_snapshot_and_a_rolled_back_batch_leaves_no_event(
    pg_conn: psycopg.Connection, fast_path: bool
) -> None:
    troops = [{"TroopId": 1, "Amount": 1}, {"TroopId": 2, "Amount": 5}, {"TroopId": 3, "Amount": 2}]
    first = insert_snapshot(
        pg_conn, payload(Level=3, Troops=troops, Pets=[{"PetId": 10, "Level": 1}]), created_at=at(0)
    )
    settings = EtlSettings(job_id="j1", fast_path=fast_path)
    with pg_conn.transaction():
        res = apply_in_transaction(pg_conn, [first], settings)
        assert res.applied == 1
        assert q(pg_conn, "SELECT count(*) FROM etl_events") == 1  # visible inside the transaction ...
        raise psycopg.Rollback()
    assert q(pg_conn, "SELECT count(*) FROM etl_events") == 0  # ... and gone with it
    assert q(pg_conn, "SELECT processed_at FROM hero_snapshots WHERE id = %s", [first]) is None
    with pg_conn.transaction():
        apply_in_transaction(pg_conn, [first], settings)
    # 3 troops + 1 pet + the summary
    assert [(e["snapshot_id"], e["rows_written"], e["job_id"]) for e in events(pg_conn)] == [(first, 5, "j1")]
    with pg_conn.transaction():  # applied again: nothing differs, nothing written
        apply_in_transaction(pg_conn, [first], settings)
    newer = [{"TroopId": 1, "Amount": 1}, {"TroopId": 2, "Amount": 6}, {"TroopId": 3, "Amount": 2}]
    second = insert_snapshot(
        pg_conn, payload(Level=3, Troops=newer, Pets=[{"PetId": 10, "Level": 1}]), created_at=at(1)
    )
    with pg_conn.transaction():  # newer: every row takes its observation time and source
        apply_in_transaction(pg_conn, [second], settings)
    older = insert_snapshot(pg_conn, payload(Level=2, Troops=troops[:1]), created_at=at(-1))
    with pg_conn.transaction():  # older than what the tables hold: nothing written, still processed
        apply_in_transaction(pg_conn, [older], settings)
    got = [(e["snapshot_id"], e["rows_written"], e["outcome"]) for e in events(pg_conn)]
    assert got == [(first, 5, "applied"), (first, 0, "applied"), (second, 5, "applied"), (older, 0, "applied")]
    assert q(pg_conn, "SELECT count(*) FROM user_troops WHERE source_snapshot_id = %s", [second]) == 3
    with pg_conn.transaction():  # events off: nothing
        apply_in_transaction(pg_conn, [second], EtlSettings(events=False))
    assert q(pg_conn, "SELECT count(*) FROM etl_events") == 4


def test_the_per_snapshot_fallback_emits_each_outcome_once(pg_dsn: str, pg_conn: psycopg.Connection) -> None:
    ids = [insert_snapshot(pg_conn, payload(f"HERO_{i:04d}", Level=i), created_at=at(i)) for i in range(5)]
    bad = ids[2]

    def bookkeeping(conn: psycopg.Connection[Any], res: BatchResult, key: Any) -> None:
        # the whole batch fails (so it is applied one snapshot at a time), and snapshot `bad` fails alone too
        if res.snapshots > 1 or (key == bad and res.failed == 0):
            conn.execute("SELECT 1/0")

    holder = ConnectionHolder(lambda: psycopg.connect(pg_dsn, autocommit=True))
    try:
        res = process_batch(holder, [(i, i) for i in ids], EtlSettings(job_id="fb"), bookkeeping=bookkeeping)
    finally:
        holder.close()
    assert res.fallback and res.applied == 4 and res.failed == 1
    evs = events(pg_conn)
    assert sorted((e["snapshot_id"], e["event"]) for e in evs) == sorted(
        (i, "snapshot_failed" if i == bad else "snapshot_processed") for i in ids
    )
    failed = [e for e in evs if e["event"] == "snapshot_failed"]
    assert [(e["error_type"], e["namecode"]) for e in failed] == [("DB_ERROR", None)]


def test_the_real_time_path_emits_the_same_events(pg_dsn: str, pg_conn: psycopg.Connection, tmp_path: Path) -> None:
    good = insert_snapshot(pg_conn, payload("HERO_RT01", Level=4), namecode="HERO_RT01", created_at=at(0))
    broken = insert_snapshot(pg_conn, {"ProfileData": {"Level": "four"}}, namecode="HERO_RT02", created_at=at(1))
    for sid in (good, broken):
        pg_conn.execute(
            "INSERT INTO queue_jobs (type, payload)"
            " VALUES ('process_snapshot', jsonb_build_object('snapshot_id', %s::text))",
            [sid],
        )
    worker = QueueWorker(make_cfg(pg_dsn, tmp_path), stop=threading.Event(), once=True)
    stats = worker.run()
    assert stats.queue_done == 2
    got = [(e["snapshot_id"], e["event"], e["job_id"], e["namecode"], e["outcome"]) for e in events(pg_conn)]
    assert got == [
        (good, "snapshot_processed", "realtime", "HERO_RT01", "applied"),
        (broken, "snapshot_failed", "realtime", "HERO_RT02", "failed"),
    ]
    assert events(pg_conn)[1]["error_type"] == q(pg_conn, "SELECT error_type FROM etl_errors")


def test_cursor_reads_resume_where_a_consumer_stopped(pg_dsn: str, pg_conn: psycopg.Connection, tmp_path: Path) -> None:
    load_corpus(pg_dsn)
    cfg = make_cfg(pg_dsn, tmp_path)
    run_job(cfg, from_ts=FROM, to_ts=TO, concurrency=1, force=True, reason="events")
    all_ids = [e["id"] for e in events(pg_conn)]
    assert len(all_ids) == 300

    def take(options: TailOptions) -> list[int]:
        seen: list[int] = []
        tail(cfg, options, lambda ev: seen.append(ev.id))
        return seen

    first = take(TailOptions(consumer="billing", limit=120))
    second = take(TailOptions(consumer="billing", limit=1000))
    assert first == all_ids[:120] and second == all_ids[120:]  # in order, resumed, nothing lost or repeated
    assert q(pg_conn, "SELECT last_id FROM etl_event_cursors WHERE consumer = 'billing'") == all_ids[-1]
    assert take(TailOptions(consumer="billing")) == []  # nothing new
    assert take(TailOptions(consumer="other", limit=3)) == all_ids[:3]  # a new consumer starts at the start
    assert take(TailOptions(after=all_ids[10], limit=2)) == all_ids[11:13]
    assert take(TailOptions(limit=5)) == all_ids[-5:]  # no cursor: the newest, like tail -n
    failed = [e["id"] for e in events(pg_conn, "event = 'snapshot_failed'")]
    assert take(TailOptions(after=0, event="snapshot_failed")) == failed and failed
    job = q(pg_conn, "SELECT job_id FROM backfill_jobs")
    assert take(TailOptions(after=0, job_id=job, limit=1000)) == all_ids
    assert take(TailOptions(after=0, job_id="no-such-job")) == []


def test_follow_sees_events_committed_after_it_started(
    pg_dsn: str, pg_conn: psycopg.Connection, tmp_path: Path
) -> None:
    cfg = make_cfg(pg_dsn, tmp_path)
    ids = [insert_snapshot(pg_conn, payload(f"HERO_F{i:03d}", Level=1), created_at=at(i)) for i in range(6)]
    seen: list[uuid.UUID] = []
    stop = threading.Event()
    ready = threading.Event()

    def handle(ev: outbox.Event) -> None:
        seen.append(ev.snapshot_id)
        if len(seen) == 6:
            stop.set()

    thread = threading.Thread(
        target=tail,
        args=(cfg, TailOptions(follow=True, poll_s=0.1), handle),
        kwargs={"stop": stop, "on_start": lambda _r: ready.set()},
    )
    thread.start()
    assert ready.wait(10)
    with pg_conn.transaction():
        apply_in_transaction(pg_conn, ids[:3], EtlSettings())
    with pg_conn.transaction():
        apply_in_transaction(pg_conn, ids[3:], EtlSettings())
    thread.join(20)
    assert not thread.is_alive() and sorted(seen) == sorted(ids)


def _old_events(conn: psycopg.Connection[Any], n: int, age: dt.timedelta) -> None:
    conn.execute(
        "INSERT INTO etl_events (event, snapshot_id, outcome, duration_ms, created_at)"
        " SELECT 'snapshot_processed', gen_random_uuid(), 'applied', 1, now() - %s FROM generate_series(1, %s)",
        [age, n],
    )


def test_retention_prunes_expired_events_in_bounded_batches(pg_conn: psycopg.Connection) -> None:
    _old_events(pg_conn, 25, dt.timedelta(days=8))
    _old_events(pg_conn, 5, dt.timedelta(days=6))  # younger than retain: kept
    week = 7 * 86400.0
    assert outbox.prune(pg_conn, week, 10) == 10  # one statement deletes at most its batch
    assert q(pg_conn, "SELECT count(*) FROM etl_events") == 20
    pruner = outbox.Pruner(lambda: pg_conn, week, 10, every_s=3600)
    assert pruner.tick() == 15 and pruner.batches == [10, 5]
    assert pruner.tick() == 0 and pruner.batches == [10, 5]  # not due again before every_s
    assert q(pg_conn, "SELECT count(*) FROM etl_events WHERE created_at < now() - interval '7 days'") == 0
    assert q(pg_conn, "SELECT count(*) FROM etl_events") == 5


def test_the_worker_loop_prunes_with_the_configured_retention(
    pg_dsn: str, pg_conn: psycopg.Connection, tmp_path: Path
) -> None:
    _old_events(pg_conn, 25, dt.timedelta(hours=3))
    _old_events(pg_conn, 4, dt.timedelta(minutes=30))
    cfg = make_cfg(pg_dsn, tmp_path, **{"events.retain": "2h", "events.prune_batch": 7})
    worker = QueueWorker(cfg, stop=threading.Event(), once=True)
    worker.run()
    assert worker.pruner.batches == [7, 7, 7, 4]
    assert q(pg_conn, "SELECT count(*) FROM etl_events") == 4


def test_run_control_loop_prunes(pg_dsn: str, pg_conn: psycopg.Connection, tmp_path: Path) -> None:
    load_corpus(pg_dsn)
    _old_events(pg_conn, 12, dt.timedelta(days=2))
    cfg = make_cfg(pg_dsn, tmp_path, **{"events.retain": "1d", "events.prune_batch": 5})
    run_job(cfg, from_ts=FROM, to_ts=TO, concurrency=1, force=True, reason="events")
    assert q(pg_conn, "SELECT count(*) FROM etl_events WHERE created_at < now() - interval '1 day'") == 0
    assert q(pg_conn, "SELECT count(*) FROM etl_events") == 300


@pytest.mark.parametrize("notify", [True, False])
def test_notify_once_per_batch_only_when_on(pg_dsn: str, pg_conn: psycopg.Connection, notify: bool) -> None:
    ids = [insert_snapshot(pg_conn, payload(f"HERO_N{i:03d}", Level=1), created_at=at(i)) for i in range(20)]
    with psycopg.connect(pg_dsn, autocommit=True) as listener:
        outbox.listen(listener)
        with pg_conn.transaction():
            apply_in_transaction(pg_conn, ids, EtlSettings(events_notify=notify))
        got = [(n.channel, n.payload) for n in listener.notifies(timeout=1.5)]
    newest = q(pg_conn, "SELECT max(id) FROM etl_events")
    assert q(pg_conn, "SELECT count(*) FROM etl_events") == 20
    assert got == ([(outbox.CHANNEL, str(newest))] if notify else [])


def test_event_ids_are_in_commit_order(pg_dsn: str, pg_conn: psycopg.Connection) -> None:
    """A batch that draws its ids later commits later: a cursor reader never sees a higher id before a lower
    one that is still to commit (the events lock), so it cannot skip one."""
    first = [insert_snapshot(pg_conn, payload(f"HERO_O{i:03d}", Level=1), created_at=at(i)) for i in range(3)]
    second = [insert_snapshot(pg_conn, payload(f"HERO_P{i:03d}", Level=1), created_at=at(10 + i)) for i in range(3)]
    done = threading.Event()
    with psycopg.connect(pg_dsn, autocommit=True) as a, psycopg.connect(pg_dsn, autocommit=True) as b:
        tx = a.transaction()
        tx.__enter__()
        apply_in_transaction(a, first, EtlSettings(job_id="a"))  # ids drawn, not committed

        def other() -> None:
            with b.transaction():
                apply_in_transaction(b, second, EtlSettings(job_id="b"))
            done.set()

        thread = threading.Thread(target=other)
        thread.start()
        time.sleep(1.0)
        assert not done.is_set()  # b waits for a's commit before it draws ids
        assert outbox.read(pg_conn, 0, limit=100) == []  # a reader sees nothing out of order meanwhile
        tx.__exit__(None, None, None)
        thread.join(20)
    assert done.is_set()
    got = outbox.read(pg_conn, 0, limit=100)
    assert [e.job_id for e in got] == ["a"] * 3 + ["b"] * 3
