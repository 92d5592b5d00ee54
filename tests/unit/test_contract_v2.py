"""Unit tests for contract v2 in the pure-Python reference (SNAPSHOT_CONTRACT.md, section "v2", rules 1-8).

Each test names the rule it covers; each fails when that rule is taken out of `etl.payload` /
`etl.sensitive` (checked by removing it).
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest

from starforge_backfill.errors import EtlError
from starforge_backfill.etl.contract import decode_exact, normalize, parse_payload, redact, strip_sensitive
from starforge_backfill.etl.payload import API_ERROR_MESSAGE
from starforge_backfill.etl.sensitive import is_sensitive_key

NAMECODE = "COCORIDER_JQGB"
PROFILE = {
    "NameCode": NAMECODE,
    "Name": "Cocorider",
    "Level": 52,
    "Troops": {"6001": {"Amount": 3, "Level": 20, "EliteLevel": 2, "TraitsOwned": 3}},
    "Pets": {"101": {"Amount": 1, "Level": 10, "XP": 5400}},
    "GuildName": "Knights ",
    "KingdomLevels": {"3000": 10},
    "Progress": {"Campaign": 12},
    "username": "cocorider@example.org",
}


def raises(raw: Any, error_type: str, column: str | None = None) -> EtlError:
    with pytest.raises(EtlError) as info:
        normalize(raw, column)
    assert info.value.error_type == error_type, info.value
    return info.value


# rules 1-2: double encoding, then the envelope


def test_rule2_envelope_result_is_the_payload() -> None:
    snap = normalize({"result": {"ProfileData": PROFILE}})
    assert snap.namecode == NAMECODE and snap.level == 52
    assert [(t.troop_id, t.amount, t.extra) for t in snap.troops] == [(6001, 3, {"EliteLevel": 2})]
    assert snap.pets[0].xp == 5400


def test_rule2_nothing_of_the_outer_object_is_kept() -> None:
    # the outer NameCode and Name are not the payload's: the column namecode and ProfileData.Name are used
    snap = normalize({"NameCode": "OUTER_X", "Name": "Outer", "result": {"ProfileData": {"Level": 1}}}, "COLUMN_X")
    assert snap.namecode == "COLUMN_X" and snap.username is None


def test_rule2_one_level_only() -> None:
    err = raises({"result": {"result": {"ProfileData": PROFILE}}}, EtlError.PARSE_ERROR)
    assert err.details == {"field": "ProfileData", "reason": "missing"}


def test_rule2_a_profile_data_key_wins_over_result() -> None:
    raw = {"NameCode": NAMECODE, "ProfileData": {"Level": 7}, "result": {"ProfileData": {"Level": 9}}}
    assert normalize(raw).level == 7
    # even a null ProfileData: the key is there, so there is no envelope
    raises({"ProfileData": None, "result": {"ProfileData": PROFILE}}, EtlError.PARSE_ERROR)


@pytest.mark.parametrize("result", [[{"ProfileData": PROFILE}], "x", 3, None, True])
def test_rule2_result_that_is_not_an_object_is_no_envelope(result: Any) -> None:
    err = raises({"result": result}, EtlError.PARSE_ERROR)
    assert err.details["field"] == "ProfileData"


def test_rule1_then_rule2_double_encoded_envelope() -> None:
    raw = {"result": {"ProfileData": PROFILE}}
    assert normalize(json.dumps(raw)) == normalize(raw) == normalize(json.dumps(raw).encode())
    assert normalize(decode_exact(json.dumps(json.dumps(raw)))) == normalize(raw)


# rule 3: API error bodies


@pytest.mark.parametrize(
    ("body", "shown"),
    [
        ({"code": 141, "error": "Hero not found"}, {"code": 141, "error": "Hero not found"}),
        ({"code": "141", "error": 7.5}, {"code": "141", "error": 7.5}),
        ({"code": Decimal("141.0"), "error": Decimal("2.5")}, {"code": 141, "error": 2.5}),
        ({"error": "e" * 500}, {"error": "e" * 200}),
        ({"error": {"message": "x"}, "code": [1]}, {}),
        ({"error": None, "code": True}, {}),
        ({"error": "no code"}, {"error": "no code"}),
    ],
)
def test_rule3_api_error_body_is_a_parse_error(body: dict, shown: dict) -> None:
    for raw in (body, {"result": body}):
        err = raises(raw, EtlError.PARSE_ERROR)
        assert err.message == API_ERROR_MESSAGE
        assert err.details == {"reason": "api_error", **shown}


def test_rule3_only_without_profile_data() -> None:
    raw = {"NameCode": NAMECODE, "ProfileData": {"Level": 3}, "error": "stale", "code": 1}
    assert normalize(raw).level == 3
    assert normalize({"error": "x", "result": {"NameCode": NAMECODE, "ProfileData": {}}}).namecode == NAMECODE
    # `Error` is not `error`: a plain missing ProfileData
    err = raises({"Error": "profile temporarily unavailable"}, EtlError.PARSE_ERROR)
    assert err.details["reason"] == "missing"


def test_rule3_details_are_small_and_never_the_payload() -> None:
    body = {"code": 141, "error": "x" * 10_000, "username": "login-name", "ProfileDataX": {"a": "b" * 5000}}
    err = raises({"result": body}, EtlError.PARSE_ERROR)
    assert len(json.dumps(err.details)) < 300 and "login-name" not in json.dumps(err.details)


# rule 4


def test_rule4_other_payloads_without_object_profile_data() -> None:
    for raw in ({"result": {"ProfileData": "maintenance"}}, {"result": {}}, {}):
        err = raises(raw, EtlError.PARSE_ERROR)
        assert err.details["field"] == "ProfileData" and err.details["reason"] != "api_error"


# rule 5: namecode


@pytest.mark.parametrize(
    ("top", "inner", "column", "expected"),
    [
        ("TOP_X", "INNER_X", "COL_X", "TOP_X"),
        (None, "INNER_X", "COL_X", "INNER_X"),
        ("", "INNER_X", "COL_X", "INNER_X"),
        (17, "INNER_X", None, "INNER_X"),
        (None, "", "COL_X", "COL_X"),
        (None, ["X"], "COL_X", "COL_X"),
        ("absent", "absent", "COL_X", "COL_X"),
        ("absent", " INNER ", None, " INNER "),
    ],
)
def test_rule5_namecode_lookup_order(top: Any, inner: Any, column: str | None, expected: str) -> None:
    profile: dict[str, Any] = {} if inner == "absent" else {"NameCode": inner}
    raw: dict[str, Any] = {"ProfileData": profile}
    if top != "absent":
        raw["NameCode"] = top
    assert normalize(raw, column).namecode == expected
    assert normalize({"result": raw}, column).namecode == expected


def test_rule5_none_is_a_validation_error() -> None:
    err = raises({"result": {"ProfileData": {"NameCode": ""}}}, EtlError.VALIDATION_ERROR, "")
    assert err.message.startswith("no namecode") and "ProfileData.NameCode" in err.message


# rule 6: display name


@pytest.mark.parametrize(
    ("top", "inner", "expected"),
    [
        ("Top", "Inner", "Top"),
        ("absent", "Inner", "Inner"),
        (None, "Inner", "Inner"),
        (42, "Inner", "Inner"),
        ("", "Inner", "Inner"),
        ("absent", "", None),
        ("absent", {"a": 1}, None),
        ("absent", "absent", None),
        (" Spaced ", "Inner", " Spaced "),
    ],
)
def test_rule6_display_name_lookup_order(top: Any, inner: Any, expected: str | None) -> None:
    profile: dict[str, Any] = {} if inner == "absent" else {"Name": inner}
    raw: dict[str, Any] = {"NameCode": NAMECODE, "ProfileData": profile}
    if top != "absent":
        raw["Name"] = top
    assert normalize(raw).username == expected
    assert normalize({"result": raw}).username == expected


def test_rule6_the_login_name_is_never_the_display_name() -> None:
    snap = normalize({"result": {"ProfileData": {"NameCode": NAMECODE, "username": "login"}}})
    assert snap.username is None


# rule 7: guild name


@pytest.mark.parametrize(
    ("profile", "expected"),
    [
        ({"Guild": {"Name": "Knights"}, "GuildName": "Other"}, "Knights"),
        ({"Guild": {"Name": ""}, "GuildName": "Other"}, ""),
        ({"GuildName": "Knights of Adana  "}, "Knights of Adana  "),
        ({"GuildName": ""}, ""),
        ({"Guild": {"Name": 3}, "GuildName": " Wolves"}, " Wolves"),
        ({"Guild": "Knights", "GuildName": "Wolves\t"}, "Wolves\t"),
        ({"Guild": {}, "GuildName": 5}, None),
        ({"GuildName": None}, None),
        ({}, None),
    ],
)
def test_rule7_guild_name_lookup_order_kept_exactly(profile: dict, expected: str | None) -> None:
    snap = normalize({"result": {"NameCode": NAMECODE, "ProfileData": profile}})
    assert snap.summary_extra == ({} if expected is None else {"guild_name": expected})


# rule 8: `username` is a sensitive key


@pytest.mark.parametrize("key", ["username", "UserName", "USERNAME", "account_username", "usernameHash"])
def test_rule8_username_keys_are_sensitive(key: str) -> None:
    assert is_sensitive_key(key)
    assert not is_sensitive_key("user_name") and not is_sensitive_key("Name") and not is_sensitive_key("users")


def test_rule8_username_never_reaches_extra() -> None:
    troop = {"TroopId": 6001, "username": "login", "Meta": {"list": [{"UserName": "login", "n": 1}]}}
    snap = normalize({"result": {"NameCode": NAMECODE, "ProfileData": {"Troops": [troop]}}})
    assert snap.troops[0].extra == {"Meta": {"list": [{"n": 1}]}}
    assert "login" not in json.dumps(snap.to_canonical_payload())


def test_rule8_username_is_redacted_and_stripped() -> None:
    value = {"result": {"ProfileData": {"username": "login", "Troops": {"1": {"x": {"Username": "login"}}}}}}
    assert "login" not in json.dumps(redact(value)) and json.dumps(redact(value)).count("[REDACTED]") == 2
    assert "login" not in json.dumps(strip_sensitive(value))


def test_rule8_a_username_key_is_hidden_in_error_details() -> None:
    err = raises({"result": {"NameCode": NAMECODE, "ProfileData": {"Troops": {"username": 5}}}}, "VALIDATION_ERROR")
    assert err.details["key"] == "[REDACTED]" and "username" not in err.message


def test_v2_parse_payload_returns_the_result_object() -> None:
    inner = {"ProfileData": PROFILE}
    assert parse_payload({"result": inner}) is inner
