"""The report and the audit trail tell the truth (issue 15, parts 3-4), against real PostgreSQL: each failed
snapshot's etl_errors row names its job, so a job's error count is its own and a later job over the same range
is shown as that job; the ramp is announced and the workers actually used are recorded; pauses and Ctrl-C gaps
are bands on the chart; preflight items, canary figures and the manifest's hashes are printed in full."""

from __future__ import annotations

import datetime as dt
import json
import re
import threading
from pathlib import Path
from typing import Any

import psycopg
import pytest
from runbook_post_corpus import FROM, MISSING_TROOP, TO, load_corpus, make_cfg
from running import run_job

from starforge_backfill import artifacts
from starforge_backfill.runbook import control
from starforge_backfill.runbook.canary import canary
from starforge_backfill.runbook.gates import record_gate
from starforge_backfill.runbook.report import report
from starforge_backfill.runbook.run import resume


@pytest.fixture
def cfg(pg_dsn: str, tmp_path: Path) -> Any:
    """The corpus fails 6 of its 33 snapshots on purpose (4 PARSE_ERROR, 2 VALIDATION_ERROR)."""
    load_corpus(pg_dsn)
    return make_cfg(pg_dsn, tmp_path / "artifacts", **{"throttle.failure_rate_max": 0.25})


def _run(cfg: Any, **kw: Any) -> str:
    kw = {"from_ts": FROM, "to_ts": TO, "force": True, "reason": "test"} | kw
    res = run_job(cfg, **kw)
    assert res.outcome == "done", res.summary()
    return str(res.job["job_id"])


def _md(cfg: Any, job_id: str) -> str:
    return (Path(cfg.artifacts_dir) / job_id / "report.md").read_text()


def test_each_etl_errors_row_names_the_job_that_recorded_it(cfg: Any, pg_conn: psycopg.Connection) -> None:
    first = _run(cfg)
    later = _run(cfg, reprocess=True, retry_failed=True, mode="reprocess")
    rows = pg_conn.execute(
        "SELECT job_id, count(*), count(DISTINCT snapshot_id) FROM etl_errors GROUP BY job_id ORDER BY job_id"
    ).fetchall()
    assert sorted(rows) == sorted([(first, 6, 6), (later, 6, 6)])
    counts = dict(pg_conn.execute("SELECT job_id, error_count FROM backfill_jobs").fetchall())
    assert counts == {first: 6, later: 6}


def test_a_later_reprocess_is_its_own_row_and_the_error_counts_agree(cfg: Any, pg_conn: psycopg.Connection) -> None:
    """The report's failed count of a job is the job row's error_count and its own etl_errors rows, whatever a
    later --reprocess job over the same range recorded; that job shows as a separate row with its mode."""
    first = _run(cfg)
    later = _run(cfg, reprocess=True, retry_failed=True, mode="reprocess")
    data = report(cfg, job_id=first).data
    own = pg_conn.execute("SELECT count(DISTINCT snapshot_id) FROM etl_errors WHERE job_id = %s", [first]).fetchone()
    job_row = pg_conn.execute("SELECT error_count FROM backfill_jobs WHERE job_id = %s", [first]).fetchone()
    assert own is not None and job_row is not None
    assert data["counts"]["failed"] == own[0] == job_row[0] == 6 and data["counts"]["error_rows"] == 6
    assert sum(data["errors_by_type"].values()) == 6 and data["errors_by_type"] == {
        "PARSE_ERROR": 4,
        "VALIDATION_ERROR": 2,
    }
    assert sum(m["errors"] for m in data["error_messages"]) == 6
    assert data["job_row_agrees"] == {"processed": True, "failed": True}
    by_id = {j["job_id"]: j for j in data["range_jobs"]}
    assert set(by_id) == {first, later}
    assert (by_id[first]["when"], by_id[later]["when"], by_id[later]["mode"]) == ("this job", "later", "reprocess")
    assert by_id[later]["failed"] == 6 and by_id[later]["handled"] == 33
    # the placeholder is the first job's: the later job found it there and created none
    assert (by_id[first]["placeholders"], by_id[later]["placeholders"]) == (1, 0)
    md = _md(cfg, first)
    assert "## Counts and their definitions" in md and "| failed | 6 | distinct snapshots with an etl_errors row" in md
    assert re.search(rf"\| {later} \| reprocess \| later \| done \| [^|]+ \| 33 \| 27 \| 6 \| 0 \|", md), md
    # the later job's own report counts its own rows, and shows the first job as earlier
    again = report(cfg, job_id=later, formats=("json",)).data
    assert again["counts"]["failed"] == 6 and {j["when"] for j in again["range_jobs"]} == {"earlier", "this job"}


