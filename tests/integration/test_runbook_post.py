"""canary, verify and report against real PostgreSQL (plain Python API; the CLI is in tests/cli)."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import psycopg
import pytest
from runbook_post_corpus import (
    BAD_NAMECODES,
    FROM,
    MISSING_TROOP,
    PRECISE,
    TO,
    duplicate_a_row,
    load_corpus,
    make_cfg,
    namecode,
)
from running import run_job

from starforge_backfill import artifacts
from starforge_backfill.errors import ExitCode, UsageError
from starforge_backfill.runbook.canary import canary
from starforge_backfill.runbook.gates import latest_gate
from starforge_backfill.runbook.report import report, verify_manifest
from starforge_backfill.runbook.verify import verify


def _run(cfg: Any, from_ts: str = FROM, to_ts: str = TO) -> str:
    res = run_job(cfg, from_ts=from_ts, to_ts=to_ts, force=True, reason="test")
    assert res.outcome == "done", res.summary()
    return str(res.job["job_id"])


def _check(res: Any, name: str) -> Any:
    return next(c for c in res.checks if c.name == name)


@pytest.fixture
def cfg(pg_dsn: str, tmp_path: Path) -> Any:
    """The corpus fails 6 of its 33 snapshots on purpose: an error budget of 25% accepts that."""
    load_corpus(pg_dsn)
    return make_cfg(pg_dsn, tmp_path / "artifacts", **{"throttle.failure_rate_max": 0.25})


def test_verify_passes_on_a_clean_job(cfg: Any, pg_conn: psycopg.Connection) -> None:
    job_id = _run(cfg)
    res = verify(cfg, job_id=job_id, sample_users=50)
    assert res.passed, [c.detail for c in res.checks if not c.passed]
    assert res.exit_code == ExitCode.OK
    assert [c.name for c in res.checks] == [
        "processed_counts",
        "error_types",
        "error_budget",
        "full",  # a done job: full mode by default
        "parity",
        "uniqueness",
        "summary_coverage",
        "placeholders",
        "orphans",
    ]
    parity = _check(res, "parity")
    assert parity.data["users"] == 11 and parity.data["snapshots"] == 27  # 8 x 3 good + 3 good of the broken
    errors = {r["error_type"]: r["errors"] for r in _check(res, "error_types").data["by_type"]}
    assert errors == {"PARSE_ERROR": 4, "VALIDATION_ERROR": 2}
    placeholders = _check(res, "placeholders")
    assert placeholders.passed and placeholders.note and f"troop {MISSING_TROOP}" in placeholders.detail
    saved = artifacts.read_json(Path(cfg.artifacts_dir) / job_id / "verify.json", "verify")
    assert saved["passed"] is True and saved["job_id"] == job_id
    gate = latest_gate(pg_conn, "verify", cfg.fingerprint())
    assert gate is not None and gate["passed"] and gate["job_id"] == job_id


def test_a_job_over_the_error_budget_fails_verify_naming_the_top_error(cfg: Any, pg_conn: psycopg.Connection) -> None:
    strict = cfg.replace(**{"throttle.failure_rate_max": 0.1})
    job_id = _run(strict)
    res = verify(strict, job_id=job_id, sample_users=0)
    assert res.failed == ["error_budget"], res.failed
    budget = _check(res, "error_budget")
    assert (budget.data["failed"], budget.data["handled"], budget.value, budget.threshold) == (6, 33, 0.181818, 0.1)
    assert (
        budget.detail
        == '6 of 33 snapshots failed (18.2% > 10.0%): PARSE_ERROR 4 "ProfileData: missing, expected an object"'
    )
    job = pg_conn.execute(
        "SELECT error_count, processed_count FROM backfill_jobs WHERE job_id = %s", [job_id]
    ).fetchone()
    assert job == (6, 27)  # the same counts as the job row
    # a range verification (no job) judges the range's snapshots the same way
    by_range = verify(strict, from_ts=FROM, to_ts=TO, sample_users=0)
    assert _check(by_range, "error_budget").detail == budget.detail


def test_parity_holds_when_newer_snapshots_were_processed_first(cfg: Any) -> None:
    _run(cfg, "2024-01-01T06:00:00Z", TO)  # the newer snapshots first ...
    _run(cfg, FROM, "2024-01-01T06:00:00Z")  # ... then the oldest: their rows must not overwrite newer ones
    res = verify(cfg, from_ts=FROM, to_ts=TO, sample_users=50)
    assert res.passed, [c.detail for c in res.checks if not c.passed]


def test_verify_catches_a_corrupted_row(cfg: Any, pg_conn: psycopg.Connection) -> None:
    job_id = _run(cfg)
    user_id, troop_id = pg_conn.execute(
        "UPDATE user_troops SET amount = amount + 7 WHERE (user_id, troop_id) = (SELECT t.user_id, t.troop_id"
        " FROM user_troops t JOIN users u ON u.id = t.user_id WHERE u.namecode = %s ORDER BY t.troop_id LIMIT 1)"
        " RETURNING user_id, troop_id",
        [namecode(4)],
    ).fetchone()
    res = verify(cfg, job_id=job_id, sample_users=50, mode="sample")
    assert res.exit_code == ExitCode.CHECK_FAILED and res.failed == ["parity"]
    mismatches = _check(res, "parity").data["mismatches"]
    assert len(mismatches) == 1
    m = mismatches[0]
    assert (m["table"], m["column"], m["key"]) == (
        "user_troops",
        "amount",
        {"user_id": str(user_id), "troop_id": troop_id},
    )
    assert m["found"] == m["expected"] + 7
    assert f"user_troops[user_id={user_id}, troop_id={troop_id}].amount" in _check(res, "parity").detail


def test_parity_compares_numbers_exactly(cfg: Any, pg_conn: psycopg.Connection) -> None:
    job_id = _run(cfg)
    stored = pg_conn.execute(
        "SELECT t.extra ->> 'Ratio' FROM user_troops t JOIN users u ON u.id = t.user_id"
        " WHERE u.namecode = %s AND t.extra ? 'Ratio'",
        [namecode(5)],
    ).fetchone()
    assert stored == (str(PRECISE),)  # every digit kept by the ETL
    assert verify(cfg, job_id=job_id, sample_users=50).passed
    pg_conn.execute("UPDATE user_troops SET extra = jsonb_set(extra, '{Ratio}', '0.1') WHERE extra ? 'Ratio'")
    res = verify(cfg, job_id=job_id, sample_users=50)
    mismatches = _check(res, "parity").data["mismatches"]
    assert {(m["table"], m["column"]) for m in mismatches} == {("user_troops", "extra")}
    assert mismatches[0]["found"]["Ratio"] == 0.1 and mismatches[0]["expected"]["Ratio"] == str(PRECISE)


def test_verify_catches_a_missing_summary(cfg: Any, pg_conn: psycopg.Connection) -> None:
    job_id = _run(cfg)
    pg_conn.execute(
        "DELETE FROM user_profile_summary WHERE user_id = (SELECT id FROM users WHERE namecode = %s)", [namecode(2)]
    )
    res = verify(cfg, job_id=job_id, sample_users=50)
    assert res.exit_code == ExitCode.CHECK_FAILED
    coverage = _check(res, "summary_coverage")
    assert not coverage.passed and coverage.data["missing"] == 1 and namecode(2) in coverage.detail
    assert any(m["table"] == "user_profile_summary" for m in _check(res, "parity").data["mismatches"])


def test_verify_catches_a_duplicate(cfg: Any, pg_conn: psycopg.Connection) -> None:
    job_id = _run(cfg)
    duplicate_a_row(pg_conn, "user_pets", "pet_id")
    res = verify(cfg, job_id=job_id, sample_users=0)
    assert res.exit_code == ExitCode.CHECK_FAILED and res.failed == ["uniqueness"]
    dup = _check(res, "uniqueness")
    assert list(dup.data["duplicates"]) == ["user_pets"] and dup.data["duplicates"]["user_pets"][0]["rows"] == 2
    assert "user_pets" in dup.detail


def test_verify_counts_unprocessed_snapshots_and_db_errors(cfg: Any, pg_conn: psycopg.Connection) -> None:
    res = verify(cfg, from_ts=FROM, to_ts=TO, sample_users=5)
    counts = _check(res, "processed_counts")
    assert not counts.passed and counts.data["unaccounted"] == 33 and len(counts.data["first_unaccounted"]) == 20
    _run(cfg)
    sid = pg_conn.execute("SELECT id FROM hero_snapshots WHERE processed_at IS NULL LIMIT 1").fetchone()[0]
    pg_conn.execute("INSERT INTO etl_errors (snapshot_id, error_type, message) VALUES (%s, 'DB_ERROR', 'x')", [sid])
    res = verify(cfg, from_ts=FROM, to_ts=TO, sample_users=0)
    assert res.failed == ["error_types"] and "DB_ERROR" in _check(res, "error_types").detail


def test_verify_refuses_bad_usage(cfg: Any) -> None:
    with pytest.raises(UsageError):
        verify(cfg, job_id="nope")
    with pytest.raises(UsageError):
        verify(cfg, from_ts=FROM)
    with pytest.raises(UsageError):
        verify(cfg, job_id="x", from_ts=FROM, to_ts=TO)


def test_canary_passes_on_a_clean_slice(cfg: Any, pg_conn: psycopg.Connection) -> None:
    res = canary(cfg, users=3, from_ts=FROM, to_ts="2024-01-02T00:00:00Z", observe_s=1)
    assert res.outcome == "passed", res.reasons
    assert res.exit_code == ExitCode.OK and res.job["mode"] == "canary" and res.job["status"] == "done"
    assert len(res.selection.namecodes) == 3 and res.job["processed_count"] == 9
    assert {s["phase"] for s in res.samples} >= {"observe", "final"}
    body = artifacts.read_json(Path(cfg.artifacts_dir) / res.job["job_id"] / "canary.json", "canary")
    assert body["passed"] is True and body["selection"]["namecodes"] == list(res.selection.namecodes)
    gate = latest_gate(pg_conn, "canary", cfg.fingerprint())
    assert gate is not None and gate["passed"] and gate["job_id"] == res.job["job_id"]
    # the same request picks the same users (deterministic), now that theirs are processed: others
    again = canary(cfg, users=3, from_ts=FROM, to_ts="2024-01-02T00:00:00Z", observe_s=0)
    assert again.passed and not set(again.selection.namecodes) & set(res.selection.namecodes)


def test_a_canary_job_records_what_happened_and_no_forced_event(cfg: Any, pg_conn: psycopg.Connection) -> None:
    """A canary is not a forced run: its job's events are created, canary, and no `forced` (gates skipped)."""
    res = canary(cfg, users=2, from_ts=FROM, to_ts="2024-01-02T00:00:00Z", observe_s=0)
    kinds = [
        r[0]
        for r in pg_conn.execute(
            "SELECT kind FROM backfill_events WHERE job_id = %s ORDER BY id", [res.job["job_id"]]
        ).fetchall()
    ]
    assert kinds[0] == "created" and kinds[-1] == "canary" and "forced" not in kinds, kinds
    # a forced production run does record it (the event the canary must not borrow)
    forced = run_job(cfg, from_ts="2024-01-02T00:00:00Z", to_ts=TO, force=True, reason="test the event")
    forced_kinds = pg_conn.execute(
        "SELECT kind, details ->> 'reason' FROM backfill_events WHERE job_id = %s AND kind = 'forced'",
        [forced.job["job_id"]],
    ).fetchall()
    assert forced_kinds == [("forced", "test the event")]


