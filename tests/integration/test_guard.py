"""The production guard (guard.py, guard_watch.py) on a real PostgreSQL, with real load for every signal:
a production session waiting on a lock a backfill batch holds, sessions sleeping in pg_sleep, dead tuples
after a big DELETE with autovacuum off, a (throttled, slow) VACUUM, WAL written by another session, a slow
probe set with `guard set` on a running job. Decisions are read back from the tables (guard_readings,
backfill_events, the job row), never from log lines.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from engine_state import assert_exact, job_row, load_corpus, scalar, scratch_database, table_state
from running import run_job
from test_engine import Background, events, make_cfg, newest_job, wait_for

from starforge_backfill import guard as guard_module
from starforge_backfill import settings as config_settings
from starforge_backfill.config import Config
from starforge_backfill.errors import ConfigError, UsageError
from starforge_backfill.runbook import control
from starforge_backfill.runbook import guard as guard_runbook
from starforge_backfill.runbook import report as report_module

FROM, TO = "2024-01-01T00:00:00Z", "2024-07-01T00:00:00Z"
QUIET = {  # every guard signal out of the way but the one a test drives (the server is shared)
    "throttle.enabled": True,
    "throttle.max_connections_ratio": 1.0,
    "throttle.failure_min_sample": 1_000_000,
    "throttle.probe_latency_ratio_max": 0,
    "throttle.probe_latency_ratio_critical": 0,
    "throttle.probe_min_tps": 0,
    "throttle.active_sessions_max": 0,
    "throttle.waiting_sessions_max": 0,
    "throttle.dead_tuples_max": 0,
    "throttle.autovacuum_hold": False,
    "throttle.wal_bytes_per_s_max": 0,
    "throttle.check_every": "0.1s",
    "throttle.sleep": "0.1s",
    "throttle.guard_step": "0.2s",
    "throttle.slow_recover": "0.2s",
    "throttle.hold_recover": "1s",
    "throttle.sample_every": "0.5s",
    "throttle.block_check": "0.1s",
}


def guarded_cfg(dsn: str, folder: Path, **overrides: Any) -> Config:
    return make_cfg(dsn, folder, **(QUIET | overrides))


def a_guard(cfg: Config, job_id: str = "guard-test") -> guard_module.ProductionGuard:
    return config_settings.production_guard(cfg, job_id)


def check_now(g: guard_module.ProductionGuard) -> None:
    g._checked = 0.0  # the next check reads at once
    g.check()


def guard_events(dsn: str, job_id: str) -> list[str]:
    return [m for k, m in events(dsn, job_id) if k == "guard"]


@pytest.fixture(scope="module")
def clean_state(server_dsn: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, list[tuple]]]:
    """The tables after one clean C=1 run without the guard, in a database of its own."""
    with scratch_database(server_dsn, "sf_guard_clean") as dsn:
        load_corpus(dsn)
        res = run_job(make_cfg(dsn, tmp_path_factory.mktemp("clean")), from_ts=FROM, to_ts=TO, concurrency=1)
        assert res.outcome == "done"
        yield table_state(dsn)


# ---- (b) a backfill never holds up production -------------------------------------------------------------

SLOW_USERS_TRIGGER = """
CREATE TABLE guard_test_slow (on_ boolean);
INSERT INTO guard_test_slow VALUES (true);
CREATE FUNCTION guard_test_sleep() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM guard_test_slow) THEN PERFORM pg_sleep(6); END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER guard_test_sleep AFTER INSERT ON users FOR EACH STATEMENT EXECUTE FUNCTION guard_test_sleep();
"""


def test_a_batch_that_blocks_a_production_session_yields(pg_dsn: str, tmp_path: Path, clean_state: dict) -> None:
    load_corpus(pg_dsn)
    with psycopg.connect(pg_dsn, autocommit=True) as admin:
        admin.execute(SLOW_USERS_TRIGGER)  # the first batch holds its lock on users for 6 s
    cfg = guarded_cfg(pg_dsn, tmp_path)
    run = Background(lambda: run_job(cfg, from_ts=FROM, to_ts=TO, concurrency=1, batch_size=10))
    job_id = wait_for(lambda: newest_job(pg_dsn), what="the job")
    sleeping = (
        "SELECT count(*) FROM pg_stat_activity"
        " WHERE application_name LIKE 'starforge-backfill:%%' AND wait_event = 'PgSleep'"
    )
    wait_for(lambda: scalar(pg_dsn, sleeping), what="a batch holding its lock on users")
    with psycopg.connect(pg_dsn, autocommit=True) as admin:
        admin.execute("DELETE FROM guard_test_slow")  # the retried batch is quick
    with psycopg.connect(pg_dsn, application_name="production-app") as prod:
        prod.execute("SET lock_timeout = '20s'")
        t0 = time.monotonic()
        prod.execute("LOCK TABLE users IN SHARE MODE")  # waits on the batch's ROW EXCLUSIVE lock
        waited = time.monotonic() - t0
        prod.commit()
    res = run.result()
    assert waited < 2.0, f"production waited {waited:.1f}s on the backfill"
    assert res.outcome == "done"
    yielded = [m for k, m in events(pg_dsn, job_id) if k == "yielded"]
    assert yielded and "blocked production session" in yielded[0]
    assert_exact(pg_dsn, job_id)
    assert table_state(pg_dsn) == clean_state
    blocked = scalar(pg_dsn, "SELECT max(blocked_by_backfill) FROM guard_readings WHERE job_id = %s", [job_id])
    assert blocked >= 1  # the reading after the cut counts it
    with psycopg.connect(pg_dsn) as c:
        sizes = [
            r[0] for r in c.execute("SELECT snapshots FROM backfill_batches WHERE job_id = %s ORDER BY id", [job_id])
        ]
    # the cut batch was retried at half the size (not one snapshot at a time), then --batch-size 10 again
    assert sizes[0] == 5 and sizes[1] == 10 and min(sizes) >= 5, sizes


# ---- each signal drives a decision ------------------------------------------------------------------------


def _sleepers(dsn: str, n: int, seconds: float) -> list[threading.Thread]:
    def sleep() -> None:
        with psycopg.connect(dsn, autocommit=True, application_name="production-app") as c:
            c.execute("SELECT pg_sleep(%s)", [seconds])

    threads = [threading.Thread(target=sleep, daemon=True) for _ in range(n)]
    for t in threads:
        t.start()
    return threads


def test_active_sessions_slow_down_one_step_at_a_time_and_events_only_on_change(pg_dsn: str, tmp_path: Path) -> None:
    cfg = guarded_cfg(pg_dsn, tmp_path, **{"throttle.active_sessions_max": 3})
    g = a_guard(cfg)
    for w in ("w1", "w2", "w3", "w4"):
        assert g.may_work(w)
    assert g.batch_cap(400) == 400
    check_now(g)
    assert g.level == "healthy"
    threads = _sleepers(pg_dsn, 6, 3.0)
    q = "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'production-app' AND state = 'active'"
    wait_for(lambda: scalar(pg_dsn, q) >= 6, what="six sleeping sessions")
    seen = []
    deadline = time.monotonic() + 1.5
    while time.monotonic() < deadline:  # the condition held for a while: many readings, one event
        check_now(g)
        seen.append((g.level, g.allowed, g.cap))
        time.sleep(0.05)
    assert {lvl for lvl, _, _ in seen} == {"slow"}
    assert seen[0][1:] == (3, 200) and seen[-1][1] == 1  # one worker fewer and half the batch per step
    assert not g.may_work("w2") and g.may_work("w1") and g.batch_cap(400) < 200
    for t in threads:
        t.join()
    deadline = time.monotonic() + 3.0
    while (g.allowed, g.cap) != (None, None) and time.monotonic() < deadline:  # back up step by step
        check_now(g)
        time.sleep(0.05)
    assert g.level == "healthy" and g.allowed is None and g.cap is None
    msgs = guard_events(pg_dsn, "guard-test")
    assert len(msgs) == 2 and msgs[0].startswith("guard slow: ") and "other active session(s) > 3" in msgs[0]
    assert msgs[1] == "guard healthy: production unhurt"
    states = [r[0] for r in psycopg.connect(pg_dsn).execute("SELECT state FROM guard_readings ORDER BY id")]
    assert "slow" in states and states[-1] == "healthy"
    g.close()


def test_slow_at_one_worker_idles_after_each_batch_and_the_idling_goes_first_on_recovery(
    pg_dsn: str, tmp_path: Path
) -> None:
    """gh-ost's nice-ratio: once one worker is left, each batch is followed by nice x its duration of idling,
    nice growing by nice_step per step up to nice_ratio_max; when healthy again it shrinks before a worker returns."""
    from starforge_backfill.etl.pipeline import BatchResult

    knobs = {"throttle.active_sessions_max": 3, "throttle.nice_ratio_max": 1.5, "throttle.nice_step": 0.5}
    cfg = guarded_cfg(pg_dsn, tmp_path, **knobs)
    g = a_guard(cfg)
    for w in ("w1", "w2"):
        assert g.may_work(w)
    threads = _sleepers(pg_dsn, 6, 3.0)
    q = "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'production-app' AND state = 'active'"
    wait_for(lambda: scalar(pg_dsn, q) >= 6, what="six sleeping sessions")
    niceness, caps = [], []
    deadline = time.monotonic() + 1.5
    while time.monotonic() < deadline:
        check_now(g)
        niceness.append((g.allowed, g.nice))
        caps.append(g.cap)
        time.sleep(0.05)
    assert niceness[0] == (1, 0.0)  # first one worker fewer, no idling yet
    assert len(set(caps)) == 1  # at one worker the idling grows, the batch cap no longer halves
    assert [n for _, n in niceness if n][:1] == [0.5] and niceness[-1] == (1, 1.5)  # then 0.5 a step, up to the max
    with psycopg.connect(pg_dsn) as conn:
        g.after_batch(BatchResult(snapshots=10), 0.2)
        first = g.before_batch(conn, "guard-test")
        second = g.before_batch(conn, "guard-test")
    assert first.sleep_s == pytest.approx(0.3) and "nice 1.5" in (first.state or "")  # 1.5 x the 0.2 s batch
    assert second.sleep_s == 0  # owed once per batch
    for t in threads:
        t.join()
    recovery = []
    deadline = time.monotonic() + 3.0
    while (g.allowed, g.cap, g.nice) != (None, None, 0.0) and time.monotonic() < deadline:
        check_now(g)
        recovery.append((g.allowed, g.nice))
        time.sleep(0.05)
    assert g.level == "healthy" and g.nice == 0.0 and g.allowed is None
    back = next(i for i, (allowed, _) in enumerate(recovery) if allowed != 1)
    assert all(n == 0.0 for _, n in recovery[back:])  # no worker came back while the backfill still idled
    g.close()


def test_a_slow_probe_counts_only_while_the_server_has_traffic_to_hurt(pg_dsn: str, tmp_path: Path) -> None:
    """On a server with next to no transactions but ours, a slow probe is our own load: the guard stays
    healthy (the idle-server cost). Once production runs transactions (a session committing SELECT 1 in a
    loop), the same slow probe slows the job. The rate is kept in guard_readings."""
    with psycopg.connect(pg_dsn, autocommit=True) as c:
        c.execute("DROP TABLE IF EXISTS probe_slow; CREATE TABLE probe_slow (x int)")
    knobs = {
        "throttle.probe_sql": "SELECT pg_sleep(CASE WHEN EXISTS (SELECT 1 FROM probe_slow) THEN 0.03 ELSE 0 END)",
        "throttle.probe_latency_ratio_max": 1.5,
        "throttle.probe_floor_ms": 5,
        "throttle.probe_min_tps": 100,
        "throttle.sample_every": "0.1s",
    }
    g = a_guard(guarded_cfg(pg_dsn, tmp_path, **knobs))
    check_now(g)  # the baseline, fast
    with psycopg.connect(pg_dsn, autocommit=True) as c:
        c.execute("INSERT INTO probe_slow VALUES (1)")
    t0 = time.monotonic()
    while time.monotonic() - t0 < 2.5:
        check_now(g)
        time.sleep(0.2)
    assert g.level == "healthy" and g.last["probe_p90_ms"] > 25  # slow probes, but no one to hurt
    busy = threading.Event()

    def traffic() -> None:
        with psycopg.connect(pg_dsn, autocommit=True, application_name="production-app") as c:
            while not busy.is_set():
                c.execute("SELECT 1")

    t = threading.Thread(target=traffic, daemon=True)
    t.start()
    try:
        wait_for(lambda: (check_now(g), g.level)[1] == "slow", what="a slow guard under traffic", timeout=15)
    finally:
        busy.set()
        t.join()
    rows = psycopg.connect(pg_dsn).execute("SELECT state, xacts_per_s FROM guard_readings ORDER BY id").fetchall()
    quiet = [x for state, x in rows if state == "healthy" and x is not None]
    assert quiet and min(quiet) < 100
    assert rows[-1][0] == "slow" and rows[-1][1] >= 100
    g.close()


def test_each_check_times_probe_samples_probes_and_judges_their_window(pg_dsn: str, tmp_path: Path) -> None:
    """One probe a second misses most of a short stall: each check runs `probe_samples` probes (counted here
    by a probe that notifies a listener with its clock: pg_notify works in the probe's READ ONLY
    transaction), and the p90 is over the last `probe_window` of them."""
    knobs = {
        "throttle.probe_sql": "SELECT pg_notify('probe_hits', clock_timestamp()::text)",
        "throttle.probe_samples": 4,
        "throttle.baseline_samples": 5,
        "throttle.probe_window": 6,
    }
    listener = psycopg.connect(pg_dsn, autocommit=True)
    listener.execute("LISTEN probe_hits")
    hits: list[str] = []

    def heard() -> int:
        hits.extend(n.payload for n in listener.notifies(timeout=0.5, stop_after=100))
        return len(hits)

    g = a_guard(guarded_cfg(pg_dsn, tmp_path, **knobs))
    check_now(g)
    assert heard() == 5 + 4  # the baseline, then one check's probes
    check_now(g)
    assert heard() == 5 + 4 + 4
    assert len(g._samples) == 6  # the window keeps the newest probe_window
    gaps = scalar(
        pg_dsn,
        "SELECT min(d) FROM (SELECT t - lag(t) OVER (ORDER BY t) AS d FROM unnest(%s::timestamptz[]) t) x",
        [hits],
    )
    assert gaps.total_seconds() >= 0.004  # spaced a few ms apart, not back to back
    g.close()
    listener.close()


def test_the_probe_runs_read_only_and_a_writing_probe_is_refused_at_config_time(pg_dsn: str, tmp_path: Path) -> None:
    """The probe runs every second against production: a probe that writes is refused when the config is
    read (one line, the reason), and what it calls runs in a READ ONLY transaction all the same: a function
    that inserts fails, nothing is written, and the guard's connection is usable afterwards."""
    with pytest.raises(ConfigError, match=r"throttle\.probe_sql: must be read-only: it runs INSERT"):
        guarded_cfg(pg_dsn, tmp_path, **{"throttle.probe_sql": "WITH x AS (INSERT INTO t VALUES (1)) SELECT 1"})
    with pytest.raises(ConfigError, match="must be one statement, got 2"):
        guarded_cfg(pg_dsn, tmp_path, **{"throttle.probe_sql": "SELECT 1; SELECT 2"})
    with pytest.raises(ConfigError, match="must not lock rows"):
        guarded_cfg(pg_dsn, tmp_path, **{"throttle.probe_sql": "SELECT * FROM users FOR UPDATE"})
    with psycopg.connect(pg_dsn, autocommit=True) as c:
        c.execute("DROP TABLE IF EXISTS probe_writes; CREATE TABLE probe_writes (x int)")
        c.execute(
            "CREATE OR REPLACE FUNCTION probe_write() RETURNS int LANGUAGE sql AS "
            "'INSERT INTO probe_writes VALUES (1) RETURNING x'"
        )
    g = a_guard(guarded_cfg(pg_dsn, tmp_path, **{"throttle.probe_sql": "SELECT probe_write()"}))
    conn = g._db()
    with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
        g._probe(conn)
    assert scalar(pg_dsn, "SELECT count(*) FROM probe_writes") == 0
    assert conn.execute("SELECT 1").fetchone() == (1,)  # the failed block was rolled back
    g.close()
    # a trailing comment does not swallow the COMMIT: the guard's session is not left in a transaction
    g = a_guard(guarded_cfg(pg_dsn, tmp_path, **{"throttle.probe_sql": "SELECT 1 -- the summary lookup"}))
    conn = g._db()
    g._probe(conn)
    assert conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
    state = "SELECT state FROM pg_stat_activity WHERE pid = %s"
    assert scalar(pg_dsn, state, [conn.info.backend_pid]) == "idle"
    g.close()


