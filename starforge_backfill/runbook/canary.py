"""Runbook step "Canary": backfill a narrow slice at low concurrency, watch the database, pass or fail.

The slice is explicit namecodes, or N users (`--users`, default canary.users) picked deterministically (a
hash of the namecode) among those with snapshots still to backfill in a created_at range (`--from/--to`,
or `--recent DURATION`). Without a range the canary takes "the most recent
DURATION of the backlog": the window ends at the newest snapshot that still needs a backfill (rounded up
to the second), not at now(), because in production the newest snapshots are normally already processed
by the real-time workers and a canary must exercise real backfill work.

While the slice runs and during the observation window after it, a sampler thread (its own connection,
named like the toolkit's sessions so the long-transaction check ignores it) reads: client connections
against max_connections, other sessions' long transactions in this database, replica lag, and the canary
job's counters and batch latency. The verdict compares them with the config's `throttle` thresholds:

- failure rate of the job (failed / handled) must be <= throttle.failure_rate_max (no minimum sample:
  the canary slice *is* the sample);
- peak connections / max_connections <= throttle.max_connections_ratio;
- no other session's transaction older than throttle.long_transaction (the throttle would slow the run);
- replica lag <= throttle.replica_lag_max (when there are replicas);
- p95 batch duration <= throttle.long_transaction (one batch is one transaction: longer, and our own
  batches are what other operators' gates would flag); above 2 x throttle.target_batch is a warning;
- the job must finish (a pause by a gate or a failure fails the canary) and must have handled a snapshot.

The result is written to `<artifacts>/<canary job id>/canary.json` and recorded as gate `canary` for the
config fingerprint, which `run` requires. No click or rich here.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg

from starforge_backfill import artifacts, jobs, templates
from starforge_backfill.artifacts import jsonable
from starforge_backfill.config import Config
from starforge_backfill.db import connect_cfg, translate_errors
from starforge_backfill.errors import ExitCode, UsageError
from starforge_backfill.jobs import RunOutcome
from starforge_backfill.runbook import gates, step_files
from starforge_backfill.runbook.common import Check
from starforge_backfill.runbook.gates import record_gate
from starforge_backfill.runbook.run import RunOptions, RunProgress, RunResult, run
from starforge_backfill.schema import check_schema
from starforge_backfill.timerange import parse_optional_ts as parse_ts

MAX_CONCURRENCY = 4
Notify = Callable[[str], None]


def _quiet(_msg: str) -> None:
    return None


@dataclasses.dataclass(frozen=True)
class Selection:
    """The canary's slice: how it was chosen, the namecodes and the created_at range."""

    how: str  # "namecodes" | "users" | "recent"
    namecodes: tuple[str, ...]
    from_ts: dt.datetime
    to_ts: dt.datetime
    resumed_job: str | None = None

    def to_json(self) -> dict[str, Any]:
        """JSON shape."""
        return {
            "how": self.how,
            "namecodes": list(self.namecodes),
            "users": len(self.namecodes),
            "from_ts": self.from_ts.isoformat(),
            "to_ts": self.to_ts.isoformat(),
            "resumed_job": self.resumed_job,
        }