def test_a_canarys_placeholder_is_shown_as_the_canarys(cfg: Any) -> None:
    """The demo's "4 placeholders in the job table, 5 in verification": the canary's job created one."""
    can = canary(cfg, users=1, from_ts=FROM, to_ts="2024-01-02T00:00:00Z", observe_s=0)
    assert can.passed, can.reasons
    job_id = _run(cfg)
    data = report(cfg, job_id=job_id, formats=("json",)).data
    rows = {j["job_id"]: j for j in data["range_jobs"]}
    canary_id = str(can.job["job_id"])
    assert rows[canary_id]["mode"] == "canary" and rows[canary_id]["when"] == "earlier"
    created = sum(r["placeholders"] for r in rows.values())
    assert created == 1 and data["placeholders"]["count"] == rows[job_id]["placeholders"]
    assert data["counts"]["handled"] + rows[canary_id]["handled"] == 33
    # what this job did not take is what the canary took before it
    assert data["counts"]["in_selection"] == 33 and data["counts"]["not_taken"] == rows[canary_id]["handled"] > 0


def test_the_ramp_is_announced_and_the_workers_used_are_recorded(cfg: Any) -> None:
    """--concurrency 2 in a run shorter than ramp_step: one worker ran, and the report and announcement say so."""
    said: list[str] = []
    res = run_job(cfg, from_ts=FROM, to_ts=TO, concurrency=2, force=True, reason="t", notify=said.append)
    assert res.outcome == "done"
    assert any(m.startswith("starting with 1 worker; +1 every 60 s while the guard is healthy, up to 2") for m in said)
    job_id = str(res.job["job_id"])
    data = report(cfg, job_id=job_id).data
    assert data["job"]["concurrency"] == 2 and data["workers"]["most"] == 1
    assert [w["workers"] for w in data["workers"]["series"]] == [1, 0]
    md = _md(cfg, job_id)
    assert "| workers used (most at once) | 1 |" in md and "## Workers over time" in md
    page = (Path(cfg.artifacts_dir) / job_id / "report.html").read_text()
    assert 'class="workers"' in page and "1 worker</text>" in page
    status = control.status(cfg, job_id=job_id).jobs[0]
    assert status["workers"] == "0 of 2"


def test_a_short_ramp_step_reaches_two_workers(cfg: Any) -> None:
    cfg = cfg.replace(**{"gates.ramp_step": "0.2s", "gates.ramp": [1, 2]})
    said: list[str] = []
    slow = threading.Event()

    def progress(_state: Any) -> None:
        slow.wait(0.15)  # batches of 1 and a slow progress callback: the run outlasts one ramp step

    res = run_job(
        cfg,
        from_ts=FROM,
        to_ts=TO,
        concurrency=2,
        batch_size=1,
        force=True,
        reason="t",
        notify=said.append,
        progress=progress,
    )
    assert res.outcome == "done"
    assert any("+1 every 0.2 s while the guard is healthy, up to 2" in m for m in said)
    data = report(cfg, job_id=str(res.job["job_id"]), formats=("json",)).data
    assert data["workers"]["most"] == 2
    assert [w["workers"] for w in data["workers"]["series"]][:2] == [1, 2]


def test_pauses_and_interruptions_are_labelled_bands(cfg: Any) -> None:
    """Pause by the operator, resume, Ctrl-C, run again: the chart shades a pause and an interruption."""
    stop = threading.Event()
    res = _paused_then_interrupted(cfg, stop)
    data = report(cfg, job_id=res).data
    kinds = [b["kind"] for b in data["bands"]]
    assert "pause" in kinds and "interrupted" in kinds, data["bands"]
    pause = next(b for b in data["bands"] if b["kind"] == "pause")
    assert "operator" in pause["label"] and "lunch" in pause["label"] and pause["seconds"] > 0
    gap = next(b for b in data["bands"] if b["kind"] == "interrupted")
    assert gap["seconds"] > 0 and gap["from_s"] < gap["to_s"]
    # each band ends where the job went on: the pause at its resume, the gap at the next worker's start
    at = {e["kind"]: e["at"] for e in data["events"] if e["kind"] in ("resumed", "interrupted")}
    assert pause["to"] == at["resumed"] and pause["to_s"] < gap["from_s"]
    starts = [w["at"] for w in data["workers"]["series"] if w["at"] > gap["from"]]
    assert gap["to"] == starts[0]
    page = (Path(cfg.artifacts_dir) / res / "report.html").read_text()
    assert 'class="band band-pause"' in page and 'class="band band-interrupted"' in page
    md = _md(cfg, res)
    assert "## Pauses, holds and interruptions" in md and "| pause | paused (operator): lunch |" in md
    assert re.search(r"\| \+[^|]+ \| [^|]+ \| \d+ \| \d \| [^|]*interrupted", md), md