def test_a_gap_with_no_batch_in_flight_rebaselines_the_probe(pg_dsn: str, tmp_path: Path) -> None:
    """Production's own latency changes over a long job: every rebaseline_every, no new batch starts until
    the batches in flight are over; then the probe is timed without the backfill and the baseline follows
    it (the median of the latest three). A production that got slower by itself (here: a probe that sleeps
    20 ms once a row exists) then stops counting as our harm; with rebaseline_every 0 it slows the job."""
    with psycopg.connect(pg_dsn, autocommit=True) as c:
        c.execute("DROP TABLE IF EXISTS probe_slow; CREATE TABLE probe_slow (x int)")
    knobs = {
        "throttle.probe_sql": "SELECT pg_sleep(CASE WHEN EXISTS (SELECT 1 FROM probe_slow) THEN 0.02 ELSE 0 END)",
        "throttle.probe_latency_ratio_max": 1.5,
        "throttle.probe_floor_ms": 5,
        "throttle.baseline_samples": 3,
        "throttle.probe_window": 3,
        "throttle.rebaseline_every": "0.3s",
    }
    conn = psycopg.connect(pg_dsn, autocommit=True)
    g = a_guard(guarded_cfg(pg_dsn, tmp_path, **knobs))
    fixed = a_guard(guarded_cfg(pg_dsn, tmp_path, **(knobs | {"throttle.rebaseline_every": "0s"})), "guard-fixed")
    for guard in (g, fixed):
        assert guard.before_batch(conn, guard.job_id).sleep_s == 0  # the baseline, fast
        assert guard.baseline_ms is not None and guard.baseline_ms < 5
    with psycopg.connect(pg_dsn, autocommit=True) as c:
        c.execute("INSERT INTO probe_slow VALUES (1)")  # production slower, with no batch of ours
    g.note_pid("w1", conn.info.backend_pid)  # w1 has a batch in flight
    time.sleep(0.35)
    d = g.before_batch(conn, g.job_id)  # w2 asks: the gap is due, w1 is still busy
    assert d.sleep_s >= guard_module.GAP_POLL_S and "rebaselining" in (d.state or "")
    assert g.baseline_ms < 5 and g.rebaselines == 0  # no probe timed while a batch is in flight
    g.batch_done("w1")
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not (g.rebaselines >= 2 and g.level == "healthy"):
        g.before_batch(conn, g.job_id)
        fixed.before_batch(conn, fixed.job_id)
        time.sleep(0.05)
    assert g.rebaselines >= 2 and g.baseline_ms > 15  # the baseline followed production
    assert g.level == "healthy"
    assert fixed.level == "slow" and fixed.baseline_ms < 5  # the pre-job baseline blames us for it
    recorded = "SELECT max(baseline_ms) FROM guard_readings WHERE job_id = %s"
    assert scalar(pg_dsn, recorded, [g.job_id]) > 15  # the readings carry the baseline they were judged by
    for guard in (g, fixed):
        guard.close()
    conn.close()


