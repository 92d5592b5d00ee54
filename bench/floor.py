"""The floor: COPY of already-normalized rows into unindexed tables, one connection.

Untimed: every snapshot is generated again (same spec, same bytes as the loaded ones), normalized with the
project's `etl.contract.normalize` (bad ones skipped) and written as COPY text files under bench/data/.
Timed: the COPYs and their commit. It is the cost of just writing the rows, with no parsing, no lookups,
no indexes and no conflict handling: what a real ETL cannot beat.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import psycopg

from starforge_backfill.errors import EtlError
from starforge_backfill.etl.contract import normalize
from starforge_backfill.synthetic import SyntheticSpec, generate

DDL = """
CREATE TABLE floor_users (id uuid, namecode text, username text,
    created_at timestamptz DEFAULT now(), updated_at timestamptz DEFAULT now());
CREATE TABLE floor_user_troops (user_id uuid, troop_id integer, amount integer, level integer, rarity integer,
    fusion_cards integer, traits_owned integer, extra jsonb, last_seen timestamptz, source_snapshot_id uuid,
    updated_at timestamptz DEFAULT now());
CREATE TABLE floor_user_pets (user_id uuid, pet_id integer, amount integer, level integer, xp bigint,
    orb_fusion_cards integer, orbs_used jsonb, ascension_level integer, extra jsonb, last_seen timestamptz,
    source_snapshot_id uuid, updated_at timestamptz DEFAULT now());
CREATE TABLE floor_user_artifacts (user_id uuid, artifact_id integer, level integer, xp bigint, extra jsonb,
    last_seen timestamptz, source_snapshot_id uuid, updated_at timestamptz DEFAULT now());
CREATE TABLE floor_user_profile_summary (user_id uuid, namecode text, username text, level integer,
    top_troops jsonb, equipped_pet jsonb, pvp_tier integer, guild_id uuid, last_seen timestamptz,
    cached_at timestamptz DEFAULT now(), extra jsonb, source_snapshot_id uuid);
