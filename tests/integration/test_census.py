"""The census (runbook step before `sample`) and preflight's payload-shapes item, against a real PostgreSQL.

Each test inserts snapshots of known shapes (small builders below) and checks the census's counts per shape
and month, its sizes and its unknown keys against what was inserted."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.types.json import Jsonb
from runbook_corpus import make_cfg

from starforge_backfill import artifacts
from starforge_backfill.errors import EtlError, UsageError
from starforge_backfill.etl import contract
from starforge_backfill.runbook.census import CLASSES, census, judge_shapes, run_census, sensitive_re
from starforge_backfill.runbook.common import MB, percentile
from starforge_backfill.runbook.preflight import preflight

FROM = dt.datetime(2023, 11, 1, tzinfo=dt.UTC)
TO = dt.datetime(2024, 3, 1, tzinfo=dt.UTC)
NOV, JAN, FEB = "2023-11", "2024-01", "2024-02"


def when(month: str, day: int = 10) -> dt.datetime:
    year, mon = (int(p) for p in month.split("-"))
    return dt.datetime(year, mon, day, 12, tzinfo=dt.UTC)


def profile(**extra: Any) -> dict[str, Any]:
    """A v1 ProfileData: array sections."""
    return {
        "Level": 12,
        "Troops": [{"TroopId": 6001, "Amount": 2}],
        "Pets": [{"PetId": 101}],
        "Artifacts": [{"ArtifactId": 3}],
        **extra,
    }


def keyed_profile(**extra: Any) -> dict[str, Any]:
    """A v2 ProfileData as public clients read it: keyed sections."""
    return {"Troops": {"6001": {"Amount": 3, "EliteLevel": 2}}, "Pets": {"101": {"Level": 4}}, **extra}


def bare(pd: Any, namecode: str | None = "NC_TOP", **top: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"ProfileData": pd, **top}
    if namecode is not None:
        out["NameCode"] = namecode
    return out


def enveloped(pd: Any, **outer: Any) -> dict[str, Any]:
    return {"result": {"ProfileData": pd}, **outer}


def api_error(code: int = 141, message: str = "Invalid session token") -> dict[str, Any]:
    return {"code": code, "error": message}


def insert(
    conn: psycopg.Connection[Any],
    raw: Any,
    month: str,
    *,
    namecode: str | None = None,
    size: int | None = None,
    day: int = 10,
) -> uuid.UUID:
    """One hero_snapshots row: `raw` as jsonb (a str is stored as a jsonb string); `size` -> size_bytes."""
    sid = uuid.uuid4()
    conn.execute(
        "INSERT INTO hero_snapshots (id, namecode, source, raw, size_bytes, created_at)"
        " VALUES (%s, %s, 'test', %s, %s, %s)",
        [sid, namecode, Jsonb(raw), size, when(month, day)],
    )
    return sid


def _corpus(conn: psycopg.Connection[Any]) -> list[int]:
    """Three months of known shapes; returns the sizes stored (size_bytes of every row)."""
    sizes: list[int] = []

    def put(raw: Any, month: str, size: int, **kw: Any) -> None:
        insert(conn, raw, month, size=size, **kw)
        sizes.append(size)

    # November 2023: v1 shapes, one of them over 1 MiB, unknown keys Version (top) and KingdomLevels (profile)
    put(bare(profile()), NOV, 1_000)
    put(bare(profile(KingdomLevels={}), Name="Coco", Version=3), NOV, 2_000)
    put(bare(profile(KingdomLevels={}, Guild={"Name": "Knights"})), NOV, 2 * MB)
    # January 2024: the envelope with keyed sections and NameCode inside ProfileData (no column value),
    # an API error body, a double-encoded payload and two jsonb strings that are not objects
    for i in range(4):
        pd = keyed_profile(NameCode=f"NC_PD{i}", Name="Vesper", GuildName="Heirs ", KingdomLevels={}, Progress=1)
        if i < 2:
            pd["username"] = "login-name"
            pd["AuthTokenX"] = "t"
        put(enveloped(pd, Server="eu"), JAN, 3_000 + i)  # nothing of the outer object is kept: Server is not counted
    put(api_error(), JAN, 50, namecode="NC_COL")
    put(json.dumps(bare(profile(), Progress=2)), JAN, 400, namecode="NC_COL")
    put("<html>502 Bad Gateway</html>", JAN, 30, namecode="NC_COL")
    put('{"ProfileData": {"Troops": [', JAN, 20, namecode="NC_COL")  # a string, but not JSON inside
    # February 2024: every other failing shape, and a namecode only in the column
    put([1, 2, 3], FEB, 10, namecode="NC_COL")
    put({"data": {"ProfileData": profile()}}, FEB, 60, namecode="NC_COL")
    put(bare(None), FEB, 40)
    put(bare(profile(), namecode=None), FEB, 70)  # no namecode anywhere (column NULL)
    put(bare(profile(), namecode=""), FEB, 71, namecode="")  # empty strings are no namecode either
    put(bare(profile(Troops=5)), FEB, 80)
    put(bare(keyed_profile(Artifacts="none")), FEB, 81)
    put(bare(profile(), namecode=None), FEB, 90, namecode="NC_COL")
    # outside the range: never counted
    insert(conn, api_error(), "2024-03", size=10)
    insert(conn, api_error(), "2023-10", size=10, day=31)
    return sizes


def test_census_counts_every_shape_per_month_and_in_total(pg_conn: psycopg.Connection, tmp_path: Path) -> None:
    sizes = _corpus(pg_conn)
    res = run_census(pg_conn, FROM, TO, top=3)
    cut = run_census(pg_conn, FROM, TO, top=1)
    assert not res.sampled and res.sample_percent is None and "exact" in res.sampling_note()
    tot = res.totals
    assert tot.month is None and tot.snapshots == len(sizes) == 19
    assert [m.month for m in res.months] == [NOV, JAN, FEB]
    assert [m.snapshots for m in res.months] == [3, 8, 8]

    expected_totals = {
        "form": {"object": 15, "double_encoded": 1, "string": 2, "array": 1},
        "envelope": {"enveloped": 4, "bare": 12},
        "verdict": {
            "ok": 9,
            "not_object": 3,
            "api_error": 1,
            "no_profile_data": 1,
            "profile_data_not_object": 1,
            "no_namecode": 2,
            "invalid_section": 2,
        },
        "namecode": {"payload": 6, "profile_data": 4, "column": 1, "none": 2},
        "name": {"payload": 1, "profile_data": 4, "none": 8},
        "guild": {"guild": 1, "guild_name": 4, "none": 8},
        "troops": {"array": 7, "keyed": 5, "invalid": 1},
        "pets": {"array": 8, "keyed": 5},
        "artifacts": {"array": 8, "absent": 4, "invalid": 1},
    }
    assert {dim: {v: n for v, n in tot.counts[dim].items()} for dim in expected_totals} == expected_totals
    assert tot.failing == 10 and tot.failing_share == pytest.approx(10 / 19)

    nov, jan, feb = res.months
    assert nov.counts["verdict"] == {"ok": 3} and nov.counts["namecode"] == {"payload": 3}
    assert jan.counts["form"] == {"object": 5, "double_encoded": 1, "string": 2}
    assert jan.counts["envelope"] == {"enveloped": 4, "bare": 2}
    assert jan.counts["verdict"] == {"ok": 5, "api_error": 1, "not_object": 2}
    assert jan.counts["namecode"] == {"profile_data": 4, "payload": 1}
    assert jan.counts["troops"] == {"keyed": 4, "array": 1}
    assert jan.share("envelope", "enveloped") == pytest.approx(0.5)
    assert feb.counts["verdict"] == {
        "ok": 1,
        "not_object": 1,
        "no_profile_data": 1,
        "profile_data_not_object": 1,
        "no_namecode": 2,
        "invalid_section": 2,
    }
    assert feb.counts["namecode"] == {"payload": 2, "column": 1, "none": 2}
    assert sum(m.snapshots for m in res.months) == tot.snapshots
    for dim in CLASSES:  # the months add up to the totals, class by class
        for value in CLASSES[dim]:
            assert sum(m.count(dim, value) for m in res.months) == tot.count(dim, value), (dim, value)

    # sizes: nearest-rank percentiles of size_bytes, per month and in total
    assert tot.sizes == {
        "min_bytes": min(sizes),
        "p50_bytes": percentile(sizes, 50),
        "p95_bytes": percentile(sizes, 95),
        "max_bytes": 2 * MB,
        "over_big": 1,
        "size_from_column": 19,
    }
    assert nov.sizes["over_big"] == 1 and jan.sizes["over_big"] == feb.sizes["over_big"] == 0
    assert jan.sizes["p50_bytes"] == percentile([3000, 3001, 3002, 3003, 50, 400, 30, 20], 50) == 400
    assert feb.sizes["min_bytes"] == 10 and feb.sizes["max_bytes"] == 90

    # unknown keys: counted once per snapshot, the top 3, ties by key, sensitive ones never named
    assert tot.top_keys == [("Progress", 1), ("Version", 1), ("data", 1)]  # ties by key, code point order
    assert tot.profile_keys == [("KingdomLevels", 6), ("Progress", 4), ("[REDACTED]", 2)]
    assert nov.top_keys == [("Version", 1)] and nov.profile_keys == [("KingdomLevels", 2)]
    assert jan.profile_keys == [("KingdomLevels", 4), ("Progress", 4), ("[REDACTED]", 2)]
    assert feb.top_keys == [("data", 1)] and feb.profile_keys == []
    assert cut.totals.top_keys == [("Progress", 1)] and cut.totals.profile_keys == [("KingdomLevels", 6)]
    assert cut.months[1].profile_keys == [("KingdomLevels", 4)] and cut.totals.counts == tot.counts
    text = json.dumps(res.to_json())
    assert "username" not in text and "AuthTokenX" not in text and "login-name" not in text
    assert "Server" not in text


def test_census_step_writes_its_artifact_and_refuses_an_empty_range(
    pg_conn: psycopg.Connection, pg_dsn: str, tmp_path: Path
) -> None:
    _corpus(pg_conn)
    cfg = make_cfg(pg_dsn, tmp_path)
    res = census(cfg, from_ts="2024-01-01", to_ts="2024-02-01", top=2)
    assert res.totals.snapshots == 8 and [m.month for m in res.months] == [JAN]
    assert res.artifact is not None and res.artifact.name.startswith("census-")
    assert (res.artifact.parent / "census.json").read_bytes() == res.artifact.read_bytes()
    body = artifacts.read_json(res.artifact, "census")
    assert body["step"] == "census" and body["exact"] is True and body["sampled"] is None
    assert body["totals"]["verdict"]["api_error"] == {"snapshots": 1, "share": 0.125}
    assert body["months"][0]["month"] == JAN and body["top"] == 2
    assert body["failing_shapes"] == [
        {
            "shape": "not_object",
            "error_type": "PARSE_ERROR",
            "what": "not a JSON object (nor a double-encoded one)",
            "snapshots": 2,
            "share": 0.25,
        },
        {
            "shape": "api_error",
            "error_type": "PARSE_ERROR",
            "what": "API error body (an `error` key, no ProfileData)",
            "snapshots": 1,
            "share": 0.125,
        },
    ]
    with pytest.raises(UsageError, match="nothing to census"):
        census(cfg, from_ts="2030-01-01", to_ts="2030-02-01")
    with pytest.raises(UsageError, match="must be before"):
        census(cfg, from_ts="2024-02-01", to_ts="2024-01-01")
    with pytest.raises(UsageError, match="--sample"):
        census(cfg, from_ts="2024-01-01", to_ts="2024-02-01", sample_percent=0)
    with pytest.raises(UsageError, match="--top"):
        census(cfg, from_ts="2024-01-01", to_ts="2024-02-01", top=0)
    hurried = make_cfg(pg_dsn, tmp_path, **{"database.statement_timeout": "1ms"})
    with pytest.raises(UsageError, match=r"ran past database\.statement_timeout") as err:
        census(hurried, from_ts="2024-01-01", to_ts="2024-02-01")
    assert err.value.hint is not None and "--sample PERCENT" in err.value.hint


def test_a_size_falls_back_to_the_jsonb_text(pg_conn: psycopg.Connection) -> None:
    sid = insert(pg_conn, bare(profile(), Note="x" * 5000), JAN)
    res = run_census(pg_conn, FROM, TO)
    text_len = pg_conn.execute("SELECT octet_length(raw::text) FROM hero_snapshots WHERE id = %s", [sid]).fetchone()
    assert text_len is not None and text_len[0] > 5000
    assert res.totals.sizes["min_bytes"] == res.totals.sizes["max_bytes"] == text_len[0]
    assert res.totals.sizes["size_from_column"] == 0


@pytest.mark.parametrize(
    ("inner", "form"),
    [
        ('{"ProfileData": {"Troops": []}, "NameCode": "A"}', "double_encoded"),
        (' \n{"a": [1, -2.5e3, true, null, {"b": "q\\"\\\\\\u00e9\\ud83d\\ude00"}], "c": {}}\t', "double_encoded"),
        ('{"ProfileData": {', "string"),
        ('{"a": 01}', "string"),
        ('{"a": 1,}', "string"),
        ('{"a": NaN}', "string"),
        ('{"a": "\\u0000"}', "string"),
        ('{"a": "\\ud83d"}', "string"),
        ('{"a": 1 2}', "string"),
        ('{"a": n}', "string"),  # the letters a check could confuse with its own tokens
        ('{"a": s, "b": v, "c": o}', "string"),
        ('{"a": tru}', "string"),
        ('{"a": \u0001}', "string"),
        ('{"a": "x", "b": [true, false, null, 0, -0.0, 1E+5]}', "double_encoded"),
        ('{"a": "no escapes at all", "b": {"c": ["d"]}}', "double_encoded"),
        ("[1, 2]", "string"),
        ('"{}"', "string"),
        ("{}", "double_encoded"),
    ],
)
def test_double_encoding_is_a_json_object_inside_a_jsonb_string(
    pg_conn: psycopg.Connection, inner: str, form: str
) -> None:
    insert(pg_conn, inner, JAN, namecode="NC")
    res = run_census(pg_conn, FROM, TO)
    assert res.totals.counts["form"] == {form: 1}
    # the reference path agrees on what is an object (the census is stricter only where jsonb refuses)
    try:
        decoded = json.loads(inner)
    except ValueError:
        decoded = None
    if form == "double_encoded":
        assert isinstance(decoded, dict)
    elif "\\u0000" not in inner and '\\ud83d"' not in inner:
        with pytest.raises(EtlError):
            contract.parse_payload(inner)


def test_sensitive_keys_are_matched_in_any_case() -> None:
    import re

    pattern = re.compile(sensitive_re())
    for key in ("username", "UserName", "x_auth", "SESSIONID", "apiToKen", "Passwd", "my_secret", "PASSWORD"):
        assert pattern.search(key), key
    assert pattern.search("to\u212aen") and not pattern.search("Level") and not pattern.search("KingdomLevels")


def test_a_sample_says_so_and_100_percent_reads_everything(pg_conn: psycopg.Connection) -> None:
    _corpus(pg_conn)
    # 3,000 more small snapshots, so that the table spans many blocks
    pg_conn.execute(
        "INSERT INTO hero_snapshots (id, namecode, source, raw, size_bytes, created_at)"
        " SELECT gen_random_uuid(), 'NC' || g, 'test', jsonb_build_object('ProfileData', jsonb_build_object("
        " 'Troops', jsonb_build_array(jsonb_build_object('TroopId', g)))), 100, %s::timestamptz + g * interval '1 s'"
        " FROM generate_series(1, 3000) AS g",
        [when(JAN)],
    )
    exact = run_census(pg_conn, FROM, TO)
    assert exact.totals.snapshots == 3019
    full = run_census(pg_conn, FROM, TO, sample_percent=100, seed=7)
    assert full.sampled and full.to_json()["sampled"] == {"method": "TABLESAMPLE SYSTEM", "percent": 100.0, "seed": 7}
    assert full.to_json()["exact"] is False and full.sampling_note().startswith("SAMPLED: TABLESAMPLE SYSTEM (100%)")
    assert full.totals.counts == exact.totals.counts and full.totals.sizes == exact.totals.sizes
    part = run_census(pg_conn, FROM, TO, sample_percent=20, seed=7)
    again = run_census(pg_conn, FROM, TO, sample_percent=20, seed=7)
    assert 0 < part.totals.snapshots < 3019 and part.totals.counts == again.totals.counts  # REPEATABLE


def _ok_and_errors(conn: psycopg.Connection[Any], ok: int, errors: int, no_namecode: int = 0) -> None:
    for i in range(ok):
        insert(conn, enveloped(keyed_profile(NameCode=f"NC{i}")), JAN, day=1 + i % 28)
    for i in range(errors):
        insert(conn, api_error(message=f"e{i}"), FEB)
    for _ in range(no_namecode):
        insert(conn, bare(profile(), namecode=None), FEB)


def test_payload_shapes_pass_within_the_budget_and_fail_over_it_naming_the_shape(pg_conn: psycopg.Connection) -> None:
    _ok_and_errors(pg_conn, ok=99, errors=1)
    passed, detail, data = judge_shapes(pg_conn, FROM, TO, budget=0.01, seed=1)
    assert passed, detail  # 1 of 100 is not over 1%
    assert detail.startswith("1.0% would fail by shape (within the budget 1.0%): api_error 1.0% (PARSE_ERROR)")
    assert "99.0% enveloped" in detail and "exact census of 100 snapshot(s)" in detail
    assert data["exact"] and data["failing"] == 1 and data["in_range"] == 100 and data["snapshots"] == 100

    _ok_and_errors(pg_conn, ok=0, errors=1, no_namecode=2)
    passed, detail, data = judge_shapes(pg_conn, FROM, TO, budget=0.01, seed=1)
    assert not passed
    assert detail.startswith(
        "3.9% of the range would fail by its shape, over the error budget 1.0% (throttle.failure_rate_max): "
        "api_error 1.9% (PARSE_ERROR), no_namecode 1.9% (VALIDATION_ERROR); exact census of 103 snapshot(s)"
    ), detail
    assert [(f["shape"], f["snapshots"]) for f in data["failing_shapes"]] == [("api_error", 2), ("no_namecode", 2)]
    assert judge_shapes(pg_conn, FROM, TO, budget=0.05, seed=1)[0]

    pg_conn.execute("SET statement_timeout = 1")
    passed, detail, _ = judge_shapes(pg_conn, FROM, TO, budget=0.01, seed=1)
    assert not passed and "ran past database.statement_timeout" in detail, detail
    pg_conn.execute("RESET statement_timeout")

    passed, detail, _ = judge_shapes(
        pg_conn, dt.datetime(2030, 1, 1, tzinfo=dt.UTC), dt.datetime(2030, 2, 1, tzinfo=dt.UTC), budget=0.01, seed=1
    )
    assert not passed and detail.startswith("no snapshot in")


def test_payload_shapes_sample_a_big_range(pg_conn: psycopg.Connection) -> None:
    _ok_and_errors(pg_conn, ok=40, errors=10)
    _, detail, data = judge_shapes(pg_conn, FROM, TO, budget=0.01, seed=1, exact_max=10, sample_target=25)
    assert data["sampled"] == {"method": "TABLESAMPLE SYSTEM", "percent": 50.0, "seed": 1} and not data["exact"]
    assert "sampled: TABLESAMPLE SYSTEM (50%) read" in detail and "of the range's 50 snapshot(s)" in detail
    # a target above the range's size: a 100% sample, which reads every block
    passed, detail, data = judge_shapes(pg_conn, FROM, TO, budget=0.01, seed=1, exact_max=10, sample_target=100)
    assert data["sampled"]["percent"] == 100.0 and data["snapshots"] == 50
    assert not passed and "api_error 20.0% (PARSE_ERROR)" in detail
    assert "sampled: TABLESAMPLE SYSTEM (100%) read 50 of the range's 50 snapshot(s)" in detail


def test_preflight_has_the_payload_shapes_item(pg_conn: psycopg.Connection, pg_dsn: str, tmp_path: Path) -> None:
    _ok_and_errors(pg_conn, ok=90, errors=10)
    res = preflight(make_cfg(pg_dsn, tmp_path), from_ts=FROM, to_ts=TO)
    check = res.check("payload-shapes")
    assert check.result == "fail" and "payload-shapes" in res.failed
    assert "10.0% of the range would fail by its shape" in check.detail and "api_error 10.0%" in check.detail
    assert [c.name for c in res.checks].index("payload-shapes") == 4
    res = preflight(make_cfg(pg_dsn, tmp_path, **{"throttle.failure_rate_max": 0.1}), from_ts=FROM, to_ts=TO)
    assert res.check("payload-shapes").result == "pass"
    assert res.check("payload-shapes").data["failing_shapes"][0]["snapshots"] == 10