@dataclasses.dataclass
class CanaryResult:
    """What `canary` found."""

    selection: Selection
    concurrency: int
    observe_s: float
    observed_s: float
    sample_every_s: float
    job: dict[str, Any]
    run: dict[str, Any]
    outcome: str  # "passed" | "failed" | "interrupted"
    checks: list[Check]
    samples: list[dict[str, Any]]
    fingerprint: str
    artifact: Path | None = None
    gate_recorded: bool = False

    @property
    def passed(self) -> bool:
        """True when every check passed."""
        return self.outcome == "passed"

    @property
    def reasons(self) -> list[str]:
        """Why it failed, one line per failed check."""
        return [f"{c.name}: {c.detail}" for c in self.checks if not c.passed]

    @property
    def warnings(self) -> list[str]:
        """Things worth a look that do not fail the canary."""
        return [f"{c.name}: {c.warning}" for c in self.checks if c.warning]

    @property
    def exit_code(self) -> ExitCode:
        """0 passed, 1 failed, 130 interrupted."""
        if self.outcome == "interrupted":
            return ExitCode.INTERRUPTED
        return ExitCode.OK if self.passed else ExitCode.CHECK_FAILED

    def to_json(self) -> dict[str, Any]:
        """`canary --json`, also the body of canary.json."""
        return {
            "outcome": self.outcome,
            "passed": self.passed,
            "reasons": self.reasons,
            "warnings": self.warnings,
            "checks": [c.to_json() for c in self.checks],
            "selection": self.selection.to_json(),
            "concurrency": self.concurrency,
            "observe_s": self.observe_s,
            "observed_s": self.observed_s,
            "sample_every_s": self.sample_every_s,
            "config_fingerprint": self.fingerprint,
            "job": self.job,
            "run": self.run,
            "samples": self.samples,
            "artifact": str(self.artifact) if self.artifact else None,
            "gate_recorded": self.gate_recorded,
        }


def _whole_second_after(ts: dt.datetime) -> dt.datetime:
    """The first whole second strictly after `ts` (a half-open range ending there includes `ts`)."""
    return ts.replace(microsecond=0) + dt.timedelta(seconds=1)


def _clean_namecodes(namecodes: list[str]) -> tuple[str, ...]:
    out: dict[str, None] = {}
    for n in namecodes:
        n = n.strip()
        if n:
            out[n] = None
    if not out:
        raise UsageError("--namecodes: give at least one namecode (comma-separated)")
    return tuple(out)


def check_slice_options(
    *,
    namecodes: list[str] | None = None,
    users: int | None = None,
    recent_s: float | None = None,
    from_ts: str | dt.datetime | None = None,
    to_ts: str | dt.datetime | None = None,
) -> tuple[dt.datetime | None, dt.datetime | None]:
    """The slice options checked without a database (a bad one exits 2, never 3 first); the range parsed."""
    if namecodes is not None and (users is not None or recent_s is not None):
        raise UsageError("--namecodes names the slice: do not combine it with --users or --recent")
    if (from_ts is None) != (to_ts is None):
        raise UsageError("give both --from and --to, or neither")
    if recent_s is not None and from_ts is not None:
        raise UsageError("--recent picks its own range: do not combine it with --from/--to")
    if users is not None and users < 1:
        raise UsageError("--users must be at least 1")
    if recent_s is not None and recent_s <= 0:
        raise UsageError("--recent must be a positive duration")
    f, t = parse_ts(from_ts, "--from"), parse_ts(to_ts, "--to")
    if f is not None and t is not None and f >= t:
        raise UsageError(f"--from ({f.isoformat()}) must be before --to ({t.isoformat()})")
    return f, t


