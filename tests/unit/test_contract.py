"""Unit tests for the pure-Python snapshot contract (parse, validate, map)."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from starforge_backfill.errors import EtlError
from starforge_backfill.etl.contract import (
    INT32_MAX,
    INT64_MAX,
    ArtifactRow,
    NormalizedSnapshot,
    PetRow,
    TroopRow,
    is_sensitive_key,
    normalize,
    parse_int,
    parse_payload,
    redact,
    strip_sensitive,
)

NAMECODE = "COCORIDER_JQGB"


def payload(profile: dict | None = None, **top: Any) -> dict:
    """Build a minimal valid payload with the given ProfileData and top-level keys."""
    body: dict[str, Any] = {"NameCode": NAMECODE, "ProfileData": profile if profile is not None else {}}
    body.update(top)
    return body


def troops_of(*elems: Any) -> dict:
    """Build a payload whose ProfileData.Troops is the given list."""
    return payload({"Troops": list(elems)})


def raises(raw: Any, error_type: str, column_namecode: str | None = None) -> EtlError:
    """Assert that normalize() raises an EtlError of the given type and return it."""
    with pytest.raises(EtlError) as info:
        normalize(raw, column_namecode)
    assert info.value.error_type == error_type, info.value.message
    return info.value


def only_troop(raw: Any) -> TroopRow:
    """Normalize and return the single troop row."""
    (row,) = normalize(raw).troops
    return row


# --------------------------------------------------------------------------------------------------
# Section shapes


def test_list_form_maps_every_troop_field() -> None:
    elem = {"TroopId": 6024, "Amount": 3, "Level": 20, "Rarity": 5, "FusionCards": 2, "TraitsOwned": 3}
    assert only_troop(troops_of(elem)) == TroopRow(6024, 3, 20, 5, 2, 3, {})


def test_keyed_form_equals_list_form() -> None:
    elems = [{"TroopId": 7, "Amount": 1}, {"TroopId": 5, "Amount": 2}]
    keyed = payload({"Troops": {"7": elems[0], "5": elems[1]}})
    assert normalize(keyed) == normalize(troops_of(*elems))


@pytest.mark.parametrize("entry", [{"Amount": 4}, {"TroopId": None, "Amount": 4}])
def test_keyed_form_takes_id_from_decimal_key(entry: dict) -> None:
    assert only_troop(payload({"Troops": {"6024": entry}})).troop_id == 6024


def test_keyed_form_id_field_wins_over_key() -> None:
    assert only_troop(payload({"Troops": {"1": {"TroopId": 99}}})).troop_id == 99


def test_keyed_form_key_with_leading_zeros() -> None:
    assert only_troop(payload({"Troops": {"007": {}}})).troop_id == 7


@pytest.mark.parametrize("key", ["abc", "-5", "+5", " 5", "5.0", ""])
def test_keyed_form_non_numeric_key_without_id_is_an_error(key: str) -> None:
    err = raises(payload({"Troops": {key: {"Amount": 1}}}), EtlError.VALIDATION_ERROR)
    assert err.details["field"] == "TroopId"
    assert err.details["reason"] == "missing"
    assert err.details["key"] == key


def test_keyed_form_key_zero_fails_the_id_rule() -> None:
    err = raises(payload({"Pets": {"0": {}}}), EtlError.VALIDATION_ERROR)
    assert err.details["field"] == "PetId"
    assert err.details["reason"] == "below minimum"


def test_keyed_form_is_used_for_pets_and_artifacts_too() -> None:
    snap = normalize(payload({"Pets": {"101": {"XP": 5}}, "Artifacts": {"7": {"Level": 4}}}))
    assert [p.pet_id for p in snap.pets] == [101]
    assert [a.artifact_id for a in snap.artifacts] == [7]


@pytest.mark.parametrize("section", ["Troops", "Pets", "Artifacts"])
@pytest.mark.parametrize("value", [None, [], {}])
def test_absent_null_or_empty_section_means_no_rows(section: str, value: Any) -> None:
    profile = {} if value is None else {section: value}
    snap = normalize(payload(profile))
    assert (snap.troops, snap.pets, snap.artifacts) == ((), (), ())
    snap = normalize(payload({section: None}))
    assert (snap.troops, snap.pets, snap.artifacts) == ((), (), ())


@pytest.mark.parametrize("section", ["Troops", "Pets", "Artifacts"])
@pytest.mark.parametrize("value", ["abc", 3, 2.5, True])
def test_section_of_wrong_type_is_an_error(section: str, value: Any) -> None:
    err = raises(payload({section: value}), EtlError.VALIDATION_ERROR)
    assert err.details["section"] == section
    assert err.details["reason"] == "wrong type"


@pytest.mark.parametrize("elem", [3, "x", None, [1], True])
def test_list_element_not_an_object_is_an_error(elem: Any) -> None:
    err = raises(troops_of({"TroopId": 1}, elem), EtlError.VALIDATION_ERROR)
    assert err.details == {
        "section": "Troops",
        "index": 1,
        "reason": "not an object",
        "value_type": err.details["value_type"],
    }


def test_keyed_element_not_an_object_is_an_error() -> None:
    err = raises(payload({"Artifacts": {"7": 4}}), EtlError.VALIDATION_ERROR)
    assert err.details["key"] == "7"
    assert err.details["reason"] == "not an object"


@pytest.mark.parametrize(
    ("section", "id_field"), [("Troops", "TroopId"), ("Pets", "PetId"), ("Artifacts", "ArtifactId")]
)
@pytest.mark.parametrize("elem", [{}, {"Level": 1}, {"X": None}])
def test_missing_id_in_list_form_is_an_error(section: str, id_field: str, elem: dict) -> None:
    err = raises(payload({section: [elem]}), EtlError.VALIDATION_ERROR)
    assert err.message == f"{section}[0].{id_field}: missing"
    assert err.details["reason"] == "missing"


def test_null_id_in_list_form_is_an_error() -> None:
    raises(troops_of({"TroopId": None}), EtlError.VALIDATION_ERROR)


# --------------------------------------------------------------------------------------------------
# Integer rule


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (12, 12),
        (12.0, 12),
        ("12", 12),
        ("0012", 12),
        ("-0", 0),
        (-0.0, 0),
        (0, 0),
        ("0", 0),
        (INT32_MAX, INT32_MAX),
        (str(INT32_MAX), INT32_MAX),
        (float(2**30), 2**30),
    ],
)
def test_integer_forms_accepted_for_non_id_fields(value: Any, expected: int) -> None:
    row = only_troop(troops_of({"TroopId": 1, "Amount": value}))
    assert row.amount == expected
    assert type(row.amount) is int


@pytest.mark.parametrize(("value", "expected"), [(12, 12), (12.0, 12), ("12", 12), ("012", 12)])
def test_integer_forms_accepted_for_ids(value: Any, expected: int) -> None:
    row = only_troop(troops_of({"TroopId": value}))
    assert row.troop_id == expected
    assert type(row.troop_id) is int


@pytest.mark.parametrize(
    ("value", "reason", "value_type"),
    [
        (True, "boolean is not an integer", "boolean"),
        (False, "boolean is not an integer", "boolean"),
        ("12.5", "not a decimal integer string", "string"),
        ("1e3", "not a decimal integer string", "string"),
        (" 12", "not a decimal integer string", "string"),
        ("12 ", "not a decimal integer string", "string"),
        ("12\n", "not a decimal integer string", "string"),
        ("+1", "not a decimal integer string", "string"),
        ("", "not a decimal integer string", "string"),
        ("-", "not a decimal integer string", "string"),
        ("1_000", "not a decimal integer string", "string"),
        ("\u0661\u0662", "not a decimal integer string", "string"),  # Arabic-Indic digits
        ("0x10", "not a decimal integer string", "string"),
        (12.5, "fractional number", "number"),
        (float("nan"), "non-finite number", "number"),
        (float("inf"), "non-finite number", "number"),
        ({}, "not an integer", "object"),
        ([], "not an integer", "array"),
        ([3], "not an integer", "array"),
        (-1, "below minimum", "number"),
        ("-1", "below minimum", "string"),
        (-1.0, "below minimum", "number"),
        (2**31, "above maximum", "number"),
        (str(2**31), "above maximum", "string"),
        ("9" * 5000, "above maximum", "string"),
        ("-" + "0" * 5000 + "1", "below minimum", "string"),
        (1e300, "above maximum", "number"),
    ],
)
def test_integer_forms_rejected(value: Any, reason: str, value_type: str) -> None:
    err = raises(troops_of({"TroopId": 1, "Amount": value}), EtlError.VALIDATION_ERROR)
    assert err.details["reason"] == reason
    assert err.details["value_type"] == value_type
    assert err.details["field"] == "Amount"
    assert len(json.dumps(err.details)) < 1024
    assert len(err.message) < 300


@pytest.mark.parametrize(
    ("value", "ok"),
    [(0, False), ("0", False), (-1, False), (1, True), (INT32_MAX, True), (INT32_MAX + 1, False)],
)
@pytest.mark.parametrize(
    ("section", "id_field"), [("Troops", "TroopId"), ("Pets", "PetId"), ("Artifacts", "ArtifactId")]
)
def test_ids_must_be_positive_int32(section: str, id_field: str, value: Any, ok: bool) -> None:
    raw = payload({section: [{id_field: value}]})
    if ok:
        normalize(raw)
    else:
        err = raises(raw, EtlError.VALIDATION_ERROR)
        assert err.details["field"] == id_field


@pytest.mark.parametrize(("section", "id_field"), [("Pets", "PetId"), ("Artifacts", "ArtifactId")])
def test_xp_is_64_bit(section: str, id_field: str) -> None:
    snap = normalize(payload({section: [{id_field: 1, "XP": INT64_MAX}]}))
    assert getattr(snap, section.lower())[0].xp == INT64_MAX
    assert getattr(normalize(payload({section: [{id_field: 1, "XP": 2**31}]})), section.lower())[0].xp == 2**31
    err = raises(payload({section: [{id_field: 1, "XP": 2**63}]}), EtlError.VALIDATION_ERROR)
    assert err.details["reason"] == "above maximum"
    assert err.details["maximum"] == INT64_MAX


@pytest.mark.parametrize(
    ("section", "elem", "field"),
    [
        ("Troops", {"TroopId": 1}, "Amount"),
        ("Troops", {"TroopId": 1}, "Level"),
        ("Troops", {"TroopId": 1}, "Rarity"),
        ("Troops", {"TroopId": 1}, "FusionCards"),
        ("Troops", {"TroopId": 1}, "TraitsOwned"),
        ("Pets", {"PetId": 1}, "Amount"),
        ("Pets", {"PetId": 1}, "Level"),
        ("Pets", {"PetId": 1}, "OrbFusionCards"),
        ("Pets", {"PetId": 1}, "AscensionLevel"),
        ("Artifacts", {"ArtifactId": 1}, "Level"),
    ],
)
def test_int32_columns_reject_2_pow_31(section: str, elem: dict, field: str) -> None:
    normalize(payload({section: [{**elem, field: INT32_MAX}]}))
    err = raises(payload({section: [{**elem, field: 2**31}]}), EtlError.VALIDATION_ERROR)
    assert err.details["field"] == field
    err = raises(payload({section: [{**elem, field: -1}]}), EtlError.VALIDATION_ERROR)
    assert err.details["reason"] == "below minimum"


def test_validation_message_and_details_in_list_form() -> None:
    elems = [{"TroopId": i} for i in range(1, 4)] + [{"TroopId": 4, "Amount": "many"}]
    err = raises(troops_of(*elems), EtlError.VALIDATION_ERROR)
    assert err.message == "Troops[3].Amount: expected a non-negative integer, got string"
    assert err.details == {
        "section": "Troops",
        "index": 3,
        "field": "Amount",
        "reason": "not a decimal integer string",
        "value_type": "string",
    }


def test_validation_details_in_keyed_form() -> None:
    err = raises(payload({"Troops": {"6024": {"Amount": 2.5}}}), EtlError.VALIDATION_ERROR)
    assert err.message == 'Troops["6024"].Amount: expected a non-negative integer, got fractional number'
    assert err.details["key"] == "6024"
    assert "index" not in err.details


def test_range_error_shows_the_integer_and_bounds() -> None:
    err = raises(troops_of({"TroopId": 0}), EtlError.VALIDATION_ERROR)
    assert err.message == "Troops[0].TroopId: expected a positive integer, got 0"
    assert err.details["value"] == 0
    assert (err.details["minimum"], err.details["maximum"]) == (1, INT32_MAX)


def test_parse_int_public_api() -> None:
    assert parse_int("42", field="Level", minimum=0, maximum=INT32_MAX) == 42
    assert parse_int(7.0, field="Level", minimum=1, maximum=10) == 7
    with pytest.raises(EtlError) as info:
        parse_int("4 2", field="Level", minimum=0, maximum=INT32_MAX)
    assert info.value.error_type == EtlError.VALIDATION_ERROR
    assert info.value.message == "Level: expected a non-negative integer, got string"
    assert info.value.details["field"] == "Level"
    with pytest.raises(EtlError):
        parse_int(None, field="Level", minimum=0, maximum=1)
    with pytest.raises(EtlError):
        parse_int(11, field="Level", minimum=1, maximum=10)


def test_parse_int_hides_the_value_of_a_sensitive_field() -> None:
    with pytest.raises(EtlError) as info:
        parse_int(987654321, field="SessionCounter", minimum=0, maximum=10)
    assert "987654321" not in info.value.message
    assert "987654321" not in json.dumps(info.value.details)


# --------------------------------------------------------------------------------------------------
# Defaults


@pytest.mark.parametrize("explicit_null", [False, True])
def test_troop_defaults(explicit_null: bool) -> None:
    fields = ["Amount", "Level", "Rarity", "FusionCards", "TraitsOwned"]
    elem = {"TroopId": 1, **({f: None for f in fields} if explicit_null else {})}
    assert only_troop(troops_of(elem)) == TroopRow(1, 0, 1, 0, 0, 0, {})


@pytest.mark.parametrize("explicit_null", [False, True])
def test_pet_defaults(explicit_null: bool) -> None:
    fields = ["Amount", "Level", "XP", "OrbFusionCards", "OrbsUsed", "AscensionLevel"]
    elem = {"PetId": 1, **({f: None for f in fields} if explicit_null else {})}
    (pet,) = normalize(payload({"Pets": [elem]})).pets
    assert pet == PetRow(1, 0, 1, 0, 0, [], 0, {})


@pytest.mark.parametrize("explicit_null", [False, True])
def test_artifact_defaults(explicit_null: bool) -> None:
    elem = {"ArtifactId": 1, **({"Level": None, "XP": None} if explicit_null else {})}
    (artifact,) = normalize(payload({"Artifacts": [elem]})).artifacts
    assert artifact == ArtifactRow(1, 0, 0, {})


def test_pet_maps_every_field() -> None:
    elem = {
        "PetId": 101,
        "Amount": 1,
        "Level": 10,
        "XP": 5400,
        "OrbFusionCards": 2,
        "OrbsUsed": [1, {"a": 2}],
        "AscensionLevel": 1,
    }
    (pet,) = normalize(payload({"Pets": [elem]})).pets
    assert pet == PetRow(101, 1, 10, 5400, 2, [1, {"a": 2}], 1, {})


def test_artifact_maps_every_field() -> None:
    (artifact,) = normalize(payload({"Artifacts": [{"ArtifactId": 7, "Level": 4, "XP": 1200}]})).artifacts
    assert artifact == ArtifactRow(7, 4, 1200, {})


@pytest.mark.parametrize("value", [{}, "x", 3, True])
def test_orbs_used_not_a_list_is_an_error(value: Any) -> None:
    err = raises(payload({"Pets": [{"PetId": 1, "OrbsUsed": value}]}), EtlError.VALIDATION_ERROR)
    assert err.details["field"] == "OrbsUsed"
    assert err.details["reason"] == "not an array"


def test_orbs_used_content_is_stripped_of_sensitive_keys() -> None:
    (pet,) = normalize(payload({"Pets": [{"PetId": 1, "OrbsUsed": [{"id": 1, "authKey": "k"}, 2]}]})).pets
    assert pet.orbs_used == [{"id": 1}, 2]


# --------------------------------------------------------------------------------------------------
# extra and sensitive keys


def test_extra_holds_every_unmapped_key_unchanged() -> None:
    elem = {
        "TroopId": 1,
        "Amount": 2,
        "amount": 9,
        "Name": "Goblin",
        "Meta": {"a": [1, 2.5, None]},
        "Flag": False,
        "Nothing": None,
        "OrbsUsed": [1],
    }
    assert only_troop(troops_of(elem)).extra == {
        "amount": 9,
        "Name": "Goblin",
        "Meta": {"a": [1, 2.5, None]},
        "Flag": False,
        "Nothing": None,
        "OrbsUsed": [1],
    }


def test_extra_excludes_mapped_fields_even_when_null() -> None:
    (pet,) = normalize(payload({"Pets": [{"PetId": 1, "XP": None, "OrbsUsed": None, "TroopId": 5}]})).pets
    assert pet.extra == {"TroopId": 5}
    (artifact,) = normalize(payload({"Artifacts": [{"ArtifactId": 1, "Amount": 3}]})).artifacts
    assert artifact.extra == {"Amount": 3}


def test_extra_drops_sensitive_keys_at_depth_one() -> None:
    elem = {"TroopId": 1, "SessionId": "s", "api_token": "t", "keep": 1}
    assert only_troop(troops_of(elem)).extra == {"keep": 1}


def test_extra_drops_sensitive_keys_at_depth_two_and_inside_lists() -> None:
    elem = {"TroopId": 1, "meta": {"AuthToken": 1, "ok": [{"session_id": 2, "x": 3}]}}
    assert only_troop(troops_of(elem)).extra == {"meta": {"ok": [{"x": 3}]}}


def test_extra_does_not_alias_the_payload() -> None:
    raw = troops_of({"TroopId": 1, "meta": {"ok": [1]}})
    row = only_troop(raw)
    row.extra["meta"]["ok"].append(2)
    assert raw["ProfileData"]["Troops"][0]["meta"] == {"ok": [1]}


@pytest.mark.parametrize(
    ("key", "sensitive"),
    [
        ("token", True),
        ("AccessToken", True),
        ("PassWord", True),
        ("PASSWD", True),
        ("client_secret", True),
        ("SessionKey", True),
        ("Authorization", True),
        ("author", True),
        ("oauth", True),
        ("Name", False),
        ("tok", False),
        ("pass", False),
        ("sess", False),
        ("Amount", False),
        ("", False),
    ],
)
def test_is_sensitive_key(key: str, sensitive: bool) -> None:
    assert is_sensitive_key(key) is sensitive


def test_strip_sensitive_is_case_insensitive_and_deep() -> None:
    value = {"PassWord": 1, "a": [{"b": {"SECRET": 2, "c": 3}}, [{"Session": 4}]], "d": (5, {"auth": 6})}
    assert strip_sensitive(value) == {"a": [{"b": {"c": 3}}, [{}]], "d": (5, {})}


def test_strip_sensitive_returns_a_copy_and_leaves_the_input_alone() -> None:
    value = {"a": {"token": 1, "b": [1]}}
    before = copy.deepcopy(value)
    out = strip_sensitive(value)
    out["a"]["b"].append(2)
    assert value == before


def test_redact_replaces_sensitive_values_at_any_depth() -> None:
    value = {
        "NameCode": "X",
        "Auth": {"nested": 1},
        "p": [{"user_password": "hunter2", "ok": 1}],
        "ProfileData": {"x": {"SessionToken": "s"}},
    }
    assert redact(value) == {
        "NameCode": "X",
        "Auth": "[REDACTED]",
        "p": [{"user_password": "[REDACTED]", "ok": 1}],
        "ProfileData": {"x": {"SessionToken": "[REDACTED]"}},
    }
    assert value["p"][0]["user_password"] == "hunter2"


@pytest.mark.parametrize(
    "elem",
    [
        {"TroopId": 1, "Amount": "bad", "password": "hunter2"},
        {"TroopId": "bad", "meta": {"token": "hunter2"}},
        {"TroopId": 1, "Level": [1], "auth": ["hunter2"]},
        {"TroopId": 1, "Rarity": {"secret": "hunter2"}},
        {"TroopId": 1, "FusionCards": "hunter2"},
    ],
)
def test_error_details_never_contain_a_sensitive_value(elem: dict) -> None:
    err = raises(troops_of(elem), EtlError.VALIDATION_ERROR)
    assert "hunter2" not in json.dumps(err.details)
    assert "hunter2" not in err.message


def test_error_details_hide_a_sensitive_key_and_truncate_long_keys() -> None:
    err = raises(payload({"Troops": {"my_password_hunter2": {}}}), EtlError.VALIDATION_ERROR)
    assert err.details["key"] == "[REDACTED]"
    assert "hunter2" not in err.message
    err = raises(payload({"Troops": {"k" * 100_000: {}}}), EtlError.VALIDATION_ERROR)
    assert len(json.dumps(err.details)) < 8192
    assert len(err.message) < 300


def test_error_details_never_contain_the_raw_payload() -> None:
    raw = troops_of({"TroopId": 1, "Amount": "x" * 10_000, "Note": "y" * 10_000})
    err = raises(raw, EtlError.VALIDATION_ERROR)
    blob = json.dumps(err.details) + err.message
    assert "xxxx" not in blob
    assert "yyyy" not in blob
    assert NAMECODE not in blob


# --------------------------------------------------------------------------------------------------
# Parsing


def test_dict_is_the_payload() -> None:
    raw = payload({"Level": 3})
    assert parse_payload(raw) is raw


def test_double_encoded_payload_is_accepted() -> None:
    raw = payload({"Level": 3, "Troops": [{"TroopId": 1}]})
    assert normalize(json.dumps(raw)) == normalize(raw)


@pytest.mark.parametrize("to_bytes", [bytes, bytearray])
def test_bytes_are_json_text_of_the_document(to_bytes: Any) -> None:
    raw = payload({"Level": 3})
    assert normalize(to_bytes(json.dumps(raw).encode())) == normalize(raw)
    # The text of a double-encoded document is accepted as well.
    assert normalize(to_bytes(json.dumps(json.dumps(raw)).encode())) == normalize(raw)


@pytest.mark.parametrize(
    "raw",
    [
        [payload()],
        3,
        2.5,
        None,
        True,
        "not json",
        "[1, 2]",
        "3",
        "null",
        json.dumps(json.dumps(payload())),  # a string whose text is a string: triple-encoded
        b"\xff\xfe",
        b"[1]",
        '{"NameCode": "A", "ProfileData": {"Level": NaN}}',
    ],
)
def test_top_level_that_is_not_an_object_is_a_parse_error(raw: Any) -> None:
    err = raises(raw, EtlError.PARSE_ERROR)
    assert len(json.dumps(err.details)) < 1024


@pytest.mark.parametrize("profile", [None, [], "x", 3, True])
def test_missing_or_non_object_profile_data_is_a_parse_error(profile: Any) -> None:
    raw = {"NameCode": NAMECODE} if profile is None else {"NameCode": NAMECODE, "ProfileData": profile}
    err = raises(raw, EtlError.PARSE_ERROR)
    assert err.details["field"] == "ProfileData"
    raises({"NameCode": NAMECODE, "ProfileData": None}, EtlError.PARSE_ERROR)


def test_parse_error_comes_before_validation_error() -> None:
    raises({"ProfileData": []}, EtlError.PARSE_ERROR)


# --------------------------------------------------------------------------------------------------
# Identity and profile fields


def test_namecode_from_payload_wins_over_column() -> None:
    assert normalize(payload(), "COLUMN_X").namecode == NAMECODE


@pytest.mark.parametrize("value", ["", None, 42, ["X"]])
def test_namecode_falls_back_to_column(value: Any) -> None:
    assert normalize(payload(NameCode=value), "COLUMN_X").namecode == "COLUMN_X"


def test_namecode_falls_back_to_column_when_absent() -> None:
    assert normalize({"ProfileData": {}}, "COLUMN_X").namecode == "COLUMN_X"


@pytest.mark.parametrize("column", [None, "", 7])
def test_no_namecode_is_a_validation_error(column: Any) -> None:
    err = raises({"NameCode": "", "ProfileData": {}}, EtlError.VALIDATION_ERROR, column)
    assert err.message.startswith("no namecode")


@pytest.mark.parametrize(
    ("name", "username"), [("Cocorider", "Cocorider"), ("", None), (None, None), (5, None), ({"a": 1}, None)]
)
def test_username(name: Any, username: str | None) -> None:
    assert normalize(payload(Name=name)).username == username
    assert normalize(payload()).username is None


@pytest.mark.parametrize("field", ["Level", "PvpTier"])
@pytest.mark.parametrize(("value", "expected"), [(52, 52), ("52", 52), (52.0, 52), (0, 0), (None, None)])
def test_level_and_pvp_tier_accepted(field: str, value: Any, expected: int | None) -> None:
    snap = normalize(payload({field: value}))
    assert (snap.level if field == "Level" else snap.pvp_tier) == expected
    assert normalize(payload()).level is None
    assert normalize(payload()).pvp_tier is None


@pytest.mark.parametrize("field", ["Level", "PvpTier"])
@pytest.mark.parametrize("value", [-1, "x", True, 1.5, 2**31, {}])
def test_level_and_pvp_tier_rejected(field: str, value: Any) -> None:
    err = raises(payload({field: value}), EtlError.VALIDATION_ERROR)
    assert err.details["section"] == "ProfileData"
    assert err.details["field"] == field
    assert err.message.startswith(f"ProfileData.{field}: ")


# --------------------------------------------------------------------------------------------------
# Duplicates and ordering


def test_last_duplicate_wins_in_list_form() -> None:
    raw = troops_of({"TroopId": 5, "Amount": 1, "a": 1}, {"TroopId": 3}, {"TroopId": "5", "Amount": 2})
    snap = normalize(raw)
    assert [t.troop_id for t in snap.troops] == [3, 5]
    assert snap.troops[1] == TroopRow(5, 2, 1, 0, 0, 0, {})


def test_last_duplicate_wins_in_keyed_form() -> None:
    raw = payload({"Pets": {"9": {"XP": 1}, "x": {"PetId": 9, "XP": 2}}})
    (pet,) = normalize(raw).pets
    assert pet.xp == 2


def test_an_invalid_overwritten_duplicate_still_fails() -> None:
    raises(troops_of({"TroopId": 5, "Amount": -1}, {"TroopId": 5}), EtlError.VALIDATION_ERROR)


def test_rows_are_sorted_by_id() -> None:
    snap = normalize(
        payload(
            {
                "Troops": [{"TroopId": i} for i in (9, 2, 7)],
                "Pets": {"30": {}, "4": {}},
                "Artifacts": [{"ArtifactId": 8}, {"ArtifactId": 1}],
            }
        )
    )
    assert [t.troop_id for t in snap.troops] == [2, 7, 9]
    assert [p.pet_id for p in snap.pets] == [4, 30]
    assert [a.artifact_id for a in snap.artifacts] == [1, 8]


def test_first_error_in_element_order_is_reported() -> None:
    err = raises(troops_of({"TroopId": 1, "Amount": "x"}, 5), EtlError.VALIDATION_ERROR)
    assert err.details["index"] == 0


# --------------------------------------------------------------------------------------------------
# Summary


def test_top_troops_orders_by_amount_then_level_then_lower_id() -> None:
    raw = troops_of(
        {"TroopId": 1, "Amount": 1, "Level": 50},
        {"TroopId": 2, "Amount": 5, "Level": 1},
        {"TroopId": 3, "Amount": 5, "Level": 9},
        {"TroopId": 4, "Amount": 5, "Level": 9},
        {"TroopId": 10, "Amount": 7},
        {"TroopId": 6, "Amount": 2, "Level": 3},
        {"TroopId": 5, "Amount": 2, "Level": 3},
    )
    assert normalize(raw).top_troops == [
        {"troop_id": 10, "amount": 7, "level": 1},
        {"troop_id": 3, "amount": 5, "level": 9},
        {"troop_id": 4, "amount": 5, "level": 9},
        {"troop_id": 2, "amount": 5, "level": 1},
        {"troop_id": 5, "amount": 2, "level": 3},
    ]


def test_top_troops_with_fewer_than_five_and_none() -> None:
    assert normalize(troops_of({"TroopId": 2}, {"TroopId": 1})).top_troops == [
        {"troop_id": 1, "amount": 0, "level": 1},
        {"troop_id": 2, "amount": 0, "level": 1},
    ]
    assert normalize(payload()).top_troops == []


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ({"PetId": 101, "Level": 10}, {"pet_id": 101, "level": 10}),
        ({"PetId": "101", "Level": "10"}, {"pet_id": 101, "level": 10}),
        ({"PetId": 101}, {"pet_id": 101, "level": None}),
        ({"PetId": 101, "Level": -1}, {"pet_id": 101, "level": None}),
        ({"PetId": 101, "Level": "ten"}, {"pet_id": 101, "level": None}),
        ({"PetId": 101, "Level": 0}, {"pet_id": 101, "level": 0}),
        (101, {"pet_id": 101, "level": None}),
        (101.0, {"pet_id": 101, "level": None}),
        ("101", {"pet_id": 101, "level": None}),
        ({"PetId": 0}, None),
        ({"PetId": "x", "Level": 3}, None),
        ({"Level": 3}, None),
        ({}, None),
        (0, None),
        (True, None),
        ("abc", None),
        ([101], None),
        (None, None),
        (2**31, None),
    ],
)
def test_equipped_pet(value: Any, expected: dict | None) -> None:
    assert normalize(payload({"EquippedPet": value})).equipped_pet == expected


def test_equipped_pet_absent() -> None:
    assert normalize(payload()).equipped_pet is None


@pytest.mark.parametrize(
    ("guild", "expected"),
    [
        ({"Name": "Knights"}, {"guild_name": "Knights"}),
        ({"Name": ""}, {"guild_name": ""}),
        ({"Name": 5}, {}),
        ({"Name": None}, {}),
        ({}, {}),
        ("Knights", {}),
        (None, {}),
    ],
)
def test_guild_name(guild: Any, expected: dict) -> None:
    assert normalize(payload({"Guild": guild})).summary_extra == expected


# --------------------------------------------------------------------------------------------------
# Canonical payload


SNAPSHOTS = [
    payload(),
    {"ProfileData": {"Troops": None}},
    payload(
        {
            "Level": "52",
            "PvpTier": 3.0,
            "Troops": {
                "6024": {"Amount": 3, "Level": 20, "Rarity": 5, "TraitsOwned": 3, "Extra": {"k": [1]}},
                "9": {"TroopId": "9", "Amount": 3, "Level": 20, "session": "s"},
            },
            "Pets": [
                {
                    "PetId": 101,
                    "Amount": 1,
                    "Level": 10,
                    "XP": 5400,
                    "OrbsUsed": [{"o": 1, "token": 2}],
                    "AscensionLevel": 1,
                    "Nick": "Rex",
                },
                {"PetId": 5},
            ],
            "Artifacts": [{"ArtifactId": 7, "Level": 4, "XP": str(INT64_MAX)}, {"ArtifactId": 7, "Level": 5}],
            "EquippedPet": {"PetId": 101, "Level": 10},
            "Guild": {"Name": "Knights"},
            "Ignored": {"anything": True},
        },
        Name="Cocorider",
    ),
    payload({"EquippedPet": "44", "Guild": {"Name": ""}, "Troops": [{"TroopId": 1, "Level": 0}]}, Name=""),
    payload(
        {
            "EquippedPet": {"PetId": 3, "Level": "bad"},
            "Guild": {"Name": 1},
            "Troops": [
                {"TroopId": i, "Amount": i % 4, "Level": i % 3, "x": {"y": [{"Passwd": 1}]}} for i in range(1, 40)
            ],
        }
    ),
]


@pytest.mark.parametrize("raw", SNAPSHOTS)
def test_canonical_payload_round_trips(raw: dict) -> None:
    snap = normalize(raw, "COLUMN_X")
    canonical = snap.to_canonical_payload()
    assert normalize(canonical) == snap
    # It is plain JSON and survives a trip through text.
    assert normalize(json.loads(json.dumps(canonical))) == snap


def test_canonical_payload_uses_the_simplest_form() -> None:
    raw = payload(
        {
            "Level": "5",
            "Troops": {"6": {"Amount": "2", "Note": "n"}},
            "Pets": [{"PetId": "8", "OrbsUsed": None}],
            "Artifacts": [{"ArtifactId": 3.0}],
            "EquippedPet": 8,
            "Guild": {"Name": "G", "Id": 4},
        }
    )
    assert normalize(raw).to_canonical_payload() == {
        "NameCode": NAMECODE,
        "ProfileData": {
            "Level": 5,
            "Troops": [
                {
                    "TroopId": 6,
                    "Amount": 2,
                    "Level": 1,
                    "Rarity": 0,
                    "FusionCards": 0,
                    "TraitsOwned": 0,
                    "Note": "n",
                }
            ],
            "Pets": [
                {
                    "PetId": 8,
                    "Amount": 0,
                    "Level": 1,
                    "XP": 0,
                    "OrbFusionCards": 0,
                    "OrbsUsed": [],
                    "AscensionLevel": 0,
                }
            ],
            "Artifacts": [{"ArtifactId": 3, "Level": 0, "XP": 0}],
            "EquippedPet": {"PetId": 8},
            "Guild": {"Name": "G"},
        },
    }


def test_normalized_snapshot_is_frozen() -> None:
    snap = normalize(payload())
    assert isinstance(snap, NormalizedSnapshot)
    with pytest.raises(AttributeError):
        snap.namecode = "other"  # type: ignore[misc]
