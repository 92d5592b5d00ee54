"""`guard set` from the command line: one `error:` line and exit 2 on a bad key or value, nothing written;
the overrides land on the job (a real PostgreSQL) with a `guard_set` event, and `--json` has its shape."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psycopg
from click.testing import CliRunner
from engine_state import load_corpus

from starforge_backfill.cli import main

BIN = Path(sys.executable).with_name("starforge-backfill")


def _job(dsn: str) -> str:
    with psycopg.connect(dsn, autocommit=True) as c:
        c.execute("INSERT INTO backfill_jobs (job_id, batch_size, status) VALUES ('cli-guard', 10, 'running')")
    return "cli-guard"


def test_guard_set_refuses_a_bad_key_with_exit_2_and_writes_nothing(pg_dsn: str) -> None:
    job = _job(pg_dsn)
    res = CliRunner().invoke(main, ["--dsn", pg_dsn, "guard", "set", "probe_ratio=2", "--job-id", job])
    assert res.exit_code == 2
    lines = res.output.strip().splitlines()
    assert lines[0] == "error: unknown guard threshold 'probe_ratio'" and lines[1].startswith("hint: keys: ")
    res = CliRunner().invoke(main, ["--dsn", pg_dsn, "guard", "set", "hold_recover=soon", "--job-id", job])
    assert res.exit_code == 2 and res.output.startswith("error: ") and "hold_recover" in res.output
    with psycopg.connect(pg_dsn) as c:
        assert c.execute("SELECT guard_overrides FROM backfill_jobs").fetchone() == ({},)
        assert c.execute("SELECT count(*) FROM backfill_events WHERE kind = 'guard_set'").fetchone() == (0,)


def test_guard_set_stores_the_overrides_and_records_the_operator(pg_dsn: str) -> None:
    job = _job(pg_dsn)
    args = [
        "--dsn",
        pg_dsn,
        "--operator",
        "alice",
        "--json",
        "guard",
        "set",
        "probe_latency_ratio_max=2",
        "hold_recover=30s",
        "--job-id",
        job,
    ]
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out == {
        "job_id": job,
        "overrides": {"probe_latency_ratio_max": 2.0, "hold_recover_s": 30.0},
        "all_overrides": {"probe_latency_ratio_max": 2.0, "hold_recover_s": 30.0},
    }
    with psycopg.connect(pg_dsn) as c:
        row = c.execute("SELECT operator, message FROM backfill_events WHERE kind = 'guard_set'").fetchone()
    assert row == ("alice", "guard set probe_latency_ratio_max=2.0 hold_recover_s=30.0")


GUARDED = """\
etl:
  batch_size: 2
job:
  chunk_size: 40
throttle:
  failure_rate_max: 0.05
  max_connections_ratio: 1.0
  probe_sql: {probe}
  probe_floor_ms: 30
  probe_latency_ratio_max: 0
  probe_latency_ratio_critical: 10
  probe_min_tps: 0
  check_every: 100ms
  sleep: 100ms
  hold_recover: 500ms
  guard_step: 200ms
  max_batch_size: 2
  min_batch_size: 1
gates:
  require_preflight: false
  require_canary: false
  ramp: [64]
"""


def test_sighup_reloads_the_guard_thresholds_of_a_running_job(pg_dsn: str, tmp_path: Path) -> None:
    load_corpus(pg_dsn)
    config = tmp_path / "starforge-backfill.yaml"
    config.write_text(GUARDED.format(probe="SELECT 1"))
    argv = [
        str(BIN),
        "-c",
        str(config),
        "--dsn",
        pg_dsn,
        "--artifacts-dir",
        str(tmp_path / "a"),
        "run",
        "--from",
        "2024-01-01T00:00:00Z",
        "--to",
        "2024-07-01T00:00:00Z",
        "--concurrency",
        "1",
    ]
    env = {k: v for k, v in os.environ.items() if k != "STARFORGE_DATABASE_URL"}
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=tmp_path)
    try:
        job = _wait(lambda: _one(pg_dsn, "SELECT job_id FROM guard_readings LIMIT 1"), "the guard's first reading")
        config.write_text(GUARDED.format(probe="SELECT pg_sleep(0.08)"))
        proc.send_signal(signal.SIGHUP)
        _wait(lambda: _one(pg_dsn, "SELECT 1 FROM backfill_events WHERE kind = 'guard_reload'"), "the reload")
        _wait(
            lambda: _one(pg_dsn, "SELECT 1 FROM backfill_events WHERE kind = 'guard' AND message LIKE 'guard hold%%'"),
            "a hold on the reloaded probe",
        )
        config.write_text(GUARDED.format(probe="SELECT 1"))
        proc.send_signal(signal.SIGHUP)
        _out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert "SIGHUP: guard thresholds reloaded: probe_sql='SELECT pg_sleep(0.08)'" in err
    with psycopg.connect(pg_dsn) as c:
        reloads = [
            r[0]
            for r in c.execute(
                "SELECT message FROM backfill_events WHERE job_id = %s AND kind = 'guard_reload' ORDER BY id", [job]
            )
        ]
        done = c.execute("SELECT status FROM backfill_jobs WHERE job_id = %s", [job]).fetchone()
    assert reloads == [
        "guard thresholds reloaded (SIGHUP): probe_sql='SELECT pg_sleep(0.08)'",
        "guard thresholds reloaded (SIGHUP): probe_sql='SELECT 1'",
    ]
    assert done == ("done",)


def _one(dsn: str, query: str) -> Any:
    with psycopg.connect(dsn, autocommit=True) as c:
        row = c.execute(query).fetchone()  # type: ignore[arg-type]
    return row[0] if row else None


def _wait(predicate: Any, what: str, timeout: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")