def test_a_run_with_rebaseline_gaps_ends_exact(pg_dsn: str, tmp_path: Path, clean_state: dict) -> None:
    """Gaps every 0.2 s hold two workers between batches many times over; the job still ends with the
    tables of a clean run, and the readings show the baseline being taken again."""
    load_corpus(pg_dsn)
    cfg = guarded_cfg(pg_dsn, tmp_path, **{"throttle.rebaseline_every": "0.2s", "etl.batch_size": 5})
    res = run_job(cfg, from_ts=FROM, to_ts=TO, concurrency=2)
    assert res.outcome == "done"
    job_id = res.job["job_id"]
    assert_exact(pg_dsn, job_id)
    assert table_state(pg_dsn) == clean_state
    baselines = "SELECT count(DISTINCT baseline_ms) FROM guard_readings WHERE job_id = %s"
    assert scalar(pg_dsn, baselines, [job_id]) > 1


def test_a_probe_that_fails_slows_the_job_and_says_why(pg_dsn: str, tmp_path: Path) -> None:
    """A guard that cannot time production is blind: a probe that errors (here a table that is not there)
    slows the job, with the error in the event and the reading, instead of reading as healthy forever."""
    g = a_guard(guarded_cfg(pg_dsn, tmp_path, **{"throttle.probe_sql": "SELECT count(*) FROM no_such_table"}))
    check_now(g)
    assert g.level == "slow" and g.verdict.key == "slow:probe-error"
    said = 'the probe fails (relation "no_such_table" does not exist): the guard cannot see production'
    assert guard_events(pg_dsn, g.job_id) == [f"guard slow: {said}"]
    row = psycopg.connect(pg_dsn).execute("SELECT state, reason, probe_ms, baseline_ms FROM guard_readings").fetchone()
    assert row == ("slow", f"slow: {said}", None, None)
    g.close()


