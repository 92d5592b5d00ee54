"""Contract v2 (SNAPSHOT_CONTRACT.md, section "v2") through the ETL core against real PostgreSQL.

Each rule is applied both by the set-based path and by the per-snapshot reference (`fast_path` False), and
checked on what the tables hold. Real shapes (an envelope with keyed sections, NameCode/Name inside
ProfileData, a flat GuildName, extra profile keys, a `username` login name) must be applied by the SQL
path itself: the tests assert no snapshot of theirs took the reference path.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import psycopg
import pytest
from helpers import apply, at, errors, find_text, insert_snapshot, one, rows, seed_catalog, snapshot_rows

from starforge_backfill import synthetic
from starforge_backfill.etl.payload import API_ERROR_MESSAGE
from starforge_backfill.etl.pipeline import BatchResult, EtlSettings
from starforge_backfill.synthetic import SyntheticSpec, generate

PATHS = pytest.mark.parametrize("fast_path", [True, False], ids=["sql", "reference"])
LOGIN = "login-name-of-the-account"


def real_shape(n: int, *, guild: str = "Knights of Adana  ") -> dict[str, Any]:
    """A `get_hero_profile` response as public clients see it (issue 13): the Parse Cloud envelope,
    NameCode/Name inside ProfileData, sections keyed by id strings, a flat GuildName, extra profile keys
    and the account's login name under `username`."""
    return {
        "result": {
            "ProfileData": {
                "NameCode": f"REAL_{n:03d}",
                "Name": f"Real {n}",
                "username": LOGIN,
                "Level": 40 + n,
                "GuildName": guild,
                "KingdomLevels": {"3000": 10, "3001": 4},
                "Progress": {"Campaign": 12, "Challenges": [1, 2]},
                "GoldBonus": 25,
                "Troops": {
                    "6001": {"Amount": 3 + n, "Level": 20, "EliteLevel": 2, "TraitsOwned": 3},
                    "6002": {"Amount": 1, "Level": 5, "EliteLevel": 0, "username": LOGIN},
                },
                "Pets": {"101": {"Amount": 1, "Level": 10, "XP": 5400, "Meta": [{"Username": LOGIN, "n": 1}]}},
                "Artifacts": {"7": {"Level": 4, "XP": 1200}},
                "EquippedPet": {"PetId": 101, "Level": 10},
            }
        }
    }


def summary(conn: psycopg.Connection, namecode: str) -> dict:
    return one(
        conn,
        "SELECT u.namecode, u.username AS user_name, s.username, s.level, s.extra, s.equipped_pet"
        " FROM users u JOIN user_profile_summary s ON s.user_id = u.id WHERE u.namecode = %s",
        [namecode],
    )


@PATHS
def test_real_shapes_are_applied_by_the_set_based_path(pg_conn: psycopg.Connection, fast_path: bool) -> None:
    seed_catalog(pg_conn, troops=[6001, 6002], pets=[101], artifacts=[7])
    ids = [insert_snapshot(pg_conn, real_shape(n), created_at=at(n)) for n in range(6)]
    res = apply(pg_conn, ids, EtlSettings(fast_path=fast_path))
    assert (res.applied, res.failed) == (6, 0)
    assert res.reference_path == (0 if fast_path else 6)  # not one snapshot left to the reference
    got = summary(pg_conn, "REAL_003")
    assert got == {
        "namecode": "REAL_003",
        "user_name": "Real 3",
        "username": "Real 3",
        "level": 43,
        "extra": {"guild_name": "Knights of Adana  "},
        "equipped_pet": {"pet_id": 101, "level": 10},
    }
    troops = rows(
        pg_conn,
        "SELECT t.troop_id, t.amount, t.level, t.traits_owned, t.extra FROM user_troops t"
        " JOIN users u ON u.id = t.user_id WHERE u.namecode = 'REAL_003' ORDER BY 1",
    )
    assert troops == [
        {"troop_id": 6001, "amount": 6, "level": 20, "traits_owned": 3, "extra": {"EliteLevel": 2}},
        {"troop_id": 6002, "amount": 1, "level": 5, "traits_owned": 0, "extra": {"EliteLevel": 0}},
    ]
    pet = one(
        pg_conn, "SELECT xp, extra FROM user_pets p JOIN users u ON u.id = p.user_id WHERE u.namecode = 'REAL_003'"
    )
    assert pet == {"xp": 5400, "extra": {"Meta": [{"n": 1}]}}
    assert snapshot_rows(pg_conn, ids[3]) == {
        "user_troops": 2,
        "user_pets": 1,
        "user_artifacts": 1,
        "user_profile_summary": 1,
    }
    assert find_text(pg_conn, [LOGIN]) == []  # the login name: nowhere but in raw


