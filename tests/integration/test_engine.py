"""The job engine, in-process (runbook.run with worker threads) on a real PostgreSQL.

Every run here works on a small synthetic corpus split into many chunks and batches, and is compared with a
clean single-worker run of the same corpus made once per module in a database of its own: the normalized
tables must be equal (by namecode and ids) and every snapshot counted exactly once.
"""

from __future__ import annotations

import itertools
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from engine_state import assert_exact, job_row, load_corpus, scalar, scratch_database, table_state
from running import run_job

from starforge_backfill import jobs, operator, throttle
from starforge_backfill import settings as config_settings
from starforge_backfill.config import Config, load_config
from starforge_backfill.engine import ThrottleDecision
from starforge_backfill.errors import ConfigError, DatabaseUnavailable, ExitCode, GateFailed, UsageError
from starforge_backfill.runbook import control
from starforge_backfill.runbook import run as run_module
from starforge_backfill.runbook.run import RunProgress
from starforge_backfill.synthetic import SyntheticSpec

# engine_state.SPEC with more malformed snapshots.
BAD_SPEC = SyntheticSpec(snapshots=300, users=30, size_mix=((1.0, 8000),), malformed_ratio=0.05)
FROM, TO = "2024-01-01T00:00:00Z", "2024-07-01T00:00:00Z"


def make_cfg(dsn: str, folder: Path, **overrides: Any) -> Config:
    """Small chunks and batches; no throttle unless a test turns it on (the server is shared)."""
    base: dict[str, Any] = {
        "database.dsn": dsn,
        "artifacts_dir": str(folder / "artifacts"),
        "job.chunk_size": 40,
        "etl.batch_size": 10,
        "throttle.enabled": False,
        "gates.ramp": [64],  # start at the requested C (the ramp has its own test)
        "gates.require_preflight": False,  # the engine's tests run without the runbook's gates
        "gates.require_canary": False,
        "throttle.failure_rate_max": 0.05,  # SPEC fails 2% of its snapshots on purpose: within this budget
    }
    return load_config(None, overrides=base | overrides)


# ---- reading the database back: tests/engine_state.py ---------------------------------------------------


def events(dsn: str, job_id: str) -> list[tuple[str, str]]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        return [
            (k, m)
            for k, m in conn.execute(
                "SELECT kind, message FROM backfill_events WHERE job_id = %s ORDER BY id", [job_id]
            ).fetchall()
        ]


@pytest.fixture(scope="module")
def clean_state(server_dsn: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, list[tuple]]]:
    """The tables after one clean C=1 run of SPEC, in a database of its own (dropped afterwards)."""
    with scratch_database(server_dsn, "sf_engine_clean") as dsn:
        load_corpus(dsn)
        res = run_job(make_cfg(dsn, tmp_path_factory.mktemp("clean")), from_ts=FROM, to_ts=TO, concurrency=1)
        assert res.outcome == "done"
        assert_exact(dsn, res.job["job_id"])
        state = table_state(dsn)
        assert len(state["users"]) == 30 and state["etl_errors"]  # the corpus has failures to compare too
        yield state


class Background:
    """Run a callable in a thread; `result()` joins it and returns (or re-raises)."""

    def __init__(self, fn: Callable[[], Any]) -> None:
        self._value: Any = None
        self._error: BaseException | None = None

        def target() -> None:
            try:
                self._value = fn()
            except BaseException as exc:  # handed to the test thread
                self._error = exc

        self.thread = threading.Thread(target=target, daemon=True)
        self.thread.start()

    def result(self, timeout: float = 60.0) -> Any:
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "the run did not finish in time"
        if self._error is not None:
            raise self._error
        return self._value


