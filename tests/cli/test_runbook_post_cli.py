"""canary, verify and report through the CLI (CliRunner): exit codes, the lines operators read, --json."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import psycopg
import pytest
from click.testing import CliRunner
from runbook_post_corpus import BAD_NAMECODES, FROM, TO, duplicate_a_row, load_corpus, namecode

from starforge_backfill.cli import main


@pytest.fixture
def cli(pg_dsn: str, tmp_path: Path) -> Any:
    """Invoke the CLI against this test's database: returns (exit code, all output, stdout)."""
    load_corpus(pg_dsn)

    config = tmp_path / "lenient.yaml"
    config.write_text("throttle:\n  failure_rate_max: 0.25   # the corpus fails 6 of its 33 snapshots on purpose\n")

    def invoke(*args: str) -> tuple[int, str, str]:
        base = ["-c", str(config), "--dsn", pg_dsn, "--artifacts-dir", str(tmp_path / "art")]
        res = CliRunner().invoke(
            main, [*base, *args], catch_exceptions=False, env={"STARFORGE_DATABASE_URL": "", "COLUMNS": "200"}
        )
        return res.exit_code, res.output, res.stdout

    return invoke


def _run_job(cli: Any) -> str:
    code, _out, stdout = cli("run", "--from", FROM, "--to", TO, "--force", "--reason", "test", "--json")
    assert code == 0, _out
    return str(json.loads(stdout)["job_id"])


@pytest.mark.parametrize(("budget", "code"), [("0.01", 1), ("0.25", 0)])
def test_a_run_over_the_error_budget_exits_1_naming_the_top_error(
    pg_dsn: str, tmp_path: Path, budget: str, code: int
) -> None:
    load_corpus(pg_dsn)
    config = tmp_path / "budget.yaml"
    config.write_text(f"throttle:\n  failure_rate_max: {budget}\n")
    args = ["-c", str(config), "--dsn", pg_dsn, "--artifacts-dir", str(tmp_path / "art")]
    res = CliRunner().invoke(
        main,
        [*args, "run", "--from", FROM, "--to", TO, "--force", "--reason", "test"],
        env={"STARFORGE_DATABASE_URL": "", "COLUMNS": "200"},
    )
    assert res.exit_code == code, res.output
    last = res.stderr.strip().splitlines()[-1]
    if code:
        top = 'PARSE_ERROR 4 "ProfileData: missing, expected an object"'
        assert last == f"error: 6 of 33 snapshots failed (18.2% > 1.0%): {top}"
    else:
        assert last == "6 of 33 snapshots failed (18.2% <= 25.0%, within the error budget)"
    with psycopg.connect(pg_dsn) as conn:  # the job itself is done either way: the judgement is the exit code
        assert conn.execute("SELECT status, error_count FROM backfill_jobs").fetchall() == [("done", 6)]


def test_verify_passes_then_catches_a_corrupted_row(cli: Any, pg_conn: psycopg.Connection) -> None:
    job_id = _run_job(cli)
    code, out, _ = cli("verify", "--job-id", job_id, "--sample-users", "50")
    assert code == 0, out
    assert "verify passed" in out and "pass  parity" in out and "note: runbook post-backfill" in out
    assert f"verify job {job_id} (full: every row of 11 user(s), and sample: 50 user(s)" in out
    assert "pass  full" in out
    troop_id, user_id = pg_conn.execute(
        "UPDATE user_troops SET level = level + 1 WHERE (user_id, troop_id) = (SELECT t.user_id, t.troop_id"
        " FROM user_troops t JOIN users u ON u.id = t.user_id WHERE u.namecode = %s ORDER BY t.troop_id DESC LIMIT 1)"
        " RETURNING troop_id, user_id",
        [namecode(5)],
    ).fetchone()
    code, out, _ = cli("verify", "--job-id", job_id, "--sample-users", "50")
    assert code == 1, out
    assert f"user_troops[user_id={user_id}, troop_id={troop_id}].level: expected" in out
    assert "verify FAILED (full, parity)" in out
    assert f"changed user_troops[{namecode(5)}, troop_id={troop_id}].level: expected" in out  # the findings table
    assert "first 1 of 1 finding(s); all of them in the artifact" in out
    code, out, _ = cli("verify", "--job-id", job_id, "--sample-users", "50", "--show", "0")
    assert code == 1 and "first 1 of 1" not in out
    code, out, _ = cli("verify", "--job-id", job_id, "--sample", "--sample-users", "50")
    assert code == 1 and "(sample: 50 user(s) re-derived by the Python reference)" in out
    assert "verify FAILED (parity)" in out
    code, _out, stdout = cli("verify", "--job-id", job_id, "--sample-users", "50", "--json")
    assert code == 1
    doc = json.loads(stdout)
    assert doc["passed"] is False and doc["failed"] == ["full", "parity"] and doc["mode"] == "full"
    parity = next(c for c in doc["checks"] if c["name"] == "parity")
    assert parity["data"]["mismatches"][0]["column"] == "level"
    full = next(c for c in doc["checks"] if c["name"] == "full")
    assert [(f["kind"], f["column"], f["key"]) for f in full["data"]["findings"]] == [
        ("changed", "level", {"troop_id": troop_id})
    ]