ACTIVE = "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'production-app' AND state = 'active'"


def _two_workers(pg_dsn: str, tmp_path: Path, **knobs: Any) -> guard_module.ProductionGuard:
    """A guard that slows on more than 3 other active sessions, with workers w1 and w2 registered."""
    g = a_guard(
        guarded_cfg(pg_dsn, tmp_path, **({"throttle.active_sessions_max": 3, "throttle.nice_step": 1.0} | knobs))
    )
    for w in ("w1", "w2"):
        assert g.may_work(w)
    return g


def _busy_production(pg_dsn: str, g: guard_module.ProductionGuard, seconds: float) -> None:
    """Six production sessions active for `seconds` while the guard checks; returns once they are gone."""
    threads = _sleepers(pg_dsn, 6, seconds)
    wait_for(lambda: scalar(pg_dsn, ACTIVE) >= 6, what="six sleeping sessions")
    while any(t.is_alive() for t in threads):
        check_now(g)
        time.sleep(0.05)
    wait_for(lambda: scalar(pg_dsn, ACTIVE) == 0, what="the sleepers gone")


def test_a_guard_steps_back_up_only_after_slow_recover_of_healthy_readings(pg_dsn: str, tmp_path: Path) -> None:
    """Down fast, up slowly: once the slow signal clears, the workers, the cap and the idling stay where they
    are until every reading has been healthy for slow_recover; then they come back one step per guard_step.
    A slow reading in between starts the wait again."""
    g = _two_workers(pg_dsn, tmp_path, **{"throttle.slow_recover": "1.5s", "throttle.nice_ratio_max": 3})

    def slow_for(seconds: float) -> tuple[int | None, float]:
        _busy_production(pg_dsn, g, seconds)
        check_now(g)
        return g.allowed, g.nice

    def watch(seconds: float) -> list[tuple[float, str, int | None, float]]:
        seen, t0 = [], time.monotonic()
        while time.monotonic() - t0 < seconds:
            check_now(g)
            seen.append((time.monotonic() - t0, g.level, g.allowed, g.nice))
            time.sleep(0.05)
        return seen

    held = slow_for(1.0)
    assert held[0] == 1 and held[1] >= 2.0 and held[1] == int(held[1])  # one worker, then 1 more idling a step
    early = watch(1.0)
    assert {lvl for _, lvl, _, _ in early} == {"healthy"}
    assert {(a, n) for _, _, a, n in early} == {held}  # healthy, but not yet for slow_recover: no step up
    held = slow_for(0.5)  # slow again before slow_recover: the wait starts over
    assert g.level == "healthy" and held[0] == 1  # that reading was the first healthy one
    late = watch(1.5 + 4 * 0.2 + 1.5)
    steps = [(a, n) for _, _, a, n in late]
    assert steps[-1] == (None, 0.0)  # all the way back, after slow_recover: the idling first, then the worker
    first_change = next(t for t, _, a, n in late if (a, n) != held)
    # not before slow_recover (1.5 s) of healthy readings, measured from this watch's start, which can be a
    # check or two after the guard's first healthy reading on a busy machine
    assert first_change >= 1.25
    back = next(i for i, (a, _) in enumerate(steps) if a != 1)
    assert all(n == 0.0 for _, n in steps[back:])
    g.close()


