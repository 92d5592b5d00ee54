"""Pure-Python reference implementation of the snapshot contract: parse, validate and map one payload.

This module is the reference for the per-snapshot fallback, dry-run, the real-time path and verification
parity; the set-based SQL implementation is differential-tested against it. It touches no database and
imports neither click nor rich. See docs SNAPSHOT_CONTRACT.md, sections "The payload", "Sensitive keys"
and "v2".

Decisions
---------
Where the contract is silent, the reference decides as follows (the SQL path must mirror these). The parts
live in modules named for what they hold, and this module re-exports their public names:
``etl.payload`` (decoding, double encoding, the v2 envelope, API error bodies, the namecode, display name
and guild name lookups), ``etl.integers`` (the integer rule), ``etl.failures`` (how a violation is located
and reported), ``etl.sensitive`` (sensitive keys). This module maps the sections to rows.

- Sections ``Troops``, ``Pets``, ``Artifacts``: absent/None means no rows; a list of objects; or an object
  whose values are objects (keyed form, iterated in the object's own order). In keyed form an entry whose
  id field is absent or None takes its id from its key when the key matches ``[0-9]+`` (then the id rule
  applies to it), else VALIDATION_ERROR for the missing id; an id field that is present wins over the key.
  An element that is not an object, a section of any other type, or a missing required id is a
  VALIDATION_ERROR. Every element is validated, including ones a later duplicate replaces.
- The same id twice: the last occurrence in section order wins.
- Defaults: troop Amount 0, Level 1, Rarity 0, FusionCards 0, TraitsOwned 0; pet Amount 0, Level 1, XP 0,
  OrbFusionCards 0, OrbsUsed ``[]`` (when present and not None it must be a list, else VALIDATION_ERROR; its
  content passes through ``strip_sensitive``), AscensionLevel 0; artifact Level 0, XP 0.
- ``extra`` holds every other key of the element (mapped JSON field names are matched case-sensitively and
  excluded even when null), values unchanged except that ``strip_sensitive`` is applied: sensitive keys are
  dropped at any depth, including the top-level keys of ``extra``.
- Sensitive key: ``str.lower()`` of the key contains one of SENSITIVE_PARTS (``username`` since v2).
- NameCode, ``username`` (the display name) and the guild name: see ``etl.payload`` (v2 rules 5-7).
- ``level`` / ``pvp_tier``: ``ProfileData.Level`` / ``PvpTier`` through the integer rule (>= 0,
  <= INT32_MAX); None when absent/None; invalid is a VALIDATION_ERROR.
- ``equipped_pet``: ``ProfileData.EquippedPet`` as an object whose ``PetId`` passes the id rule gives
  ``{"pet_id": id, "level": Level if it passes the >= 0 rule else None}``; a bare value passing the id rule
  gives ``{"pet_id": id, "level": None}``; anything else gives None. Never an error.
- ``summary_extra``: ``{"guild_name": name}`` when v2 rule 7 finds one (a str, even empty), else ``{}``.
- ``top_troops``: up to five troops, highest amount first, ties by higher level, then lower troop_id.
- Raw input (``parse_payload``, ``etl.payload``): a dict is the payload. A str is the Python value psycopg
  gives for a jsonb *string* and is parsed exactly once: an object is the payload (double-encoded), anything
  else is a PARSE_ERROR. bytes/bytearray are the JSON *text of the column* (e.g. ``raw::text`` encoded):
  they are parsed, then the rules above apply to the result (so a double-encoded document is accepted there
  too). ``NaN``/``Infinity`` are rejected, as jsonb does. Then the envelope and API error rules (v2 2-3).
  Any other value (list, number, bool, None) is a PARSE_ERROR, as is a missing, null or non-object
  ``ProfileData``.
- Errors are raised in this order: PARSE_ERROR, namecode, Level, PvpTier, Troops, Pets, Artifacts; within a
  section, element order; within an element, the id, the integer fields in mapping order, then OrbsUsed.
- A payload nested too deeply for Python's recursion limit is a VALIDATION_ERROR ("nested too deeply").
- ``to_canonical_payload()`` shares ``extra`` and ``orbs_used`` values with the snapshot (no deep copy):
  treat both as read-only.

Known parity limits: floats are Python floats (as psycopg decodes jsonb), so integral floats beyond 2**53
may differ from PostgreSQL ``numeric``; the stdlib refuses JSON integers of more than 4300 digits.
"""

from __future__ import annotations

import heapq
import re
from dataclasses import dataclass
from typing import Any