@PATHS
def test_envelope_keeps_nothing_of_the_outer_object(pg_conn: psycopg.Connection, fast_path: bool) -> None:
    outer = insert_snapshot(
        pg_conn,
        {"NameCode": "OUTER_X", "Name": "Outer", "result": {"ProfileData": {"Level": 3}}},
        namecode="COLUMN_X",
    )
    res = apply(pg_conn, [outer], EtlSettings(fast_path=fast_path))
    assert res.applied == 1 and res.reference_path == (0 if fast_path else 1)
    got = summary(pg_conn, "COLUMN_X")
    assert (got["user_name"], got["level"]) == (None, 3)
    assert rows(pg_conn, "SELECT namecode FROM users") == [{"namecode": "COLUMN_X"}]


@PATHS
def test_a_profile_data_key_means_no_envelope(pg_conn: psycopg.Connection, fast_path: bool) -> None:
    both = insert_snapshot(
        pg_conn, {"NameCode": "BOTH_X", "ProfileData": {"Level": 7}, "result": {"ProfileData": {"Level": 9}}}
    )
    null_pd = insert_snapshot(pg_conn, {"ProfileData": None, "result": {"NameCode": "N_X", "ProfileData": {}}})
    one_level = insert_snapshot(pg_conn, {"result": {"result": {"NameCode": "DEEP_X", "ProfileData": {}}}})
    not_obj = insert_snapshot(pg_conn, {"result": [{"NameCode": "ARR_X", "ProfileData": {}}]}, namecode="ARR_X")
    res = apply(pg_conn, [both, null_pd, one_level, not_obj], EtlSettings(fast_path=fast_path))
    assert (res.applied, res.failed) == (1, 3)
    assert summary(pg_conn, "BOTH_X")["level"] == 7
    assert {e["snapshot_id"]: (e["error_type"], e["details"]["reason"]) for e in errors(pg_conn)} == {
        null_pd: ("PARSE_ERROR", "null"),
        one_level: ("PARSE_ERROR", "missing"),
        not_obj: ("PARSE_ERROR", "missing"),
    }


@PATHS
def test_api_error_bodies(pg_conn: psycopg.Connection, fast_path: bool, tmp_path: Path) -> None:
    long_error = "Hero not found: " + "x" * 400
    bodies = {
        "plain": ({"code": 141, "error": "Hero not found"}, {"code": 141, "error": "Hero not found"}),
        "enveloped": ({"result": {"code": "141", "error": long_error}}, {"code": "141", "error": long_error[:200]}),
        "odd types": ({"code": True, "error": {"msg": "x"}, "username": LOGIN}, {}),
        "float code": ({"code": 141.5, "error": 3}, {"code": 141.5, "error": 3}),
    }
    ids = {name: insert_snapshot(pg_conn, body, namecode="API_X") for name, (body, _) in bodies.items()}
    ok = insert_snapshot(pg_conn, {"ProfileData": {}, "error": "stale", "code": 1}, namecode="API_X")
    quarantine = tmp_path / "q"
    res = apply(pg_conn, [*ids.values(), ok], EtlSettings(fast_path=fast_path, quarantine_dir=quarantine))
    assert (res.applied, res.failed) == (1, 4)
    by_id = {e["snapshot_id"]: e for e in errors(pg_conn)}
    for name, (_, shown) in bodies.items():
        err = by_id[ids[name]]
        assert (err["error_type"], err["message"]) == ("PARSE_ERROR", API_ERROR_MESSAGE), name
        assert err["details"] == {"reason": "api_error", **shown}, name
    last = one(pg_conn, "SELECT last_error, processed_at FROM hero_snapshots WHERE id = %s", [ids["plain"]])
    assert last["last_error"]["message"] == API_ERROR_MESSAGE and last["processed_at"] is None
    copy = json.loads((quarantine / f"{ids['odd types']}.json").read_text())
    assert copy["payload"]["username"] == "[REDACTED]" and LOGIN not in json.dumps(copy)


