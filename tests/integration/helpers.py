"""Plain helpers for the ETL integration tests: insert snapshots, seed catalogs, apply, read the tables back."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Iterable, Sequence
from decimal import Decimal
from typing import Any

import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

from starforge_backfill.etl.pipeline import BatchResult, EtlSettings, apply_in_transaction

T0 = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
NORMALIZED = ("users", "user_troops", "user_pets", "user_artifacts", "user_profile_summary")
CATALOGS = ("troop_catalog", "pet_catalog", "artifact_catalog")
SENSITIVE_NAMES = ("token", "password", "passwd", "secret", "session", "auth", "username")


def at(minutes: float) -> dt.datetime:
    """An observation time `minutes` after T0."""
    return T0 + dt.timedelta(minutes=minutes)


def dumps_exact(value: Any) -> str:
    """JSON text of `value`, writing a Decimal as its exact digits (numbers no float can hold)."""
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, dict):
        return "{" + ", ".join(f"{json.dumps(k)}: {dumps_exact(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(dumps_exact(v) for v in value) + "]"
    return json.dumps(value)


def insert_snapshot(
    conn: psycopg.Connection[Any],
    raw: Any,
    *,
    namecode: str | None = None,
    created_at: dt.datetime = T0,
    id: uuid.UUID | None = None,
) -> uuid.UUID:
    """Store `raw` as jsonb in hero_snapshots (a str is stored as a JSON *string*: double-encoded; a Decimal
    as its exact digits)."""
    sid = id or uuid.uuid4()
    conn.execute(
        "INSERT INTO hero_snapshots (id, namecode, source, raw, created_at) VALUES (%s, %s, 'test', %s, %s)",
        [sid, namecode, Jsonb(raw, dumps=dumps_exact), created_at],
    )
    return sid


def seed_catalog(
    conn: psycopg.Connection[Any],
    troops: Iterable[int] = (),
    pets: Iterable[int] = (),
    artifacts: Iterable[int] = (),
) -> None:
    """Insert real (non-placeholder) catalog rows."""
    for table, ids in (("troop_catalog", troops), ("pet_catalog", pets), ("artifact_catalog", artifacts)):
        for i in ids:
            conn.execute(
                sql.SQL("INSERT INTO {} (id, name, meta) VALUES (%s, %s, '{{}}') ON CONFLICT DO NOTHING").format(
                    sql.Identifier(table)
                ),
                [i, f"{table} {i}"],
            )


def apply(conn: psycopg.Connection[Any], ids: Sequence[uuid.UUID], settings: EtlSettings | None = None) -> BatchResult:
    """Apply snapshots through the ETL core in one transaction (conn must be autocommit)."""
    with conn.transaction():
        return apply_in_transaction(conn, list(ids), settings or EtlSettings())


def payload(namecode: str | None = "HERO_AAAA", name: str | None = None, **profile: Any) -> dict[str, Any]:
    """A payload with the given ProfileData keys (NameCode/Name left out when None)."""
    out: dict[str, Any] = {}
    if namecode is not None:
        out["NameCode"] = namecode
    if name is not None:
        out["Name"] = name
    out["ProfileData"] = profile
    return out


def rows(conn: psycopg.Connection[Any], query: str, params: Sequence[Any] | dict[str, Any] | None = None) -> list[dict]:
    """Rows of a query as dicts."""
    with conn.cursor(row_factory=psycopg.rows.dict_row) as cur:
        return cur.execute(query, params).fetchall()  # type: ignore[arg-type]


def one(conn: psycopg.Connection[Any], query: str, params: Sequence[Any] | None = None) -> dict:
    """The single row of a query."""
    found = rows(conn, query, params)
    assert len(found) == 1, found
    return found[0]


_STATE_QUERIES = {
    "users": "SELECT namecode, username FROM users ORDER BY namecode",
    "user_troops": (
        "SELECT u.namecode, t.troop_id, t.amount, t.level, t.rarity, t.fusion_cards, t.traits_owned, t.extra,"
        " t.last_seen, t.source_snapshot_id FROM user_troops t JOIN users u ON u.id = t.user_id"
        " ORDER BY 1, 2"
    ),
    "user_pets": (
        "SELECT u.namecode, t.pet_id, t.amount, t.level, t.xp, t.orb_fusion_cards, t.orbs_used,"
        " t.ascension_level, t.extra, t.last_seen, t.source_snapshot_id"
        " FROM user_pets t JOIN users u ON u.id = t.user_id ORDER BY 1, 2"
    ),
    "user_artifacts": (
        "SELECT u.namecode, t.artifact_id, t.level, t.xp, t.extra, t.last_seen, t.source_snapshot_id"
        " FROM user_artifacts t JOIN users u ON u.id = t.user_id ORDER BY 1, 2"
    ),
    "user_profile_summary": (
        "SELECT u.namecode AS user_namecode, s.namecode, s.username, s.level, s.top_troops, s.equipped_pet,"
        " s.pvp_tier, s.guild_id, s.last_seen, s.extra, s.source_snapshot_id"
        " FROM user_profile_summary s JOIN users u ON u.id = s.user_id ORDER BY 1"
    ),
    "catalogs": (
        "SELECT 'troop' AS kind, id, name, meta FROM troop_catalog UNION ALL"
        " SELECT 'pet', id, name, meta FROM pet_catalog UNION ALL"
        " SELECT 'artifact', id, name, meta FROM artifact_catalog ORDER BY 1, 2"
    ),
}


def state(conn: psycopg.Connection[Any]) -> dict[str, list[tuple]]:
    """The normalized tables (and catalogs) keyed by namecode and ids; no user uuids, updated_at, cached_at."""
    return {name: [tuple(r.values()) for r in rows(conn, q)] for name, q in _STATE_QUERIES.items()}


def snapshot_rows(conn: psycopg.Connection[Any], sid: uuid.UUID) -> dict[str, int]:
    """How many rows of each normalized table trace back to snapshot `sid`."""
    out = {}
    for table in NORMALIZED[1:]:
        q = sql.SQL("SELECT count(*) FROM {} WHERE source_snapshot_id = %s").format(sql.Identifier(table))
        out[table] = conn.execute(q, [sid]).fetchone()[0]  # type: ignore[index]
    return out


def errors(conn: psycopg.Connection[Any]) -> list[dict]:
    """etl_errors rows, oldest first."""
    return rows(conn, "SELECT snapshot_id, error_type, message, details FROM etl_errors ORDER BY created_at, id")


def error_set(conn: psycopg.Connection[Any]) -> set[tuple[uuid.UUID, str]]:
    """{(snapshot id, error type)} of etl_errors."""
    return {(r["snapshot_id"], r["error_type"]) for r in errors(conn)}


def xmins(conn: psycopg.Connection[Any], tables: Iterable[str] = NORMALIZED) -> dict[str, set[tuple[str, str]]]:
    """Per table, the set of (row as JSON text, xmin) of every row: equal sets mean no row was rewritten."""
    out = {}
    for table in tables:
        q = sql.SQL("SELECT to_jsonb(t)::text, t.xmin::text FROM {} AS t").format(sql.Identifier(table))
        out[table] = set(conn.execute(q).fetchall())
    return out


def text_columns(conn: psycopg.Connection[Any]) -> list[tuple[str, str]]:
    """(table, column) of every text-like or jsonb column of every table in the current schema."""
    return [
        (t, c)
        for t, c in conn.execute(
            "SELECT table_name, column_name FROM information_schema.columns"
            " WHERE table_schema = current_schema()"
            " AND data_type IN ('text', 'jsonb', 'json', 'character varying', 'character')"
            " ORDER BY 1, 2"
        ).fetchall()
    ]


def find_text(
    conn: psycopg.Connection[Any],
    needles: Iterable[str],
    *,
    skip: Iterable[tuple[str, str]] = (("hero_snapshots", "raw"),),
) -> list[tuple[str, str, str]]:
    """(table, column, needle) for every needle found (case-insensitive) in any text/jsonb column."""
    skipped = set(skip)
    hits = []
    for table, column in text_columns(conn):
        if (table, column) in skipped:
            continue
        for needle in needles:
            q = sql.SQL("SELECT 1 FROM {} WHERE strpos(lower({}::text), lower(%s)) > 0 LIMIT 1").format(
                sql.Identifier(table), sql.Identifier(column)
            )
            if conn.execute(q, [needle]).fetchone():
                hits.append((table, column, needle))
    return hits


def truncate_all(conn: psycopg.Connection[Any]) -> None:
    """Empty every data table (a fresh state for the next pass)."""
    conn.execute(
        "TRUNCATE users, hero_snapshots, user_troops, user_pets, user_artifacts, user_profile_summary,"
        " troop_catalog, pet_catalog, artifact_catalog, etl_errors, backfill_username_seen CASCADE"
    )
