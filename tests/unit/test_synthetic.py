"""The synthetic snapshot generator: deterministic, the promised mix, and every case means what it says."""

from __future__ import annotations

import hashlib
import statistics
from collections import Counter, defaultdict
from dataclasses import replace
from datetime import timedelta

import orjson
import pytest

from starforge_backfill.errors import EtlError
from starforge_backfill.etl.contract import normalize, parse_payload
from starforge_backfill.synthetic import (
    MALFORMED_KINDS,
    SECRET_MARKER,
    SyntheticSpec,
    catalogs,
    generate,
)

# Small payloads, many malformed ones: cheap to generate, every malformed kind several times.
FAST = SyntheticSpec(
    snapshots=240,
    users=12,
    size_mix=((1.0, 4_000),),
    malformed_ratio=0.2,
    troop_catalog_size=150,
    pet_catalog_size=30,
    artifact_catalog_size=12,
)


def _digest(spec: SyntheticSpec) -> str:
    h = hashlib.sha256()
    for s in generate(spec):
        h.update(f"{s.id}|{s.namecode}|{s.created_at.isoformat()}|{s.size_bytes}|{s.kind}|".encode())
        h.update(s.raw)
    return h.hexdigest()


def test_same_seed_is_byte_identical_and_another_seed_differs() -> None:
    spec = SyntheticSpec(snapshots=40, users=8)
    assert _digest(spec) == _digest(spec)
    assert _digest(replace(spec, seed=8)) != _digest(spec)


def test_size_mix_roughly_holds() -> None:
    spec = SyntheticSpec(snapshots=300, users=50)
    sizes: dict[str, list[int]] = defaultdict(list)
    for s in generate(spec):
        assert s.size_bytes == len(s.raw)
        if s.kind == "ok":
            bucket = "small" if s.size_bytes < 100_000 else "medium" if s.size_bytes < 1_000_000 else "large"
            sizes[bucket].append(s.size_bytes)
    total = sum(len(v) for v in sizes.values())
    shares = {k: len(v) / total for k, v in sizes.items()}
    assert 0.62 <= shares["small"] <= 0.78, shares
    assert 0.18 <= shares["medium"] <= 0.32, shares
    assert 0.02 <= shares["large"] <= 0.09, shares
    for bucket, target in (("small", 30_000), ("medium", 300_000), ("large", 2_500_000)):
        assert 0.8 * target <= statistics.median(sizes[bucket]) <= 1.2 * target, bucket


def test_malformed_ratio_and_kinds() -> None:
    spec = replace(FAST, snapshots=3000, malformed_ratio=0.05, users=40)
    kinds = Counter(s.kind for s in generate(spec))
    malformed = sum(n for k, n in kinds.items() if k != "ok")
    assert 0.035 <= malformed / spec.snapshots <= 0.065
    assert {k.split(":", 1)[1] for k in kinds if k != "ok"} == set(MALFORMED_KINDS)
    v1 = Counter(s.kind for s in generate(replace(spec, mix="v1")))
    assert {k.split(":", 1)[1] for k in v1 if k != "ok"} == set(MALFORMED_KINDS) - {"api_error_body"}


def test_ok_snapshots_are_objects_with_profile_data_and_times_are_distinct_and_ordered() -> None:
    spec = replace(FAST, malformed_ratio=0.05)
    previous = None
    for s in generate(spec):
        assert spec.start <= s.created_at < spec.start + timedelta(days=spec.span_days)
        assert previous is None or s.created_at > previous
        previous = s.created_at
        if s.kind == "ok":
            payload = orjson.loads(s.raw)
            assert isinstance(payload, dict)
            assert isinstance(parse_payload(payload)["ProfileData"], dict)
            assert s.user and s.namecode in ("", s.user)


@pytest.mark.parametrize(
    "spec",
    [FAST, SyntheticSpec(snapshots=150, users=25, seed=11), SyntheticSpec(snapshots=150, users=25, mix="v1")],
    ids=["fast", "mix", "v1"],
)
def test_every_case_normalizes_as_the_contract_says(spec: SyntheticSpec) -> None:
    cat = catalogs(spec)
    known = {"troop": set(cat.troops), "pet": set(cat.pets), "artifact": set(cat.artifacts)}
    used_missing: set[tuple[str, int]] = set()
    errors: Counter = Counter()
    for s in generate(spec):
        value = orjson.loads(s.raw)  # what psycopg hands over for a jsonb column
        if s.kind != "ok":
            with pytest.raises(EtlError) as info:
                normalize(value, s.namecode or None)
            assert info.value.error_type == s.expected_error, s.kind
            errors[s.kind] += 1
            continue
        snap = normalize(value, s.namecode or None)
        assert snap.namecode == s.user
        assert snap.troops and snap.pets
        extras = orjson.dumps([r.extra for r in (*snap.troops, *snap.pets, *snap.artifacts)])
        assert SECRET_MARKER.encode() not in extras
        for kind, rows, attr in (
            ("troop", snap.troops, "troop_id"),
            ("pet", snap.pets, "pet_id"),
            ("artifact", snap.artifacts, "artifact_id"),
        ):
            ids = [getattr(r, attr) for r in rows]
            assert len(ids) == len(set(ids))
            used_missing |= {(kind, i) for i in ids if i not in known[kind]}
    assert used_missing == set(cat.missing)
    if spec is FAST:
        assert set(errors) == {f"malformed:{k}" for k in MALFORMED_KINDS}


