"""Deterministic synthetic `hero_snapshots` (Gems-of-War-like `get_hero_profile` payloads) for tests, bench.

`generate(spec)` streams `SyntheticSnapshot`s, byte-identical for the same spec: one `random.Random(seed)`
draws every snapshot's metadata in order and a 64-bit seed for its own payload generator; per-user
rosters come from generators seeded by (seed, user, section), so a user's troops keep their ids and grow
over time (amounts and levels follow the observation time: the newest snapshot wins). Bulky sections the
ETL ignores (`Inventory`, `Log`, `Stats`) are rendered straight to JSON text to reach the target size
cheaply. Malformed kinds are listed in `MALFORMED_KINDS` with the error type the contract gives them.
Secret values planted under sensitive keys all contain `SECRET_MARKER`, so a leak is easy to grep for.

Two mixes of shapes (`SyntheticSpec.mix`). "v1": the v1 contract's shapes only (top-level NameCode/Name,
array sections, 5% keyed), byte-identical to the generator before contract v2. "v2" (the default), the mix
a backfill over years of real responses meets (SNAPSHOT_CONTRACT.md, "v2"): `v2_ratio` (80%) of the
snapshots are Parse Cloud envelopes `{"result": {"ProfileData": {...}}}` with NameCode and Name inside
ProfileData (a third of them with no namecode column), Troops and Pets keyed by id strings (entries with
`EliteLevel`, most without their id field), a flat `GuildName` with the trailing spaces real names have,
extra profile keys (`KingdomLevels`, `Progress`, stat bonuses) and the login name under `username` (a
secret: it holds `SECRET_MARKER`); the rest are v1-shaped; and the malformed share includes API error
bodies (`{"code": 141, "error": "..."}`, bare or enveloped). The v2 choices come from a generator of their
own, so the v1 draws are the same in both mixes. No click or rich here.
"""

from __future__ import annotations

import hashlib
import random
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from psycopg import sql
from psycopg.types.json import Jsonb

__all__ = [
    "MALFORMED_KINDS",
    "SECRET_MARKER",
    "Catalogs",
    "LoadStats",
    "SyntheticSnapshot",
    "SyntheticSpec",
    "catalogs",
    "generate",
    "load",
    "seed_catalogs",
]

TROOP_ID_BASE, PET_ID_BASE, ARTIFACT_ID_BASE = 6000, 100, 1
SECRET_MARKER = "SYNTHSECRET"
MISSING_ID_CARRIER_RATIO = 0.02  # share of ok snapshots that reference an id left out of the catalogs
_FIELD_BREAKS = {  # malformed kind -> (section, field, bad value) set on the section's last element
    "amount_not_integer": ("Troops", "Amount", "abc"),
    "negative_level": ("Troops", "Level", -3),
    "fractional_amount": ("Troops", "Amount", 2.5),
    "pet_xp_out_of_range": ("Pets", "XP", 2**63 + 12345),  # bigint overflow
    "orbs_used_not_array": ("Pets", "OrbsUsed", "none"),
}
# malformed kind -> the error type the contract gives it (SNAPSHOT_CONTRACT.md, "The payload" and "v2")
MALFORMED_KINDS: dict[str, str] = {
    **dict.fromkeys(
        ("top_level_array", "top_level_string", "missing_profile_data", "profile_data_not_object"),
        "PARSE_ERROR",
    ),
    **dict.fromkeys(("troop_id_missing", "troops_not_array", *_FIELD_BREAKS, "no_namecode"), "VALIDATION_ERROR"),
    "api_error_body": "PARSE_ERROR",  # v2 mix only
}
_MALFORMED = tuple(k for k in MALFORMED_KINDS if k != "api_error_body")
# the v2 mix cycles through these: two API error bodies in every 13 malformed snapshots, the first one first
_MALFORMED_V2 = ("api_error_body", *_MALFORMED[:5], "api_error_body", *_MALFORMED[5:])
MIXES = ("v1", "v2")
_V2_SALT = 0x5EED_0F_0002  # the v2 choices' generator: seeded from the snapshot's seed, apart from its draws
_API_ERRORS = ("Hero not found", "Invalid session token", "Too many requests, please slow down")
_STAT_BONUSES = ("GoldBonus", "SoulsBonus", "XpBonus", "MagicBonus")
_SYLLABLES = ("co", "ri", "der", "ka", "zu", "mo", "la", "ven", "tor", "is", "bel", "nor", "ax", "qui", "el")
_GUILDS = tuple(
    f"{a} {b}"
    for a in ("Knights", "Wolves", "Sons", "Heirs", "Blades")
    for b in ("of Krystara", "of Zaejin", "of Adana", "of the Forest", "of Stormheim", "Eternal")
)
_KINGDOMS = (
    "Adana",
    "Broken Spire",
    "Divinion Fields",
    "Forest of Thorns",
    "Karakoth",
    "Stormheim",
    "Zaejin",
)
_TAGS = (
    "gem",
    "key",
    "scroll",
    "orb",
    "chest",
    "rune",
    "sigil",
    "map",
    "ingot",
    "shard",
    "dust",
    "idol",
    "coin",
    "token-box",
    "relic",
    "ticket",
)
_EVENTS = (
    "battle won",
    "battle lost",
    "chest opened",
    "troop crafted",
    "trait unlocked",
    "guild task",
    "raid boss",
    "invasion",
    "pet rescue",
    "faction run",
    "bounty",
    "explore",
    "delve",
    "arena",
    "weekly event",
    "tower of doom",
)
_BULK = "__SYNTH_BULK_{}__"


