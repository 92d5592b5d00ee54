"""`db init`: create the StarForge tables (when absent) and the toolkit's own tables, idempotently."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import psycopg

from starforge_backfill import templates
from starforge_backfill.db import connect, translate_errors
from starforge_backfill.errors import SchemaMissing

# Columns the ETL and the engine rely on, per table (preflight checks these against production).
REQUIRED_COLUMNS: dict[str, tuple[str, ...]] = {
    "users": ("id", "namecode", "username", "created_at", "updated_at"),
    "hero_snapshots": (
        "id",
        "user_id",
        "namecode",
        "source",
        "raw",
        "size_bytes",
        "content_hash",
        "processing",
        "processing_started_at",
        "processed_at",
        "error_count",
        "last_error",
        "created_at",
    ),
    "user_troops": (
        "user_id",
        "troop_id",
        "amount",
        "level",
        "rarity",
        "fusion_cards",
        "traits_owned",
        "extra",
        "last_seen",
        "source_snapshot_id",
        "updated_at",
    ),
    "user_pets": (
        "user_id",
        "pet_id",
        "amount",
        "level",
        "xp",
        "orb_fusion_cards",
        "orbs_used",
        "ascension_level",
        "extra",
        "last_seen",
        "source_snapshot_id",
        "updated_at",
    ),
    "user_artifacts": (
        "user_id",
        "artifact_id",
        "level",
        "xp",
        "extra",
        "last_seen",
        "source_snapshot_id",
        "updated_at",
    ),
    "user_profile_summary": (
        "user_id",
        "namecode",
        "username",
        "level",
        "top_troops",
        "equipped_pet",
        "pvp_tier",
        "guild_id",
        "last_seen",
        "cached_at",
        "extra",
        "source_snapshot_id",
    ),
    "troop_catalog": ("id", "name", "meta"),
    "pet_catalog": ("id", "name", "meta"),
    "artifact_catalog": ("id", "name", "meta"),
    "etl_errors": ("id", "snapshot_id", "error_type", "message", "details", "created_at", "job_id"),
    "queue_jobs": (
        "id",
        "type",
        "payload",
        "priority",
        "attempts",
        "max_attempts",
        "status",
        "run_after",
        "last_error",
        "created_at",
        "updated_at",
    ),
    "backfill_jobs": (
        "job_id",
        "owner",
        "from_ts",
        "to_ts",
        "batch_size",
        "concurrency",
        "status",
        "processed_count",
        "error_count",
        "last_checkpoint",
        "started_at",
        "finished_at",
        "operator",
        "batch_fixed",
        "finalized_at",
        "finalized_by",
    ),
    "backfill_chunks": ("job_id", "chunk_no", "status"),
    "backfill_events": ("job_id", "kind", "details", "operator"),
    "backfill_batches": ("job_id", "snapshots"),
    "backfill_gates": (
        "kind",
        "config_fingerprint",
        "passed",
        "details",
        "db_system_identifier",
        "db_name",
        "concurrency",
    ),
    "backfill_username_seen": ("user_id", "seen_at", "snapshot_id", "username"),
    "quarantine_copies": ("job_id", "snapshot_id", "local_path", "s3_url", "attempts", "last_error"),
    "etl_events": (
        "id",
        "event",
        "snapshot_id",
        "namecode",
        "job_id",
        "outcome",
        "error_type",
        "duration_ms",
        "rows_written",
        "created_at",
    ),
    "etl_event_cursors": ("consumer", "last_id", "updated_at"),
}


@dataclass(frozen=True)
class InitResult:
    """What `db init` did."""

    files: tuple[str, ...]
    tables_before: int
    tables_after: int


def schema_files() -> list[str]:
    """The schema templates, in the order they run."""
    return [n for n in templates.template_names() if n.startswith("schema/")]


def _count_tables(conn: psycopg.Connection) -> int:
    row = conn.execute(
        "SELECT count(*) FROM information_schema.tables WHERE table_schema = current_schema() AND table_name = ANY(%s)",
        [list(REQUIRED_COLUMNS)],
    ).fetchone()
    return int(row[0]) if row else 0


def init_db(dsn: str) -> InitResult:
    """Create every table and index the toolkit needs; running it again changes nothing."""
    with connect(dsn, autocommit=True, statement_timeout_s=None) as conn, translate_errors(dsn):
        before = _count_tables(conn)
        files = schema_files()
        with conn.transaction():
            # One advisory lock so that two concurrent `db init` runs do not race on CREATE ... IF NOT EXISTS.
            conn.execute("SELECT pg_advisory_xact_lock(hashtext('starforge-backfill db init'))")
            for name in files:
                templates.execute(conn, name)
        after = _count_tables(conn)
    return InitResult(files=tuple(files), tables_before=before, tables_after=after)


def missing_columns(conn: psycopg.Connection) -> dict[str, list[str]]:
    """Tables or columns the toolkit needs that the database lacks: {table: [missing columns]}."""
    rows = conn.execute(
        "SELECT table_name, column_name FROM information_schema.columns"
        " WHERE table_schema = current_schema() AND table_name = ANY(%s)",
        [list(REQUIRED_COLUMNS)],
    ).fetchall()
    have: dict[str, set[str]] = {}
    for table, column in rows:
        have.setdefault(table, set()).add(column)
    out: dict[str, list[str]] = {}
    for table, cols in REQUIRED_COLUMNS.items():
        missing = [c for c in cols if c not in have.get(table, set())]
        if missing:
            out[table] = missing
    return out


def check_schema(conn: psycopg.Connection[Any]) -> None:
    """Raise SchemaMissing (exit 3) when the database lacks the tables or columns the toolkit needs."""
    missing = missing_columns(conn)
    if missing:
        first = ", ".join(f"{t}({', '.join(c[:3])})" for t, c in list(missing.items())[:3])
        raise SchemaMissing(f"the database lacks the expected schema: missing {first}")
