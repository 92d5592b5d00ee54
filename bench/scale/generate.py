"""The scale bench's corpus, generated in SQL: N snapshots of N/20 users, 20 snapshots per user over two
years, 10 troops and 3 pets each, in the v2 mix (80% Parse Cloud envelopes with keyed sections and NameCode
inside ProfileData, a third of those without a namecode column; 19% v1 bare payloads with array sections;
1% malformed: API error bodies and HTML strings). A user's history is realistic: each snapshot keeps half of
the previous one's troops (amounts and levels grown) and brings five new ones, so `user_troops` holds about
105 rows per user at the end and most elements of a later snapshot supersede an earlier observation.

Everything is a function of the snapshot's number g (user u = g % U, its k-th snapshot k = g / U), so the
floor's rows (`floor_select`) are the same observations, computed without parsing any JSON. The section
objects are unrolled in Python (10 `jsonb_build_object` pairs, no per-snapshot aggregate): 1M snapshots
take a few minutes, mostly the heap and index writes.
"""

from __future__ import annotations

PER_USER = 20
TROOPS, PETS = 10, 3
TROOP_IDS, PET_IDS = 300, 50  # catalog sizes: 6000..6299, 100..149
FROM, TO = "2023-01-01T00:00:00Z", "2025-01-01T00:00:00Z"

# per snapshot: g, u, k, kind, ts, sid (deterministic uuid), namecode
_BASE = """
SELECT g, u, k, ts, md5('scale-snap-' || g)::uuid AS sid, 'SC' || u AS namecode,
       CASE WHEN r = 0 THEN 'api_error' WHEN r = 1 THEN 'html' WHEN r < 40 THEN 'bare' ELSE 'envelope' END AS kind
FROM (SELECT g, g % __USERS__ AS u, g / __USERS__ AS k, (g::bigint * 7919) % 200 AS r,
             timestamptz '2023-01-01' + (g / __USERS__) * interval '36 days 12 hours'
             + ((g % __USERS__)::bigint * 7919 % 3153600) * interval '1 second' AS ts
      FROM generate_series(0, __N__ - 1) AS g) AS s
"""


def _troop(j: int) -> tuple[str, str, str, str, str, str, str]:
    """SQL expressions (id, amount, level, rarity, fusion, traits, elite) of the j-th troop of (u, k)."""
    tid = f"(6000 + (u * 37 + k * 5 + {j}) % {TROOP_IDS})"
    level = f"least(20, 1 + (u + {j}) % 8 + k / 2)"
    return (
        tid,
        f"(1 + u % 5 + 2 * k + {j})",
        level,
        f"({tid} % 5)",
        "(k % 4)",
        f"least(3, {level} / 6)",
        f"((u + {j}) % 3)",
    )


def _pet(j: int) -> tuple[str, str, str, str, str, str]:
    """SQL expressions (id, amount, level, xp, orb fusion cards, ascension) of the j-th pet of (u, k)."""
    pid = f"(100 + (u * 11 + k + {j}) % {PET_IDS})"
    level = f"least(20, 1 + (u + {j}) % 5 + k / 2)"
    return (pid, "(1 + k / 5)", level, f"({level} * {level} * 137)", "(k % 3)", f"least(3, {level} / 6)")


def _troop_obj(j: int, with_id: bool) -> str:
    tid, amount, level, rarity, fusion, traits, elite = _troop(j)
    fields = [
        ("Amount", amount),
        ("Level", level),
        ("Rarity", rarity),
        ("FusionCards", fusion),
        ("TraitsOwned", traits),
        ("EliteLevel", elite),
    ]
    if with_id:
        fields.insert(0, ("TroopId", tid))
    return "jsonb_build_object(" + ", ".join(f"'{k}', {v}" for k, v in fields) + ")"


def _pet_obj(j: int, with_id: bool) -> str:
    pid, amount, level, xp, orb, asc = _pet(j)
    fields = [
        ("Amount", amount),
        ("Level", level),
        ("XP", xp),
        ("OrbFusionCards", orb),
        ("OrbsUsed", "'[]'::jsonb"),
        ("AscensionLevel", asc),
    ]
    if with_id:
        fields.insert(0, ("PetId", pid))
    return "jsonb_build_object(" + ", ".join(f"'{k}', {v}" for k, v in fields) + ")"


def _keyed(count: int, ident: object, obj: object) -> str:
    # most keyed entries without their id field, as real responses have them (the key is the id)
    pairs = []
    for j in range(count):
        pairs.append(f"({ident(j)[0]})::text")  # type: ignore[operator]
        with_id = f"CASE WHEN (u + k + {j}) % 10 = 0 THEN {obj(j, True)} ELSE {obj(j, False)} END"  # type: ignore[operator]
        pairs.append(with_id)
    return "jsonb_build_object(" + ", ".join(pairs) + ")"


def _array(count: int, obj: object) -> str:
    return "jsonb_build_array(" + ", ".join(obj(j, True) for j in range(count)) + ")"  # type: ignore[operator]


def bind(text: str) -> bytes:
    """A statement of this module for psycopg: literal % doubled, the tokens made binds of n and users."""
    return text.replace("%", "%%").replace("__N__", "%(n)s").replace("__USERS__", "%(users)s").encode()