@PATHS
@pytest.mark.parametrize(
    ("top", "inner", "column", "expected"),
    [
        ("TOP_X", "INNER_X", "COL_X", "TOP_X"),
        (None, "INNER_X", "COL_X", "INNER_X"),
        ("", "INNER_X", "COL_X", "INNER_X"),
        (17, "INNER_X", None, "INNER_X"),
        (None, "", "COL_X", "COL_X"),
        (None, 5, "COL_X", "COL_X"),
        ("absent", " INNER ", None, " INNER "),
    ],
)
def test_namecode_lookup_order(
    pg_conn: psycopg.Connection, fast_path: bool, top: Any, inner: Any, column: str | None, expected: str
) -> None:
    profile: dict[str, Any] = {"Level": 1, "NameCode": inner}
    body: dict[str, Any] = {"ProfileData": profile}
    if top != "absent":
        body["NameCode"] = top
    plain = insert_snapshot(pg_conn, body, namecode=column, created_at=at(1))
    enveloped = insert_snapshot(pg_conn, {"result": body}, namecode=column, created_at=at(2))
    res = apply(pg_conn, [plain, enveloped], EtlSettings(fast_path=fast_path))
    assert res.applied == 2 and res.reference_path == (0 if fast_path else 2)
    assert rows(pg_conn, "SELECT namecode FROM users") == [{"namecode": expected}]


@PATHS
def test_no_namecode_anywhere(pg_conn: psycopg.Connection, fast_path: bool) -> None:
    sid = insert_snapshot(pg_conn, {"result": {"NameCode": "", "ProfileData": {"NameCode": None}}}, namecode="")
    res = apply(pg_conn, [sid], EtlSettings(fast_path=fast_path))
    assert res.failed == 1 and errors(pg_conn)[0]["error_type"] == "VALIDATION_ERROR"
    assert rows(pg_conn, "SELECT * FROM users") == []


@PATHS
@pytest.mark.parametrize(
    ("top", "inner", "expected"),
    [
        ("Top", "Inner", "Top"),
        ("absent", "Inner", "Inner"),
        (42, "Inner", "Inner"),
        ("", "Inner", "Inner"),
        ("absent", "", None),
        ("absent", ["x"], None),
        (" Spaced ", None, " Spaced "),
    ],
)
def test_display_name_lookup_order(
    pg_conn: psycopg.Connection, fast_path: bool, top: Any, inner: Any, expected: str | None
) -> None:
    body: dict[str, Any] = {"ProfileData": {"NameCode": "NAMED_X", "Name": inner, "username": LOGIN}}
    if top != "absent":
        body["Name"] = top
    sid = insert_snapshot(pg_conn, {"result": body})
    res = apply(pg_conn, [sid], EtlSettings(fast_path=fast_path))
    assert res.applied == 1 and res.reference_path == (0 if fast_path else 1)
    got = summary(pg_conn, "NAMED_X")
    assert (got["user_name"], got["username"]) == (expected, expected)