from starforge_backfill.errors import EtlError
from starforge_backfill.etl.failures import fail as _fail
from starforge_backfill.etl.failures import json_type as _json_type
from starforge_backfill.etl.integers import INT32_MAX, INT64_MAX, parse_int
from starforge_backfill.etl.integers import Invalid as _Invalid
from starforge_backfill.etl.integers import coerce_int as _coerce_int
from starforge_backfill.etl.integers import raise_invalid as _raise_invalid
from starforge_backfill.etl.integers import try_int as _try_int
from starforge_backfill.etl.payload import decode_exact, display_name, guild_name, namecode, parse_payload
from starforge_backfill.etl.sensitive import REDACTED, SENSITIVE_PARTS, is_sensitive_key, redact, strip_sensitive

__all__ = [
    "INT32_MAX",
    "INT64_MAX",
    "REDACTED",
    "SENSITIVE_PARTS",
    "ArtifactRow",
    "NormalizedSnapshot",
    "PetRow",
    "TroopRow",
    "decode_exact",
    "is_sensitive_key",
    "normalize",
    "parse_int",
    "parse_payload",
    "redact",
    "strip_sensitive",
]

_KEY_ID_TEXT = re.compile(r"[0-9]+")
_CONTAINERS = (dict, list, tuple)

# (JSON field, default, minimum, maximum) for every mapped integer field except the id.
_TROOP_ID = "TroopId"
_TROOP_FIELDS = (
    ("Amount", 0, 0, INT32_MAX),
    ("Level", 1, 0, INT32_MAX),
    ("Rarity", 0, 0, INT32_MAX),
    ("FusionCards", 0, 0, INT32_MAX),
    ("TraitsOwned", 0, 0, INT32_MAX),
)
_PET_ID = "PetId"
_PET_FIELDS = (
    ("Amount", 0, 0, INT32_MAX),
    ("Level", 1, 0, INT32_MAX),
    ("XP", 0, 0, INT64_MAX),
    ("OrbFusionCards", 0, 0, INT32_MAX),
    ("AscensionLevel", 0, 0, INT32_MAX),
)
_ARTIFACT_ID = "ArtifactId"
_ARTIFACT_FIELDS = (
    ("Level", 0, 0, INT32_MAX),
    ("XP", 0, 0, INT64_MAX),
)
_TROOP_MAPPED = frozenset({_TROOP_ID, *(f[0] for f in _TROOP_FIELDS)})
_PET_MAPPED = frozenset({_PET_ID, "OrbsUsed", *(f[0] for f in _PET_FIELDS)})
_ARTIFACT_MAPPED = frozenset({_ARTIFACT_ID, *(f[0] for f in _ARTIFACT_FIELDS)})


# --------------------------------------------------------------------------------------------------
# Rows


@dataclass(frozen=True, slots=True)
class TroopRow:
    """One `user_troops` row of a snapshot."""

    troop_id: int
    amount: int
    level: int
    rarity: int
    fusion_cards: int
    traits_owned: int
    extra: dict


@dataclass(frozen=True, slots=True)
class PetRow:
    """One `user_pets` row of a snapshot."""

    pet_id: int
    amount: int
    level: int
    xp: int
    orb_fusion_cards: int
    orbs_used: list
    ascension_level: int
    extra: dict


@dataclass(frozen=True, slots=True)
class ArtifactRow:
    """One `user_artifacts` row of a snapshot."""

    artifact_id: int
    level: int
    xp: int
    extra: dict


@dataclass(frozen=True, slots=True)
class NormalizedSnapshot:
    """Everything the ETL writes for one snapshot, validated and mapped."""

    namecode: str
    username: str | None
    level: int | None
    pvp_tier: int | None
    troops: tuple[TroopRow, ...]
    pets: tuple[PetRow, ...]
    artifacts: tuple[ArtifactRow, ...]
    top_troops: list[dict]
    equipped_pet: dict | None
    summary_extra: dict

    def to_canonical_payload(self) -> dict:
        """Return the simplest payload that normalizes back to this snapshot (shares extra values)."""
        profile: dict[str, Any] = {}
        if self.level is not None:
            profile["Level"] = self.level
        if self.pvp_tier is not None:
            profile["PvpTier"] = self.pvp_tier
        profile["Troops"] = [
            {
                "TroopId": t.troop_id,
                "Amount": t.amount,
                "Level": t.level,
                "Rarity": t.rarity,
                "FusionCards": t.fusion_cards,
                "TraitsOwned": t.traits_owned,
                **t.extra,
            }
            for t in self.troops
        ]
        profile["Pets"] = [
            {
                "PetId": p.pet_id,
                "Amount": p.amount,
                "Level": p.level,
                "XP": p.xp,
                "OrbFusionCards": p.orb_fusion_cards,
                "OrbsUsed": p.orbs_used,
                "AscensionLevel": p.ascension_level,
                **p.extra,
            }
            for p in self.pets
        ]
        profile["Artifacts"] = [
            {"ArtifactId": a.artifact_id, "Level": a.level, "XP": a.xp, **a.extra} for a in self.artifacts
        ]
        if self.equipped_pet is not None:
            equipped: dict[str, Any] = {"PetId": self.equipped_pet["pet_id"]}
            if self.equipped_pet.get("level") is not None:
                equipped["Level"] = self.equipped_pet["level"]
            profile["EquippedPet"] = equipped
        if "guild_name" in self.summary_extra:
            profile["Guild"] = {"Name": self.summary_extra["guild_name"]}
        payload: dict[str, Any] = {"NameCode": self.namecode}
        if self.username is not None:
            payload["Name"] = self.username
        payload["ProfileData"] = profile
        return payload


