"""`reprocess` (runbook API, real PostgreSQL): the recovery path after catalog policy `fail`, the selection
sources, writes-nothing on correct snapshots (xmin), gates, and a resumed job keeping its set."""

from __future__ import annotations

import datetime as dt
import threading
import uuid
from pathlib import Path
from typing import Any

import psycopg
import pytest
from reprocess_support import (
    FROM,
    MISSING_TROOP,
    TO,
    add_missing_catalog_row,
    backfill_with_fk_failures,
    count_jobs,
    fail_cfg,
    job,
    snapshot_state,
    troop_row,
    unprocessed,
    xmins,
)
from runbook_post_corpus import at, good_payload, insert, load_corpus, make_cfg, namecode
from running import run_job

from starforge_backfill.errors import GateFailed, UsageError
from starforge_backfill.jobs import Selector
from starforge_backfill.runbook.gates import record_gate
from starforge_backfill.runbook.reprocess import Selection, parse_snapshot_ids, reprocess
from starforge_backfill.runbook.run import RunOptions, RunProgress

FORCED = RunOptions(force=True, reason="catalog landed")


def _events(dsn: str, job_id: str) -> list[tuple[str, Any]]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        return conn.execute(
            "SELECT kind, details FROM backfill_events WHERE job_id = %s ORDER BY id", [job_id]
        ).fetchall()


def _assert_fixed(dsn: str, failed: Any, before: dict[uuid.UUID, tuple[Any, ...]]) -> None:
    """Every FK_VIOLATION snapshot is processed, its etl_errors history kept, its rows written."""
    after = snapshot_state(dsn, failed.fk)
    for sid in failed.fk:
        processed, _errors, history = after[sid]
        assert processed, sid
        assert history == before[sid][2] and history >= 1, (sid, before[sid], after[sid])
    for user, sid in failed.newest_fk.items():  # the newest snapshot wins: its row for the late troop is there
        assert troop_row(dsn, user, MISSING_TROOP) == (3, sid)


def test_error_type_fixes_exactly_the_fk_violations(pg_dsn: str, tmp_path: Path) -> None:
    cfg = fail_cfg(pg_dsn, tmp_path)
    failed = backfill_with_fk_failures(pg_dsn, cfg)
    before = snapshot_state(pg_dsn, failed.fk | {failed.parse_error})
    assert not any(v[0] for v in before.values())  # none processed: they failed
    add_missing_catalog_row(pg_dsn)

    res = reprocess(cfg, Selection.parse(error_types=["fk_violation"]), options=FORCED)

    assert res.run is not None and res.run.outcome == "done" and res.exit_code == 0, res.to_json()
    assert res.selected == len(failed.fk) == 4
    row = job(pg_dsn, res.run.job["job_id"])
    assert row["mode"] == "reprocess" and row["status"] == "done"
    assert set(Selector.from_job(row).ids or ()) == failed.fk and row["total_count"] == 4
    assert row["processed_count"] == 4 and row["error_count"] == 0
    created = sorted(snapshot_state_ts(pg_dsn, failed.fk))
    assert row["from_ts"] == created[0] and row["to_ts"] == created[-1] + dt.timedelta(microseconds=1)
    _assert_fixed(pg_dsn, failed, before)
    assert snapshot_state(pg_dsn, [failed.parse_error])[failed.parse_error] == before[failed.parse_error]
    assert unprocessed(pg_dsn) == {failed.parse_error}
    forced = [details for kind, details in _events(pg_dsn, row["job_id"]) if kind == "forced"]
    assert [d["reason"] for d in forced] == ["catalog landed"] and forced[0]["overridden"]  # what --force skipped

    # the result is what a full re-derivation gives: reprocessing the whole range now writes nothing
    state = xmins(pg_dsn)
    again = run_job(cfg, from_ts=FROM, to_ts=TO, reprocess=True, force=True, reason="oracle")
    assert again.outcome == "done" and (again.totals.applied, again.totals.failed) == (27, 1)
    assert xmins(pg_dsn) == state

    # nothing left of that type: no job, exit 0
    empty = reprocess(cfg, Selection.parse(error_types=["FK_VIOLATION"]), options=FORCED)
    assert empty.run is None and empty.selected == 0 and empty.exit_code == 0
    assert "job_id" not in empty.to_json() and empty.to_json()["reprocess"]["selected"] == 0


def snapshot_state_ts(dsn: str, ids: set[uuid.UUID]) -> list[dt.datetime]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        return [r[0] for r in conn.execute("SELECT created_at FROM hero_snapshots WHERE id = ANY(%s)", [list(ids)])]


