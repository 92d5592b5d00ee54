"""The naive baseline: what a straightforward script does, one snapshot and one row at a time.

Per snapshot, oldest first: fetch `raw::text`, `json.loads` it, normalize it with the project's contract
code, then in one transaction upsert the user, each troop/pet/artifact row (`INSERT ... ON CONFLICT ...
DO UPDATE ... WHERE last_seen <=`), the summary, any placeholder catalog rows, mark the snapshot processed,
commit. A bad snapshot gets its `etl_errors` row and `error_count`. Into the real, indexed schema.
"""

from __future__ import annotations

import json
import time
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from starforge_backfill.errors import EtlError
from starforge_backfill.etl.contract import normalize

USER = """INSERT INTO users (namecode, username) VALUES (%s, %s)
ON CONFLICT (namecode) DO UPDATE SET username = COALESCE(EXCLUDED.username, users.username),
    updated_at = now()
RETURNING id, username"""
TROOP = """INSERT INTO user_troops (user_id, troop_id, amount, level, rarity, fusion_cards, traits_owned,
    extra, last_seen, source_snapshot_id) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
ON CONFLICT (user_id, troop_id) DO UPDATE SET amount = EXCLUDED.amount, level = EXCLUDED.level,
    rarity = EXCLUDED.rarity, fusion_cards = EXCLUDED.fusion_cards, traits_owned = EXCLUDED.traits_owned,
    extra = EXCLUDED.extra, last_seen = EXCLUDED.last_seen, source_snapshot_id = EXCLUDED.source_snapshot_id,
    updated_at = now()
WHERE user_troops.last_seen <= EXCLUDED.last_seen"""
PET = """INSERT INTO user_pets (user_id, pet_id, amount, level, xp, orb_fusion_cards, orbs_used,
    ascension_level, extra, last_seen, source_snapshot_id) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
ON CONFLICT (user_id, pet_id) DO UPDATE SET amount = EXCLUDED.amount, level = EXCLUDED.level,
    xp = EXCLUDED.xp, orb_fusion_cards = EXCLUDED.orb_fusion_cards, orbs_used = EXCLUDED.orbs_used,
    ascension_level = EXCLUDED.ascension_level, extra = EXCLUDED.extra, last_seen = EXCLUDED.last_seen,
    source_snapshot_id = EXCLUDED.source_snapshot_id, updated_at = now()
WHERE user_pets.last_seen <= EXCLUDED.last_seen"""
ARTIFACT = """INSERT INTO user_artifacts (user_id, artifact_id, level, xp, extra, last_seen,
    source_snapshot_id) VALUES (%s, %s, %s, %s, %s, %s, %s)
ON CONFLICT (user_id, artifact_id) DO UPDATE SET level = EXCLUDED.level, xp = EXCLUDED.xp,
    extra = EXCLUDED.extra, last_seen = EXCLUDED.last_seen, source_snapshot_id = EXCLUDED.source_snapshot_id,
    updated_at = now()
WHERE user_artifacts.last_seen <= EXCLUDED.last_seen"""
SUMMARY = """INSERT INTO user_profile_summary (user_id, namecode, username, level, top_troops, equipped_pet,
    pvp_tier, guild_id, last_seen, cached_at, extra, source_snapshot_id)
VALUES (%s, %s, %s, %s, %s, %s, %s, NULL, %s, now(), %s, %s)
ON CONFLICT (user_id) DO UPDATE SET namecode = EXCLUDED.namecode, username = EXCLUDED.username,
    level = EXCLUDED.level, top_troops = EXCLUDED.top_troops, equipped_pet = EXCLUDED.equipped_pet,
    pvp_tier = EXCLUDED.pvp_tier, guild_id = NULL, last_seen = EXCLUDED.last_seen, cached_at = now(),
    extra = EXCLUDED.extra, source_snapshot_id = EXCLUDED.source_snapshot_id
WHERE user_profile_summary.last_seen <= EXCLUDED.last_seen"""
PLACEHOLDER = {  # the contract's placeholder policy: unknown catalog ids get a placeholder row
    kind: f"INSERT INTO {kind}_catalog (id, meta) VALUES (%s, '{{\"placeholder\": true}}') ON CONFLICT DO NOTHING"
    for kind in ("troop", "pet", "artifact")
}
FETCH = "SELECT raw::text FROM hero_snapshots WHERE id = %s"
DONE = "UPDATE hero_snapshots SET user_id = %s, processed_at = now(), processing = false WHERE id = %s"
ERROR = "INSERT INTO etl_errors (snapshot_id, error_type, message, details) VALUES (%s, %s, %s, %s)"
FAILED = """UPDATE hero_snapshots SET error_count = error_count + 1, processing = false,
    last_error = jsonb_build_object('error_type', %s::text, 'message', %s::text, 'at', now())
WHERE id = %s"""