@dataclass(frozen=True)
class SyntheticSpec:
    """What to generate: counts, mix of sizes and of awkward cases, catalog sizes. Same spec, same bytes."""

    snapshots: int = 2000
    users: int = 300
    seed: int = 7
    start: datetime = datetime(2024, 1, 1, tzinfo=UTC)
    span_days: float = 180
    size_mix: tuple[tuple[float, int], ...] = ((0.70, 30_000), (0.25, 300_000), (0.05, 2_500_000))
    malformed_ratio: float = 0.01
    duplicate_id_ratio: float = 0.02
    missing_catalog_ids: int = 5
    troop_catalog_size: int = 1500
    pet_catalog_size: int = 120
    artifact_catalog_size: int = 60
    keyed_form_ratio: float = 0.05
    sensitive_ratio: float = 0.05
    mix: str = "v2"  # "v1": the v1 contract's shapes only; "v2": the real mix (see the module's docstring)
    v2_ratio: float = 0.8  # mix "v2": share of the snapshots in v2 shapes


@dataclass(frozen=True)
class SyntheticSnapshot:
    """One generated row: `raw` is the JSON text; `namecode` "" means the column is NULL."""

    id: uuid.UUID
    namecode: str
    created_at: datetime
    raw: bytes
    size_bytes: int
    kind: str  # "ok" | "malformed:<what>"
    user: str = ""  # the namecode the contract finds for an "ok" snapshot (the column may be NULL in v2)
    shape: str = "v1"  # "v1" | "v2"

    @property
    def expected_error(self) -> str | None:
        """The contract's error type for a malformed kind, None for "ok"."""
        return MALFORMED_KINDS[self.kind.split(":", 1)[1]] if self.kind != "ok" else None


@dataclass
class LoadStats:
    """What `load` wrote."""

    snapshots: int = 0
    bytes: int = 0
    by_kind: Counter = field(default_factory=Counter)
    bytes_by_kind: Counter = field(default_factory=Counter)
    catalog_rows: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0


@dataclass(frozen=True)
class Catalogs:
    """Catalog ids present, and the ids snapshots use that the catalogs leave out, per kind."""

    troops: tuple[int, ...]
    pets: tuple[int, ...]
    artifacts: tuple[int, ...]
    missing: tuple[tuple[str, int], ...]  # (kind, id), kind in troop/pet/artifact