def test_failed_of_a_job_retries_its_failures_narrowed_by_a_range(pg_dsn: str, tmp_path: Path) -> None:
    cfg = fail_cfg(pg_dsn, tmp_path)
    failed = backfill_with_fk_failures(pg_dsn, cfg)
    before = snapshot_state(pg_dsn, failed.fk | {failed.parse_error})
    add_missing_catalog_row(pg_dsn)

    # narrowed: only the failures created at or after user 5's newest snapshot
    cut = at(5, 3)
    narrow = reprocess(cfg, Selection.parse(failed_of=failed.job_id, from_ts=cut), options=FORCED)
    assert narrow.run is not None
    late = {sid for sid in failed.fk | {failed.parse_error} if snapshot_state_ts(pg_dsn, {sid})[0] >= cut}
    assert late == {failed.newest_fk[5], failed.newest_fk[6]}  # the PARSE_ERROR is older (at(7, 1))
    assert set(Selector.from_job(narrow.run.job).ids or ()) == late
    assert narrow.run.job["from_ts"] == cut
    assert unprocessed(pg_dsn) == (failed.fk | {failed.parse_error}) - late

    # the rest of the job's failures: the FK ones are fixed now, the PARSE_ERROR fails again
    rest = reprocess(cfg, Selection.parse(failed_of=failed.job_id), options=FORCED)
    assert rest.run is not None and rest.run.outcome == "done"
    assert set(Selector.from_job(rest.run.job).ids or ()) == (failed.fk | {failed.parse_error}) - late
    assert rest.run.job["processed_count"] == 2 and rest.run.job["error_count"] == 1
    assert rest.run.totals.errors_by_type == {"PARSE_ERROR": 1}
    _assert_fixed(pg_dsn, failed, before)
    assert unprocessed(pg_dsn) == {failed.parse_error}
    with pytest.raises(UsageError, match="no job 'run-nope'"):
        reprocess(cfg, Selection.parse(failed_of="run-nope"), options=FORCED)


def test_snapshot_ids_bad_or_unknown_lines_are_refused_and_nothing_is_created(pg_dsn: str, tmp_path: Path) -> None:
    cfg = make_cfg(pg_dsn, tmp_path)
    ids = load_corpus(pg_dsn, bad=False)
    good = str(ids[namecode(1)][0])
    with pytest.raises(UsageError, match=r"^ids\.txt:3: not a snapshot id \(uuid\): 'nope'$"):
        parse_snapshot_ids([good, "# a comment", "nope"], "ids.txt")
    parsed = parse_snapshot_ids([f"  {good}  # user 1", "", "# only a comment"], "ids.txt")
    assert parsed == [(1, uuid.UUID(good))]
    unknown = uuid.uuid4()
    sel = Selection.parse(ids=[(1, uuid.UUID(good)), (4, unknown)], ids_source="ids.txt")
    with pytest.raises(UsageError, match=f"ids.txt:4: no snapshot {unknown}"):
        reprocess(cfg, sel, options=FORCED)
    with pytest.raises(UsageError, match="say what to reprocess"):
        Selection.parse(from_ts=FROM, to_ts=TO)
    with pytest.raises(UsageError, match="--error-type NOPE: unknown"):
        Selection.parse(error_types=["nope"])
    assert count_jobs(pg_dsn) == 0


def test_reprocessing_correct_snapshots_writes_nothing(pg_dsn: str, tmp_path: Path) -> None:
    cfg = make_cfg(pg_dsn, tmp_path)
    ids = load_corpus(pg_dsn, bad=False)
    assert run_job(cfg, from_ts=FROM, to_ts=TO, force=True, reason="backfill").outcome == "done"
    state = xmins(pg_dsn)
    assert all(state[t] for t in state)  # the corpus wrote every table

    sel = Selection.parse(ids=[(1, ids[namecode(5)][0])], namecodes=[namecode(0), namecode(2)])
    res = reprocess(cfg, sel, options=FORCED)

    assert res.run is not None and res.run.outcome == "done" and res.selected == 7
    assert set(Selector.from_job(res.run.job).ids or ()) == {*ids[namecode(0)], *ids[namecode(2)], ids[namecode(5)][0]}
    assert res.run.job["processed_count"] == 7
    assert sum(res.run.totals.rows_written.values()) == 0, res.run.totals.rows_written
    assert xmins(pg_dsn) == state