def test_awkward_cases_are_present() -> None:
    spec = SyntheticSpec(snapshots=200, users=30, size_mix=((1.0, 20_000),), mix="v1")
    counts: Counter = Counter()
    for s in generate(spec):
        if s.kind != "ok":
            continue
        payload = orjson.loads(s.raw)
        profile = payload["ProfileData"]
        counts["no_namecode_in_payload"] += "NameCode" not in payload
        counts["keyed"] += isinstance(profile["Troops"], dict)
        counts["sensitive"] += SECRET_MARKER.encode() in s.raw
        if isinstance(profile["Troops"], list):
            ids = [t["TroopId"] for t in profile["Troops"]]
            counts["duplicate"] += len(ids) != len(set(ids))
    assert all(counts[k] > 0 for k in ("no_namecode_in_payload", "keyed", "sensitive", "duplicate")), counts


def test_the_newest_snapshot_of_a_user_has_grown() -> None:
    spec = SyntheticSpec(snapshots=120, users=6, size_mix=((1.0, 20_000),), malformed_ratio=0)
    by_user: dict[str, list[dict[int, int]]] = defaultdict(list)
    for s in generate(spec):
        snap = normalize(orjson.loads(s.raw), s.namecode or None)
        by_user[s.user].append({t.troop_id: t.amount for t in snap.troops})
    grew = 0
    for history in by_user.values():
        first, last = history[0], history[-1]
        common = first.keys() & last.keys()
        assert common
        assert sum(last[i] for i in common) > sum(first[i] for i in common)
        grew += 1
    assert grew == spec.users


def test_the_v1_mix_has_only_v1_shapes() -> None:
    spec = SyntheticSpec(snapshots=200, users=30, size_mix=((1.0, 6_000),), malformed_ratio=0.1, mix="v1")
    for s in generate(spec):
        assert s.shape == "v1" and s.kind != "malformed:api_error_body"
        value = orjson.loads(s.raw)
        if s.kind == "ok":
            assert "result" not in value and "NameCode" not in value["ProfileData"] and s.namecode == s.user
            assert "username" not in value["ProfileData"] and "GuildName" not in value["ProfileData"]


def test_the_v2_mix_is_mostly_enveloped_keyed_real_shapes() -> None:
    spec = SyntheticSpec(snapshots=400, users=40, size_mix=((1.0, 6_000),), malformed_ratio=0.05)
    counts: Counter = Counter()
    for s in generate(spec):
        value = orjson.loads(s.raw)
        counts[s.kind] += 1
        if s.kind == "malformed:api_error_body":
            body = value.get("result", value)
            assert set(body) == {"code", "error"}
            with pytest.raises(EtlError) as info:
                normalize(value)
            assert info.value.details["reason"] == "api_error"
        if s.kind != "ok":
            continue
        counts[s.shape] += 1
        if s.shape == "v1":
            assert "ProfileData" in value
            continue
        profile = value["result"]["ProfileData"]
        assert set(value) == {"result"} and profile["NameCode"] == s.user
        counts["keyed"] += isinstance(profile["Troops"], dict) and isinstance(profile["Pets"], dict)
        counts["no column"] += s.namecode == ""
        counts["guild name with spaces"] += profile.get("GuildName", "").endswith(" ")
        assert SECRET_MARKER in profile["username"] and {"KingdomLevels", "Progress", "GoldBonus"} <= set(profile)
        assert "Guild" not in profile
        snap = normalize(value, s.namecode or None)
        assert snap.summary_extra.get("guild_name") == profile.get("GuildName")
        assert all("EliteLevel" in t.extra for t in snap.troops)
    ok = counts["v1"] + counts["v2"]
    assert 0.7 <= counts["v2"] / ok <= 0.9, counts
    assert counts["keyed"] >= 0.9 * counts["v2"] and 0.2 <= counts["no column"] / counts["v2"] <= 0.45, counts
    assert counts["guild name with spaces"] > 0 and counts["malformed:api_error_body"] >= 2, counts


def test_an_unknown_mix_is_refused() -> None:
    with pytest.raises(ValueError, match="mix"):
        next(generate(SyntheticSpec(mix="v3")))
