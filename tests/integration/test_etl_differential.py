"""Differential test: the set-based SQL path and the pure-Python reference must write the same tables.

A few hundred random snapshots (fixed seed) full of awkward shapes are applied once with the fast path and
once with every snapshot through the reference, each into its own database with identical catalogs; the
normalized tables, catalogs, errors and snapshot bookkeeping must come out identical.

Left out on purpose (documented parity limits of `etl.contract`): numbers that only a float can mangle
(integral floats beyond 2**53, decimals like 5.0000000000000001 that round to an integer in a double).
"""

from __future__ import annotations

import json
import random
import secrets
import uuid
from collections import Counter
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import psycopg
import pytest
from helpers import at, dumps_exact, error_set, find_text, insert_snapshot, rows, seed_catalog, state
from psycopg import sql
from psycopg.conninfo import make_conninfo
from psycopg.types.json import set_json_loads

from starforge_backfill.etl import pipeline as pipeline_module
from starforge_backfill.etl.pipeline import BatchResult, EtlSettings, apply_in_transaction
from starforge_backfill.schema import init_db

SEED = 20241128
SNAPSHOTS = 320
BATCH = 40
USERS = [f"DIFF_{i:03d}" for i in range(24)]
SECRET = "DiffSecretValue"
SENSITIVE_KEYS = ("authToken", "Password", "x_session_id", "SECRET", "passwd", "OAuth", "username", "UserName_2")

# (JSON id field, [(field, kind)]) per section; kind "int" is a 32-bit column, "big" a 64-bit one
SECTIONS = {
    "Troops": (
        "TroopId",
        [("Amount", "int"), ("Level", "int"), ("Rarity", "int"), ("FusionCards", "int"), ("TraitsOwned", "int")],
    ),
    "Pets": (
        "PetId",
        [("Amount", "int"), ("Level", "int"), ("XP", "big"), ("OrbFusionCards", "int"), ("AscensionLevel", "int")],
    ),
    "Artifacts": ("ArtifactId", [("Level", "int"), ("XP", "big")]),
}
ID_POOL = {"Troops": range(1, 41), "Pets": range(1, 16), "Artifacts": range(1, 11)}
CATALOG = {"troops": range(1, 31), "pets": range(1, 12), "artifacts": range(1, 8)}  # the rest: placeholders

# Integer forms the contract accepts, by magnitude class, and forms it rejects.
_INVALID_COMMON = [True, False, "12.5", 12.5, "abc", "", " 7", "+7", "1e3", "12.0", "7.00", {}, [3], -1, "-2", 0.5, "٣"]
# Numbers a float cannot hold: kept exactly in extra, and fractional (so invalid) as integers.
_EXACT = [Decimal("0.1000000000000000055511151231257827"), Decimal("123456789012345678901234567890.5"), Decimal("1.50")]
_INVALID_COMMON.append(Decimal("5.0000000000000001"))
_INVALID_INT = [2**31, str(2**31), 2**40, "9" * 25, 1e20]
_INVALID_BIG = [2**63, str(2**63), "9" * 25, 1e30]


V2_SHAPES = (
    "NameCode in ProfileData",
    "NameCode top and in ProfileData",
    "ProfileData.NameCode not a non-empty string",
    "Name in ProfileData",
    "Name top and in ProfileData",
    "GuildName beside Guild",
    "GuildName alone",
    "username key",
    "API error body",
    "result not an object",
    "envelope",
    "envelope with keyed troops",
    "envelope with outer keys",
    "double-encoded envelope",
    "ProfileData and result",
)


