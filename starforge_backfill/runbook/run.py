"""Production rollout: `run` (and `resume`), the job's workers and the concurrency ramp.

`run` finds the job to work on (the one named, the unfinished one of the same range, or a new one, refused
without the gates unless forced), then runs C chunk workers on it until it is done, paused or interrupted.
Every other mode that writes (canary, and the queue worker through `settings.engine`) uses the same engine.
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

from starforge_backfill import __version__, artifacts, capacity, error_budget, jobs
from starforge_backfill import settings as config_settings
from starforge_backfill.config import Config
from starforge_backfill.db import connect_cfg, is_transient, retrying, translate_errors
from starforge_backfill.engine import ChunkWorker, EngineOptions
from starforge_backfill.error_budget import ErrorBudget
from starforge_backfill.errors import DatabaseUnavailable, ExitCode, GateFailed, UsageError
from starforge_backfill.etl.pipeline import BatchResult
from starforge_backfill.jobs import JobStatus, RunOutcome
from starforge_backfill.runbook import gates, step_files
from starforge_backfill.runbook import guard as guard_control
from starforge_backfill.schema import check_schema

Notify = Callable[[str], None]
GATE_PAUSE_PREFIX = "gate:"  # throttle.evaluate's pause reasons
RETRIES_PAUSE_PREFIX = "paused: database errors outlasted the retries"  # engine.ChunkWorker._pause_after_retries
PRODUCTION_MODES = ("run", "reprocess")  # the modes that write production rows: gates and the ramp apply


def _quiet(_msg: str) -> None:
    return None


@dataclasses.dataclass
class RunProgress:
    """Live progress of a run, shared with the caller's progress callback."""

    job_id: str
    total: int
    done_before: int
    processed: int = 0
    errors: int = 0
    batches: int = 0
    started: float = dataclasses.field(default_factory=time.monotonic)
    totals: BatchResult = dataclasses.field(default_factory=BatchResult)

    @property
    def done(self) -> int:
        """Snapshots handled so far, this run and before it."""
        return self.done_before + self.processed + self.errors

    @property
    def rate(self) -> float:
        """Snapshots per second in this invocation."""
        elapsed = time.monotonic() - self.started
        return (self.processed + self.errors) / elapsed if elapsed > 0 else 0.0

    def add(self, res: BatchResult) -> None:
        """Count one finished batch."""
        self.processed += res.applied
        self.errors += res.failed
        self.batches += 1
        self.totals.add(res)


@dataclasses.dataclass
class RunResult:
    """The end of a `run` (or canary, resume)."""

    job: dict[str, Any]
    outcome: RunOutcome
    resumed: bool
    elapsed_s: float
    totals: BatchResult
    artifact: Path | None = None
    budget: ErrorBudget | None = None  # the job's failures against the error budget

    @property
    def over_budget(self) -> bool:
        """A finished job whose failed share exceeds `throttle.failure_rate_max`: not a success."""
        return self.outcome == RunOutcome.DONE and self.budget is not None and self.budget.over

    @property
    def exit_code(self) -> ExitCode:
        """The documented exit code: 0 done within the error budget, 1 done over it, 4 paused, 130 interrupted."""
        if self.outcome == RunOutcome.DONE:
            return ExitCode.CHECK_FAILED if self.over_budget else ExitCode.OK
        if self.outcome == RunOutcome.INTERRUPTED:
            return ExitCode.INTERRUPTED
        return ExitCode.PAUSED

    def summary(self) -> dict[str, Any]:
        """This invocation's figures."""
        t = self.totals
        handled = t.applied + t.failed
        return {
            "outcome": str(self.outcome),
            "resumed": self.resumed,
            "elapsed_s": round(self.elapsed_s, 3),
            "processed": t.applied,
            "failed": t.failed,
            "failed_by_type": dict(t.errors_by_type),
            "rows_written": dict(t.rows_written),
            "placeholders": len(t.placeholders),
            "reference_path": t.reference_path,
            "rate_per_s": round(handled / self.elapsed_s, 2) if self.elapsed_s > 0 else None,
            "error_budget": self.budget.to_json() if self.budget is not None else None,
        }

    def to_json(self) -> dict[str, Any]:
        """`run --json`: the job's final row (status shape) plus this invocation's summary."""
        return jobs.public_row(self.job) | {"run": self.summary()}


