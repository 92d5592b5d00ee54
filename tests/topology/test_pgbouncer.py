"""Every runbook command through a real PgBouncer (Debian's pgbouncer), in transaction and in session pooling,
with 2 server connections for more clients than that: the same tables as a direct run of the same corpus."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from engine_state import SPEC, assert_exact, load_corpus, scalar, scratch_database, table_state
from psycopg import errors as pg_errors
from psycopg.conninfo import conninfo_to_dict
from running import run_job
from topo_support import PgBouncer

from starforge_backfill import db
from starforge_backfill.config import load_config
from starforge_backfill.etl.pipeline import ConnectionHolder, EtlSettings, process_batch
from starforge_backfill.synthetic import SyntheticSpec

FROM, TO = "2024-01-01T00:00:00Z", "2024-07-01T00:00:00Z"
RANGE = ("--from", FROM, "--to", TO)
BIN = Path(sys.executable).with_name("starforge-backfill")
# Production defaults (throttle and gates on), except: small batches so that a run has many transactions
# and can be paused midway, a failure-rate gate above the corpus's 2% malformed snapshots, a short canary.
CONFIG = """\
etl:
  batch_size: 5
job:
  chunk_size: 40
throttle:
  failure_rate_max: 0.2
  min_batch_size: 5
  max_batch_size: 5
gates:
  ramp: [2]
canary:
  observe: 2s
  users: 5
sample:
  include_bad: 2
