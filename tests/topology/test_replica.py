"""The throttle's replica-lag signal against a real streaming standby (pg_basebackup of a primary of our own,
replaying `recovery_min_apply_delay` behind): a hold above `replica_lag_max`, kept until the lag is below
`replica_lag_resume` (hysteresis), with one event per state change however often the lag value moves."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import psycopg
from engine_state import assert_exact, job_row, load_corpus, scalar
from running import run_job
from topo_support import Standby

from starforge_backfill import schema
from starforge_backfill.config import load_config
from starforge_backfill.embedded import EmbeddedPostgres

FROM, TO = "2024-01-01T00:00:00Z", "2024-07-01T00:00:00Z"
CONFIG = """\
etl:
  batch_size: 10
throttle:
  failure_rate_max: 0.2      # the corpus is 2% malformed on purpose
  replica_lag_max: 4s
  replica_lag_resume: 1s
  check_every: 0s            # a reading before every batch, and every `sleep` while held
  sleep: 0.5s
gates:
  require_preflight: false
  require_canary: false
  ramp: [2]
"""


class WalTraffic:
    """Production writes on the primary (a row every 0.1 s): WAL keeps flowing while the backfill holds, so
    the standby's replay lag stays what its apply delay makes it."""

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            conn.execute("CREATE TABLE IF NOT EXISTS app_traffic (id bigserial PRIMARY KEY, at timestamptz)")
            while not self.stop.wait(0.1):
                conn.execute("INSERT INTO app_traffic (at) VALUES (now())")

    def __enter__(self) -> WalTraffic:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(10)


def replay_lag(dsn: str) -> float:
    lag = scalar(dsn, "SELECT coalesce(max(extract(epoch FROM replay_lag)), 0)::float8 FROM pg_stat_replication")
    return float(lag)


def wait_until(predicate: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


def throttle_events(dsn: str, job_id: str) -> list[str]:
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            "SELECT message FROM backfill_events WHERE job_id = %s AND kind = 'throttle' ORDER BY id", [job_id]
        ).fetchall()
    return [r[0] for r in rows]


def test_a_lagging_replica_holds_the_job_with_hysteresis_and_one_event_per_change(
    own_server: EmbeddedPostgres, tmp_path: Path
) -> None:
    dsn = own_server.dsn
    schema.init_db(dsn)
    load_corpus(dsn)
    standby = Standby(own_server, apply_delay="8s").start()
    try:
        with WalTraffic(dsn):
            wait_until(lambda: replay_lag(dsn) > 6, 60, "the standby's replay lag to pass 6s")
            (tmp_path / "c.yaml").write_text(CONFIG)
            cfg = load_config(tmp_path / "c.yaml", overrides={"database.dsn": dsn, "artifacts_dir": str(tmp_path)})
            outcome: dict[str, Any] = {}
            run = threading.Thread(
                target=lambda: outcome.update(res=run_job(cfg, from_ts=FROM, to_ts=TO, concurrency=2)), daemon=True
            )
            run.start()
            job_id = wait_until(
                lambda: scalar(dsn, "SELECT job_id FROM backfill_jobs ORDER BY created_at DESC LIMIT 1"), 30, "job"
            )
            held_at = time.monotonic()
            states = set()
            # ~45 s above the max: held, the readings move (throttle_state), the events do not
            while time.monotonic() - held_at < 45:
                states.add(job_row(dsn, job_id)["throttle_state"])
                time.sleep(0.5)
            assert {s for s in states if s and s.startswith("slow: replica lag ") and s.endswith("s > 4s")}, states
            assert len(states - {None}) > 1, states  # the latest readings are shown as they change
            # ~15 s with the lag between the resume mark and the max: still held (hysteresis)
            standby.set_apply_delay("2s")
            wait_until(lambda: 1.2 < replay_lag(dsn) < 3.5, 30, "the replay lag to settle between 1s and 4s")
            band_at = time.monotonic()
            band_states = set()
            while time.monotonic() - band_at < 15:
                band_states.add(job_row(dsn, job_id)["throttle_state"])
                time.sleep(0.5)
            assert any(s and s.endswith("resuming below 1s") for s in band_states), band_states
            held = job_row(dsn, job_id)
            assert held["status"] == "running" and held["processed_count"] + held["error_count"] == 0
            so_far = throttle_events(dsn, job_id)
            assert len(so_far) == 1 and so_far[0].startswith("slow: replica lag "), so_far  # one hold, one event
            assert time.monotonic() - held_at >= 60
            # lift the delay: the lag falls below the resume mark, the job goes on and finishes
            standby.set_apply_delay("0")
            run.join(120)
            assert not run.is_alive(), "the run did not finish once the replica caught up"
    finally:
        standby.stop()
    assert outcome["res"].outcome == "done"
    assert_exact(dsn, job_id)
    events = throttle_events(dsn, job_id)
    assert len(events) == 2, events  # held (once), then lifted (once): no event per reading
    assert events[0].startswith("slow: replica lag ") and events[0].endswith("s > 4s")
    assert events[1] == "healthy: throttle lifted"
    assert job_row(dsn, job_id)["throttle_state"] is None