@dataclasses.dataclass(frozen=True)
class RunOptions:
    """How to run a job, beyond which snapshots: sizes, the audit reason, and what may be skipped."""

    batch_size: int | None = None  # N: every batch holds N (the byte cap aside); None: "auto", sizes adapt
    concurrency: int | None = None
    force: bool = False  # skip the gates and accept a changed config on resume; needs `reason`
    reason: str | None = None
    mode: str = "run"  # run | reprocess | canary: a canary job is itself a gate, so gates are not asked of it
    ramp: bool | None = None  # None: ramp production writes (PRODUCTION_MODES) only

    def validate(self) -> None:
        """Refuse options that do not go together (before anything is opened)."""
        if self.force and not (self.reason and self.reason.strip()):
            raise UsageError("--force needs --reason TEXT (it is recorded in the audit trail)")
        if self.concurrency is not None and self.concurrency < 1:
            raise UsageError("--concurrency must be at least 1")

    @property
    def production(self) -> bool:
        """A production write (run, reprocess): gated, and ramped unless told otherwise."""
        return self.mode in PRODUCTION_MODES

    @property
    def checks_gates(self) -> bool:
        """Production writes are refused without passing gates, unless forced."""
        return self.production and not self.force


def run(
    cfg: Config,
    selector: jobs.Selector | None = None,
    *,
    job_id: str | None = None,
    options: RunOptions | None = None,
    progress: Callable[[RunProgress], None] | None = None,
    notify: Notify = _quiet,
    stop: threading.Event | None = None,
    reload: threading.Event | None = None,
) -> RunResult:
    """Backfill `selector`'s snapshots resumably (resuming the unfinished job of the same range), or job `job_id`.
    `reload` (set by SIGHUP): re-read the config file's throttle section into the running guard."""
    opts = options or RunOptions()
    opts.validate()
    if job_id is None and selector is None:
        raise UsageError("give --from and --to (a created_at range), or --job-id to resume a job")
    batch_size = opts.batch_size or cfg.etl.batch_size
    stop = stop or threading.Event()
    started = time.monotonic()
    with connect_cfg(cfg, autocommit=True) as conn, translate_errors(cfg.database.dsn):
        check_schema(conn)
        job, resumed, concurrency = _job_for_run(conn, cfg, selector, job_id, opts, batch_size, notify)
        job_id = str(job["job_id"])
        folder = artifacts.job_dir(cfg.artifacts_dir, job_id)
        state = RunProgress(
            job_id=job_id,
            total=int(job.get("total_count") or 0),
            done_before=int(job["processed_count"]) + int(job["error_count"]),
        )
    ramp = opts.production if opts.ramp is None else opts.ramp
    if opts.batch_size is not None:
        batch_size, fixed = opts.batch_size, True
    else:  # a resumed job keeps the sizing it was started with
        batch_size, fixed = int(job["batch_size"]), bool(job.get("batch_fixed"))
    engine = config_settings.engine(cfg, batch_size, folder, job_id, fixed=fixed)
    if not cfg.throttle.enabled:
        _record_guard_disabled(cfg, job_id, notify)
    try:
        outcome = _run_workers(
            cfg, job_id, concurrency, engine, state, progress, stop, notify, ramp=ramp, reload=reload
        )
    finally:
        close = getattr(engine.throttle, "close", None)
        if close is not None:
            close()

    def final_read() -> tuple[dict[str, Any], ErrorBudget]:
        with connect_cfg(cfg, autocommit=True) as conn, translate_errors(cfg.database.dsn):
            row = jobs.get_job(conn, job_id) or job
            if outcome == RunOutcome.INTERRUPTED:
                jobs.record_event(conn, job_id, "interrupted", "run interrupted; checkpoint saved", {})
            scope = jobs.Selector.from_job(row).params()
            return row, error_budget.of_job(conn, row, scope, cfg.throttle.failure_rate_max)

    # the work is committed: a database blip now must not turn a finished run into an error
    final, budget = retrying(final_read, **config_settings.retry(cfg))
    elapsed = time.monotonic() - started
    result = RunResult(
        job=final, outcome=outcome, resumed=resumed, elapsed_s=elapsed, totals=state.totals, budget=budget
    )
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S%f")
    result.artifact = artifacts.write_json(
        folder / f"{opts.mode}-{stamp}.json",
        opts.mode,
        job_id,
        {"job": jobs.public_row(final), "run": result.summary()},
    )
    return result