def select_slice(
    conn: psycopg.Connection[Any],
    cfg: Config,
    *,
    namecodes: list[str] | None = None,
    users: int | None = None,
    recent_s: float | None = None,
    from_ts: str | dt.datetime | None = None,
    to_ts: str | dt.datetime | None = None,
) -> Selection:
    """Decide the canary's namecodes and created_at range (see the module docstring)."""
    f, t = check_slice_options(namecodes=namecodes, users=users, recent_s=recent_s, from_ts=from_ts, to_ts=to_ts)

    if namecodes is not None:
        wanted = _clean_namecodes(namecodes)
        if f is None or t is None:
            bounds = _backlog(conn, list(wanted))
            if not bounds["wanted"]:
                raise UsageError(
                    f"no snapshot left to backfill for namecodes {', '.join(wanted[:5])}"
                    + (" ..." if len(wanted) > 5 else ""),
                    hint="check the namecodes, or pick users with --users N",
                )
            f, t = bounds["oldest"].replace(microsecond=0), _whole_second_after(bounds["newest"])
        return _adopt_or_check(conn, cfg, Selection("namecodes", wanted, f, t), explicit=True)

    how = "users"
    if f is None or t is None:
        how = "recent"
        window = recent_s if recent_s is not None else cfg.canary.recent_s
        bounds = _backlog(conn, None)
        if not bounds["wanted"]:
            raise UsageError("nothing left to backfill: every snapshot is processed or has failed before")
        t = _whole_second_after(bounds["newest"])
        f = t - dt.timedelta(seconds=window)
    existing = jobs.find_resumable(conn, "canary", f, t)
    if existing is not None:
        return _adopt_or_check(conn, cfg, Selection(how, (), f, t), explicit=False)
    limit = users if users is not None else cfg.canary.users
    params = {"from_ts": f, "to_ts": t, "seed": cfg.sample.seed, "limit": limit}
    picked = tuple(str(r[0]) for r in templates.execute(conn, "canary/pick_users.sql", params))
    if not picked:
        raise UsageError(
            f"no user has snapshots left to backfill in [{f.isoformat()}, {t.isoformat()})",
            hint="widen the range (--from/--to or --recent), or name users with --namecodes",
        )
    return Selection(how, picked, f, t)


def _backlog(conn: psycopg.Connection[Any], namecodes: list[str] | None) -> dict[str, Any]:
    row = templates.fetch_one(conn, "canary/backlog_bounds.sql", {"namecodes": namecodes})
    assert row is not None
    return row


def _adopt_or_check(conn: psycopg.Connection[Any], cfg: Config, sel: Selection, *, explicit: bool) -> Selection:
    """An unfinished canary job of the same range is resumed (as `run` does); make the slice match it."""
    existing = jobs.find_resumable(conn, "canary", sel.from_ts, sel.to_ts)
    if existing is None:
        return sel
    if existing.get("config_fingerprint") not in (None, cfg.fingerprint()):
        raise UsageError(
            f"unfinished canary job {existing['job_id']} ({existing['status']}) covers the same range "
            "under another config: its verdict would not be this config's",
            hint="use that job's config to finish it, or give another --from/--to",
        )
    theirs = tuple((existing.get("selector") or {}).get("namecodes") or ())
    if explicit and set(theirs) != set(sel.namecodes):
        raise UsageError(
            f"unfinished canary job {existing['job_id']} ({existing['status']}) covers the same range "
            "with another slice",
            hint=f"finish it with `starforge-backfill resume --job-id {existing['job_id']}`, or give --from/--to",
        )
    return dataclasses.replace(sel, namecodes=theirs or sel.namecodes, resumed_job=str(existing["job_id"]))


class _Sampler(threading.Thread):
    """Reads the canary's health every `every_s` on its own connection until stopped."""

    def __init__(self, cfg: Config, every_s: float) -> None:
        super().__init__(name="canary-sampler", daemon=True)
        self.cfg = cfg
        self.every_s = every_s
        self.job_id: str | None = None
        self.phase = "run"
        self.samples: list[dict[str, Any]] = []
        self.error: str | None = None
        self._halt = threading.Event()
        self._t0 = time.monotonic()
        self._conn: psycopg.Connection[Any] | None = None

    def _connection(self) -> psycopg.Connection[Any]:
        if self._conn is None or self._conn.closed:
            name = f"{self.cfg.database.application_name}:canary-observer"
            self._conn = connect_cfg(self.cfg, autocommit=True, application_name=name)
        return self._conn

    def sample(self) -> dict[str, Any]:
        """Take one reading now (also callable from the main thread once the thread has stopped)."""
        t = self.cfg.throttle
        params = {
            "job_id": self.job_id,
            "long_transaction_s": t.long_transaction_s,
            "app_prefix": self.cfg.database.application_name + "%",
        }
        row = templates.fetch_one(self._connection(), "canary/observe.sql", params)
        assert row is not None
        reading = {"t_s": round(time.monotonic() - self._t0, 3), "phase": self.phase, "at": artifacts.utcnow()}
        reading |= {k: (float(v) if isinstance(v, float) else v) for k, v in row.items()}
        self.samples.append(reading)
        return reading

    def run(self) -> None:
        while not self._halt.is_set():
            try:
                self.sample()
            except Exception as exc:  # the verdict reports it; the thread must not die silently
                self.error = f"{type(exc).__name__}: {str(exc).strip()[:200]}"
            self._halt.wait(self.every_s)

    def halt(self) -> None:
        """Stop sampling and wait for the thread."""
        self._halt.set()
        if self.is_alive():
            self.join()

    def close(self) -> None:
        """Close the sampler's connection."""
        if self._conn is not None:
            self._conn.close()

    def finish(self) -> None:
        """Stop the thread, then take the final reading (its failure is reported like any other)."""
        self.halt()
        self.phase = "final"
        try:
            self.sample()
        except psycopg.Error as exc:
            self.error = self.error or f"{type(exc).__name__}: {str(exc).strip()[:200]}"

    def __enter__(self) -> _Sampler:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.halt()
        self.close()