def test_verify_missing_summary_and_duplicate_exit_1(cli: Any, pg_conn: psycopg.Connection) -> None:
    job_id = _run_job(cli)
    pg_conn.execute(
        "DELETE FROM user_profile_summary WHERE user_id = (SELECT id FROM users WHERE namecode = %s)", [namecode(1)]
    )
    code, out, _ = cli("verify", "--job-id", job_id, "--sample-users", "0")
    assert code == 1 and "FAIL  summary_coverage" in out and namecode(1) in out, out
    duplicate_a_row(pg_conn, "user_troops", "troop_id")
    code, out, _ = cli("verify", "--from", FROM, "--to", TO, "--sample-users", "0")
    assert code == 1 and "FAIL  uniqueness" in out and "duplicate keys: user_troops 1" in out, out
    assert "verify FAILED (uniqueness, summary_coverage)" in out


def test_verify_usage_errors_exit_2(cli: Any) -> None:
    code, out, _ = cli("verify", "--job-id", "no-such-job")
    assert code == 2 and "error: no job 'no-such-job'" in out
    code, out, _ = cli("verify", "--from", FROM)
    assert code == 2 and "give both --from and --to" in out


def test_canary_pass_fail_and_refusal(cli: Any) -> None:
    code, out, _ = cli("canary", "--users", "2", "--from", FROM, "--to", "2024-01-02T00:00:00Z", "--observe", "1s")
    assert code == 0, out
    assert "PASSED" in out and "pass  failure_rate" in out and "gate canary recorded" in out
    code, out, stdout = cli("canary", "--namecodes", ",".join(BAD_NAMECODES), "--observe", "1s", "--json")
    assert code == 1, out
    doc = json.loads(stdout)
    assert doc["outcome"] == "failed" and doc["reasons"][0].startswith("failure_rate: 6/9")
    code, out, _ = cli("canary", "--users", "1", "--concurrency", "5")
    assert code == 2 and "a canary runs at 1 to 4" in out
    code, out, _ = cli("canary", "--observe", "soon")
    assert code == 2 and "--observe" in out


def test_report_and_manifest(cli: Any, tmp_path: Path) -> None:
    job_id = _run_job(cli)
    code, out, _ = cli("verify", "--job-id", job_id, "--sample-users", "2")
    assert code == 0, out
    code, out, _ = cli("report", "--job-id", job_id)
    assert code == 0, out
    folder = tmp_path / "art" / job_id
    for name in ("report.md", "report.html", "report.json", "manifest.json"):
        assert (folder / name).is_file() and str(folder / name) in out
    assert json.loads((folder / "report.json").read_text())["schema_version"] == 1
    assert "<svg" in (folder / "report.html").read_text()
    code, out, _ = cli("report", "--job-id", job_id, "--verify-manifest")
    assert code == 0 and "matches its manifest" in out, out
    (folder / "report.json").write_text("{}")
    code, out, stdout = cli("report", "--job-id", job_id, "--verify-manifest", "--json")
    assert code == 1 and json.loads(stdout)["changed"] == ["report.json"]
    code, out, _ = cli("report", "--job-id", job_id, "--verify-manifest")
    assert code == 1 and "changed: report.json" in out and "DOES NOT MATCH" in out
    code, out, _ = cli("report", "--job-id", job_id, "--format", "pdf")
    assert code == 2 and "unknown format" in out


def test_ctrl_c_during_the_observation_exits_130(pg_dsn: str, tmp_path: Path, pg_conn: psycopg.Connection) -> None:
    load_corpus(pg_dsn, bad=False)
    script = Path(sys.executable).with_name("starforge-backfill")
    args = [str(script), "--dsn", pg_dsn, "--artifacts-dir", str(tmp_path / "art"), "canary", "--users", "2"]
    env = {**os.environ, "STARFORGE_DATABASE_URL": ""}
    proc = subprocess.Popen(
        [*args, "--observe", "60s"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env
    )
    assert proc.stdout is not None
    seen = []
    for line in proc.stdout:  # wait for the observation window to start
        seen.append(line)
        if line.startswith("observing for"):
            break
    proc.send_signal(signal.SIGINT)
    out = "".join(seen) + proc.communicate(timeout=30)[0]
    assert proc.returncode == 130, out
    assert "INTERRUPTED" in out and "no verdict recorded" in out
    assert pg_conn.execute("SELECT count(*) FROM backfill_gates WHERE kind = 'canary'").fetchone() == (0,)