def catalogs(spec: SyntheticSpec) -> Catalogs:
    """The catalog ids for a spec (ids used in snapshots minus `missing_catalog_ids` left-out ones)."""
    rng = random.Random(f"starforge-synthetic:{spec.seed}:catalogs")
    ranges = {
        "troop": range(TROOP_ID_BASE, TROOP_ID_BASE + spec.troop_catalog_size),
        "pet": range(PET_ID_BASE, PET_ID_BASE + spec.pet_catalog_size),
        "artifact": range(ARTIFACT_ID_BASE, ARTIFACT_ID_BASE + spec.artifact_catalog_size),
    }
    missing: list[tuple[str, int]] = []
    for i in range(spec.missing_catalog_ids):
        kind = ("troop", "pet", "artifact")[i % 3]
        taken = {m for k, m in missing if k == kind}
        free = [x for x in ranges[kind] if x not in taken]
        if len(free) > 1:  # never empty a catalog entirely
            missing.append((kind, rng.choice(free)))
    left_out = set(missing)
    keep = {k: tuple(x for x in r if (k, x) not in left_out) for k, r in ranges.items()}
    return Catalogs(keep["troop"], keep["pet"], keep["artifact"], tuple(missing))


@dataclass(frozen=True)
class _User:
    index: int
    name: str
    namecode: str
    guild: str


def _users(spec: SyntheticSpec) -> list[_User]:
    rng = random.Random(f"starforge-synthetic:{spec.seed}:users")
    users, seen = [], set()
    for i in range(spec.users):
        name = "".join(rng.choice(_SYLLABLES) for _ in range(rng.randint(2, 4))).capitalize()
        code = ""
        while not code or code in seen:
            code = f"{name.upper()}_{''.join(rng.choice('ABCDEFGHJKLMNPQRSTUVWXYZ') for _ in range(4))}"
        seen.add(code)
        users.append(_User(i, name, code, rng.choice(_GUILDS)))
    return users


def _rarity(troop_id: int) -> int:
    return (troop_id * 2654435761 >> 9) % 6


def _class_counts(target: int) -> tuple[tuple[int, int], tuple[int, int], tuple[int, int]]:
    """(troops, pets, artifacts) count ranges for a payload size class."""
    if target < 100_000:
        return (100, 300), (10, 40), (3, 20)
    if target < 1_000_000:
        return (600, 1200), (40, 100), (15, 45)
    return (1200, 1500), (80, 120), (30, 60)


def _roster(
    spec: SyntheticSpec, ids: tuple[int, ...], u: _User, section: str, k: int
) -> tuple[list[int], random.Random]:
    """A user's first k ids of a section, and the generator of their per-position parameters."""
    urng = random.Random(f"starforge-synthetic:{spec.seed}:{u.index}:{section}")
    roster = list(ids)
    urng.shuffle(roster)
    return roster[:k], urng  # draws per position in roster order: an id keeps its parameters over time