def test_display_name_recency_across_shapes(pg_conn: psycopg.Connection) -> None:
    # rule 6 feeds v1's recency rule: the newest snapshot that has a name, whichever place it came from
    old = insert_snapshot(pg_conn, {"NameCode": "REC_X", "Name": "Old", "ProfileData": {}}, created_at=at(1))
    new = insert_snapshot(pg_conn, {"result": {"ProfileData": {"NameCode": "REC_X", "Name": "New"}}}, created_at=at(2))
    newest = insert_snapshot(pg_conn, {"result": {"ProfileData": {"NameCode": "REC_X"}}}, created_at=at(3))
    res = apply(pg_conn, [newest, old, new])
    assert res.applied == 3 and res.reference_path == 0
    got = summary(pg_conn, "REC_X")
    assert (got["user_name"], got["username"]) == ("New", "New")


@PATHS
@pytest.mark.parametrize(
    ("profile", "expected"),
    [
        ({"Guild": {"Name": "Knights"}, "GuildName": "Other"}, "Knights"),
        ({"Guild": {"Name": ""}, "GuildName": "Other"}, ""),
        ({"GuildName": "Knights of Adana  "}, "Knights of Adana  "),
        ({"GuildName": " "}, " "),
        ({"Guild": {"Name": 3}, "GuildName": "\tWolves\n"}, "\tWolves\n"),
        ({"Guild": "Knights", "GuildName": "Wölfe "}, "Wölfe "),
        ({"Guild": {}, "GuildName": 5}, None),
        ({"GuildName": None}, None),
    ],
)
def test_guild_name_lookup_order(
    pg_conn: psycopg.Connection, fast_path: bool, profile: dict, expected: str | None
) -> None:
    sid = insert_snapshot(pg_conn, {"result": {"NameCode": "GUILD_X", "ProfileData": profile}})
    res = apply(pg_conn, [sid], EtlSettings(fast_path=fast_path))
    assert res.applied == 1 and res.reference_path == (0 if fast_path else 1)
    assert summary(pg_conn, "GUILD_X")["extra"] == ({} if expected is None else {"guild_name": expected})


@PATHS
def test_username_keys_never_reach_extra(pg_conn: psycopg.Connection, fast_path: bool, tmp_path: Path) -> None:
    troops = [
        {"TroopId": 1, "username": LOGIN, "Note": "username"},  # a value that says "username" is kept
        {"TroopId": 2, "Meta": {"UserName": LOGIN, "deep": [{"account_username": LOGIN, "n": 2}]}},
    ]
    good = insert_snapshot(pg_conn, {"result": {"NameCode": "USER_X", "ProfileData": {"Troops": troops}}})
    bad_troops = [{"TroopId": 3, "Amount": -1, "USERNAME": LOGIN}]
    bad = insert_snapshot(
        pg_conn, {"result": {"NameCode": "USER_Y", "username": LOGIN, "ProfileData": {"Troops": bad_troops}}}
    )
    quarantine = tmp_path / "q"
    res = apply(pg_conn, [good, bad], EtlSettings(fast_path=fast_path, quarantine_dir=quarantine))
    assert (res.applied, res.failed) == (1, 1)
    assert res.reference_path == (1 if fast_path else 2)  # the SQL path removes the keys itself
    extras = [r["extra"] for r in rows(pg_conn, "SELECT extra FROM user_troops ORDER BY troop_id")]
    assert extras == [{"Note": "username"}, {"Meta": {"deep": [{"n": 2}]}}]
    assert find_text(pg_conn, [LOGIN]) == []
    copy = (quarantine / f"{bad}.json").read_text()
    body = json.loads(copy)["payload"]["result"]
    assert body["username"] == "[REDACTED]" and body["ProfileData"]["Troops"][0]["USERNAME"] == "[REDACTED]"
    assert LOGIN not in copy