# --------------------------------------------------------------------------------------------------
# Mapping


def _section_items(profile: dict, section: str) -> list[tuple[int | None, Any, Any]]:
    """Return (index, key, element) for every element of a section, in order; validate its shape."""
    value = profile.get(section)
    if value is None:
        return []
    if isinstance(value, list):
        return [(i, None, elem) for i, elem in enumerate(value)]
    if isinstance(value, dict):
        return [(None, k, elem) for k, elem in value.items()]
    _fail(
        EtlError.VALIDATION_ERROR,
        f"expected an array or an object, got {_json_type(value)}",
        section=section,
        reason="wrong type",
        value_type=_json_type(value),
    )


def _element_id(elem: dict, id_field: str, section: str, index: int | None, key: Any) -> int:
    """Return an element's id: its id field, or in keyed form a decimal key when the field is absent."""
    raw_id = elem.get(id_field)
    if raw_id is None:
        if key is not None:
            key_text = key if isinstance(key, str) else str(key)
            if _KEY_ID_TEXT.fullmatch(key_text) is None:
                _fail(
                    EtlError.VALIDATION_ERROR,
                    "missing, and the key is not a decimal integer",
                    section=section,
                    key=key,
                    field=id_field,
                    reason="missing",
                    value_type="null" if id_field in elem else "absent",
                )
            raw_id = key_text
        else:
            _fail(
                EtlError.VALIDATION_ERROR,
                "missing",
                section=section,
                index=index,
                field=id_field,
                reason="missing",
                value_type="null" if id_field in elem else "absent",
            )
    try:
        return _coerce_int(raw_id, 1, INT32_MAX)
    except _Invalid as invalid:
        _raise_invalid(invalid, minimum=1, maximum=INT32_MAX, section=section, index=index, key=key, field=id_field)


def _element_ints(
    elem: dict, fields: tuple[tuple[str, int, int, int], ...], section: str, index: int | None, key: Any
) -> list[int]:
    """Return an element's mapped integer fields, defaults applied, in `fields` order."""
    out = []
    for name, default, minimum, maximum in fields:
        value = elem.get(name)
        if value is None:
            out.append(default)
        elif type(value) is int and minimum <= value <= maximum:
            out.append(value)
        else:
            try:
                out.append(_coerce_int(value, minimum, maximum))
            except _Invalid as invalid:
                _raise_invalid(
                    invalid,
                    minimum=minimum,
                    maximum=maximum,
                    section=section,
                    index=index,
                    key=key,
                    field=name,
                )
    return out


def _extra(elem: dict, mapped: frozenset[str]) -> dict:
    """Return an element's unmapped keys with sensitive keys dropped at any depth."""
    return {
        k: strip_sensitive(v) if isinstance(v, _CONTAINERS) else v
        for k, v in elem.items()
        if k not in mapped and not is_sensitive_key(k)
    }


def _check_object(elem: Any, section: str, index: int | None, key: Any) -> None:
    """Raise VALIDATION_ERROR when a section element is not an object."""
    if not isinstance(elem, dict):
        _fail(
            EtlError.VALIDATION_ERROR,
            f"expected an object, got {_json_type(elem)}",
            section=section,
            index=index,
            key=key,
            reason="not an object",
            value_type=_json_type(elem),
        )


def _troops(profile: dict) -> tuple[TroopRow, ...]:
    """Map ProfileData.Troops to rows sorted by troop_id, the last duplicate winning."""
    rows: dict[int, TroopRow] = {}
    for index, key, elem in _section_items(profile, "Troops"):
        _check_object(elem, "Troops", index, key)
        troop_id = _element_id(elem, _TROOP_ID, "Troops", index, key)
        amount, level, rarity, fusion, traits = _element_ints(elem, _TROOP_FIELDS, "Troops", index, key)
        extra = _extra(elem, _TROOP_MAPPED)
        rows[troop_id] = TroopRow(troop_id, amount, level, rarity, fusion, traits, extra)
    return tuple(rows[i] for i in sorted(rows))


