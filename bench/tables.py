"""What a method left in its database: row counts, and content digests to check two methods agree."""

from __future__ import annotations

from typing import Any

import psycopg

# table -> SELECT of one text per row, independent of generated ids (users are named by namecode) and of
# wall-clock columns (updated_at, cached_at, processed_at's value, error messages).
CONTENT = {
    "users": "SELECT ROW(namecode, username)::text FROM users",
    "user_troops": """SELECT ROW(u.namecode, t.troop_id, t.amount, t.level, t.rarity, t.fusion_cards,
        t.traits_owned, t.extra, t.last_seen, t.source_snapshot_id)::text
        FROM user_troops t JOIN users u ON u.id = t.user_id""",
    "user_pets": """SELECT ROW(u.namecode, p.pet_id, p.amount, p.level, p.xp, p.orb_fusion_cards, p.orbs_used,
        p.ascension_level, p.extra, p.last_seen, p.source_snapshot_id)::text
        FROM user_pets p JOIN users u ON u.id = p.user_id""",
    "user_artifacts": """SELECT ROW(u.namecode, a.artifact_id, a.level, a.xp, a.extra, a.last_seen,
        a.source_snapshot_id)::text FROM user_artifacts a JOIN users u ON u.id = a.user_id""",
    "user_profile_summary": """SELECT ROW(s.namecode, s.username, s.level, s.top_troops, s.equipped_pet,
        s.pvp_tier, s.guild_id, s.last_seen, s.extra, s.source_snapshot_id, u.namecode)::text
        FROM user_profile_summary s JOIN users u ON u.id = s.user_id""",
    "hero_snapshots": """SELECT ROW(h.id, u.namecode, h.processed_at IS NOT NULL, h.error_count,
        h.last_error->>'error_type', h.processing)::text
        FROM hero_snapshots h LEFT JOIN users u ON u.id = h.user_id""",
    "etl_errors": "SELECT ROW(snapshot_id, error_type)::text FROM etl_errors",
    "placeholders": """SELECT ROW('troop', id)::text FROM troop_catalog WHERE meta ? 'placeholder'
        UNION ALL SELECT ROW('pet', id)::text FROM pet_catalog WHERE meta ? 'placeholder'
        UNION ALL SELECT ROW('artifact', id)::text FROM artifact_catalog WHERE meta ? 'placeholder'""",
}


def snapshot_state(dsn: str) -> dict[str, dict[str, Any]]:
    """{table: {"rows": n, "digest": md5 of its sorted content}} for every table in CONTENT."""
    out = {}
    with psycopg.connect(dsn, application_name="starforge-bench-check") as conn:
        for table, select in CONTENT.items():
            query = f"SELECT count(*), md5(coalesce(string_agg(x, E'\\n' ORDER BY x), '')) FROM ({select}) AS s(x)"
            rows, digest = conn.execute(query.encode()).fetchone()
            out[table] = {"rows": rows, "digest": digest}
    return out


def entity_rows(state: dict[str, dict[str, Any]]) -> int:
    """Troop, pet and artifact rows in the tables."""
    return sum(state[t]["rows"] for t in ("user_troops", "user_pets", "user_artifacts"))


def compare(a: dict[str, dict[str, Any]], b: dict[str, dict[str, Any]]) -> dict[str, bool]:
    """Per table: do two databases hold the same content?"""
    return {t: a[t] == b[t] for t in a}


def progress(dsn: str) -> dict[str, int]:
    """Snapshots processed, failed (error_count > 0) and still untouched."""
    with psycopg.connect(dsn, application_name="starforge-bench-check") as conn:
        processed, failed, untouched = conn.execute(
            "SELECT count(*) FILTER (WHERE processed_at IS NOT NULL), "
            "count(*) FILTER (WHERE error_count > 0), "
            "count(*) FILTER (WHERE processed_at IS NULL AND error_count = 0) FROM hero_snapshots"
        ).fetchone()
    return {"processed": processed, "failed": failed, "untouched": untouched}


def event_count(dsn: str) -> int | None:
    """Rows in etl_events (None when the table does not exist: a schema from before the events)."""
    with psycopg.connect(dsn, application_name="starforge-bench-check") as conn:
        row = conn.execute("SELECT to_regclass('etl_events') IS NOT NULL").fetchone()
        if not row or not row[0]:
            return None
        found = conn.execute("SELECT count(*) FROM etl_events").fetchone()
    return int(found[0]) if found else None
