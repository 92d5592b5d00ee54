"""finalize against real PostgreSQL: refusals write nothing; a done job is verified in full, marked
finalized (status and report show it) and archived with a sha256 manifest that matches every member."""

from __future__ import annotations

import hashlib
import json
import tarfile
from pathlib import Path
from typing import Any

import psycopg
import pytest
from runbook_post_corpus import FROM, MISSING_TROOP, TO, load_corpus, make_cfg
from running import run_job

from starforge_backfill import jobs, operator
from starforge_backfill.errors import GateFailed, UsageError
from starforge_backfill.runbook.control import status
from starforge_backfill.runbook.finalize import archive_path, finalize


@pytest.fixture
def cfg(pg_dsn: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """The corpus fails 6 of its 33 snapshots on purpose (quarantined): an error budget of 25% accepts that."""
    monkeypatch.setattr(operator, "_current", "auditor@example")
    load_corpus(pg_dsn)
    return make_cfg(pg_dsn, tmp_path / "artifacts", **{"throttle.failure_rate_max": 0.25})


def _run(cfg: Any) -> str:
    res = run_job(cfg, from_ts=FROM, to_ts=TO, force=True, reason="test")
    assert res.outcome == "done", res.summary()
    return str(res.job["job_id"])


def _job(conn: psycopg.Connection, job_id: str) -> dict[str, Any]:
    with conn.cursor(row_factory=psycopg.rows.dict_row) as cur:
        row = cur.execute("SELECT * FROM backfill_jobs WHERE job_id = %s", [job_id]).fetchone()
    assert row is not None
    return row


def _events(conn: psycopg.Connection, job_id: str, kind: str) -> list[tuple[Any, ...]]:
    return conn.execute(
        "SELECT message, details, operator FROM backfill_events WHERE job_id = %s AND kind = %s ORDER BY created_at",
        [job_id, kind],
    ).fetchall()


def test_a_done_job_is_verified_marked_and_archived(cfg: Any, pg_conn: psycopg.Connection) -> None:
    job_id = _run(cfg)
    res = finalize(cfg, job_id=job_id, sample_users=3)
    assert res.verify_passed and not res.forced and not res.already
    assert res.placeholders == {"count": 1, "by_kind": {"troop": 1, "pet": 0, "artifact": 0}}  # MISSING_TROOP
    row = _job(pg_conn, job_id)
    assert row["status"] == "done" and row["finished_at"] is not None
    assert row["finalized_at"] is not None and row["finalized_by"] == "auditor@example"
    ((message, details, who),) = _events(pg_conn, job_id, "finalized")
    assert who == "auditor@example" and details["placeholders"]["count"] == 1 and "1 placeholder(s) left" in message
    # status and the final report show it
    (shown,) = status(cfg, job_id=job_id).jobs
    assert shown["state"] == "finalized" and shown["finalized_by"] == "auditor@example"
    # the archive: every file of the folder, a manifest whose sha256 matches each member, the sidecar digest
    target = archive_path(cfg, job_id)
    assert target == Path(cfg.artifacts_dir) / "archives" / f"{job_id}.tar.gz" and target.is_file()
    assert (target.parent / f"{job_id}.tar.gz.sha256").read_text().split()[0] == res.archive_sha256
    assert hashlib.sha256(target.read_bytes()).hexdigest() == res.archive_sha256
    with tarfile.open(target, "r:gz") as tar:
        members = {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}  # type: ignore[union-attr]
    names = {n.split("/", 1)[1] for n in members}
    for needed in (
        "verify.json",
        "report.md",
        "report.html",
        "report.json",
        "manifest.json",
        "finalize.json",
        "quarantine-list.json",
        "audit-log.jsonl",
    ):
        assert needed in names, (needed, sorted(names))
    quarantined = [n for n in names if n.startswith("quarantine/")]
    assert len(quarantined) == 6
    manifest = json.loads(members[f"{job_id}/manifest.json"])["files"]
    assert set(manifest) == names - {"manifest.json"}
    for rel, entry in manifest.items():
        assert hashlib.sha256(members[f"{job_id}/{rel}"]).hexdigest() == entry["sha256"], rel
    report = json.loads(members[f"{job_id}/report.json"])
    assert report["job"]["finalized_by"] == "auditor@example" and report["job"]["finalized_at"]
    assert "finalized" in members[f"{job_id}/report.md"].decode().split("\n")[2]
    verified = json.loads(members[f"{job_id}/verify.json"])
    assert verified["mode"] == "full" and verified["passed"] is True
    audit = [json.loads(line) for line in members[f"{job_id}/audit-log.jsonl"].decode().splitlines()]
    assert audit[-1]["kind"] == "finalized" and audit[-1]["operator"] == "auditor@example"
    assert "created" in {a["kind"] for a in audit} or len(audit) > 1
    qlist = json.loads(members[f"{job_id}/quarantine-list.json"])["snapshots"]
    assert len(qlist) == 6 and {q["error_type"] for q in qlist} == {"PARSE_ERROR", "VALIDATION_ERROR"}
    # finalizing again changes nothing; a lost archive is written again
    again = finalize(cfg, job_id=job_id)
    assert again.already and again.archive_sha256 == res.archive_sha256
    assert _job(pg_conn, job_id)["finalized_at"] == row["finalized_at"]
    target.unlink()
    rebuilt = finalize(cfg, job_id=job_id)
    assert rebuilt.already and target.is_file() and len(_events(pg_conn, job_id, "finalized")) == 1


@pytest.mark.parametrize("state", ["paused", "failed", "pending"])
def test_a_job_not_done_is_refused_and_nothing_is_written(cfg: Any, pg_conn: psycopg.Connection, state: str) -> None:
    job_id = _run(cfg)
    pg_conn.execute("UPDATE backfill_jobs SET status = %s, status_reason = 'test' WHERE job_id = %s", [state, job_id])
    with pytest.raises(GateFailed, match=f"job {job_id} is {state} \\(test\\): only a done job"):
        finalize(cfg, job_id=job_id)
    assert _job(pg_conn, job_id)["finalized_at"] is None and not archive_path(cfg, job_id).exists()
    assert not (Path(cfg.artifacts_dir) / job_id / "verify.json").exists()  # refused before verifying


def test_a_running_job_is_refused_unless_every_chunk_is_done(cfg: Any, pg_conn: psycopg.Connection) -> None:
    job_id = _run(cfg)
    pg_conn.execute("UPDATE backfill_jobs SET status = 'running', finished_at = NULL WHERE job_id = %s", [job_id])
    (chunk,) = pg_conn.execute("SELECT min(chunk_no) FROM backfill_chunks WHERE job_id = %s", [job_id]).fetchone()
    # a live worker holds a chunk: still running
    pg_conn.execute(
        "UPDATE backfill_chunks SET status = 'running', worker = %s, heartbeat_at = now()"
        " WHERE job_id = %s AND chunk_no = %s",
        [jobs.worker_name(), job_id, chunk],
    )
    with pytest.raises(GateFailed, match="is still running \\(1 live worker"):
        finalize(cfg, job_id=job_id)
    # its worker died with the chunk open: interrupted, resume first
    pg_conn.execute("UPDATE backfill_chunks SET heartbeat_at = now() - interval '1 day' WHERE job_id = %s", [job_id])
    with pytest.raises(GateFailed, match="interrupted with work left: resume it"):
        finalize(cfg, job_id=job_id)
    assert _job(pg_conn, job_id)["finalized_at"] is None
    # every chunk done, the row never marked: finalize marks it done, with finished_at
    pg_conn.execute("UPDATE backfill_chunks SET status = 'done' WHERE job_id = %s", [job_id])
    res = finalize(cfg, job_id=job_id, sample_users=0)
    row = _job(pg_conn, job_id)
    assert res.marked_done and row["status"] == "done" and row["finished_at"] and row["finalized_at"]


def test_a_failing_verification_refuses_unless_forced_with_a_reason(cfg: Any, pg_conn: psycopg.Connection) -> None:
    job_id = _run(cfg)
    pg_conn.execute("UPDATE user_troops SET amount = amount + 1 WHERE troop_id = %s", [MISSING_TROOP])
    with pytest.raises(GateFailed, match="verify --full failed \\(full") as err:
        finalize(cfg, job_id=job_id, sample_users=0)
    assert "--force --reason" in (err.value.hint or "")
    assert _job(pg_conn, job_id)["finalized_at"] is None and not archive_path(cfg, job_id).exists()
    with pytest.raises(UsageError, match="--force needs --reason"):
        finalize(cfg, job_id=job_id, force=True)
    res = finalize(cfg, job_id=job_id, force=True, reason="auditor accepted INC-42", sample_users=0)
    assert res.forced and not res.verify_passed and res.verify_failed == ["full"]
    message, details, who = _events(pg_conn, job_id, "forced")[-1]  # the first: the run's own --force
    assert details["reason"] == "auditor accepted INC-42" and details["overridden"] == ["full"]
    assert who == "auditor@example" and "verify failed" in message
    assert _job(pg_conn, job_id)["finalized_at"] is not None


def test_an_unknown_job_is_a_usage_error(cfg: Any) -> None:
    with pytest.raises(UsageError, match="no job 'nope'"):
        finalize(cfg, job_id="nope")
