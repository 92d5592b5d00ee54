"""One function per runbook step: plain Python over config, returning result dataclasses (no click, no rich)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import secrets
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg

from starforge_backfill import __version__, artifacts, capacity, jobs, schema
from starforge_backfill.config import Config
from starforge_backfill.db import connect_cfg, is_transient, retry_kwargs, retrying, translate_errors
from starforge_backfill.engine import EngineOptions, Worker
from starforge_backfill.errors import DatabaseUnavailable, ExitCode, GateFailed, UsageError
from starforge_backfill.etl.pipeline import BatchResult, EtlSettings
from starforge_backfill.runbook.common import check_schema as _check_schema
from starforge_backfill.runbook.common import parse_ts as _parse_ts
from starforge_backfill.throttle import HealthThrottle, ThrottleSettings

Notify = Callable[[str], None]


def _quiet(_msg: str) -> None:
    return None


@dataclasses.dataclass(frozen=True)
class DbInitResult:
    """What `db init` did."""

    files: tuple[str, ...]
    tables_before: int
    tables_after: int

    def to_json(self) -> dict[str, Any]:
        """JSON shape of `db init --json`."""
        return dataclasses.asdict(self) | {"files": list(self.files)}


def db_init(cfg: Config) -> DbInitResult:
    """Create the toolkit's tables (and the StarForge tables when absent); idempotent."""
    res = schema.init_db(cfg.database.dsn or "")
    return DbInitResult(res.files, res.tables_before, res.tables_after)


def new_job_id(mode: str = "run") -> str:
    """A readable, unique job id: `<mode>-YYYYMMDDTHHMMSS-<hex>`."""
    return f"{mode}-{dt.datetime.now(dt.UTC):%Y%m%dT%H%M%S}-{secrets.token_hex(3)}"


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


@dataclasses.dataclass
class RunResult:
    """The end of a `run` (or canary, resume)."""

    job: dict[str, Any]
    outcome: str
    resumed: bool
    elapsed_s: float
    totals: BatchResult
    artifact: Path | None = None

    @property
    def exit_code(self) -> ExitCode:
        """The documented exit code for this outcome."""
        if self.outcome == "done":
            return ExitCode.OK
        if self.outcome == "stopped":
            return ExitCode.INTERRUPTED
        return ExitCode.PAUSED

    def summary(self) -> dict[str, Any]:
        """This invocation's figures."""
        t = self.totals
        handled = t.applied + t.failed
        return {
            "outcome": self.outcome,
            "resumed": self.resumed,
            "elapsed_s": round(self.elapsed_s, 3),
            "processed": t.applied,
            "failed": t.failed,
            "failed_by_type": dict(t.errors_by_type),
            "rows_written": dict(t.rows_written),
            "placeholders": len(t.placeholders),
            "reference_path": t.reference_path,
            "rate_per_s": round(handled / self.elapsed_s, 2) if self.elapsed_s > 0 else None,
        }

    def to_json(self) -> dict[str, Any]:
        """`run --json`: the job's final row (status shape) plus this invocation's summary."""
        return jobs.public_row(self.job) | {"run": self.summary()}