def _pets(profile: dict) -> tuple[PetRow, ...]:
    """Map ProfileData.Pets to rows sorted by pet_id, the last duplicate winning."""
    rows: dict[int, PetRow] = {}
    for index, key, elem in _section_items(profile, "Pets"):
        _check_object(elem, "Pets", index, key)
        pet_id = _element_id(elem, _PET_ID, "Pets", index, key)
        amount, level, xp, orb_fusion, ascension = _element_ints(elem, _PET_FIELDS, "Pets", index, key)
        orbs = elem.get("OrbsUsed")
        if orbs is None:
            orbs_used: list = []
        elif isinstance(orbs, list):
            orbs_used = strip_sensitive(orbs)
        else:
            _fail(
                EtlError.VALIDATION_ERROR,
                f"expected an array, got {_json_type(orbs)}",
                section="Pets",
                index=index,
                key=key,
                field="OrbsUsed",
                reason="not an array",
                value_type=_json_type(orbs),
            )
        rows[pet_id] = PetRow(pet_id, amount, level, xp, orb_fusion, orbs_used, ascension, _extra(elem, _PET_MAPPED))
    return tuple(rows[i] for i in sorted(rows))


def _artifacts(profile: dict) -> tuple[ArtifactRow, ...]:
    """Map ProfileData.Artifacts to rows sorted by artifact_id, the last duplicate winning."""
    rows: dict[int, ArtifactRow] = {}
    for index, key, elem in _section_items(profile, "Artifacts"):
        _check_object(elem, "Artifacts", index, key)
        artifact_id = _element_id(elem, _ARTIFACT_ID, "Artifacts", index, key)
        level, xp = _element_ints(elem, _ARTIFACT_FIELDS, "Artifacts", index, key)
        rows[artifact_id] = ArtifactRow(artifact_id, level, xp, _extra(elem, _ARTIFACT_MAPPED))
    return tuple(rows[i] for i in sorted(rows))


def _profile_int(profile: dict, field: str) -> int | None:
    """Return ProfileData.<field> under the >= 0 int rule, or None when absent."""
    value = profile.get(field)
    if value is None:
        return None
    try:
        return _coerce_int(value, 0, INT32_MAX)
    except _Invalid as invalid:
        _raise_invalid(invalid, minimum=0, maximum=INT32_MAX, section="ProfileData", index=None, key=None, field=field)


def _equipped_pet(profile: dict) -> dict | None:
    """Return {"pet_id", "level"} from ProfileData.EquippedPet, or None when it is unusable."""
    value = profile.get("EquippedPet")
    if isinstance(value, dict):
        pet_id = _try_int(value.get("PetId"), 1, INT32_MAX)
        if pet_id is None:
            return None
        return {"pet_id": pet_id, "level": _try_int(value.get("Level"), 0, INT32_MAX)}
    pet_id = _try_int(value, 1, INT32_MAX)
    return None if pet_id is None else {"pet_id": pet_id, "level": None}


def _top_troops(troops: tuple[TroopRow, ...]) -> list[dict]:
    """Return the five troops with the highest amount (ties: higher level, then lower troop_id)."""
    best = heapq.nsmallest(5, troops, key=lambda t: (-t.amount, -t.level, t.troop_id))
    return [{"troop_id": t.troop_id, "amount": t.amount, "level": t.level} for t in best]


def normalize(raw: Any, column_namecode: str | None = None) -> NormalizedSnapshot:
    """Parse, validate and map one raw snapshot; raise EtlError (PARSE_ERROR or VALIDATION_ERROR)."""
    payload = parse_payload(raw)
    profile = payload["ProfileData"]
    try:
        code = namecode(payload, column_namecode)
        level = _profile_int(profile, "Level")
        pvp_tier = _profile_int(profile, "PvpTier")
        troops = _troops(profile)
        pets = _pets(profile)
        artifacts = _artifacts(profile)
    except RecursionError:
        raise EtlError(
            EtlError.VALIDATION_ERROR, "payload nested too deeply", {"reason": "nested too deeply"}
        ) from None
    guild = guild_name(profile)
    return NormalizedSnapshot(
        namecode=code,
        username=display_name(payload),
        level=level,
        pvp_tier=pvp_tier,
        troops=troops,
        pets=pets,
        artifacts=artifacts,
        top_troops=_top_troops(troops),
        equipped_pet=_equipped_pet(profile),
        summary_extra={"guild_name": guild} if guild is not None else {},
    )
