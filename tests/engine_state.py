"""Reading the engine tests' database back: the normalized tables by namecode and ids, and small queries."""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterator
from typing import Any

import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo

from starforge_backfill import jobs, schema
from starforge_backfill.synthetic import SyntheticSpec, load

# The engine tests' corpus: a few malformed snapshots (one of them a DB_ERROR, which sends its batch down the
# per-snapshot path).
SPEC = SyntheticSpec(snapshots=300, users=30, size_mix=((1.0, 8000),), malformed_ratio=0.02)

_STATE = {
    "users": "SELECT namecode, username FROM users ORDER BY namecode",
    **{
        table: (
            f"SELECT u.namecode, to_jsonb(t) - 'id' - 'user_id' - 'updated_at' AS r FROM {table} t"
            " JOIN users u ON u.id = t.user_id ORDER BY 1, 2"
        )
        for table in ("user_troops", "user_pets", "user_artifacts")
    },
    "user_profile_summary": (
        "SELECT u.namecode, to_jsonb(s) - 'user_id' - 'cached_at' AS r FROM user_profile_summary s"
        " JOIN users u ON u.id = s.user_id ORDER BY 1"
    ),
    "catalogs": (
        "SELECT * FROM (SELECT 'troop' AS k, to_jsonb(c) AS r FROM troop_catalog c"
        " UNION ALL SELECT 'pet', to_jsonb(c) FROM pet_catalog c"
        " UNION ALL SELECT 'artifact', to_jsonb(c) FROM artifact_catalog c) AS x ORDER BY k, r"
    ),
    "hero_snapshots": (
        "SELECT h.id, u.namecode, h.error_count, h.processed_at IS NOT NULL, h.last_error ->> 'error_type'"
        " FROM hero_snapshots h LEFT JOIN users u ON u.id = h.user_id ORDER BY h.id"
    ),
    "etl_errors": "SELECT snapshot_id, error_type, message FROM etl_errors ORDER BY 1, 2, 3",
    "username_seen": (
        "SELECT u.namecode, s.seen_at, s.snapshot_id, s.username FROM backfill_username_seen s"
        " JOIN users u ON u.id = s.user_id ORDER BY 1"
    ),
}


def table_state(dsn: str) -> dict[str, list[tuple[Any, ...]]]:
    """The normalized tables by namecode and ids (no uuids of users, updated_at, cached_at, processed_at)."""
    with psycopg.connect(dsn) as conn:
        return {name: [tuple(r) for r in conn.execute(q).fetchall()] for name, q in _STATE.items()}  # type: ignore[arg-type]


def scalar(dsn: str, query: str, params: Any = None) -> Any:
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute(query, params).fetchone()  # type: ignore[arg-type]
        return row[0] if row else None


@contextlib.contextmanager
def scratch_database(server_dsn: str, prefix: str) -> Iterator[str]:
    """A database of its own with the full schema, for a module-scoped fixture; dropped afterwards."""
    name = f"{prefix}_{os.getpid()}_{secrets.token_hex(3)}"
    with psycopg.connect(server_dsn, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        dsn = make_conninfo(server_dsn, dbname=name)
        schema.init_db(dsn)
        yield dsn
    finally:
        with psycopg.connect(server_dsn, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def load_corpus(dsn: str, spec: SyntheticSpec = SPEC) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        load(conn, spec)


def job_row(dsn: str, job_id: str) -> dict[str, Any]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = jobs.get_job(conn, job_id)
    assert row is not None
    return row


def assert_exact(dsn: str, job_id: str, total: int = 300) -> dict[str, Any]:
    """The job is done and counted every snapshot exactly once (counters and batch log agree)."""
    job = job_row(dsn, job_id)
    assert job["status"] == "done", job
    assert job["total_count"] == total
    assert job["processed_count"] + job["error_count"] == total
    assert scalar(dsn, "SELECT sum(snapshots) FROM backfill_batches WHERE job_id = %s", [job_id]) == total
    assert scalar(dsn, "SELECT count(*) FROM backfill_chunks WHERE job_id = %s AND status <> 'done'", [job_id]) == 0
    untouched = (
        "SELECT count(*) FROM hero_snapshots WHERE created_at >= %s AND created_at < %s"
        " AND processed_at IS NULL AND error_count = 0"
    )
    assert scalar(dsn, untouched, [job["from_ts"], job["to_ts"]]) == 0  # nothing in the job's range left behind
    return job
