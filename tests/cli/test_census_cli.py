"""`census` through the CLI: the human tables, --json (one document), --sample saying so, exit codes."""

from __future__ import annotations

import json
from pathlib import Path

import psycopg
from opx_support import FROM, TO, cli, insert_snapshots

from starforge_backfill import artifacts

RANGE = ["--from", FROM, "--to", TO]


def _enveloped_and_errors(dsn: str) -> None:
    """Two enveloped snapshots with keyed sections in January 2024 (NameCode inside ProfileData) and one API
    error body in the same month, besides insert_snapshots' bare ones."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO hero_snapshots (id, namecode, source, raw, created_at) SELECT gen_random_uuid(), NULL, 't',"
            " jsonb_build_object('result', jsonb_build_object('ProfileData', jsonb_build_object('NameCode', 'E' || g,"
            " 'Troops', jsonb_build_object('6001', jsonb_build_object('Amount', g)), 'KingdomLevels', '{}'::jsonb))),"
            " timestamptz '2024-01-20' + g * interval '1 minute' FROM generate_series(1, 2) AS g"
        )
        conn.execute(
            "INSERT INTO hero_snapshots (id, namecode, source, raw, created_at) VALUES"
            " (gen_random_uuid(), 'X', 't', '{\"code\": 141, \"error\": \"Invalid session token\"}', '2024-01-21')"
        )


def test_census_human_output(pg_dsn: str, tmp_path: Path) -> None:
    insert_snapshots(pg_dsn, 20, bad_every=10)
    _enveloped_and_errors(pg_dsn)
    res = cli("--dsn", pg_dsn, "--artifacts-dir", str(tmp_path), "census", *RANGE, "--top", "2")
    assert res.exit_code == 0, res.output
    out = res.stdout
    assert "census [2024-01-01T00:00:00+00:00, 2024-02-01T00:00:00+00:00): 23 snapshot(s)" in out
    assert "exact: every snapshot of the range" in out and "SAMPLED" not in out
    assert "drift per month (UTC)" in out and "2024-01" in out
    assert "unknown ProfileData keys: KingdomLevels 2" in out
    assert "would fail: 3 of 23 (13.0%): not_object 2 (8.7%, PARSE_ERROR), api_error 1 (4.3%, PARSE_ERROR)" in out
    written = Path(out.strip().splitlines()[-1].removeprefix("artifact "))
    body = artifacts.read_json(written, "census")
    assert body["totals"]["envelope"]["enveloped"]["snapshots"] == 2
    assert body["totals"]["namecode"]["profile_data"]["snapshots"] == 2


def test_census_json_and_sample(pg_dsn: str, tmp_path: Path) -> None:
    insert_snapshots(pg_dsn, 20, bad_every=10)
    _enveloped_and_errors(pg_dsn)
    res = cli("--dsn", pg_dsn, "--artifacts-dir", str(tmp_path), "--json", "census", *RANGE)
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert doc["step"] == "census" and doc["exact"] is True and doc["sampled"] is None
    assert doc["totals"]["snapshots"] == 23 and [m["month"] for m in doc["months"]] == ["2024-01"]
    assert doc["totals"]["verdict"]["ok"] == {"snapshots": 20, "share": round(20 / 23, 6)}
    assert doc["totals"]["troops"] == {
        "array": {"snapshots": 18, "share": round(18 / 23, 6)},
        "keyed": {"snapshots": 2, "share": round(2 / 23, 6)},
        "absent": {"snapshots": 0, "share": 0.0},
        "invalid": {"snapshots": 0, "share": 0.0},
    }
    assert doc["failing_shapes"][0] == {
        "shape": "not_object",
        "error_type": "PARSE_ERROR",
        "what": "not a JSON object (nor a double-encoded one)",
        "snapshots": 2,
        "share": round(2 / 23, 6),
    }

    res = cli("--dsn", pg_dsn, "--artifacts-dir", str(tmp_path), "census", *RANGE, "--sample", "100", "--json")
    assert res.exit_code == 0, res.output
    sampled = json.loads(res.stdout)
    assert sampled["exact"] is False and sampled["sampled"] == {
        "method": "TABLESAMPLE SYSTEM",
        "percent": 100.0,
        "seed": 42,
    }
    assert sampled["note"].startswith("SAMPLED: TABLESAMPLE SYSTEM (100%)")
    assert sampled["totals"]["verdict"] == doc["totals"]["verdict"]
    res = cli("--dsn", pg_dsn, "--artifacts-dir", str(tmp_path), "census", *RANGE, "--sample", "5")
    assert res.exit_code == 0, res.output
    assert "SAMPLED: TABLESAMPLE SYSTEM (5%) REPEATABLE (42)" in res.stdout


def test_census_exit_codes(pg_dsn: str, empty_dsn: str, tmp_path: Path) -> None:
    base = ["--artifacts-dir", str(tmp_path)]
    insert_snapshots(pg_dsn, 3)
    for args, message in (
        (["--sample", "0"], "Invalid value for '--sample'"),
        (["--sample", "101"], "Invalid value for '--sample'"),
        (["--top", "0"], "Invalid value for '--top'"),
    ):
        res = cli("--dsn", pg_dsn, *base, "census", *RANGE, *args)
        assert res.exit_code == 2 and message in res.stderr, res.output
    res = cli("--dsn", pg_dsn, *base, "census", "--from", TO, "--to", FROM)
    assert res.exit_code == 2 and res.stderr.splitlines()[0].startswith("error: --from (2024-02-01T00:00:00+00:00)")
    res = cli("--dsn", pg_dsn, *base, "census", "--from", "2030-01-01", "--to", "2030-02-01")
    assert res.exit_code == 2 and "nothing to census" in res.stderr and "hint: check --from/--to" in res.stderr
    res = cli("--dsn", pg_dsn, *base, "--json", "census", "--from", "2030-01-01", "--to", "2030-02-01")
    assert res.exit_code == 2 and json.loads(res.stdout)["error"]["exit_code"] == 2
    res = cli("--dsn", "postgresql://postgres@127.0.0.1:1/starforge?connect_timeout=2", *base, "census", *RANGE)
    assert res.exit_code == 3 and res.stderr.startswith("error: cannot connect to the database"), res.output
    res = cli("--dsn", empty_dsn, *base, "census", *RANGE)
    assert res.exit_code == 3 and res.stderr.startswith("error: the database lacks the expected schema"), res.output
    assert "Traceback" not in res.stderr
