"""The snapshot contract, rule by rule, through the ETL core against real PostgreSQL (docs SNAPSHOT_CONTRACT.md).

Every test inserts hand-written `hero_snapshots` rows, applies them with `apply_in_transaction` (both the
set-based fast path and the per-snapshot reference path where the rule concerns parsing) and asserts on
what the tables hold afterwards.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import uuid
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import pytest
from helpers import (
    apply,
    at,
    dumps_exact,
    error_set,
    errors,
    find_text,
    insert_snapshot,
    one,
    payload,
    rows,
    seed_catalog,
    snapshot_rows,
    state,
    truncate_all,
)

from starforge_backfill import artifacts
from starforge_backfill.etl.pipeline import EtlSettings


@contextlib.contextmanager
def on_path(conn: psycopg.Connection, subtests: pytest.Subtests, fast_path: bool) -> Iterator[None]:
    """One subtest per ETL path in the same database: the reference path starts from emptied tables."""
    if not fast_path:
        truncate_all(conn)
    with subtests.test(msg="fast path" if fast_path else "reference path"):
        yield


def _bad_base(n: int = 0) -> dict[str, Any]:
    """A payload that is valid until a test breaks it; its namecode and ids belong to it alone."""
    t, p, a = _bad_ids(n)
    return payload(
        f"BAD_{n:04d}",
        "Baddie",
        Level=3,
        PvpTier=1,
        Troops=[{"TroopId": t, "Amount": 2}],
        Pets=[{"PetId": p, "XP": 5}],
        Artifacts=[{"ArtifactId": a, "XP": 5}],
        EquippedPet={"PetId": p},
    )


def _bad_ids(n: int) -> tuple[int, int, int]:
    """(troop, pet, artifact) ids used only by bad snapshot `n`: none of them may reach a catalog."""
    return 7001 + 10 * n, 7002 + 10 * n, 7003 + 10 * n


def _good() -> dict[str, Any]:
    return payload("GOOD_0001", "Goodie", Level=1, Troops=[{"TroopId": 1, "Amount": 1}], Pets=[{"PetId": 2}])


def assert_failed(conn: psycopg.Connection, sid: uuid.UUID, error_type: str, *, count: int = 1) -> dict:
    """The snapshot failed `count` times with `error_type` and left nothing behind; returns its error row."""
    errs = [e for e in errors(conn) if e["snapshot_id"] == sid]
    assert [e["error_type"] for e in errs] == [error_type] * count, errs
    assert errs[-1]["message"]
    assert len(json.dumps(errs[-1]["details"])) < 8192
    snap = one(
        conn,
        "SELECT error_count, last_error, processed_at, processing, user_id FROM hero_snapshots WHERE id = %s",
        [sid],
    )
    assert snap["error_count"] == count
    assert snap["processed_at"] is None
    assert snap["processing"] is False
    assert snap["user_id"] is None
    last = snap["last_error"]
    assert set(last) == {"error_type", "message", "at"}
    assert last["error_type"] == error_type
    assert last["message"] == errs[-1]["message"]
    assert dt.datetime.fromisoformat(last["at"]).tzinfo is not None
    assert snapshot_rows(conn, sid) == dict.fromkeys(snapshot_rows(conn, sid), 0)
    return errs[-1]


def assert_nothing_from_bad(conn: psycopg.Connection, n: int = 0) -> None:
    """No user, normalized row or placeholder catalog row that only bad snapshot `n` could have made."""
    assert rows(conn, "SELECT 1 FROM users WHERE namecode = %s", [f"BAD_{n:04d}"]) == []
    ids = list(_bad_ids(n))
    for table in ("troop_catalog", "pet_catalog", "artifact_catalog"):
        assert rows(conn, f"SELECT id FROM {table} WHERE id = ANY(%s)", [ids]) == []
    for table, col in (
        ("user_troops", "troop_id"),
        ("user_pets", "pet_id"),
        ("user_artifacts", "artifact_id"),
    ):
        assert rows(conn, f"SELECT 1 FROM {table} WHERE {col} = ANY(%s)", [ids]) == []


def check_all(checks: dict[str, Callable[[], None]]) -> None:
    """Run every check, then fail once listing every case that failed (a batch tests many cases at once)."""
    failed = []
    for name, check in checks.items():
        try:
            check()
        except AssertionError as exc:
            failed.append(f"{name}: {str(exc).splitlines()[0] if str(exc) else 'assertion failed'}")
    assert not failed, "\n".join(failed)


def assert_processed(conn: psycopg.Connection, sid: uuid.UUID) -> None:
    snap = one(conn, "SELECT error_count, processed_at, user_id FROM hero_snapshots WHERE id = %s", [sid])
    assert snap["error_count"] == 0
    assert snap["processed_at"] is not None
    assert snap["user_id"] is not None
    assert sid not in {e["snapshot_id"] for e in errors(conn)}


# ---------------------------------------------------------------------------------------------------------
# Sections and field mapping


def test_array_sections_map_every_field(pg_conn: psycopg.Connection, subtests: pytest.Subtests) -> None:
    for fast_path in (True, False):
        with on_path(pg_conn, subtests, fast_path):
            raw = payload(
                "COCO_JQGB",
                "Coco",
                Level=52,
                PvpTier=3,
                Troops=[
                    {
                        "TroopId": 6024,
                        "Amount": 3,
                        "Level": 20,
                        "Rarity": 5,
                        "FusionCards": 2,
                        "TraitsOwned": 3,
                        "IsNew": False,
                        "Ascension": {"stars": [1, 2]},
                    }
                ],
                Pets=[
                    {
                        "PetId": 101,
                        "Amount": 4,
                        "Level": 10,
                        "XP": 5400,
                        "OrbFusionCards": 6,
                        "OrbsUsed": [1, 2],
                        "AscensionLevel": 1,
                        "Nick": "rex",
                    }
                ],
                Artifacts=[{"ArtifactId": 7, "Level": 4, "XP": 1200, "Equipped": True}],
            )
            sid = insert_snapshot(pg_conn, raw, created_at=at(5))
            res = apply(pg_conn, [sid], EtlSettings(fast_path=fast_path))
            assert (res.applied, res.failed) == (1, 0)
            assert_processed(pg_conn, sid)
            s = state(pg_conn)
            obs = at(5)
            assert s["users"] == [("COCO_JQGB", "Coco")]
            assert s["user_troops"] == [
                ("COCO_JQGB", 6024, 3, 20, 5, 2, 3, {"IsNew": False, "Ascension": {"stars": [1, 2]}}, obs, sid)
            ]
            assert s["user_pets"] == [("COCO_JQGB", 101, 4, 10, 5400, 6, [1, 2], 1, {"Nick": "rex"}, obs, sid)]
            assert s["user_artifacts"] == [("COCO_JQGB", 7, 4, 1200, {"Equipped": True}, obs, sid)]
            hs = one(pg_conn, "SELECT user_id FROM hero_snapshots WHERE id = %s", [sid])
            assert hs["user_id"] == one(pg_conn, "SELECT id FROM users WHERE namecode = 'COCO_JQGB'")["id"]


def test_keyed_sections_take_the_id_from_a_decimal_key(pg_conn: psycopg.Connection, subtests: pytest.Subtests) -> None:
    for fast_path in (True, False):
        with on_path(pg_conn, subtests, fast_path):
            raw = payload(
                "KEYED_0001",
                Troops={
                    "6024": {"Amount": 3, "Level": 2},
                    "abc": {"TroopId": 11, "Amount": 1},
                    "99": {"TroopId": 12, "Amount": 7},
                    "0013": {"Amount": 5},
                },
                Pets={"101": {"XP": 9}, "102": {"PetId": None, "Level": 4}},
                Artifacts={"7": {"Level": 4}, "8": {"ArtifactId": "8", "XP": 1}},
            )
            sid = insert_snapshot(pg_conn, raw)
            res = apply(pg_conn, [sid], EtlSettings(fast_path=fast_path))
            assert (res.applied, res.failed) == (1, 0)
            s = state(pg_conn)
            # the id field wins over the key ("99" -> 12); a key without an id field gives the id ("0013" -> 13)
            assert [(r[1], r[2], r[3]) for r in s["user_troops"]] == [
                (11, 1, 1),
                (12, 7, 1),
                (13, 5, 1),
                (6024, 3, 2),
            ]
            assert [(r[1], r[3], r[4]) for r in s["user_pets"]] == [(101, 1, 9), (102, 4, 0)]
            assert [(r[1], r[2], r[3]) for r in s["user_artifacts"]] == [(7, 4, 0), (8, 0, 1)]
            assert [r[7] for r in s["user_troops"]] == [{}, {}, {}, {}]


def test_every_field_default(pg_conn: psycopg.Connection, subtests: pytest.Subtests) -> None:
    for fast_path in (True, False):
        with on_path(pg_conn, subtests, fast_path):
            absent = payload(
                "DEFAULT_ABSENT",
                Troops=[{"TroopId": 1}],
                Pets=[{"PetId": 2}],
                Artifacts=[{"ArtifactId": 3}],
            )
            nulls = payload(
                "DEFAULT_NULLS",
                Name=None,
                Level=None,
                PvpTier=None,
                Troops=[
                    {
                        "TroopId": 1,
                        "Amount": None,
                        "Level": None,
                        "Rarity": None,
                        "FusionCards": None,
                        "TraitsOwned": None,
                    }
                ],
                Pets=[
                    {
                        "PetId": 2,
                        "Amount": None,
                        "Level": None,
                        "XP": None,
                        "OrbFusionCards": None,
                        "OrbsUsed": None,
                        "AscensionLevel": None,
                    }
                ],
                Artifacts=[{"ArtifactId": 3, "Level": None, "XP": None}],
                EquippedPet=None,
                Guild=None,
            )
            ids = [insert_snapshot(pg_conn, absent), insert_snapshot(pg_conn, nulls)]
            res = apply(pg_conn, ids, EtlSettings(fast_path=fast_path))
            assert (res.applied, res.failed) == (2, 0)
            s = state(pg_conn)
            assert [r[:8] for r in s["user_troops"]] == [
                (nc, 1, 0, 1, 0, 0, 0, {}) for nc in ("DEFAULT_ABSENT", "DEFAULT_NULLS")
            ]
            assert [r[:9] for r in s["user_pets"]] == [
                (nc, 2, 0, 1, 0, 0, [], 0, {}) for nc in ("DEFAULT_ABSENT", "DEFAULT_NULLS")
            ]
            assert [r[:5] for r in s["user_artifacts"]] == [
                (nc, 3, 0, 0, {}) for nc in ("DEFAULT_ABSENT", "DEFAULT_NULLS")
            ]
            assert s["users"] == [("DEFAULT_ABSENT", None), ("DEFAULT_NULLS", None)]
            for summary in s["user_profile_summary"]:
                _, _, username, level, top, pet, tier, guild_id, _, extra, _ = summary
                assert (username, level, pet, tier, guild_id, extra) == (None, None, None, None, None, {})
                assert top == [{"troop_id": 1, "amount": 0, "level": 1}]


def test_absent_null_or_empty_sections_give_no_rows(pg_conn: psycopg.Connection, subtests: pytest.Subtests) -> None:
    for fast_path in (True, False):
        with on_path(pg_conn, subtests, fast_path):
            forms = {"ABSENT": "absent", "NULL": None, "ARRAY": [], "OBJECT": {}}
            ids = {}
            for label, value in forms.items():
                profile = {} if value == "absent" else dict.fromkeys(("Troops", "Pets", "Artifacts"), value)
                ids[label] = insert_snapshot(pg_conn, payload(f"EMPTY_{label}", "Empty", Level=2, **profile))
            res = apply(pg_conn, list(ids.values()), EtlSettings(fast_path=fast_path))
            assert (res.applied, res.failed) == (4, 0)
            for sid in ids.values():
                assert_processed(pg_conn, sid)
            s = state(pg_conn)
            assert (s["user_troops"], s["user_pets"], s["user_artifacts"]) == ([], [], [])
            assert sorted((r[1], r[2], r[3], r[4]) for r in s["user_profile_summary"]) == sorted(
                (f"EMPTY_{label}", "Empty", 2, []) for label in forms
            )


# ---------------------------------------------------------------------------------------------------------
# Integers


ACCEPTED = [
    # (section, field, value, column, expected)
    ("Troops", "Amount", 12, "amount", 12),
    ("Troops", "Amount", 12.0, "amount", 12),
    ("Troops", "Amount", "12", "amount", 12),
    ("Troops", "Amount", Decimal("12.000000000000000000000"), "amount", 12),
    ("Troops", "Amount", "0012", "amount", 12),
    ("Troops", "Amount", "-0", "amount", 0),
    ("Troops", "Amount", 2**31 - 1, "amount", 2**31 - 1),
    ("Troops", "Amount", str(2**31 - 1), "amount", 2**31 - 1),
    ("Troops", "Level", 0, "level", 0),
    ("Troops", "TroopId", "12", "troop_id", 12),
    ("Troops", "TroopId", 12.0, "troop_id", 12),
    ("Pets", "XP", 2**63 - 1, "xp", 2**63 - 1),
    ("Pets", "XP", str(2**63 - 1), "xp", 2**63 - 1),
    ("Pets", "XP", 3_000_000_000, "xp", 3_000_000_000),
    ("Pets", "XP", 3_000_000_000.0, "xp", 3_000_000_000),
    ("Artifacts", "XP", "4000000000", "xp", 4_000_000_000),
    ("Artifacts", "Level", "7", "level", 7),
]


def test_integer_forms_accepted(pg_conn: psycopg.Connection, subtests: pytest.Subtests) -> None:
    for fast_path in (True, False):
        with on_path(pg_conn, subtests, fast_path):
            ids = []
            for n, (section, field, value, _col, _exp) in enumerate(ACCEPTED):
                id_field = {"Troops": "TroopId", "Pets": "PetId", "Artifacts": "ArtifactId"}[section]
                elem = {id_field: 12, field: value}
                ids.append(insert_snapshot(pg_conn, payload(f"INT_{n:04d}", **{section: [elem]})))
            res = apply(pg_conn, ids, EtlSettings(fast_path=fast_path))
            assert res.failures == []
            assert res.applied == len(ACCEPTED)

            def check(n: int, section: str, column: str, expected: int) -> Callable[[], None]:
                table = {"Troops": "user_troops", "Pets": "user_pets", "Artifacts": "user_artifacts"}[section]
                query = f"SELECT t.{column} AS v FROM {table} t JOIN users u ON u.id = t.user_id WHERE u.namecode = %s"
                return lambda: _eq(one(pg_conn, query, [f"INT_{n:04d}"])["v"], expected)

            check_all(
                {
                    f"{section}.{field}={value!r}": check(n, section, column, expected)
                    for n, (section, field, value, column, expected) in enumerate(ACCEPTED)
                }
            )


def _eq(got: Any, expected: Any) -> None:
    assert got == expected, f"got {got!r}, expected {expected!r}"


def _set(section: str, field: str, value: Any, index: int = 0) -> Callable[[dict], None]:
    def mutate(raw: dict) -> None:
        raw["ProfileData"][section][index][field] = value

    return mutate


def _profile(key: str, value: Any) -> Callable[[dict], None]:
    def mutate(raw: dict) -> None:
        raw["ProfileData"][key] = value

    return mutate


def _dup_invalid_then_valid(raw: dict) -> None:
    tid = raw["ProfileData"]["Troops"][0]["TroopId"]
    raw["ProfileData"]["Troops"] = [{"TroopId": tid, "Amount": "x"}, {"TroopId": tid, "Amount": 1}]


def _keyed_array_element(raw: dict) -> None:
    raw["ProfileData"]["Troops"] = {str(raw["ProfileData"]["Troops"][0]["TroopId"]): [1]}


REJECTED: dict[str, Callable[[dict], None]] = {
    "amount-true": _set("Troops", "Amount", True),
    "amount-false": _set("Troops", "Amount", False),
    "amount-str-fraction": _set("Troops", "Amount", "12.5"),
    "amount-str-zero-fraction": _set("Troops", "Amount", "12.0"),
    "amount-fraction": _set("Troops", "Amount", 12.5),
    "amount-abc": _set("Troops", "Amount", "abc"),
    "amount-empty-str": _set("Troops", "Amount", ""),
    "amount-exponent-str": _set("Troops", "Amount", "1e3"),
    "amount-plus-str": _set("Troops", "Amount", "+12"),
    "amount-space-str": _set("Troops", "Amount", " 12"),
    "amount-object": _set("Troops", "Amount", {"v": 1}),
    "amount-array": _set("Troops", "Amount", [1]),
    "amount-negative": _set("Troops", "Amount", -1),
    "amount-negative-str": _set("Troops", "Amount", "-1"),
    "amount-2**31": _set("Troops", "Amount", 2**31),
    "amount-2**31-str": _set("Troops", "Amount", str(2**31)),
    "amount-huge-str": _set("Troops", "Amount", "9" * 60),
    "amount-fraction-a-double-rounds-away": _set("Troops", "Amount", Decimal("5.0000000000000001")),
    "troop-id-fraction-a-double-rounds-away": _set("Troops", "TroopId", Decimal("7001.00000000000000001")),
    "xp-fraction-a-double-rounds-away": _set("Pets", "XP", Decimal("300.000000000000000001")),
    "profile-level-fraction-a-double-rounds-away": _profile("Level", Decimal("3.0000000000000000001")),
    "amount-2**70": _set("Troops", "Amount", 2**70),  # shown in details: wider than orjson's 64 bits
    "amount-2**100-str": _set("Troops", "Amount", str(2**100)),
    "level-minus-2**80": _set("Troops", "Level", -(2**80)),
    "level-negative": _set("Troops", "Level", -1),
    "rarity-fraction": _set("Troops", "Rarity", 0.5),
    "troop-id-0": _set("Troops", "TroopId", 0),
    "troop-id-0-str": _set("Troops", "TroopId", "0"),
    "troop-id-negative": _set("Troops", "TroopId", -3),
    "troop-id-2**31": _set("Troops", "TroopId", 2**31),
    "troop-id-true": _set("Troops", "TroopId", True),
    "troop-id-fraction": _set("Troops", "TroopId", 7001.5),
    "troop-id-str-fraction": _set("Troops", "TroopId", "7001.0"),
    "troop-id-missing": _set("Troops", "TroopId", None),
    "troop-dup-invalid-first": _dup_invalid_then_valid,
    "pet-xp-2**63": _set("Pets", "XP", 2**63),
    "pet-xp-2**63-str": _set("Pets", "XP", str(2**63)),
    "pet-xp-negative": _set("Pets", "XP", -1),
    "pet-amount-2**31": _set("Pets", "Amount", 2**31),
    "pet-orbs-used-string": _set("Pets", "OrbsUsed", "none"),
    "pet-orbs-used-object": _set("Pets", "OrbsUsed", {"a": 1}),
    "pet-id-0": _set("Pets", "PetId", 0),
    "artifact-xp-2**63": _set("Artifacts", "XP", 2**63),
    "artifact-level-2**31": _set("Artifacts", "Level", 2**31),
    "artifact-id-abc": _set("Artifacts", "ArtifactId", "abc"),
    "profile-level-abc": _profile("Level", "abc"),
    "profile-level-negative": _profile("Level", -1),
    "profile-level-2**31": _profile("Level", 2**31),
    "profile-level-true": _profile("Level", True),
    "profile-level-fraction-str": _profile("Level", "3.0"),
    "profile-pvp-fraction": _profile("PvpTier", 1.5),
    "troops-string": _profile("Troops", "x"),
    "troops-number": _profile("Troops", 5),
    "troops-bool": _profile("Troops", True),
    "pets-element-number": _profile("Pets", [5]),
    "artifacts-element-null": _profile("Artifacts", [None]),
    "troops-keyed-element-array": _keyed_array_element,
    "troops-keyed-non-decimal-key": _profile("Troops", {"abc": {"Amount": 1}}),
    "troops-keyed-negative-key": _profile("Troops", {"-5": {"Amount": 1}}),
    "troops-keyed-zero-key": _profile("Troops", {"0": {"Amount": 1}}),
    "troops-keyed-key-too-big": _profile("Troops", {str(2**31): {"Amount": 1}}),
}


def test_rejected_forms_fail_the_snapshot_whole(pg_conn: psycopg.Connection, subtests: pytest.Subtests) -> None:
    for fast_path in (True, False):
        with on_path(pg_conn, subtests, fast_path):
            bad = {}
            for n, (name, mutate) in enumerate(REJECTED.items()):
                raw = _bad_base(n)
                mutate(raw)
                bad[name] = (n, insert_snapshot(pg_conn, raw, created_at=at(n)))
            good = insert_snapshot(pg_conn, _good(), created_at=at(0.5))
            # as a worker leaves them: claimed, being processed
            pg_conn.execute("UPDATE hero_snapshots SET processing = true, processing_started_at = now()")
            res = apply(pg_conn, [good, *(sid for _, sid in bad.values())], EtlSettings(fast_path=fast_path))
            assert rows(pg_conn, "SELECT id FROM hero_snapshots WHERE processing") == []
            assert res.errors_by_type == {"VALIDATION_ERROR": len(REJECTED)}
            assert (res.applied, res.failed) == (1, len(REJECTED))

            def check(n: int, sid: uuid.UUID) -> Callable[[], None]:
                def run() -> None:
                    assert_failed(pg_conn, sid, "VALIDATION_ERROR")
                    assert_nothing_from_bad(pg_conn, n)

                return run

            check_all({name: check(n, sid) for name, (n, sid) in bad.items()})
            assert_processed(pg_conn, good)
            assert state(pg_conn)["users"] == [("GOOD_0001", "Goodie")]
            assert state(pg_conn)["catalogs"] == [
                ("pet", 2, None, {"placeholder": True}),
                ("troop", 1, None, {"placeholder": True}),
            ]


def test_one_rejected_snapshot_alone_and_with_a_neighbour(
    pg_conn: psycopg.Connection, subtests: pytest.Subtests
) -> None:
    for fast_path in (True, False):
        with on_path(pg_conn, subtests, fast_path):
            raw = _bad_base()
            raw["ProfileData"]["Troops"].append({"TroopId": 1, "Amount": 12.5})
            alone = insert_snapshot(pg_conn, raw)
            res = apply(pg_conn, [alone], EtlSettings(fast_path=fast_path))
            assert (res.applied, res.failed) == (0, 1)
            assert_failed(pg_conn, alone, "VALIDATION_ERROR")
            good = insert_snapshot(pg_conn, _good())
            res = apply(pg_conn, [good, alone], EtlSettings(fast_path=fast_path))
            assert (res.applied, res.failed) == (1, 1)
            assert_failed(pg_conn, alone, "VALIDATION_ERROR", count=2)
            assert_nothing_from_bad(pg_conn)
            assert_processed(pg_conn, good)


def test_a_failing_snapshot_counts_every_failure(pg_conn: psycopg.Connection, subtests: pytest.Subtests) -> None:
    for fast_path in (True, False):
        with on_path(pg_conn, subtests, fast_path):
            raw = _bad_base()
            raw["ProfileData"]["Level"] = "abc"
            bad = insert_snapshot(pg_conn, raw)
            for _ in range(2):
                apply(pg_conn, [bad], EtlSettings(fast_path=fast_path))
            assert_failed(pg_conn, bad, "VALIDATION_ERROR", count=2)
            assert_nothing_from_bad(pg_conn)
            # processed_at is left as it was, even when an earlier run had set it
            pg_conn.execute("UPDATE hero_snapshots SET processed_at = %s", [at(-60)])
            apply(pg_conn, [bad], EtlSettings(fast_path=fast_path))
            assert one(pg_conn, "SELECT processed_at, error_count FROM hero_snapshots") == {
                "processed_at": at(-60),
                "error_count": 3,
            }


# ---------------------------------------------------------------------------------------------------------
# Top level: parse errors, double encoding, namecode


PARSE_ERRORS: dict[str, Any] = {
    "top-level-array": [{"NameCode": "BAD_0000", "ProfileData": {}}],
    "top-level-number": 5,
    "top-level-null": None,
    "top-level-true": True,
    "missing-profile-data": {"NameCode": "BAD_0000", "Troops": [{"TroopId": 7001}]},
    "profile-data-null": {"NameCode": "BAD_0000", "ProfileData": None},
    "profile-data-string": {"NameCode": "BAD_0000", "ProfileData": '{"Troops": []}'},
    "profile-data-array": {"NameCode": "BAD_0000", "ProfileData": [{"Troops": []}]},
    "string-not-json": "not json at all {",
    "string-of-array": json.dumps([{"NameCode": "BAD_0000", "ProfileData": {}}]),
    "string-of-string": json.dumps(json.dumps(payload("BAD_0000"))),
    "double-encoded-missing-profile": json.dumps({"NameCode": "BAD_0000"}),
}


def test_parse_errors(pg_conn: psycopg.Connection, subtests: pytest.Subtests) -> None:
    for fast_path in (True, False):
        with on_path(pg_conn, subtests, fast_path):
            bad = {name: insert_snapshot(pg_conn, raw, namecode="BAD_0000") for name, raw in PARSE_ERRORS.items()}
            good = insert_snapshot(pg_conn, _good())
            res = apply(pg_conn, [*bad.values(), good], EtlSettings(fast_path=fast_path))
            assert (res.applied, res.failed) == (1, len(PARSE_ERRORS))
            check_all({name: (lambda sid=sid: assert_failed(pg_conn, sid, "PARSE_ERROR")) for name, sid in bad.items()})
            assert_nothing_from_bad(pg_conn)
            assert_processed(pg_conn, good)


def test_double_encoded_payload_is_applied(pg_conn: psycopg.Connection, subtests: pytest.Subtests) -> None:
    for fast_path in (True, False):
        with on_path(pg_conn, subtests, fast_path):
            inner = payload(
                "DOUBLE_0001",
                "Dee",
                Level=9,
                Troops={"5": {"Amount": "3", "Tag": "t"}},
                Pets=[{"PetId": 6, "XP": 12.0}],
                Artifacts=[{"ArtifactId": 7}],
                Guild={"Name": "Knights"},
            )
            sid = insert_snapshot(pg_conn, json.dumps(inner), created_at=at(3))
            assert one(pg_conn, "SELECT jsonb_typeof(raw) AS t FROM hero_snapshots")["t"] == "string"
            res = apply(pg_conn, [sid], EtlSettings(fast_path=fast_path))
            assert (res.applied, res.failed) == (1, 0)
            assert_processed(pg_conn, sid)
            s = state(pg_conn)
            assert s["users"] == [("DOUBLE_0001", "Dee")]
            assert s["user_troops"] == [("DOUBLE_0001", 5, 3, 1, 0, 0, 0, {"Tag": "t"}, at(3), sid)]
            assert [r[:5] for r in s["user_pets"]] == [("DOUBLE_0001", 6, 0, 1, 12)]
            assert [r[:2] for r in s["user_artifacts"]] == [("DOUBLE_0001", 7)]
            assert [(r[3], r[9]) for r in s["user_profile_summary"]] == [(9, {"guild_name": "Knights"})]


NAMECODES = {
    # label: (payload NameCode (None: absent), column, expected user namecode)
    "payload-wins": ("PAYLOAD_0", "COLUMN_0", "PAYLOAD_0"),
    "absent": (None, "COLUMN_1", "COLUMN_1"),
    "empty": ("", "COLUMN_2", "COLUMN_2"),
    "not-a-string": (17, "COLUMN_3", "COLUMN_3"),
    "null": ("null", "COLUMN_4", "COLUMN_4"),
    "no-column": ("PAYLOAD_5", None, "PAYLOAD_5"),
    "empty-column": ("PAYLOAD_6", "", "PAYLOAD_6"),
}


def test_namecode_falls_back_to_the_column(pg_conn: psycopg.Connection, subtests: pytest.Subtests) -> None:
    for fast_path in (True, False):
        with on_path(pg_conn, subtests, fast_path):
            ids = {}
            for label, (json_namecode, column, _) in NAMECODES.items():
                raw = payload(None, "Nemo", Troops=[{"TroopId": 1}])
                if json_namecode is not None:
                    raw["NameCode"] = None if json_namecode == "null" else json_namecode
                ids[label] = insert_snapshot(pg_conn, raw, namecode=column)
            res = apply(pg_conn, list(ids.values()), EtlSettings(fast_path=fast_path))
            assert (res.applied, res.failed) == (len(NAMECODES), 0)
            s = state(pg_conn)
            expected = sorted(e for _, _, e in NAMECODES.values())
            assert s["users"] == [(e, "Nemo") for e in expected]
            assert [r[0] for r in s["user_troops"]] == expected
            assert sorted((r[0], r[1]) for r in s["user_profile_summary"]) == [(e, e) for e in expected]
            for label, sid in ids.items():
                got = one(
                    pg_conn,
                    "SELECT u.namecode FROM hero_snapshots h JOIN users u ON u.id = h.user_id WHERE h.id = %s",
                    [sid],
                )["namecode"]
                assert got == NAMECODES[label][2], label


NO_NAMECODE = {
    "none": (None, None),
    "empty-payload": ("", None),
    "both-empty": ("", ""),
    "empty-column": (None, ""),
    "number": (42, None),
    "array": (["X"], None),
    "null": ("null", None),
}


def test_no_namecode_is_a_validation_error(pg_conn: psycopg.Connection, subtests: pytest.Subtests) -> None:
    for fast_path in (True, False):
        with on_path(pg_conn, subtests, fast_path):
            bad = {}
            for n, (label, (json_namecode, column)) in enumerate(NO_NAMECODE.items()):
                raw = _bad_base(n)
                del raw["NameCode"]
                if json_namecode is not None:
                    raw["NameCode"] = None if json_namecode == "null" else json_namecode
                bad[label] = (n, insert_snapshot(pg_conn, raw, namecode=column))
            good = insert_snapshot(pg_conn, _good())
            res = apply(pg_conn, [*(sid for _, sid in bad.values()), good], EtlSettings(fast_path=fast_path))
            assert (res.applied, res.failed) == (1, len(NO_NAMECODE))

            def check(n: int, sid: uuid.UUID) -> Callable[[], None]:
                def run() -> None:
                    err = assert_failed(pg_conn, sid, "VALIDATION_ERROR")
                    assert "namecode" in err["message"]
                    assert_nothing_from_bad(pg_conn, n)

                return run

            check_all({label: check(n, sid) for label, (n, sid) in bad.items()})
            assert state(pg_conn)["users"] == [("GOOD_0001", "Goodie")]


# ---------------------------------------------------------------------------------------------------------
# extra and sensitive keys

SECRETS = [f"Plant3dValu3-{i:02d}" for i in range(16)]


def _secret_payload(namecode: str, offset: int) -> dict[str, Any]:
    s = SECRETS[offset:]
    raw = payload(
        namecode,
        "Sam",
        Level=4,
        Troops=[
            {
                "TroopId": 1,
                "Amount": 5,
                "Password": s[0],
                "Note": "kept",
                "Nested": {"deep": [{"x_SECRET_y": s[1], "keep": 1}], "AUTH": {"a": s[2]}, "n": None},
            },
        ],
        Pets=[{"PetId": 2, "OrbsUsed": [1, {"token": s[3], "orb": 3}, [{"MyPassWd": s[4]}]], "passwd": s[5]}],
        Artifacts={"3": {"Session_Key": s[6], "Info": {"list": [[{"refresh_TOKEN": s[7], "ok": "yes"}]]}}},
        SessionId=s[8],
    )
    raw["AuthToken"] = s[9]
    return raw


EXPECTED_TROOP_EXTRA = {"Note": "kept", "Nested": {"deep": [{"keep": 1}], "n": None}}
EXPECTED_ORBS = [1, {"orb": 3}, [{}]]
EXPECTED_ARTIFACT_EXTRA = {"Info": {"list": [[{"ok": "yes"}]]}}


def test_extra_keeps_unmapped_keys_and_drops_sensitive_ones_everywhere(
    pg_conn: psycopg.Connection, subtests: pytest.Subtests, tmp_path: Path
) -> None:
    for fast_path in (True, False):
        with on_path(pg_conn, subtests, fast_path):
            plain = insert_snapshot(pg_conn, _secret_payload("SENS_PLAIN", 0), created_at=at(1))
            double = insert_snapshot(pg_conn, json.dumps(_secret_payload("SENS_DOUBLE", 0)), created_at=at(1))
            # failing snapshots carrying sensitive keys and values: their error rows must not leak either
            failing = [
                _profile("Troops", {"authKey": {"Amount": 1}}),  # key is shown in details: must be redacted
                _set("Troops", "Amount", SECRETS[10]),  # the bad value is a secret-looking string
                _set("Troops", "TokenCount", 2**70),
            ]
            bad_ids = []
            for i, mutate in enumerate(failing):
                raw = _secret_payload(f"SENS_BAD_{i}", 0)
                raw["ProfileData"]["Troops"][0]["session_token"] = SECRETS[11]
                mutate(raw)
                if i == 2:
                    raw["ProfileData"]["Troops"][0]["Amount"] = -5
                bad_ids.append(insert_snapshot(pg_conn, raw, created_at=at(2)))
            res = apply(
                pg_conn,
                [plain, double, *bad_ids],
                EtlSettings(fast_path=fast_path, quarantine_dir=tmp_path / str(fast_path)),
            )
            assert (res.applied, res.failed) == (2, 3)
            # the fast path strips the plain snapshot's keys itself: only the double-encoded and failing ones
            # (whose errors the reference reports) take the reference path
            assert res.reference_path == (4 if fast_path else 5)
            s = state(pg_conn)
            for namecode in ("SENS_DOUBLE", "SENS_PLAIN"):
                assert [r[7] for r in s["user_troops"] if r[0] == namecode] == [EXPECTED_TROOP_EXTRA]
                assert [(r[6], r[8]) for r in s["user_pets"] if r[0] == namecode] == [(EXPECTED_ORBS, {})]
                assert [r[4] for r in s["user_artifacts"] if r[0] == namecode] == [EXPECTED_ARTIFACT_EXTRA]
            for sid in bad_ids:
                assert_failed(pg_conn, sid, "VALIDATION_ERROR")
            key_errors = [e for e in errors(pg_conn) if e["snapshot_id"] == bad_ids[0]]
            assert key_errors[0]["details"].get("key") == "[REDACTED]"

            needles = [*SECRETS, "token", "password", "passwd", "secret", "session", "auth"]
            assert find_text(pg_conn, needles) == []
            for path in (tmp_path / str(fast_path)).iterdir():  # quarantine copies: values replaced, never present
                text = path.read_text()
                assert not [x for x in SECRETS if x in text and x != SECRETS[10]], path  # [10] sits under "Amount"


def test_sensitive_words_in_values_and_quoted_keys(pg_conn: psycopg.Connection, subtests: pytest.Subtests) -> None:
    # The fast path screens extras with a broad regex: a sensitive *word in a value* is a false positive that
    # the reference path must apply normally (not report as a fast/reference disagreement), and a sensitive
    # key holding a double quote after the sensitive part (a regex anchored on quotes missed it) is dropped.
    for fast_path in (True, False):
        with on_path(pg_conn, subtests, fast_path):
            words = insert_snapshot(
                pg_conn,
                payload("SENS_WORDS", Troops=[{"TroopId": 1, "Note": "session token auth", "Kind": "Passwords"}]),
            )
            quoted = insert_snapshot(
                pg_conn,
                payload("SENS_QUOTED", Troops=[{"TroopId": 2, 'token"x': SECRETS[12], 'a"b': 1}]),
            )
            # "TO\u212aEN".lower() == "token" (Kelvin sign): sensitive, though PostgreSQL's ~* does not match it
            kelvin = insert_snapshot(
                pg_conn,
                payload("SENS_KELVIN", Troops=[{"TroopId": 3, "Meta": {"TO\u212aEN": SECRETS[13], "Café": "crème"}}]),
            )
            res = apply(pg_conn, [words, quoted, kelvin], EtlSettings(fast_path=fast_path))
            assert (res.applied, res.failed) == (3, 0)
            assert res.reference_path == (0 if fast_path else 3)  # the fast path strips keys itself
            extras = {
                r["namecode"]: r["extra"]
                for r in rows(pg_conn, "SELECT u.namecode, t.extra FROM user_troops t JOIN users u ON u.id = t.user_id")
            }
            assert extras == {
                "SENS_WORDS": {"Note": "session token auth", "Kind": "Passwords"},
                "SENS_QUOTED": {'a"b': 1},
                "SENS_KELVIN": {"Meta": {"Café": "crème"}},
            }
            assert errors(pg_conn) == []
            assert find_text(pg_conn, [SECRETS[12], SECRETS[13]]) == []


EXACT_EXTRA = {
    "Precise": Decimal("0.1000000000000000055511151231257827"),
    "Long": Decimal("123456789012345678901234567890.5"),
    "Zeros": Decimal("1.50"),
    "Big": 10**40,
    "Nested": [{"v": Decimal("-0.000000000000000000000001")}],
}


def test_extra_numbers_are_kept_exactly(pg_conn: psycopg.Connection, subtests: pytest.Subtests) -> None:
    for fast_path in (True, False):
        with on_path(pg_conn, subtests, fast_path):
            plain = payload("EXACT_PLAIN", Troops=[{"TroopId": 1, **EXACT_EXTRA}])
            sensitive = payload("EXACT_SENSITIVE", Troops=[{"TroopId": 1, "authToken": "x", **EXACT_EXTRA}])
            ids = [insert_snapshot(pg_conn, plain), insert_snapshot(pg_conn, sensitive)]
            double = payload("EXACT_DOUBLE", Pets=[{"PetId": 2, **EXACT_EXTRA}])
            ids.append(insert_snapshot(pg_conn, dumps_exact(double)))
            res = apply(pg_conn, ids, EtlSettings(fast_path=fast_path))
            assert (res.applied, res.failed) == (3, 0)
            # jsonb equality compares numbers exactly: a float on the way would round Precise and Long
            got = rows(
                pg_conn,
                "SELECT u.namecode, t.extra = %(x)s::jsonb AS same, t.extra::text AS text FROM user_troops t"
                " JOIN users u ON u.id = t.user_id UNION ALL SELECT u.namecode, t.extra = %(x)s::jsonb, t.extra::text"
                " FROM user_pets t JOIN users u ON u.id = t.user_id ORDER BY 1",
                {"x": dumps_exact(EXACT_EXTRA)},
            )
            assert [(r["namecode"], r["same"]) for r in got] == [
                ("EXACT_DOUBLE", True),
                ("EXACT_PLAIN", True),
                ("EXACT_SENSITIVE", True),
            ], got


# ---------------------------------------------------------------------------------------------------------
# Duplicates


def test_last_duplicate_wins_inside_one_snapshot(pg_conn: psycopg.Connection, subtests: pytest.Subtests) -> None:
    for fast_path in (True, False):
        with on_path(pg_conn, subtests, fast_path):
            raw = payload(
                "DUP_0001",
                Troops=[
                    {"TroopId": 1, "Amount": 50, "Level": 9, "Tag": "first"},
                    {"TroopId": 2, "Amount": 3},
                    {"TroopId": "1", "Amount": 4, "Tag": "last"},
                ],
                Pets=[{"PetId": 5, "XP": 1, "OrbsUsed": [1]}, {"PetId": 5.0, "XP": 2}],
                Artifacts=[{"ArtifactId": 9, "Level": 3}, {"ArtifactId": 8}, {"ArtifactId": 9, "Level": 1, "X": 0}],
            )
            sid = insert_snapshot(pg_conn, raw)
            res = apply(pg_conn, [sid], EtlSettings(fast_path=fast_path))
            assert (res.applied, res.failed) == (1, 0)
            s = state(pg_conn)
            assert [(r[1], r[2], r[3], r[7]) for r in s["user_troops"]] == [(1, 4, 1, {"Tag": "last"}), (2, 3, 1, {})]
            assert [(r[1], r[4], r[6]) for r in s["user_pets"]] == [(5, 2, [])]
            assert [(r[1], r[2], r[4]) for r in s["user_artifacts"]] == [(8, 0, {}), (9, 1, {"X": 0})]
            # the summary sees the surviving occurrence only
            top = s["user_profile_summary"][0][4]
            assert top == [{"troop_id": 1, "amount": 4, "level": 1}, {"troop_id": 2, "amount": 3, "level": 1}]


# ---------------------------------------------------------------------------------------------------------
# Summary


def test_summary_top_troops_and_profile_fields(pg_conn: psycopg.Connection, subtests: pytest.Subtests) -> None:
    for fast_path in (True, False):
        with on_path(pg_conn, subtests, fast_path):
            troops = [
                {"TroopId": 10, "Amount": 5, "Level": 1},
                {"TroopId": 11, "Amount": 9, "Level": 1},
                {"TroopId": 12, "Amount": 5, "Level": 3},  # ties on amount: higher level first
                {"TroopId": 13, "Amount": 5, "Level": 3},  # ... then lower troop_id
                {"TroopId": 9, "Amount": 5, "Level": 1},
                {"TroopId": 14, "Amount": 1, "Level": 20},
                {"TroopId": 15, "Amount": "7"},
            ]
            raw = payload(
                "TOP_0001", "Topper", Level="52", PvpTier=3.0, Troops=troops, Guild={"Name": "Heirs", "Id": 3}
            )
            sid = insert_snapshot(pg_conn, raw, created_at=at(9))
            apply(pg_conn, [sid], EtlSettings(fast_path=fast_path))
            summary = one(
                pg_conn,
                "SELECT s.*, u.username AS u_name FROM user_profile_summary s JOIN users u ON u.id = s.user_id",
            )
            assert summary["top_troops"] == [
                {"troop_id": 11, "amount": 9, "level": 1},
                {"troop_id": 15, "amount": 7, "level": 1},
                {"troop_id": 12, "amount": 5, "level": 3},
                {"troop_id": 13, "amount": 5, "level": 3},
                {"troop_id": 9, "amount": 5, "level": 1},
            ]
            assert (summary["namecode"], summary["username"], summary["level"], summary["pvp_tier"]) == (
                "TOP_0001",
                "Topper",
                52,
                3,
            )
            assert summary["username"] == summary["u_name"]
            assert summary["extra"] == {"guild_name": "Heirs"}
            assert summary["guild_id"] is None
            assert summary["last_seen"] == at(9)
            assert summary["source_snapshot_id"] == sid
            assert summary["cached_at"] is not None


EQUIPPED = {
    "object": ({"PetId": 101, "Level": 10}, {"pet_id": 101, "level": 10}),
    "object-string-forms": ({"PetId": "101", "Level": "10"}, {"pet_id": 101, "level": 10}),
    "object-no-level": ({"PetId": 101}, {"pet_id": 101, "level": None}),
    "object-bad-level": ({"PetId": 101, "Level": -1}, {"pet_id": 101, "level": None}),
    "object-fraction-level": ({"PetId": 101, "Level": 1.5}, {"pet_id": 101, "level": None}),
    "bare-int": (101, {"pet_id": 101, "level": None}),
    "bare-float": (101.0, {"pet_id": 101, "level": None}),
    "bare-string": ("101", {"pet_id": 101, "level": None}),
    "zero": (0, None),
    "negative": (-4, None),
    "too-big": (2**31, None),
    "bool": (True, None),
    "text": ("abc", None),
    "array": ([101], None),
    "object-without-pet-id": ({"Level": 10}, None),
    "object-bad-pet-id": ({"PetId": "x", "Level": 10}, None),
    "null": (None, None),
    "absent": (None, None),
    "zero-padded-string": ("0000101", {"pet_id": 101, "level": None}),
    "long-zero-padded-string": ("0" * 45 + "101", {"pet_id": 101, "level": None}),
    "fraction-a-double-rounds-away": ({"PetId": Decimal("101.00000000000000001")}, None),
    "level-fraction-a-double-rounds-away": (
        {"PetId": 101, "Level": Decimal("4.00000000000000001")},
        {"pet_id": 101, "level": None},
    ),
    "long-zero-padded-level": ({"PetId": 101, "Level": "0" * 45 + "7"}, {"pet_id": 101, "level": 7}),
}


def test_summary_equipped_pet_forms(pg_conn: psycopg.Connection, subtests: pytest.Subtests) -> None:
    for fast_path in (True, False):
        with on_path(pg_conn, subtests, fast_path):
            ids = {}
            for n, (label, (value, _)) in enumerate(EQUIPPED.items()):
                raw = payload(f"PET_{n:04d}", EquippedPet=value)
                if label == "absent":
                    del raw["ProfileData"]["EquippedPet"]
                ids[label] = insert_snapshot(pg_conn, raw)
            res = apply(pg_conn, list(ids.values()), EtlSettings(fast_path=fast_path))
            assert (res.applied, res.failed) == (len(EQUIPPED), 0)
            query = "SELECT equipped_pet FROM user_profile_summary WHERE source_snapshot_id = %s"
            check_all(
                {
                    label: (
                        lambda sid=sid, exp=EQUIPPED[label][1], q=query: _eq(
                            one(pg_conn, q, [sid])["equipped_pet"], exp
                        )
                    )
                    for label, sid in ids.items()
                }
            )


GUILDS = {
    "name": ({"Name": "Knights"}, {"guild_name": "Knights"}),
    "empty-name": ({"Name": ""}, {"guild_name": ""}),
    "number-name": ({"Name": 5}, {}),
    "null-name": ({"Name": None}, {}),
    "no-name": ({"Id": 5}, {}),
    "string-guild": ("Knights", {}),
    "null": (None, {}),
    "absent": (None, {}),
}


def test_summary_guild_name_in_extra(pg_conn: psycopg.Connection, subtests: pytest.Subtests) -> None:
    for fast_path in (True, False):
        with on_path(pg_conn, subtests, fast_path):
            ids = {}
            for n, (label, (guild, _)) in enumerate(GUILDS.items()):
                raw = payload(f"GUILD_{n:04d}") if label == "absent" else payload(f"GUILD_{n:04d}", Guild=guild)
                ids[label] = insert_snapshot(pg_conn, raw)
            res = apply(pg_conn, list(ids.values()), EtlSettings(fast_path=fast_path))
            assert (res.applied, res.failed) == (len(GUILDS), 0)
            query = "SELECT extra, guild_id FROM user_profile_summary WHERE source_snapshot_id = %s"
            check_all(
                {
                    label: (
                        lambda sid=sid, exp=GUILDS[label][1], q=query: _eq(
                            one(pg_conn, q, [sid]), {"extra": exp, "guild_id": None}
                        )
                    )
                    for label, sid in ids.items()
                }
            )


# ---------------------------------------------------------------------------------------------------------
# Catalogs


def test_catalog_policy_placeholder(pg_conn: psycopg.Connection, subtests: pytest.Subtests) -> None:
    for fast_path in (True, False):
        with on_path(pg_conn, subtests, fast_path):
            seed_catalog(pg_conn, troops=[1], pets=[3])
            pg_conn.execute("""UPDATE troop_catalog SET meta = '{"kingdom": "Adana"}' WHERE id = 1""")
            first = insert_snapshot(
                pg_conn,
                payload(
                    "CAT_0001",
                    Troops=[{"TroopId": 1}, {"TroopId": 2}],
                    Pets={"3": {}, "4": {}},
                    Artifacts=[{"ArtifactId": 5}],
                ),
            )
            raw = _bad_base()
            raw["ProfileData"]["Level"] = -2
            bad = insert_snapshot(pg_conn, raw)
            res = apply(pg_conn, [first, bad], EtlSettings(fast_path=fast_path))
            assert (res.applied, res.failed) == (1, 1)
            assert sorted(res.placeholders) == [("artifact", 5), ("pet", 4), ("troop", 2)]
            cat = state(pg_conn)["catalogs"]
            assert cat == [
                ("artifact", 5, None, {"placeholder": True}),
                ("pet", 3, "pet_catalog 3", {}),
                ("pet", 4, None, {"placeholder": True}),
                ("troop", 1, "troop_catalog 1", {"kingdom": "Adana"}),
                ("troop", 2, None, {"placeholder": True}),
            ]
            assert_nothing_from_bad(pg_conn)
            # a later snapshot using the same ids creates (and counts) no new placeholder
            second = insert_snapshot(
                pg_conn, payload("CAT_0002", Troops=[{"TroopId": 2}], Artifacts=[{"ArtifactId": 6}])
            )
            res2 = apply(pg_conn, [second], EtlSettings(fast_path=fast_path))
            assert res2.placeholders == [("artifact", 6)]
            assert len(state(pg_conn)["catalogs"]) == 6


def test_catalog_policy_fail(pg_conn: psycopg.Connection, subtests: pytest.Subtests) -> None:
    for fast_path in (True, False):
        with on_path(pg_conn, subtests, fast_path):
            seed_catalog(pg_conn, troops=[1], pets=[3], artifacts=[5])
            before = state(pg_conn)["catalogs"]
            missing = insert_snapshot(
                pg_conn,
                payload(
                    "FK_0001",
                    "Fk",
                    Troops=[{"TroopId": 1}, {"TroopId": 2}, {"TroopId": 20}],
                    Pets={"3": {}},
                    Artifacts=[{"ArtifactId": 6}],
                ),
            )
            ok = insert_snapshot(pg_conn, payload("FK_0002", "Fine", Troops=[{"TroopId": 1}], Pets={"3": {}}))
            res = apply(pg_conn, [missing, ok], EtlSettings(fast_path=fast_path, catalog_policy="fail"))
            assert (res.applied, res.failed) == (1, 1)
            assert res.placeholders == []
            err = assert_failed(pg_conn, missing, "FK_VIOLATION")
            assert err["details"]["missing"] == {"troop": [2, 20], "artifact": [6]}
            assert err["details"]["missing_count"] == 3
            assert state(pg_conn)["catalogs"] == before
            assert state(pg_conn)["users"] == [("FK_0002", "Fine")]
            assert_processed(pg_conn, ok)
            # many missing ids: details stay small (capped list, full count)
            many = insert_snapshot(pg_conn, payload("FK_0003", Troops=[{"TroopId": 1000 + i} for i in range(3000)]))
            apply(pg_conn, [many], EtlSettings(fast_path=fast_path, catalog_policy="fail"))
            err = assert_failed(pg_conn, many, "FK_VIOLATION")
            assert err["details"]["missing_count"] == 3000
            assert err["details"]["missing"]["troop"] == list(range(1000, 1100))
            assert len(json.dumps(err["details"])) < 8192


# ---------------------------------------------------------------------------------------------------------
# Quarantine


def _sensitive_values(value: Any, out: list[Any]) -> list[Any]:
    """Every value held under a sensitive key, at any depth."""
    if isinstance(value, dict):
        for k, v in value.items():
            if any(p in k.lower() for p in ("token", "password", "passwd", "secret", "session", "auth")):
                out.append(v)
            else:
                _sensitive_values(v, out)
    elif isinstance(value, list):
        for v in value:
            _sensitive_values(v, out)
    return out


def test_quarantine_copy_is_redacted_and_versioned(
    pg_conn: psycopg.Connection, subtests: pytest.Subtests, tmp_path: Path
) -> None:
    for fast_path in (True, False):
        with on_path(pg_conn, subtests, fast_path):
            plain = _secret_payload("QUAR_PLAIN", 0)
            double = _secret_payload("QUAR_DOUBLE", 0)
            for raw in (plain, double):
                raw["ProfileData"]["Troops"][0]["Amount"] = "lots"
            expected_hidden = len(_sensitive_values(plain, []))
            assert expected_hidden == 10
            sids = {"plain": insert_snapshot(pg_conn, plain), "double": insert_snapshot(pg_conn, json.dumps(double))}
            good = insert_snapshot(pg_conn, _good())
            parse_bad = insert_snapshot(pg_conn, [{"auth": SECRETS[12], "ok": 1}])
            folder = tmp_path / f"quarantine-{fast_path}"
            settings = EtlSettings(fast_path=fast_path, quarantine_dir=folder, job_id="job-q")
            res = apply(pg_conn, [sids["plain"], sids["double"], good, parse_bad], settings)
            assert (res.applied, res.failed) == (1, 3)
            assert sorted(p.name for p in folder.iterdir()) == sorted(
                f"{sid}.json" for sid in (*sids.values(), parse_bad)
            )

            for encoding, sid in sids.items():
                doc = artifacts.read_json(folder / f"{sid}.json", "quarantine")
                assert doc["schema_version"] == artifacts.SCHEMA_VERSION
                assert doc["job_id"] == "job-q"
                assert doc["generated_at"] and doc["tool_version"]
                assert (doc["snapshot_id"], doc["error_type"]) == (str(sid), "VALIDATION_ERROR")
                body = doc["payload"]
                if encoding == "double":
                    assert body["double_encoded"] is True
                    body = body["payload"]
                hidden = _sensitive_values(body, [])
                assert len(hidden) == expected_hidden, encoding
                assert set(map(json.dumps, hidden)) == {'"[REDACTED]"'}, encoding
                # everything else is kept as it was
                assert body["ProfileData"]["Troops"][0]["Amount"] == "lots"
                assert body["ProfileData"]["Troops"][0]["Note"] == "kept"
                assert body["ProfileData"]["Pets"][0]["OrbsUsed"][1] == {"token": "[REDACTED]", "orb": 3}
                text = (folder / f"{sid}.json").read_text()
                assert not [x for x in SECRETS if x in text], encoding

            parse_doc = artifacts.read_json(folder / f"{parse_bad}.json", "quarantine")
            assert parse_doc["error_type"] == "PARSE_ERROR"
            assert parse_doc["payload"] == [{"auth": "[REDACTED]", "ok": 1}]
            assert error_set(pg_conn) == {
                (sids["plain"], "VALIDATION_ERROR"),
                (sids["double"], "VALIDATION_ERROR"),
                (parse_bad, "PARSE_ERROR"),
            }