def test_canary_fails_on_a_slice_of_bad_snapshots(cfg: Any, pg_conn: psycopg.Connection) -> None:
    res = canary(cfg, namecodes=list(BAD_NAMECODES), observe_s=1)
    assert res.outcome == "failed" and res.exit_code == ExitCode.CHECK_FAILED
    assert [r.split(":")[0] for r in res.reasons] == ["failure_rate"]
    assert "6/9" in res.reasons[0]
    gate = latest_gate(pg_conn, "canary", cfg.fingerprint())
    assert gate is not None and not gate["passed"] and gate["details"]["reasons"] == res.reasons


def test_canary_refuses_more_than_four_workers(cfg: Any) -> None:
    with pytest.raises(UsageError) as exc:
        canary(cfg, users=1, concurrency=5, observe_s=1)
    assert exc.value.exit_code == ExitCode.USAGE


def test_canary_recent_window_defaults_and_one_selector_only(cfg: Any) -> None:
    with pytest.raises(UsageError):
        canary(cfg, users=2, namecodes=["A"], observe_s=0)
    with pytest.raises(UsageError):
        canary(cfg, recent_s=60, from_ts=FROM, to_ts=TO, observe_s=0)
    res = canary(cfg, users=2, recent_s=3600, observe_s=0, concurrency=2)
    assert res.selection.how == "recent"
    assert res.selection.to_ts.isoformat() == "2024-01-02T14:34:01+00:00"  # newest backlog snapshot, next second
    assert set(res.selection.namecodes) <= set(BAD_NAMECODES)


