"""Quarantine copies in S3, against a real S3-compatible server (moto's standalone server, tests/s3_support.py):
a run uploads each failed snapshot's redacted copy after its batch committed and records the URL; the report
links them; an unreachable S3 changes nothing of the processing, leaves the copies local only (recorded, with
the error), and `quarantine push` uploads them later."""

from __future__ import annotations

import datetime as dt
import json
import socket
import time
import uuid
from pathlib import Path
from typing import Any

import psycopg
import pytest
from runbook_post_corpus import FROM, GOOD_USERS, TO, insert, load_corpus, make_cfg
from running import run_job
from s3_support import MotoServer, objects

from starforge_backfill import sqlview, templates
from starforge_backfill.config import Config
from starforge_backfill.errors import ExitCode, UsageError
from starforge_backfill.etl.pipeline import SnapshotFailure
from starforge_backfill.quarantine_s3 import ENDED, S3Settings, Uploader
from starforge_backfill.queue_worker import run_worker
from starforge_backfill.runbook.quarantine import push
from starforge_backfill.runbook.report import report

BUCKET = "sf-quarantine"
SECRET = "sk-live-4f9c2b-do-not-leak"
CORPUS_FAILURES = {"PARSE_ERROR": 4, "VALIDATION_ERROR": 2}


def _load(dsn: str) -> uuid.UUID:
    """The runbook corpus (6 failures) plus one failing snapshot that carries sensitive keys."""
    load_corpus(dsn)
    raw = {"NameCode": "BROKEN_SECRET", "AuthToken": SECRET, "ProfileData": {"Troops": 5, "Password": SECRET}}
    with psycopg.connect(dsn, autocommit=True) as conn:
        return insert(conn, raw, "BROKEN_SECRET", dt.datetime(2024, 1, 2, 12, tzinfo=dt.UTC))


def _cfg(dsn: str, tmp_path: Path, endpoint: str, **dotted: Any) -> Config:
    return make_cfg(
        dsn,
        tmp_path / "artifacts",
        **{
            "throttle.failure_rate_max": 0.5,
            "quarantine.s3_url": f"s3://{BUCKET}/backfill/q",
            "quarantine.endpoint_url": endpoint,
            "quarantine.region": "us-east-1",
            **dotted,
        },
    )


def _copies(conn: psycopg.Connection, job_id: str) -> dict[str, dict[str, Any]]:
    with conn.cursor(row_factory=psycopg.rows.dict_row) as cur:
        rows = cur.execute("SELECT * FROM quarantine_copies WHERE job_id = %s", [job_id]).fetchall()
    return {str(r["snapshot_id"]): r for r in rows}


def _failed_ids(conn: psycopg.Connection) -> set[str]:
    return {str(r[0]) for r in conn.execute("SELECT DISTINCT snapshot_id FROM etl_errors").fetchall()}