def insert_sql() -> str:
    """INSERT ... SELECT of the whole corpus (run it through `bind`)."""
    keyed_troops, keyed_pets = _keyed(TROOPS, _troop, _troop_obj), _keyed(PETS, _pet, _pet_obj)
    arr_troops, arr_pets = _array(TROOPS, _troop_obj), _array(PETS, _pet_obj)
    return f"""
INSERT INTO hero_snapshots (id, namecode, source, raw, size_bytes, created_at)
SELECT sid, CASE WHEN kind = 'envelope' AND u % 3 = 0 THEN NULL ELSE namecode END, 'bench-scale', raw,
       octet_length(raw::text), ts
FROM ({_BASE}) AS b
CROSS JOIN LATERAL (SELECT CASE kind
    WHEN 'api_error' THEN jsonb_build_object('code', 141, 'error', 'Invalid session token')
    WHEN 'html' THEN to_jsonb('<html><body><h1>502 Bad Gateway</h1></body></html>'::text)
    WHEN 'envelope' THEN jsonb_build_object('result', jsonb_build_object('ProfileData', jsonb_build_object(
        'NameCode', namecode, 'Name', 'Hero ' || u, 'Level', 1 + u % 400 + k, 'Troops', {keyed_troops},
        'Pets', {keyed_pets}, 'GuildName', 'Knights' || repeat(' ', u % 3),
        'KingdomLevels', jsonb_build_object('3000', 1 + k % 15, '3001', 1 + (k + 1) % 15),
        'Progress', jsonb_build_object('Campaign', k * 3, 'Tower', u % 50), 'username', 'login-' || u)))
    ELSE jsonb_build_object('NameCode', namecode, 'Name', 'Hero ' || u, 'ProfileData', jsonb_build_object(
        'Level', 1 + u % 400 + k, 'Troops', {arr_troops}, 'Pets', {arr_pets},
        'Guild', jsonb_build_object('Name', 'Knights')))
    END AS raw) AS p
""".replace("% ", "% ")


def catalogs_sql() -> str:
    """The troop and pet catalogs every generated id is in (no placeholders at scale)."""
    return f"""
INSERT INTO troop_catalog (id, name, meta)
SELECT i, 'Troop ' || i, jsonb_build_object('kingdom', 'K' || i % 7, 'rarity', i % 5)
FROM generate_series(6000, {6000 + TROOP_IDS - 1}) AS i ON CONFLICT (id) DO NOTHING;
INSERT INTO pet_catalog (id, name, meta)
SELECT i, 'Pet ' || i, jsonb_build_object('kingdom', 'K' || i % 7)
FROM generate_series(100, {100 + PET_IDS - 1}) AS i ON CONFLICT (id) DO NOTHING;
"""


def _user_id() -> str:
    return "md5('scale-user-' || u)::uuid"


def floor_select(table: str) -> str:
    """SELECT of one floor table's rows (every valid snapshot's observations), in the order of the columns
    of bench.floor.COLUMNS; binds n and users. For `COPY (...) TO STDOUT`: untimed."""
    valid = f"FROM ({_BASE}) AS b WHERE kind IN ('envelope', 'bare')"
    if table == "floor_users":
        return f"SELECT DISTINCT ON (u) {_user_id()}, namecode, 'login-' || u {valid} ORDER BY u"
    if table == "floor_user_troops":
        parts = []
        for j in range(TROOPS):
            tid, amount, level, rarity, fusion, traits, elite = _troop(j)
            parts.append(
                f"SELECT g, {_user_id()}, {tid}, {amount}, {level}, {rarity}, {fusion}, {traits}, "
                f"jsonb_build_object('EliteLevel', {elite}), ts, sid {valid}"
            )
        return (
            "SELECT user_id, tid, amount, level, rarity, fusion, traits, extra, ts, sid FROM ("
            + " UNION ALL ".join(parts)
            + ") AS t(g, user_id, tid, amount, level, rarity, fusion, traits, extra, "
            "ts, sid)"
        )
    if table == "floor_user_pets":
        parts = []
        for j in range(PETS):
            pid, amount, level, xp, orb, asc = _pet(j)
            parts.append(
                f"SELECT g, {_user_id()}, {pid}, {amount}, {level}, {xp}, {orb}, '[]'::jsonb, {asc}, "
                f"'{{}}'::jsonb, ts, sid {valid}"
            )
        return (
            "SELECT user_id, pid, amount, level, xp, orb, orbs, asc_, extra, ts, sid FROM ("
            + " UNION ALL ".join(parts)
            + ") AS t(g, user_id, pid, amount, level, xp, orb, orbs, asc_, extra, "
            "ts, sid)"
        )
    if table == "floor_user_artifacts":
        return "SELECT NULL::uuid, 0, 0, 0::bigint, '{}'::jsonb, now(), NULL::uuid WHERE false"
    if table == "floor_user_profile_summary":
        return (
            f"SELECT {_user_id()}, namecode, 'login-' || u, 1 + u % 400 + k, '[]'::jsonb, NULL::jsonb, "
            f"NULL::integer, ts, '{{}}'::jsonb, sid {valid}"
        )
    raise KeyError(table)