def _apply(cur: psycopg.Cursor[Any], sid: Any, seen: Any, snap: Any, known: dict[str, set[int]]) -> dict:
    """Write one normalized snapshot, row by row; return the placeholder ids it inserted."""
    user_id, username = cur.execute(USER, (snap.namecode, snap.username)).fetchone()
    added: dict[str, set[int]] = {"troop": set(), "pet": set(), "artifact": set()}
    for kind, ids in (
        ("troop", [t.troop_id for t in snap.troops]),
        ("pet", [p.pet_id for p in snap.pets]),
        ("artifact", [a.artifact_id for a in snap.artifacts]),
    ):
        for missing in sorted(set(ids) - known[kind]):
            cur.execute(PLACEHOLDER[kind], (missing,))
            added[kind].add(missing)
    for t in snap.troops:
        cur.execute(
            TROOP,
            (
                user_id,
                t.troop_id,
                t.amount,
                t.level,
                t.rarity,
                t.fusion_cards,
                t.traits_owned,
                Jsonb(t.extra),
                seen,
                sid,
            ),
        )
    for p in snap.pets:
        cur.execute(
            PET,
            (
                user_id,
                p.pet_id,
                p.amount,
                p.level,
                p.xp,
                p.orb_fusion_cards,
                Jsonb(p.orbs_used),
                p.ascension_level,
                Jsonb(p.extra),
                seen,
                sid,
            ),
        )
    for a in snap.artifacts:
        cur.execute(ARTIFACT, (user_id, a.artifact_id, a.level, a.xp, Jsonb(a.extra), seen, sid))
    equipped = Jsonb(snap.equipped_pet) if snap.equipped_pet is not None else None
    cur.execute(
        SUMMARY,
        (
            user_id,
            snap.namecode,
            username,
            snap.level,
            Jsonb(snap.top_troops),
            equipped,
            snap.pvp_tier,
            seen,
            Jsonb(snap.summary_extra),
            sid,
        ),
    )
    cur.execute(DONE, (user_id, sid))
    return added


def _record_error(conn: psycopg.Connection[Any], sid: Any, error_type: str, message: str, details: dict) -> None:
    with conn.cursor() as cur:
        cur.execute(ERROR, (sid, error_type, message[:500], Jsonb(details)))
        cur.execute(FAILED, (error_type, message[:500], sid))
    conn.commit()


def measure(dsn: str) -> dict[str, Any]:
    """Process every unprocessed snapshot naively; time it all (listing, fetching, parsing, writing)."""
    counts = {"ok": 0, "failed": 0, "rows": 0, "placeholders": 0}
    with psycopg.connect(dsn, application_name="starforge-bench-naive") as conn:
        started = time.perf_counter()
        known = {
            kind: {r[0] for r in conn.execute(f"SELECT id FROM {kind}_catalog".encode())}
            for kind in ("troop", "pet", "artifact")
        }
        todo = conn.execute(
            "SELECT id, namecode, created_at FROM hero_snapshots WHERE processed_at IS NULL ORDER BY created_at, id"
        ).fetchall()
        conn.commit()
        for sid, column_namecode, seen in todo:
            raw_text = conn.execute(FETCH, (sid,)).fetchone()[0]
            try:
                snap = normalize(json.loads(raw_text), column_namecode)
            except EtlError as exc:
                conn.rollback()
                _record_error(conn, sid, exc.error_type, exc.message, exc.details)
                counts["failed"] += 1
                continue
            try:
                with conn.cursor() as cur:
                    added = _apply(cur, sid, seen, snap, known)
                conn.commit()
            except psycopg.Error as exc:
                conn.rollback()
                _record_error(conn, sid, EtlError.DB_ERROR, f"{type(exc).__name__}: {exc}"[:200], {})
                counts["failed"] += 1
                continue
            for kind, ids in added.items():
                known[kind] |= ids
                counts["placeholders"] += len(ids)
            counts["ok"] += 1
            counts["rows"] += len(snap.troops) + len(snap.pets) + len(snap.artifacts)
        seconds = time.perf_counter() - started
    return {"seconds": seconds, **counts}