def test_a_reprocess_is_gated_like_run(pg_dsn: str, tmp_path: Path) -> None:
    cfg = make_cfg(pg_dsn, tmp_path)
    load_corpus(pg_dsn, bad=False)
    with pytest.raises(GateFailed, match=r"^reprocess refused: no preflight recorded"):
        reprocess(cfg, Selection.parse(namecodes=[namecode(0)]))
    assert count_jobs(pg_dsn) == 0
    with pytest.raises(UsageError, match="--force needs --reason"):
        reprocess(cfg, Selection.parse(namecodes=[namecode(0)]), options=RunOptions(force=True))
    assert count_jobs(pg_dsn) == 0
    with psycopg.connect(pg_dsn, autocommit=True) as conn:  # the gates pass for this config: no --force needed
        for kind in ("preflight", "canary"):  # for this range and concurrency (gates bind their scope)
            record_gate(
                conn,
                kind,
                cfg.fingerprint(),
                True,
                from_ts=dt.datetime(2020, 1, 1, tzinfo=dt.UTC),
                to_ts=dt.datetime(2030, 1, 1, tzinfo=dt.UTC),
                concurrency=cfg.job.concurrency,
            )
    res = reprocess(cfg, Selection.parse(namecodes=[namecode(0)]))
    assert res.run is not None and res.run.outcome == "done" and res.run.job["processed_count"] == 3
    assert "forced" not in [kind for kind, _ in _events(pg_dsn, res.run.job["job_id"])]


def test_a_resumed_reprocess_job_continues_on_the_same_set(pg_dsn: str, tmp_path: Path) -> None:
    cfg = fail_cfg(pg_dsn, tmp_path)
    failed = backfill_with_fk_failures(pg_dsn, cfg)
    before = snapshot_state(pg_dsn, failed.fk)
    add_missing_catalog_row(pg_dsn)
    stop = threading.Event()

    def interrupt(p: RunProgress) -> None:
        if p.done >= 1:
            stop.set()

    opts = RunOptions(force=True, reason="catalog landed", batch_size=1, concurrency=1)
    first = reprocess(cfg, Selection.parse(error_types=["FK_VIOLATION"]), options=opts, progress=interrupt, stop=stop)
    assert first.run is not None and first.run.outcome == "interrupted" and first.exit_code == 130
    job_id = first.run.job["job_id"]
    left = unprocessed(pg_dsn) & failed.fk
    assert 0 < len(left) < len(failed.fk)

    # meanwhile a new FK_VIOLATION inside the job's range (troop 998 is in no catalog) ...
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        payload = good_payload(2, 3)
        payload["ProfileData"]["Troops"].append({"TroopId": 998, "Amount": 1})
        when = at(4, 3) + dt.timedelta(seconds=1)
        newcomer = insert(conn, payload, namecode(2), when)
    end = when + dt.timedelta(microseconds=1)
    assert run_job(cfg, from_ts=when, to_ts=end, force=True, reason="new").totals.errors_by_type == {"FK_VIOLATION": 1}
    assert job(pg_dsn, job_id)["from_ts"] < when < job(pg_dsn, job_id)["to_ts"]

    # ... is not taken by the resumed job: it finishes the set it was created with
    with pytest.raises(UsageError, match="is a run job, not a reprocess job"):
        reprocess(cfg, job_id=failed.job_id, options=FORCED)
    res = reprocess(cfg, job_id=job_id, options=RunOptions(force=True, reason="go on"))
    assert res.run is not None and res.run.resumed and res.run.outcome == "done"
    assert res.run.totals.applied == len(left)
    row = job(pg_dsn, job_id)
    assert row["status"] == "done" and row["processed_count"] == 4 and row["total_count"] == 4
    _assert_fixed(pg_dsn, failed, before)
    assert unprocessed(pg_dsn) == {failed.parse_error, newcomer}


def test_another_set_over_the_same_span_is_a_new_job_not_a_resume(pg_dsn: str, tmp_path: Path) -> None:
    cfg = make_cfg(pg_dsn, tmp_path)
    ids = load_corpus(pg_dsn, bad=False)
    stop = threading.Event()
    stop.set()  # interrupted before its first batch: the job stays unfinished
    opts = RunOptions(force=True, reason="first", concurrency=1)
    first = reprocess(cfg, Selection.parse(namecodes=[namecode(3)]), options=opts, stop=stop)
    assert first.run is not None and first.run.outcome == "interrupted"
    oldest, _, newest = ids[namecode(3)]  # the same span, without the middle snapshot
    second = reprocess(cfg, Selection.parse(ids=[(1, oldest), (2, newest)]), options=FORCED)
    assert second.run is not None and not second.run.resumed
    assert second.run.job["job_id"] != first.run.job["job_id"]
    assert (second.run.job["from_ts"], second.run.job["to_ts"]) == (first.run.job["from_ts"], first.run.job["to_ts"])
    assert second.run.job["processed_count"] == 2
    assert job(pg_dsn, first.run.job["job_id"])["status"] == "running"  # left for `reprocess --job-id`