def test_canary_interrupted_during_observation(cfg: Any, pg_conn: psycopg.Connection) -> None:
    stop = threading.Event()
    timer = threading.Timer(1.5, stop.set)
    timer.start()
    try:
        res = canary(cfg, namecodes=[namecode(0)], observe_s=60, stop=stop)
    finally:
        timer.cancel()
    assert res.outcome == "interrupted" and res.exit_code == ExitCode.INTERRUPTED
    assert latest_gate(pg_conn, "canary", cfg.fingerprint()) is None
    assert not res.gate_recorded and res.artifact is not None and res.artifact.exists()


def test_report_files_manifest_and_tampering(pg_dsn: str, tmp_path: Path) -> None:
    load_corpus(pg_dsn)
    cfg = make_cfg(pg_dsn + " password=s3cret-pw", tmp_path / "artifacts")  # trust auth ignores it
    cfg = cfg.replace(**{"throttle.failure_rate_max": 0.25})  # the corpus fails 6 of 33 on purpose
    job_id = _run(cfg)
    verify(cfg, job_id=job_id, sample_users=3)
    res = report(cfg, job_id=job_id)
    folder = Path(cfg.artifacts_dir) / job_id
    assert set(res.files) == {"md", "html", "json"} and all(p.exists() for p in res.files.values())
    data = json.loads((folder / "report.json").read_text())
    assert data["schema_version"] == artifacts.SCHEMA_VERSION and data["kind"] == "report"
    assert data["job"]["job_id"] == job_id and data["errors_by_type"] == {"PARSE_ERROR": 4, "VALIDATION_ERROR": 2}
    assert data["quarantine"]["count"] == 6 and data["placeholders"]["rows"] == [{"kind": "troop", "id": MISSING_TROOP}]
    assert data["verification"]["passed"] is True and data["throughput"]["snapshots"] == 33
    page = (folder / "report.html").read_text()
    assert "<svg" in page and "<style>" in page
    assert "http" not in page and "<script" not in page and "<link" not in page  # self-contained
    md = (folder / "report.md").read_text()
    assert f"# Backfill report: {job_id}" in md and "| verify | pass |" in md
    for path in folder.rglob("*"):
        assert not path.is_file() or b"s3cret-pw" not in path.read_bytes(), path
    assert "password=***" in data["database"]
    manifest = artifacts.read_json(res.manifest, "manifest")
    assert "manifest.json" not in manifest["files"]
    assert {"report.md", "report.html", "report.json", "verify.json", "config.json"} <= set(manifest["files"])
    assert any(f.startswith("quarantine/") for f in manifest["files"])
    for rel, entry in manifest["files"].items():
        assert artifacts.sha256_file(folder / rel) == entry["sha256"]
    assert verify_manifest(cfg, job_id=job_id).ok
    with open(folder / "report.md", "a") as fh:
        fh.write("tampered\n")
    (folder / "extra.txt").write_text("x")
    check = verify_manifest(cfg, job_id=job_id)
    assert not check.ok and check.exit_code == ExitCode.CHECK_FAILED
    assert check.changed == ["report.md"] and check.added == ["extra.txt"] and check.missing == []