def _record_guard_disabled(cfg: Config, job_id: str, notify: Notify) -> None:
    """`throttle.enabled: false`: no health gate and no production guard for this run, said on the job."""
    with connect_cfg(cfg, autocommit=True) as conn, translate_errors(cfg.database.dsn):
        jobs.record_event(
            conn,
            job_id,
            "guard_disabled",
            "production guard off (throttle.enabled: false): no health checks, no probe, batches never yield",
            {"config": cfg.source_path and str(cfg.source_path)},
        )
    notify("the production guard is off (throttle.enabled: false)")


def resume(
    cfg: Config, *, job_id: str, reason: str | None = None, force: bool = False, by: str | None = None
) -> dict[str, Any]:
    """Set a paused (or failed) job running again and return its row (the caller may then `run(job_id=...)`).
    The event records `by` as who acted (the admin API: the token's name), else this process's operator.

    Refused, with the job left as it was, when its config fingerprint or tool version differs from the
    running config, unless `force` (with a reason)."""
    RunOptions(force=force, reason=reason).validate()
    with connect_cfg(cfg, autocommit=True) as conn, translate_errors(cfg.database.dsn):
        existing = _existing_job(conn, job_id)
        _check_resume_allowed(existing, cfg, force=force)
        resumable = [JobStatus.PAUSED, JobStatus.FAILED, JobStatus.PENDING]
        row = jobs.set_status(conn, job_id, JobStatus.RUNNING, None, resumable)
        if row is None:
            current = _existing_job(conn, job_id)
            if current["status"] != JobStatus.RUNNING:
                raise GateFailed(f"job {job_id} is {current['status']}: nothing to resume")
            return current
        jobs.record_event(conn, job_id, "resumed", reason or "resumed by operator", {}, by=by)
        return row


def _existing_job(conn: psycopg.Connection[Any], job_id: str) -> dict[str, Any]:
    row = jobs.get_job(conn, job_id)
    if row is None:
        raise UsageError(f"no job {job_id!r}", hint="`starforge-backfill status` lists the jobs")
    return row


def _job_for_run(
    conn: psycopg.Connection[Any],
    cfg: Config,
    selector: jobs.Selector | None,
    job_id: str | None,
    opts: RunOptions,
    batch_size: int,
    notify: Notify,
) -> tuple[dict[str, Any], bool, int]:
    """The job to work on and the workers this run adds: the one named, the unfinished one of this range,
    or a new one (refused without the gates unless forced). Nothing is written when it is refused."""
    if job_id is not None:
        existing: dict[str, Any] | None = _existing_job(conn, job_id)
    else:
        assert selector is not None
        existing = jobs.find_resumable(conn, opts.mode, selector.from_ts, selector.to_ts, selector)
    cap = capacity.read(conn, cfg.database.max_connections_share)
    if existing is not None:
        row, workers = _resume_existing(conn, cfg, existing, opts, cap, notify)
        return row, True, workers
    assert selector is not None
    concurrency = opts.concurrency or cfg.job.concurrency
    cap.require(concurrency)
    relied: list[dict[str, Any]] = []
    overridden: list[str] = []
    if opts.checks_gates:
        relied = gates.require_for_run(conn, cfg, selector.from_ts, selector.to_ts, concurrency, what=opts.mode)
    elif opts.production and opts.force:
        overridden, relied = gates.check_for_run(conn, cfg, selector.from_ts, selector.to_ts, concurrency)
    new = jobs.start_job(
        conn,
        cfg,
        selector,
        mode=opts.mode,
        batch_size=batch_size,
        concurrency=concurrency,
        reason=opts.reason,
        batch_fixed=opts.batch_size is not None,
    )
    if opts.force:
        what = "; ".join(overridden) if overridden else "nothing stood in the way"
        jobs.record_event(
            conn,
            new["job_id"],
            "forced",
            f"gates skipped with --force: {what}",
            {"reason": opts.reason, "overridden": overridden},
        )
    if relied:
        step_files.attach_to_job(cfg, str(new["job_id"]), relied)
    notify(f"created job {new['job_id']}: {new['total_count']} snapshot(s) to process")
    return new, False, concurrency


