"""The recovery path's starting point, for the `reprocess` tests: the post-backfill corpus run under catalog
policy `fail`, so the snapshots using MISSING_TROOP fail with FK_VIOLATION (one old, three the newest of their
user), plus one PARSE_ERROR snapshot; then the catalog row that was missing."""

from __future__ import annotations

import dataclasses
import uuid
from pathlib import Path
from typing import Any

import psycopg
from runbook_post_corpus import (
    FROM,
    MISSING_TROOP,
    SNAPSHOTS_PER_USER,
    TO,
    at,
    good_payload,
    insert,
    load_corpus,
    make_cfg,
    namecode,
)
from running import run_job

from starforge_backfill.config import Config

NEWEST_WITH_MISSING = (4, 5, 6)  # users whose newest snapshot uses MISSING_TROOP
WRITTEN = ("users", "user_troops", "user_pets", "user_artifacts", "user_profile_summary")


@dataclasses.dataclass
class Failed:
    """What the policy-`fail` run left: its job, the FK_VIOLATION and PARSE_ERROR snapshots, all snapshot ids."""

    job_id: str
    fk: set[uuid.UUID]
    newest_fk: dict[int, uuid.UUID]  # user -> its newest snapshot, which uses MISSING_TROOP
    parse_error: uuid.UUID
    ids: dict[str, list[uuid.UUID]]


def fail_cfg(dsn: str, artifacts_dir: Path) -> Config:
    """Policy `fail`, and an error budget the deliberate failures stay within (the tests are about recovery)."""
    return make_cfg(dsn, artifacts_dir, **{"etl.catalog_policy": "fail", "throttle.failure_rate_max": 0.5})


def backfill_with_fk_failures(dsn: str, cfg: Config) -> Failed:
    """Load the corpus (+ newest snapshots using MISSING_TROOP, + a PARSE_ERROR), run it under policy `fail`."""
    ids = load_corpus(dsn, bad=False)
    newest: dict[int, uuid.UUID] = {}
    with psycopg.connect(dsn, autocommit=True) as conn:
        for i in NEWEST_WITH_MISSING:
            payload = good_payload(i, SNAPSHOTS_PER_USER)
            payload["ProfileData"]["Troops"].append({"TroopId": MISSING_TROOP, "Amount": 3, "Level": 2})
            newest[i] = insert(conn, payload, namecode(i), at(i, SNAPSHOTS_PER_USER))
        broken = insert(conn, ["not", "an", "object"], "BROKEN_0001", at(7, 1))
    res = run_job(cfg, from_ts=FROM, to_ts=TO, force=True, reason="policy fail")
    assert res.outcome == "done", res.summary()
    fk = set(snapshots_with_error(dsn, "FK_VIOLATION"))
    assert fk == {ids[namecode(0)][1], *newest.values()}, fk
    assert snapshots_with_error(dsn, "PARSE_ERROR") == [broken]
    return Failed(str(res.job["job_id"]), fk, newest, broken, ids)


def add_missing_catalog_row(dsn: str) -> None:
    """The authoritative catalog lands: the troop the failed snapshots use."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("INSERT INTO troop_catalog (id, name, meta) VALUES (%s, 'Late Troop', '{}')", [MISSING_TROOP])


def snapshots_with_error(dsn: str, error_type: str) -> list[uuid.UUID]:
    """Snapshots with an etl_errors row of this type, whatever their state now."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT DISTINCT snapshot_id FROM etl_errors WHERE error_type = %s ORDER BY 1", [error_type]
        ).fetchall()
    return [r[0] for r in rows]


def snapshot_state(dsn: str, ids: set[uuid.UUID] | list[uuid.UUID]) -> dict[uuid.UUID, tuple[Any, ...]]:
    """id -> (processed, error_count, etl_errors rows) of these snapshots."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT h.id, h.processed_at IS NOT NULL, h.error_count, "
            "(SELECT count(*) FROM etl_errors e WHERE e.snapshot_id = h.id) "
            "FROM hero_snapshots h WHERE h.id = ANY(%s)",
            [list(ids)],
        ).fetchall()
    return {r[0]: tuple(r[1:]) for r in rows}


def unprocessed(dsn: str) -> set[uuid.UUID]:
    """Every snapshot not processed now."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        return {r[0] for r in conn.execute("SELECT id FROM hero_snapshots WHERE processed_at IS NULL").fetchall()}


def xmins(dsn: str) -> dict[str, set[tuple[str, str]]]:
    """(ctid, xmin) of every row of the tables the ETL writes: equal before and after means nothing written."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        return {
            t: {(r[0], r[1]) for r in conn.execute(f"SELECT ctid::text, xmin::text FROM {t}").fetchall()}  # type: ignore[arg-type]
            for t in WRITTEN
        }


def count_jobs(dsn: str) -> int:
    """backfill_jobs rows."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute("SELECT count(*) FROM backfill_jobs").fetchone()
    assert row is not None
    return int(row[0])


def job(dsn: str, job_id: str) -> dict[str, Any]:
    """A backfill_jobs row."""
    with psycopg.connect(dsn, autocommit=True, row_factory=psycopg.rows.dict_row) as conn:
        row = conn.execute("SELECT * FROM backfill_jobs WHERE job_id = %s", [job_id]).fetchone()
    assert row is not None
    return row


def troop_row(dsn: str, user: int, troop: int) -> tuple[Any, ...] | None:
    """(amount, source_snapshot_id) of a user_troops row by namecode, or None."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        return conn.execute(
            "SELECT t.amount, t.source_snapshot_id FROM user_troops t JOIN users u ON u.id = t.user_id "
            "WHERE u.namecode = %s AND t.troop_id = %s",
            [namecode(user), troop],
        ).fetchone()


__all__ = ["FROM", "MISSING_TROOP", "TO"]
