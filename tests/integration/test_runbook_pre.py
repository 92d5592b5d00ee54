"""The runbook steps before a job (sample, dry-run, plan, preflight) against a real PostgreSQL."""

from __future__ import annotations

import http.server
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import sqlglot
from runbook_corpus import FROM, TO, load_corpus, make_cfg, state

from starforge_backfill import artifacts, templates
from starforge_backfill.errors import ExitCode, UsageError
from starforge_backfill.runbook import gates
from starforge_backfill.runbook.dry_run import dry_run
from starforge_backfill.runbook.plan import estimate, plan, recommend_batch_size, recommend_concurrency
from starforge_backfill.runbook.preflight import preflight
from starforge_backfill.runbook.sample import sample

# synthetic malformed kinds that fail by their shape (the census's FAILING verdicts); the others fail on values
SHAPE_FAILING_KINDS = {
    "api_error_body",  # the v2 mix's API error bodies (contract v2 rule 3)
    "top_level_array",
    "top_level_string",
    "missing_profile_data",
    "profile_data_not_object",
    "troops_not_array",
    "no_namecode",
}

# The corpus is 15% malformed on purpose: with the default error budget (1%) preflight's payload-shapes item
# fails on it (test_preflight_catalog_policy_fail_capacity_and_usage), so the tests of the other items raise it.
BUDGET = {"throttle.failure_rate_max": 0.2}
ATTESTED_ALL = {
    "backup_id": "snap-2024-01-11",
    "approved_by": ["engineering:alice", "sre:bob"],
    "attest": ["communication"],
}


@pytest.fixture
def corpus(pg_dsn: str) -> dict[str, str]:
    """The synthetic corpus loaded into this test's database: {snapshot id: kind}."""
    return load_corpus(pg_dsn)


def test_runbook_templates_parse() -> None:
    for name in templates.template_names():
        if name.startswith("runbook/"):
            trees = sqlglot.parse(templates.render(name), dialect="postgres")
            assert [type(t).__name__ for t in trees] == ["Select"], name


def test_dry_run_persists_nothing(
    pg_conn: psycopg.Connection, pg_dsn: str, corpus: dict[str, str], tmp_path: Path
) -> None:
    cfg = make_cfg(pg_dsn, tmp_path / "art")
    before = state(pg_conn)
    res = dry_run(cfg, from_ts=FROM, to_ts=TO)
    assert state(pg_conn) == before
    assert pg_conn.execute("SELECT count(*) FROM etl_events").fetchone() == (0,)  # rolled back with the rest

    stats = res.stats()
    bad = {sid for sid, kind in corpus.items() if kind != "ok"}
    assert stats["n"] == len(corpus) and stats["missing"] == 0
    assert stats["errors"] == len(bad) and {o.snapshot_id for o in res.outcomes if o.error_type} == bad
    assert set(stats["errors_by_type"]) == {"PARSE_ERROR", "VALIDATION_ERROR"}
    assert stats["rows_by_table"]["user_troops"] > 0 and stats["placeholders"] > 0
    assert stats["t_avg_s"] > 0 and stats["p95_s"] > 0 and stats["peak_rss_mb"] > 0
    assert res.passed and res.exit_code == ExitCode.OK
    # quarantine copies only inside the runbook folder; the artifact is versioned and complete
    (folder,) = (tmp_path / "art" / "runbook").glob(f"*/{cfg.fingerprint()[:12]}")
    assert sorted(p.stem for p in (folder / "dry-run-quarantine").iterdir()) == sorted(bad)
    assert {p.name for p in (tmp_path / "art").iterdir()} == {"runbook"}
    body = artifacts.read_json(folder / "dry-run.json", "dry-run")
    assert len(body["outcomes"]) == len(corpus) and body["passed"] is True
    gate = gates.latest_gate(pg_conn, "dry-run", cfg.fingerprint())
    assert gate is not None and gate["passed"]
    assert {"t_avg_s", "p95_s", "n", "errors_by_type", "peak_rss_mb"} <= set(gate["details"])
    assert gate["details"]["n"] == len(corpus)