def _troops(
    spec: SyntheticSpec, ids: tuple[int, ...], u: _User, k: int, t: float, srng: random.Random, ok: bool
) -> list[dict[str, Any]]:
    roster, urng = _roster(spec, ids, u, "troops", k)
    out = []
    for tid in roster:
        base, grow, lvl0, lgrow, fgrow = (
            urng.randint(1, 4),
            urng.random() * 60,
            urng.randint(1, 8),
            urng.random() * 16,
            urng.random() * 6,
        )
        level = min(20, lvl0 + int(lgrow * t))
        troop: dict[str, Any] = {
            "TroopId": tid,
            "Amount": base + int(grow * t),
            "Level": level,
            "Rarity": _rarity(tid),
            "FusionCards": int(fgrow * t),
            "TraitsOwned": min(3, level // 6),
            "IsNew": srng.random() < 0.03,
            "Ascension": min(4, int(t * fgrow)),
        }
        if ok and srng.random() < 0.01:  # values the contract accepts in odd shapes
            quirk = srng.randrange(4)
            if quirk == 0:
                troop["Amount"] = str(troop["Amount"])
            elif quirk == 1:
                troop["Level"] = float(level)
            elif quirk == 2:
                troop["FusionCards"] = None
            else:
                del troop["TraitsOwned"]
        out.append(troop)
    return out


def _pets(
    spec: SyntheticSpec, ids: tuple[int, ...], u: _User, k: int, t: float, srng: random.Random
) -> list[dict[str, Any]]:
    roster, urng = _roster(spec, ids, u, "pets", k)
    out = []
    for pid in roster:
        lvl0, lgrow, big = urng.randint(1, 5), urng.random() * 16, urng.random() < 0.01
        level = min(20, lvl0 + int(lgrow * t))
        xp = level * level * 137 + srng.randrange(100) + (3_000_000_000 if big else 0)  # some need bigint
        out.append(
            {
                "PetId": pid,
                "Amount": 1 + int(t * lgrow / 4),
                "Level": level,
                "XP": xp,
                "OrbFusionCards": int(t * 3),
                "OrbsUsed": [srng.randrange(1, 9) for _ in range(level // 7)],
                "AscensionLevel": min(3, level // 6),
                "IsNew": srng.random() < 0.02,
            }
        )
    return out


def _artifacts(
    spec: SyntheticSpec, ids: tuple[int, ...], u: _User, k: int, t: float, srng: random.Random
) -> list[dict[str, Any]]:
    roster, urng = _roster(spec, ids, u, "artifacts", k)
    levels = [min(10, urng.randint(0, 3) + int(urng.random() * 8 * t)) for _ in roster]
    return [
        {
            "ArtifactId": aid,
            "Level": lv,
            "XP": lv * 900 + srng.randrange(900),
            "Equipped": srng.random() < 0.1,
        }
        for aid, lv in zip(roster, levels, strict=True)
    ]


def _plant_secrets(troops: list[dict], pets: list[dict], artifacts: list[dict], srng: random.Random) -> None:
    def secret() -> str:
        return f"{SECRET_MARKER}-{srng.getrandbits(64):016x}"

    for i, troop in enumerate(troops):
        if i == 0 or srng.random() < 0.02:
            troop["Meta"] = {"AuthToken": secret(), "Build": srng.randrange(5000, 6000)}
    for i, pet in enumerate(pets):
        if i == 0 or srng.random() < 0.05:
            pet["Client"] = {"session": {"Id": secret()}, "Locale": "en"}
    for art in artifacts[:1]:
        art["Sync"] = {"Device": "android", "auth": {"password_hash": secret()}}


def _keyed(section: list[dict], id_field: str, srng: random.Random) -> dict[str, dict]:
    out = {}
    for elem in section:
        key = str(elem[id_field])
        if srng.random() < 0.5:  # the contract takes the id from the key when the field is absent
            elem = {k: v for k, v in elem.items() if k != id_field}
        out[key] = elem
    return out


def _keyed_v2(section: list[dict], id_field: str, vrng: random.Random) -> dict[str, dict]:
    """A section keyed by id strings, as real responses have it: most entries without their id field."""
    return {
        str(elem[id_field]): {k: v for k, v in elem.items() if k != id_field} if vrng.random() < 0.9 else elem
        for elem in section
    }


def _envelope(payload: dict[str, Any], profile: dict[str, Any], u: _User, kind: str, vrng: random.Random) -> dict:
    """The v2 shape of a v1 payload: NameCode and Name move into ProfileData (a fifth keep a top-level
    NameCode too), Guild becomes a flat GuildName with trailing spaces, extra profile keys and the login name
    are added, and the whole is wrapped in the Parse Cloud envelope."""
    payload.pop("NameCode", None)
    payload.pop("Name", None)
    if kind != "malformed:no_namecode":
        profile["NameCode"] = u.namecode
        if vrng.random() < 0.2:
            payload["NameCode"] = u.namecode
    if vrng.random() < 0.95:
        profile["Name"] = u.name
    guild = profile.pop("Guild", None)
    if isinstance(guild, dict):
        profile["GuildName"] = guild["Name"] + " " * (u.index % 3)
    level = profile.get("Level")
    base = level if isinstance(level, int) else 1
    profile["KingdomLevels"] = {str(3000 + i): 1 + (base + i) % 15 for i in range(len(_KINGDOMS))}
    profile["Progress"] = {"Campaign": base // 3, "Challenges": [base % 7, base % 5], "Tower": vrng.randrange(50)}
    for bonus in _STAT_BONUSES:
        profile[bonus] = vrng.randrange(0, 40)
    profile["username"] = f"{u.name.lower()}-{SECRET_MARKER}-{u.index}"
    return {"result": payload}


def _bulk(srng: random.Random, budget: int, day: str) -> dict[str, str]:
    """JSON text of the ignored bulky sections, about `budget` bytes in all."""
    gb = srng.getrandbits
    parts: list[str] = []
    size, goal = 0, budget * 0.5
    while size < goal:
        item = (
            f'{{"ItemId":{gb(16)},"Count":{gb(10)},"Acquired":"{day}T{gb(5) % 24:02d}:'
            f'{gb(6) % 60:02d}:{gb(6) % 60:02d}Z","Tags":["{_TAGS[gb(4)]}","{_TAGS[gb(4)]}"],'
            f'"Bound":{"true" if gb(1) else "false"}}}'
        )
        parts.append(item)
        size += len(item) + 1
    inventory = "[" + ",".join(parts) + "]"
    parts, size, goal = [], 0, budget * 0.35
    while size < goal:
        line = (
            f'"{day}T{gb(5) % 24:02d}:{gb(6) % 60:02d}:{gb(6) % 60:02d}Z {_EVENTS[gb(4)]} '
            f'+{gb(12)} gold +{gb(8)} souls #{gb(24):06x}"'
        )
        parts.append(line)
        size += len(line) + 1
    log = "[" + ",".join(parts) + "]"
    parts, size, goal = [], 0, max(budget * 0.15, 64)
    while size < goal:
        row = f"[{gb(14)},{gb(14)},{gb(10)},{gb(10)},{gb(6)},{gb(20)}]"
        parts.append(row)
        size += len(row) + 1
    stats = f'{{"Wins":{gb(16)},"Losses":{gb(14)},"Daily":[{",".join(parts)}]}}'
    return {"Inventory": inventory, "Log": log, "Stats": stats}


def _payload(
    spec: SyntheticSpec,
    cat: Catalogs,
    u: _User,
    created: datetime,
    t: float,
    target: int,
    kind: str,
    flags: dict[str, Any],
    srng: random.Random,
    vrng: random.Random | None = None,
) -> bytes:
    """The JSON text of one snapshot; in v2 shapes when `vrng` (the v2 choices' generator) is given."""
    ok = kind == "ok"
    if kind == "malformed:top_level_string":
        return orjson.dumps("<html><body><h1>502 Bad Gateway</h1></body></html>")
    if kind == "malformed:api_error_body":
        assert vrng is not None
        api_error = {"code": 141, "error": vrng.choice(_API_ERRORS)}
        return orjson.dumps({"result": api_error} if vrng.random() < 0.5 else api_error)
    (t_lo, t_hi), (p_lo, p_hi), (a_lo, a_hi) = _class_counts(target)
    troops = _troops(spec, cat.troops, u, min(srng.randint(t_lo, t_hi), len(cat.troops)), t, srng, ok)
    pets = _pets(spec, cat.pets, u, max(1, min(srng.randint(p_lo, p_hi), len(cat.pets))), t, srng)
    artifacts = _artifacts(spec, cat.artifacts, u, min(srng.randint(a_lo, a_hi), len(cat.artifacts)), t, srng)
    if flags["carrier"] is not None:
        missing_kind, missing_id = flags["carrier"]
        if missing_kind == "troop":
            troops.append(
                {
                    "TroopId": missing_id,
                    "Amount": 1,
                    "Level": 1,
                    "Rarity": _rarity(missing_id),
                    "FusionCards": 0,
                    "TraitsOwned": 0,
                    "IsNew": True,
                    "Ascension": 0,
                }
            )
        elif missing_kind == "pet":
            pets.append(
                {
                    "PetId": missing_id,
                    "Amount": 1,
                    "Level": 1,
                    "XP": 0,
                    "OrbFusionCards": 0,
                    "OrbsUsed": [],
                    "AscensionLevel": 0,
                    "IsNew": True,
                }
            )
        else:
            artifacts.append({"ArtifactId": missing_id, "Level": 0, "XP": 0, "Equipped": False})
    if flags["sensitive"]:
        _plant_secrets(troops, pets, artifacts, srng)
    if vrng is not None:
        for troop in troops:
            troop["EliteLevel"] = int(troop["Level"]) // 7
    if flags["duplicate"]:  # a stale copy earlier in the array; the later, current one must win
        for _ in range(srng.randint(1, 3)):
            victim = troops[srng.randrange(len(troops))]
            stale = dict(victim, Amount=max(0, int(victim["Amount"]) - 1), IsNew=True)
            troops.insert(srng.randrange(troops.index(victim) + 1), stale)
    profile: dict[str, Any] = {"Level": 10 + u.index % 40 + int(t * 120)}
    if srng.random() < 0.97:
        profile["PvpTier"] = min(7, int(t * 6) + u.index % 2)
    if srng.random() < 0.85:
        profile["Guild"] = {"Name": u.guild, "Rank": srng.randrange(5)}
    profile["Stats"] = _BULK.format("Stats")
    if vrng is not None and flags["keyed"]:
        profile["Troops"] = _keyed_v2(troops, "TroopId", vrng)
    else:
        profile["Troops"] = _keyed(troops, "TroopId", srng) if flags["keyed"] else troops
    profile["Inventory"] = _BULK.format("Inventory")
    if vrng is not None and flags["keyed"]:
        profile["Pets"] = _keyed_v2(pets, "PetId", vrng)
    else:
        profile["Pets"] = _keyed(pets, "PetId", srng) if flags["keyed"] and srng.random() < 0.7 else pets
    profile["Artifacts"] = (
        _keyed(artifacts, "ArtifactId", srng) if flags["keyed"] and srng.random() < 0.7 else artifacts
    )
    equipped = srng.random()
    if equipped < 0.8:
        profile["EquippedPet"] = {"PetId": pets[0]["PetId"], "Level": pets[0]["Level"]}
    elif equipped < 0.9:
        profile["EquippedPet"] = pets[0]["PetId"]
    profile["Kingdoms"] = {k: {"Level": 1 + int(t * 9), "Power": srng.randrange(10)} for k in _KINGDOMS}
    profile["Log"] = _BULK.format("Log")
    payload: dict[str, Any] = {}
    if srng.random() < 0.9 and kind != "malformed:no_namecode":
        payload["NameCode"] = u.namecode
    if srng.random() < 0.95:
        payload["Name"] = u.name
    payload["ProfileData"] = profile
    payload["ServerTime"] = created.strftime("%Y-%m-%dT%H:%M:%SZ")
    obj: Any = payload
    what = kind.partition(":")[2]
    if what == "top_level_array":
        obj = [payload]
    elif what in ("missing_profile_data", "profile_data_not_object"):
        payload["ProfileData"] = "maintenance"
        if what == "missing_profile_data":
            del payload["ProfileData"]
            payload["Error"] = "profile temporarily unavailable"
    elif what == "troops_not_array":
        profile["Troops"] = len(troops)
    elif what == "troop_id_missing":
        del troops[-1]["TroopId"]
    elif what in _FIELD_BREAKS:
        section, name, bad = _FIELD_BREAKS[what]
        (troops if section == "Troops" else pets)[-1][name] = bad
    if vrng is not None:
        top = _envelope(payload, profile, u, kind, vrng)
        obj = [top] if what == "top_level_array" else top
    text = orjson.dumps(obj)
    if "ProfileData" in payload and isinstance(payload["ProfileData"], dict):
        bulk = _bulk(srng, max(600, target - len(text)), created.strftime("%Y-%m-%d"))
        for name, body in bulk.items():
            text = text.replace(f'"{_BULK.format(name)}"'.encode(), body.encode(), 1)
    return text


def generate(spec: SyntheticSpec) -> Iterator[SyntheticSnapshot]:
    """Yield `spec.snapshots` snapshots, oldest first, one at a time; same spec -> same bytes."""
    if spec.snapshots < 0 or spec.users < 1:
        raise ValueError("snapshots must be >= 0 and users >= 1")
    if spec.mix not in MIXES:
        raise ValueError(f"mix must be one of {', '.join(MIXES)}")
    malformed_kinds = _MALFORMED_V2 if spec.mix == "v2" else _MALFORMED
    rng = random.Random(spec.seed)
    cat = catalogs(spec)
    users = _users(spec)
    total_share = sum(share for share, _ in spec.size_mix)
    span = timedelta(days=spec.span_days)
    malformed_seen = carriers = 0
    for i in range(spec.snapshots):
        snap_id = uuid.UUID(int=rng.getrandbits(128), version=4)
        user = users[rng.randrange(len(users))]
        frac = (i + 0.9 * rng.random()) / spec.snapshots
        pick, target = rng.random() * total_share, spec.size_mix[-1][1]
        for share, size in spec.size_mix:
            if pick < share:
                target = size
                break
            pick -= share
        target = int(target * rng.uniform(0.85, 1.15))
        draws = [rng.random() for _ in range(5)]
        snap_seed = rng.getrandbits(64)
        malformed = draws[0] < spec.malformed_ratio
        kind = "ok"
        if malformed:
            kind = f"malformed:{malformed_kinds[malformed_seen % len(malformed_kinds)]}"
            malformed_seen += 1
        carrier = None
        wanted = carriers < len(cat.missing) or draws[4] < MISSING_ID_CARRIER_RATIO
        if not malformed and cat.missing and wanted:
            carrier = cat.missing[carriers % len(cat.missing)]
            carriers += 1
        duplicate = not malformed and draws[1] < spec.duplicate_id_ratio
        vrng = random.Random(snap_seed ^ _V2_SALT) if spec.mix == "v2" else None
        v2 = vrng is not None and (vrng.random() < spec.v2_ratio or kind == "malformed:api_error_body")
        flags = {
            "duplicate": duplicate,
            "carrier": carrier,
            # v2: keyed sections are the common case (a section with a duplicate id is an array)
            "keyed": not malformed and not duplicate and (v2 or draws[2] < spec.keyed_form_ratio),
            "sensitive": draws[3] < spec.sensitive_ratio,
        }
        created = spec.start + span * frac
        raw = _payload(
            spec, cat, user, created, frac, target, kind, flags, random.Random(snap_seed), vrng if v2 else None
        )
        namecode = "" if kind == "malformed:no_namecode" else user.namecode
        if v2 and kind == "ok" and vrng is not None and vrng.random() < 1 / 3:
            namecode = ""  # ProfileData.NameCode is the only one
        yield SyntheticSnapshot(snap_id, namecode, created, raw, len(raw), kind, user.namecode, "v2" if v2 else "v1")


def seed_catalogs(conn: Any, spec: SyntheticSpec) -> dict[str, int]:
    """Insert the troop/pet/artifact catalogs (minus the missing ids); idempotent. Returns rows per table."""
    cat = catalogs(spec)
    tables = (
        ("troop_catalog", "Troop", cat.troops),
        ("pet_catalog", "Pet", cat.pets),
        ("artifact_catalog", "Artifact", cat.artifacts),
    )
    counts = {}
    with conn.transaction(), conn.cursor() as cur:
        for table, label, ids in tables:
            stmt = sql.SQL("INSERT INTO {} (id, name, meta) VALUES (%s, %s, %s) ON CONFLICT (id) DO NOTHING")
            rows = [
                (
                    i,
                    f"{label} {i}",
                    Jsonb(
                        {"kingdom": _KINGDOMS[i % len(_KINGDOMS)], "rarity": _rarity(i)}
                        if label == "Troop"
                        else {"kingdom": _KINGDOMS[i % 7]}
                    ),
                )
                for i in ids
            ]
            cur.executemany(stmt.format(sql.Identifier(table)), rows)
            counts[table] = len(rows)
    return counts


def load(conn: Any, spec: SyntheticSpec) -> LoadStats:
    """Seed the catalogs, then COPY the snapshots into `hero_snapshots` (streaming, one transaction)."""
    started = time.perf_counter()
    stats = LoadStats(catalog_rows=seed_catalogs(conn, spec))
    copy_sql = "COPY hero_snapshots (id, namecode, source, raw, size_bytes, content_hash, created_at) FROM STDIN"
    with conn.transaction(), conn.cursor() as cur, cur.copy(copy_sql) as copy:
        for snap in generate(spec):
            copy.write_row(
                (
                    snap.id,
                    snap.namecode or None,
                    "synthetic",
                    snap.raw.decode(),
                    snap.size_bytes,
                    hashlib.sha256(snap.raw).hexdigest(),
                    snap.created_at,
                )
            )
            stats.snapshots += 1
            stats.bytes += snap.size_bytes
            stats.by_kind[snap.kind] += 1
            stats.bytes_by_kind[snap.kind] += snap.size_bytes
    stats.seconds = time.perf_counter() - started
    return stats
