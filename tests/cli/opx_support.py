"""Helpers for the operator-experience CLI tests: snapshots made in SQL, the CLI in-process and as a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import psycopg
from click.testing import CliRunner, Result

from starforge_backfill.cli import main

FROM, TO = "2024-01-01", "2024-02-01"
PASSWORD = "s3cr3t-pw"

# A config that makes runs predictable in tests: no health throttle (so no adaptive batch sizing).
QUIET_THROTTLE = "throttle:\n  enabled: false\n"


def insert_snapshots(dsn: str, n: int, *, bad_every: int = 0, all_bad: bool = False) -> None:
    """`n` small snapshots one minute apart from FROM; every `bad_every`-th one (or all) a PARSE_ERROR."""
    bad = "true" if all_bad else (f"i %% {bad_every} = 0" if bad_every else "false")
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(
            f"""
            INSERT INTO hero_snapshots (id, namecode, source, raw, created_at)
            SELECT gen_random_uuid(), 'N' || i, 'test',
                   CASE WHEN {bad} THEN '"not a payload"'::jsonb
                        ELSE jsonb_build_object(
                            'NameCode', 'N' || i,
                            'Name', 'hero ' || i,
                            'ProfileData', jsonb_build_object(
                                'Level', i,
                                'Troops', jsonb_build_array(jsonb_build_object('TroopId', 1 + i %% 5, 'Amount', i)),
                                'Pets', jsonb_build_array(jsonb_build_object('PetId', 1 + i %% 3))))
                   END,
                   timestamptz '{FROM}' + i * interval '1 minute'
            FROM generate_series(1, %s) AS i
            """,  # type: ignore[arg-type]  # test SQL, values bound
            [n],
        )


def job_row(dsn: str, job_id: str | None = None) -> dict[str, Any]:
    """The newest (or given) backfill_jobs row."""
    with psycopg.connect(dsn, autocommit=True) as conn, conn.cursor(row_factory=psycopg.rows.dict_row) as cur:
        if job_id:
            cur.execute("SELECT * FROM backfill_jobs WHERE job_id = %s", [job_id])
        else:
            cur.execute("SELECT * FROM backfill_jobs ORDER BY created_at DESC LIMIT 1")
        row = cur.fetchone()
    assert row is not None, "no job"
    return row


def cli(*args: str, env: dict[str, str | None] | None = None) -> Result:
    """Run the CLI in-process; stdout and stderr stay separate (`.stdout`, `.stderr`)."""
    base_env: dict[str, str | None] = {"STARFORGE_DATABASE_URL": None, "STARFORGE_LOG_FORMAT": None, "COLUMNS": "120"}
    return CliRunner().invoke(main, list(args), catch_exceptions=False, env=base_env | (env or {}))


def command() -> list[str]:
    """The installed console script next to this interpreter, else `python -m starforge_backfill`."""
    script = Path(sys.executable).with_name("starforge-backfill")
    return [str(script)] if script.exists() else [sys.executable, "-m", "starforge_backfill"]


def subprocess_env(**extra: str) -> dict[str, str]:
    """The environment for a CLI subprocess: no DSN from the outer environment, plain (non-terminal) output."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("STARFORGE_")}
    env.update({"COLUMNS": "120", "TERM": "dumb", "NO_COLOR": "1"})
    env.update(extra)
    return env


def run_cli(
    args: Sequence[str], cwd: Path, timeout: float = 120, env: dict[str, str] | None = None, **extra: str
) -> subprocess.CompletedProcess[str]:
    """Run the CLI in a subprocess to completion (environment: `subprocess_env` plus `env` and `extra`)."""
    full = subprocess_env(**(env or {}), **extra)
    return subprocess.run([*command(), *args], env=full, cwd=cwd, capture_output=True, text=True, timeout=timeout)


def start_cli(args: Sequence[str], cwd: Path, **env: str) -> subprocess.Popen[str]:
    """Start the CLI in a subprocess (stdout and stderr piped)."""
    return subprocess.Popen(
        [*command(), *args],
        env=subprocess_env(**env),
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for(predicate: Callable[[], bool], timeout: float = 60, what: str = "condition") -> None:
    """Poll `predicate` every 50 ms until true; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def processed_so_far(dsn: str) -> int:
    """processed + failed snapshots of the newest job (0 when there is none yet)."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute(
            "SELECT processed_count + error_count FROM backfill_jobs ORDER BY created_at DESC LIMIT 1"
        ).fetchone()
    return int(row[0]) if row else 0