def test_dry_run_on_staging_commits_there_only(
    pg_conn: psycopg.Connection, pg_dsn: str, empty_dsn: str, corpus: dict[str, str], tmp_path: Path
) -> None:
    from starforge_backfill.schema import init_db

    init_db(empty_dsn)
    load_corpus(empty_dsn)  # the same deterministic snapshots: a staging copy
    cfg = make_cfg(pg_dsn, tmp_path)
    before = state(pg_conn)
    ok = [sid for sid, kind in corpus.items() if kind == "ok"][:3]
    res = dry_run(cfg, ids=ok, staging_dsn=empty_dsn)
    assert res.passed and [o.outcome for o in res.outcomes] == ["applied"] * 3
    assert state(pg_conn) == before
    with psycopg.connect(empty_dsn) as staging:
        assert staging.execute("SELECT count(*) FROM hero_snapshots WHERE processed_at IS NOT NULL").fetchone() == (3,)
        events = staging.execute("SELECT event, job_id, snapshot_id FROM etl_events ORDER BY id").fetchall()
        assert [(e, j) for e, j, _ in events] == [("snapshot_processed", None)] * 3
        assert sorted(str(s) for *_, s in events) == sorted(ok)


def test_dry_run_fails_on_db_error(pg_conn: psycopg.Connection, pg_dsn: str, corpus: dict[str, str], tmp_path: Path):
    pg_conn.execute(
        "CREATE FUNCTION boom() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'boom'; END $$;"
        " CREATE TRIGGER boom BEFORE INSERT ON user_profile_summary FOR EACH ROW EXECUTE FUNCTION boom()"
    )
    cfg = make_cfg(pg_dsn, tmp_path)
    ok = [sid for sid, kind in corpus.items() if kind == "ok"][:2]
    bad = [sid for sid, kind in corpus.items() if kind != "ok"][:1]
    before = state(pg_conn)
    res = dry_run(cfg, ids=ok + bad + [str(uuid.uuid4())])
    assert state(pg_conn) == before
    assert [o.error_type for o in res.outcomes[:2]] == ["DB_ERROR", "DB_ERROR"]
    assert "boom" in (res.outcomes[0].message or "")
    assert res.outcomes[3].outcome == "missing"
    assert not res.passed and res.exit_code == ExitCode.CHECK_FAILED
    gate = gates.latest_gate(pg_conn, "dry-run", cfg.fingerprint())
    assert gate is not None and not gate["passed"] and gate["details"]["errors_by_type"]["DB_ERROR"] == 2


def test_dry_run_needs_a_selection(pg_dsn: str, tmp_path: Path) -> None:
    cfg = make_cfg(pg_dsn, tmp_path)
    with pytest.raises(UsageError, match="nothing to dry-run"):
        dry_run(cfg)
    with pytest.raises(UsageError, match="give one of"):
        dry_run(cfg, ids=[str(uuid.uuid4())], from_ts=FROM, to_ts=TO)


