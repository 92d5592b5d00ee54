"""The job engine through the console script, one process per command, on a real PostgreSQL.

What only real processes can show: `kill -9` at random moments, Ctrl-C, two `run`s on one job, a
PostgreSQL restart in the middle of a run, and the queue `worker` (`--once`, SIGTERM). Every finished job is
compared with a clean in-process run of the same corpus, made once per module in a database of its own.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from engine_state import assert_exact, job_row, load_corpus, scalar, scratch_database, table_state
from running import run_job

from starforge_backfill import jobs, schema
from starforge_backfill.config import load_config
from starforge_backfill.embedded import EmbeddedPostgres
from starforge_backfill.errors import DatabaseUnavailable

FROM, TO = "2024-01-01T00:00:00Z", "2024-07-01T00:00:00Z"
RANGE = ("--from", FROM, "--to", TO)
BIN = Path(sys.executable).with_name("starforge-backfill")
CONFIG = """\
etl:
  batch_size: 10
  batch_max_bytes: {max_bytes}
job:
  chunk_size: 40
throttle:
  enabled: false
  failure_rate_max: 0.05   # SPEC fails 2% of its snapshots on purpose: within this budget
gates:
  require_preflight: false
  require_canary: false
  ramp: [64]   # start at the requested C (the ramp has its own test)
retry:
  max_attempts: 100
  max_delay: 90s
  wait_initial: 50ms
  wait_max: 500ms