"""
COLUMNS = {
    "floor_users": "id, namecode, username",
    "floor_user_troops": (
        "user_id, troop_id, amount, level, rarity, fusion_cards, traits_owned, extra, last_seen, source_snapshot_id"
    ),
    "floor_user_pets": (
        "user_id, pet_id, amount, level, xp, orb_fusion_cards, orbs_used, ascension_level, "
        "extra, last_seen, source_snapshot_id"
    ),
    "floor_user_artifacts": "user_id, artifact_id, level, xp, extra, last_seen, source_snapshot_id",
    "floor_user_profile_summary": (
        "user_id, namecode, username, level, top_troops, equipped_pet, pvp_tier, last_seen, extra, source_snapshot_id"
    ),
}
_ESCAPES = str.maketrans({"\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t"})


@dataclass
class Prepared:
    """The COPY files and what they hold."""

    files: dict[str, Path]
    rows: dict[str, int] = field(default_factory=dict)
    ok_snapshots: int = 0
    failed_snapshots: int = 0
    copy_bytes: int = 0
    seconds: float = 0.0

    @property
    def entity_rows(self) -> int:
        """Troop, pet and artifact rows: the `rows` every method is measured by."""
        return sum(self.rows[t] for t in ("floor_user_troops", "floor_user_pets", "floor_user_artifacts"))


def _field(value: Any) -> str:
    if value is None:
        return "\\N"
    if isinstance(value, (dict, list)):
        return orjson.dumps(value).decode().translate(_ESCAPES)
    if isinstance(value, str):
        return value.translate(_ESCAPES)
    return str(value)


def _line(*values: Any) -> str:
    return "\t".join(map(_field, values)) + "\n"


def prepare(spec: SyntheticSpec, workdir: Path) -> Prepared:
    """Normalize every generated snapshot and write one COPY text file per floor table (untimed)."""
    started = time.perf_counter()
    workdir.mkdir(parents=True, exist_ok=True)
    prepared = Prepared({t: workdir / f"{t}.copy" for t in COLUMNS}, dict.fromkeys(COLUMNS, 0))
    handles = {t: p.open("w", encoding="utf-8") for t, p in prepared.files.items()}
    users: dict[str, tuple[uuid.UUID, str | None]] = {}
    try:
        for snap in generate(spec):
            try:
                norm = normalize(orjson.loads(snap.raw), snap.namecode or None)
            except EtlError:
                prepared.failed_snapshots += 1
                continue
            prepared.ok_snapshots += 1
            default = (uuid.uuid5(uuid.NAMESPACE_OID, norm.namecode), None)
            user_id, username = users.get(norm.namecode, default)
            users[norm.namecode] = (user_id, norm.username or username)  # oldest first: newest name wins
            seen, sid = snap.created_at.isoformat(), snap.id
            out = handles["floor_user_troops"]
            for t in norm.troops:
                out.write(
                    _line(
                        user_id,
                        t.troop_id,
                        t.amount,
                        t.level,
                        t.rarity,
                        t.fusion_cards,
                        t.traits_owned,
                        t.extra,
                        seen,
                        sid,
                    )
                )
            out = handles["floor_user_pets"]
            for p in norm.pets:
                out.write(
                    _line(
                        user_id,
                        p.pet_id,
                        p.amount,
                        p.level,
                        p.xp,
                        p.orb_fusion_cards,
                        p.orbs_used,
                        p.ascension_level,
                        p.extra,
                        seen,
                        sid,
                    )
                )
            out = handles["floor_user_artifacts"]
            for a in norm.artifacts:
                out.write(_line(user_id, a.artifact_id, a.level, a.xp, a.extra, seen, sid))
            handles["floor_user_profile_summary"].write(
                _line(
                    user_id,
                    norm.namecode,
                    users[norm.namecode][1],
                    norm.level,
                    norm.top_troops,
                    norm.equipped_pet,
                    norm.pvp_tier,
                    seen,
                    norm.summary_extra,
                    sid,
                )
            )
            prepared.rows["floor_user_troops"] += len(norm.troops)
            prepared.rows["floor_user_pets"] += len(norm.pets)
            prepared.rows["floor_user_artifacts"] += len(norm.artifacts)
            prepared.rows["floor_user_profile_summary"] += 1
        for namecode, (user_id, username) in users.items():
            handles["floor_users"].write(_line(user_id, namecode, username))
        prepared.rows["floor_users"] = len(users)
    finally:
        for h in handles.values():
            h.close()
    prepared.copy_bytes = sum(p.stat().st_size for p in prepared.files.values())
    prepared.seconds = time.perf_counter() - started
    return prepared


def count_rows(spec: SyntheticSpec) -> int:
    """Entity rows of the valid snapshots, without writing anything (when the floor is not measured)."""
    rows = 0
    for snap in generate(spec):
        try:
            norm = normalize(orjson.loads(snap.raw), snap.namecode or None)
        except EtlError:
            continue
        rows += len(norm.troops) + len(norm.pets) + len(norm.artifacts)
    return rows


def measure(dsn: str, prepared: Prepared, chunk: int = 1 << 20) -> dict[str, Any]:
    """Create the unindexed tables, then time the COPY of every file and the commit, on one connection."""
    with psycopg.connect(dsn, application_name="starforge-bench-floor") as conn:
        conn.execute(DDL.encode())
        conn.commit()
        started = time.perf_counter()
        with conn.cursor() as cur:
            for table, cols in COLUMNS.items():
                with (
                    prepared.files[table].open("rb") as src,
                    cur.copy(f"COPY {table} ({cols}) FROM STDIN".encode()) as copy,
                ):
                    while block := src.read(chunk):
                        copy.write(block)
        conn.commit()
        seconds = time.perf_counter() - started
        counts = {t: conn.execute(f"SELECT count(*) FROM {t}".encode()).fetchone()[0] for t in COLUMNS}
    if counts != prepared.rows:
        raise RuntimeError(f"floor: tables hold {counts}, files held {prepared.rows}")
    return {
        "seconds": seconds,
        "rows_by_table": counts,
        "copy_bytes": prepared.copy_bytes,
        "prepare_seconds": round(prepared.seconds, 3),
    }