class Gen:
    """Random payload parts; every choice goes through one seeded generator."""

    def __init__(self, seed: int) -> None:
        self.r = random.Random(seed)
        self.plant = False  # whether the current snapshot carries sensitive keys (a share of them do)
        self.shapes: Counter[str] = Counter()  # the v2 shapes generated, for the test to check each is there

    def chance(self, p: float) -> bool:
        return self.r.random() < p

    def integer(self, kind: str, *, invalid: float = 0.002) -> Any:
        r = self.r
        if self.chance(invalid):
            return r.choice(_INVALID_COMMON + (_INVALID_BIG if kind == "big" else _INVALID_INT))
        top = 2**63 - 1 if kind == "big" else 2**31 - 1
        n = r.choice([0, 1, 2, 3, r.randrange(100), r.randrange(10**6), top, top - r.randrange(5)])
        if kind == "big" and self.chance(0.2):
            n = r.randrange(2**32, 2**53)
        pick = r.random()
        if pick < 0.75:
            return n
        if pick < 0.85 and n < 2**53:
            return float(n)
        if pick < 0.985:
            return str(n)
        if pick < 0.995:
            return "000" + str(n)  # leading zeros (past the column's digit count: the reference decides)
        return "-0" if n == 0 else -0.0

    def ident(self, section: str, *, invalid: float = 0.006) -> Any:
        if self.chance(invalid):
            return self.r.choice([0, "0", -4, "x", True, 2**31, 3.5, "7.0", [1], None])
        n = self.r.choice(ID_POOL[section])
        return self.r.choice([n, n, n, float(n), str(n)])

    def extra_value(self, depth: int = 0) -> Any:
        r = self.r
        pick = r.random()
        if depth < 3 and pick < 0.15:
            return {self.key(): self.extra_value(depth + 1) for _ in range(r.randrange(3))}
        if depth < 3 and pick < 0.25:
            return [self.extra_value(depth + 1) for _ in range(r.randrange(3))]
        return r.choice([None, True, False, 0, -3, 2.5, 10**30, "text", "ünïcödé ✓", 'quote"d', "a\\b", "", *_EXACT])

    def key(self) -> str:
        if self.plant and self.chance(0.15):
            return self.r.choice(SENSITIVE_KEYS)
        return self.r.choice(
            [
                "IsNew",
                "Note",
                "amount",
                "troopid",
                "Stats",
                'we"ird',
                "k.1",
                "Ascension",
                "Équipe",
                "x" * 70,
                "OrbsUsed2",
            ]
        )

    def sensitive_or_extra(self) -> dict[str, Any]:
        out = {}
        for _ in range(self.r.randrange(3)):
            key = self.key()
            out[key] = f"{SECRET}-{self.r.randrange(10**6)}" if key in SENSITIVE_KEYS else self.extra_value()
        if self.plant and self.chance(0.1):  # a sensitive key deep inside a non-sensitive one
            out["Meta"] = {"list": [{"refresh_token": f"{SECRET}-deep", "n": 1}]}
        return out

    def element(self, section: str, with_id: bool = True) -> dict[str, Any]:
        id_field, fields = SECTIONS[section]
        elem: dict[str, Any] = {}
        if with_id:
            elem[id_field] = self.ident(section)
        for field, kind in fields:
            pick = self.r.random()
            if pick < 0.3:
                continue
            elem[field] = None if pick < 0.35 else self.integer(kind)
        if section == "Pets" and self.chance(0.6):
            orb = {"Orb": 3, "authKey": f"{SECRET}-orb"} if self.plant else {"Orb": 3}
            orbs: Any = [self.r.choice([1, 2, orb, None]) for _ in range(3)]
            elem["OrbsUsed"] = self.r.choice(
                [orbs, orbs, orbs, None, "none", {"a": 1}] if self.chance(0.05) else [orbs]
            )
        elem.update(self.sensitive_or_extra())
        items = list(elem.items())
        self.r.shuffle(items)
        return dict(items)

    def section(self, section: str) -> Any:
        r = self.r
        pick = r.random()
        if pick < 0.08:
            return "absent"
        if pick < 0.12:
            return None
        if pick < 0.14:
            return r.choice(["troops", 5, True, 2.5])  # wrong type: VALIDATION_ERROR
        elems = [self.element(section) for _ in range(r.randrange(7))]
        if elems and self.chance(0.15):  # duplicate id: the last one wins
            dup = self.element(section)
            dup[SECTIONS[section][0]] = elems[0].get(SECTIONS[section][0])
            elems.append(dup)
        if self.chance(0.01):
            elems.append(r.choice([5, "x", None, [1]]))  # an element that is not an object
        if pick < 0.7:
            return elems
        keyed: dict[str, Any] = {}
        id_field = SECTIONS[section][0]
        for elem in elems:
            if not isinstance(elem, dict):
                keyed[f"bad{len(keyed)}"] = elem
                continue
            ident = elem.get(id_field)
            if self.chance(0.6) and isinstance(ident, int | str) and not isinstance(ident, bool):
                key = str(ident)
                if self.chance(0.7):
                    elem.pop(id_field)  # the key supplies the id
            else:
                key = r.choice(["k", "slot-", "0x"]) + str(len(keyed))
                if self.chance(0.03):
                    elem.pop(id_field, None)  # no id and a non-decimal key: VALIDATION_ERROR
            keyed[key] = elem
        return keyed

    def equipped(self) -> Any:
        r = self.r
        return r.choice(
            [
                {"PetId": self.ident("Pets", invalid=0.2), "Level": self.integer("int", invalid=0.2)},
                {"PetId": self.ident("Pets")},
                self.ident("Pets", invalid=0.3),
                "abc",
                True,
                None,
                [3],
                {"Level": 2},
                "0" * 45 + "3",
            ]
        )

    def v2(self, raw: dict[str, Any], profile: dict[str, Any]) -> Any:
        """Contract v2's shapes (SNAPSHOT_CONTRACT.md, "v2"), built on a v1 payload: the top level to store."""
        r, shapes = self.r, self.shapes
        if "NameCode" in raw and self.chance(0.5):  # rule 5: NameCode in ProfileData, alone or under the top one
            if self.chance(0.6):
                profile["NameCode"] = raw.pop("NameCode")
                shapes["NameCode in ProfileData"] += 1
            else:
                profile["NameCode"] = r.choice(USERS)
                shapes["NameCode top and in ProfileData"] += 1
        elif self.chance(0.2):
            profile["NameCode"] = r.choice(["", 17, None, ["X"]])
            shapes["ProfileData.NameCode not a non-empty string"] += 1
        if self.chance(0.5):  # rule 6: Name in ProfileData, alone or under the top one
            inner = r.choice([f"Inner{r.randrange(5)}", "", None, 7, "Ünïcode "])
            if "Name" in raw and self.chance(0.5):
                profile["Name"] = raw.pop("Name") if self.chance(0.7) else inner
                shapes["Name in ProfileData"] += 1
            else:
                profile["Name"] = inner
                shapes["Name top and in ProfileData"] += 1
        if self.chance(0.5):  # rule 7: a flat GuildName, alone or beside Guild; trailing spaces kept
            profile["GuildName"] = r.choice(["Knights of Adana ", "Wölfe  ", "", " ", "\tTabs\t", 7, None])
            shapes["GuildName beside Guild" if "Guild" in profile else "GuildName alone"] += 1
        if self.plant and self.chance(0.6):  # rule 8: the login name, in ProfileData and at the top
            profile["username"] = f"{SECRET}-login"
            raw[r.choice(["username", "UserName"])] = f"{SECRET}-login"
            shapes["username key"] += 1
        if self.chance(0.5):  # extra profile keys, ignored
            profile["KingdomLevels"] = {str(3000 + i): r.randrange(20) for i in range(r.randrange(4))}
            profile["Progress"] = {"Campaign": r.randrange(40), "Events": [r.randrange(9) for _ in range(2)]}
        pick = r.random()
        if pick < 0.07:  # rule 3: an API error body, enveloped or not
            body: dict[str, Any] = {}
            if self.chance(0.9):
                body["code"] = r.choice([141, 141, "141", 209.0, -1, True, None, [1], Decimal("1.5")])
            body["error"] = r.choice(["Hero not found", "e" * 250, "Ünïcode é", 3, 2.5, None, {"m": 1}, False])
            if self.plant:
                body["username"] = f"{SECRET}-login"
            shapes["API error body"] += 1
            return {"result": body} if self.chance(0.5) else body
        if pick < 0.09:  # rule 2: `result` is not an object, so no envelope
            shapes["result not an object"] += 1
            return {"result": r.choice([[raw], "text", 3, None, True])}
        if pick < 0.85:  # rule 2: the envelope, sometimes with outer keys that must be ignored
            shapes["envelope"] += 1
            if isinstance(profile.get("Troops"), dict):
                shapes["envelope with keyed troops"] += 1
            top: dict[str, Any] = {"result": raw}
            if self.chance(0.2):
                top.update(NameCode=r.choice(USERS), Name="Outer", ServerTime="2024-01-01T00:00:00Z")
                shapes["envelope with outer keys"] += 1
            return top
        if pick < 0.9:
            shapes["ProfileData and result"] += 1
            raw["result"] = {"NameCode": r.choice(USERS), "ProfileData": {"Level": 1}}
        return raw

    def payload(self, namecode: str) -> tuple[Any, str | None]:
        """(raw value for the jsonb column, the hero_snapshots.namecode column)."""
        r = self.r
        self.plant = self.chance(0.15)
        profile: dict[str, Any] = {}
        for key in ("Level", "PvpTier"):
            if self.chance(0.8):
                profile[key] = None if self.chance(0.05) else self.integer("int", invalid=0.01)
        for name in SECTIONS:
            value = self.section(name)
            if value != "absent":
                profile[name] = value
        if self.chance(0.7):
            profile["EquippedPet"] = self.equipped()
        if self.chance(0.7):
            profile["Guild"] = r.choice([{"Name": r.choice(["Knights", "", "Wölfe"])}, {"Name": 3}, "Knights", {}])
        profile.update(self.sensitive_or_extra())
        raw: dict[str, Any] = {"ProfileData": profile}
        column: str | None = namecode
        pick = r.random()
        if pick < 0.8:
            raw["NameCode"] = namecode
        elif pick < 0.9:
            pass  # falls back to the column
        elif pick < 0.95:
            raw["NameCode"] = r.choice(["", 17, None])
        else:
            column = r.choice([None, ""])  # and no usable NameCode either: VALIDATION_ERROR
            raw["NameCode"] = r.choice(["", None])
        if self.chance(0.8):
            raw["Name"] = r.choice([f"Name{r.randrange(5)}", "", None, 42, "Ünïcode"])
        if self.plant and self.chance(0.3):
            raw["SessionToken"] = f"{SECRET}-top"
        top: Any = self.v2(raw, profile) if self.chance(0.6) else raw
        shape = r.random()
        if shape < 0.05:
            if isinstance(top, dict) and isinstance(top.get("result"), dict):
                self.shapes["double-encoded envelope"] += 1
            return dumps_exact(top), column  # double-encoded
        if top is not raw:
            return top, column
        if shape < 0.07:
            return r.choice([[raw], 3, "plain text", dumps_exact([raw])]), column  # PARSE_ERROR
        if shape < 0.09:
            raw["ProfileData"] = r.choice([None, "profile", [profile]])  # PARSE_ERROR
            if self.chance(0.5):
                del raw["ProfileData"]
        return raw, column


