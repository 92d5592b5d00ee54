"""Raw-vs-normalized parity for one user: re-derive their rows with the pure-Python contract, compare.

The expected state is the contract's outcome of processing the user's processed snapshots once, oldest
first (`created_at`, then `id`): an entity row is overwritten when the snapshot's observation time is >=
the row's `last_seen`, `users.username` follows the newest snapshot that has one, the summary comes from
the newest snapshot. Payloads are fetched one at a time (they can be megabytes) and dropped once folded.
Numbers are compared exactly: payloads and jsonb columns are both decoded with Decimal fractions, as the
ETL's reference path decodes them. A mismatch names the table, the row's key and the column. Rows whose
source snapshot is gone (pruned history) cannot be re-derived and show up as unexpected rows. No click or
rich here.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import json
import uuid
from collections.abc import Iterable, Iterator
from decimal import Decimal
from typing import Any

import psycopg

from starforge_backfill import templates
from starforge_backfill.errors import EtlError
from starforge_backfill.etl import contract
from starforge_backfill.etl.payload import decode_exact

TROOP_COLUMNS = ("amount", "level", "rarity", "fusion_cards", "traits_owned", "extra")
PET_COLUMNS = ("amount", "level", "xp", "orb_fusion_cards", "orbs_used", "ascension_level", "extra")
ARTIFACT_COLUMNS = ("level", "xp", "extra")
TRACE_COLUMNS = ("last_seen", "source_snapshot_id")


@dataclasses.dataclass(frozen=True)
class Mismatch:
    """One difference between the re-derived and the stored state."""

    table: str
    key: dict[str, Any]
    column: str | None
    expected: Any
    found: Any

    def describe(self) -> str:
        """`user_troops[user_id=..., troop_id=6024].amount: expected 3, found 4`."""
        key = ", ".join(f"{k}={v}" for k, v in self.key.items())
        where = f"{self.table}[{key}]" + (f".{self.column}" if self.column else "")
        return f"{where}: expected {_show(self.expected)}, found {_show(self.found)}"

    def to_json(self) -> dict[str, Any]:
        """JSON shape (values as text when they are not plain JSON)."""
        return {
            "table": self.table,
            "key": {k: str(v) if isinstance(v, uuid.UUID) else v for k, v in self.key.items()},
            "column": self.column,
            "expected": _plain(self.expected),
            "found": _plain(self.found),
            "message": self.describe(),
        }


def _show(value: Any) -> str:
    if isinstance(value, dt.datetime):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    text = json.dumps(_plain(value), sort_keys=True, default=str)
    return text if len(text) <= 120 else text[:117] + "..."


def _plain(value: Any) -> Any:
    """JSON-ready: datetimes and UUIDs as text, a Decimal as a float when that is exact, else its digits."""
    if isinstance(value, dt.datetime | uuid.UUID):
        return _show(value)
    if isinstance(value, Decimal):
        if value == value.to_integral_value() and abs(value) < 2**63:
            return int(value)
        as_float = float(value)
        return as_float if Decimal(repr(as_float)) == value else str(value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


@dataclasses.dataclass
class Observed:
    """A value with the observation that wrote it (newest wins)."""

    value: Any
    seen: dt.datetime
    snapshot_id: uuid.UUID


@dataclasses.dataclass
class Expected:
    """The contract's outcome for one user, folded from their processed snapshots."""

    namecode: str | None = None
    username: Observed | None = None
    troops: dict[int, Observed] = dataclasses.field(default_factory=dict)
    pets: dict[int, Observed] = dataclasses.field(default_factory=dict)
    artifacts: dict[int, Observed] = dataclasses.field(default_factory=dict)
    summary: Observed | None = None
    snapshots: int = 0
    namecodes: dict[uuid.UUID, str] = dataclasses.field(default_factory=dict)
    rejected: list[tuple[uuid.UUID, str, str]] = dataclasses.field(default_factory=list)

    def add(self, snapshot_id: uuid.UUID, seen: dt.datetime, column_namecode: str | None, raw: Any) -> None:
        """Fold one snapshot in (call oldest first)."""
        self.snapshots += 1
        try:
            ns = contract.normalize(raw, column_namecode)
        except EtlError as exc:
            self.rejected.append((snapshot_id, exc.error_type, exc.message))
            return
        self.namecodes[snapshot_id] = ns.namecode
        for rows, target, id_of in (
            (ns.troops, self.troops, lambda r: r.troop_id),
            (ns.pets, self.pets, lambda r: r.pet_id),
            (ns.artifacts, self.artifacts, lambda r: r.artifact_id),
        ):
            for row in rows:
                key = id_of(row)
                old = target.get(key)
                if old is None or seen >= old.seen:
                    target[key] = Observed(row, seen, snapshot_id)
        if ns.username is not None and (self.username is None or seen >= self.username.seen):
            self.username = Observed(ns.username, seen, snapshot_id)
        if self.summary is None or seen >= self.summary.seen:
            self.summary = Observed(ns, seen, snapshot_id)
            self.namecode = ns.namecode


_EXACT_LOADS = functools.partial(json.loads, parse_float=Decimal)


def _payloads(conn: psycopg.Connection[Any], snapshots: Iterable[dict[str, Any]]) -> Iterator[tuple[Any, Any]]:
    """(snapshot row, decoded payload) one snapshot at a time: never a batch of payloads in memory."""
    for snap in snapshots:
        row = templates.execute(conn, "verify/snapshot_raw.sql", {"id": snap["id"]}).fetchone()
        if row is not None and row[0] is not None:
            yield snap, decode_exact(row[0])