def _resume_existing(
    conn: psycopg.Connection[Any],
    cfg: Config,
    existing: dict[str, Any],
    opts: RunOptions,
    cap: capacity.Capacity,
    notify: Notify,
) -> tuple[dict[str, Any], int]:
    """Take up an existing job: (its row, the workers this run adds). Never silently: a job an operator or a
    gate paused is refused (even with --force: force skips gates, it never undoes a person's pause), and a
    job that already has live workers gets no more than its concurrency unless --concurrency raises it."""
    _check_resume_allowed(existing, cfg, force=opts.force)
    job_id = str(existing["job_id"])
    if existing["status"] == JobStatus.DONE:
        notify(f"job {job_id} is already done")
        return existing, 1
    if existing["status"] == JobStatus.PAUSED:
        _refuse_a_deliberate_pause(conn, existing)
    if opts.checks_gates and opts.concurrency is not None and opts.concurrency > int(existing["concurrency"]):
        gates.require_raise(conn, cfg, opts.concurrency)  # before anything is written
    if existing["status"] in (JobStatus.PAUSED, JobStatus.FAILED, JobStatus.PENDING):
        resumable = [JobStatus.PAUSED, JobStatus.FAILED, JobStatus.PENDING]
        jobs.set_status(conn, job_id, JobStatus.RUNNING, None, resumable)
        jobs.record_event(conn, job_id, "resumed", f"resumed by {opts.mode}", {"reason": opts.reason})
    workers = _workers_to_add(conn, cfg, existing, opts, cap, notify)
    ck = existing.get("last_checkpoint") or {}
    notify(
        f"resuming job {job_id} ({existing['processed_count']} processed, "
        f"{existing['error_count']} failed so far; last checkpoint {ck.get('created_at', 'none')})"
    )
    return jobs.get_job(conn, job_id) or existing, workers


def _refuse_a_deliberate_pause(conn: psycopg.Connection[Any], job: dict[str, Any]) -> None:
    """A job paused by an operator or a gate is resumed only by `resume`; one the retries paused, by `run` too."""
    reason = str(job.get("status_reason") or "")
    if reason.startswith(RETRIES_PAUSE_PREFIX):
        return  # the tool paused it after a database outage: running the range again is how it goes on
    hint = f"when it should go on: `starforge-backfill resume --job-id {job['job_id']}`"
    if reason.startswith(GATE_PAUSE_PREFIX):
        event = jobs.last_event(conn, str(job["job_id"]), "gate")
        when = f" at {event['created_at']:%Y-%m-%d %H:%M:%S} UTC" if event else ""
        raise GateFailed(f"job {job['job_id']} was paused by a gate{when}: {reason}", hint=hint)
    event = jobs.last_event(conn, str(job["job_id"]), "paused")
    who = (event or {}).get("operator") or "an operator"
    when = f" at {event['created_at']:%Y-%m-%d %H:%M:%S} UTC" if event else ""
    raise GateFailed(f"job {job['job_id']} was paused by {who}{when}: {reason or 'no reason given'}", hint=hint)