def evaluate(
    cfg: Config, outcome: str, job: dict[str, Any], samples: list[dict[str, Any]], sampler_error: str | None
) -> list[Check]:
    """The canary verdict: one Check per gate, against the config's throttle thresholds."""
    t = cfg.throttle
    checks: list[Check] = []
    status, why = job.get("status"), job.get("status_reason")
    checks.append(
        Check(
            "job",
            outcome == "done",
            "the canary job finished" if outcome == "done" else f"the canary job ended {status}: {why or outcome}",
            value=status,
            threshold="done",
        )
    )
    processed, failed = int(job.get("processed_count") or 0), int(job.get("error_count") or 0)
    handled = processed + failed
    checks.append(
        Check(
            "snapshots",
            handled > 0,
            f"{handled} snapshot(s) handled ({processed} processed, {failed} failed)"
            if handled
            else "the slice held no snapshot to backfill: nothing was observed",
            value=handled,
            threshold=">= 1",
        )
    )
    rate = failed / handled if handled else 0.0
    checks.append(
        Check(
            "failure_rate",
            rate <= t.failure_rate_max,
            f"{failed}/{handled} = {rate:.2%} failed (max {t.failure_rate_max:.2%})",
            value=round(rate, 6),
            threshold=t.failure_rate_max,
        )
    )
    peak = max(samples, key=lambda s: int(s["connections"]) / max(int(s["max_connections"]), 1), default=None)
    if peak is None:
        checks.append(
            Check("connections", False, "no reading was taken", value=None, threshold=t.max_connections_ratio)
        )
    else:
        conns, max_conns = int(peak["connections"]), max(int(peak["max_connections"]), 1)
        ratio = conns / max_conns
        checks.append(
            Check(
                "connections",
                ratio <= t.max_connections_ratio,
                f"peak {conns}/{max_conns} client connections = {ratio:.0%} "
                f"(ours {peak['own_connections']}; max {t.max_connections_ratio:.0%})",
                value=round(ratio, 4),
                threshold=t.max_connections_ratio,
            )
        )
    longest = max((int(s["long_transactions"]) for s in samples), default=0)
    oldest = max((float(s["oldest_other_transaction_s"]) for s in samples), default=0.0)
    checks.append(
        Check(
            "long_transactions",
            longest == 0,
            f"up to {longest} other transaction(s) older than {t.long_transaction_s:g}s (oldest {oldest:.0f}s)"
            if longest
            else f"no other transaction older than {t.long_transaction_s:g}s (oldest seen {oldest:.1f}s)",
            value=longest,
            threshold=0,
        )
    )
    replicas = max((int(s["replicas"]) for s in samples), default=0)
    lag = max((float(s["replica_lag_s"]) for s in samples), default=0.0)
    checks.append(
        Check(
            "replica_lag",
            replicas == 0 or lag <= t.replica_lag_max_s,
            f"peak replica lag {lag:.1f}s over {replicas} replica(s) (max {t.replica_lag_max_s:g}s)"
            if replicas
            else "no replicas attached",
            value=round(lag, 3),
            threshold=t.replica_lag_max_s,
        )
    )
    last = samples[-1] if samples else {}
    p95_ms = last.get("p95_batch_ms")
    p95 = float(p95_ms) / 1000 if p95_ms is not None else None
    warn = None
    if p95 is not None and p95 > 2 * t.target_batch_s:
        warn = f"p95 batch {p95:.2f}s is over twice throttle.target_batch ({t.target_batch_s:g}s)"
    checks.append(
        Check(
            "batch_latency",
            p95 is None or p95 <= t.long_transaction_s,
            f"p95 batch {p95:.2f}s over {last.get('batches', 0)} batch(es) (max {t.long_transaction_s:g}s)"
            if p95 is not None
            else "no batch recorded",
            value=round(p95, 3) if p95 is not None else None,
            threshold=t.long_transaction_s,
            warning=warn,
        )
    )
    if sampler_error:
        checks.append(Check("observation", False, f"a reading failed: {sampler_error}", value=None, threshold=None))
    return checks


