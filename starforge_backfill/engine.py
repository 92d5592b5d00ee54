"""The job engine: workers claim chunks with SKIP LOCKED, apply batches, checkpoint in the same transaction."""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

import psycopg
from psycopg.types.json import Jsonb

from starforge_backfill import jobs, listeners, templates
from starforge_backfill.db import is_transient, retrying
from starforge_backfill.errors import DatabaseUnavailable
from starforge_backfill.etl.pipeline import BatchResult, ConnectionHolder, EtlSettings, process_batch
from starforge_backfill.jobs import ChunkOutcome, JobStatus, RunOutcome
from starforge_backfill.logs import detail_level
from starforge_backfill.outages import Outages

log = logging.getLogger("starforge_backfill.engine")
_BACK_OFF = "back-off"  # _gate: the throttle asked for a pause; look again before the batch
_STAND_DOWN = "stand-down"  # _gate: the guard lowered the workers allowed to claim work; release the chunk
_YIELDED = "yielded"  # _apply: the guard cut the batch short (it blocked production); retry it smaller


class LostChunk(Exception):
    """The chunk is no longer ours (another worker reclaimed it after our heartbeat went stale), or its
    checkpoint is already past this batch (a retried commit whose first attempt did commit): roll back."""


@dataclasses.dataclass(frozen=True)
class ThrottleDecision:
    """What a throttle asks for before the next batch."""

    sleep_s: float = 0.0
    pause_reason: str | None = None
    state: str | None = None  # what the job's throttle_state shows: the kind of hold and its latest readings
    key: str | None = None  # the kind of hold alone (None: healthy); an event is written when it changes


class Throttle(Protocol):
    """Looks at database health before each batch (see `throttle.py`)."""

    def before_batch(self, conn: psycopg.Connection[Any], job_id: str) -> ThrottleDecision: ...

    def after_batch(self, result: BatchResult, duration_s: float) -> None: ...


def _may_work(throttle: Throttle | None, worker: str) -> bool:
    """The production guard's effective concurrency (guard.py): True when `worker` may claim work now."""
    may = getattr(throttle, "may_work", None)
    return True if may is None else bool(may(worker))


class BatchSizer:
    """Adapt the batch size toward a target batch duration, with bounded growth and shrink."""

    def __init__(self, initial: int, minimum: int, maximum: int, target_s: float) -> None:
        self.minimum = max(1, min(minimum, initial))
        self.maximum = max(self.minimum, maximum, initial)
        self.size = max(self.minimum, min(initial, self.maximum))
        self.target_s = target_s

    def update(self, snapshots: int, duration_s: float) -> int:
        """Feed one batch's size and duration; returns the next size."""
        if snapshots <= 0 or duration_s <= 0 or self.target_s <= 0:
            return self.size
        ideal = snapshots * self.target_s / duration_s
        bounded = min(max(ideal, self.size * 0.5), self.size * 1.5)
        self.size = int(max(self.minimum, min(self.maximum, round(bounded))))
        return self.size


class Wake:
    """Where the idle workers of one process wait for a chunk to come free or the job to end: a worker that
    finds no chunk while others still hold some waits up to `poll_s` for one of them to finish or release
    its chunk (it then looks again at once), instead of always sleeping `poll_s` (at a job's end that sleep
    was up to half a second of the run's wall time). Workers on other hosts still poll."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._generation = 0

    def generation(self) -> int:
        """Taken before a worker looks for a chunk: `wait` returns at once if anything changed since."""
        with self._cond:
            return self._generation

    def notify(self) -> None:
        """A chunk was finished or released, or the job ended."""
        with self._cond:
            self._generation += 1
            self._cond.notify_all()

    def wait(self, seen: int, stop: threading.Event, timeout: float) -> None:
        """Until the generation moves past `seen`, `stop` is set (checked every 50 ms) or `timeout` passes."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._generation == seen and not stop.is_set():
                left = deadline - time.monotonic()
                if left <= 0:
                    return
                self._cond.wait(min(left, 0.05))


@dataclasses.dataclass
class EngineOptions:
    """Everything a worker needs, as plain values."""

    etl: EtlSettings
    batch_size: int
    batch_max_bytes: int
    claim_ttl_s: float = 120.0
    heartbeat_s: float = 10.0
    retry: dict[str, Any] = dataclasses.field(default_factory=dict)
    poll_s: float = 0.5
    min_batch_size: int = 10
    max_batch_size: int = 500
    target_batch_s: float = 0.0
    throttle: Throttle | None = None
    outages: Outages = dataclasses.field(default_factory=Outages)  # shared by the workers of one process
    wake: Wake = dataclasses.field(default_factory=Wake)  # likewise


