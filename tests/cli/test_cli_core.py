"""End to end through the installed console script, in a subprocess: db init, run, usage and connection errors."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from starforge_backfill import synthetic

NORMALIZED = ("users", "user_troops", "user_pets", "user_artifacts", "user_profile_summary")
RANGE = ["--from", "2000-01-01T00:00:00Z", "--to", "2100-01-01T00:00:00Z"]
SPEC = synthetic.SyntheticSpec(snapshots=60, users=10, size_mix=((1.0, 20_000),))


def _script() -> str:
    found = shutil.which("starforge-backfill", path=str(Path(sys.executable).parent))
    assert found, f"console script not installed next to {sys.executable}"
    return found


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run the console script with `args`; no config file or DSN from the environment leaks in."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("STARFORGE_")}
    return subprocess.run(
        [_script(), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120, check=False
    )


def _tables(dsn: str) -> int:
    with psycopg.connect(dsn) as conn:
        row = conn.execute("SELECT count(*) FROM pg_tables WHERE schemaname = current_schema()").fetchone()
    assert row is not None
    return int(row[0])


def _xmins(dsn: str) -> dict[str, set[tuple[str, str]]]:
    with psycopg.connect(dsn) as conn:
        return {
            t: set(conn.execute(f"SELECT to_jsonb(x)::text, x.xmin::text FROM {t} AS x").fetchall())  # type: ignore[arg-type]
            for t in NORMALIZED
        }


def test_db_init_then_run_end_to_end(empty_dsn: str, tmp_path: Path) -> None:
    art = str(tmp_path / "artifacts")
    first = cli("--dsn", empty_dsn, "db", "init", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    tables = _tables(empty_dsn)
    assert tables >= len(NORMALIZED) + 5
    second = cli("--dsn", empty_dsn, "--json", "db", "init", cwd=tmp_path)
    assert second.returncode == 0, second.stderr
    assert _tables(empty_dsn) == tables
    doc = json.loads(second.stdout)
    assert doc["tables_before"] == doc["tables_after"]

    with psycopg.connect(empty_dsn, autocommit=True) as conn:
        stats = synthetic.load(conn, SPEC)
    assert stats.snapshots == 60

    # ./starforge-backfill.yaml is read by default: the synthetic corpus fails ~1% on purpose, budget 5%
    (tmp_path / "starforge-backfill.yaml").write_text("throttle:\n  failure_rate_max: 0.05\n")
    run = cli(
        "--dsn", empty_dsn, "--artifacts-dir", art, "--json", "run", *RANGE, "--force", "--reason", "test", cwd=tmp_path
    )
    assert run.returncode == 0, run.stderr
    job = json.loads(run.stdout)
    assert job["status"] == "done"
    assert job["processed_count"] + job["error_count"] == 60
    expected_errors = sum(n for kind, n in stats.by_kind.items() if kind != "ok")
    assert job["error_count"] == expected_errors
    with psycopg.connect(empty_dsn) as conn:
        counts = conn.execute(
            "SELECT count(*) FILTER (WHERE processed_at IS NOT NULL), count(*) FILTER (WHERE error_count > 0)"
            " FROM hero_snapshots"
        ).fetchone()
        users = conn.execute("SELECT count(*) FROM users").fetchone()
    assert counts == (60 - expected_errors, expected_errors)
    assert users is not None and 0 < users[0] <= 10

    before = _xmins(empty_dsn)
    assert all(before[t] for t in ("users", "user_troops", "user_profile_summary"))
    again = cli(
        "--dsn", empty_dsn, "--artifacts-dir", art, "--json", "run", *RANGE, "--force", "--reason", "test", cwd=tmp_path
    )
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["status"] == "done"
    assert _xmins(empty_dsn) == before
    reprocess = cli(
        "--dsn",
        empty_dsn,
        "--artifacts-dir",
        art,
        "--json",
        "run",
        *RANGE,
        "--reprocess",
        "--force",
        "--reason",
        "test",
        cwd=tmp_path,
    )
    assert reprocess.returncode == 0, reprocess.stderr
    assert _xmins(empty_dsn) == before  # every snapshot applied again: not one row rewritten


def test_run_without_a_range_is_a_usage_error(tmp_path: Path) -> None:
    res = cli("--dsn", "postgresql://postgres@127.0.0.1:1/x", "run", cwd=tmp_path)  # refused before connecting
    assert res.returncode == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), res.stderr
    assert "--from" in lines[0]
    assert res.stdout == ""


@pytest.mark.parametrize(
    "args", [["db", "init"], ["run", *RANGE, "--force", "--reason", "test"]], ids=["db-init", "run"]
)
def test_an_unreachable_database_exits_3_without_a_traceback(args: list[str], tmp_path: Path) -> None:
    dsn = "postgresql://postgres@127.0.0.1:1/x"
    res = cli("--dsn", dsn, *args, cwd=tmp_path)
    assert res.returncode == 3, res.stderr
    assert "Traceback" not in res.stderr + res.stdout
    lines = res.stderr.strip().splitlines()
    assert lines and lines[0].startswith("error:"), res.stderr
    assert "127.0.0.1:1" in lines[0]
