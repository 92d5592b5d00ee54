"""The runbook commands before a job, through the CLI: sample, dry-run, preflight, plan; exit codes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest
from click.testing import CliRunner
from runbook_corpus import FROM, TO, load_corpus, make_cfg, state

from starforge_backfill.cli import main
from starforge_backfill.runbook.dry_run import dry_run

APPROVED = ["--approved-by", "engineering:alice", "--approved-by", "sre:bob", "--attest", "communication"]


@pytest.fixture
def corpus(pg_dsn: str) -> dict[str, str]:
    """The synthetic corpus loaded into this test's database: {snapshot id: kind}."""
    return load_corpus(pg_dsn)


def _budget(tmp_path: Path) -> Path:
    """A config whose error budget admits the corpus's 15% malformed snapshots (preflight's payload-shapes item)."""
    path = tmp_path / "budget.yaml"
    path.write_text("throttle:\n  failure_rate_max: 0.2\n")
    return path


def _cli(pg_dsn: str, tmp_path: Path, *args: str) -> tuple[int, str]:
    env = {"STARFORGE_DATABASE_URL": "", "COLUMNS": "120"}
    base = [
        "-c",
        str(_budget(tmp_path)),
        "--dsn",
        pg_dsn,
        "--artifacts-dir",
        str(tmp_path / "art"),
        "--metrics-file",
        str(tmp_path / "m.prom"),
    ]
    res = CliRunner().invoke(main, [*base, *args], catch_exceptions=False, env=env)
    return res.exit_code, res.stdout if "--json" in args else res.output  # --json: the document, not stderr


def test_runbook_steps_through_the_cli(
    pg_conn: psycopg.Connection, pg_dsn: str, corpus: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    rng = ["--from", FROM, "--to", TO]

    code, out = _cli(pg_dsn, tmp_path, "preflight", *rng, *APPROVED)
    assert code == 1, out
    lines = {line.split()[1]: line.split()[0] for line in out.splitlines() if line.startswith("  ")}
    assert lines["backup"] == "FAIL" and lines["dry-run"] == "FAIL" and lines["approvals"] == "attested"
    assert "preflight FAILED (backup, dry-run)" in out

    code, out = _cli(
        pg_dsn, tmp_path, "sample", *rng, "--seed", "3", "--buckets", "2,2", "--include-bad", "2", "--json"
    )
    assert code == 0, out
    picked = json.loads(out)
    assert len(picked["ids"]) == 6 and [b["picked"] for b in picked["bucket_stats"]] == [2, 2]
    assert picked["bad_found"] == 2

    before = state(pg_conn)
    code, out = _cli(pg_dsn, tmp_path, "dry-run")  # takes the sample.json just written
    assert code == 0, out
    assert state(pg_conn) == before
    assert out.count("VALIDATION_ERROR") + out.count("PARSE_ERROR") >= 2 and "dry-run passed" in out

    code, out = _cli(pg_dsn, tmp_path, "preflight", *rng, *APPROVED, "--backup-id", "snap-1", "--json")
    assert code == 0, out
    result = json.loads(out)
    assert result["passed"] and result["failed"] == []
    assert {c["name"]: c["result"] for c in result["checks"]}["backup"] == "attested"

    code, out = _cli(pg_dsn, tmp_path, "plan", *rng, "--t-avg", "12", "--concurrency", "3", "--target-hours", "0.1")
    assert code == 0, out
    assert "T_estimate = N * t_avg / C" in out and "recommended: --concurrency 2" in out
    code, out = _cli(pg_dsn, tmp_path, "plan", *rng, "--t-avg", "12", "--json")
    assert json.loads(out)["estimates"][0] == {
        "concurrency": 1,
        "connections": 2,
        "meets_target": None,
        "t_estimate_s": 576.0,
        "t_estimate_h": 0.16,
        "within_budget": True,
    }


def test_usage_errors(pg_dsn: str, tmp_path: Path) -> None:
    code, out = _cli(pg_dsn, tmp_path, "dry-run", "--ids", "not-a-uuid")
    assert code == 2 and "error: --ids: not a snapshot id" in out
    code, out = _cli(pg_dsn, tmp_path, "preflight", "--from", FROM, "--to", TO, "--approved-by", "alice")
    assert code == 2 and "expected ROLE:NAME" in out
    code, out = _cli(pg_dsn, tmp_path, "plan", "--from", FROM, "--to", TO)
    assert code == 2 and "no dry-run with a measured t_avg" in out and "--t-avg" in out


def test_exit_codes_in_a_subprocess(pg_dsn: str, corpus: dict[str, str], tmp_path: Path) -> None:
    env = {**os.environ, "STARFORGE_DATABASE_URL": pg_dsn}
    base = [
        sys.executable,
        "-m",
        "starforge_backfill",
        "-c",
        str(_budget(tmp_path)),
        "--artifacts-dir",
        str(tmp_path),
        "--metrics-file",
        "m.prom",
    ]
    rng = ["--from", FROM, "--to", TO]

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*base, *args], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120)

    failed = run("preflight", *rng, *APPROVED)
    assert failed.returncode == 1, failed.stderr
    first_ok = next(sid for sid, kind in corpus.items() if kind == "ok")
    budget = {"throttle.failure_rate_max": 0.2}
    assert dry_run(make_cfg(pg_dsn, tmp_path, **budget), ids=[first_ok]).passed  # the same fingerprint as the CLI's
    passed = run("preflight", *rng, *APPROVED, "--backup-id", "snap-1", "--json")
    assert passed.returncode == 0, passed.stdout + passed.stderr
    assert json.loads(passed.stdout)["passed"] is True
    assert run("plan", "--from", TO, "--to", FROM).returncode == 2


def test_help_lists_the_runbook_commands() -> None:
    runner = CliRunner()
    listed = runner.invoke(main, ["--help"], catch_exceptions=False).output
    for name in ("preflight", "sample", "dry-run", "plan"):
        assert f"  {name} " in listed
        res = runner.invoke(main, [name, "--help"], catch_exceptions=False)
        assert res.exit_code == 0 and "--json" in res.output