OnBatch = Callable[[str, BatchResult, float], None]


@dataclasses.dataclass(frozen=True)
class _Batch:
    """The next batch of a chunk: its (id, checkpoint key) items and payload bytes."""

    items: list[tuple[Any, Any]]
    nbytes: int


class ChunkWorker:
    """One worker thread's loop: one connection, claims chunks of one job until the job is done, paused or stopped."""

    def __init__(
        self,
        connect: Callable[[], psycopg.Connection[Any]],
        job_id: str,
        name: str,
        options: EngineOptions,
        stop: threading.Event,
        on_batch: OnBatch | None = None,
    ) -> None:
        self.holder = ConnectionHolder(connect)
        self.job_id = job_id
        self.name = name
        self.options = options
        self.stop = stop
        self.on_batch = on_batch
        self.sizer = BatchSizer(
            options.batch_size,
            min(options.min_batch_size, options.batch_size),
            max(options.max_batch_size, options.batch_size),
            options.target_batch_s,
        )
        self.outcome: str = RunOutcome.PENDING
        self._last_beat = time.monotonic()  # when this worker last proved it is alive (claim, commit, beat)
        self.error: BaseException | None = None
        self._fixed_size: int | None = None  # a fixed batch size to restore once a yielded batch went through

    def _ctx(self) -> dict[str, Any]:
        return {"job_id": self.job_id, "worker": self.name}

    def run(self) -> str:
        """Work until the job is finished ('done'), 'paused', 'failed' or this worker is 'interrupted'."""
        log.debug("worker %s started on job %s", self.name, self.job_id, extra=self._ctx() | {"event": "worker_start"})
        listeners.announce("worker_start", self._ctx())
        try:
            self.outcome = self._loop_or_pause()
        except BaseException as exc:
            self.error = exc
            self.outcome = RunOutcome.ERROR
            raise
        finally:
            self.holder.close()
            ended = self._ctx() | {"outcome": str(self.outcome)}
            log.debug(
                "worker %s left job %s: %s", self.name, self.job_id, self.outcome, extra=ended | {"event": "worker_end"}
            )
            listeners.announce("worker_end", ended)
        return self.outcome

    def _loop_or_pause(self) -> str:
        """`_loop`; when transient database errors outlast the retries, pause the job instead of crashing."""
        try:
            return self._loop()
        except (psycopg.Error, DatabaseUnavailable) as exc:
            if not is_transient(exc):
                raise
            self._pause_after_retries(exc)
            return RunOutcome.PAUSED

    def _db(self, fn: Callable[..., Any], *args: Any) -> Any:
        """`fn(conn, *args)`: one bookkeeping statement (autocommit), retried like a batch on transient errors
        (a lost connection is reopened), so a database restart between batches is survived too."""

        def once() -> Any:
            return retrying(
                lambda: fn(self.holder.get(), *args), on_retry=self.options.outages.failed, **self.options.retry
            )

        try:
            out = once()
        except psycopg.errors.QueryCanceled as exc:
            if not self._took_yield(exc):
                raise
            out = once()  # the guard's cancel meant for a batch hit this statement: it blocked no one
        self._recovered()
        return out

    def _yield_pending(self, exc: BaseException) -> bool:
        """True when `exc` is the guard's cancel of this worker's batch (guard_watch.py), still unconsumed."""
        pending = getattr(self.options.throttle, "yield_pending", None)
        return isinstance(exc, psycopg.errors.QueryCanceled) and pending is not None and bool(pending(self.name))

    def _took_yield(self, exc: BaseException) -> bool:
        take = getattr(self.options.throttle, "take_yield", None)
        return isinstance(exc, psycopg.errors.QueryCanceled) and take is not None and bool(take(self.name))

    def _recovered(self) -> None:
        """After a statement went through: record an outage it rode through, once (see outages.py)."""
        if self.options.outages.open:
            self.options.outages.recovered(self.holder.get(), self.job_id)

    def _loop(self) -> str:
        row = self._db(jobs.get_job, self.job_id)
        if row is None:
            return RunOutcome.MISSING
        selector = jobs.Selector.from_job(row)
        while not self.stop.is_set():
            status, _ = self._db(jobs.job_status, self.job_id)
            if status != JobStatus.RUNNING:
                return status
            if not _may_work(self.options.throttle, self.name):  # the guard lowered the concurrency: wait
                self.stop.wait(max(self.options.poll_s, 0.5))
                continue
            seen = self.options.wake.generation()
            chunk = self._db(jobs.claim_chunk, self.job_id, self.name, self.options.claim_ttl_s)
            self._last_beat = time.monotonic()
            if chunk is None:
                if self._db(jobs.finish_job, self.job_id) is not None:
                    self.options.wake.notify()
                    return RunOutcome.DONE
                open_chunks, _held = self._db(jobs.chunk_progress, self.job_id, self.options.claim_ttl_s)
                if open_chunks == 0:
                    status, _ = self._db(jobs.job_status, self.job_id)
                    return status
                self.options.wake.wait(seen, self.stop, self.options.poll_s)
                continue
            try:
                ended = self._work_chunk(chunk, selector)
            except LostChunk:
                continue
            finally:
                self.options.wake.notify()  # the chunk is finished or released (or lost): idle workers look again
            if ended == _STAND_DOWN:
                continue
            if ended != ChunkOutcome.DONE:
                return ended
        return RunOutcome.INTERRUPTED

    def _work_chunk(self, chunk: dict[str, Any], selector: jobs.Selector) -> str:
        """Batches of one chunk until it is done (`ChunkOutcome.DONE`) or the job must stop (its outcome)."""
        after = (chunk["checkpoint_created_at"], chunk["checkpoint_id"])
        chunk_no = chunk["chunk_no"]
        while True:
            ended = self._gate(chunk_no)
            if ended == _BACK_OFF:
                continue
            if ended == _STAND_DOWN:
                self._db(jobs.release_chunk, self.job_id, chunk_no, self.name)
                return _STAND_DOWN
            if ended is not None:
                self._db(jobs.release_chunk, self.job_id, chunk_no, self.name)
                return ended
            batch = self._next_batch(chunk, after, selector)
            if batch is None:
                self._db(jobs.finish_chunk, self.job_id, chunk_no, self.name)
                return ChunkOutcome.DONE
            checkpoint = self._apply(chunk_no, batch)
            if checkpoint == _YIELDED:
                continue  # rolled back: the same checkpoint, a smaller batch
            if checkpoint in (RunOutcome.PAUSED, RunOutcome.FAILED):
                self._db(jobs.release_chunk, self.job_id, chunk_no, self.name)
                return checkpoint
            after = batch.items[-1][1]

    def _gate(self, chunk_no: int) -> str | None:
        """Before a batch: None to go on, `_BACK_OFF` after a throttle's sleep, else why the worker stops."""
        if self.stop.is_set():
            return RunOutcome.INTERRUPTED
        status, _ = self._db(jobs.job_status, self.job_id)
        if status != JobStatus.RUNNING:  # paused by an operator or a gate (maybe while we slept): no new batch
            return str(status)
        if self.options.throttle is None:
            return None
        decision = self._db(self.options.throttle.before_batch, self.job_id)
        if decision.pause_reason:
            log.warning(
                "job %s paused: %s", self.job_id, decision.pause_reason, extra=self._ctx() | {"event": "gate_pause"}
            )
            listeners.announce("gate_pause", self._ctx() | {"reason": decision.pause_reason})
            return RunOutcome.PAUSED
        if decision.sleep_s <= 0:
            return None if _may_work(self.options.throttle, self.name) else _STAND_DOWN
        backoff = self._ctx() | {"state": decision.state}
        log.debug(
            "worker %s backing off %.1fs: %s",
            self.name,
            decision.sleep_s,
            decision.state,
            extra=backoff | {"event": "throttle"},
        )
        listeners.announce("throttle", backoff)
        if time.monotonic() - self._last_beat >= self.options.heartbeat_s:  # backing off is not dying
            self._db(jobs.heartbeat, self.job_id, chunk_no, self.name)
            self._last_beat = time.monotonic()
        self.stop.wait(decision.sleep_s)
        return _BACK_OFF

    def _next_batch(self, chunk: dict[str, Any], after: Any, selector: jobs.Selector) -> _Batch | None:
        """The chunk's next snapshots after the checkpoint `after`, within the byte cap; None when none is left."""
        cap = getattr(self.options.throttle, "batch_cap", None)
        size = self.sizer.size if cap is None else int(cap(self.sizer.size))
        rows = self._db(jobs.next_batch, chunk, after, selector, size)
        if not rows:
            return None
        rows = _cap_bytes(rows, self.options.batch_max_bytes)
        return _Batch([(sid, (created, sid)) for sid, created, _size in rows], sum(size for *_, size in rows))

    def _apply(self, chunk_no: int, batch: _Batch) -> str:
        """Apply one batch with its checkpoint in the same transaction; the checkpoint's job status."""
        started = time.monotonic()
        checkpoint: list[str] = []

        def bookkeeping(c: psycopg.Connection[Any], res: BatchResult, key: Any) -> None:
            checkpoint[:] = [self._checkpoint(c, chunk_no, res, key, batch.nbytes, started)]

        note_pid = getattr(self.options.throttle, "note_pid", None)
        if note_pid is not None:  # the guard's blocking watcher may cancel this backend (and only ours)
            note_pid(self.name, self.holder.get().info.backend_pid)
        batch_done = getattr(self.options.throttle, "batch_done", None)  # the guard: no batch in flight here
        try:
            result = process_batch(
                self.holder,
                batch.items,
                self.options.etl,
                bookkeeping=bookkeeping,
                retry=self.options.retry,
                on_retry=self.options.outages.failed,
                stop_on=self._yield_pending,
            )
        except psycopg.Error as exc:
            if self._took_yield(exc):  # it blocked someone: retry it smaller
                if self.sizer.target_s <= 0 and self._fixed_size is None:
                    self._fixed_size = self.sizer.size  # a fixed size (--batch-size N) comes back after the retry
                self.sizer.size = max(1, self.sizer.size // 2)
                log.info("worker %s yielded: batch of %d rolled back", self.name, len(batch.items), extra=self._ctx())
                return _YIELDED
            if not is_transient(exc):
                raise
            self._pause_after_retries(exc)
            return RunOutcome.PAUSED
        finally:
            if batch_done is not None:
                batch_done(self.name)
        duration = time.monotonic() - started
        self._recovered()
        self._last_beat = time.monotonic()  # the checkpoint refreshed the heartbeat
        fields = listeners.batch_fields(self.job_id, self.name, len(batch.items), result, duration)
        log.log(
            detail_level(),
            "batch finished: job %s, worker %s, %d snapshot(s), %d failed, %d ms",
            self.job_id,
            self.name,
            result.applied + result.failed,
            result.failed,
            duration * 1000,
            extra=fields | {"event": "batch"},
        )
        listeners.announce("batch", fields)
        self.sizer.update(len(batch.items), duration)
        if self._fixed_size is not None:
            self.sizer.size, self._fixed_size = self._fixed_size, None
        if self.options.throttle is not None:
            self.options.throttle.after_batch(result, duration)
        if self.on_batch is not None:
            self.on_batch(self.name, result, duration)
        return checkpoint[0] if checkpoint else JobStatus.RUNNING

    def _pause_after_retries(self, exc: BaseException) -> None:
        """Transient errors outlasted the retries: pause the job with the reason instead of crashing."""
        reason = f"paused: database errors outlasted the retries ({type(exc).__name__}: {str(exc).strip()[:200]})"
        log.warning("job %s %s", self.job_id, reason, extra={"job_id": self.job_id, "worker": self.name})
        try:
            conn = self.holder.get()
            if jobs.set_status(conn, self.job_id, "paused", reason, ["running"]) is not None:
                jobs.record_event(conn, self.job_id, "paused", reason, {"sqlstate": getattr(exc, "sqlstate", None)})
        except (psycopg.Error, DatabaseUnavailable):
            pass  # the database is still away: the job stays 'running' and is resumable all the same

    def _checkpoint(
        self,
        conn: psycopg.Connection[Any],
        chunk_no: int,
        res: BatchResult,
        key: Any,
        nbytes: int,
        started: float,
    ) -> str:
        params = {
            "job_id": self.job_id,
            "chunk_no": chunk_no,
            "worker": self.name,
            "ck_ts": key[0],
            "ck_id": key[1],
            "processed": res.applied,
            "errors": res.failed,
            "placeholders": len(res.placeholders),
            "rows": Jsonb(dict(res.rows_written)),
            "errors_by_type": Jsonb(dict(res.errors_by_type)),
            "bytes": nbytes,
            "rows_total": sum(res.rows_written.values()),
            "duration_ms": int((time.monotonic() - started) * 1000),
        }
        row = templates.execute(conn, "jobs/checkpoint.sql", params).fetchone()
        if row is None:
            raise LostChunk(f"chunk {chunk_no} of job {self.job_id}: not ours, or already past {key}")
        if res.placeholders:
            jobs.record_event(
                conn,
                self.job_id,
                "placeholders",
                f"{len(res.placeholders)} placeholder catalog row(s) created",
                {"ids": [[k, i] for k, i in res.placeholders[:1000]]},
            )
        return str(row[0])


def _cap_bytes(rows: list[tuple[Any, Any, int]], max_bytes: int) -> list[tuple[Any, Any, int]]:
    """Keep a prefix of the batch under the byte cap (always at least one snapshot)."""
    total = 0
    for i, (_sid, _created, size) in enumerate(rows):
        total += size
        if total > max_bytes and i > 0:
            return rows[:i]
    return rows
