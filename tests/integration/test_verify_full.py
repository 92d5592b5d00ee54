"""verify --full against real PostgreSQL: each kind of planted damage is caught and named; a clean backfill
(in any processing order) passes; the check reads the tables, never writes them."""

from __future__ import annotations

import datetime as dt
import uuid
from pathlib import Path
from typing import Any

import psycopg
import pytest
from runbook_post_corpus import FROM, TO, at, good_payload, insert, load_corpus, make_cfg, namecode
from running import run_job

from starforge_backfill import artifacts
from starforge_backfill.errors import ExitCode
from starforge_backfill.runbook.verify import verify

WRITTEN = ("users", "user_troops", "user_pets", "user_artifacts", "user_profile_summary", "hero_snapshots")


@pytest.fixture
def cfg(pg_dsn: str, tmp_path: Path) -> Any:
    """The corpus fails 6 of its 33 snapshots on purpose: an error budget of 25% accepts that."""
    load_corpus(pg_dsn)
    return make_cfg(pg_dsn, tmp_path / "artifacts", **{"throttle.failure_rate_max": 0.25})


def _run(cfg: Any, from_ts: str = FROM, to_ts: str = TO) -> str:
    res = run_job(cfg, from_ts=from_ts, to_ts=to_ts, force=True, reason="test")
    assert res.outcome == "done", res.summary()
    return str(res.job["job_id"])


def _full(res: Any) -> Any:
    return next(c for c in res.checks if c.name == "full")


def _findings(res: Any) -> list[dict[str, Any]]:
    return list(_full(res).data["findings"])


def _user(conn: psycopg.Connection, i: int) -> uuid.UUID:
    row = conn.execute("SELECT id FROM users WHERE namecode = %s", [namecode(i)]).fetchone()
    assert row is not None
    return uuid.UUID(str(row[0]))


def _fingerprint(conn: psycopg.Connection) -> dict[str, Any]:
    """Every written table's rows with their xmin (a rewrite changes it, even to the same values)."""
    return {t: conn.execute(f"SELECT xmin::text, t.* FROM {t} AS t ORDER BY 1, 2").fetchall() for t in WRITTEN}


def test_a_clean_backfill_passes_every_row_and_writes_nothing(cfg: Any, pg_conn: psycopg.Connection) -> None:
    job_id = _run(cfg)
    before = _fingerprint(pg_conn)
    res = verify(cfg, job_id=job_id, sample_users=5)  # a done job: full mode by default
    assert res.passed, [c.detail for c in res.checks if not c.passed]
    assert res.mode == "full" and res.mode_detail.startswith("full: every row of 11 user(s)")
    full = _full(res)
    assert (full.data["users"], full.data["snapshots"], full.data["finding_count"]) == (11, 27, 0)
    rows = full.data["rows"]
    assert rows["user_profile_summary"] == {"expected": 11, "found": 11}
    assert rows["user_troops"]["expected"] == rows["user_troops"]["found"] > 0
    assert _fingerprint(pg_conn) == before
    saved = artifacts.read_json(Path(cfg.artifacts_dir) / job_id / "verify.json", "verify")
    assert saved["mode"] == "full" and saved["passed"] is True
    # plain verify over a range, or with --sample, stays the sample check
    assert verify(cfg, from_ts=FROM, to_ts=TO, sample_users=5).mode == "sample"
    assert "full" not in [c.name for c in verify(cfg, job_id=job_id, mode="sample").checks]


def test_newest_first_and_repeated_processing_pass(cfg: Any) -> None:
    _run(cfg, "2024-01-01T06:00:00Z", TO)  # the newer snapshots first ...
    _run(cfg, FROM, "2024-01-01T06:00:00Z")  # ... then the oldest: their rows must not overwrite newer ones
    res = verify(cfg, mode="full", sample_users=0)  # everything
    assert res.passed, [c.detail for c in res.checks if not c.passed]
    assert _full(res).data["users"] == 11