def test_a_run_uploads_the_redacted_copies_and_the_report_links_them(
    pg_dsn: str, pg_conn: psycopg.Connection, tmp_path: Path, moto: MotoServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret_sid = _load(pg_dsn)
    s3 = moto.client()
    s3.create_bucket(Bucket=BUCKET)
    cfg = _cfg(pg_dsn, tmp_path, moto.url)
    seen: set[str] = set()
    real = templates.render
    monkeypatch.setattr(templates, "render", lambda name, **ctx: seen.add(name) or real(name, **ctx))
    res = run_job(cfg, from_ts=FROM, to_ts=TO, force=True, reason="test")
    assert res.outcome == "done", res.summary()
    # `run --print-sql` lists the uploader's statements when (and only when) quarantine.s3_url is set
    ran = {n for n in seen if n.startswith("quarantine/")}
    assert ran == {"quarantine/copies.sql", "quarantine/record_copy.sql"}
    assert ran <= {st.name for st in sqlview.run_statements(cfg, forced=True)}
    assert not ran & {st.name for st in sqlview.run_statements(Config(), forced=True)}
    job_id = str(res.job["job_id"])
    failed = _failed_ids(pg_conn)
    assert len(failed) == 7 and str(secret_sid) in failed
    assert res.summary()["quarantine_uploads"] == {"uploaded": 7, "local_only": 0, "local_only_copies": []}

    # the bucket holds exactly the local copies, byte for byte: redacted, no sensitive value
    stored = objects(s3, BUCKET)
    folder = Path(cfg.artifacts_dir) / job_id / "quarantine"
    assert set(stored) == {f"backfill/q/{job_id}/{sid}.json" for sid in failed}
    for key, body in stored.items():
        assert body == (folder / Path(key).name).read_bytes()
        assert SECRET.encode() not in body
    doc = json.loads(stored[f"backfill/q/{job_id}/{secret_sid}.json"])
    assert doc["kind"] == "quarantine" and doc["error_type"] == "VALIDATION_ERROR"
    assert doc["payload"]["AuthToken"] == "[REDACTED]" and doc["payload"]["ProfileData"]["Password"] == "[REDACTED]"

    # the table records each copy's URL
    copies = _copies(pg_conn, job_id)
    assert set(copies) == failed
    for sid, row in copies.items():
        assert row["s3_url"] == f"s3://{BUCKET}/backfill/q/{job_id}/{sid}.json"
        assert row["uploaded_at"] is not None and row["last_error"] is None and row["attempts"] == 1
        assert row["local_path"] == str(folder / f"{sid}.json")

    # the report lists and links them
    rep = report(cfg, job_id=job_id)
    q = rep.data["quarantine"]
    assert (q["count"], q["uploaded"], q["local_only"]) == (7, 7, 0)
    assert {s["snapshot_id"]: s["s3_url"] for s in q["snapshots"]} == {s: r["s3_url"] for s, r in copies.items()}
    md, page = rep.files["md"].read_text(), rep.files["html"].read_text()
    for url in (r["s3_url"] for r in copies.values()):
        assert f"[{url}](<{url}>)" in md
        assert f'<a href="{url}">{url}</a>' in page
    assert SECRET not in md and SECRET not in page


def test_an_unreachable_s3_changes_no_processing_and_push_uploads_later(
    pg_dsn: str, pg_conn: psycopg.Connection, tmp_path: Path, aws_env: None
) -> None:
    _load(pg_dsn)
    server = MotoServer()  # its port, with nothing listening yet: every upload is refused
    cfg = _cfg(pg_dsn, tmp_path, server.url, **{"quarantine.upload_timeout": "1s", "quarantine.upload_attempts": 2})
    res = run_job(cfg, from_ts=FROM, to_ts=TO, force=True, reason="test")

    # processing exactly as without S3: the job, its counts, the errors and the written rows
    assert res.outcome == "done" and res.exit_code == ExitCode.OK, res.summary()
    job = res.job
    assert job["status"] == "done" and job["errors_by_type"] == CORPUS_FAILURES | {"VALIDATION_ERROR": 3}
    assert (job["processed_count"], job["error_count"]) == (GOOD_USERS * 3 + 3, 7)
    assert pg_conn.execute("SELECT count(*) FROM users").fetchone()[0] == GOOD_USERS + 3
    failed = _failed_ids(pg_conn)
    job_id = str(job["job_id"])
    folder = Path(cfg.artifacts_dir) / job_id / "quarantine"
    assert {p.stem for p in folder.glob("*.json")} == failed  # the local copies stay

    # every copy recorded local only, with the error and the attempts made
    summary = res.summary()["quarantine_uploads"]
    assert (summary["uploaded"], summary["local_only"]) == (0, 7)
    copies = _copies(pg_conn, job_id)
    assert set(copies) == failed
    for row in copies.values():
        assert row["s3_url"] is None and row["uploaded_at"] is None and row["attempts"] == 2
        assert "EndpointConnectionError" in row["last_error"] or "Connect" in row["last_error"], row["last_error"]
    q = report(cfg, job_id=job_id).data["quarantine"]
    assert (q["uploaded"], q["local_only"]) == (0, 7)
    assert all(s["s3_url"] is None and "after 2 attempt(s)" in s["local_only_reason"] for s in q["snapshots"])
    md = (Path(cfg.artifacts_dir) / job_id / "report.md").read_text()
    assert md.count("| local only (EndpointConnectionError") == 7 and "quarantine push --job-id" in md

    # push while S3 is still down: nothing uploaded, exit 1, still recorded local only
    down = push(cfg, job_id=job_id)
    assert down.exit_code == ExitCode.CHECK_FAILED and len(down.tally.local_only) == 7
    assert all(r["attempts"] == 4 and r["s3_url"] is None for r in _copies(pg_conn, job_id).values())

    # S3 is back: push uploads every local-only copy and records its URL; a second push has nothing to do
    server.start()
    try:
        server.client().create_bucket(Bucket=BUCKET)
        up = push(cfg, job_id=job_id)
        assert up.exit_code == ExitCode.OK and len(up.tally.uploaded) == 7 and not up.tally.local_only
        stored = objects(server.client(), BUCKET)
        assert set(stored) == {f"backfill/q/{job_id}/{sid}.json" for sid in failed}
        assert all(stored[f"backfill/q/{job_id}/{p.name}"] == p.read_bytes() for p in folder.glob("*.json"))
        rows = _copies(pg_conn, job_id)
        assert all(r["s3_url"] and r["uploaded_at"] and r["last_error"] is None for r in rows.values())
        assert {r["error_type"] for r in rows.values()} == {"PARSE_ERROR", "VALIDATION_ERROR"}
        assert push(cfg, job_id=job_id).tally.to_json() == {"uploaded": 0, "local_only": 0, "local_only_copies": []}
        q = report(cfg, job_id=job_id).data["quarantine"]
        assert (q["uploaded"], q["local_only"]) == (7, 0)
        # another host's report (no local copies there) still lists and links every copy, from the table
        elsewhere = cfg.replace(artifacts_dir=str(tmp_path / "other-host"))
        q = report(elsewhere, job_id=job_id).data["quarantine"]
        assert (q["count"], q["uploaded"], q["local_only"]) == (7, 7, 0)
        assert {s["s3_url"] for s in q["snapshots"]} == {r["s3_url"] for r in rows.values()}
    finally:
        server.stop()


def test_a_resumed_run_uploads_what_an_earlier_run_left_local(
    pg_dsn: str, pg_conn: psycopg.Connection, tmp_path: Path, moto: MotoServer
) -> None:
    """A job run before quarantine.s3_url was set: running it again (nothing left to process) uploads its copies."""
    _load(pg_dsn)
    plain = make_cfg(pg_dsn, tmp_path / "artifacts", **{"throttle.failure_rate_max": 0.5})
    first = run_job(plain, from_ts=FROM, to_ts=TO, force=True, reason="test")
    job_id = str(first.job["job_id"])
    assert first.summary()["quarantine_uploads"] is None and _copies(pg_conn, job_id) == {}
    q = report(plain, job_id=job_id).data["quarantine"]
    assert q["local_only"] == 7 and {s["local_only_reason"] for s in q["snapshots"]} == {"quarantine.s3_url not set"}

    moto.client().create_bucket(Bucket=BUCKET)
    again = run_job(_cfg(pg_dsn, tmp_path, moto.url), job_id=job_id, force=True, reason="test")
    assert again.summary()["quarantine_uploads"]["uploaded"] == 7
    assert len(objects(moto.client(), BUCKET)) == 7
    rows = _copies(pg_conn, job_id)
    assert len(rows) == 7 and all(r["s3_url"] for r in rows.values())
    assert sorted(r["error_type"] for r in rows.values()) == ["PARSE_ERROR"] * 4 + ["VALIDATION_ERROR"] * 3


def test_push_needs_an_s3_url(pg_dsn: str, tmp_path: Path) -> None:
    with pytest.raises(UsageError, match=r"quarantine\.s3_url is not set"):
        push(make_cfg(pg_dsn, tmp_path / "artifacts"), job_id="nope")


def test_the_queue_worker_uploads_its_real_time_copies(
    pg_dsn: str, pg_conn: psycopg.Connection, tmp_path: Path, moto: MotoServer
) -> None:
    secret_sid = _load(pg_dsn)
    moto.client().create_bucket(Bucket=BUCKET)
    cfg = _cfg(pg_dsn, tmp_path, moto.url)
    pg_conn.execute(
        "INSERT INTO queue_jobs (type, payload)"
        " VALUES ('process_snapshot', jsonb_build_object('snapshot_id', %s::text))",
        [secret_sid],
    )
    stats = run_worker(cfg, once=True)
    assert stats.queue_done == 1 and _failed_ids(pg_conn) == {str(secret_sid)}
    stored = objects(moto.client(), BUCKET)
    assert list(stored) == [f"backfill/q/realtime/{secret_sid}.json"]
    local = Path(cfg.artifacts_dir) / "realtime" / "quarantine" / f"{secret_sid}.json"
    assert stored[f"backfill/q/realtime/{secret_sid}.json"] == local.read_bytes()
    assert SECRET.encode() not in local.read_bytes()
    assert (
        _copies(pg_conn, "realtime")[str(secret_sid)]["s3_url"]
        == f"s3://{BUCKET}/backfill/q/realtime/{secret_sid}.json"
    )
    assert push(cfg, job_id="realtime").tally.to_json()["uploaded"] == 0  # nothing left local


def test_copies_still_queued_when_the_drain_runs_out_are_recorded_local_only(
    pg_dsn: str, pg_conn: psycopg.Connection, tmp_path: Path, aws_env: None
) -> None:
    """An S3 that accepts connections and never answers: the first copy times out, the others are not tried
    once the drain budget is spent; all stay local, recorded, and the uploader returns within its bounds."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        endpoint = f"http://127.0.0.1:{silent.getsockname()[1]}"
        settings = S3Settings(f"s3://{BUCKET}/d", endpoint_url=endpoint, region="us-east-1", timeout_s=1.0, attempts=1)
        folder = tmp_path / "quarantine"
        folder.mkdir()
        failures = [SnapshotFailure(uuid.uuid4(), "PARSE_ERROR", "bad", {}) for _ in range(5)]
        for f in failures:
            (folder / f"{f.snapshot_id}.json").write_text("{}")
        uploader = Uploader(settings, lambda: psycopg.connect(pg_dsn, autocommit=True))
        started = time.monotonic()
        uploader.submit("job-drain", folder, failures)
        tally = uploader.close(drain_s=0)
        elapsed = time.monotonic() - started
    assert elapsed < 8, elapsed
    assert set(tally.local_only) == {str(f.snapshot_id) for f in failures} and not tally.uploaded
    rows = _copies(pg_conn, "job-drain")
    assert set(rows) == {str(f.snapshot_id) for f in failures}
    assert all(r["s3_url"] is None for r in rows.values())
    ended = [r for r in rows.values() if r["last_error"] == ENDED]
    assert len(ended) >= 4 and all(r["attempts"] == 0 for r in ended)
    assert all("Timeout" in r["last_error"] for r in rows.values() if r["last_error"] != ENDED)
