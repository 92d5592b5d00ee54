"""The recovery path end to end through the CLI (CliRunner, real PostgreSQL), as runbooks/BACKFILL.md gives it:
policy fail -> FK violations -> catalog import -> reprocess --error-type FK_VIOLATION -> verify --full ->
finalize. Reprocessing snapshots that are already right writes nothing."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import psycopg
import pytest
from click.testing import CliRunner
from reprocess_support import MISSING_TROOP, backfill_with_fk_failures, fail_cfg, job, snapshot_state, xmins

from starforge_backfill.cli import main

FORCE = ("--force", "--reason", "recovery test")


@pytest.fixture
def cli(pg_dsn: str, tmp_path: Path) -> Any:
    config = tmp_path / "cfg.yaml"
    config.write_text("throttle:\n  failure_rate_max: 0.5\netl:\n  catalog_policy: fail\n")

    def invoke(*args: str, stdin: str | None = None) -> Any:
        base = ["-c", str(config), "--dsn", pg_dsn, "--artifacts-dir", str(tmp_path / "artifacts")]
        env = {"STARFORGE_DATABASE_URL": "", "COLUMNS": "200", "STARFORGE_OPERATOR": "oncall@example"}
        return CliRunner().invoke(main, [*base, *args], input=stdin, catch_exceptions=False, env=env)

    return invoke


def test_policy_fail_to_finalize(cli: Any, pg_dsn: str, tmp_path: Path) -> None:
    # 1. policy fail: the snapshots using a troop the catalog lacks fail with FK_VIOLATION
    failed = backfill_with_fk_failures(pg_dsn, fail_cfg(pg_dsn, tmp_path / "artifacts"))
    res = cli("verify", "--job-id", failed.job_id, "--sample-users", "0")
    assert res.exit_code == 0, res.output  # FK_VIOLATION is the data's fault: counted, quarantined, not a finding
    assert "FK_VIOLATION 4" in res.output and "(full: every row of" in res.output

    # 2. the catalog lands, 3. only the FK_VIOLATION snapshots are reprocessed
    catalog = tmp_path / "catalog.csv"
    catalog.write_text(f"kind,id,name\ntroop,{MISSING_TROOP},Late Troop\n")
    res = cli("catalog", "import", str(catalog))
    assert res.exit_code == 0, res.output
    res = cli("reprocess", "--error-type", "FK_VIOLATION", *FORCE, "--json")
    assert res.exit_code == 0, res.output
    rep = json.loads(res.stdout)
    assert rep["reprocess"]["selected"] == 4 and (rep["processed_count"], rep["error_count"]) == (4, 0)
    assert all(state[0] for state in snapshot_state(pg_dsn, failed.fk).values())

    # reprocessing snapshots whose rows are right writes nothing
    before = xmins(pg_dsn)
    ids = tmp_path / "ids.txt"
    ids.write_text("".join(f"{sid}\n" for v in failed.ids.values() for sid in v))
    res = cli("reprocess", "--snapshot-ids", str(ids), *FORCE)
    assert res.exit_code == 0, res.output
    assert xmins(pg_dsn) == before

    # 4. verify --full over both jobs, 5. finalize them
    for job_id in (failed.job_id, rep["job_id"]):
        res = cli("verify", "--job-id", job_id, "--json")
        doc = json.loads(res.stdout)
        assert res.exit_code == 0 and doc["mode"] == "full", res.output
        full = next(c for c in doc["checks"] if c["name"] == "full")
        assert full["data"]["finding_count"] == 0 and full["data"]["users"] > 0
    res = cli("finalize", "--job-id", failed.job_id, "--sample-users", "0")
    assert res.exit_code == 0, res.output
    assert "verify --full passed" in res.output and "placeholders left: 0" in res.output
    archive = tmp_path / "artifacts" / "archives" / f"{failed.job_id}.tar.gz"
    assert archive.is_file() and f"archive {archive}" in res.output
    row = job(pg_dsn, failed.job_id)
    assert row["finalized_by"] == "oncall@example" and row["finalized_at"] is not None
    res = cli("status", "--job-id", failed.job_id)
    assert res.exit_code == 0 and "finalized" in res.output

    # a paused job cannot be finalized: exit 1, one error line with a hint
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute("UPDATE backfill_jobs SET status = 'paused' WHERE job_id = %s", [rep["job_id"]])
    res = cli("finalize", "--job-id", rep["job_id"])
    assert res.exit_code == 1
    assert f"error: job {rep['job_id']} is paused" in res.output and "hint: resume it first" in res.output
    assert job(pg_dsn, rep["job_id"])["finalized_at"] is None