def canary(
    cfg: Config,
    *,
    namecodes: list[str] | None = None,
    users: int | None = None,
    recent_s: float | None = None,
    from_ts: str | dt.datetime | None = None,
    to_ts: str | dt.datetime | None = None,
    observe_s: float | None = None,
    concurrency: int | None = None,
    batch_size: int | None = None,
    sample_every_s: float | None = None,
    notify: Notify = _quiet,
    progress: Callable[[RunProgress], None] | None = None,
    after_run: Callable[[], None] | None = None,
    stop: threading.Event | None = None,
) -> CanaryResult:
    """Backfill a narrow slice (`run` in mode canary), observe the gates for a window, record the `canary` gate."""
    c, observe, every = _window(cfg, concurrency, observe_s, sample_every_s)
    check_slice_options(namecodes=namecodes, users=users, recent_s=recent_s, from_ts=from_ts, to_ts=to_ts)
    stop = stop or threading.Event()
    with connect_cfg(cfg, autocommit=True) as conn, translate_errors(cfg.database.dsn):
        check_schema(conn)
        sel = select_slice(conn, cfg, namecodes=namecodes, users=users, recent_s=recent_s, from_ts=from_ts, to_ts=to_ts)
    notify(
        f"canary slice: {len(sel.namecodes)} user(s) ({sel.how}) in [{sel.from_ts.isoformat()}, "
        f"{sel.to_ts.isoformat()}), concurrency {c}"
    )
    with translate_errors(cfg.database.dsn), _Sampler(cfg, every) as sampler:

        def on_progress(state: RunProgress) -> None:
            sampler.job_id = state.job_id
            if progress is not None:
                progress(state)

        options = RunOptions(mode="canary", concurrency=c, batch_size=batch_size, reason="canary")
        selector = jobs.Selector(from_ts=sel.from_ts, to_ts=sel.to_ts, namecodes=sel.namecodes)
        res = run(cfg, selector, options=options, progress=on_progress, notify=notify, stop=stop)
        sampler.job_id = str(res.job["job_id"])
        interrupted, observed = _watch(res, observe, every, stop, sampler, notify, after_run)
        sampler.finish()
    return _verdict(cfg, sel, c, observe, observed, every, res, sampler, interrupted)


