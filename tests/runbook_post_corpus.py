"""A small hand-written corpus for the canary/verify/report tests: several snapshots per user, so newest-wins
matters (items dropped from newer snapshots, usernames missing from the newest, keyed sections, extra and
sensitive keys, an id missing from the catalogs), plus users whose snapshots are mostly malformed."""

from __future__ import annotations

import datetime as dt
import json
import re
import uuid
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

from starforge_backfill.config import Config, load_config

T0 = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
FROM, TO = "2024-01-01T00:00:00Z", "2024-01-03T00:00:00Z"
GOOD_USERS = 8
SNAPSHOTS_PER_USER = 3
BAD_NAMECODES = ("BROKEN_0001", "BROKEN_0002", "BROKEN_0003")
MISSING_TROOP = 999  # used by one snapshot, absent from troop_catalog: becomes a placeholder
PRECISE = Decimal("0.1000000000000000055511151231257827")


def namecode(i: int) -> str:
    """The namecode of good user `i`."""
    return f"HERO_{i:04d}"


def good_payload(i: int, k: int) -> dict[str, Any]:
    """Snapshot `k` (0 oldest) of good user `i`: amounts grow with k; the newest drops a troop."""
    troops = [
        {
            "TroopId": 1 + (i + j) % 20,
            "Amount": 1 + j + 2 * k,
            "Level": 1 + (j + k) % 20,
            "Rarity": j % 6,
            "FusionCards": k,
            "TraitsOwned": min(3, k + j % 2),
            "IsNew": j == 0,
        }
        for j in range(6 - (k == SNAPSHOTS_PER_USER - 1))  # the newest snapshot lacks the last troop
    ]
    if i == 0 and k == 1:
        troops.append({"TroopId": MISSING_TROOP, "Amount": 1})
    if i == 1:
        troops[0]["Meta"] = {"AuthToken": "never-stored", "Build": 5100 + k}
    if i == 5:  # more digits than a float holds: parity must compare them exactly
        troops[0]["Ratio"] = PRECISE
    pets = [
        {"PetId": 1 + (i + j) % 10, "Amount": 1, "Level": 1 + k, "XP": 100 * (k + 1), "OrbsUsed": [j, k]}
        for j in range(2)
    ]
    artifacts = [{"ArtifactId": 1 + (i + j) % 10, "Level": k, "XP": 50 * k, "Equipped": j == 0} for j in range(2)]
    profile: dict[str, Any] = {
        "Level": 10 + i + k,
        "PvpTier": k % 4,
        "Troops": troops,
        "Pets": pets,
        "Artifacts": {str(a["ArtifactId"]): a for a in artifacts} if i == 2 else artifacts,
        "EquippedPet": {"PetId": pets[0]["PetId"], "Level": pets[0]["Level"]},
        "Guild": {"Name": f"Guild {i % 3}"},
        "Inventory": [{"ItemId": n, "Count": n * k} for n in range(5)],
    }
    payload: dict[str, Any] = {"NameCode": namecode(i), "ProfileData": profile}
    if not (i == 3 and k == SNAPSHOTS_PER_USER - 1):  # user 3's newest snapshot has no Name
        payload["Name"] = f"Hero{i}v{k}"
    return payload


BAD_PAYLOADS: tuple[Any, ...] = (
    ["not", "an", "object"],  # PARSE_ERROR
    {"NameCode": "X", "Error": "profile temporarily unavailable"},  # PARSE_ERROR: no ProfileData
    {"ProfileData": {"Troops": 5}},  # VALIDATION_ERROR: Troops not an array
)


def at(i: int, k: int) -> dt.datetime:
    """Observation time of snapshot k of user i (users interleaved over the first day)."""
    return T0 + dt.timedelta(hours=6 * k, minutes=7 * i)


def seed_catalogs(conn: psycopg.Connection[Any]) -> None:
    """Real catalog rows (troops 1-30, pets and artifacts 1-12); MISSING_TROOP is left out."""
    with conn.cursor() as cur:
        for table, n in (("troop_catalog", 30), ("pet_catalog", 12), ("artifact_catalog", 12)):
            cur.executemany(
                f"INSERT INTO {table} (id, name, meta) VALUES (%s, %s, '{{}}') ON CONFLICT DO NOTHING",
                [(i, f"{table} {i}") for i in range(1, n + 1)],
            )


def insert(conn: psycopg.Connection[Any], raw: Any, code: str | None, created: dt.datetime) -> uuid.UUID:
    """One hero_snapshots row."""
    sid = uuid.uuid4()
    conn.execute(
        "INSERT INTO hero_snapshots (id, namecode, source, raw, size_bytes, created_at) "
        "VALUES (%s, %s, 'test', %s, length(%s::jsonb::text), %s)",
        [sid, code, Jsonb(raw, dumps=_dumps), Jsonb(raw, dumps=_dumps), created],
    )
    return sid


def _dumps(obj: Any) -> str:
    """JSON text with Decimals written as their exact digits."""
    text = json.dumps(obj, default=lambda v: f"@@{v}@@" if isinstance(v, Decimal) else str(v))
    return re.sub(r'"@@([-0-9.eE+]+)@@"', r"\1", text)


def load_corpus(dsn: str, *, bad: bool = True) -> dict[str, list[uuid.UUID]]:
    """Catalogs, GOOD_USERS x SNAPSHOTS_PER_USER good snapshots and (with `bad`) 3 users with 2 malformed and
    1 good snapshot each. Returns snapshot ids by namecode."""
    ids: dict[str, list[uuid.UUID]] = {}
    with psycopg.connect(dsn, autocommit=True) as conn, conn.transaction():
        seed_catalogs(conn)
        for i in range(GOOD_USERS):
            for k in range(SNAPSHOTS_PER_USER):
                ids.setdefault(namecode(i), []).append(insert(conn, good_payload(i, k), namecode(i), at(i, k)))
        if bad:
            for n, code in enumerate(BAD_NAMECODES):
                for k, raw in enumerate(BAD_PAYLOADS[n:] + BAD_PAYLOADS[:n]):
                    if k == 2:
                        raw = good_payload(10 + n, 0) | {"NameCode": code}
                    ids.setdefault(code, []).append(insert(conn, raw, code, at(20 + n, k) + dt.timedelta(days=1)))
    return ids


def duplicate_a_row(conn: psycopg.Connection[Any], table: str, key: str) -> None:
    """Drop the table's primary-key and unique constraints (whatever they are named), then copy one row."""
    names = conn.execute(
        "SELECT conname FROM pg_constraint WHERE conrelid = %s::regclass AND contype IN ('p', 'u')", [table]
    ).fetchall()
    for (name,) in names:
        conn.execute(sql.SQL("ALTER TABLE {} DROP CONSTRAINT {}").format(sql.Identifier(table), sql.Identifier(name)))
    conn.execute(
        sql.SQL("INSERT INTO {t} SELECT * FROM {t} ORDER BY user_id, {k} LIMIT 1").format(
            t=sql.Identifier(table), k=sql.Identifier(key)
        )
    )


def make_cfg(dsn: str, artifacts_dir: Path, **dotted: Any) -> Config:
    """A config for the test database with artifacts under `artifacts_dir`, plus dotted overrides."""
    cfg = load_config(None, env={}, overrides={"database.dsn": dsn, "artifacts_dir": str(artifacts_dir)})
    return cfg.replace(**dotted) if dotted else cfg
