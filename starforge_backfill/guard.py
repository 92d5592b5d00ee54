"""The production guard: before every batch, decide from what production feels whether the backfill may go on.

Anchors: GitLab's batched background migrations (health indicators: autovacuum on the target table, WAL rate,
a latency SLO, a hold on a stop signal), pt-online-schema-change (`--max-load` slows, `--critical-load`
stops) and gh-ost (`--max-lag-millis` on its own heartbeat, hysteresis, thresholds changed while it runs).

One guard per job process, shared by its workers, with its own connection (application_name of the backfill,
so it never counts itself). It reads at most every `check_every_s`: a probe (`probe_samples` of them) it times
itself against a baseline taken before the first batch, the other sessions (active, waiting by class, blocked
by us), dead tuples and autovacuum on the target tables, the WAL rate, replica lag, and the job's
`guard_overrides`. Three levels:

- healthy: once every reading has been healthy for `slow_recover_s` (hysteresis: down fast, up slowly), every
  `guard_step_s` one more worker may claim work and the batch cap doubles, until none is left; a step up that
  brings the harm back within `slow_recover_s` doubles that wait for the next time (up to 8x);
- slow: every `guard_step_s`, one worker fewer (never below one) and the batch cap halves (never below the minimum),
  until one worker is left (then the idling below takes over: batches of 10 cost their fixed statements
  25 times as often as 250 for the same CPU per snapshot);
- slow at one worker: every `guard_step_s`, each batch is followed by a pause of `nice` times its duration,
  `nice` growing by `nice_step` up to `nice_ratio_max` (gh-ost's nice-ratio: at 3 the backfill uses a quarter
  of the time it would), and shrinking by `nice_step` per step once healthy, before any worker comes back;
- hold: no batch at all until every hold signal has been clear for `hold_recover_s` (hysteresis).

An event (`guard`) is written when the level or its reason changes, never per reading; a reading is kept in
`guard_readings` every `sample_every_s` and at each change. The blocking watcher (guard_watch.py) cuts short a
batch that blocks a production session. The health throttle (throttle.py) runs first, unchanged.
"""

from __future__ import annotations

import dataclasses
import logging
import statistics
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import psycopg

from starforge_backfill import jobs, templates
from starforge_backfill.db import is_connection_error
from starforge_backfill.engine import ThrottleDecision
from starforge_backfill.errors import DatabaseUnavailable
from starforge_backfill.etl.pipeline import BatchResult
from starforge_backfill.guard_watch import BlockingWatcher
from starforge_backfill.throttle import HealthThrottle, ThrottleSettings

log = logging.getLogger("starforge_backfill.guard")

HEALTHY, SLOW, HOLD = "healthy", "slow", "hold"
# the tables the ETL writes: their dead tuples and autovacuum are production's concern
OTHER_MIN_CALLS = 20  # pg_stat_statements: a window with fewer calls of other roles says nothing
PROBE_GAP_S = 0.005  # between a check's probe samples
BASELINE_GAP_S = 0.02  # between a baseline's probe samples
BASELINES_KEPT = 3  # the baseline is the median of the latest gap medians (the pre-job one first)
GAP_POLL_S = 0.05  # a worker held for a rebaseline gap looks again this soon
GAP_MAX_WAIT_S = 5.0  # a gap waits this long at most for the batches in flight (then: next time)
RECOVER_BACKOFF_MAX = 8  # a step up that brings the harm back doubles the next wait, up to this x slow_recover
TARGET_TABLES = ("users", "user_troops", "user_pets", "user_artifacts", "user_profile_summary")