def test_report_reads_backup_and_approvals_from_the_preflight_gate(cfg: Any, pg_conn: psycopg.Connection) -> None:
    from starforge_backfill.runbook.gates import record_gate

    record_gate(
        pg_conn,
        "preflight",
        cfg.fingerprint(),
        True,
        details={"backup": {"backup_id": "snap-2024-01-03"}, "approvals": {"sre": ["bob"], "engineering": ["al"]}},
    )
    job_id = _run(cfg)
    res = report(cfg, job_id=job_id, formats=("json",))
    assert set(res.files) == {"json"}
    pre = res.data["preflight"]
    assert pre["backup_id"] == "snap-2024-01-03" and pre["approvals"] == {"sre": ["bob"], "engineering": ["al"]}
    assert [s["kind"] for s in res.data["steps"]] == ["preflight"]


def test_canary_resumes_an_unfinished_canary_of_its_range_only_under_the_same_config(cfg: Any) -> None:
    stop = threading.Event()
    stop.set()  # the job is created, then the workers stop at once: an unfinished canary job
    first = run_job(
        cfg, from_ts=FROM, to_ts=TO, mode="canary", namecodes=[namecode(1)], force=True, reason="canary", stop=stop
    )
    assert first.outcome == "interrupted"
    with pytest.raises(UsageError, match="under another config"):
        canary(cfg.replace(**{"throttle.failure_rate_max": 0.05}), users=2, from_ts=FROM, to_ts=TO, observe_s=0)
    with pytest.raises(UsageError, match="with another slice"):
        canary(cfg, namecodes=[namecode(2)], from_ts=FROM, to_ts=TO, observe_s=0)
    res = canary(cfg, users=2, from_ts=FROM, to_ts=TO, observe_s=0)
    assert res.selection.resumed_job == first.job["job_id"] == res.job["job_id"]
    assert res.selection.namecodes == (namecode(1),) and res.passed


def test_verify_catches_an_orphan_row(cfg: Any, pg_conn: psycopg.Connection) -> None:
    job_id = _run(cfg)
    assert _check(verify(cfg, job_id=job_id, sample_users=0), "orphans").passed
    troop_id = pg_conn.execute("SELECT troop_id FROM user_troops ORDER BY user_id, troop_id LIMIT 1").fetchone()[0]
    pg_conn.execute("DELETE FROM troop_catalog WHERE id = %s", [troop_id])
    res = verify(cfg, job_id=job_id, sample_users=0)
    orphans = _check(res, "orphans")
    assert res.exit_code == ExitCode.CHECK_FAILED and "orphans" in res.failed
    assert orphans.data["count"] >= 1 and all(r["item_id"] == troop_id for r in orphans.data["rows"])
    assert f"id={troop_id}]: no catalog row" in orphans.detail
