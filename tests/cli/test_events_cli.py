"""`events tail` as a process: JSON lines, --follow seeing a batch committed while it waits, Ctrl-C exiting
130 with the consumer's cursor stored, bad input exiting 2; against a real PostgreSQL."""

from __future__ import annotations

import json
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import psycopg
from opx_support import command, run_cli, subprocess_env
from test_json_shapes import documented

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration"))
from helpers import at, insert_snapshot, payload

from starforge_backfill.etl.pipeline import EtlSettings, apply_in_transaction

KEYS = {
    "id",
    "event",
    "snapshot_id",
    "namecode",
    "job_id",
    "outcome",
    "error_type",
    "duration_ms",
    "rows_written",
    "created_at",
}


def _apply(conn: psycopg.Connection[Any], ids: list[Any], job_id: str) -> None:
    with conn.transaction():
        apply_in_transaction(conn, ids, EtlSettings(job_id=job_id))


def _snapshots(conn: psycopg.Connection[Any], n: int, start: int = 0) -> list[Any]:
    return [
        insert_snapshot(conn, payload(f"HERO_C{i:03d}", Level=2), created_at=at(i)) for i in range(start, start + n)
    ]


def test_tail_json_lines_shape(pg_dsn: str, pg_conn: psycopg.Connection, tmp_path: Path) -> None:
    good = _snapshots(pg_conn, 6)
    bad = insert_snapshot(pg_conn, {"ProfileData": []}, namecode="HERO_BAD", created_at=at(50))
    _apply(pg_conn, [*good, bad], "job-cli")
    res = run_cli(["--dsn", pg_dsn, "--json", "events", "tail", "--limit", "5"], cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    lines = [json.loads(line) for line in res.stdout.splitlines()]
    assert len(lines) == 5 and all(set(d) == KEYS == documented()["events tail"] for d in lines)
    assert [d["id"] for d in lines] == sorted(d["id"] for d in lines)
    last = lines[-1]  # the newest five: the failure is last
    assert (last["event"], last["outcome"], last["error_type"], last["snapshot_id"]) == (
        "snapshot_failed",
        "failed",
        "PARSE_ERROR",
        str(bad),
    )
    first = lines[0]
    assert first["event"] == "snapshot_processed" and first["job_id"] == "job-cli" and first["error_type"] is None
    assert isinstance(first["duration_ms"], float) and first["rows_written"] == 1  # the summary row
    human = run_cli(["--dsn", pg_dsn, "events", "tail", "--event", "snapshot_failed"], cwd=tmp_path)
    assert human.returncode == 0, human.stderr
    assert human.stdout.count("\n") == 1 and "snapshot_failed" in human.stdout and "PARSE_ERROR" in human.stdout


def test_follow_sees_new_batches_and_ctrl_c_exits_130_with_the_cursor_stored(
    pg_dsn: str, pg_conn: psycopg.Connection, tmp_path: Path
) -> None:
    _apply(pg_conn, _snapshots(pg_conn, 3), "before")
    argv = [*command(), "--dsn", pg_dsn, "--json", "events", "tail", "--follow", "--consumer", "ops", "--poll", "0.2"]
    proc = subprocess.Popen(
        argv,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=subprocess_env(),
        cwd=tmp_path,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(x) for x in proc.stdout or []], daemon=True).start()

    def take(n: int) -> list[dict[str, Any]]:
        out = []
        deadline = time.monotonic() + 30
        while len(out) < n and time.monotonic() < deadline:
            try:
                out.append(json.loads(lines.get(timeout=0.5)))
            except queue.Empty:
                assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        return out

    try:
        backlog = take(3)  # a new consumer starts at the first event kept
        assert [d["job_id"] for d in backlog] == ["before"] * 3
        later = _snapshots(pg_conn, 4, start=10)
        _apply(pg_conn, later, "after")  # committed while tail waits
        seen = take(4)
        assert [d["snapshot_id"] for d in seen] == [str(s) for s in later]
        time.sleep(0.5)  # the cursor is stored after the page
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    assert "interrupted" in err and "Traceback" not in err
    stored = pg_conn.execute("SELECT last_id FROM etl_event_cursors WHERE consumer = 'ops'").fetchone()
    assert stored is not None and stored[0] == seen[-1]["id"]
    again = run_cli(["--dsn", pg_dsn, "--json", "events", "tail", "--consumer", "ops"], cwd=tmp_path)
    assert again.returncode == 0 and again.stdout == ""  # resumed after the last event handed on


def test_follow_ends_cleanly_on_sigterm_with_the_cursor_stored(
    pg_dsn: str, pg_conn: psycopg.Connection, tmp_path: Path
) -> None:
    """A service manager's stop (SIGTERM) ends a follower with exit 0, its consumer's cursor stored."""
    _apply(pg_conn, _snapshots(pg_conn, 2), "before")
    argv = [*command(), "--dsn", pg_dsn, "--json", "events", "tail", "--follow", "--consumer", "svc", "--poll", "0.2"]
    proc = subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=subprocess_env(), cwd=tmp_path
    )
    try:
        seen = [json.loads(proc.stdout.readline()) for _ in range(2)] if proc.stdout else []
        time.sleep(0.5)  # the cursor is stored after the page
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert "2 event(s)" in err and "Traceback" not in err
    stored = pg_conn.execute("SELECT last_id FROM etl_event_cursors WHERE consumer = 'svc'").fetchone()
    assert stored is not None and stored[0] == seen[-1]["id"]


def test_bad_input_is_a_usage_error(pg_dsn: str, tmp_path: Path) -> None:
    for args, needle in (
        (["--event", "bogus"], "--event"),
        (["--after", "-1"], "--after -1"),
        (["--limit", "0"], "--limit"),
        (["--consumer", " "], "--consumer"),
    ):
        res = run_cli(["--dsn", pg_dsn, "events", "tail", *args], cwd=tmp_path)
        assert res.returncode == 2, (args, res.stderr)
        assert needle in res.stderr and res.stdout == ""


def test_a_database_not_upgraded_with_db_init_exits_3(pg_dsn: str, pg_conn: psycopg.Connection, tmp_path: Path) -> None:
    pg_conn.execute("DROP TABLE etl_events, etl_event_cursors")  # a schema from before 004_events.sql
    res = run_cli(["--dsn", pg_dsn, "events", "tail"], cwd=tmp_path)
    assert res.returncode == 3, res.stderr
    assert res.stderr.startswith("error: ") and "etl_events" in res.stderr and "db init" in res.stderr
    assert run_cli(["--dsn", pg_dsn, "db", "init"], cwd=tmp_path).returncode == 0
    assert run_cli(["--dsn", pg_dsn, "events", "tail"], cwd=tmp_path).returncode == 0