def _workers_to_add(
    conn: psycopg.Connection[Any],
    cfg: Config,
    job: dict[str, Any],
    opts: RunOptions,
    cap: capacity.Capacity,
    notify: Notify,
) -> int:
    """Workers this run may add to a job: its concurrency less the workers live elsewhere, or more when
    --concurrency raises the job's concurrency (recorded, and still within the connection budget)."""
    job_id = str(job["job_id"])
    live = len(jobs.live_workers(conn, job_id, cfg.job.claim_ttl_s))  # a killed local worker is not live
    job_c = int(job["concurrency"])
    if opts.concurrency is not None and opts.concurrency > job_c:
        cap.require(opts.concurrency)
        jobs.set_concurrency(conn, job_id, opts.concurrency)
        jobs.record_event(
            conn,
            job_id,
            "concurrency",
            f"concurrency raised {job_c} -> {opts.concurrency}",
            {"from": job_c, "to": opts.concurrency, "reason": opts.reason},
        )
        job_c = opts.concurrency
    else:
        cap.require(job_c)
    room = job_c - live
    workers = room if opts.concurrency is None else min(opts.concurrency, room)
    if workers < 1:
        raise GateFailed(
            f"job {job_id} already has {live} live worker(s), its concurrency {job_c}: this run would add more",
            hint=f"watch it with `starforge-backfill status --job-id {job_id}`, or pass --concurrency N (N > {job_c})"
            " to raise the job's concurrency",
        )
    if live:
        notify(f"job {job_id} has {live} live worker(s) elsewhere: adding {workers}, up to its concurrency {job_c}")
    return workers


def _check_resume_allowed(row: dict[str, Any], cfg: Config, *, force: bool) -> None:
    problems = []
    if row.get("config_fingerprint") and row["config_fingerprint"] != cfg.fingerprint():
        problems.append("the config fingerprint differs from the job's")
    if row.get("tool_version") and row["tool_version"] != __version__:
        problems.append(f"the tool version differs (job {row['tool_version']}, now {__version__})")
    if problems and not force:
        raise GateFailed(
            f"refusing to resume job {row['job_id']}: " + "; ".join(problems),
            hint="use the job's original config, or pass --force --reason TEXT to mix them knowingly",
        )


class _Workers:
    """The chunk-worker threads of one run, each with its own connection, and the events that say they ended."""

    def __init__(self, cfg: Config, job_id: str, options: EngineOptions, stop: threading.Event, on_batch: Any):
        self.cfg, self.job_id, self.options, self.stop, self.on_batch = cfg, job_id, options, stop, on_batch
        self.workers: list[ChunkWorker] = []
        self.finished: list[threading.Event] = []
        self.any_finished = threading.Event()  # set by each worker as it ends: the wait below wakes at once

    def _connect(self) -> psycopg.Connection[Any]:
        app = f"{self.cfg.database.application_name}:{self.job_id}"
        return connect_cfg(self.cfg, autocommit=True, application_name=app)

    def grow_to(self, n: int) -> None:
        """Start workers until `n` run."""
        while len(self.workers) < n:
            w = ChunkWorker(self._connect, self.job_id, jobs.worker_name(), self.options, self.stop, self.on_batch)
            ev = threading.Event()
            self.workers.append(w)
            self.finished.append(ev)
            threading.Thread(target=self._safe_run, args=(w, ev), name=w.name, daemon=True).start()

    def _safe_run(self, worker: ChunkWorker, finished: threading.Event) -> None:
        try:
            worker.run()
        except BaseException:  # recorded on the worker; the main thread re-raises it
            return
        finally:
            finished.set()
            self.any_finished.set()

    def all_done(self) -> bool:
        """True once every started worker has ended."""
        return all(ev.is_set() for ev in self.finished)

    def wait(self, timeout_s: float) -> None:
        """Sleep until a worker ends or `timeout_s` passes."""
        self.any_finished.wait(timeout_s)
        self.any_finished.clear()

    def join(self) -> None:
        """Wait for every worker to end (events, not Thread.join: see `_run_workers`)."""
        for ev in self.finished:
            ev.wait()

    def outcome(self) -> RunOutcome:
        """The run's outcome from its workers' (re-raising a worker's error)."""
        for w in self.workers:
            if w.error is not None and not isinstance(w.error, KeyboardInterrupt):
                raise w.error
        outcomes = {w.outcome for w in self.workers}
        if self.stop.is_set():
            return RunOutcome.INTERRUPTED
        for status in (RunOutcome.PAUSED, RunOutcome.FAILED, RunOutcome.INTERRUPTED):
            if status in outcomes:
                return status
        return RunOutcome.DONE if RunOutcome.DONE in outcomes else RunOutcome(next(iter(outcomes)))