def test_sample_is_deterministic_and_covers_buckets_and_bad_ones(
    pg_conn: psycopg.Connection, pg_dsn: str, corpus: dict[str, str], tmp_path: Path
) -> None:
    cfg = make_cfg(pg_dsn, tmp_path)
    bad = sorted(sid for sid, kind in corpus.items() if kind != "ok")
    for sid in bad[:2]:  # errors a previous run recorded
        pg_conn.execute(
            "INSERT INTO etl_errors (snapshot_id, error_type, message) VALUES (%s, 'PARSE_ERROR', 'x')", [sid]
        )
    first = sample(cfg, from_ts=FROM, to_ts=TO, seed=11, buckets="3,3,4", include_bad=4)
    again = sample(cfg, from_ts=FROM, to_ts=TO, seed=11, buckets="3,3,4", include_bad=4)
    other = sample(cfg, from_ts=FROM, to_ts=TO, seed=12, buckets="3,3,4", include_bad=4)
    assert first.ids == again.ids and first.ids != other.ids
    assert len(set(first.ids)) == len(first.ids) == 14

    by_bucket = {b: [p for p in first.picks if p.bucket == b] for b in (1, 2, 3)}
    assert [len(v) for v in by_bucket.values()] == [3, 3, 4]
    assert max(p.size_bytes or 0 for p in by_bucket[1]) <= min(p.size_bytes or 0 for p in by_bucket[3])
    assert [s["snapshots"] for s in first.bucket_stats] == [16, 16, 16]  # ntile(3) of 48

    picked_bad = first.bad
    assert len(picked_bad) == 4 and all(corpus[p.snapshot_id] != "ok" for p in picked_bad)
    assert {p.snapshot_id for p in picked_bad if "etl_errors" in p.reason} == set(bad[:2])
    assert sum("pre-scan" in p.reason for p in picked_bad) == 2

    body = artifacts.read_json(other.artifact, "sample")  # type: ignore[arg-type]
    assert body["ids"] == other.ids and body["seed"] == 12  # the last sample wrote sample.json
    # without a selection the dry-run takes this config's sample.json
    res = dry_run(cfg)
    assert [o.snapshot_id for o in res.outcomes] == other.ids