def test_a_step_up_that_brings_the_harm_back_doubles_the_next_wait(pg_dsn: str, tmp_path: Path) -> None:
    """A guard that steps back up into the same contention oscillates, and every step up hurts production
    again: when slow follows a step up within slow_recover, the next step up waits twice as long; once the
    job runs with no limit left for slow_recover, the wait is back to slow_recover."""
    knobs = {"throttle.slow_recover": "0.6s", "throttle.nice_ratio_max": 0, "throttle.max_batch_size": 40}
    g = _two_workers(pg_dsn, tmp_path, **knobs)

    def slow_for(seconds: float) -> None:
        _busy_production(pg_dsn, g, seconds)

    def healthy_until_step_up() -> float:
        """Seconds of healthy readings before the first step up."""
        t0 = None
        while True:
            check_now(g)
            if g.level == "healthy" and t0 is None:
                t0 = time.monotonic()
            if g.allowed is None:
                assert t0 is not None
                return time.monotonic() - t0
            time.sleep(0.02)

    slow_for(0.5)
    assert g.allowed == 1
    # (measured from the first healthy reading seen, which returns a check later than the guard's own clock)
    assert 0.45 <= healthy_until_step_up() < 1.1  # slow_recover
    slow_for(0.5)  # the step up brought the harm back at once
    assert g.allowed == 1 and "steps up after 1.2s healthy" in g.state_text()
    assert healthy_until_step_up() >= 1.05  # twice slow_recover
    slow_for(0.5)
    assert healthy_until_step_up() >= 2.25  # four times
    # no limit left (the cap back too) for slow_recover: the wait is back to normal
    wait_for(lambda: (check_now(g), g._recover_s)[1] is None, what="the recovery wait reset", timeout=10)
    assert g.allowed is None and g.cap is None and "steps up after" not in g.state_text()
    slow_for(0.5)
    assert 0.45 <= healthy_until_step_up() < 1.1
    g.close()


