"""The measurements: a quiet window, a window during a run, an idle run. Each one starts from a settled
server (VACUUM ANALYZE, CHECKPOINT, a kernel sync) and, for a run, a fresh copy of the corpus."""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from bench.impact import backfill, pgbench
from bench.server import Server


@dataclass(frozen=True)
class Plan:
    """Window length and the lead-in/tail around it (seconds)."""

    window_s: float = 10.0
    lead_s: float = 2.0  # pgbench runs this long before a quiet window (connections, caches)
    tail_s: float = 1.0  # and this long after the window (its logs' last buffer is lost on SIGINT)
    settle_s: float = 1.0  # pause after the sync
    first_batch_max_s: float = 8.0  # a run window opens at the first committed batch, or this long after start
    warmup_s: float = 0.0  # ... plus this long: the guard's steady state rather than its first reaction


def copy_db(srv: Server, template: str, name: str) -> str:
    """CREATE DATABASE name TEMPLATE template STRATEGY file_copy (PostgreSQL 15's default, wal_log, would
    write the whole corpus to WAL first); created databases are dropped by the bench."""
    with srv.admin() as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        try:
            conn.execute(
                sql.SQL("CREATE DATABASE {} TEMPLATE {} STRATEGY file_copy").format(
                    sql.Identifier(name), sql.Identifier(template)
                )
            )
        except psycopg.errors.SyntaxError:  # before PostgreSQL 15: file copy is the only strategy
            conn.execute(
                sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(sql.Identifier(name), sql.Identifier(template))
            )
    srv.created.append(name)
    return srv.db_dsn(name)


def settle(srv: Server, dsns: list[str], pause_s: float) -> dict[str, float]:
    """VACUUM ANALYZE each database, CHECKPOINT, sync(2), a short pause; returns the seconds of each step."""
    took: dict[str, float] = {}
    t = time.perf_counter()
    for dsn in dsns:
        with psycopg.connect(dsn, autocommit=True, application_name=backfill.APP) as conn:
            conn.execute("VACUUM ANALYZE")
    took["vacuum_s"], t = round(time.perf_counter() - t, 2), time.perf_counter()
    srv.checkpoint()
    took["checkpoint_s"], t = round(time.perf_counter() - t, 2), time.perf_counter()
    os.sync()
    took["sync_s"] = round(time.perf_counter() - t, 2)
    time.sleep(pause_s)
    return took


def _window(bench: pgbench.Running, start: float, end: float) -> dict[str, Any]:
    return {"seconds": round(end - start, 2), **pgbench.stats(bench.latencies(start, end), end - start)}


def quiet_window(
    srv: Server, pgbench_dsn: str, load: pgbench.Load, plan: Plan, logdir: Path, name: str
) -> dict[str, Any]:
    """Settle, then pgbench alone: one window of plan.window_s after plan.lead_s."""
    settled = settle(srv, [pgbench_dsn], plan.settle_s)
    bench = pgbench.start(pgbench_dsn, load, logdir, name)
    try:
        start = bench.started + plan.lead_s
        time.sleep(max(0.0, start + plan.window_s + plan.tail_s - time.time()))
    finally:
        code = bench.stop()
    return {"settle": settled, "pgbench_exit": code, **_window(bench, start, start + plan.window_s)}


def run_window(
    srv: Server,
    pgbench_dsn: str,
    template: str,
    setting: backfill.Setting,
    load: pgbench.Load | None,
    plan: Plan,
    workdir: Path,
    name: str,
) -> dict[str, Any]:
    """A fresh copy, settle, pgbench (if `load`) for plan.lead_s, then `run`: the window opens at the run's
    first committed batch (the guard's baseline is taken while the read load is already on, as it would be
    in production; at most plan.first_batch_max_s after the run started) and lasts plan.window_s, or until the
    run ends. Backfill throughput: the snapshots of the batches inside the window / its length (`Run`)."""
    dsn = copy_db(srv, template, name)
    result: dict[str, Any] = {"setting": setting.name}
    bench = None
    run = None
    try:
        result["settle"] = settle(srv, [pgbench_dsn], plan.settle_s)
        if load is not None:
            bench = pgbench.start(pgbench_dsn, load, workdir, name)
            time.sleep(plan.lead_s)
        run = backfill.start(dsn, setting, workdir / name)
        start = run.wait_first(plan.first_batch_max_s)
        if not run.batches and run.exited():
            result["error"] = f"`run` exited {run.proc.poll()} before its first batch: {run.stderr_tail()}"
            return result
        if not run.batches:
            result["note"] = f"no batch within {plan.first_batch_max_s:g} s of the start: window opened anyway"
        result["startup_s"] = round(start - run.started, 2)
        if plan.warmup_s > 0:
            run.sleep_until(start + plan.warmup_s)
            start += plan.warmup_s
            result["warmup_s"] = plan.warmup_s
        end = run.sleep_until(start + plan.window_s)
        if end < start + plan.window_s - 0.05:
            result["note"] = f"the run ended {start + plan.window_s - end:.1f} s before the window's end"
        if bench is not None:
            time.sleep(plan.tail_s)
            bench.stop()
            result.update(_window(bench, start, end))
        result["run_exit"] = run.stop()
        result["snapshots_per_s"] = run.rate(start, end)
        result["events"] = backfill.events(dsn)
        result["guard"] = backfill.guard(dsn)
        return result
    finally:
        if run is not None:
            run.stop()
        if bench is not None:
            bench.stop()
        with contextlib.suppress(psycopg.Error):
            srv.drop(name)


def idle_run(
    srv: Server,
    template: str,
    setting: backfill.Setting,
    plan: Plan,
    workdir: Path,
    name: str,
    since: str | None = None,
) -> dict[str, Any]:
    """A whole run on an idle server (no pgbench) over a fresh copy (the snapshots from `since`, the newest
    ones, which a job takes first: the same ones a loaded window sees): snapshots / wall seconds of the process,
    and the rate over plan.window_s from its first batch (the loaded windows' measure; batches polled every
    0.5 s here, to keep the idle server idle)."""
    dsn = copy_db(srv, template, name)
    try:
        result: dict[str, Any] = {"setting": setting.name, "settle": settle(srv, [], plan.settle_s)}
        run = backfill.start(dsn, setting, workdir / name, since=since)
        while not run.exited():
            run.poll()
            time.sleep(0.5)
        wall = time.time() - run.started
        code = run.stop()
        total = backfill.done(dsn)
        result.update(run_exit=code, seconds=round(wall, 2), snapshots=total)
        if code != 0:
            result["error"] = f"`run` exited {code}: {run.stderr_tail()}"
            return result
        result["snapshots_per_s"] = round(total / wall, 1)
        if run.batches:  # from its first batch, over a window (or to its last batch, if sooner)
            begin = min(b[0] for b in run.batches)
            result["window_snapshots_per_s"] = run.rate(begin, min(begin + plan.window_s, run.last_end() or begin))
        result["events"] = backfill.events(dsn)
        result["guard"] = backfill.guard(dsn)
        return result
    finally:
        with contextlib.suppress(psycopg.Error):
            srv.drop(name)
