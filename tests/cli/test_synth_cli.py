"""`synth load`: the demo's synthetic snapshots into a staging database; real data refused unless --force."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import psycopg
import pytest
from opx_support import cli, insert_snapshots


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # no ./starforge-backfill.yaml


def _counts(dsn: str) -> dict[str, int]:
    with psycopg.connect(dsn) as conn:
        rows = conn.execute("SELECT coalesce(source, '<null>'), count(*) FROM hero_snapshots GROUP BY 1").fetchall()
    return {r[0]: r[1] for r in rows}


def test_loads_n_snapshots_and_says_what(pg_dsn: str) -> None:
    res = cli("--dsn", pg_dsn, "--json", "synth", "load", "--snapshots", "40", "--seed", "3", "--bad-rate", "0.1")
    assert res.exit_code == 0, res.output
    body = json.loads(res.stdout)
    assert _counts(pg_dsn) == {"synthetic": 40}
    with psycopg.connect(pg_dsn) as conn:
        lo, hi, size = conn.execute(
            "SELECT min(created_at), max(created_at), sum(size_bytes) FROM hero_snapshots"
        ).fetchone()  # type: ignore[misc]
        troops = conn.execute("SELECT count(*) FROM troop_catalog").fetchone()[0]  # type: ignore[index]
    assert body["snapshots"] == 40 and body["bytes"] == size and body["seed"] == 3 and body["bad_rate"] == 0.1
    assert sum(body["by_kind"].values()) == 40 and body["malformed"] == 40 - body["by_kind"].get("ok", 0) > 0
    assert dt.datetime.fromisoformat(body["from_ts"]) <= lo and hi < dt.datetime.fromisoformat(body["to_ts"])
    assert body["catalog_rows"]["troop_catalog"] == troops > 0
    assert body["forced"] is False and body["non_synthetic_before"] == 0
    assert body["database"]["name"] == psycopg.conninfo.conninfo_to_dict(pg_dsn)["dbname"]

    human = cli("--dsn", pg_dsn, "synth", "load", "--snapshots", "5", "--seed", "4", "--bad-rate", "0")
    assert human.exit_code == 0, human.output
    assert human.stdout.startswith("loaded 5 synthetic snapshot(s) (")
    assert _counts(pg_dsn) == {"synthetic": 45}
    # the same seed again would collide with the rows it wrote: refused, nothing added
    again = cli("--dsn", pg_dsn, "synth", "load", "--snapshots", "5", "--seed", "4")
    assert again.exit_code == 2 and "already loaded" in again.stderr.splitlines()[0]
    assert _counts(pg_dsn) == {"synthetic": 45}


def test_refuses_a_database_with_non_synthetic_snapshots_unless_forced(pg_dsn: str) -> None:
    insert_snapshots(pg_dsn, 3)  # source 'test': not the generator's
    with psycopg.connect(pg_dsn, autocommit=True) as conn:  # a NULL source is not synthetic either
        conn.execute("INSERT INTO hero_snapshots (raw, source) VALUES ('{}'::jsonb, NULL)")
    res = cli("--dsn", pg_dsn, "synth", "load", "--snapshots", "10")
    assert res.exit_code == 1, res.output
    first = res.stderr.splitlines()[0]
    assert first.startswith("error: synth load refused: ") and "already holds 4 non-synthetic snapshot(s)" in first
    assert "--force" in res.stderr
    assert _counts(pg_dsn) == {"test": 3, "<null>": 1}

    forced = cli("--dsn", pg_dsn, "--json", "synth", "load", "--snapshots", "10", "--force")
    assert forced.exit_code == 0, forced.output
    body = json.loads(forced.stdout)
    assert body["forced"] is True and body["non_synthetic_before"] == 4 and body["snapshots"] == 10
    assert _counts(pg_dsn) == {"test": 3, "<null>": 1, "synthetic": 10}


def test_bad_options_exit_2_before_connecting() -> None:
    unreachable = "postgresql://nobody@127.0.0.1:1/none?connect_timeout=1"
    for args, msg in (
        (["--snapshots", "0"], "--snapshots must be at least 1"),
        (["--snapshots", "5", "--bad-rate", "1.5"], "--bad-rate must be a share between 0 and 1"),
    ):
        res = cli("--dsn", unreachable, "synth", "load", *args)
        assert res.exit_code == 2, res.output
        assert msg in res.stderr.splitlines()[0]