def test_plan_arithmetic(
    pg_conn: psycopg.Connection, pg_dsn: str, corpus: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from starforge_backfill.runbook import plan as plan_module

    # the connection budget alone (a server on another host: its cores unknown); test_plan_caps_... covers cores
    monkeypatch.setattr(plan_module, "server_cores", lambda _host: None)
    assert estimate(10_000, 12, 10) == 12_000  # the runbook's example: 3.3 hours
    ids = list(corpus)
    pg_conn.execute("UPDATE hero_snapshots SET processed_at = now() WHERE id = ANY(%s::uuid[])", [ids[:10]])
    pg_conn.execute("UPDATE hero_snapshots SET error_count = 1 WHERE id = ANY(%s::uuid[])", [ids[10:15]])
    cfg = make_cfg(pg_dsn, tmp_path)

    res = plan(cfg, from_ts=FROM, to_ts=TO, t_avg_s=12, concurrency=3)
    assert res.n == 33  # not processed, no earlier error: the same rule as run
    assert [(e.concurrency, e.t_estimate_s) for e in res.estimates] == [
        (1, 396.0),
        (2, 198.0),
        (3, 132.0),
        (4, 99.0),
        (8, 49.5),
    ]
    assert res.capacity.budget == int(res.capacity.max_connections * 0.5)
    assert all(e.connections == e.concurrency + 1 for e in res.estimates)
    assert res.recommended_concurrency == 8  # no target: the largest candidate within the budget
    assert 50 <= res.recommended_batch_size <= 500

    # 33 * 12 s = 396 s; a 0.1 h (360 s) target needs C >= 1.1: the smallest candidate meeting it is 2
    res = plan(cfg, from_ts=FROM, to_ts=TO, t_avg_s=12, target_hours=0.1)
    assert res.recommended_concurrency == 2 and res.target_met
    # a 0.01 h (36 s) target needs C = 11, not among the candidates but within the budget
    res = plan(cfg, from_ts=FROM, to_ts=TO, t_avg_s=12, target_hours=0.01)
    assert res.recommended_concurrency == 11 and res.to_json()["recommended"]["t_estimate_s"] == 36.0
    assert artifacts.read_json(res.artifact, "plan")["recommended"]["concurrency"] == 11  # type: ignore[arg-type]

    with pytest.raises(UsageError, match="no dry-run"):
        plan(cfg, from_ts=FROM, to_ts=TO)
    gates.record_gate(pg_conn, "dry-run", cfg.fingerprint(), True, details={"t_avg_s": 0.5, "n": 10})
    res = plan(cfg, from_ts=FROM, to_ts=TO)
    assert res.t_avg_s == 0.5 and res.estimates[0].t_estimate_s == 16.5


def test_plan_caps_c_by_a_local_servers_cores_and_recommends_1_with_nothing_to_do(
    pg_conn: psycopg.Connection, pg_dsn: str, corpus: dict[str, str], tmp_path: Path
) -> None:
    import os

    cfg = make_cfg(pg_dsn, tmp_path)
    cores = os.cpu_count() or 1
    res = plan(cfg, from_ts=FROM, to_ts=TO, t_avg_s=12)  # the test server runs here: its cores are known
    assert res.server_cores == cores and res.to_json()["connections"]["server_cores"] == cores
    assert res.recommended_concurrency == max(c for c in (1, 2, 4, 8) if c <= cores)
    if cores < res.capacity.max_concurrency:
        assert f"the server's {cores} cores" in res.concurrency_reason
    pg_conn.execute("UPDATE hero_snapshots SET processed_at = now()")
    res = plan(cfg, from_ts=FROM, to_ts=TO, t_avg_s=12)
    assert res.n == 0 and res.recommended_concurrency == 1 and res.sizes["avg_bytes"] is None
    assert res.concurrency_reason.startswith("nothing to do")
    assert res.notes[0].startswith("nothing to do")


def test_plan_recommendations_pure() -> None:
    assert recommend_concurrency(0, 12, [1, 2, 4, 8], 50, None) == (
        1,
        "nothing to do: no snapshot of the range waits for a run",
    )
    assert recommend_concurrency(100, 12, [1, 2, 4, 8], 50, None, cores=2)[0] == 2
    assert recommend_concurrency(100, 12, [1, 2, 4, 8], 50, None, cores=None)[0] == 8
    assert recommend_batch_size(30_000, 60_000, 64 * 2**20, 250) == 500
    assert recommend_batch_size(400_000, 900_000, 64 * 2**20, 250) == 160
    assert recommend_batch_size(1_500_000, 1_900_000, 64 * 2**20, 250) == 50
    assert 10 <= recommend_batch_size(2_500_000, 3_200_000, 64 * 2**20, 250) <= 50
    assert recommend_batch_size(None, None, 64 * 2**20, 250) == 250
    # budget of 3 workers: the 100 s target needs C = 12 -> the largest candidate within the budget
    c, why = recommend_concurrency(100, 12, [1, 2, 4, 8], 3, 100)
    assert c == 2 and "beyond the connection budget" in why


def test_preflight_fails_without_backup(
    pg_conn: psycopg.Connection, pg_dsn: str, corpus: dict[str, str], tmp_path: Path
) -> None:
    cfg = make_cfg(pg_dsn, tmp_path, **{"metrics.file": str(tmp_path / "m.prom")}, **BUDGET)
    dry_run(cfg, from_ts=FROM, to_ts=TO, limit=5)
    res = preflight(cfg, from_ts=FROM, to_ts=TO, **{**ATTESTED_ALL, "backup_id": None})
    assert res.failed == ["backup"] and res.exit_code == ExitCode.CHECK_FAILED
    assert "--backup-id" in res.check("backup").detail
    gate = gates.latest_gate(pg_conn, "preflight", cfg.fingerprint())
    assert gate is not None and not gate["passed"] and gate["details"]["failed"] == ["backup"]


def test_preflight_passes_when_everything_is_present(
    pg_conn: psycopg.Connection, pg_dsn: str, corpus: dict[str, str], tmp_path: Path
) -> None:
    cfg = make_cfg(pg_dsn, tmp_path / "art", **{"metrics.file": str(tmp_path / "m.prom")}, **BUDGET)
    res = preflight(cfg, from_ts=FROM, to_ts=TO, **ATTESTED_ALL)
    assert res.failed == ["dry-run"]  # no dry-run recorded for this config yet

    assert dry_run(cfg, from_ts=FROM, to_ts=TO, limit=8).passed
    before = state(pg_conn)
    dump = tmp_path / "backup.dump"
    res = preflight(cfg, from_ts=FROM, to_ts=TO, take_backup=dump, concurrency=2, **ATTESTED_ALL)
    assert state(pg_conn) == before  # the streaming check rolled back
    assert res.passed and res.exit_code == ExitCode.OK, res.to_json()
    results = {c.name: c.result for c in res.checks}
    assert results == {
        "backup": "pass",
        "approvals": "attested",
        "dry-run": "pass",
        "streaming": "pass",
        "payload-shapes": "pass",
        "catalog-coverage": "pass",
        "capacity": "pass",
        "server-settings": "pass",
        "monitoring": "pass",
        "communication": "attested",
        "schema": "pass",
    }
    backup = res.check("backup").data
    assert backup["size_bytes"] == dump.stat().st_size > 0 and backup["sha256"] == artifacts.sha256_file(dump)
    assert dump.read_bytes()[:5] == b"PGDMP"
    catalog = res.check("catalog-coverage")
    assert "placeholder" in catalog.detail and catalog.data["scanned"] == len(corpus)
    assert sum(v["missing_ids"] for v in catalog.data["missing"].values()) == 5  # SPEC.missing_catalog_ids
    streaming = res.check("streaming").data
    assert streaming["size_bytes"] == max(
        r[0] for r in pg_conn.execute("SELECT size_bytes FROM hero_snapshots").fetchall()
    )
    gate = gates.latest_gate(pg_conn, "preflight", cfg.fingerprint())
    assert gate is not None and gate["passed"] and gate["details"]["backup"]["backup_id"] == "snap-2024-01-11"
    (newest,) = (tmp_path / "art" / "runbook").glob(f"*/{cfg.fingerprint()[:12]}/preflight.json")
    body = artifacts.read_json(newest, "preflight")
    assert body["passed"] and len(body["checks"]) == 11
    shapes = res.check("payload-shapes")
    failing = sum(1 for kind in corpus.values() if kind.split(":")[-1] in SHAPE_FAILING_KINDS)
    assert shapes.data["exact"] and shapes.data["snapshots"] == len(corpus) and shapes.data["failing"] == failing > 0
    assert "within the budget 20.0%" in shapes.detail


def test_preflight_catalog_policy_fail_capacity_and_usage(
    pg_conn: psycopg.Connection, pg_dsn: str, corpus: dict[str, str], tmp_path: Path
) -> None:
    cfg = make_cfg(pg_dsn, tmp_path, **{"etl.catalog_policy": "fail", "metrics.file": "m.prom"})
    max_conn = pg_conn.execute("SELECT current_setting('max_connections')::int").fetchone()[0]  # type: ignore[index]
    res = preflight(cfg, from_ts=FROM, to_ts=TO, concurrency=max_conn, **ATTESTED_ALL)
    assert {"catalog-coverage", "capacity"} <= set(res.failed)
    assert "FK_VIOLATION" in res.check("catalog-coverage").detail
    assert "exceeds the budget" in res.check("capacity").detail
    shapes = res.check("payload-shapes")  # the corpus's malformed shapes are over the default 1% budget
    assert "payload-shapes" in res.failed and "over the error budget 1.0% (throttle.failure_rate_max)" in shapes.detail
    assert "not_object" in shapes.detail and "no_profile_data" in shapes.detail
    assert "no snapshot in" in preflight(cfg, from_ts="2030-01-01", to_ts="2030-02-01").check("streaming").detail
    with pytest.raises(UsageError, match="ROLE:NAME"):
        preflight(cfg, from_ts=FROM, to_ts=TO, approved_by=["alice"])
    with pytest.raises(UsageError, match="must be before"):
        preflight(cfg, from_ts=TO, to_ts=FROM)


class _Ready(http.server.BaseHTTPRequestHandler):
    status = 200

    def do_GET(self) -> None:
        self.send_response(self.status if self.path == "/-/ready" else 404)
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *_args: Any) -> None:
        return None