"""


# ---- processes -----------------------------------------------------------------------------------------------


def write_config(folder: Path, name: str = "starforge-backfill.yaml", max_bytes: str = "64MiB") -> Path:
    path = folder / name
    path.write_text(CONFIG.format(max_bytes=max_bytes))
    return path


def argv(dsn: str, folder: Path, *args: str, config: Path | None = None, json_out: bool = False) -> list[str]:
    """Global options (before the subcommand), then the subcommand and its options."""
    cfg = config or write_config(folder)
    out = [str(BIN), "-c", str(cfg), "--dsn", dsn, "--artifacts-dir", str(folder / "artifacts")]
    return out + (["--json"] if json_out else []) + list(args)


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("STARFORGE_DATABASE_URL", None)
    return env


def _default_sigint() -> None:  # a background shell may have left SIGINT ignored: Ctrl-C must reach Python
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def cli(dsn: str, folder: Path, *args: str, timeout: float = 120, **kw: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv(dsn, folder, *args, **kw), capture_output=True, text=True, timeout=timeout, env=_env(), cwd=folder
    )


def start(dsn: str, folder: Path, *args: str, **kw: Any) -> subprocess.Popen[str]:
    return subprocess.Popen(
        argv(dsn, folder, *args, **kw),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(),
        cwd=folder,
        preexec_fn=_default_sigint,
    )


def finish(proc: subprocess.Popen[str], timeout: float = 120) -> tuple[int, str, str]:
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        raise AssertionError(f"the process did not finish in {timeout}s; stderr:\n{err}") from None
    return proc.returncode, out, err


# ---- reading the database back: tests/engine_state.py ---------------------------------------------------


def newest(dsn: str) -> tuple[str, int] | None:
    """(job id, snapshots handled) of the newest job, or None (also while the server is away)."""
    try:
        with psycopg.connect(dsn, autocommit=True, connect_timeout=2) as conn:
            row = conn.execute(
                "SELECT job_id, processed_count + error_count FROM backfill_jobs ORDER BY created_at DESC LIMIT 1"
            ).fetchone()
    except psycopg.OperationalError:
        return None
    return (row[0], int(row[1])) if row else None


def wait_for(predicate: Callable[[], Any], timeout: float = 60.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.03)
    raise AssertionError(f"timed out waiting for {what}")


def wait_progress(dsn: str, at_least: int, proc: subprocess.Popen[str] | None = None) -> tuple[str, int]:
    """Wait until the newest job handled `at_least` snapshots (the process must still be running)."""

    def ready() -> tuple[str, int] | None:
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"the process ended early (exit {proc.returncode}): {proc.communicate()[1]}")
        found = newest(dsn)
        return found if found and found[1] >= at_least else None

    return wait_for(ready, what=f"{at_least} snapshots handled")


@pytest.fixture(scope="module")
def clean_state(server_dsn: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, list[tuple]]]:
    """The tables after one clean in-process C=1 run of SPEC, in a database of its own (dropped afterwards)."""
    with scratch_database(server_dsn, "sf_engine_cli_clean") as dsn:
        load_corpus(dsn)
        folder = tmp_path_factory.mktemp("clean")
        cfg = load_config(write_config(folder), overrides={"database.dsn": dsn, "artifacts_dir": str(folder)})
        res = run_job(cfg, from_ts=FROM, to_ts=TO, concurrency=1)
        assert res.outcome == "done"
        assert_exact(dsn, res.job["job_id"])
        yield table_state(dsn)


# ---- crashes ---------------------------------------------------------------------------------------------------


def test_kill_9_at_random_moments_then_run_again(pg_dsn: str, tmp_path: Path, clean_state: dict) -> None:
    load_corpus(pg_dsn)
    rnd = random.Random(20241128)
    handled = 0
    job_id = None
    for _ in range(3):
        proc = start(pg_dsn, tmp_path, "run", *RANGE, "--concurrency", "2")
        job_id, handled = wait_progress(pg_dsn, handled + rnd.randint(5, 25), proc)
        # mid-batch, between batches, mid-commit: wherever it lands (a batch of 10 takes tens of ms: a longer
        # sleep let the whole run finish before the kill)
        time.sleep(rnd.uniform(0.0, 0.08))
        assert proc.poll() is None, "the run finished before it could be killed"
        proc.send_signal(signal.SIGKILL)
        assert finish(proc)[0] == -signal.SIGKILL
        found = newest(pg_dsn)
        assert found is not None and found[0] == job_id and handled <= found[1] < 300
        handled = found[1]
        # counters and batch log agree after every crash: a batch is committed with its checkpoint or not at all
        assert scalar(pg_dsn, "SELECT coalesce(sum(snapshots), 0) FROM backfill_batches") == handled
    code, _out, err = finish(start(pg_dsn, tmp_path, "run", *RANGE, "--concurrency", "2"))
    assert code == 0, err
    assert f"resuming job {job_id}" in err
    assert scalar(pg_dsn, "SELECT count(*) FROM backfill_jobs") == 1
    assert job_id is not None
    assert_exact(pg_dsn, job_id)
    assert table_state(pg_dsn) == clean_state


def test_two_runs_on_one_job_finish_it_together(pg_dsn: str, tmp_path: Path, clean_state: dict) -> None:
    load_corpus(pg_dsn)
    first = start(pg_dsn, tmp_path, "run", *RANGE, "--concurrency", "1")
    job_id, _ = wait_progress(pg_dsn, 1, first)
    # a second run may join the job only by raising its concurrency explicitly (the raise is recorded)
    second = start(pg_dsn, tmp_path, "run", *RANGE, "--concurrency", "2")
    (code1, _o1, err1), (code2, _o2, err2) = finish(first), finish(second)
    assert code1 == 0, err1
    assert code2 == 0, err2
    assert f"resuming job {job_id}" in err2 and "live worker(s) elsewhere: adding 1, up to its concurrency 2" in err2
    assert scalar(pg_dsn, "SELECT concurrency FROM backfill_jobs") == 2
    assert scalar(pg_dsn, "SELECT count(*) FROM backfill_jobs") == 1
    workers = scalar(pg_dsn, "SELECT array_agg(DISTINCT worker) FROM backfill_batches")
    pids = {w.split(":")[1] for w in workers}
    assert pids == {str(first.pid), str(second.pid)}  # both did work
    assert_exact(pg_dsn, job_id)  # batches sum to the snapshots: none was processed twice
    assert table_state(pg_dsn) == clean_state


def test_ctrl_c_exits_130_with_the_checkpoint_saved(pg_dsn: str, tmp_path: Path, clean_state: dict) -> None:
    load_corpus(pg_dsn)
    proc = start(pg_dsn, tmp_path, "run", *RANGE, "--concurrency", "2")
    job_id, _ = wait_progress(pg_dsn, 20, proc)
    proc.send_signal(signal.SIGINT)
    code, _out, err = finish(proc, timeout=30)
    assert code == 130, err
    job = job_row(pg_dsn, job_id)
    handled = job["processed_count"] + job["error_count"]
    assert job["status"] == "running" and 20 <= handled < 300  # interrupted, resumable
    assert job["last_checkpoint"] is not None
    assert scalar(pg_dsn, "SELECT sum(snapshots) FROM backfill_batches") == handled
    assert scalar(pg_dsn, "SELECT count(*) FROM backfill_chunks WHERE status = 'running'") == 0  # released
    assert scalar(pg_dsn, "SELECT count(*) FROM backfill_events WHERE kind = 'interrupted'") == 1
    res = cli(pg_dsn, tmp_path, "run", "--job-id", job_id, "--concurrency", "2")
    assert res.returncode == 0, res.stderr
    assert f"resuming job {job_id} ({job['processed_count']} processed" in res.stderr
    assert_exact(pg_dsn, job_id)
    assert table_state(pg_dsn) == clean_state


def test_a_postgresql_restart_mid_run_is_survived(tmp_path: Path, clean_state: dict) -> None:
    try:
        pg = EmbeddedPostgres()
        dsn = pg.start()
    except DatabaseUnavailable as exc:
        pytest.skip(f"no embedded PostgreSQL: {exc}")
    try:
        schema.init_db(dsn)
        load_corpus(dsn)
        proc = start(dsn, tmp_path, "run", *RANGE, "--concurrency", "2")
        job_id, _ = wait_progress(dsn, 30, proc)
        try:
            pg.restart("fast")
        except DatabaseUnavailable as exc:
            if "system launcher" in str(exc):
                proc.kill()
                pytest.skip(str(exc))
            raise
        before = newest(dsn)
        assert before is not None and before[1] < 300, "the run ended before the restart"
        code, _out, err = finish(proc)
        assert code == 0, err
        assert_exact(dsn, job_id)
        assert table_state(dsn) == clean_state
    finally:
        pg.stop()


# ---- pause, resume guards, status ----------------------------------------------------------------------------


def test_pause_all_then_resume_refuses_another_config_unless_forced(pg_dsn: str, tmp_path: Path) -> None:
    load_corpus(pg_dsn)
    proc = start(pg_dsn, tmp_path, "run", *RANGE, "--concurrency", "1")
    job_id, _ = wait_progress(pg_dsn, 10, proc)
    paused = cli(pg_dsn, tmp_path, "pause", "--all", "--reason", "maintenance window", json_out=True)
    assert paused.returncode == 0, paused.stderr
    assert [j["job_id"] for j in json.loads(paused.stdout)["jobs"]] == [job_id]
    code, _out, err = finish(proc, timeout=30)
    assert code == 4, err  # the run stops at its next batch boundary: paused
    status = json.loads(cli(pg_dsn, tmp_path, "status", "--job-id", job_id, json_out=True).stdout)
    assert status["jobs"][0]["status"] == "paused"
    assert status["jobs"][0]["status_reason"] == "maintenance window"

    other = write_config(tmp_path, "other.yaml", max_bytes="32MiB")  # a different config fingerprint
    for args in (("--job-id", job_id), RANGE):
        refused = cli(pg_dsn, tmp_path, "run", *args, config=other)
        assert refused.returncode == 1, refused.stderr
        assert f"refusing to resume job {job_id}" in refused.stderr and "fingerprint" in refused.stderr
    no_reason = cli(pg_dsn, tmp_path, "run", "--job-id", job_id, "--force", config=other)
    assert no_reason.returncode == 2 and "--reason" in no_reason.stderr
    forced = cli(pg_dsn, tmp_path, "resume", "--job-id", job_id, "--force", "--reason", "smaller batches", config=other)
    assert forced.returncode == 0, forced.stderr
    assert f"resuming job {job_id}" in forced.stderr
    assert_exact(pg_dsn, job_id)
    assert cli(pg_dsn, tmp_path, "pause", "--all").returncode == 0  # nothing running: not an error


def test_concurrency_above_the_connection_budget_is_refused(pg_dsn: str, tmp_path: Path) -> None:
    max_conn = int(scalar(pg_dsn, "SHOW max_connections"))
    res = cli(pg_dsn, tmp_path, "run", *RANGE, "--concurrency", str(min(256, max_conn)))  # budget: half of it
    assert res.returncode == 2, res.stderr
    assert "max_connections" in res.stderr and "hint:" in res.stderr
    assert scalar(pg_dsn, "SELECT count(*) FROM backfill_jobs") == 0


def test_status_json_has_the_documented_shape_newest_first(pg_dsn: str, tmp_path: Path) -> None:
    load_corpus(pg_dsn)
    ran = []
    for lo, hi in (("2024-01-01", "2024-01-20"), ("2024-01-20", "2024-02-10")):
        res = cli(pg_dsn, tmp_path, "run", "--from", lo, "--to", hi, json_out=True)
        assert res.returncode == 0, res.stderr
        body = json.loads(res.stdout)
        assert body["status"] == "done" and body["run"]["outcome"] == "done"
        ran.append(body["job_id"])
    res = cli(pg_dsn, tmp_path, "status", json_out=True)
    assert res.returncode == 0, res.stderr
    body = json.loads(res.stdout)
    assert list(body) == ["jobs"]
    assert [j["job_id"] for j in body["jobs"]] == ran[::-1]  # newest first
    for j in body["jobs"]:
        assert set(jobs.STATUS_FIELDS) <= set(j)
        assert isinstance(j["job_id"], str) and j["status"] == "done" and j["mode"] == "run"
        assert isinstance(j["processed_count"], int) and isinstance(j["error_count"], int)
        assert j["processed_count"] + j["error_count"] == j["total_count"] > 0
        assert {"created_at", "id", "chunk"} <= set(j["last_checkpoint"])
        assert j["from_ts"].startswith("2024-01-") or j["from_ts"].startswith("2024-02-")
        stamps = [dt.datetime.fromisoformat(j[k]) for k in ("from_ts", "to_ts", "started_at", "finished_at")]
        assert stamps[0] < stamps[1] and stamps[2] <= stamps[3]
    one = json.loads(cli(pg_dsn, tmp_path, "status", "--job-id", ran[0], json_out=True).stdout)
    assert [j["job_id"] for j in one["jobs"]] == [ran[0]]
    assert cli(pg_dsn, tmp_path, "status", "--job-id", "run-nope").returncode == 2


# ---- the queue worker -----------------------------------------------------------------------------------------

# The runbook's INSERT (runbooks/BACKFILL.md, "The queue_jobs path"), with small batches: a backfill_range row
# asks a worker to create (and work) a job for a range.
QUEUE_RANGE = (
    "INSERT INTO queue_jobs (id, type, payload, priority, attempts, max_attempts, status, run_after, created_at,"
    " updated_at) VALUES (gen_random_uuid(), 'backfill_range', jsonb_build_object('from_created_at', %s::text,"
    " 'to_created_at', %s::text, 'batch_size', 10, 'owner', 'data-team')::jsonb, 0, 0, 5, 'pending', now(), now(),"
    " now()) RETURNING id"
)
QUEUE_SNAPSHOT = (
    "INSERT INTO queue_jobs (type, payload) VALUES ('process_snapshot', "
    "jsonb_build_object('snapshot_id', %s::text)) RETURNING id"
)


def test_worker_once_drains_the_queue(pg_dsn: str, tmp_path: Path) -> None:
    load_corpus(pg_dsn)
    split = "2024-04-01T00:00:00Z"
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        queued = conn.execute(QUEUE_RANGE, [FROM, split]).fetchone()[0]  # type: ignore[index]
        lone = conn.execute(
            "SELECT id FROM hero_snapshots WHERE created_at >= %s ORDER BY created_at DESC LIMIT 1", [split]
        ).fetchone()[0]  # type: ignore[index]
        conn.execute(QUEUE_SNAPSHOT, [lone])
        in_range = conn.execute("SELECT count(*) FROM hero_snapshots WHERE created_at < %s", [split]).fetchone()[0]  # type: ignore[index]
    res = cli(pg_dsn, tmp_path, "worker", "--once", "--poll", "0.2", json_out=True)
    assert res.returncode == 0, res.stderr
    stats = json.loads(res.stdout)
    job_id = f"queue-{queued}"
    assert stats["queue_done"] == 2 and stats["queue_failed"] == 0
    assert stats["jobs_created"] == [job_id] and stats["jobs_worked"] == [job_id]
    assert scalar(pg_dsn, "SELECT array_agg(DISTINCT status) FROM queue_jobs") == ["done"]
    job = assert_exact(pg_dsn, job_id, total=in_range)
    assert job["mode"] == "queue" and job["owner"] == "data-team" and job["batch_size"] == 10
    assert stats["processed"] + stats["failed"] == in_range + 1
    assert scalar(
        pg_dsn, "SELECT processed_at IS NOT NULL OR error_count = 1 FROM hero_snapshots WHERE id = %s", [lone]
    )
    untouched = (
        "SELECT count(*) FROM hero_snapshots WHERE created_at >= %s AND processed_at IS NULL AND error_count = 0"
    )
    assert scalar(pg_dsn, untouched, [split]) == 300 - in_range - 1
    again = cli(pg_dsn, tmp_path, "worker", "--once", json_out=True)  # nothing left: exits at once
    assert again.returncode == 0 and json.loads(again.stdout)["queue_done"] == 0


def test_worker_exits_0_on_sigterm_after_its_current_batch(pg_dsn: str, tmp_path: Path) -> None:
    load_corpus(pg_dsn)
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        queued = conn.execute(QUEUE_RANGE, [FROM, TO]).fetchone()[0]  # type: ignore[index]
    job_id = f"queue-{queued}"
    proc = start(pg_dsn, tmp_path, "worker", "--poll", "0.2")
    wait_progress(pg_dsn, 20, proc)
    at_signal = scalar(pg_dsn, "SELECT sum(snapshots) FROM backfill_batches")
    proc.send_signal(signal.SIGTERM)
    code, _out, err = finish(proc, timeout=30)
    assert code == 0, err
    assert "SIGTERM: finishing the current batch" in err
    job = job_row(pg_dsn, job_id)
    handled = job["processed_count"] + job["error_count"]
    assert job["status"] == "running" and handled < 300
    # the batch in flight (batch_size 10), plus at most one that committed while the signal was on its way
    assert handled - at_signal <= 20
    assert scalar(pg_dsn, "SELECT count(*) FROM backfill_chunks WHERE status = 'running'") == 0  # released
    res = cli(pg_dsn, tmp_path, "worker", "--once")
    assert res.returncode == 0, res.stderr
    assert_exact(pg_dsn, job_id)