def derive(conn: psycopg.Connection[Any], user_id: uuid.UUID) -> Expected:
    """The expected state of one user from their processed snapshots, oldest first."""
    expected = Expected()
    snaps = templates.fetch_all(conn, "verify/user_snapshots.sql", {"user_id": user_id}, json_loads=_EXACT_LOADS)
    for snap, raw in _payloads(conn, snaps):
        expected.add(snap["id"], snap["created_at"], snap["namecode"], raw)
    return expected


def compare(conn: psycopg.Connection[Any], user_id: uuid.UUID, expected: Expected) -> list[Mismatch]:
    """Every difference between `expected` and what the tables hold for this user."""
    out: list[Mismatch] = []
    for sid, error_type, message in expected.rejected:
        out.append(
            Mismatch(
                "hero_snapshots", {"id": sid}, "processed_at", f"not processed ({error_type}: {message})", "processed"
            )
        )
    users = templates.fetch_all(conn, "verify/user_row.sql", {"user_id": user_id}, json_loads=_EXACT_LOADS)
    user = users[0] if users else None
    ukey = {"id": user_id}
    if user is None:
        out.append(Mismatch("users", ukey, None, "a row", "no row"))
    else:
        want_name = expected.username.value if expected.username else None
        if expected.namecode is not None and user["namecode"] != expected.namecode:
            out.append(Mismatch("users", ukey, "namecode", expected.namecode, user["namecode"]))
        if user["username"] != want_name:
            out.append(Mismatch("users", ukey, "username", want_name, user["username"]))
        for sid, code in expected.namecodes.items():
            if code != user["namecode"]:
                out.append(Mismatch("hero_snapshots", {"id": sid}, "user_id", f"a user with namecode {code}", user_id))
    uid = {"user_id": user_id}
    out += _compare_entities(
        conn, "user_troops", "troop_id", TROOP_COLUMNS, expected.troops, "verify/user_troops.sql", uid
    )
    out += _compare_entities(conn, "user_pets", "pet_id", PET_COLUMNS, expected.pets, "verify/user_pets.sql", uid)
    out += _compare_entities(
        conn, "user_artifacts", "artifact_id", ARTIFACT_COLUMNS, expected.artifacts, "verify/user_artifacts.sql", uid
    )
    out += _compare_summary(conn, user_id, expected)
    return out


def _compare_entities(
    conn: psycopg.Connection[Any],
    table: str,
    id_column: str,
    columns: tuple[str, ...],
    expected: dict[int, Observed],
    query: str,
    uid: dict[str, Any],
) -> list[Mismatch]:
    out: list[Mismatch] = []
    found: dict[int, dict[str, Any]] = {}
    for fetched in templates.fetch_all(conn, query, uid, json_loads=_EXACT_LOADS):
        key = int(fetched[id_column])
        if key in found:
            out.append(Mismatch(table, {**uid, id_column: key}, None, "one row", "more than one row"))
            continue
        found[key] = fetched
    for key in sorted(expected.keys() | found.keys()):
        where = {**uid, id_column: key}
        want, row = expected.get(key), found.get(key)
        if row is None:
            out.append(Mismatch(table, where, None, "a row", "no row"))
            continue
        if want is None:
            out.append(
                Mismatch(table, where, None, "no row", f"a row (source_snapshot_id {row['source_snapshot_id']})")
            )
            continue
        for column in columns:
            value = getattr(want.value, column)
            if row[column] != value:
                out.append(Mismatch(table, where, column, value, row[column]))
        out += _trace(table, where, want, row)
    return out


def _trace(table: str, where: dict[str, Any], want: Observed, row: dict[str, Any]) -> list[Mismatch]:
    out = []
    if row["last_seen"] != want.seen:
        out.append(Mismatch(table, where, "last_seen", want.seen, row["last_seen"]))
    if row["source_snapshot_id"] != want.snapshot_id:
        out.append(Mismatch(table, where, "source_snapshot_id", want.snapshot_id, row["source_snapshot_id"]))
    return out


def _compare_summary(conn: psycopg.Connection[Any], user_id: uuid.UUID, expected: Expected) -> list[Mismatch]:
    table, where = "user_profile_summary", {"user_id": user_id}
    rows = templates.fetch_all(conn, "verify/user_summary.sql", where, json_loads=_EXACT_LOADS)
    if expected.summary is None:
        return [Mismatch(table, where, None, "no row", "a row")] if rows else []
    if not rows:
        return [Mismatch(table, where, None, "a row", "no row")]
    row, ns = rows[0], expected.summary.value
    want = {
        "namecode": ns.namecode,
        "username": expected.username.value if expected.username else None,
        "level": ns.level,
        "pvp_tier": ns.pvp_tier,
        "top_troops": ns.top_troops,
        "equipped_pet": ns.equipped_pet,
        "guild_id": None,
        "extra": ns.summary_extra,
    }
    out = [Mismatch(table, where, col, value, row[col]) for col, value in want.items() if row[col] != value]
    return out + _trace(table, where, expected.summary, row)


def check_user(conn: psycopg.Connection[Any], user_id: uuid.UUID) -> tuple[int, list[Mismatch]]:
    """(processed snapshots folded, mismatches) for one user."""
    expected = derive(conn, user_id)
    return expected.snapshots, compare(conn, user_id, expected)
