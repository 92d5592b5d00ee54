"""The backfill under test: `starforge-backfill run` as a subprocess with one guard setting, its progress
read from `hero_snapshots`, stopped gracefully (SIGINT) when a window is over."""

from __future__ import annotations

import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import yaml

from bench import runcmd

CONCURRENCY = 2
APP = "starforge-bench-impact"  # the bench's own sessions; not "starforge-backfill" (the guard excludes that)


@dataclass(frozen=True)
class Setting:
    """A named guard setting: `throttle` keys on top of the bench's base config."""

    name: str
    throttle: dict[str, Any] = field(default_factory=dict)

    def config_text(self, concurrency: int = CONCURRENCY) -> str:
        # the synthetic corpus is ~1% malformed by design: the failure-rate gate would pause the job; the ramp
        # starts at the requested C (the issue: "the ramp starting at the requested C=2")
        throttle = {"failure_rate_max": 1.0, **self.throttle}
        return yaml.safe_dump({"throttle": throttle, "gates": {"ramp": [concurrency]}}, sort_keys=False)

    def label(self) -> str:
        if not self.throttle:
            return f"{self.name} (defaults)"
        return f"{self.name} ({', '.join(f'{k}={v}' for k, v in self.throttle.items())})"


DEFAULT = Setting("default")
OFF = Setting("guard-off", {"enabled": False})
# `throttle.enabled: false` switches off the guard *and* the adaptive batch sizer (a guard-off run's batches
# are `etl.batch_size`, 250): this one keeps the guard on with the batch pinned at 250, so the idle pairs
# tell the guard's own cost from the sizer's
PINNED = Setting("guard-on-batch-250", {"min_batch_size": 250, "max_batch_size": 250})


def accepted(setting: Setting) -> str | None:
    """None when this checkout's config accepts the setting's keys, else the config error (one line)."""
    from starforge_backfill.config import load_config
    from starforge_backfill.errors import ConfigError

    with tempfile.NamedTemporaryFile("w", suffix=".yaml") as f:
        f.write(setting.config_text())
        f.flush()
        try:
            load_config(f.name)
        except ConfigError as exc:
            return str(exc).splitlines()[0]
    return None


def done(dsn: str) -> int:
    """Snapshots the run has finished with (processed, or failed and recorded)."""
    with psycopg.connect(dsn, application_name=APP) as conn:
        row = conn.execute(
            "SELECT count(*) FROM hero_snapshots WHERE processed_at IS NOT NULL OR error_count > 0"
        ).fetchone()
    assert row is not None
    return int(row[0])


def overlap(batches: list[tuple[float, int, int]], start: float, end: float) -> float:
    """Snapshots of (begin epoch s, duration ms, snapshots) batches attributed to [start, end]: a batch's
    snapshots spread evenly over its span, counted by the share of the span inside the window."""
    total = 0.0
    for begin, duration_ms, snapshots in batches:
        span = max(duration_ms / 1000.0, 1e-3)
        inside = min(end, begin + span) - max(start, begin)
        if inside > 0:
            total += snapshots * inside / span
    return total


def guard(dsn: str) -> dict[str, Any] | None:
    """What the guard read and decided over the run (`guard_readings`, sampled): readings per state, the
    highest probe latency against its baseline, the fewest workers and the smallest batch cap it allowed, the
    server's transaction rate (lowest and highest reading; None in a checkout without it).
    None where the table does not exist (a checkout without the guard)."""
    with psycopg.connect(dsn, application_name=APP) as conn:
        if conn.execute("SELECT to_regclass('guard_readings')").fetchone() == (None,):
            return None
        states: dict[str, int] = dict(
            conn.execute("SELECT state, count(*) FROM guard_readings GROUP BY 1 ORDER BY 1").fetchall()
        )
        has_xacts = conn.execute(
            "SELECT 1 FROM pg_attribute WHERE attrelid = 'guard_readings'::regclass AND attname = 'xacts_per_s'"
        ).fetchone()
        xacts = "min(xacts_per_s), max(xacts_per_s)" if has_xacts else "NULL::float8, NULL::float8"
        row = conn.execute(
            "SELECT max(probe_ms), max(baseline_ms), min(allowed_workers), min(batch_size), "
            + xacts
            + " FROM guard_readings"
        ).fetchone()
        reasons = conn.execute(
            "SELECT reason, count(*) FROM guard_readings WHERE state <> 'healthy' GROUP BY 1"
        ).fetchall()
    assert row is not None
    names = (
        "probe_ms_max",
        "baseline_ms",
        "allowed_workers_min",
        "batch_size_min",
        "xacts_per_s_min",
        "xacts_per_s_max",
    )
    why: dict[str, int] = {}
    for text, n in reasons:
        for signal_name in signals(text or ""):
            why[signal_name] = why.get(signal_name, 0) + int(n)
    out = {"states": {k: int(v) for k, v in states.items()}, "reasons": why}
    return out | dict(zip(names, row, strict=True))


# the guard's reason texts (guard.judge) -> the signal that gave them
SIGNALS = (
    ("probe ", "probe"),  # "probe p90 ..." (slow), "probe median ..." (hold)
    ("autovacuum", "autovacuum"),
    ("waited on a backfill", "blocking"),
    ("active session", "active-sessions"),
    ("waiting (", "waiting-sessions"),
    ("dead tuples", "dead-tuples"),
    ("WAL ", "wal-rate"),
    ("replica lag", "replica-lag"),
    ("recovering", "recovering"),  # a hold's hysteresis: clear, but not for long enough yet
)


