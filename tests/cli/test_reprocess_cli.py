"""`reprocess` through the CLI (CliRunner, real PostgreSQL): --snapshot-ids from a file and from stdin, a bad
line (exit 2 naming it, no job), no selection (exit 2), --error-type after policy `fail`, --json = run's shape."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from reprocess_support import (
    add_missing_catalog_row,
    backfill_with_fk_failures,
    count_jobs,
    fail_cfg,
    job,
    snapshot_state,
    unprocessed,
)
from runbook_post_corpus import load_corpus, namecode

from starforge_backfill.cli import main
from starforge_backfill.jobs import Selector

FORCE = ("--force", "--reason", "cli test")


@pytest.fixture
def cli(pg_dsn: str, tmp_path: Path) -> Any:
    """Invoke the CLI against this test's database: returns the click Result (stdout and stderr apart)."""
    config = tmp_path / "cfg.yaml"
    config.write_text("throttle:\n  failure_rate_max: 0.5\netl:\n  catalog_policy: fail\n")

    def invoke(*args: str, stdin: str | None = None) -> Any:
        base = ["-c", str(config), "--dsn", pg_dsn, "--artifacts-dir", str(tmp_path / "art")]
        env = {"STARFORGE_DATABASE_URL": "", "COLUMNS": "200"}
        return CliRunner().invoke(main, [*base, *args], input=stdin, catch_exceptions=False, env=env)

    return invoke


def test_snapshot_ids_from_a_file_and_from_stdin(cli: Any, pg_dsn: str, tmp_path: Path) -> None:
    ids = load_corpus(pg_dsn, bad=False)
    first, second = ids[namecode(0)][0], ids[namecode(1)][1]
    path = tmp_path / "ids.txt"
    path.write_text(f"# user 0, oldest\n{first}\n\n   \n")
    res = cli("reprocess", "--snapshot-ids", str(path), *FORCE, "--json")
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert doc["mode"] == "reprocess" and doc["status"] == "done" and doc["run"]["processed"] == 1
    assert doc["reprocess"]["selected"] == 1 and doc["reprocess"]["selection"]["snapshot_ids"] == 1
    assert set(doc) >= {"job_id", "run", "reprocess", "total_count", "processed_count"}
    assert unprocessed(pg_dsn) == {i for v in ids.values() for i in v} - {first}

    res = cli("reprocess", "--snapshot-ids", "-", *FORCE, stdin=f"{second}  # from a pipe\n")
    assert res.exit_code == 0, res.output
    assert "reprocess: 1 snapshot(s) chosen" in res.stdout
    assert snapshot_state(pg_dsn, [first, second]) == {first: (True, 0, 0), second: (True, 0, 0)}
    codes = tmp_path / "codes.txt"
    codes.write_text(f"{namecode(2)}\n# and\n{namecode(3)}\n")
    res = cli("reprocess", "--namecodes", str(codes), "--to", "2024-01-01T12:00:00Z", *FORCE, "--json")
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)  # the two oldest of each (the newest are created at 12:00 and later)
    assert doc["reprocess"]["selected"] == 4 and doc["to_ts"] == "2024-01-01T12:00:00+00:00"
    assert not {*ids[namecode(2)][:2], *ids[namecode(3)][:2]} & unprocessed(pg_dsn)
    assert {ids[namecode(2)][2], ids[namecode(3)][2]} <= unprocessed(pg_dsn)
    assert count_jobs(pg_dsn) == 3


def test_a_bad_line_exits_2_naming_it_and_creates_nothing(cli: Any, pg_dsn: str, tmp_path: Path) -> None:
    ids = load_corpus(pg_dsn, bad=False)
    path = tmp_path / "ids.txt"
    path.write_text(f"{ids[namecode(0)][0]}\n# fine\n{ids[namecode(1)][0]},x\n")
    res = cli("reprocess", "--snapshot-ids", str(path), *FORCE)
    assert res.exit_code == 2, res.output
    assert f"{path}:3: not a snapshot id (uuid)" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1, res.stderr
    res = cli("reprocess", "--snapshot-ids", "-", *FORCE, stdin="\n\nnot-a-uuid\n")
    assert res.exit_code == 2 and "<stdin>:3: not a snapshot id (uuid): 'not-a-uuid'" in res.stderr
    codes = tmp_path / "codes.txt"
    codes.write_text(f"{namecode(0)}\nHERO 0001\n")
    res = cli("reprocess", "--namecodes", str(codes), *FORCE)
    assert res.exit_code == 2 and f"{codes}:2: not a namecode (one per line, no spaces): 'HERO 0001'" in res.stderr
    res = cli("reprocess", "--from", "2024-01-01", *FORCE)
    assert res.exit_code == 2 and "say what to reprocess" in res.stderr
    res = cli("reprocess", "--job-id", "x", "--error-type", "FK_VIOLATION", *FORCE)
    assert res.exit_code == 2 and "give no selection with it" in res.stderr
    assert count_jobs(pg_dsn) == 0
    assert len(unprocessed(pg_dsn)) == sum(len(v) for v in ids.values())


def test_error_type_after_policy_fail_then_nothing_left(cli: Any, pg_dsn: str, tmp_path: Path) -> None:
    failed = backfill_with_fk_failures(pg_dsn, fail_cfg(pg_dsn, tmp_path / "setup"))
    res = cli("reprocess", "--error-type", "FK_VIOLATION", *FORCE, "--json")
    assert res.exit_code == 1, res.output  # the catalog row is still missing: they fail again, over the budget
    doc = json.loads(res.stdout)
    assert doc["run"]["failed_by_type"] == {"FK_VIOLATION": 4} and doc["error_count"] == 4
    add_missing_catalog_row(pg_dsn)
    res = cli("reprocess", "--error-type", "FK_VIOLATION", *FORCE, "--json")
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert set(Selector.from_job(job(pg_dsn, doc["job_id"])).ids or ()) == failed.fk
    assert doc["processed_count"] == 4 and doc["error_count"] == 0
    assert unprocessed(pg_dsn) == {failed.parse_error}
    res = cli("reprocess", "--error-type", "FK_VIOLATION", *FORCE)
    assert res.exit_code == 0 and "nothing to reprocess" in res.stdout
    assert count_jobs(pg_dsn) == 3  # the policy-fail run and the two reprocess jobs: none for an empty choice