def _window(
    cfg: Config, concurrency: int | None, observe_s: float | None, sample_every_s: float | None
) -> tuple[int, float, float]:
    """The canary's concurrency, observation window and sampling interval, checked."""
    c = concurrency if concurrency is not None else cfg.canary.concurrency
    if not 1 <= c <= MAX_CONCURRENCY:
        raise UsageError(
            f"--concurrency {c}: a canary runs at 1 to {MAX_CONCURRENCY} (runbook: conservative concurrency)",
            hint="scale up with `run` once the canary passed",
        )
    observe = cfg.canary.observe_s if observe_s is None else float(observe_s)
    if observe < 0:
        raise UsageError("--observe must be a duration >= 0")
    every = sample_every_s if sample_every_s is not None else round(min(5.0, max(0.5, observe / 6)), 1)
    return c, observe, every


def _watch(
    res: RunResult,
    observe: float,
    every: float,
    stop: threading.Event,
    sampler: _Sampler,
    notify: Notify,
    after_run: Callable[[], None] | None,
) -> tuple[bool, float]:
    """After the slice: watch for `observe` seconds; (interrupted, seconds observed). Ctrl-C ends the watch."""
    started = time.monotonic()
    try:
        if after_run is not None:  # e.g. close a progress bar before the observation window
            after_run()
        if res.outcome == RunOutcome.INTERRUPTED:
            return True, 0.0
        if observe <= 0:
            return False, 0.0
        sampler.phase = "observe"
        notify(f"observing for {observe:g}s (a reading every {every:g}s)")
        return _observe(observe, stop)
    except KeyboardInterrupt:
        stop.set()
        return True, time.monotonic() - started


def _verdict(
    cfg: Config,
    sel: Selection,
    c: int,
    observe: float,
    observed: float,
    every: float,
    res: RunResult,
    sampler: _Sampler,
    interrupted: bool,
) -> CanaryResult:
    """Judge the readings, write canary.json and, unless interrupted, record the gate and its event."""
    job_id = str(res.job["job_id"])
    with connect_cfg(cfg, autocommit=True) as conn, translate_errors(cfg.database.dsn):
        job_row = jobs.get_job(conn, job_id) or res.job
        checks = evaluate(cfg, res.outcome, job_row, sampler.samples, sampler.error)
        outcome = "interrupted" if interrupted else ("passed" if all(ch.passed for ch in checks) else "failed")
        result = CanaryResult(
            selection=sel,
            concurrency=c,
            observe_s=observe,
            observed_s=round(observed, 1),
            sample_every_s=every,
            job=jobs.public_row(job_row),
            run=res.summary(),
            outcome=outcome,
            checks=checks,
            samples=[jsonable(s) for s in sampler.samples],
            fingerprint=cfg.fingerprint(),
            gate_recorded=not interrupted,
        )
        result.artifact = artifacts.job_dir(cfg.artifacts_dir, job_id) / "canary.json"
        body = {**result.to_json(), "database": step_files.public_database(gates.database_identity(conn))}
        artifacts.write_json(result.artifact, "canary", job_id, body)
        if interrupted:
            return result
        record_gate(
            conn,
            "canary",
            result.fingerprint,
            result.passed,
            job_id=job_id,
            from_ts=sel.from_ts,
            to_ts=sel.to_ts,
            concurrency=c,
            artifact=result.artifact,
            details={"reasons": result.reasons, "warnings": result.warnings, "selection": sel.to_json()},
        )
        jobs.record_event(
            conn,
            job_id,
            "canary",
            f"canary {outcome}" + (f": {'; '.join(result.reasons)}" if result.reasons else ""),
            {"outcome": outcome, "reasons": result.reasons},
        )
    return result


def _observe(seconds: float, stop: threading.Event) -> tuple[bool, float]:
    """Wait out the observation window: (interrupted by Ctrl-C or `stop`, seconds observed)."""
    started = time.monotonic()
    deadline = started + seconds
    try:
        while (left := deadline - time.monotonic()) > 0:
            if stop.wait(min(left, 0.2)):
                return True, time.monotonic() - started
    except KeyboardInterrupt:
        stop.set()
        return True, time.monotonic() - started
    return False, seconds