def wait_for(predicate: Callable[[], Any], timeout: float = 30.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def newest_job(dsn: str) -> str | None:
    return scalar(dsn, "SELECT job_id FROM backfill_jobs ORDER BY created_at DESC LIMIT 1")


# ---- determinism and exactly-once ------------------------------------------------------------------------


def test_c4_gives_the_same_tables_as_c1(pg_dsn: str, tmp_path: Path, clean_state: dict) -> None:
    load_corpus(pg_dsn)
    res = run_job(make_cfg(pg_dsn, tmp_path), from_ts=FROM, to_ts=TO, concurrency=4)
    assert res.outcome == "done" and res.exit_code == ExitCode.OK and not res.resumed
    job = assert_exact(pg_dsn, res.job["job_id"])
    assert job["concurrency"] == 4
    assert scalar(pg_dsn, "SELECT count(DISTINCT worker) FROM backfill_batches") > 1  # really concurrent
    assert res.totals.applied + res.totals.failed == 300
    assert table_state(pg_dsn) == clean_state
    # run again on the same range: nothing left to do, nothing written twice
    again = run_job(make_cfg(pg_dsn, tmp_path), from_ts=FROM, to_ts=TO, concurrency=2)
    assert again.outcome == "done" and again.job["total_count"] == 0
    assert table_state(pg_dsn) == clean_state


def test_a_job_goes_newest_first(pg_dsn: str, tmp_path: Path, clean_state: dict) -> None:
    # Chunks are taken newest first and each chunk is worked newest first: a user's newest snapshot writes
    # its rows, the older ones mostly lose the newest-wins comparison. The tables are the same as ever.
    load_corpus(pg_dsn)
    res = run_job(make_cfg(pg_dsn, tmp_path), from_ts=FROM, to_ts=TO, concurrency=1)
    assert res.outcome == "done"
    assert table_state(pg_dsn) == clean_state
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        batches = [
            r[0]
            for r in conn.execute(
                "SELECT array_agg(created_at) FROM hero_snapshots WHERE processed_at IS NOT NULL"
                " GROUP BY processed_at ORDER BY processed_at"  # processed_at is its batch's transaction time
            )
        ]
        checkpoints = conn.execute(
            "SELECT count(*) FILTER (WHERE (checkpoint_created_at, checkpoint_id) > (lo_created_at, lo_id)"
            " AND (checkpoint_created_at, checkpoint_id) <= (hi_created_at, hi_id)),"
            " count(*) FROM backfill_chunks"
        ).fetchone()
    assert sum(map(len, batches)) > 250 and len(batches) > 20
    # each committed batch holds only snapshots older than every snapshot of the batches before it
    assert all(min(a) > max(b) for a, b in itertools.pairwise(batches))
    assert checkpoints[0] == checkpoints[1] > 1  # every chunk's checkpoint came down from above into its range


def test_a_connection_lost_between_batches_is_reopened(pg_dsn: str, tmp_path: Path, clean_state: dict) -> None:
    """What a server restart does to a worker that is between two batches, made deterministic."""
    load_corpus(pg_dsn)
    cfg = make_cfg(pg_dsn, tmp_path, **{"retry.wait_max": "200ms"})
    cut: list[int] = []

    def progress(p: RunProgress) -> None:  # in a worker thread, between its batch and its next statement
        if p.batches % 4 == 0 and len(cut) < 4:
            cut.append(
                scalar(
                    pg_dsn,
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                    " WHERE datname = current_database() AND pid <> pg_backend_pid()"
                    " AND application_name LIKE 'starforge-backfill:%%'",
                )
            )

    res = run_job(cfg, from_ts=FROM, to_ts=TO, concurrency=2, progress=progress)
    assert res.outcome == "done"
    assert len(cut) == 4 and all(cut), cut
    assert_exact(pg_dsn, res.job["job_id"])
    assert table_state(pg_dsn) == clean_state


def test_a_database_blip_after_the_last_batch_does_not_fail_the_run(
    pg_dsn: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The work is committed when the workers finish; reading the final job row is retried like any
    # transaction, so a connection lost at that moment does not turn a finished run into an error.
    load_corpus(pg_dsn)
    real_get_job, real_run_workers = jobs.get_job, run_module._run_workers
    after_workers: list[bool] = []
    failures: list[int] = []

    def run_workers(*args: Any, **kwargs: Any) -> str:
        outcome = real_run_workers(*args, **kwargs)
        after_workers.append(True)
        return outcome

    def get_job(conn: psycopg.Connection, job_id: str) -> dict[str, Any] | None:
        if after_workers and len(failures) < 2:
            failures.append(1)
            raise psycopg.OperationalError("server closed the connection unexpectedly")  # no SQLSTATE
        return real_get_job(conn, job_id)

    monkeypatch.setattr(run_module, "_run_workers", run_workers)
    monkeypatch.setattr(run_module.jobs, "get_job", get_job)
    res = run_job(make_cfg(pg_dsn, tmp_path, **{"retry.wait_max": "100ms"}), from_ts=FROM, to_ts=TO)
    assert res.outcome == "done" and res.exit_code == ExitCode.OK
    assert len(failures) == 2 and res.job["status"] == "done"
    assert_exact(pg_dsn, res.job["job_id"])


# ---- pause / resume --------------------------------------------------------------------------------------


def test_pause_takes_effect_within_one_batch_and_resume_finishes(
    pg_dsn: str, tmp_path: Path, clean_state: dict
) -> None:
    load_corpus(pg_dsn)
    cfg = make_cfg(pg_dsn, tmp_path)
    marks: dict[str, int] = {}

    def progress(p: RunProgress) -> None:  # runs in a worker thread, right after its batch committed
        marks["last"] = p.batches
        if "paused_at" not in marks and p.done >= 30:
            control.pause(cfg, job_id=p.job_id, reason="operator says stop")
            marks["paused_at"] = p.batches

    concurrency = 2
    res = run_job(cfg, from_ts=FROM, to_ts=TO, concurrency=concurrency, progress=progress)
    assert res.outcome == "paused" and res.exit_code == ExitCode.PAUSED
    # The worker that paused starts no new batch; the other one finishes at most the batch it had in flight.
    assert marks["last"] - marks["paused_at"] <= concurrency - 1, marks
    job_id = res.job["job_id"]
    job = job_row(pg_dsn, job_id)
    assert job["status"] == "paused" and job["status_reason"] == "operator says stop"
    assert 30 <= job["processed_count"] + job["error_count"] < 300
    assert scalar(pg_dsn, "SELECT count(*) FROM backfill_chunks WHERE status = 'running'") == 0  # released
    assert ("paused", "operator says stop") in events(pg_dsn, job_id)

    # pausing a paused job is refused; resume sets it running, a run on it finishes it exactly
    with pytest.raises(GateFailed):
        control.pause(cfg, job_id=job_id)
    resumed = run_module.resume(cfg, job_id=job_id, reason="go on")
    assert resumed["status"] == "running"
    notes: list[str] = []
    done = run_job(cfg, job_id=job_id, concurrency=concurrency, notify=notes.append)
    assert done.outcome == "done" and done.resumed
    assert any(n.startswith(f"resuming job {job_id}") for n in notes), notes
    assert_exact(pg_dsn, job_id)
    assert table_state(pg_dsn) == clean_state
    assert [k for k, _ in events(pg_dsn, job_id)].count("resumed") == 1


def test_run_never_takes_over_a_job_an_operator_paused(pg_dsn: str, tmp_path: Path) -> None:
    load_corpus(pg_dsn)
    cfg = make_cfg(pg_dsn, tmp_path)

    def pause_early(p: RunProgress) -> None:
        if p.done >= 20 and job_row(pg_dsn, p.job_id)["status"] == "running":
            operator.set_current("alice@ops")
            control.pause(cfg, job_id=p.job_id, reason="walk: operator pause")

    try:
        paused = run_job(cfg, from_ts=FROM, to_ts=TO, concurrency=1, progress=pause_early)
        job_id = paused.job["job_id"]
        for force in (False, True):  # --force skips gates; it never undoes a person's pause
            with pytest.raises(GateFailed, match=r"was paused by alice@ops at .* UTC: walk: operator pause") as info:
                run_job(cfg, from_ts=FROM, to_ts=TO, force=force, reason="try" if force else None)
            assert f"resume --job-id {job_id}" in (info.value.hint or "")
        assert job_row(pg_dsn, job_id)["status"] == "paused"  # refused: nothing changed
        operator.set_current("bob@ops")
        run_module.resume(cfg, job_id=job_id, reason="go on")
        done = run_job(cfg, job_id=job_id)
    finally:
        operator.set_current(None)
    assert done.outcome == "done"
    with psycopg.connect(pg_dsn) as conn:
        who = conn.execute(
            "SELECT kind, operator FROM backfill_events WHERE job_id = %s AND kind IN ('paused', 'resumed')"
            " ORDER BY id",
            [job_id],
        ).fetchall()
    assert who == [("paused", "alice@ops"), ("resumed", "bob@ops")]


def test_a_second_run_cannot_exceed_the_jobs_concurrency(pg_dsn: str, tmp_path: Path) -> None:
    load_corpus(pg_dsn)
    cfg = throttled_cfg(pg_dsn, tmp_path, **{"throttle.long_transaction": "1s", "throttle.sleep": "0.3s"})
    with psycopg.connect(pg_dsn) as holder:  # the first run backs off (live, heartbeating) while this is open
        holder.execute("SELECT txid_current()")
        time.sleep(1.2)
        first = Background(lambda: run_job(cfg, from_ts=FROM, to_ts=TO, concurrency=1))
        job_id = wait_for(lambda: newest_job(pg_dsn), what="the job")
        wait_for(lambda: control.status(cfg, job_id=job_id).jobs[0]["live_workers"] == 1, what="the first run's worker")
        with pytest.raises(GateFailed, match=r"already has 1 live worker\(s\), its concurrency 1"):
            run_job(cfg, from_ts=FROM, to_ts=TO)
        with pytest.raises(GateFailed, match="already has 1 live worker"):
            run_job(cfg, from_ts=FROM, to_ts=TO, concurrency=1)
        assert job_row(pg_dsn, job_id)["concurrency"] == 1
        second = Background(lambda: run_job(cfg, from_ts=FROM, to_ts=TO, concurrency=2))  # an explicit raise
        wait_for(lambda: job_row(pg_dsn, job_id)["concurrency"] == 2, what="the raise")
        holder.rollback()
    assert first.result().outcome == "done" and second.result().outcome == "done"
    assert ("concurrency", "concurrency raised 1 -> 2") in events(pg_dsn, job_id)
    assert_exact(pg_dsn, job_id)


@pytest.mark.parametrize("batch_size", [10, None])
def test_batch_size_n_means_n_and_auto_adapts(pg_dsn: str, tmp_path: Path, batch_size: int | None) -> None:
    load_corpus(pg_dsn)
    cfg = make_cfg(
        pg_dsn,
        tmp_path,
        **{
            "throttle.enabled": True,  # the adaptive sizer runs only with the throttle
            "throttle.max_connections_ratio": 1.0,
            "throttle.failure_min_sample": 1_000_000,
            "throttle.target_batch": "30s",  # far above any batch here: auto grows every batch
            "job.chunk_size": 300,
        },
    )
    notes: list[str] = []
    res = run_job(cfg, from_ts=FROM, to_ts=TO, concurrency=1, batch_size=batch_size, notify=notes.append)
    assert res.outcome == "done"
    with psycopg.connect(pg_dsn) as conn:
        sizes = [r[0] for r in conn.execute("SELECT snapshots FROM backfill_batches ORDER BY id").fetchall()]
        fixed = conn.execute("SELECT batch_fixed FROM backfill_jobs").fetchone()[0]  # type: ignore[index]
        chunks = conn.execute("SELECT count(*) FROM backfill_chunks").fetchone()[0]  # type: ignore[index]
    assert sum(sizes) == 300
    if batch_size is None:
        assert sizes[:3] == [10, 15, 22] and not fixed, sizes  # etl.batch_size 10, then x1.5 toward the target
        assert any("batches adapt from 10 toward 30 s each (10-500)" in n for n in notes), notes
    else:
        short = [n for n in sizes if n != 10]  # a chunk's last batch holds what the chunk has left
        assert max(sizes) == 10 and len(short) <= chunks and fixed, (sizes, chunks)
        assert any(n.endswith("; batches of 10") for n in notes), notes


def test_pause_all_pauses_every_running_job(pg_dsn: str, tmp_path: Path) -> None:
    load_corpus(pg_dsn)
    cfg = make_cfg(pg_dsn, tmp_path)
    first = Background(lambda: run_job(cfg, from_ts=FROM, to_ts="2024-04-01", concurrency=1))
    second = Background(lambda: run_job(cfg, from_ts="2024-04-01", to_ts=TO, concurrency=1))
    wait_for(
        lambda: scalar(pg_dsn, "SELECT count(*) FROM backfill_jobs WHERE processed_count > 0") == 2,
        what="both jobs to make progress",
    )
    res = control.pause(cfg, all_jobs=True, reason="maintenance window")
    assert len(res.changed) == 2 and {j["status"] for j in res.changed} == {"paused"}
    assert first.result().outcome == "paused" and second.result().outcome == "paused"
    with pytest.raises(UsageError):
        control.pause(cfg)  # neither --job-id nor --all
    assert control.pause(cfg, all_jobs=True).changed == []  # nothing running any more


# ---- a dead worker's chunk is reclaimed ----------------------------------------------------------------------


def _dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


@pytest.mark.parametrize("how", ["stale-heartbeat-elsewhere", "dead-local-process"])
def test_a_dead_workers_chunk_is_reclaimed(pg_dsn: str, tmp_path: Path, clean_state: dict, how: str) -> None:
    load_corpus(pg_dsn)
    if how == "dead-local-process":
        cfg = make_cfg(pg_dsn, tmp_path)  # claim_ttl 120s: only the dead-process check frees the chunk at once
    else:
        cfg = make_cfg(pg_dsn, tmp_path, **{"job.claim_ttl": "2s", "job.heartbeat": "1s"})

    def die(p: RunProgress) -> None:
        raise RuntimeError("worker crashed")

    with pytest.raises(RuntimeError, match="worker crashed"):
        run_job(cfg, from_ts=FROM, to_ts=TO, concurrency=1, progress=die)
    job_id = newest_job(pg_dsn)
    assert job_id is not None
    # the crashed worker left its chunk 'running' with a moved checkpoint: hand it to a dead owner
    owner = "db-host-2:4242:0" if how == "stale-heartbeat-elsewhere" else f"{socket.gethostname()}:{_dead_pid()}:0"
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        held = conn.execute(
            "UPDATE backfill_chunks SET worker = %s, heartbeat_at = now() WHERE job_id = %s AND status = 'running'"
            " RETURNING chunk_no, processed_count + error_count",
            [owner, job_id],
        ).fetchall()
    assert len(held) == 1 and held[0][1] > 0
    chunk_no = held[0][0]
    started = time.monotonic()
    res = run_job(cfg, job_id=job_id, concurrency=2)
    assert res.outcome == "done"
    assert time.monotonic() - started < 60  # never the 120 s claim_ttl for a dead local process
    assert_exact(pg_dsn, job_id)  # the batch the dead worker committed is not redone
    assert (
        scalar(pg_dsn, "SELECT worker FROM backfill_chunks WHERE job_id = %s AND chunk_no = %s", [job_id, chunk_no])
        != owner
    )
    assert table_state(pg_dsn) == clean_state


# ---- resume guards -----------------------------------------------------------------------------------------


def test_resume_refuses_another_config_unless_forced(pg_dsn: str, tmp_path: Path, clean_state: dict) -> None:
    load_corpus(pg_dsn)
    cfg = make_cfg(pg_dsn, tmp_path)
    stop = threading.Event()

    def interrupt(p: RunProgress) -> None:
        if p.done >= 40:
            stop.set()

    res = run_job(cfg, from_ts=FROM, to_ts=TO, concurrency=1, progress=interrupt, stop=stop)
    assert res.outcome == "interrupted" and res.exit_code == ExitCode.INTERRUPTED
    job_id = res.job["job_id"]
    assert job_row(pg_dsn, job_id)["status"] == "running"  # interrupted, not paused: resumable as is
    assert ("interrupted", "run interrupted; checkpoint saved") in events(pg_dsn, job_id)

    other = make_cfg(pg_dsn, tmp_path, **{"etl.batch_max_bytes": "32MiB"})
    assert other.fingerprint() != cfg.fingerprint()
    with pytest.raises(GateFailed, match="config fingerprint differs"):
        run_job(other, from_ts=FROM, to_ts=TO)
    with pytest.raises(GateFailed, match="config fingerprint differs"):
        run_job(other, job_id=job_id)
    with pytest.raises(UsageError, match="--reason"):
        run_job(other, job_id=job_id, force=True)
    res = run_job(other, job_id=job_id, force=True, reason="raise the byte cap", concurrency=3)
    assert res.outcome == "done" and res.resumed
    assert_exact(pg_dsn, job_id)
    assert table_state(pg_dsn) == clean_state
    with pytest.raises(UsageError, match="no job"):
        run_job(cfg, job_id="run-nope")


def test_concurrency_above_the_connection_budget_is_refused(pg_dsn: str, tmp_path: Path) -> None:
    cfg = make_cfg(pg_dsn, tmp_path, **{"database.max_connections_share": 0.05})
    max_conn = int(scalar(pg_dsn, "SHOW max_connections"))
    too_many = max(1, int(max_conn * 0.05))
    with pytest.raises(UsageError, match="max_connections") as info:
        run_job(cfg, from_ts=FROM, to_ts=TO, concurrency=too_many)
    assert info.value.exit_code == ExitCode.USAGE
    assert scalar(pg_dsn, "SELECT count(*) FROM backfill_jobs") == 0  # refused before creating anything


# ---- status --------------------------------------------------------------------------------------------------


def test_status_lists_jobs_newest_first_in_the_documented_shape(pg_dsn: str, tmp_path: Path) -> None:
    load_corpus(pg_dsn)
    cfg = make_cfg(pg_dsn, tmp_path)
    older = run_job(cfg, from_ts=FROM, to_ts="2024-02-01", concurrency=1).job["job_id"]
    newer = run_job(cfg, from_ts="2024-02-01", to_ts="2024-03-01", concurrency=1).job["job_id"]
    out = control.status(cfg).to_json()
    assert [j["job_id"] for j in out["jobs"]] == [newer, older]
    for j in out["jobs"]:
        assert set(jobs.STATUS_FIELDS) <= set(j)
        assert j["status"] == "done" and j["mode"] == "run"
        assert j["processed_count"] + j["error_count"] == j["total_count"] > 0
        assert j["progress"] == 1.0 and j["chunks_done"] == j["chunks_total"]
        assert isinstance(j["last_checkpoint"], dict) and {"created_at", "id", "chunk"} <= set(j["last_checkpoint"])
    assert control.status(cfg, job_id=older).jobs[0]["job_id"] == older
    with pytest.raises(UsageError):
        control.status(cfg, job_id="run-nope")


# ---- throttle gates ------------------------------------------------------------------------------------------

HEALTHY = {
    "connections": 10,
    "max_connections": 100,
    "long_transactions": 0,
    "replica_lag_s": 0.0,
    "replicas": 0,
    "window_snapshots": 0,
    "window_failed": 0,
}


def test_evaluate_healthy() -> None:
    assert throttle.evaluate(HEALTHY, throttle.ThrottleSettings()) == ThrottleDecision()


def test_evaluate_connections_gate_pauses_above_the_ratio() -> None:
    s = throttle.ThrottleSettings(max_connections_ratio=0.8)
    assert throttle.evaluate(HEALTHY | {"connections": 80}, s).pause_reason is None  # at 80%: not above
    d = throttle.evaluate(HEALTHY | {"connections": 81}, s)
    assert d.pause_reason and "81/100" in d.pause_reason and d.state == "paused:connections"


def test_evaluate_failure_rate_gate_needs_the_min_sample() -> None:
    s = throttle.ThrottleSettings(failure_rate_max=0.01, failure_min_sample=200)
    assert throttle.evaluate(HEALTHY | {"window_snapshots": 199, "window_failed": 50}, s).pause_reason is None
    assert throttle.evaluate(HEALTHY | {"window_snapshots": 200, "window_failed": 2}, s).pause_reason is None
    d = throttle.evaluate(HEALTHY | {"window_snapshots": 200, "window_failed": 3}, s)
    assert d.pause_reason and "3/200" in d.pause_reason and d.state == "paused:failure-rate"


def test_evaluate_long_transactions_slow_down() -> None:
    s = throttle.ThrottleSettings(long_transaction_s=60, sleep_s=0.5)
    d = throttle.evaluate(HEALTHY | {"long_transactions": 2}, s)
    assert d.pause_reason is None and d.sleep_s == 0.5 and d.state and d.state.startswith("slow: 2 other")


def test_evaluate_replica_lag_slows_down() -> None:
    s = throttle.ThrottleSettings(replica_lag_max_s=30, sleep_s=2)
    assert throttle.evaluate(HEALTHY | {"replicas": 1, "replica_lag_s": 30.0}, s) == ThrottleDecision()
    assert throttle.evaluate(HEALTHY | {"replicas": 0, "replica_lag_s": 99.0}, s) == ThrottleDecision()
    d = throttle.evaluate(HEALTHY | {"replicas": 2, "replica_lag_s": 45.5}, s)
    assert d.pause_reason is None and d.sleep_s == 2 and d.state == "slow: replica lag 45.5s > 30s"


def test_evaluate_replica_lag_holds_until_below_the_resume_mark() -> None:
    s = throttle.ThrottleSettings(replica_lag_max_s=30, replica_lag_resume_s=10, sleep_s=2)
    lagging = HEALTHY | {"replicas": 1}
    held = throttle.evaluate(lagging | {"replica_lag_s": 31.0}, s)
    assert held.key == throttle.REPLICA_LAG and held.sleep_s == 2
    band = throttle.evaluate(lagging | {"replica_lag_s": 20.0}, s, held.key)  # under the max, over the mark
    assert band.key == throttle.REPLICA_LAG and band.sleep_s == 2
    assert band.state == "slow: replica lag 20.0s, resuming below 10s"
    assert throttle.evaluate(lagging | {"replica_lag_s": 20.0}, s) == ThrottleDecision()  # not held: no hold
    assert throttle.evaluate(lagging | {"replica_lag_s": 9.9}, s, held.key) == ThrottleDecision()
    other = throttle.evaluate(lagging | {"replica_lag_s": 20.0}, s, "slow:long-transactions")
    assert other == ThrottleDecision()  # only a hold for lag is kept by the lower mark
    cfg_default = config_settings.throttle(load_config(None, overrides={"throttle.replica_lag_max": "8s"}))
    assert cfg_default.replica_lag_resume_s == 4.0  # unset: half the max
    with pytest.raises(ConfigError, match=r"throttle\.replica_lag_resume: must be <= throttle\.replica_lag_max"):
        load_config(None, overrides={"throttle.replica_lag_resume": "40s"})


def test_evaluate_pauses_before_slowing_down() -> None:
    bad = HEALTHY | {"connections": 95, "long_transactions": 3, "replicas": 1, "replica_lag_s": 100.0}
    assert throttle.evaluate(bad, throttle.ThrottleSettings()).state == "paused:connections"


def throttled_cfg(dsn: str, folder: Path, **overrides: Any) -> Config:
    base = {  # every gate out of the way but the one a test trips (the server is shared with other tests)
        "throttle.enabled": True,
        "throttle.max_batch_size": 10,
        "throttle.sleep": "0.2s",
        "throttle.max_connections_ratio": 1.0,
        "throttle.failure_min_sample": 1_000_000,
        # health before every batch: a gate test must not depend on how many batches fit in a second
        "throttle.check_every": "0s",
    }
    return make_cfg(dsn, folder, **(base | overrides))


def test_connections_gate_pauses_the_job_with_its_reason(pg_dsn: str, tmp_path: Path) -> None:
    load_corpus(pg_dsn)
    cfg = throttled_cfg(pg_dsn, tmp_path, **{"throttle.max_connections_ratio": 0.001})
    res = run_job(cfg, from_ts=FROM, to_ts=TO, concurrency=2)
    assert res.outcome == "paused" and res.exit_code == ExitCode.PAUSED
    job = job_row(pg_dsn, res.job["job_id"])
    assert job["status"] == "paused" and job["processed_count"] == 0
    assert job["status_reason"].startswith("gate: database connections at ")
    assert job["throttle_state"] == "paused:connections"
    gates = [m for k, m in events(pg_dsn, job["job_id"]) if k == "gate"]
    assert gates == [job["status_reason"]]  # recorded once, though two workers saw it


def test_failure_rate_gate_pauses_on_a_corpus_with_5_percent_bad(pg_dsn: str, tmp_path: Path) -> None:
    load_corpus(pg_dsn, BAD_SPEC)
    cfg = throttled_cfg(
        pg_dsn,
        tmp_path,
        **{"throttle.failure_min_sample": 50, "throttle.failure_window": "5m", "throttle.failure_rate_max": 0.01},
    )
    res = run_job(cfg, from_ts=FROM, to_ts=TO, concurrency=1)
    assert res.outcome == "paused"
    job = job_row(pg_dsn, res.job["job_id"])
    assert job["status"] == "paused" and job["throttle_state"] == "paused:failure-rate"
    assert job["status_reason"].startswith("gate: failure rate ") and "(> 1.0%)" in job["status_reason"]
    handled = job["processed_count"] + job["error_count"]
    assert 50 <= handled < 300 and job["error_count"] > 0
    assert ("gate", job["status_reason"]) in events(pg_dsn, job["job_id"])
    # The same config would trip again at once; a looser one must be forced, and then finishes the job.
    looser = throttled_cfg(
        pg_dsn,
        tmp_path,
        **{"throttle.failure_min_sample": 50, "throttle.failure_window": "5m", "throttle.failure_rate_max": 0.5},
    )
    with pytest.raises(GateFailed, match=r"was paused by a gate at .*: gate: failure rate"):
        run_job(looser, job_id=job["job_id"], force=True, reason="force skips gates, never undoes a pause")
    with pytest.raises(GateFailed, match="config fingerprint differs"):
        run_module.resume(looser, job_id=job["job_id"])
    run_module.resume(looser, job_id=job["job_id"], force=True, reason="known bad snapshots")
    res = run_job(looser, job_id=job["job_id"], force=True, reason="known bad snapshots", concurrency=2)
    assert res.outcome == "done"
    done = assert_exact(pg_dsn, job["job_id"])
    assert done["throttle_state"] is None
    assert done["error_count"] == scalar(pg_dsn, "SELECT count(*) FROM etl_errors")


def test_long_transaction_slows_down_until_it_ends(pg_dsn: str, tmp_path: Path, clean_state: dict) -> None:
    load_corpus(pg_dsn)
    cfg = throttled_cfg(pg_dsn, tmp_path, **{"throttle.long_transaction": "1s"})
    with psycopg.connect(pg_dsn) as holder:  # another session's transaction, older than 1 s
        holder.execute("SELECT txid_current()")
        time.sleep(1.2)
        run = Background(lambda: run_job(cfg, from_ts=FROM, to_ts=TO, concurrency=2))
        job_id = wait_for(lambda: newest_job(pg_dsn), what="the job")
        state = wait_for(lambda: job_row(pg_dsn, job_id)["throttle_state"], what="the throttle state")
        assert state == "slow: 1 other transaction(s) older than 1s"
        before = job_row(pg_dsn, job_id)
        time.sleep(1.0)
        after = job_row(pg_dsn, job_id)
        assert after["processed_count"] + after["error_count"] == before["processed_count"] + before["error_count"]
        assert after["status"] == "running"
        holder.rollback()
    res = run.result()
    assert res.outcome == "done"
    assert_exact(pg_dsn, job_id)
    kinds = [(k, m) for k, m in events(pg_dsn, job_id) if k == "throttle"]
    assert kinds == [("throttle", state), ("throttle", "healthy: throttle lifted")]
    assert table_state(pg_dsn) == clean_state


def test_a_pause_is_honoured_while_throttled(pg_dsn: str, tmp_path: Path) -> None:
    load_corpus(pg_dsn)
    cfg = throttled_cfg(pg_dsn, tmp_path, **{"throttle.long_transaction": "1s"})
    with psycopg.connect(pg_dsn) as holder:
        holder.execute("SELECT txid_current()")
        time.sleep(1.2)
        run = Background(lambda: run_job(cfg, from_ts=FROM, to_ts=TO, concurrency=2))
        job_id = wait_for(lambda: newest_job(pg_dsn), what="the job")
        wait_for(lambda: job_row(pg_dsn, job_id)["throttle_state"], what="the throttle state")
        control.pause(cfg, job_id=job_id, reason="stop while slow")
        res = run.result(timeout=15)  # the workers are sleeping between batches: they must notice
        holder.rollback()
    assert res.outcome == "paused"
    assert job_row(pg_dsn, job_id)["status_reason"] == "stop while slow"


def test_replica_lag_slows_down_and_is_recorded(pg_dsn: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    load_corpus(pg_dsn)
    cfg = throttled_cfg(pg_dsn, tmp_path, **{"throttle.replica_lag_max": "10s"})
    lag = {"s": 42.0}
    real_read = throttle.HealthThrottle.read

    def fake_read(self: throttle.HealthThrottle, conn: psycopg.Connection, job_id: str) -> dict[str, Any]:
        return real_read(self, conn, job_id) | {"replicas": 1, "replica_lag_s": lag["s"]}

    monkeypatch.setattr(throttle.HealthThrottle, "read", fake_read)
    run = Background(lambda: run_job(cfg, from_ts=FROM, to_ts=TO, concurrency=1))
    job_id = wait_for(lambda: newest_job(pg_dsn), what="the job")
    state = wait_for(lambda: job_row(pg_dsn, job_id)["throttle_state"], what="the throttle state")
    assert state == "slow: replica lag 42.0s > 10s"
    time.sleep(0.5)
    assert job_row(pg_dsn, job_id)["processed_count"] + job_row(pg_dsn, job_id)["error_count"] == 0
    lag["s"] = 0.5
    assert run.result().outcome == "done"
    assert_exact(pg_dsn, job_id)
    assert ("throttle", state) in events(pg_dsn, job_id)


# ---- the concurrency ramp ------------------------------------------------------------------------------------


def test_a_production_run_ramps_concurrency_up_while_the_gates_hold(pg_dsn: str, tmp_path: Path) -> None:
    load_corpus(pg_dsn)
    cfg = make_cfg(pg_dsn, tmp_path, **{"gates.ramp": [1, 2], "gates.ramp_step": "0.3s", "etl.batch_size": 5})
    assert run_module.ramp_schedule(cfg.gates.ramp, 4) == [1, 2, 4]
    assert run_module.ramp_schedule((1, 2, 4), 2) == [1, 2]
    res = run_job(cfg, from_ts=FROM, to_ts=TO, concurrency=4)
    assert res.outcome == "done"
    job_id = res.job["job_id"]
    with psycopg.connect(pg_dsn) as conn:
        steps = [
            r[0]
            for r in conn.execute(
                "SELECT details FROM backfill_events WHERE job_id = %s AND kind = 'ramp' ORDER BY id", [job_id]
            )
        ]
    ups = [(d["from"], d["to"]) for d in steps if "to" in d]
    assert ups and ups[0] == (1, 2), steps  # started at one worker, then stepped up
    first_batches = scalar(
        pg_dsn,
        "SELECT count(DISTINCT worker) FROM (SELECT worker FROM backfill_batches WHERE job_id = %s"
        " ORDER BY id LIMIT 3) AS b",
        [job_id],
    )
    assert first_batches == 1  # the first batches ran on the first step: one worker
    assert res.job["processed_count"] + res.job["error_count"] == 300


def test_the_ramp_holds_when_the_job_is_not_healthy(pg_dsn: str, tmp_path: Path) -> None:
    load_corpus(pg_dsn)
    cfg = make_cfg(pg_dsn, tmp_path, **{"gates.ramp": [1], "throttle.enabled": True})
    res = run_job(cfg, from_ts=FROM, to_ts=TO, concurrency=1)  # create a job to hold
    job_id = res.job["job_id"]
    options = config_settings.engine(cfg, 10, tmp_path, job_id)
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute("UPDATE backfill_jobs SET status = 'paused' WHERE job_id = %s", [job_id])
    assert run_module._ramp_allowed(cfg, job_id, options, 1, 2) is False
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute("UPDATE backfill_jobs SET status = 'running' WHERE job_id = %s", [job_id])
    assert run_module._ramp_allowed(cfg, job_id, options, 1, 2) is True


def test_the_ramp_holds_while_the_database_is_away(
    pg_dsn: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    load_corpus(pg_dsn)
    cfg = make_cfg(pg_dsn, tmp_path, **{"gates.ramp": [1, 2], "gates.ramp_step": "0.3s"})
    real = run_module._ramp_allowed
    calls: list[int] = []

    def away_once(*args: Any) -> bool:
        calls.append(args[3])
        if len(calls) == 1:
            raise DatabaseUnavailable("cannot connect to the database: the server is restarting")
        return real(*args)

    monkeypatch.setattr(run_module, "_ramp_allowed", away_once)
    res = run_job(cfg, from_ts=FROM, to_ts=TO, concurrency=2)
    assert res.outcome == "done"
    assert calls[:2] == [1, 1]  # held at one worker, stepped up at the next step
    assert_exact(pg_dsn, res.job["job_id"])


def test_a_throttled_worker_keeps_its_chunk_alive(pg_dsn: str, tmp_path: Path) -> None:
    load_corpus(pg_dsn)
    cfg = throttled_cfg(
        pg_dsn, tmp_path, **{"throttle.long_transaction": "1s", "throttle.sleep": "0.3s", "job.heartbeat": "0.5s"}
    )
    with psycopg.connect(pg_dsn) as holder:  # another session's transaction, older than 1 s
        holder.execute("SELECT txid_current()")
        time.sleep(1.2)
        run = Background(lambda: run_job(cfg, from_ts=FROM, to_ts=TO, concurrency=1))
        job_id = wait_for(lambda: newest_job(pg_dsn), what="the job")
        wait_for(lambda: job_row(pg_dsn, job_id)["throttle_state"], what="the throttle state")
        time.sleep(2.5)  # backing off, committing nothing
        age = scalar(
            pg_dsn,
            "SELECT extract(epoch FROM now() - min(heartbeat_at)) FROM backfill_chunks"
            " WHERE job_id = %s AND status = 'running'",
            [job_id],
        )
        holder.rollback()
    assert age is not None and float(age) < 1.5  # not left to look dead to other workers (claim_ttl)
    assert run.result().outcome == "done"
