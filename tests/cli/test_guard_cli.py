"""`guard set` from the command line: one `error:` line and exit 2 on a bad key or value, nothing written;
the overrides land on the job (a real PostgreSQL) with a `guard_set` event, and `--json` has its shape."""

from __future__ import annotations

import json

import psycopg
from click.testing import CliRunner

from starforge_backfill.cli import main


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