def _run_workers(
    cfg: Config,
    job_id: str,
    concurrency: int,
    options: EngineOptions,
    state: RunProgress,
    progress: Callable[[RunProgress], None] | None,
    stop: threading.Event,
    notify: Notify,
    *,
    ramp: bool = False,
    reload: threading.Event | None = None,
) -> RunOutcome:
    """Run C workers (threads, one connection each) on a job until it is done, paused or interrupted.

    With `ramp` (production runs), workers start at the first step of `gates.ramp` and step up every
    `gates.ramp_step` while the job runs and the throttle sees a healthy database, up to C."""
    lock = threading.Lock()

    def on_batch(_worker: str, res: BatchResult, _duration: float) -> None:
        with lock:
            state.add(res)
            if progress is not None:
                progress(state)

    pool = _Workers(cfg, job_id, options, stop, on_batch)
    schedule = ramp_schedule(cfg.gates.ramp, concurrency) if ramp else [concurrency]
    notify(_plan_line(schedule, cfg.gates.ramp_step_s, options))
    step = 0
    pool.grow_to(schedule[0])
    next_step_at = time.monotonic() + cfg.gates.ramp_step_s
    # Wait on events, not Thread.join: a Ctrl-C inside join() can leave a still-running thread marked as
    # finished (CPython 3.11), and the process would exit with a batch in flight and its chunk unreleased.
    try:
        while not pool.all_done():
            pool.wait(0.2)
            if reload is not None and reload.is_set():
                reload.clear()
                guard_control.reload(cfg, job_id, options.throttle, notify)
            if step + 1 < len(schedule) and time.monotonic() >= next_step_at and not stop.is_set():
                next_step_at = time.monotonic() + cfg.gates.ramp_step_s
                if _ramp_allowed_now(cfg, job_id, options, len(pool.workers), schedule[step + 1]):
                    step += 1
                    pool.grow_to(schedule[step])
    except KeyboardInterrupt:
        stop.set()
        pool.join()
    return pool.outcome()


def _plan_line(schedule: list[int], step_s: float, options: EngineOptions) -> str:
    """What the run will do, said before it does it: its workers (and ramp) and its batch size."""
    if options.target_batch_s > 0:
        lo, hi = options.min_batch_size, options.max_batch_size
        batches = f"batches adapt from {options.batch_size} toward {options.target_batch_s:g} s each ({lo}-{hi})"
    else:
        batches = f"batches of {options.batch_size}"
    first, last = schedule[0], schedule[-1]
    if len(schedule) == 1:
        workers = f"{first} worker{'s' if first != 1 else ''}"
    else:
        steps = " -> ".join(map(str, schedule))
        workers = f"starting with {first} worker{'s' if first != 1 else ''}; ramp {steps} every {step_s:g} s while"
        workers += f" the gates hold, up to {last}"
    return f"{workers}; {batches}"


def ramp_schedule(ramp: tuple[int, ...], concurrency: int) -> list[int]:
    """The concurrency steps of a production run: the configured ramp, capped at and ending with C."""
    return sorted({min(max(1, r), concurrency) for r in ramp} | {concurrency})


def _ramp_allowed_now(cfg: Config, job_id: str, options: EngineOptions, current: int, target: int) -> bool:
    try:
        return _ramp_allowed(cfg, job_id, options, current, target)
    except (psycopg.Error, DatabaseUnavailable) as exc:
        if not is_transient(exc):
            raise
        return False  # the database is away (a restart): hold the ramp until the next step


def _ramp_allowed(cfg: Config, job_id: str, options: EngineOptions, current: int, target: int) -> bool:
    """Step the ramp up only while the gates hold: the job runs and the throttle sees a healthy database."""
    throttle = options.throttle
    healthy = throttle is None or getattr(throttle, "healthy", lambda: True)()
    with connect_cfg(cfg, autocommit=True) as conn:
        status, _ = jobs.job_status(conn, job_id)
        if status != JobStatus.RUNNING or not healthy:
            jobs.record_event(
                conn,
                job_id,
                "ramp",
                f"ramp held at {current}: the gates do not hold",
                {"status": status, "concurrency": current},
            )
            return False
        jobs.record_event(
            conn, job_id, "ramp", f"ramp: concurrency {current} -> {target}", {"from": current, "to": target}
        )
    return True