def run(
    cfg: Config,
    *,
    from_ts: str | dt.datetime | None = None,
    to_ts: str | dt.datetime | None = None,
    batch_size: int | None = None,
    concurrency: int | None = None,
    reprocess: bool = False,
    retry_failed: bool = False,
    job_id: str | None = None,
    force: bool = False,
    reason: str | None = None,
    mode: str = "run",
    namecodes: list[str] | None = None,
    ids: list[Any] | None = None,
    progress: Callable[[RunProgress], None] | None = None,
    notify: Notify = _quiet,
    stop: threading.Event | None = None,
    gate: Callable[[psycopg.Connection[Any], Config], None] | None = None,
) -> RunResult:
    """Backfill a created_at range (half-open) resumably; resume the unfinished job of the same range."""
    if force and not (reason and reason.strip()):
        raise UsageError("--force needs --reason TEXT (it is recorded in the audit trail)")
    if job_id is None and (from_ts is None or to_ts is None):
        raise UsageError("give --from and --to (a created_at range), or --job-id to resume a job")
    concurrency = concurrency or cfg.job.concurrency
    if concurrency < 1:
        raise UsageError("--concurrency must be at least 1")
    batch_size = batch_size or cfg.etl.batch_size
    stop = stop or threading.Event()
    started = time.monotonic()
    with connect_cfg(cfg, autocommit=True) as conn, translate_errors(cfg.database.dsn):
        _check_schema(conn)
        capacity.read(conn, cfg.database.max_connections_share).require(concurrency)
        job, resumed = _job_for_run(
            conn,
            cfg,
            job_id=job_id,
            from_ts=from_ts,
            to_ts=to_ts,
            mode=mode,
            batch_size=batch_size,
            concurrency=concurrency,
            reprocess=reprocess,
            retry_failed=retry_failed,
            namecodes=namecodes,
            ids=ids,
            force=force,
            reason=reason,
            notify=notify,
            gate=gate,
        )
        job_id = str(job["job_id"])
        folder = artifacts.job_dir(cfg.artifacts_dir, job_id)
        if not resumed:
            artifacts.write_json(
                folder / "config.json",
                "config",
                job_id,
                {"fingerprint": cfg.fingerprint(), "config": cfg.to_dict(redact=True)},
            )
        state = RunProgress(
            job_id=job_id,
            total=int(job.get("total_count") or 0),
            done_before=int(job["processed_count"]) + int(job["error_count"]),
        )
    outcome = _run_workers(cfg, job_id, concurrency, batch_size, state, progress, stop, folder, ramp=mode == "run")

    def final_read() -> dict[str, Any]:
        with connect_cfg(cfg, autocommit=True) as conn, translate_errors(cfg.database.dsn):
            row = jobs.get_job(conn, job_id) or job
            if outcome == "stopped":
                jobs.record_event(conn, job_id, "interrupted", "run interrupted; checkpoint saved", {})
            return row

    # the work is committed: a database blip now must not turn a finished run into an error
    final = retrying(final_read, **retry_kwargs(cfg))
    elapsed = time.monotonic() - started
    result = RunResult(job=final, outcome=outcome, resumed=resumed, elapsed_s=elapsed, totals=state.totals)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S%f")
    result.artifact = artifacts.write_json(
        folder / f"{mode}-{stamp}.json",
        mode,
        job_id,
        {"job": jobs.public_row(final), "run": result.summary()},
    )
    return result


def _job_for_run(
    conn: psycopg.Connection[Any],
    cfg: Config,
    *,
    job_id: str | None,
    from_ts: Any,
    to_ts: Any,
    mode: str,
    batch_size: int,
    concurrency: int,
    reprocess: bool,
    retry_failed: bool,
    namecodes: list[str] | None,
    ids: list[Any] | None,
    force: bool,
    reason: str | None,
    notify: Notify,
    gate: Callable[[psycopg.Connection[Any], Config], None] | None = None,
) -> tuple[dict[str, Any], bool]:
    """Find the job to resume (by id, or the unfinished one of this range) or create a new one."""
    existing = None
    if job_id is not None:
        existing = jobs.get_job(conn, job_id)
        if existing is None:
            raise UsageError(f"no job {job_id!r}", hint="`starforge-backfill status` lists the jobs")
    else:
        f, t = _parse_ts(from_ts, "--from"), _parse_ts(to_ts, "--to")
        if f >= t:
            raise UsageError(f"--from ({f.isoformat()}) must be before --to ({t.isoformat()})")
        existing = jobs.find_resumable(conn, mode, f, t)
    if existing is not None:
        _check_resume_allowed(existing, cfg, force=force, reason=reason)
        if existing["status"] == "done":
            notify(f"job {existing['job_id']} is already done")
            return existing, True
        if existing["status"] in ("paused", "failed", "pending"):
            jobs.set_status(conn, existing["job_id"], "running", None, ["paused", "failed", "pending"])
            jobs.record_event(conn, existing["job_id"], "resumed", f"resumed by {mode}", {"reason": reason})
        ck = existing.get("last_checkpoint") or {}
        notify(
            f"resuming job {existing['job_id']} ({existing['processed_count']} processed, "
            f"{existing['error_count']} failed so far; last checkpoint {ck.get('created_at', 'none')})"
        )
        return jobs.get_job(conn, existing["job_id"]) or existing, True
    if gate is not None:
        gate(conn, cfg)  # before anything is written: a refused run leaves no job behind
    selector = jobs.Selector(
        from_ts=_parse_ts(from_ts, "--from"),
        to_ts=_parse_ts(to_ts, "--to"),
        reprocess=reprocess,
        retry_failed=retry_failed,
        namecodes=tuple(namecodes) if namecodes is not None else None,
        ids=tuple(ids) if ids is not None else None,
    )
    new = jobs.create_job(
        conn,
        job_id=new_job_id(mode),
        owner=cfg.job.owner,
        mode=mode,
        selector=selector,
        batch_size=batch_size,
        concurrency=concurrency,
        chunk_size=cfg.job.chunk_size,
        config_fingerprint=cfg.fingerprint(),
        tool_version=__version__,
        reason=reason,
    )
    if force:
        jobs.record_event(conn, new["job_id"], "forced", "gates skipped with --force", {"reason": reason})
    notify(f"created job {new['job_id']}: {new['total_count']} snapshot(s) to process")
    return new, False