@dataclasses.dataclass(frozen=True)
class GuardSettings(ThrottleSettings):
    """The throttle's thresholds plus the guard's (config `throttle` section; `guard set` overrides them).
    A threshold of 0 switches its signal off."""

    probe_sql: str = "SELECT 1"
    baseline_samples: int = 5
    probe_samples: int = 3  # probes per check, a few ms apart: one a second misses most of a short stall
    probe_window: int = 30  # the probe's p90 (slow) and median (hold) over this many latest samples
    probe_floor_ms: float = 0.25  # a ratio counts only when the p90 is this much above the baseline, too
    probe_latency_ratio_max: float = 1.5  # slow
    probe_latency_ratio_critical: float = 10.0  # hold
    probe_min_tps: float = 100.0  # the probe counts only while the server runs this many transactions/s
    active_sessions_max: int = 64  # other active sessions: slow
    waiting_sessions_max: int = 8  # other sessions waiting on Lock, LWLock or IO: slow
    dead_tuples_max: int = 10_000_000  # on one target table: slow
    autovacuum_hold: bool = True  # autovacuum on a target table: hold
    wal_bytes_per_s_max: float = 256e6  # slow
    hold_recover_s: float = 10.0  # a hold lasts until every signal has been clear this long
    guard_step_s: float = 5.0  # workers and batch cap change one step at most this often
    slow_recover_s: float = 15.0  # a guard steps back up only after every reading has been healthy this long
    rebaseline_every_s: float = 60.0  # a gap with no batch in flight this often, to probe production without us
    sample_every_s: float = 5.0
    block_check_s: float = 0.25  # the blocking watcher's interval (0: no watcher)
    nice_ratio_max: float = 1.5  # slow at one worker: idle up to this many times each batch's duration
    nice_step: float = 1.0  # the idling grows (slow) and shrinks (healthy) by this much per guard_step
    min_batch_size: int = 10


# the guard's own fields (not the throttle's), each named as the config's throttle field it comes from
GUARD_FIELDS = tuple(
    f.name for f in dataclasses.fields(GuardSettings) if f.name not in ThrottleSettings.__dataclass_fields__
)
# the thresholds `guard set` may change on a running job (GuardSettings field names)
TUNABLE = tuple(
    f.name
    for f in dataclasses.fields(GuardSettings)
    if f.name not in ("app_prefix", "failure_min_sample", "failure_window_s", "min_batch_size")
)


def apply_overrides(base: GuardSettings, overrides: dict[str, Any] | None) -> GuardSettings:
    """`base` with a job's stored overrides (unknown keys, from a newer tool, are ignored)."""
    known = {k: v for k, v in (overrides or {}).items() if k in TUNABLE}
    return dataclasses.replace(base, **known) if known else base


@dataclasses.dataclass(frozen=True)
class Verdict:
    """What one reading says: a level, the first reason's key and every reason in words."""

    level: str = HEALTHY
    key: str | None = None
    reasons: tuple[str, ...] = ()

    @property
    def message(self) -> str:
        """The event's text."""
        return f"{self.level}: " + "; ".join(self.reasons) if self.reasons else "healthy: production unhurt"


def probe_p90(samples: list[float]) -> float | None:
    """The 90th percentile of the latest probe samples (ms)."""
    if not samples:
        return None
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(0.9 * (len(ordered) - 1)))]


def _rate(previous: tuple[float, float] | None, value: float, now: float) -> float | None:
    """Per second since the previous (value, monotonic time) reading of a counter; None on the first."""
    if previous is None or now <= previous[1]:
        return None
    return max(0.0, value - previous[0]) / (now - previous[1])