def test_a_changed_value_is_named(cfg: Any, pg_conn: psycopg.Connection) -> None:
    job_id = _run(cfg)
    uid = _user(pg_conn, 4)
    (troop,) = pg_conn.execute(
        "UPDATE user_troops SET amount = amount + 7 WHERE (user_id, troop_id) = "
        "(SELECT user_id, min(troop_id) FROM user_troops WHERE user_id = %s GROUP BY 1) RETURNING troop_id",
        [uid],
    ).fetchone()
    pg_conn.execute("UPDATE user_pets SET extra = extra || '{\"Tamed\": true}' WHERE user_id = %s", [uid])
    res = verify(cfg, job_id=job_id, sample_users=0)
    assert res.exit_code == ExitCode.CHECK_FAILED and res.failed == ["full"]
    found = _findings(res)
    amount = [f for f in found if f["table"] == "user_troops"]
    assert len(amount) == 1, amount
    f = amount[0]
    assert (f["kind"], f["namecode"], f["key"], f["column"]) == ("changed", namecode(4), {"troop_id": troop}, "amount")
    assert f["found"] == f["expected"] + 7
    pets = [f for f in found if f["table"] == "user_pets"]
    assert pets and {(p["kind"], p["column"]) for p in pets} == {("changed", "extra")}
    assert all(p["found"]["Tamed"] is True and "Tamed" not in p["expected"] for p in pets)
    assert f"user_troops[{namecode(4)}, troop_id={troop}].amount" in _full(res).detail


def test_a_deleted_row_is_missing(cfg: Any, pg_conn: psycopg.Connection) -> None:
    job_id = _run(cfg)
    uid = _user(pg_conn, 6)
    (art,) = pg_conn.execute(
        "DELETE FROM user_artifacts WHERE (user_id, artifact_id) = "
        "(SELECT user_id, max(artifact_id) FROM user_artifacts WHERE user_id = %s GROUP BY 1) RETURNING artifact_id",
        [uid],
    ).fetchone()
    res = verify(cfg, job_id=job_id, sample_users=0)
    (f,) = _findings(res)
    assert (f["kind"], f["table"], f["namecode"], f["key"], f["column"], f["found"]) == (
        "missing",
        "user_artifacts",
        namecode(6),
        {"artifact_id": art},
        None,
        None,
    )
    assert "source_snapshot_id" in f["expected"] and "item_id" not in f["expected"]


def test_a_row_no_valid_snapshot_supports(cfg: Any, pg_conn: psycopg.Connection) -> None:
    job_id = _run(cfg)
    uid = _user(pg_conn, 1)
    pg_conn.execute(
        "INSERT INTO user_troops (user_id, troop_id, amount, last_seen, source_snapshot_id)"
        " SELECT %s, 29, 5, last_seen, source_snapshot_id FROM user_profile_summary WHERE user_id = %s",
        [uid, uid],
    )
    res = verify(cfg, job_id=job_id, sample_users=0)
    (f,) = _findings(res)
    assert (f["kind"], f["table"], f["namecode"], f["key"]) == (
        "unsupported",
        "user_troops",
        namecode(1),
        {"troop_id": 29},
    )
    assert f["expected"] is None and f["found"]["amount"] == 5


def test_wrong_provenance_is_named(cfg: Any, pg_conn: psycopg.Connection) -> None:
    """A row holding the right values but pointing at an older snapshot of its user (the values of the
    newest snapshot were written, the provenance of another)."""
    job_id = _run(cfg)
    uid = _user(pg_conn, 0)
    older = pg_conn.execute(
        "SELECT id, created_at FROM hero_snapshots WHERE user_id = %s AND processed_at IS NOT NULL"
        " ORDER BY created_at LIMIT 1",
        [uid],
    ).fetchone()
    (pet,) = pg_conn.execute(
        "UPDATE user_pets SET source_snapshot_id = %s, last_seen = %s WHERE (user_id, pet_id) ="
        " (SELECT user_id, min(pet_id) FROM user_pets WHERE user_id = %s GROUP BY 1) RETURNING pet_id",
        [older[0], older[1], uid],
    ).fetchone()
    res = verify(cfg, job_id=job_id, sample_users=0)
    found = _findings(res)
    assert {(f["kind"], f["table"], f["column"]) for f in found} == {
        ("provenance", "user_pets", "source_snapshot_id"),
        ("provenance", "user_pets", "last_seen"),
    }
    sid = next(f for f in found if f["column"] == "source_snapshot_id")
    assert sid["key"] == {"pet_id": pet} and sid["found"] == str(older[0]) and sid["expected"] != sid["found"]


