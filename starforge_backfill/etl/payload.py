"""The payload's shape (SNAPSHOT_CONTRACT.md, v2 rules 1-7): decoding the column's JSON, double encoding, the
Parse Cloud envelope, API error bodies, and where the namecode, display name and guild name are looked up.

- ``decode_exact(text)``: the column's JSON text with exact numbers (a fraction is a Decimal, never a float),
  the one decoder the ETL's reference path and verification parity share.
- ``parse_payload(raw)``: rule 1, a jsonb *string* whose text parses to an object is that object; rule 2,
  an object with no ``ProfileData`` key whose ``result`` is an object is replaced by that ``result`` (one
  level; nothing of the outer object is kept); rule 3, then no ``ProfileData`` key and an ``error`` key is
  an API error body: PARSE_ERROR ``raw payload: an API error response, not a hero profile`` with details
  ``{"reason": "api_error", "error", "code"}`` (each only when a string, cut to 200 characters, or a
  number; a Decimal is given as an int when integral, else as a float); rule 4, any other payload without
  an object ``ProfileData`` is a PARSE_ERROR.
- ``namecode`` (rule 5): top-level ``NameCode``, else ``ProfileData.NameCode``, else the column: the first
  non-empty string (not stripped). ``display_name`` (rule 6): top-level ``Name``, else ``ProfileData.Name``:
  the first non-empty string (an empty or non-string ``Name`` is no name, as in v1), else None.
  ``guild_name`` (rule 7): ``ProfileData.Guild.Name``, else ``ProfileData.GuildName``: the first that is a
  string, kept exactly (an empty string and trailing spaces included), else None.
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any, NoReturn

from starforge_backfill.errors import EtlError
from starforge_backfill.etl.failures import fail, json_type

API_ERROR_TEXT_MAX = 200
API_ERROR_MESSAGE = "raw payload: an API error response, not a hero profile"


def _reject_constant(name: str) -> NoReturn:
    """Refuse NaN and Infinity in JSON text, as jsonb does."""
    raise ValueError(f"{name} is not valid JSON")


def decode_exact(text: str) -> Any:
    """The column's JSON text as Python values with exact numbers: a fraction becomes a Decimal, never a
    float, so that "5.0000000000000001" stays fractional (VALIDATION_ERROR) and extra keeps every digit.
    A double-encoded object is decoded the same way; text that does not decode is passed on as bytes, and
    any other value as it is, for the contract to reject."""
    try:
        value = json.loads(text, parse_float=Decimal)
    except (ValueError, RecursionError):
        return text.encode()
    if isinstance(value, str):
        try:
            inner = json.loads(value, parse_float=Decimal, parse_constant=_reject_constant)
        except (ValueError, RecursionError):
            return value
        if isinstance(inner, dict):
            return inner
    return value


def _loads(text: str | bytes) -> Any:
    """Parse JSON text strictly; raise PARSE_ERROR without echoing the text."""
    try:
        return json.loads(text, parse_constant=_reject_constant)
    except json.JSONDecodeError as exc:
        raise EtlError(
            EtlError.PARSE_ERROR,
            f"raw payload: invalid JSON text ({exc.msg})",
            {"reason": "invalid JSON text", "error": exc.msg, "position": exc.pos},
        ) from None
    except (ValueError, RecursionError):
        raise EtlError(
            EtlError.PARSE_ERROR, "raw payload: invalid JSON text", {"reason": "invalid JSON text"}
        ) from None


def _payload_from_value(value: Any) -> dict:
    """Rule 1 (and v1's top level) on a decoded jsonb value."""
    if isinstance(value, dict):
        return value
    if isinstance(value, str):
        decoded = _loads(value)
        if isinstance(decoded, dict):
            return decoded
        fail(
            EtlError.PARSE_ERROR,
            f"raw payload: a JSON string whose text is {json_type(decoded)}, not an object",
            reason="string is not an encoded object",
            value_type="string",
        )
    fail(
        EtlError.PARSE_ERROR,
        f"raw payload: expected a JSON object, got {json_type(value)}",
        reason="not an object",
        value_type=json_type(value),
    )


def _api_value(value: Any) -> str | int | float | None:
    """An API error body's `error` or `code` as details show it: a string (cut) or a number, else None."""
    if isinstance(value, str):
        return value[:API_ERROR_TEXT_MAX]
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return value
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    return None


def _api_error(payload: dict) -> NoReturn:
    """Rule 3: raise the PARSE_ERROR of an API error body."""
    details: dict[str, Any] = {"reason": "api_error"}
    for key in ("error", "code"):
        shown = _api_value(payload.get(key))
        if shown is not None:
            details[key] = shown
    raise EtlError(EtlError.PARSE_ERROR, API_ERROR_MESSAGE, details)


def parse_payload(raw: Any) -> dict:
    """Return the payload object from a raw column value (rules 1-4); raise PARSE_ERROR when there is none."""
    if isinstance(raw, bytes | bytearray | memoryview):
        payload = _payload_from_value(_loads(bytes(raw)))
    else:
        payload = _payload_from_value(raw)
    if "ProfileData" not in payload:
        result = payload.get("result")
        if isinstance(result, dict):  # rule 2: the envelope, one level
            payload = result
        if "ProfileData" not in payload and "error" in payload:
            _api_error(payload)
    profile = payload.get("ProfileData")
    if profile is None:
        reason = "missing" if "ProfileData" not in payload else "null"
        fail(
            EtlError.PARSE_ERROR,
            f"{reason}, expected an object",
            field="ProfileData",
            reason=reason,
            value_type="null" if reason == "null" else None,
        )
    if not isinstance(profile, dict):
        fail(
            EtlError.PARSE_ERROR,
            f"expected an object, got {json_type(profile)}",
            field="ProfileData",
            reason="not an object",
            value_type=json_type(profile),
        )
    return payload


def _first_nonempty(*values: Any) -> str | None:
    """The first value that is a non-empty str."""
    for value in values:
        if isinstance(value, str) and value:
            return value
    return None


def namecode(payload: dict, column_namecode: str | None) -> str:
    """Rule 5: the payload's NameCode, else ProfileData.NameCode, else the column's; VALIDATION_ERROR if none."""
    profile = payload["ProfileData"]
    found = _first_nonempty(payload.get("NameCode"), profile.get("NameCode"), column_namecode)
    if found is not None:
        return found
    top = payload.get("NameCode")
    raise EtlError(
        EtlError.VALIDATION_ERROR,
        "no namecode: neither NameCode, ProfileData.NameCode nor hero_snapshots.namecode is a non-empty string",
        {
            "field": "NameCode",
            "reason": "missing",
            "value_type": json_type(top) if "NameCode" in payload else "absent",
        },
    )


def display_name(payload: dict) -> str | None:
    """Rule 6: the top-level Name, else ProfileData.Name (a non-empty string), else None."""
    return _first_nonempty(payload.get("Name"), payload["ProfileData"].get("Name"))


def guild_name(profile: dict) -> str | None:
    """Rule 7: ProfileData.Guild.Name, else ProfileData.GuildName (a string, kept exactly), else None."""
    guild = profile.get("Guild")
    name = guild.get("Name") if isinstance(guild, dict) else None
    if isinstance(name, str):
        return name
    flat = profile.get("GuildName")
    return flat if isinstance(flat, str) else None