def judge(r: dict[str, Any], s: GuardSettings) -> Verdict:
    """Decide from one reading (with `probe_p90_ms`, `baseline_ms`, `wal_bytes_per_s` filled in)."""
    holds: list[tuple[str, str]] = []
    slows: list[tuple[str, str]] = []
    p90, median, base = r.get("probe_p90_ms"), r.get("probe_median_ms"), r.get("baseline_ms")

    def over(value: float | None, ratio_max: float) -> float | None:
        """value's ratio to the baseline when it counts: at or above `ratio_max` and `probe_floor_ms` above."""
        if not ratio_max or value is None or base is None or value - base <= s.probe_floor_ms:
            return None
        ratio = value / base if base > 0 else float("inf")
        return ratio if ratio >= ratio_max else None

    # hold on the median (sustained: most probes are that slow), slow on the p90 (the tail production feels);
    # on a server with next to no traffic but ours, a slow probe is our own load and hurts nobody
    xacts = r.get("xacts_per_s")
    idle = bool(s.probe_min_tps) and xacts is not None and xacts < s.probe_min_tps
    critical = None if idle else over(median, s.probe_latency_ratio_critical)
    slow = None if idle else over(p90, s.probe_latency_ratio_max)
    if critical is not None:
        said = f"probe median {median:.1f} ms = {critical:.1f}x baseline {base:.2f} ms"
        holds.append(("probe-latency", f"{said} (>= {s.probe_latency_ratio_critical:g}x)"))
    elif slow is not None:
        said = f"probe p90 {p90:.1f} ms = {slow:.1f}x baseline {base:.2f} ms"
        slows.append(("probe-latency", f"{said} (>= {s.probe_latency_ratio_max:g}x)"))
    if r.get("probe_error"):  # fail safe: a guard that cannot time production slows down and says why
        slows.append(("probe-error", f"the probe fails ({r['probe_error']}): the guard cannot see production"))
    other, other_base = r.get("other_mean_ms"), r.get("other_baseline_ms")
    if other is not None and other_base is not None:  # the application's own statements (pg_stat_statements)
        ratio = other / other_base if other_base > 0 else float("inf")
        if s.probe_latency_ratio_max and ratio >= s.probe_latency_ratio_max and other - other_base > s.probe_floor_ms:
            slows.append(
                (
                    "other-statements",
                    f"other roles' statements {other:.1f} ms on average = {ratio:.1f}x their {other_base:.2f} ms "
                    f"before the job (pg_stat_statements, >= {s.probe_latency_ratio_max:g}x)",
                )
            )
    if s.autovacuum_hold and r.get("autovacuum_running") and r.get("autovacuum_before", True):
        holds.append(("autovacuum", "a vacuum is running on a target table"))
    if r.get("blocked_by_backfill"):
        slows.append(("blocking", f"{r['blocked_by_backfill']} session(s) waited on a backfill batch"))
    active = int(r.get("active_sessions") or 0)
    if s.active_sessions_max and active > s.active_sessions_max:
        slows.append(("active-sessions", f"{active} other active session(s) > {s.active_sessions_max}"))
    waiting = sum(int(r.get(k) or 0) for k in ("waiting_lock", "waiting_lwlock", "waiting_io"))
    if s.waiting_sessions_max and waiting > s.waiting_sessions_max:
        slows.append(
            (
                "waiting-sessions",
                f"{waiting} other session(s) waiting (Lock {r.get('waiting_lock', 0)}, LWLock "
                f"{r.get('waiting_lwlock', 0)}, IO {r.get('waiting_io', 0)}) > {s.waiting_sessions_max}",
            )
        )
    dead = int(r.get("dead_tuples") or 0)
    if s.dead_tuples_max and dead > s.dead_tuples_max:
        slows.append(("dead-tuples", f"{dead} dead tuples on a target table > {s.dead_tuples_max}"))
    wal = r.get("wal_bytes_per_s")
    if s.wal_bytes_per_s_max and wal is not None and wal > s.wal_bytes_per_s_max:
        slows.append(("wal-rate", f"WAL {wal / 1e6:.1f} MB/s > {s.wal_bytes_per_s_max / 1e6:g} MB/s"))
    if holds:
        return Verdict(HOLD, f"{HOLD}:{holds[0][0]}", tuple(m for _, m in holds + slows))
    if slows:
        return Verdict(SLOW, f"{SLOW}:{slows[0][0]}", tuple(m for _, m in slows))
    return Verdict()