@PATHS
def test_double_encoded_envelope(pg_conn: psycopg.Connection, fast_path: bool) -> None:
    seed_catalog(pg_conn, troops=[6001, 6002], pets=[101], artifacts=[7])
    sid = insert_snapshot(pg_conn, json.dumps(real_shape(1)))
    error_body = insert_snapshot(pg_conn, json.dumps({"result": {"code": 141, "error": "gone"}}), namecode="X")
    res = apply(pg_conn, [sid, error_body], EtlSettings(fast_path=fast_path))
    assert (res.applied, res.failed) == (1, 1)
    assert summary(pg_conn, "REAL_001")["extra"] == {"guild_name": "Knights of Adana  "}
    assert errors(pg_conn)[0]["details"] == {"reason": "api_error", "code": 141, "error": "gone"}
    assert find_text(pg_conn, [LOGIN]) == []


def test_v1_and_v2_shapes_of_one_user_newest_wins(pg_conn: psycopg.Connection) -> None:
    seed_catalog(pg_conn, troops=[6001, 6002], pets=[101], artifacts=[7])
    v2 = real_shape(7)
    v1 = {"NameCode": "REAL_007", "Name": "V1 name", "ProfileData": {"Level": 99, "Troops": [{"TroopId": 6001}]}}
    ids = [insert_snapshot(pg_conn, v1, created_at=at(1)), insert_snapshot(pg_conn, v2, created_at=at(2))]
    res = apply(pg_conn, [uuid.UUID(str(i)) for i in ids])
    assert res.applied == 2 and res.reference_path == 0
    got = summary(pg_conn, "REAL_007")
    assert (got["level"], got["user_name"], got["extra"]) == (47, "Real 7", {"guild_name": "Knights of Adana  "})


def test_the_synthetic_v2_mix_takes_the_reference_path_only_for_its_failures(pg_conn: psycopg.Connection) -> None:
    spec = SyntheticSpec(snapshots=80, users=12, size_mix=((1.0, 6_000),), malformed_ratio=0.1)
    generated = list(generate(spec))
    with psycopg.connect(pg_conn.info.dsn) as conn:
        synthetic.load(conn, spec)
    ids = [r["id"] for r in rows(pg_conn, "SELECT id FROM hero_snapshots ORDER BY created_at DESC, id DESC")]
    total = BatchResult()
    for start in range(0, len(ids), 20):
        total.add(apply(pg_conn, ids[start : start + 20]))
    ok = [s for s in generated if s.kind == "ok"]
    assert sum(s.shape == "v2" for s in ok) >= 0.6 * len(ok)
    assert any(s.kind == "malformed:api_error_body" for s in generated)
    assert (total.applied, total.failed) == (len(ok), len(generated) - len(ok))
    assert total.reference_path == total.failed  # every applied snapshot, v2 or v1, went the set-based way
    assert find_text(pg_conn, [synthetic.SECRET_MARKER]) == []


@PATHS
@pytest.mark.parametrize(
    ("key", "troop_id"),
    [
        ("6001", 6001),
        ("0006001", 6001),
        ("2147483647", 2147483647),
        ("12.0", None),
        ("-5", None),
        ("٣", None),
        ("", None),
        ("+7", None),
        (" 7", None),
        ("2147483648", None),
        ("0", None),
    ],
)
def test_keyed_entry_without_its_id_takes_a_decimal_key(
    pg_conn: psycopg.Connection, fast_path: bool, key: str, troop_id: int | None
) -> None:
    sid = insert_snapshot(pg_conn, {"result": {"ProfileData": {"NameCode": "KEY_X", "Troops": {key: {"Amount": 2}}}}})
    res = apply(pg_conn, [sid], EtlSettings(fast_path=fast_path))
    got = [r["troop_id"] for r in rows(pg_conn, "SELECT troop_id FROM user_troops")]
    if troop_id is None:
        assert res.failed == 1 and errors(pg_conn)[0]["error_type"] == "VALIDATION_ERROR" and got == []
    else:
        assert res.applied == 1 and got == [troop_id]
        assert res.reference_path == (0 if fast_path else 1)