"""
CORPUS = SyntheticSpec(**{**SPEC.__dict__, "snapshots": 600})


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("STARFORGE_DATABASE_URL", None)
    return env


class Operator:
    """The console script against one DSN (here: through PgBouncer), one process per command."""

    def __init__(self, dsn: str, folder: Path) -> None:
        self.dsn = dsn
        self.folder = folder
        self.config = folder / "starforge-backfill.yaml"
        self.config.write_text(CONFIG)

    def argv(self, *args: str) -> list[str]:
        base = ["-c", str(self.config), "--dsn", self.dsn, "--artifacts-dir", str(self.folder / "artifacts")]
        return [str(BIN), *base, "--metrics-file", str(self.folder / "starforge.prom"), *args]

    def __call__(self, *args: str, expect: int = 0) -> str:
        proc = subprocess.run(
            self.argv(*args), capture_output=True, text=True, timeout=180, env=_env(), cwd=self.folder
        )
        assert proc.returncode == expect, f"{args[0]} exited {proc.returncode}:\n{proc.stderr[-3000:]}"
        return proc.stdout

    def start(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            self.argv(*args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(), cwd=self.folder
        )


@pytest.fixture(scope="module")
def direct_state(server_dsn: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, list[tuple]]]:
    """The tables after a direct (no PgBouncer) run of the corpus, in a database of its own."""
    with scratch_database(server_dsn, "sf_pgb_direct") as dsn:
        load_corpus(dsn, CORPUS)
        folder = tmp_path_factory.mktemp("direct")
        (folder / "c.yaml").write_text(CONFIG)
        cfg = load_config(folder / "c.yaml", overrides={"database.dsn": dsn, "artifacts_dir": str(folder)})
        res = run_job(cfg, from_ts=FROM, to_ts=TO, concurrency=2, force=True, reason="direct reference")
        assert res.outcome == "done"
        assert_exact(dsn, res.job["job_id"], total=CORPUS.snapshots)
        yield table_state(dsn)


def test_the_pooler_multiplexes_and_breaks_prepared_statements(bouncer: PgBouncer, empty_dsn: str) -> None:
    """What the other tests rely on: clients really share server connections, and (transaction pooling)
    psycopg's default automatic prepares fail there while the toolkit's connections do not."""
    dbname = conninfo_to_dict(empty_dsn)["dbname"]
    dsn = bouncer.dsn(dbname)

    def hammer(make: Any) -> list[str]:
        errors: list[str] = []
        conns = [make() for _ in range(4)]

        def work(conn: psycopg.Connection) -> None:
            try:
                for i in range(40):
                    conn.execute("SELECT %s::int + 1, pg_backend_pid()", [i]).fetchone()
            except psycopg.Error as exc:
                errors.append(str(exc))

        threads = [threading.Thread(target=work, args=(c,)) for c in conns]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for c in conns:
            c.close()
        return errors

    with psycopg.connect(dsn, autocommit=True) as a, psycopg.connect(dsn, autocommit=True) as b:
        pids = {c.execute("SELECT pg_backend_pid()").fetchone()[0] for c in (a, b, a, b)}  # type: ignore[index]
        assert len(pids) <= 2  # transaction pooling: two clients over (at most) two server connections
    default_errors = hammer(lambda: psycopg.connect(dsn, autocommit=True))
    toolkit_errors = hammer(lambda: db.connect(dsn, autocommit=True))
    assert toolkit_errors == []
    if bouncer.pool_mode == "transaction":
        assert default_errors and all("prepared statement" in e for e in default_errors), default_errors
    else:
        assert default_errors == []


def test_the_whole_runbook_through_pgbouncer(
    bouncer: PgBouncer, empty_dsn: str, tmp_path: Path, direct_state: dict[str, list[tuple]]
) -> None:
    dbname = conninfo_to_dict(empty_dsn)["dbname"]
    op = Operator(bouncer.dsn(dbname), tmp_path)
    op("db", "init")
    load_corpus(empty_dsn, CORPUS)
    op("sample", *RANGE, "--seed", "7")
    samples = list((tmp_path / "artifacts" / "runbook").glob("*/*/sample.json"))
    assert len(samples) == 1
    op("dry-run", "--sample", str(samples[0]))
    op("plan", *RANGE, "--concurrency", "2")
    approvals = ["--approved-by", "engineering:eng", "--approved-by", "sre:sre", "--attest", "communication"]
    op("preflight", *RANGE, "--backup-id", "pgb-backup", *approvals, "--concurrency", "2")
    op("canary", *RANGE, "--users", "5", "--observe", "2s")

    run = op.start("run", *RANGE, "--concurrency", "2")
    deadline = time.monotonic() + 120
    job_id = None
    with psycopg.connect(empty_dsn, autocommit=True) as watch:
        while time.monotonic() < deadline and run.poll() is None:
            row = watch.execute(
                "SELECT job_id, processed_count + error_count FROM backfill_jobs WHERE mode = 'run'"
            ).fetchone()
            if row is not None and row[1] >= 40:
                job_id = str(row[0])
                break
            time.sleep(0.05)
    assert job_id is not None, f"the run did not get going: {run.communicate()[1][-2000:]}"
    op("pause", "--job-id", job_id, "--reason", "through pgbouncer")
    _out, err = run.communicate(timeout=120)
    assert run.returncode == 4, err[-3000:]
    status = json.loads(op("--json", "status", "--job-id", job_id))
    assert status["jobs"][0]["status"] == "paused"
    assert status["jobs"][0]["status_reason"] == "through pgbouncer"
    op("resume", "--job-id", job_id, "--concurrency", "2")

    assert_exact(
        empty_dsn, job_id, total=scalar(empty_dsn, "SELECT total_count FROM backfill_jobs WHERE job_id = %s", [job_id])
    )
    verify = json.loads(op("--json", "verify", "--job-id", job_id))
    assert verify["passed"] is True, verify
    # the events, read through the pooler: one per snapshot of the job across its pause and resume
    lines = op("--json", "events", "tail", "--job-id", job_id, "--limit", "100000").splitlines()
    events = [json.loads(line) for line in lines]
    job = scalar(empty_dsn, "SELECT processed_count + error_count FROM backfill_jobs WHERE job_id = %s", [job_id])
    assert len(events) == len({e["snapshot_id"] for e in events}) == job
    op("report", "--job-id", job_id)
    report = json.loads((tmp_path / "artifacts" / job_id / "report.json").read_text())
    assert report["kind"] == "report" and report["job_id"] == job_id
    assert (tmp_path / "artifacts" / job_id / "report.html").is_file()
    # the canary's users and then the rest: every snapshot handled once by one of the two jobs
    assert scalar(empty_dsn, "SELECT count(*) FROM hero_snapshots WHERE processed_at IS NULL AND error_count = 0") == 0
    assert table_state(empty_dsn) == direct_state


def test_the_lock_timeout_holds_through_pgbouncer(bouncer: PgBouncer, pg_dsn: str) -> None:
    """PgBouncer drops the startup options that carry statement_timeout and lock_timeout: the ETL's
    transactions set them locally, so a batch that meets a lock gives up after lock_timeout."""
    load_corpus(pg_dsn, SyntheticSpec(**{**SPEC.__dict__, "snapshots": 20, "malformed_ratio": 0.0}))
    with psycopg.connect(pg_dsn) as conn:
        rows = conn.execute("SELECT id, created_at FROM hero_snapshots ORDER BY created_at, id").fetchall()
    items = [(sid, (created, sid)) for sid, created in rows]
    dsn = bouncer.dsn(conninfo_to_dict(pg_dsn)["dbname"])
    holder = ConnectionHolder(lambda: db.connect(dsn, autocommit=True, lock_timeout_s=0.3))
    blocker = psycopg.connect(pg_dsn)
    blocker.execute("LOCK TABLE users IN SHARE MODE")  # production holding a lock the batch needs
    release = threading.Timer(15, blocker.rollback)  # without the limit the batch would wait this long
    release.start()
    try:
        started = time.monotonic()
        with pytest.raises(pg_errors.LockNotAvailable):
            process_batch(holder, items, EtlSettings(), retry={"max_attempts": 1})
        assert time.monotonic() - started < 10
    finally:
        release.cancel()
        blocker.rollback()
        blocker.close()
        holder.close()
    assert scalar(pg_dsn, "SELECT count(*) FROM users") == 0  # nothing half written
