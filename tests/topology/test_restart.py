"""Riding through an outage shorter than `retry.max_delay` with the default retry settings: PostgreSQL (a
server of the test's own) or PgBouncer stopped for a few seconds mid-run, then back. The run exits 0 with
the tables of a clean run, and the outage is one event, not one per attempt or per worker."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest
from engine_state import assert_exact, load_corpus, scratch_database, table_state
from psycopg.conninfo import conninfo_to_dict
from running import run_job
from topo_support import PgBouncer

from starforge_backfill import schema
from starforge_backfill.config import load_config
from starforge_backfill.embedded import EmbeddedPostgres

FROM, TO = "2024-01-01T00:00:00Z", "2024-07-01T00:00:00Z"
BIN = Path(sys.executable).with_name("starforge-backfill")
DOWN_S = 4.0
# The retry section is left at its defaults (5 attempts, 50 ms initial backoff, max_delay 60s): the point.
CONFIG = """\
etl:
  batch_size: 10
job:
  chunk_size: 40
throttle:
  failure_rate_max: 0.2      # the corpus is 2% malformed on purpose
  max_batch_size: 10
gates:
  require_preflight: false
  require_canary: false
  ramp: [2]
"""


@pytest.fixture(scope="module")
def clean_state(server_dsn: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, list[tuple]]]:
    """The tables after a clean run of the corpus (no outage), in a database of its own."""
    with scratch_database(server_dsn, "sf_restart_clean") as dsn:
        load_corpus(dsn)
        folder = tmp_path_factory.mktemp("clean")
        (folder / "c.yaml").write_text(CONFIG)
        cfg = load_config(folder / "c.yaml", overrides={"database.dsn": dsn, "artifacts_dir": str(folder)})
        res = run_job(cfg, from_ts=FROM, to_ts=TO, concurrency=2)
        assert res.outcome == "done"
        yield table_state(dsn)


def run_through_an_outage(dsn: str, watch_dsn: str, folder: Path, outage: Callable[[], None]) -> tuple[str, str]:
    """`run --concurrency 2` through `dsn`; once it handled 30 snapshots, `outage()` in a thread. Returns the
    job id and the run's stderr; the run must exit 0."""
    (folder / "c.yaml").write_text(CONFIG)
    env = {k: v for k, v in os.environ.items() if k != "STARFORGE_DATABASE_URL"}
    argv = [str(BIN), "-c", str(folder / "c.yaml"), "--dsn", dsn, "--artifacts-dir", str(folder / "art")]
    proc = subprocess.Popen(
        [*argv, "run", "--from", FROM, "--to", TO, "--concurrency", "2"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=folder,
    )
    job_id = None
    deadline = time.monotonic() + 60
    with psycopg.connect(watch_dsn, autocommit=True) as watch:
        while job_id is None and time.monotonic() < deadline and proc.poll() is None:
            row = watch.execute("SELECT job_id, processed_count + error_count FROM backfill_jobs").fetchone()
            if row is not None and row[1] >= 30:
                job_id = str(row[0])
            time.sleep(0.02)
    assert job_id is not None, f"the run did not get going: {proc.communicate()[1][-2000:]}"
    assert proc.poll() is None, "the run ended before the outage"
    thread = threading.Thread(target=outage)
    thread.start()
    try:
        _out, err = proc.communicate(timeout=150)
    finally:
        thread.join(60)
    assert proc.returncode == 0, err[-3000:]
    return job_id, err


def outage_events(dsn: str, job_id: str) -> list[dict]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT details FROM backfill_events WHERE job_id = %s AND kind = 'outage' ORDER BY id", [job_id]
        ).fetchall()
    return [r[0] for r in rows]


def test_a_postgresql_restart_of_a_few_seconds_is_ridden_through(
    own_server: EmbeddedPostgres, tmp_path: Path, clean_state: dict[str, list[tuple]]
) -> None:
    dsn = own_server.dsn
    schema.init_db(dsn)
    load_corpus(dsn)
    job_id, _err = run_through_an_outage(dsn, dsn, tmp_path, lambda: own_server.restart("fast", down_s=DOWN_S))
    assert_exact(dsn, job_id)
    assert table_state(dsn) == clean_state
    events = outage_events(dsn, job_id)
    assert len(events) == 1, events
    assert events[0]["seconds"] >= DOWN_S and events[0]["attempts"] > 5  # more than the attempt count allows


def test_a_pgbouncer_restart_of_a_few_seconds_is_ridden_through(
    server_dsn: str, empty_dsn: str, tmp_path: Path, clean_state: dict[str, list[tuple]]
) -> None:
    schema.init_db(empty_dsn)
    load_corpus(empty_dsn)
    bouncer = PgBouncer(server_dsn, "transaction", pool_size=2).start()
    try:
        dsn = bouncer.dsn(conninfo_to_dict(empty_dsn)["dbname"])
        job_id, _err = run_through_an_outage(dsn, empty_dsn, tmp_path, lambda: bouncer.restart(down_s=DOWN_S))
    finally:
        bouncer.stop()
    assert_exact(empty_dsn, job_id)
    assert table_state(empty_dsn) == clean_state
    events = outage_events(empty_dsn, job_id)
    assert len(events) == 1, events
    assert events[0]["seconds"] >= DOWN_S and events[0]["attempts"] > 5
