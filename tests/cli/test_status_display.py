"""What `status` shows a person: whole job ids into a pipe, and an interrupted job as interrupted."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
from pathlib import Path

from engine_state import load_corpus
from running import run_job

from starforge_backfill.config import load_config
from starforge_backfill.runbook.run import RunProgress

BIN = Path(sys.executable).with_name("starforge-backfill")
FROM, TO = "2024-01-01T00:00:00Z", "2024-07-01T00:00:00Z"


def test_status_into_a_pipe_shows_whole_ids_and_an_interrupted_job_as_interrupted(pg_dsn: str, tmp_path: Path) -> None:
    load_corpus(pg_dsn)
    cfg = load_config(
        None,
        env={},
        overrides={
            "database.dsn": pg_dsn,
            "artifacts_dir": str(tmp_path),
            "etl.batch_size": 10,
            "gates.require_preflight": False,
            "gates.require_canary": False,
        },
    )
    stop = threading.Event()

    def interrupt(p: RunProgress) -> None:
        if p.done >= 20:
            stop.set()  # what Ctrl-C does: finish the batch, save the checkpoint, leave

    res = run_job(cfg, from_ts=FROM, to_ts=TO, concurrency=1, progress=interrupt, stop=stop)
    job_id = res.job["job_id"]
    assert res.outcome == "interrupted" and res.job["status"] == "running"  # the row says running...
    env = {k: v for k, v in os.environ.items() if k != "STARFORGE_DATABASE_URL"} | {"COLUMNS": "60"}
    out = subprocess.run(
        [str(BIN), "--dsn", pg_dsn, "status"], capture_output=True, text=True, env=env, check=True
    ).stdout  # a pipe, as in `status | cat`
    header, line = out.splitlines()[:2]
    assert header.split()[:3] == ["job", "mode", "state"]
    cells = line.split()
    assert cells[0] == job_id  # whole, though COLUMNS is 60
    assert cells[2] == "interrupted"  # ...and status says what happened: no worker is live
    assert not [c for c in cells[3:] if re.fullmatch(r"\d+\.\d|\d+s", c)], cells  # no rate, no ETA
    doc = subprocess.run(
        [str(BIN), "--dsn", pg_dsn, "--json", "status", "--job-id", job_id],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    ).stdout
    row = json.loads(doc)["jobs"][0]
    assert (row["status"], row["state"], row["rate_per_s"], row["eta_s"], row["live_workers"]) == (
        "running",
        "interrupted",
        None,
        None,
        0,
    )


def test_status_does_not_count_a_killed_local_worker_as_live(pg_dsn: str, tmp_path: Path) -> None:
    """A chunk whose worker (this host, a process that is gone) heartbeat a moment ago: `run` reclaims it at
    once (jobs.live_workers), and `status` says the same: no live worker, the job interrupted."""
    import socket

    import psycopg

    load_corpus(pg_dsn)
    cfg = load_config(
        None,
        env={},
        overrides={
            "database.dsn": pg_dsn,
            "artifacts_dir": str(tmp_path),
            "etl.batch_size": 10,
            "gates.require_preflight": False,
            "gates.require_canary": False,
        },
    )
    stop = threading.Event()
    res = run_job(cfg, from_ts=FROM, to_ts=TO, concurrency=1, progress=lambda p: stop.set(), stop=stop)
    job_id = res.job["job_id"]
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead = f"{socket.gethostname()}:{int(gone.stdout)}:0"  # a worker name of this host whose process exited
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(
            "UPDATE backfill_chunks SET status = 'running', worker = %s, heartbeat_at = now()"
            " WHERE job_id = %s AND chunk_no = (SELECT min(chunk_no) FROM backfill_chunks WHERE job_id = %s)",
            [dead, job_id, job_id],
        )
    env = {k: v for k, v in os.environ.items() if k != "STARFORGE_DATABASE_URL"}
    doc = subprocess.run(
        [str(BIN), "--dsn", pg_dsn, "--json", "status", "--job-id", job_id],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    ).stdout
    row = json.loads(doc)["jobs"][0]
    assert (row["status"], row["state"], row["live_workers"]) == ("running", "interrupted", 0)
