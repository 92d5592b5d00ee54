"""The database-side gauges (connections vs max_connections, job status and backlog, queue depth) against a real
PostgreSQL: read from the tables, through the collector, the .prom file of a run and a running worker's file."""

from __future__ import annotations

import signal
import time
from pathlib import Path
from typing import Any

import psycopg
from opx_support import FROM, TO, cli, insert_snapshots, job_row, start_cli, wait_for
from prometheus_client.parser import text_string_to_metric_families

from starforge_backfill.dbmetrics import DatabaseCollector
from starforge_backfill.metrics import Metrics


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """{(sample name, sorted labels without `database`): value} from Prometheus text."""
    return {
        (s.name, tuple(sorted((k, v) for k, v in s.labels.items() if k != "database"))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def _job(conn: psycopg.Connection[Any], job_id: str, status: str, total: int, processed: int, failed: int) -> None:
    conn.execute(
        "INSERT INTO backfill_jobs (job_id, batch_size, status, total_count, processed_count, error_count)"
        " VALUES (%s, 100, %s, %s, %s, %s)",
        [job_id, status, total, processed, failed],
    )


def _queue(conn: psycopg.Connection[Any], qtype: str, status: str, n: int, due_ago_s: float = 0.0) -> None:
    conn.execute(
        "INSERT INTO queue_jobs (type, status, run_after)"
        " SELECT %s, %s, now() - make_interval(secs => %s) FROM generate_series(1, %s)",
        [qtype, status, due_ago_s, n],
    )


def test_collector_reads_connections_jobs_and_queue_from_the_tables(pg_conn: psycopg.Connection[Any]) -> None:
    _job(pg_conn, "j-running", "running", 100, 30, 5)
    _job(pg_conn, "j-paused", "paused", 10, 2, 0)
    _job(pg_conn, "j-done", "done", 7, 7, 0)
    _job(pg_conn, "j-old-done", "done", 7, 7, 0)
    pg_conn.execute("UPDATE backfill_jobs SET updated_at = now() - interval '2 days' WHERE job_id = 'j-old-done'")
    _queue(pg_conn, "process_snapshot", "pending", 3, due_ago_s=600)
    _queue(pg_conn, "process_snapshot", "pending", 2, due_ago_s=-3600)  # not due yet: counted, not aged
    _queue(pg_conn, "backfill_range", "failed", 1, due_ago_s=9999)

    metrics = Metrics(command="test")
    collector = DatabaseCollector("db:5432/x")
    metrics.registry.register(collector)
    assert "starforge_backfill_db_connections" not in metrics.text()  # nothing before the first sample
    collector.sample(pg_conn)
    got = samples(metrics.text())

    max_conn = int(pg_conn.execute("SHOW max_connections").fetchone()[0])  # type: ignore[index]
    assert got[("starforge_backfill_db_max_connections", ())] == max_conn
    assert 1 <= got[("starforge_backfill_db_connections", ())] <= max_conn
    assert got[("starforge_backfill_job_remaining_snapshots", (("job_id", "j-running"),))] == 65
    assert got[("starforge_backfill_job_remaining_snapshots", (("job_id", "j-paused"),))] == 8
    assert got[("starforge_backfill_job_remaining_snapshots", (("job_id", "j-done"),))] == 0
    assert ("starforge_backfill_job_remaining_snapshots", (("job_id", "j-old-done"),)) not in got
    status = {labels: v for (name, labels), v in got.items() if name == "starforge_backfill_job_status" and v == 1}
    assert set(status) == {
        (("job_id", "j-running"), ("status", "running")),
        (("job_id", "j-paused"), ("status", "paused")),
        (("job_id", "j-done"), ("status", "done")),
    }
    assert got[("starforge_backfill_queue_jobs", (("status", "pending"), ("type", "process_snapshot")))] == 5
    assert got[("starforge_backfill_queue_jobs", (("status", "failed"), ("type", "backfill_range")))] == 1
    age = got[("starforge_backfill_queue_oldest_pending_age_seconds", (("type", "process_snapshot"),))]
    assert 600 <= age < 700
    assert got[("starforge_backfill_queue_oldest_pending_age_seconds", (("type", "backfill_range"),))] == 0

    # the next sample replaces the whole set: a job that left the window is gone, not stale
    pg_conn.execute("UPDATE backfill_jobs SET updated_at = now() - interval '2 days', status = 'done'")
    collector.sample(pg_conn)
    assert "j-running" not in metrics.text()


def test_a_run_metrics_file_carries_the_database_gauges(pg_dsn: str, tmp_path: Path) -> None:
    insert_snapshots(pg_dsn, 40, bad_every=10)
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        _queue(conn, "other", "pending", 4, due_ago_s=120)
        max_conn = int(conn.execute("SHOW max_connections").fetchone()[0])  # type: ignore[index]
    prom = tmp_path / "m.prom"
    args = ["run", "--from", FROM, "--to", TO, "--force", "--reason", "t"]
    res = cli("--dsn", pg_dsn, "--metrics-file", str(prom), *args)
    assert res.exit_code == 1, res.output  # 10% failed on purpose: over the 1% error budget, exit 1
    job_id = job_row(pg_dsn)["job_id"]
    got = samples(prom.read_text())
    assert got[("starforge_backfill_db_max_connections", ())] == max_conn
    assert got[("starforge_backfill_db_connections", ())] >= 1
    assert got[("starforge_backfill_queue_jobs", (("status", "pending"), ("type", "other")))] == 4
    # the last sample, taken at the end for the final write, sees the finished job
    assert got[("starforge_backfill_job_status", (("job_id", job_id), ("status", "done")))] == 1
    assert got[("starforge_backfill_job_status", (("job_id", job_id), ("status", "running")))] == 0
    assert got[("starforge_backfill_job_remaining_snapshots", (("job_id", job_id),))] == 0
    updated = got[("starforge_backfill_metrics_updated_timestamp_seconds", (("command", "run"),))]
    assert abs(updated - time.time()) < 60


def test_an_idle_worker_keeps_its_file_fresh_and_follows_the_queue(pg_dsn: str, tmp_path: Path) -> None:
    """No batch finishes, yet the file is rewritten with fresh database figures (heartbeat, queue depth)."""
    prom = tmp_path / "w.prom"
    proc = start_cli(
        ["--dsn", pg_dsn, "--metrics-file", str(prom), "worker", "--poll", "0.2"],
        cwd=tmp_path,
        STARFORGE_METRICS_EVERY="0.1",
        STARFORGE_METRICS_DB_EVERY="0.2",
    )

    def read() -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        try:
            return samples(prom.read_text())
        except (FileNotFoundError, ValueError):
            return {}

    key = ("starforge_backfill_queue_jobs", (("status", "pending"), ("type", "other")))
    beat = ("starforge_backfill_metrics_updated_timestamp_seconds", (("command", "worker"),))
    try:
        wait_for(lambda: beat in read(), timeout=30, what="the worker's first metrics write")
        first = read()[beat]
        assert key not in read()
        with psycopg.connect(pg_dsn, autocommit=True) as conn:
            _queue(conn, "other", "pending", 3)
        wait_for(lambda: read().get(key) == 3, timeout=30, what="the queue depth in the worker's file")
        wait_for(lambda: read()[beat] > first, timeout=30, what="the heartbeat to move")
    finally:
        proc.send_signal(signal.SIGTERM)
        _out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err  # SIGTERM: finish and exit 0 (what systemd expects)
    assert ("starforge_backfill_command_finished_timestamp_seconds", (("command", "worker"),)) in read()


def test_a_failing_database_sample_never_breaks_the_command() -> None:
    from starforge_backfill.dbmetrics import DatabaseSampler

    def broken() -> psycopg.Connection[Any]:
        raise psycopg.OperationalError("connection refused")

    metrics = Metrics(command="test")
    sampler = DatabaseSampler(metrics, broken, "nowhere:5432/x", every_s=60)
    assert sampler.sample_once() is False
    sampler.stop()
    assert "starforge_backfill_db_connections" not in metrics.text()