def test_a_slow_guard_lowers_the_workers_that_claim_work_and_the_job_still_ends_exact(
    pg_dsn: str, tmp_path: Path, clean_state: dict
) -> None:
    load_corpus(pg_dsn)
    cfg = guarded_cfg(pg_dsn, tmp_path, **{"throttle.active_sessions_max": 3, "etl.batch_size": 5})
    threads = _sleepers(pg_dsn, 6, 6.0)  # production is busy for the first 6 s
    q = "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'production-app' AND state = 'active'"
    wait_for(lambda: scalar(pg_dsn, q) >= 6, what="six sleeping sessions")
    run = Background(lambda: run_job(cfg, from_ts=FROM, to_ts=TO, concurrency=3))
    job_id = wait_for(lambda: newest_job(pg_dsn), what="the job")
    allowed = "SELECT allowed_workers FROM guard_readings WHERE job_id = %s ORDER BY id DESC LIMIT 1"
    wait_for(lambda: scalar(pg_dsn, allowed, [job_id]) == 1, what="the guard down to one worker")
    time.sleep(0.5)  # the workers over the count finish their batch and release their chunk
    claimed = "SELECT count(*) FROM backfill_chunks WHERE job_id = %s AND status = 'running'"
    seen = set()
    for _ in range(20):
        seen.add(scalar(pg_dsn, claimed, [job_id]))
        time.sleep(0.1)
    assert max(seen) <= 1, seen  # one worker claims work; the other two wait without a chunk
    for t in threads:
        t.join()
    res = run.result(timeout=120)
    assert res.outcome == "done"
    assert_exact(pg_dsn, job_id)
    assert table_state(pg_dsn) == clean_state
    assert guard_events(pg_dsn, job_id)[0] == "guard slow: 6 other active session(s) > 3"


def test_dead_tuples_on_a_target_table_slow_down(pg_dsn: str, tmp_path: Path) -> None:
    with psycopg.connect(pg_dsn, autocommit=True) as c:
        c.execute("ALTER TABLE users SET (autovacuum_enabled = false)")
        c.execute("INSERT INTO users (namecode) SELECT 'dead' || g FROM generate_series(1, 3000) g")
        c.execute("DELETE FROM users WHERE namecode LIKE 'dead%%'")
        c.execute("SELECT pg_stat_force_next_flush()")
    q = "SELECT n_dead_tup FROM pg_stat_user_tables WHERE relname = 'users'"
    wait_for(lambda: (scalar(pg_dsn, q) or 0) >= 3000, what="dead tuples counted")
    g = a_guard(guarded_cfg(pg_dsn, tmp_path, **{"throttle.dead_tuples_max": 2000}))
    check_now(g)
    assert g.level == "slow" and g.verdict.key == "slow:dead-tuples"
    assert g.last["dead_tuples"] >= 3000
    g.close()
    g = a_guard(guarded_cfg(pg_dsn, tmp_path, **{"throttle.dead_tuples_max": 5000}), "other")
    check_now(g)
    assert g.level == "healthy"
    g.close()