class ProductionGuard(HealthThrottle):
    """The engine's throttle with the production guard on top (see the module docstring)."""

    def __init__(
        self,
        settings: GuardSettings,
        job_id: str,
        connect: Callable[[], psycopg.Connection[Any]],
        *,
        max_batch_size: int = 10_000,
    ) -> None:
        super().__init__(settings)
        self.base = settings
        self.settings: GuardSettings = settings
        self.job_id = job_id
        self._connect = connect
        self._conn: psycopg.Connection[Any] | None = None
        self._glock = threading.Lock()
        self._checked = 0.0
        self._samples: deque[float] = deque(maxlen=max(1, settings.probe_window))
        self.baseline_ms: float | None = None
        self._baselines: deque[float] = deque(maxlen=BASELINES_KEPT)  # the latest gap medians
        self._busy: set[str] = set()  # workers with a batch in flight (note_pid .. batch_done)
        self._busy_lock = threading.Lock()
        self._gap_since: float | None = None  # a rebaseline gap holds the workers since then
        self._gap_due = 0.0  # when the next gap is due (monotonic; set with the first baseline)
        self.rebaselines = 0  # gaps measured
        self.verdict = Verdict()
        self.level = HEALTHY
        self._recorded: tuple[str, str | None] = (HEALTHY, None)
        self._clear_since: float | None = None
        self._healthy_since: float | None = None  # since when every reading has been healthy (None: not now)
        self._stepped = 0.0
        self._recover_s: float | None = None  # the wait before a step up, once backed off (None: slow_recover_s)
        self._stepped_up_at: float | None = None  # the latest step up
        self._sampled = 0.0
        self._wal: tuple[float, float] | None = None  # (bytes, monotonic time) of the previous reading
        self._xacts: tuple[float, float] | None = None  # (transactions, monotonic time) of the previous reading
        self._pgss: tuple[float, float] | None = None  # (calls, total ms) of the previous reading
        self._has_pgss: bool | None = None
        self._vacuum = False  # the previous reading saw a vacuum on a target table
        self.other_baseline_ms: float | None = None  # pg_stat_statements: other roles' mean before the job
        self.last: dict[str, Any] = {}
        self.workers: list[str] = []
        self.allowed: int | None = None  # workers that may claim work (None: all)
        self.cap: int | None = None  # the batch size cap (None: the sizer's own)
        self.wanted = max_batch_size  # the largest size a worker asked for
        self.watcher = BlockingWatcher(self, connect) if settings.block_check_s > 0 else None
        self.nice = 0.0  # slow at one worker: each batch is followed by nice x its duration of idling
        self._owed = threading.local()  # per worker thread: the idle time its last batch owes

    # ---- what the engine asks -----------------------------------------------------------------------------

    def before_batch(self, conn: psycopg.Connection[Any], job_id: str) -> ThrottleDecision:
        """The health throttle first (its pauses and slow-downs); then the guard's check (rate-limited)."""
        decision = super().before_batch(conn, job_id)
        if decision.pause_reason:
            return decision
        self.check()
        if self._gap_step():  # a rebaseline gap: no batch starts until production has been probed without us
            said = "rebaselining: probing production with no batch in flight"
            return dataclasses.replace(
                decision, sleep_s=max(decision.sleep_s, GAP_POLL_S), state=decision.state or said
            )
        if self.level == HOLD:
            return dataclasses.replace(decision, sleep_s=max(decision.sleep_s, self.settings.sleep_s or 0.5))
        owed, self._owed.s = getattr(self._owed, "s", 0.0), 0.0
        if owed > 0 and self.nice > 0:  # once per batch: the next call finds nothing owed and goes on
            state = f"slow: nice {self.nice:g} (idle {owed:.2f}s after the batch)"
            return dataclasses.replace(decision, sleep_s=max(decision.sleep_s, owed), state=decision.state or state)
        return decision

    def after_batch(self, result: BatchResult, duration_s: float) -> None:
        """Slow at one worker: the batch owes `nice` times its duration of idling before the next one."""
        super().after_batch(result, duration_s)
        self._owed.s = self.nice * max(0.0, duration_s)

    def healthy(self) -> bool:
        """The ramp steps up only when the throttle and the guard are both content."""
        return super().healthy() and self.level == HEALTHY

    def may_work(self, worker: str) -> bool:
        """Whether `worker` may claim work now: the first `allowed` workers (in the order they came) may."""
        with self._glock:
            if worker not in self.workers:
                self.workers.append(worker)
            return self.allowed is None or self.workers.index(worker) < self.allowed

    def batch_cap(self, wanted: int) -> int:
        """The batch size a worker may use when its sizer wants `wanted`."""
        with self._glock:
            self.wanted = wanted
            return wanted if self.cap is None else max(1, min(wanted, self.cap))

    def note_pid(self, worker: str, pid: int) -> None:
        """A batch starts on `worker` (in flight until `batch_done`), on backend `pid`, which the blocking
        watcher may cancel (and only such pids)."""
        with self._busy_lock:
            self._busy.add(worker)
        if self.watcher is not None:
            self.watcher.note_pid(worker, pid)

    def batch_done(self, worker: str) -> None:
        """`worker`'s batch is over (committed, rolled back or failed)."""
        with self._busy_lock:
            self._busy.discard(worker)

    def yield_pending(self, worker: str) -> bool:
        """True when the watcher cancelled this worker's statement lately (a QueryCanceled is a yield)."""
        return self.watcher is not None and self.watcher.pending(worker)

    def take_yield(self, worker: str) -> bool:
        """Consume the watcher's cancel of this worker's statement; True when there was one."""
        return self.watcher is not None and self.watcher.take(worker)

    def reconfigure(self, settings: GuardSettings) -> None:
        """New base thresholds (a config reload); the job's `guard set` overrides apply on top at the next check."""
        with self._glock:
            self.base = settings
            self.settings = settings
            self._checked = 0.0

    def close(self) -> None:
        """Stop the watcher and close the guard's connections."""
        if self.watcher is not None:
            self.watcher.close()
        with self._glock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    # ---- reading and deciding -----------------------------------------------------------------------------

    def _db(self) -> psycopg.Connection[Any]:
        if self._conn is None or self._conn.closed:
            self._conn = self._connect()
        return self._conn

    def _probe(self, conn: psycopg.Connection[Any]) -> float:
        t0 = time.perf_counter()
        templates.execute_operator_statement(conn, self.settings.probe_sql)
        return (time.perf_counter() - t0) * 1000.0

    def check(self) -> None:
        """One guard reading and decision, at most every `check_every_s` (the other workers wait for it).
        A database error leaves the previous decision in force: the throttle's own reading reports an outage."""
        with self._glock:
            now = time.monotonic()
            if self._checked and now - self._checked < self.settings.check_every_s:
                return
            try:
                self._check(now)
            except (psycopg.Error, DatabaseUnavailable) as exc:
                log.debug("guard reading failed: %s", exc)
                if self._conn is not None:
                    self._conn.close()
                    self._conn = None
            self._checked = time.monotonic()

    def _check(self, now: float) -> None:
        conn = self._db()
        probe_error = None
        try:
            if self.baseline_ms is None:
                self._take_baseline(conn)
            for i in range(max(1, self.settings.probe_samples)):
                if i:
                    time.sleep(PROBE_GAP_S)
                self._samples.append(self._probe(conn))
        except psycopg.Error as exc:  # the probe itself fails (not the database): a blind guard says so
            if is_connection_error(exc):
                raise
            probe_error = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        r = self._read(conn, now)
        r["probe_error"] = probe_error
        self.settings = apply_overrides(self.base, r.pop("overrides", None))
        if self.watcher is not None:
            self.watcher.interval_s = self.settings.block_check_s  # 0 (guard set block_check=0s): no sweeps
        self._samples = deque(self._samples, maxlen=max(1, self.settings.probe_window))
        # a vacuum holds once two readings in a row see it: a 10 ms autovacuum of a small table is no stop signal
        r["autovacuum_before"], self._vacuum = self._vacuum, bool(r.get("autovacuum_running"))
        if self.watcher is not None:  # a batch cut short since the last reading counts as blocking
            r["blocked_by_backfill"] = max(int(r.get("blocked_by_backfill") or 0), self.watcher.yields_since_check())
        verdict = judge(r, self.settings)
        changed = self._decide(verdict, now)
        self.last = r | {"state": self.state_text(), "allowed_workers": self.allowed, "batch_size": self.cap}
        if changed:
            self._event(conn)
        if changed or now - self._sampled >= self.settings.sample_every_s:
            self._record(conn)
            self._sampled = now

    def _take_baseline(self, conn: psycopg.Connection[Any]) -> None:
        """`baseline_samples` probes with no batch in flight (before the first batch, and in each rebaseline
        gap): the baseline is the median of the latest BASELINES_KEPT such medians."""
        samples = []
        for _ in range(max(1, self.settings.baseline_samples)):
            samples.append(self._probe(conn))
            time.sleep(BASELINE_GAP_S)
        self._baselines.append(statistics.median(samples))
        self.baseline_ms = statistics.median(self._baselines)
        self._gap_due = time.monotonic() + self.settings.rebaseline_every_s

    def _gap_step(self) -> bool:
        """True while a rebaseline gap holds the workers. Every `rebaseline_every_s`, while production has
        traffic and the guard is not holding, no new batch starts until the batches in flight are over; then
        `baseline_samples` probes measure production without the backfill, and the baseline follows it. A
        baseline taken once before a ten-hour job says what production was like then: production's own load
        changes over the day, and a slower probe that is not our doing is no reason to back off. At most
        GAP_MAX_WAIT_S of waiting for a long batch (then it tries again next time)."""
        s = self.settings
        if not s.rebaseline_every_s or self.baseline_ms is None:
            return False
        with self._glock:
            now = time.monotonic()
            if self._gap_since is None:
                if now < self._gap_due:
                    return False
                xacts = self.last.get("xacts_per_s")
                quiet = bool(s.probe_min_tps) and (xacts is None or xacts < s.probe_min_tps)
                if self.level == HOLD or quiet:  # a hold runs no batch; without traffic the probe does not count
                    self._gap_due = now + s.rebaseline_every_s
                    return False
                self._gap_since = now
            with self._busy_lock:
                busy = bool(self._busy)
            if busy and now - self._gap_since < GAP_MAX_WAIT_S:
                return True
            self._gap_since = None
            if busy:
                self._gap_due = now + s.rebaseline_every_s
                return False
            try:
                self._take_baseline(self._db())
                self.rebaselines += 1
            except (psycopg.Error, DatabaseUnavailable) as exc:
                log.debug("guard rebaseline failed: %s", exc)
                self._gap_due = now + s.rebaseline_every_s
            return False

    def _read(self, conn: psycopg.Connection[Any], now: float) -> dict[str, Any]:
        params = {"job_id": self.job_id, "app_prefix": self.settings.app_prefix + "%", "tables": list(TARGET_TABLES)}
        row = templates.fetch_one(conn, "guard/signals.sql", params) or {}
        wal, xacts = float(row.pop("wal_bytes")), float(row.pop("xacts"))
        rate, xact_rate = _rate(self._wal, wal, now), _rate(self._xacts, xacts, now)
        self._wal, self._xacts = (wal, now), (xacts, now)
        samples = list(self._samples)
        return row | {
            "probe_ms": round(samples[-1], 3) if samples else None,
            "probe_p90_ms": probe_p90(samples),
            "probe_median_ms": statistics.median(samples) if samples else None,
            "baseline_ms": None if self.baseline_ms is None else round(self.baseline_ms, 3),
            "wal_bytes_per_s": None if rate is None else round(rate, 1),
            "xacts_per_s": None if xact_rate is None else round(xact_rate, 1),
            "replica_lag_s": float(row["replica_lag_s"]) if row.get("replicas") else None,
            "other_mean_ms": self._other_mean(conn),
            "other_baseline_ms": self.other_baseline_ms,
        }

    def _other_mean(self, conn: psycopg.Connection[Any]) -> float | None:
        """Other roles' mean statement time since the previous reading, from pg_stat_statements when it is
        installed and loaded (None without it, or with fewer than OTHER_MIN_CALLS calls in the window). The
        first reading also takes their baseline: the mean of everything pg_stat_statements holds from before
        the job (the application's usual statement time)."""
        if self._has_pgss is None:
            self._has_pgss = bool((templates.fetch_one(conn, "guard/has_pgss.sql") or {}).get("available"))
        if not self._has_pgss:
            return None
        row = templates.fetch_one(conn, "guard/other_statements.sql") or {}
        calls, total = float(row.get("calls") or 0), float(row.get("total_ms") or 0)
        prev, self._pgss = self._pgss, (calls, total)
        if prev is None:
            self.other_baseline_ms = round(total / calls, 3) if calls >= OTHER_MIN_CALLS else None
            return None
        if calls - prev[0] < OTHER_MIN_CALLS:
            return None
        return round((total - prev[1]) / (calls - prev[0]), 3)

    def _decide(self, v: Verdict, now: float) -> bool:
        """Move the level (hold has hysteresis) and step workers and batch cap; True when the state changed."""
        s = self.settings
        if v.level == HOLD:
            self._clear_since = None
        elif self.level == HOLD:  # hysteresis: a hold ends once every signal has been clear for hold_recover_s
            self._clear_since = self._clear_since or now
            clear = now - self._clear_since
            if clear < s.hold_recover_s:
                v = Verdict(HOLD, self.verdict.key, (f"recovering, clear for {clear:.0f}s of {s.hold_recover_s:g}s",))
            else:
                self._clear_since = None
        entering, before = v.level != self.level, self.level
        self._back_off_recovery(before, v.level, now)
        self.level, self.verdict = v.level, v
        self._healthy_since = (self._healthy_since or now) if v.level == HEALTHY else None
        n = max(1, len(self.workers))
        if self.level in (SLOW, HOLD) and (entering or now - self._stepped >= s.guard_step_s):
            idling = self.level == SLOW and (self.allowed or n) <= 1 and s.nice_ratio_max > 0
            if idling:  # at one worker the idling grows; the cap stays (tiny batches cost more per snapshot)
                self.nice = min(s.nice_ratio_max, self.nice + s.nice_step)
            else:
                self.cap = max(self.base.min_batch_size, (self.cap or self.wanted) // 2)
            self.allowed = 1 if self.level == HOLD else max(1, min(self.allowed or n, n) - 1)
            self._stepped = now
        elif self.level == HEALTHY and self._step_up_due(now):
            if self.nice > 0:  # the idling goes first, then workers and the cap come back
                self.nice = max(0.0, self.nice - s.nice_step)
                self._stepped = self._stepped_up_at = now
            elif self.allowed is not None or self.cap is not None:
                self.allowed = None if self.allowed is None or self.allowed + 1 >= n else self.allowed + 1
                self.cap = None if self.cap is None or self.cap * 2 >= self.wanted else self.cap * 2
                self._stepped = self._stepped_up_at = now
        key = (self.level, self.verdict.key)
        changed = key != self._recorded
        self._recorded = key
        return changed

    def _back_off_recovery(self, before: str, level: str, now: float) -> None:
        """TCP's answer to a guard that oscillates: a step up followed within `slow_recover_s` by slow or hold
        brought the harm back, so the next step up waits twice as long (up to RECOVER_BACKOFF_MAX times
        `slow_recover_s`); once the job has run with no limit left for `slow_recover_s`, the wait is back to
        `slow_recover_s`. A guard that settles below the load production tolerates stays there, instead of
        hurting production every `slow_recover_s` to find out again."""
        s, up = self.settings, self._stepped_up_at
        if before == HEALTHY and level != HEALTHY and up is not None and now - up < s.slow_recover_s:
            self._recover_s = min(RECOVER_BACKOFF_MAX * s.slow_recover_s, 2 * (self._recover_s or s.slow_recover_s))
        free = self.allowed is None and self.cap is None and not self.nice
        if level == HEALTHY and free and up is not None and now - up >= s.slow_recover_s:
            self._recover_s = self._stepped_up_at = None

    def _step_up_due(self, now: float) -> bool:
        """Healthy for the recovery wait (`slow_recover_s`, longer once backed off) and `guard_step_s` since the
        last step."""
        healthy_for = now - (self._healthy_since or now)
        wait = self._recover_s or self.settings.slow_recover_s
        return healthy_for >= wait and now - self._stepped >= self.settings.guard_step_s

    def state_text(self) -> str:
        """The guard's state in words (status, readings)."""
        text = self.verdict.message + (f" (nice {self.nice:g}: idling {self.nice:g}x each batch)" if self.nice else "")
        if self._recover_s:
            text += f" (steps up after {self._recover_s:g}s healthy: a step up brought the harm back)"
        return text

    def _event(self, conn: psycopg.Connection[Any]) -> None:
        details = {
            "level": self.level,
            "key": self.verdict.key,
            "allowed_workers": self.allowed,
            "batch_size": self.cap,
            "readings": {k: v for k, v in self.last.items() if k not in ("state",)},
        }
        jobs.record_event(conn, self.job_id, "guard", f"guard {self.verdict.message}", details)

    def _record(self, conn: psycopg.Connection[Any]) -> None:
        r = self.last
        cols = (
            "probe_ms",
            "baseline_ms",
            "active_sessions",
            "waiting_lock",
            "waiting_lwlock",
            "waiting_io",
            "blocked_by_backfill",
            "dead_tuples",
            "autovacuum_running",
            "wal_bytes_per_s",
            "replica_lag_s",
            "other_mean_ms",
            "other_baseline_ms",
            "xacts_per_s",
        )
        params = {c: r.get(c) for c in cols} | {
            "job_id": self.job_id,
            "state": self.level,
            "reason": self.verdict.message,
            "allowed_workers": self.allowed,
            "batch_size": self.cap,
        }
        templates.execute(conn, "guard/record_reading.sql", params)