def _paused_then_interrupted(cfg: Any, stop: threading.Event) -> str:
    """A job paused by the operator after its 2nd batch, resumed, interrupted after 2 more, then finished."""
    ids: list[str] = []
    count = {"n": 0}
    cfg = cfg.replace(**{"etl.batch_size": 2})

    def first(state: Any) -> None:
        count["n"] += 1
        if count["n"] == 2:
            with psycopg.connect(cfg.database.dsn, autocommit=True) as conn:
                row = conn.execute(
                    "SELECT job_id FROM backfill_jobs WHERE mode = 'run' AND status = 'running'"
                ).fetchone()
            assert row is not None
            ids.append(row[0])
            control.pause(cfg, job_id=row[0], reason="lunch")

    res = run_job(cfg, from_ts=FROM, to_ts="2024-01-02T12:00:00Z", batch_size=2, force=True, reason="t", progress=first)
    assert res.outcome == "paused", res.summary()
    job_id = ids[0]
    resume(cfg, job_id=job_id)
    count["n"] = 0

    def second(_state: Any) -> None:
        count["n"] += 1
        if count["n"] == 2:
            stop.set()

    res = run_job(cfg, job_id=job_id, batch_size=2, stop=stop, progress=second)
    assert res.outcome == "interrupted", res.summary()
    res = run_job(cfg, job_id=job_id, batch_size=2)
    assert res.outcome == "done", res.summary()
    return job_id


def test_preflight_items_canary_figures_and_the_manifest_in_full(cfg: Any, pg_conn: psycopg.Connection) -> None:
    folder = Path(cfg.artifacts_dir) / "steps"
    folder.mkdir(parents=True)
    checks = [
        {
            "name": "backup",
            "result": "attested",
            "passed": True,
            "detail": "backup snap-7 (sre:bob)",
            "value": None,
            "threshold": None,
            "warning": None,
            "note": "restore tested 2024-01-01",
        },
        {
            "name": "disk_headroom",
            "result": "pass",
            "passed": True,
            "detail": "41.5 GB free",
            "value": 41.5,
            "threshold": 10,
            "warning": None,
            "note": None,
        },
    ]
    pre = artifacts.write_json(folder / "preflight.json", "preflight", None, {"checks": checks, "passed": True})
    record_gate(
        pg_conn,
        "preflight",
        cfg.fingerprint(),
        True,
        from_ts=dt.datetime.fromisoformat(FROM),
        to_ts=dt.datetime.fromisoformat(TO),
        concurrency=4,
        artifact=pre,
        details={"backup": {"backup_id": "snap-7"}},
    )
    can = canary(cfg, users=2, from_ts=FROM, to_ts="2024-01-02T00:00:00Z", observe_s=0)
    assert can.passed
    canary_job = str(can.job["job_id"])
    job_id = _run(cfg)
    data = report(cfg, job_id=canary_job).data
    md = _md(cfg, canary_job)
    assert "## Preflight items" in md
    assert "| disk_headroom | pass | 41.5 GB free | 41.5 | 10 | - |" in md
    assert "| backup | attested | backup snap-7 (sre:bob) | - | - | restore tested 2024-01-01 |" in md
    assert "## Canary gates" in md and data["canary"]["checks"]
    for c in data["canary"]["checks"]:
        assert f"| {c['name']} | {c['result']} |" in md
    assert "| samples taken |" in md and "| canary job | " + canary_job in md
    # the manifest: every file's sha256 printed, equal to manifest.json's, the copied gate artifacts included
    report(cfg, job_id=job_id)
    jfolder = Path(cfg.artifacts_dir) / job_id
    manifest = artifacts.read_json(jfolder / "manifest.json", "manifest")["files"]
    md = _md(cfg, job_id)
    printed = dict(re.findall(r"^\| ([^|]+) \| \d+ \| ([0-9a-f]{64}) \|$", md, re.M))
    assert printed and any(f.startswith("gates/preflight-") for f in printed), printed
    assert all(manifest[f]["sha256"] == h for f, h in printed.items())
    assert set(manifest) - set(printed) == {"report.md", "report.html", "report.json"}
    assert "cannot hold their own hash" in md
    # the run's own report shows the canary it relied on, from the copy in its folder
    assert any(f.startswith("gates/canary-") for f in printed), printed
    assert "## Canary gates" in md and "| canary job | " + canary_job in md