def test_a_vacuum_on_a_target_table_holds_until_it_ends_and_then_some(pg_dsn: str, tmp_path: Path) -> None:
    with psycopg.connect(pg_dsn, autocommit=True) as c:
        c.execute("ALTER TABLE users SET (autovacuum_enabled = false)")
        c.execute("INSERT INTO users (namecode) SELECT 'v' || g FROM generate_series(1, 20000) g")
        c.execute("DELETE FROM users WHERE namecode LIKE 'v1%%'")
    vac = psycopg.connect(pg_dsn, autocommit=True, application_name="production-app")
    vac.execute("SET vacuum_cost_delay = '100ms'")
    vac.execute("SET vacuum_cost_limit = 1")  # a very slow vacuum, like a real one on a big table
    t = threading.Thread(target=lambda: _ignore(lambda: vac.execute("VACUUM users")), daemon=True)
    t.start()
    wait_for(lambda: scalar(pg_dsn, "SELECT count(*) FROM pg_stat_progress_vacuum"), what="the vacuum")
    g = a_guard(guarded_cfg(pg_dsn, tmp_path, **{"throttle.autovacuum_hold": True}))
    check_now(g)
    assert g.level == "healthy" and g.last["autovacuum_running"]  # once may be a 10 ms autovacuum
    check_now(g)
    assert g.level == "hold" and g.verdict.key == "hold:autovacuum"
    decision = g.before_batch(psycopg.connect(pg_dsn, autocommit=True), "guard-test")
    assert decision.sleep_s > 0  # no batch while it holds
    with psycopg.connect(pg_dsn, autocommit=True) as c:
        c.execute("SELECT pg_cancel_backend(pid) FROM pg_stat_progress_vacuum")
    t.join(10)
    wait_for(lambda: not scalar(pg_dsn, "SELECT count(*) FROM pg_stat_progress_vacuum"), what="the vacuum to end")
    check_now(g)
    assert g.level == "hold" and g.verdict.reasons[0].startswith("recovering")  # hysteresis: hold_recover
    time.sleep(1.1)
    check_now(g)
    check_now(g)
    assert g.level == "healthy"
    assert len(guard_events(pg_dsn, "guard-test")) == 2
    g.close()
    vac.close()


def _ignore(fn: Any) -> None:
    try:
        fn()
    except psycopg.Error:
        pass


def test_wal_written_by_another_session_slows_down(pg_dsn: str, tmp_path: Path) -> None:
    g = a_guard(guarded_cfg(pg_dsn, tmp_path, **{"throttle.wal_bytes_per_s_max": 1e6}))
    check_now(g)  # the first WAL position
    assert g.level == "healthy"
    with psycopg.connect(pg_dsn, autocommit=True) as c:
        c.execute("CREATE TABLE wal_load AS SELECT g, repeat('x', 500) AS pad FROM generate_series(1, 20000) g")
    check_now(g)
    assert g.level == "slow" and g.verdict.key == "slow:wal-rate", g.last
    assert g.last["wal_bytes_per_s"] > 1e6
    g.close()


# ---- (a) the probe, `guard set` on a running job ----------------------------------------------------------


def test_guard_set_a_slow_probe_holds_a_running_job_and_is_recorded(
    pg_dsn: str, tmp_path: Path, clean_state: dict
) -> None:
    load_corpus(pg_dsn)
    cfg = guarded_cfg(
        pg_dsn,
        tmp_path,
        **{
            "throttle.probe_latency_ratio_max": 3,
            "throttle.probe_latency_ratio_critical": 10,
            "throttle.probe_floor_ms": 30,  # a loaded box jitters; pg_sleep(0.08) is far above
            "etl.batch_size": 5,
        },
    )
    stop_at = threading.Event()

    def slow_progress(_p: Any) -> None:
        time.sleep(0.05)  # keep the job running long enough to change its thresholds

    run = Background(lambda: run_job(cfg, from_ts=FROM, to_ts=TO, concurrency=2, progress=slow_progress))
    job_id = wait_for(lambda: newest_job(pg_dsn), what="the job")
    wait_for(
        lambda: scalar(pg_dsn, "SELECT count(*) FROM guard_readings WHERE job_id = %s", [job_id]), what="a reading"
    )
    base = scalar(pg_dsn, "SELECT min(baseline_ms) FROM guard_readings WHERE job_id = %s", [job_id])
    assert 0 < base < 50  # SELECT 1
    res = guard_runbook.set_thresholds(cfg, job_id=job_id, assignments=["probe_sql=SELECT pg_sleep(0.08)"])
    assert res.overrides == {"probe_sql": "SELECT pg_sleep(0.08)"}
    wait_for(lambda: "hold:" in " ".join(guard_events(pg_dsn, job_id)) or None, timeout=20, what="a hold")
    held = job_row(pg_dsn, job_id)
    time.sleep(1.0)
    assert job_row(pg_dsn, job_id)["processed_count"] == held["processed_count"]  # no batch while held
    guard_runbook.set_thresholds(cfg, job_id=job_id, assignments=["probe_sql=SELECT 1"])
    stop_at.set()
    res_run = run.result(timeout=120)
    assert res_run.outcome == "done"
    assert_exact(pg_dsn, job_id)
    assert table_state(pg_dsn) == clean_state
    kinds = [(k, m) for k, m in events(pg_dsn, job_id) if k in ("guard", "guard_set")]
    assert kinds[0] == ("guard_set", "guard set probe_sql='SELECT pg_sleep(0.08)'")
    said = [m for k, m in kinds if k == "guard"]
    assert said[0].startswith("guard slow: probe p90 ")  # the tail first (p90), then most probes (median)
    assert any(m.startswith("guard hold: probe median ") for m in said), said
    assert said[-1] == "guard healthy: production unhurt"
    assert len(said) <= 4, said  # slow, hold, (slow while the p90 drains,) healthy: events on change only
    assert scalar(pg_dsn, "SELECT count(*) FROM guard_readings WHERE job_id = %s AND state = 'hold'", [job_id]) >= 1
    # the report answers "did we hurt production?" on one page: the chart with the hold shaded
    rep = report_module.report(cfg, job_id=job_id)
    page = rep.files["html"].read_text()
    section = page.split("<h2>Did we hurt production?</h2>", 1)[1]
    assert "hold(s) totalling" in section and "batch blocked a production session" in section
    assert 'fill="#d29922" fill-opacity="0.18"><title>hold +' in section  # the hold period, shaded
    assert "probe_ms" in section and "active_sessions" in section and "rate_per_s" in section
    md = rep.files["md"].read_text()
    assert "## Did we hurt production?" in md and "| hold from | to | why |" in md