def snapshots() -> tuple[list[tuple[uuid.UUID, Any, str | None, int]], Counter[str]]:
    """(id, raw, namecode column, minutes) for every generated snapshot, and the v2 shapes among them."""
    gen = Gen(SEED)
    out = []
    for _ in range(SNAPSHOTS):
        sid = uuid.UUID(int=gen.r.getrandbits(128), version=4)
        raw, column = gen.payload(gen.r.choice(USERS))
        out.append((sid, raw, column, gen.r.randrange(200)))  # 200 distinct times: some ties
    return out, gen.shapes


@pytest.fixture
def second_dsn(server_dsn: str) -> Iterator[str]:
    """A second fresh database with the schema (dropped afterwards)."""
    name = f"sf_diff_{secrets.token_hex(4)}"
    with psycopg.connect(server_dsn, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    dsn = make_conninfo(server_dsn, dbname=name)
    try:
        init_db(dsn)
        yield dsn
    finally:
        with psycopg.connect(server_dsn, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def _run(conn: psycopg.Connection, data: list, settings: EtlSettings) -> BatchResult:
    seed_catalog(conn, **{k: list(v) for k, v in CATALOG.items()})
    with conn.transaction():
        for sid, raw, column, minutes in data:
            insert_snapshot(conn, raw, namecode=column, created_at=at(minutes), id=sid)
    total = BatchResult()
    order = [sid for sid, *_ in data]
    random.Random(SEED + 1).shuffle(order)  # not oldest first: newest-wins is exercised too
    for start in range(0, len(order), BATCH):
        batch = order[start : start + BATCH]
        with conn.transaction():
            total.add(apply_in_transaction(conn, batch, settings))
    return total


def _bookkeeping(conn: psycopg.Connection) -> set[tuple]:
    return {
        tuple(r.values())
        for r in rows(
            conn,
            "SELECT h.id, h.processed_at IS NOT NULL AS processed, h.error_count, h.last_error ->> 'error_type' AS t,"
            " u.namecode FROM hero_snapshots h LEFT JOIN users u ON u.id = h.user_id",
        )
    }


def _diff(a: dict[str, list[tuple]], b: dict[str, list[tuple]]) -> str:
    out = []
    for table in a:
        only_a = [r for r in a[table] if r not in b[table]]
        only_b = [r for r in b[table] if r not in a[table]]
        if only_a or only_b:
            out.append(f"{table}: fast only {only_a[:3]} ... reference only {only_b[:3]}")
    return "\n".join(out)


def _exact_json(conn: psycopg.Connection) -> None:
    """Read jsonb back with exact numbers, so that a rounded digit shows up as a difference."""
    set_json_loads(lambda text: json.loads(text, parse_float=Decimal), conn)


def test_fast_path_and_reference_write_the_same_tables(
    pg_conn: psycopg.Connection, second_dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pipeline_module, "RECORDSET_BACKOFF", 0)  # every batch tries the one-call reader
    data, shapes = snapshots()
    # every v2 shape is there, a few times at least
    assert all(shapes[name] >= 3 for name in V2_SHAPES), shapes
    assert shapes["envelope"] > SNAPSHOTS // 4, shapes
    _exact_json(pg_conn)
    fast = _run(pg_conn, data, EtlSettings(fast_path=True))
    with psycopg.connect(second_dsn, autocommit=True) as ref_conn:
        _exact_json(ref_conn)
        ref = _run(ref_conn, data, EtlSettings(fast_path=False))
        ref_state, ref_errors, ref_book = state(ref_conn), error_set(ref_conn), _bookkeeping(ref_conn)
        ref_leaks = find_text(ref_conn, [SECRET, *SENSITIVE_KEYS])
    fast_state = state(pg_conn)

    # the data set is varied enough to mean something, and the fast path really took most snapshots
    assert fast.snapshots == ref.snapshots == SNAPSHOTS
    assert ref.reference_path == SNAPSHOTS
    assert fast.reference_path < SNAPSHOTS * 0.5, fast.reference_path
    # both ways of reading the sections ran: one call per section, and element by element for the batches
    # where an array holds a non-object
    assert 0 < fast.element_by_element < SNAPSHOTS // BATCH, fast.element_by_element
    assert fast.errors_by_type["PARSE_ERROR"] >= 5 and fast.errors_by_type["VALIDATION_ERROR"] >= 20
    assert fast.applied >= SNAPSHOTS // 3
    assert len(fast_state["user_troops"]) > 100 and fast.placeholders

    assert _diff(fast_state, ref_state) == ""
    assert fast_state == ref_state
    assert error_set(pg_conn) == ref_errors
    assert (fast.applied, fast.failed, dict(fast.errors_by_type)) == (ref.applied, ref.failed, dict(ref.errors_by_type))
    assert sorted(fast.placeholders) == sorted(ref.placeholders)
    assert _bookkeeping(pg_conn) == ref_book
    assert not [e for e in ref_errors if e[1] == "DB_ERROR"]
    assert find_text(pg_conn, [SECRET, *SENSITIVE_KEYS]) == ref_leaks == []
