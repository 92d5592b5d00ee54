"""Health-based throttling and gates: slow down or pause a job when the database is under stress.

Anchors: GitLab's batched background migrations (health indicators), pt-online-schema-change
(`--max-load` slows, `--critical-load` stops) and gh-ost (throttle and pause). Every decision that acts
is recorded on the job (`throttle_state`, `status_reason`) and as an event, so the report can show it.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from typing import Any

import psycopg

from starforge_backfill import jobs, templates
from starforge_backfill.engine import ThrottleDecision
from starforge_backfill.etl.pipeline import BatchResult


@dataclasses.dataclass(frozen=True)
class ThrottleSettings:
    """Thresholds (from the config's `throttle` section)."""

    max_connections_ratio: float = 0.8
    failure_rate_max: float = 0.01
    failure_min_sample: int = 200
    failure_window_s: float = 300.0
    long_transaction_s: float = 60.0
    replica_lag_max_s: float = 30.0
    replica_lag_resume_s: float = 15.0
    sleep_s: float = 1.0
    check_every_s: float = 1.0
    app_prefix: str = "starforge-backfill"


REPLICA_LAG = "slow:replica-lag"


def evaluate(health: dict[str, Any], s: ThrottleSettings, previous: str | None = None) -> ThrottleDecision:
    """Decide from one health reading: pause reasons first, then slow-downs. `previous` is the key of the
    decision in force: a hold for replica lag lasts until the lag is below `replica_lag_resume_s`, not
    merely back under the max (hysteresis)."""
    conns, max_conns = int(health["connections"]), int(health["max_connections"])
    if max_conns and conns / max_conns > s.max_connections_ratio:
        return ThrottleDecision(
            pause_reason=f"gate: database connections at {conns}/{max_conns} "
            f"(> {s.max_connections_ratio:.0%} of max_connections)",
            state="paused:connections",
            key="paused:connections",
        )
    sample, failed = int(health["window_snapshots"]), int(health["window_failed"])
    if sample >= s.failure_min_sample and sample and failed / sample > s.failure_rate_max:
        return ThrottleDecision(
            pause_reason=f"gate: failure rate {failed}/{sample} = {failed / sample:.1%} over the last "
            f"{s.failure_window_s:.0f}s (> {s.failure_rate_max:.1%})",
            state="paused:failure-rate",
            key="paused:failure-rate",
        )
    if int(health["long_transactions"]) > 0:
        return ThrottleDecision(
            sleep_s=s.sleep_s,
            state=f"slow: {health['long_transactions']} other transaction(s) older than {s.long_transaction_s:.0f}s",
            key="slow:long-transactions",
        )
    lag = float(health["replica_lag_s"]) if int(health["replicas"]) > 0 else 0.0
    if lag > s.replica_lag_max_s:
        return ThrottleDecision(
            sleep_s=s.sleep_s, state=f"slow: replica lag {lag:.1f}s > {s.replica_lag_max_s:g}s", key=REPLICA_LAG
        )
    if previous == REPLICA_LAG and lag >= s.replica_lag_resume_s:
        return ThrottleDecision(
            sleep_s=s.sleep_s,
            state=f"slow: replica lag {lag:.1f}s, resuming below {s.replica_lag_resume_s:g}s",
            key=REPLICA_LAG,
        )
    return ThrottleDecision()


class HealthThrottle:
    """The engine's throttle: reads health at most every `check_every_s`, acts and records."""

    def __init__(self, settings: ThrottleSettings) -> None:
        self.settings = settings
        self._lock = threading.Lock()
        self._last_check = 0.0
        self._last: ThrottleDecision = ThrottleDecision()
        self._recorded_state: str | None = None  # the throttle_state last written (with its readings)
        self._recorded_key: str | None = None  # the kind of hold last recorded as an event

    def read(self, conn: psycopg.Connection[Any], job_id: str) -> dict[str, Any]:
        """One health reading."""
        s = self.settings
        cur = templates.execute(
            conn,
            "jobs/health.sql",
            {
                "job_id": job_id,
                "long_transaction_s": s.long_transaction_s,
                "window_s": s.failure_window_s,
                "app_prefix": s.app_prefix + "%",
            },
        )
        row = cur.fetchone()
        assert row is not None and cur.description is not None
        return dict(zip([c.name for c in cur.description], row, strict=True))

    def before_batch(self, conn: psycopg.Connection[Any], job_id: str) -> ThrottleDecision:
        """Check health (rate-limited) and act: pause the job or ask the worker to sleep.

        One reading at a time: the other workers wait for it instead of going on with the previous (healthy)
        decision, so a gate that trips stops every worker before its next batch. The state is remembered as
        recorded only once the job row and the event are written.

        Events are written on state changes only (healthy, or a kind of hold: `ThrottleDecision.key`): a
        hold whose readings change (the lag of a lagging replica, every second) updates the job's
        `throttle_state` with the latest readings and writes no event."""
        with self._lock:
            if time.monotonic() - self._last_check < self.settings.check_every_s and not self._last.pause_reason:
                return self._last
            decision = evaluate(self.read(conn, job_id), self.settings, self._last.key)
            self._last_check = time.monotonic()
            self._last = decision
            if decision.pause_reason:
                row = jobs.set_status(conn, job_id, "paused", decision.pause_reason, ["running"])
                if row is not None:
                    jobs.record_event(conn, job_id, "gate", decision.pause_reason, {"state": decision.state})
            if decision.state != self._recorded_state:
                templates.execute(
                    conn,
                    "jobs/set_throttle.sql",
                    {"job_id": job_id, "state": decision.state},
                )
                self._recorded_state = decision.state
            if decision.key != self._recorded_key:
                if not decision.pause_reason:
                    jobs.record_event(
                        conn,
                        job_id,
                        "throttle",
                        decision.state or "healthy: throttle lifted",
                        {"sleep_s": decision.sleep_s, "key": decision.key},
                    )
                self._recorded_key = decision.key
        return decision

    def healthy(self) -> bool:
        """True when the last reading asked for neither a pause nor a slow-down."""
        with self._lock:
            return not self._last.pause_reason and self._last.sleep_s <= 0

    def after_batch(self, result: BatchResult, duration_s: float) -> None:
        """Nothing to do per batch: the failure rate is read from backfill_batches."""
        return None