def _check_resume_allowed(row: dict[str, Any], cfg: Config, *, force: bool, reason: str | None) -> None:
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


def _run_workers(
    cfg: Config,
    job_id: str,
    concurrency: int,
    batch_size: int,
    state: RunProgress,
    progress: Callable[[RunProgress], None] | None,
    stop: threading.Event,
    folder: Path,
    *,
    ramp: bool = False,
) -> str:
    """Run C workers (threads, one connection each) on a job until it is done, paused or interrupted.

    With `ramp` (production runs), workers start at the first step of `gates.ramp` and step up every
    `gates.ramp_step` while the job runs and the throttle sees a healthy database, up to C."""
    lock = threading.Lock()
    options = engine_options(cfg, batch_size, folder, job_id)

    def on_batch(_worker: str, res: BatchResult, _duration: float) -> None:
        with lock:
            state.processed += res.applied
            state.errors += res.failed
            state.batches += 1
            state.totals.add(res)
            if progress is not None:
                progress(state)

    def connect() -> psycopg.Connection[Any]:
        return connect_cfg(cfg, autocommit=True, application_name=f"{cfg.database.application_name}:{job_id}")

    workers: list[Worker] = []
    finished: list[threading.Event] = []
    any_finished = threading.Event()  # set by each worker as it ends: the wait below wakes at once

    def start(n: int) -> None:
        while len(workers) < n:
            w = Worker(connect, job_id, jobs.worker_name(), options, stop, on_batch)
            ev = threading.Event()
            workers.append(w)
            finished.append(ev)
            threading.Thread(target=_safe_run, args=(w, ev, any_finished), name=w.name, daemon=True).start()

    schedule = ramp_schedule(cfg.gates.ramp, concurrency) if ramp else [concurrency]
    step = 0
    start(schedule[0])
    next_step_at = time.monotonic() + cfg.gates.ramp_step_s
    # Wait on events, not Thread.join: a Ctrl-C inside join() can leave a still-running thread marked as
    # finished (CPython 3.11), and the process would exit with a batch in flight and its chunk unreleased.
    interrupted = False
    try:
        while not all(ev.is_set() for ev in finished):
            any_finished.wait(0.2)
            any_finished.clear()
            if step + 1 < len(schedule) and time.monotonic() >= next_step_at and not stop.is_set():
                next_step_at = time.monotonic() + cfg.gates.ramp_step_s
                try:
                    allowed = _ramp_allowed(cfg, job_id, options, len(workers), schedule[step + 1])
                except (psycopg.Error, DatabaseUnavailable) as exc:
                    if not is_transient(exc):
                        raise
                    allowed = False  # the database is away (a restart): hold the ramp until the next step
                if allowed:
                    step += 1
                    start(schedule[step])
    except KeyboardInterrupt:
        interrupted = True
        stop.set()
        for ev in finished:
            ev.wait()
    for w in workers:
        if w.error is not None and not isinstance(w.error, KeyboardInterrupt):
            raise w.error
    outcomes = {w.outcome for w in workers}
    if interrupted or stop.is_set():
        return "stopped"
    for status in ("paused", "failed", "stopped"):
        if status in outcomes:
            return status
    return "done" if "done" in outcomes else next(iter(outcomes))


def ramp_schedule(ramp: tuple[int, ...], concurrency: int) -> list[int]:
    """The concurrency steps of a production run: the configured ramp, capped at and ending with C."""
    steps = sorted({min(max(1, r), concurrency) for r in ramp} | {concurrency})
    return steps


def _ramp_allowed(cfg: Config, job_id: str, options: EngineOptions, current: int, target: int) -> bool:
    """Step the ramp up only while the gates hold: the job runs and the throttle sees a healthy database."""
    throttle = options.throttle
    healthy = throttle is None or getattr(throttle, "healthy", lambda: True)()
    with connect_cfg(cfg, autocommit=True) as conn:
        status, _ = jobs.job_status(conn, job_id)
        if status != "running" or not healthy:
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


def _safe_run(worker: Worker, finished: threading.Event, any_finished: threading.Event) -> None:
    try:
        worker.run()
    except BaseException:  # recorded on the worker; the main thread re-raises it
        return
    finally:
        finished.set()
        any_finished.set()