@pytest.fixture
def prometheus() -> Iterator[tuple[str, type[_Ready]]]:
    handler = type("Handler", (_Ready,), {"status": 200})
    server = http.server.HTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", handler
    finally:
        server.shutdown()
        server.server_close()


def test_preflight_monitoring(pg_dsn: str, tmp_path: Path, prometheus: tuple[str, type[_Ready]]) -> None:
    url, handler = prometheus
    cfg = make_cfg(pg_dsn, tmp_path)
    assert preflight(cfg, from_ts=FROM, to_ts=TO).check("monitoring").result == "fail"
    cfg = make_cfg(pg_dsn, tmp_path, **{"metrics.port": 9109, "metrics.prometheus_url": url})
    check = preflight(cfg, from_ts=FROM, to_ts=TO).check("monitoring")
    # ready, but this stand-in serves no /api/v1/rules: the rules check (tests/deploy, a real Prometheus) fails
    assert check.result == "fail" and "Prometheus ready" in check.detail and "/api/v1/rules" in check.detail
    handler.status = 503
    check = preflight(cfg, from_ts=FROM, to_ts=TO).check("monitoring")
    assert check.result == "fail" and "HTTP 503" in check.detail


def test_preflight_on_a_database_without_the_schema(empty_dsn: str, tmp_path: Path) -> None:
    res = preflight(make_cfg(empty_dsn, tmp_path), from_ts=FROM, to_ts=TO, **ATTESTED_ALL)
    assert res.check("schema").result == "fail" and "db init" in res.check("schema").detail
    assert res.check("streaming").detail.startswith("not checked")
    assert res.exit_code == ExitCode.DATABASE  # exit 3, as every command on a database without the schema