def test_guard_set_refuses_a_bad_key_or_value(pg_dsn: str, tmp_path: Path) -> None:
    load_corpus(pg_dsn)
    cfg = guarded_cfg(pg_dsn, tmp_path)
    job_id = run_job(cfg, from_ts=FROM, to_ts=TO, concurrency=1).job["job_id"]
    with pytest.raises(UsageError, match="unknown guard threshold 'probe_ratio'"):
        guard_runbook.set_thresholds(cfg, job_id=job_id, assignments=["probe_ratio=2"])
    with pytest.raises(UsageError, match="probe_latency_ratio_max"):
        guard_runbook.set_thresholds(cfg, job_id=job_id, assignments=["probe_latency_ratio_max=fast"])
    with pytest.raises(UsageError, match="KEY=VALUE"):
        guard_runbook.set_thresholds(cfg, job_id=job_id, assignments=["hold_recover"])
    with pytest.raises(UsageError, match="no job"):
        guard_runbook.set_thresholds(cfg, job_id="nope", assignments=["hold_recover=5s"])
    assert job_row(pg_dsn, job_id)["guard_overrides"] == {}
    out = guard_runbook.set_thresholds(cfg, job_id=job_id, assignments=["hold_recover=5s", "active_sessions_max=9"])
    assert out.overrides == {"hold_recover_s": 5.0, "active_sessions_max": 9}
    assert job_row(pg_dsn, job_id)["guard_overrides"] == {"hold_recover_s": 5.0, "active_sessions_max": 9}


# ---- off, status ------------------------------------------------------------------------------------------


def test_guard_disabled_is_recorded_and_nothing_is_read(pg_dsn: str, tmp_path: Path) -> None:
    load_corpus(pg_dsn)
    res = run_job(make_cfg(pg_dsn, tmp_path), from_ts=FROM, to_ts=TO, concurrency=1)  # throttle.enabled: false
    job_id = res.job["job_id"]
    assert [k for k, _ in events(pg_dsn, job_id) if k == "guard_disabled"] == ["guard_disabled"]
    assert scalar(pg_dsn, "SELECT count(*) FROM guard_readings WHERE job_id = %s", [job_id]) == 0
    status = control.status(make_cfg(pg_dsn, tmp_path), job_id=job_id).jobs[0]
    assert status["guard"] == {"enabled": False, "state": None, "last_reading": None}


def test_status_shows_the_guard_state_and_last_readings(pg_dsn: str, tmp_path: Path) -> None:
    load_corpus(pg_dsn)
    cfg = guarded_cfg(pg_dsn, tmp_path)
    job_id = run_job(cfg, from_ts=FROM, to_ts=TO, concurrency=1).job["job_id"]
    guard = control.status(cfg, job_id=job_id).jobs[0]["guard"]
    assert guard["enabled"] is True and guard["state"] == "healthy"
    last = guard["last_reading"]
    assert last["baseline_ms"] > 0 and last["probe_ms"] > 0 and last["active_sessions"] >= 0
    assert set(last) >= {
        "taken_at",
        "probe_ms",
        "baseline_ms",
        "active_sessions",
        "blocked_by_backfill",
        "dead_tuples",
        "autovacuum_running",
        "wal_bytes_per_s",
        "replica_lag_s",
        "state",
        "allowed_workers",
        "batch_size",
    }