def test_cells_are_readable_and_times_are_to_the_second(cfg: Any) -> None:
    job_id = _run(cfg)
    report(cfg, job_id=job_id)
    md = _md(cfg, job_id)
    page = (Path(cfg.artifacts_dir) / job_id / "report.html").read_text()
    for text in (md, page):
        assert not re.search(r"\d{2}:\d{2}:\d{2}\.\d", text), re.search(r".{40}\d{2}:\d{2}:\d{2}\.\d.{20}", text)
        assert not re.search(r"\+00:00", text)
        assert '{"' not in text and "{&quot;" not in text  # no raw JSON in a cell
    assert re.search(r"\| created_at \| \d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z \|", md)
    row = next(line for line in md.splitlines() if line.startswith("| rows_written |"))
    assert re.fullmatch(r"\| rows_written \| (\w+: \d+; )*\w+: \d+ \|", row), row
    data = json.loads((Path(cfg.artifacts_dir) / job_id / "report.json").read_text())
    assert data["placeholders"]["rows"] == [{"kind": "troop", "id": MISSING_TROOP}]


def test_the_queue_workers_failures_name_their_queue_job_or_realtime(cfg: Any, pg_conn: psycopg.Connection) -> None:
    from starforge_backfill.queue_worker import run_worker

    bad = load_corpus_ids_of_bad(pg_conn)
    lone = bad[0]
    queued = pg_conn.execute(
        "INSERT INTO queue_jobs (type, payload) VALUES ('backfill_range', jsonb_build_object('from_created_at', "
        "%s::text, 'to_created_at', %s::text, 'batch_size', 10)) RETURNING id",
        [FROM, "2024-01-02T00:00:00Z"],
    ).fetchone()
    pg_conn.execute(
        "INSERT INTO queue_jobs (type, payload) VALUES ('process_snapshot', jsonb_build_object('snapshot_id', "
        "%s::text))",
        [lone],
    )
    assert queued is not None
    stats = run_worker(cfg.replace(**{"throttle.failure_rate_max": 1.0}), once=True, poll_s=0.1)
    assert stats.queue_done == 2, stats
    rows = dict(pg_conn.execute("SELECT job_id, count(*) FROM etl_errors GROUP BY job_id").fetchall())
    assert rows == {"realtime": 1}, rows  # the range of the first day holds no bad snapshot
    in_day = pg_conn.execute(
        "SELECT count(*) FROM etl_errors e JOIN hero_snapshots h ON h.id = e.snapshot_id WHERE h.created_at < %s",
        ["2024-01-02T00:00:00Z"],
    ).fetchone()
    assert in_day == (0,)
    # a range with the bad snapshots: its failures carry the queue job's id
    again = pg_conn.execute(
        "INSERT INTO queue_jobs (type, payload) VALUES ('backfill_range', jsonb_build_object('from_created_at', "
        "%s::text, 'to_created_at', %s::text, 'batch_size', 10)) RETURNING id",
        ["2024-01-02T00:00:00Z", TO],
    ).fetchone()
    assert again is not None
    run_worker(cfg.replace(**{"throttle.failure_rate_max": 1.0}), once=True, poll_s=0.1)
    rows = dict(pg_conn.execute("SELECT job_id, count(*) FROM etl_errors GROUP BY job_id").fetchall())
    assert rows == {"realtime": 1, f"queue-{again[0]}": 5}, rows


def load_corpus_ids_of_bad(conn: psycopg.Connection) -> list[Any]:
    """The corpus's malformed snapshots (they fail), oldest first."""
    from runbook_post_corpus import BAD_NAMECODES

    rows = conn.execute(
        "SELECT id FROM hero_snapshots WHERE namecode = ANY(%s) ORDER BY created_at", [list(BAD_NAMECODES)]
    ).fetchall()
    return [r[0] for r in rows]
