"""Gates bound to their scope: the database, range and concurrency a preflight approved are what `run` may do.

Gate artifacts are written per database and never overwritten; a job keeps copies of the gate artifacts it
relied on (gates.json, sha256) so its manifest covers them.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import psycopg
import pytest
from click.testing import CliRunner
from runbook_corpus import FROM, T0, TO, load_corpus, make_cfg
from running import run_job

from starforge_backfill import artifacts
from starforge_backfill.cli import main
from starforge_backfill.config import Config
from starforge_backfill.errors import GateFailed
from starforge_backfill.runbook import step_files
from starforge_backfill.runbook.gates import database_identity, record_gate
from starforge_backfill.runbook.preflight import preflight
from starforge_backfill.runbook.report import write_manifest
from starforge_backfill.schema import init_db

LENIENT = {"throttle.failure_rate_max": 0.5}  # the corpus fails 15% on purpose; these tests are about gates


def _cfg(dsn: str, tmp_path: Path) -> Config:
    return make_cfg(dsn, tmp_path / "art", **LENIENT)


def _approve(cfg: Config, *, concurrency: int = 2) -> None:
    """A passing preflight over [FROM, TO) at `concurrency` and a passing canary, recorded on cfg's database,
    each with a real artifact written the way the steps write theirs."""
    with psycopg.connect(cfg.database.dsn, autocommit=True) as conn:
        db = database_identity(conn)
        for kind in ("preflight", "canary"):
            body = {"step": kind, "passed": True, "from_ts": FROM, "to_ts": TO, "concurrency": concurrency}
            path = step_files.write_step(cfg, db, kind, kind, body)
            record_gate(
                conn,
                kind,
                cfg.fingerprint(),
                True,
                from_ts=T0,
                to_ts=T0 + dt.timedelta(days=10),
                concurrency=concurrency if kind == "preflight" else 1,
                artifact=path,
            )


def _jobs(dsn: str) -> list[dict[str, Any]]:
    with psycopg.connect(dsn) as conn:
        cur = conn.execute("SELECT job_id, concurrency FROM backfill_jobs ORDER BY started_at")
        return [{"job_id": r[0], "concurrency": r[1]} for r in cur.fetchall()]


def _events(dsn: str, job_id: str, kind: str) -> list[dict[str, Any]]:
    with psycopg.connect(dsn) as conn:
        cur = conn.execute(
            "SELECT message, details FROM backfill_events WHERE job_id = %s AND kind = %s ORDER BY id", [job_id, kind]
        )
        return [{"message": r[0], "details": r[1]} for r in cur.fetchall()]


def test_a_preflight_records_its_database_and_concurrency_and_never_overwrites(
    pg_dsn: str, empty_dsn: str, tmp_path: Path
) -> None:
    load_corpus(pg_dsn)
    cfg = _cfg(pg_dsn, tmp_path)
    first = preflight(cfg, from_ts=FROM, to_ts=TO, backup_id="snap-1", concurrency=3)
    second = preflight(cfg, from_ts=FROM, to_ts=TO, backup_id="snap-2", concurrency=3)
    with psycopg.connect(pg_dsn) as conn:
        sysid, name = conn.execute(
            "SELECT system_identifier::text, current_database() FROM pg_control_system()"
        ).fetchone()  # type: ignore[misc]
        rows = conn.execute(
            "SELECT db_system_identifier, db_name, concurrency, artifact FROM backfill_gates"
            " WHERE kind = 'preflight' ORDER BY id"
        ).fetchall()
    assert [r[:3] for r in rows] == [(sysid, name, 3), (sysid, name, 3)]
    assert [r[3] for r in rows] == [str(first.artifact), str(second.artifact)]
    # two stamped files, neither overwritten; preflight.json is the newest; each names its database
    assert first.artifact != second.artifact and first.artifact and second.artifact
    folder = first.artifact.parent
    assert folder == Path(cfg.artifacts_dir) / "runbook" / f"{name}-{sysid}" / cfg.fingerprint()[:12]
    assert sorted(p.name for p in folder.glob("preflight*.json")) == sorted(
        ["preflight.json", first.artifact.name, second.artifact.name]
    )
    one = artifacts.read_json(first.artifact, "preflight")
    assert one["checks"][0]["name"] == "backup" and one["checks"][0]["data"]["backup_id"] == "snap-1"
    assert (folder / "preflight.json").read_bytes() == second.artifact.read_bytes()
    host = conninfo_host(pg_dsn)
    assert one["database"] == {"system_identifier": sysid, "name": name, "address": f"{host}/{name}"}
    assert "password" not in json.dumps(one["database"])

    # a preflight on another database writes beside it, not over it
    init_db(empty_dsn)
    load_corpus(empty_dsn)
    kept = first.artifact.read_bytes(), (folder / "preflight.json").read_bytes()
    other = preflight(_cfg(empty_dsn, tmp_path), from_ts=FROM, to_ts=TO, backup_id="snap-3", concurrency=3)
    assert other.artifact is not None and other.artifact.parent.parent.parent == folder.parent.parent
    assert other.artifact.parent != folder
    assert (first.artifact.read_bytes(), (folder / "preflight.json").read_bytes()) == kept
    assert (
        artifacts.read_json(other.artifact)["database"]["name"]
        == psycopg.conninfo.conninfo_to_dict(empty_dsn)["dbname"]
    )


def conninfo_host(dsn: str) -> str:
    params = psycopg.conninfo.conninfo_to_dict(dsn)
    return f"{params.get('host')}:{params.get('port') or 5432}"


def test_a_run_inside_its_gates_starts_and_keeps_the_gate_artifacts(pg_dsn: str, tmp_path: Path) -> None:
    load_corpus(pg_dsn)
    cfg = _cfg(pg_dsn, tmp_path)
    _approve(cfg, concurrency=2)
    res = run_job(cfg, from_ts="2024-01-02T00:00:00Z", to_ts=TO, concurrency=2)
    job_id = str(res.job["job_id"])
    assert [j["job_id"] for j in _jobs(pg_dsn)] == [job_id]
    folder = Path(cfg.artifacts_dir) / job_id
    listed = artifacts.read_json(folder / "gates.json", "gates")["gates"]
    assert [g["kind"] for g in listed] == ["preflight", "canary"]
    for g in listed:
        copy = folder / g["file"]
        assert Path(g["source"]).read_bytes() == copy.read_bytes()
        assert g["sha256"] == artifacts.sha256_file(copy)
        assert artifacts.read_json(copy)["database"]["name"] == g["database"]["name"]
    manifest = artifacts.read_json(write_manifest(folder, job_id), "manifest")["files"]
    assert {g["file"] for g in listed} | {"gates.json"} <= set(manifest)


def test_a_gate_from_another_database_refuses_the_run(pg_dsn: str, empty_dsn: str, tmp_path: Path) -> None:
    """A restore or clone carries backfill_gates along: those rows prove nothing about this database."""
    load_corpus(pg_dsn)
    _approve(_cfg(pg_dsn, tmp_path))
    init_db(empty_dsn)
    load_corpus(empty_dsn)
    with psycopg.connect(pg_dsn) as src, psycopg.connect(empty_dsn, autocommit=True) as dst:
        cols = (
            "kind, config_fingerprint, passed, job_id, from_ts, to_ts, artifact, details,"
            " db_system_identifier, db_name, concurrency, created_at"
        )
        with dst.cursor().copy(f"COPY backfill_gates ({cols}) FROM STDIN") as copy:
            with src.cursor().copy(f"COPY backfill_gates ({cols}) TO STDOUT") as out:
                for block in out:
                    copy.write(block)
    other = _cfg(empty_dsn, tmp_path)
    assert other.fingerprint() == _cfg(pg_dsn, tmp_path).fingerprint()  # the same config: only the database differs
    src_name = psycopg.conninfo.conninfo_to_dict(pg_dsn)["dbname"]
    with pytest.raises(GateFailed, match=rf"the preflight was recorded on database {src_name} \(system \d+\), not on"):
        run_job(other, from_ts=FROM, to_ts=TO, concurrency=2)
    assert _jobs(empty_dsn) == []


def test_a_run_outside_the_approved_range_refuses(pg_dsn: str, tmp_path: Path) -> None:
    load_corpus(pg_dsn)
    cfg = _cfg(pg_dsn, tmp_path)
    _approve(cfg)
    with pytest.raises(GateFailed) as info:
        run_job(cfg, from_ts=FROM, to_ts="2024-01-12T00:00:00Z", concurrency=2)
    assert str(info.value).startswith(
        "run refused: the run's range [2024-01-01T00:00:00+00:00, 2024-01-12T00:00:00+00:00) is not inside "
        "the preflight's approved range [2024-01-01T00:00:00+00:00, 2024-01-11T00:00:00+00:00)"
    )
    with pytest.raises(GateFailed, match="is not inside the preflight's approved range"):
        run_job(cfg, from_ts="2023-12-31T00:00:00Z", to_ts="2024-01-05T00:00:00Z", concurrency=2)
    # the CLI: exit 1, one line naming the mismatch
    yaml = tmp_path / "cfg.yaml"
    yaml.write_text("throttle:\n  failure_rate_max: 0.5\n")  # LENIENT: the same config fingerprint
    args = ["-c", str(yaml), "--dsn", pg_dsn, "--artifacts-dir", cfg.artifacts_dir, "run", *("--from", FROM)]
    args += ["--to", "2024-01-12"]
    res = CliRunner().invoke(main, [*args, "--concurrency", "2"], env={"STARFORGE_DATABASE_URL": None})
    assert res.exit_code == 1, res.output
    assert res.stderr.splitlines()[0].startswith("error: run refused: the run's range [2024-01-01T00:00:00+00:00, ")
    assert _jobs(pg_dsn) == []


def test_a_run_above_the_approved_concurrency_refuses(pg_dsn: str, tmp_path: Path) -> None:
    load_corpus(pg_dsn)
    cfg = _cfg(pg_dsn, tmp_path)
    _approve(cfg, concurrency=2)
    with pytest.raises(GateFailed, match=r"^run refused: concurrency 3 exceeds the 2 the preflight approved$"):
        run_job(cfg, from_ts=FROM, to_ts=TO, concurrency=3)
    assert _jobs(pg_dsn) == []


def test_raising_an_existing_jobs_concurrency_above_the_approved_refuses(pg_dsn: str, tmp_path: Path) -> None:
    load_corpus(pg_dsn)
    cfg = _cfg(pg_dsn, tmp_path)
    _approve(cfg, concurrency=2)
    job_id = str(run_job(cfg, from_ts=FROM, to_ts=TO, concurrency=1).job["job_id"])
    with psycopg.connect(pg_dsn, autocommit=True) as conn:  # unfinished again: `run` on the range takes it up
        conn.execute("UPDATE backfill_jobs SET status = 'failed' WHERE job_id = %s", [job_id])
    with pytest.raises(GateFailed, match=r"^run refused: concurrency 3 exceeds the 2 the preflight approved$"):
        run_job(cfg, from_ts=FROM, to_ts=TO, concurrency=3)
    assert _jobs(pg_dsn) == [{"job_id": job_id, "concurrency": 1}]
    with psycopg.connect(pg_dsn) as conn:  # nothing written by the refusal: still failed, no resumed event
        assert conn.execute("SELECT status FROM backfill_jobs").fetchone() == ("failed",)
    assert _events(pg_dsn, job_id, "resumed") == []
    run_job(cfg, from_ts=FROM, to_ts=TO, concurrency=2)  # within the approval: raised and recorded
    assert _jobs(pg_dsn) == [{"job_id": job_id, "concurrency": 2}]
    assert [e["details"]["to"] for e in _events(pg_dsn, job_id, "concurrency")] == [2]


def test_force_reason_overrides_and_records_what(pg_dsn: str, tmp_path: Path) -> None:
    load_corpus(pg_dsn)
    cfg = _cfg(pg_dsn, tmp_path)
    _approve(cfg, concurrency=2)
    res = run_job(cfg, from_ts=FROM, to_ts="2024-01-12T00:00:00Z", concurrency=3, force=True, reason="ticket 42")
    job_id = str(res.job["job_id"])
    assert _jobs(pg_dsn) == [{"job_id": job_id, "concurrency": 3}]
    (forced,) = _events(pg_dsn, job_id, "forced")
    assert forced["details"]["reason"] == "ticket 42"
    overridden = forced["details"]["overridden"]
    assert len(overridden) == 2
    assert overridden[0].startswith("the run's range [2024-01-01T00:00:00+00:00, 2024-01-12T00:00:00+00:00) is not")
    assert overridden[1] == "concurrency 3 exceeds the 2 the preflight approved"
    assert forced["message"] == "gates skipped with --force: " + "; ".join(overridden)


def test_database_identity_for_a_plain_role_and_where_pg_control_system_is_revoked(pg_dsn: str) -> None:
    """Any role may read the system identifier on PostgreSQL 15; where an administrator revoked
    pg_control_system() the identity falls back to the database name (and says so with a None id)."""
    import secrets

    role = f"gate_probe_{secrets.token_hex(3)}"
    params = psycopg.conninfo.conninfo_to_dict(pg_dsn)
    as_role = psycopg.conninfo.make_conninfo(pg_dsn, user=role)
    with psycopg.connect(pg_dsn, autocommit=True) as admin:
        sysid = admin.execute("SELECT system_identifier::text FROM pg_control_system()").fetchone()[0]  # type: ignore[index]
        admin.execute(psycopg.sql.SQL("CREATE ROLE {} LOGIN").format(psycopg.sql.Identifier(role)))
        try:
            with psycopg.connect(as_role, autocommit=True) as conn:
                plain = database_identity(conn)
            assert (plain["system_identifier"], plain["name"]) == (sysid, params["dbname"])
            admin.execute("REVOKE EXECUTE ON FUNCTION pg_control_system() FROM PUBLIC")  # this database only
            with psycopg.connect(as_role, autocommit=True) as conn:
                revoked = database_identity(conn)
                assert conn.execute("SELECT 1").fetchone() == (1,)  # the connection is still usable
            assert (revoked["system_identifier"], revoked["name"]) == (None, params["dbname"])
            assert revoked["slug"].startswith(f"{params['dbname']}-") and sysid not in revoked["slug"]
        finally:
            admin.execute(psycopg.sql.SQL("DROP ROLE {}").format(psycopg.sql.Identifier(role)))