def engine_options(cfg: Config, batch_size: int, folder: Path, job_id: str) -> EngineOptions:
    """Engine settings from a Config."""
    return EngineOptions(
        etl=EtlSettings(
            catalog_policy=cfg.etl.catalog_policy,
            fast_path=cfg.etl.fast_path,
            quarantine_dir=folder / "quarantine",
            job_id=job_id,
        ),
        batch_size=batch_size,
        batch_max_bytes=cfg.etl.batch_max_bytes,
        claim_ttl_s=cfg.job.claim_ttl_s,
        heartbeat_s=cfg.job.heartbeat_s,
        retry=retry_kwargs(cfg),
        min_batch_size=cfg.throttle.min_batch_size,
        max_batch_size=cfg.throttle.max_batch_size,
        target_batch_s=cfg.throttle.target_batch_s if cfg.throttle.enabled else 0.0,
        throttle=HealthThrottle(ThrottleSettings.from_config(cfg)) if cfg.throttle.enabled else None,
    )


@dataclasses.dataclass
class StatusResult:
    """Jobs for `status`."""

    jobs: list[dict[str, Any]]

    def to_json(self) -> dict[str, Any]:
        """`status --json`."""
        return {"jobs": self.jobs}


def status(cfg: Config, *, job_id: str | None = None, limit: int = 50) -> StatusResult:
    """Job rows with progress %, rate, ETA, throttle state and live workers, newest first."""
    with connect_cfg(cfg, autocommit=True) as conn, translate_errors(cfg.database.dsn):
        rows = jobs.list_jobs(conn, job_id, limit, cfg.job.claim_ttl_s)
    if job_id is not None and not rows:
        raise UsageError(f"no job {job_id!r}")
    out = []
    for r in rows:
        pub = jobs.public_row(r)
        total = int(r.get("total_count") or 0)
        done = int(r["processed_count"]) + int(r["error_count"])
        span = float(r.get("recent_span_s") or 0)
        rate = float(r["recent_snapshots"]) / span if span > 0 else None
        remaining = max(total - done, 0)
        pub |= {
            "progress": round(done / total, 4) if total else (1.0 if r["status"] == "done" else 0.0),
            "rate_per_s": round(rate, 2) if rate else None,
            "eta_s": round(remaining / rate) if rate and r["status"] == "running" else None,
            "live_workers": int(r["live_workers"]),
            "chunks_done": int(r["chunks_done"]),
            "chunks_total": int(r["chunks_total"]),
        }
        out.append(pub)
    return StatusResult(out)


@dataclasses.dataclass
class PauseResult:
    """Jobs a pause or resume changed."""

    changed: list[dict[str, Any]]

    def to_json(self) -> dict[str, Any]:
        """`pause --json` / `resume --json --no-wait`."""
        return {"jobs": self.changed}


def pause(cfg: Config, *, job_id: str | None = None, all_jobs: bool = False, reason: str | None = None) -> PauseResult:
    """Pause one job (or all running ones): its workers stop at their next batch boundary."""
    if (job_id is None) == (not all_jobs):
        raise UsageError("give --job-id ID or --all")
    why = reason or "paused by operator"
    changed = []
    with connect_cfg(cfg, autocommit=True) as conn, translate_errors(cfg.database.dsn):
        targets = (
            [job_id]
            if job_id
            else [r["job_id"] for r in jobs.list_jobs(conn, None, 1000) if r["status"] in ("running", "pending")]
        )
        for jid in targets:
            row = jobs.set_status(conn, jid, "paused", why, ["running", "pending"])
            if row is None:
                current = jobs.get_job(conn, jid)
                if current is None:
                    raise UsageError(f"no job {jid!r}")
                if job_id:
                    raise GateFailed(f"job {jid} is {current['status']}, not running: nothing to pause")
                continue
            jobs.record_event(conn, jid, "paused", why, {})
            changed.append(jobs.public_row(row))
    return PauseResult(changed)


def resume(cfg: Config, *, job_id: str, reason: str | None = None, force: bool = False) -> PauseResult:
    """Set a paused (or failed) job running again (the caller may then `run(job_id=...)`).

    Refused, with the job left as it was, when its config fingerprint or tool version differs from the
    running config, unless `force` (with a reason)."""
    if force and not (reason and reason.strip()):
        raise UsageError("--force needs --reason TEXT (it is recorded in the audit trail)")
    with connect_cfg(cfg, autocommit=True) as conn, translate_errors(cfg.database.dsn):
        existing = jobs.get_job(conn, job_id)
        if existing is None:
            raise UsageError(f"no job {job_id!r}", hint="`starforge-backfill status` lists the jobs")
        _check_resume_allowed(existing, cfg, force=force, reason=reason)
        row = jobs.set_status(conn, job_id, "running", None, ["paused", "failed", "pending"])
        if row is None:
            current = jobs.get_job(conn, job_id)
            if current is None:
                raise UsageError(f"no job {job_id!r}")
            if current["status"] != "running":
                raise GateFailed(f"job {job_id} is {current['status']}: nothing to resume")
            row = current
        else:
            jobs.record_event(conn, job_id, "resumed", reason or "resumed by operator", {})
    return PauseResult([jobs.public_row(row)])