def test_pg_dump_gets_the_password_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import subprocess

    from starforge_backfill.runbook import preflight as pf

    seen: dict[str, Any] = {}

    def fake_run(argv: list[str], *, env: dict[str, str], **_kw: Any) -> subprocess.CompletedProcess[str]:
        seen["argv"], seen["env"] = argv, env
        Path(next(a for a in argv if a.startswith("--file="))[7:]).write_bytes(b"PGDMP...")
        return subprocess.CompletedProcess(argv, 0, "", "")

    monkeypatch.setattr(pf.subprocess, "run", fake_run)
    out = pf._pg_dump("postgresql://backfill:s3cr%40t@db.example:5433/prod", tmp_path / "b.dump")
    assert out["size_bytes"] == 8 and out["database"] == "prod"
    assert not any("s3cr" in a for a in seen["argv"]) and seen["env"]["PGPASSWORD"] == "s3cr@t"
    assert "host=db.example" in " ".join(seen["argv"]) and "--format=custom" in seen["argv"]


def test_the_samples_largest_bucket_always_holds_the_ranges_biggest_snapshot(
    pg_conn: psycopg.Connection, pg_dsn: str, tmp_path: Path
) -> None:
    from starforge_backfill import demo, synthetic

    synthetic.load(pg_conn, demo.demo_spec(300))  # the demo's corpus: a 2-3 MB snapshot is ~0.5% of it
    biggest, size = pg_conn.execute(
        "SELECT id::text, coalesce(size_bytes, pg_column_size(raw)) AS s FROM hero_snapshots ORDER BY s DESC LIMIT 1"
    ).fetchone()
    assert size >= 2_000_000
    cfg = make_cfg(pg_dsn, tmp_path)
    for seed in range(1, 6):
        res = sample(cfg, from_ts="2024-01-01", to_ts="2024-07-01", seed=seed, buckets="3,3,4", include_bad=0)
        top = [p for p in res.picks if p.bucket == 3]
        assert len(top) == 4 and top[0].snapshot_id == biggest, seed
        assert "largest" in top[0].reason