def test_a_changed_summary_and_username_are_named(cfg: Any, pg_conn: psycopg.Connection) -> None:
    job_id = _run(cfg)
    uid2, uid3 = _user(pg_conn, 2), _user(pg_conn, 3)
    pg_conn.execute("UPDATE user_profile_summary SET level = level + 1, top_troops = '[]' WHERE user_id = %s", [uid2])
    pg_conn.execute("UPDATE users SET username = 'Impostor' WHERE id = %s", [uid3])
    pg_conn.execute("UPDATE user_profile_summary SET username = 'Impostor' WHERE user_id = %s", [uid3])
    res = verify(cfg, job_id=job_id, sample_users=0)
    got = {(f["kind"], f["table"], f["namecode"], f["column"]) for f in _findings(res)}
    assert got == {
        ("changed", "user_profile_summary", namecode(2), "level"),
        ("changed", "user_profile_summary", namecode(2), "top_troops"),
        ("changed", "users", namecode(3), "username"),
        ("changed", "user_profile_summary", namecode(3), "username"),
    }
    name = next(f for f in _findings(res) if f["table"] == "users")
    # user 3's newest snapshot has no Name: the name comes from the one before it
    assert (name["expected"], name["found"], name["key"]) == ("Hero3v1", "Impostor", {"id": str(uid3)})


def test_a_processed_snapshot_the_contract_rejects(cfg: Any, pg_conn: psycopg.Connection) -> None:
    """A snapshot marked processed that should have failed (and written nothing) is a finding; a newer valid
    snapshot of a user that was never processed is not (full mode checks what processing wrote)."""
    job_id = _run(cfg)
    uid = _user(pg_conn, 7)
    sid = pg_conn.execute(
        "UPDATE hero_snapshots SET raw = jsonb_set(raw, '{ProfileData,Level}', '-3')"
        " WHERE id = (SELECT id FROM hero_snapshots WHERE user_id = %s ORDER BY created_at LIMIT 1) RETURNING id",
        [uid],
    ).fetchone()[0]
    with psycopg.connect(cfg.database.dsn, autocommit=True) as conn:
        insert(conn, good_payload(7, 9), namecode(7), at(7, 9) + dt.timedelta(days=30))
    res = verify(cfg, job_id=job_id, sample_users=0)
    found = _findings(res)
    assert [(f["kind"], f["table"], f["key"], f["namecode"]) for f in found] == [
        ("rejected", "hero_snapshots", {"id": str(sid)}, namecode(7))
    ]
    assert found[0]["expected"].startswith("not processed (VALIDATION_ERROR")


def test_findings_are_all_in_the_artifact_and_chunks_do_not_change_them(cfg: Any, pg_conn: psycopg.Connection) -> None:
    job_id = _run(cfg)
    pg_conn.execute("UPDATE user_troops SET level = level + 1")
    n = pg_conn.execute("SELECT count(*) FROM user_troops").fetchone()[0]
    from starforge_backfill.runbook import verify_full

    small = verify_full.CHUNK_SNAPSHOTS
    try:
        verify_full.CHUNK_SNAPSHOTS = 2  # a good user per chunk (3 processed snapshots each)
        res = verify(cfg, job_id=job_id, sample_users=0)
    finally:
        verify_full.CHUNK_SNAPSHOTS = small
    full = _full(res)
    assert full.data["chunks"] >= 8 and full.data["finding_count"] == n == len(full.data["findings"])
    saved = artifacts.read_json(Path(cfg.artifacts_dir) / job_id / "verify.json", "verify")
    on_disk = next(c for c in saved["checks"] if c["name"] == "full")
    assert len(on_disk["data"]["findings"]) == n and on_disk["data"]["by_kind"] == {"changed": n}


def test_everything_checks_users_without_a_processed_snapshot(cfg: Any, pg_conn: psycopg.Connection) -> None:
    """Over every snapshot (no job, no range), a user the ETL never derived anything for is checked too: its
    rows are rows no valid snapshot supports."""
    _run(cfg)
    (ghost,) = pg_conn.execute("INSERT INTO users (namecode) VALUES ('GHOST_0001') RETURNING id").fetchone()
    pg_conn.execute(
        "INSERT INTO user_profile_summary (user_id, namecode, last_seen, source_snapshot_id)"
        " VALUES (%s, 'GHOST_0001', now(), gen_random_uuid())",
        [ghost],
    )
    res = verify(cfg, mode="full", sample_users=0)
    (f,) = _findings(res)
    assert (f["kind"], f["table"], f["namecode"], f["key"]) == (
        "unsupported",
        "user_profile_summary",
        "GHOST_0001",
        {"user_id": str(ghost)},
    )
    assert _full(res).data["users"] == 12
    # a job's scope holds only the users with a processed snapshot in it
    by_range = verify(cfg, from_ts=FROM, to_ts=TO, mode="full", sample_users=0)
    assert _full(by_range).data["users"] == 11 and by_range.passed