def signals(reason: str) -> list[str]:
    """The signals named in one reading's reason (several when several fired)."""
    return [name for needle, name in SIGNALS if needle in reason] or ([reason[:40]] if reason else [])


def events(dsn: str) -> dict[str, int]:
    """How many events of each kind the job recorded (gate, throttle, ramp, guard_disabled, ...)."""
    with psycopg.connect(dsn, application_name=APP) as conn:
        rows = conn.execute("SELECT kind, count(*) FROM backfill_events GROUP BY kind ORDER BY kind").fetchall()
    return {kind: int(n) for kind, n in rows}


@dataclass
class Run:
    """One `run` in progress, and its committed batches as the bench saw them appear.

    Throughput in a window comes from the batches, not from counting finished snapshots at the window's
    two ends (that is off by up to a whole batch, hundreds of snapshots with the adaptive sizer): each
    batch spans [seen - duration, seen], `seen` being the first poll (every `POLL_S`) that found its
    `backfill_batches` row (its `finished_at` is its transaction's start, which can be earlier than the
    batch), and counts by the share of that span inside the window (`overlap`)."""

    proc: subprocess.Popen[bytes]
    dsn: str
    started: float  # time.time()
    logdir: Path
    batches: list[tuple[float, int, int]] = field(default_factory=list)  # (begin, duration ms, snapshots)
    _last_id: int = 0
    _conn: psycopg.Connection[Any] | None = None

    POLL_S = 0.25

    def exited(self) -> bool:
        return self.proc.poll() is not None

    def poll(self) -> int:
        """Read the batches committed since the last poll; returns how many were new. Before the job's
        tables exist (the run is starting), nothing."""
        if self._conn is None:
            self._conn = psycopg.connect(self.dsn, autocommit=True, application_name=APP)
        seen = time.time()
        try:
            rows = self._conn.execute(
                "SELECT id, duration_ms, snapshots FROM backfill_batches WHERE id > %s ORDER BY id", (self._last_id,)
            ).fetchall()
        except psycopg.errors.UndefinedTable:
            return 0
        for batch_id, duration_ms, snapshots in rows:
            self.batches.append((seen - duration_ms / 1000.0, int(duration_ms), int(snapshots)))
            self._last_id = max(self._last_id, int(batch_id))
        return len(rows)

    def wait_first(self, max_wait: float) -> float:
        """Poll until the first batch is committed, the run exits, or `max_wait` after the run started
        (a guard that holds from the start gives a window with no progress, not no window). Returns when."""
        while not self.batches and not self.exited() and time.time() < self.started + max_wait:
            self.poll()
            time.sleep(self.POLL_S)
        return time.time()

    def sleep_until(self, end: float) -> float:
        """Poll until `end` or until the run exits; returns the time it stopped waiting."""
        while time.time() < end and not self.exited():
            self.poll()
            time.sleep(min(self.POLL_S, max(0.0, end - time.time())))
        return min(time.time(), end)

    def last_end(self) -> float | None:
        """When the last seen batch was seen (its end)."""
        return max((b + d / 1000.0 for b, d, _ in self.batches), default=None)

    def rate(self, start: float, end: float) -> float | None:
        """Snapshots per second in [start, end]; call it after `stop()` (a stopping run commits its batch)."""
        return round(overlap(self.batches, start, end) / (end - start), 1) if end > start else None

    def stop(self, timeout: float = 60.0) -> int:
        """Graceful stop (SIGINT: the workers finish their batch, exit 130), polling the batches meanwhile;
        kill after `timeout`."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            deadline = time.time() + timeout
            while self.proc.poll() is None and time.time() < deadline:
                self.poll()
                time.sleep(self.POLL_S)
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
        if self._conn is not None:
            self.poll()
            self._conn.close()
            self._conn = None
        return self.proc.returncode

    def stderr_tail(self) -> str:
        text = (self.logdir / "run.stderr").read_text(errors="replace").strip()
        return text.splitlines()[-1][:300] if text else ""


def _default_sigint() -> None:
    """In the child: SIGINT back to its default (a shell's background job inherits it ignored)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def newest_since(dsn: str, n: int) -> str | None:
    """The created_at (ISO) from which the corpus holds its newest n snapshots (None: n covers it all)."""
    with psycopg.connect(dsn, application_name=APP) as conn:
        row = conn.execute(
            "SELECT created_at FROM hero_snapshots ORDER BY created_at DESC, id DESC OFFSET %s LIMIT 1", (n - 1,)
        ).fetchone()
        total = conn.execute("SELECT count(*) FROM hero_snapshots").fetchone()
    if row is None or total is None or total[0] <= n:
        return None
    return str(row[0].isoformat())


def start(dsn: str, setting: Setting, workdir: Path, concurrency: int = CONCURRENCY, since: str | None = None) -> Run:
    """Start `starforge-backfill run` with the setting's config over the whole corpus, or from `since`."""
    workdir.mkdir(parents=True, exist_ok=True)
    config = workdir / "config.yaml"
    config.write_text(setting.config_text(concurrency))
    cmd = runcmd.command(dsn, workdir / "artifacts", concurrency, config)
    if since is not None:
        cmd[cmd.index("--from") + 1] = since
    with (workdir / "run.stdout").open("wb") as out, (workdir / "run.stderr").open("wb") as err:
        started = time.time()
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, stdin=subprocess.DEVNULL, preexec_fn=_default_sigint)
    return Run(proc, dsn, started, workdir)
