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
from starforge_backfill.etl.contract import normalize
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
            assert isinstance(payload["ProfileData"], dict)
            assert s.namecode


@pytest.mark.parametrize("spec", [FAST, SyntheticSpec(snapshots=150, users=25, seed=11)], ids=["fast", "mix"])
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
        assert snap.namecode == s.namecode
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
    spec = SyntheticSpec(snapshots=200, users=30, size_mix=((1.0, 20_000),))
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
        snap = normalize(orjson.loads(s.raw), s.namecode)
        by_user[s.namecode].append({t.troop_id: t.amount for t in snap.troops})
    grew = 0
    for history in by_user.values():
        first, last = history[0], history[-1]
        common = first.keys() & last.keys()
        assert common
        assert sum(last[i] for i in common) > sum(first[i] for i in common)
        grew += 1
    assert grew == spec.users
