"""`run` and `resume`: the production rollout in the foreground, with a progress bar, Ctrl-C and metrics."""

from __future__ import annotations

import logging
import sys
from typing import Any

import click

from starforge_backfill.cli.context import (
    BATCH_SIZE_HELP,
    METRICS_PORT_HELP,
    BatchSize,
    Ctx,
    graceful_stop,
    handled,
    progress_printer,
)

log = logging.getLogger("starforge_backfill.cli")


@click.command("run")
@click.option("--from", "from_ts", help="Start of the created_at range (inclusive, ISO-8601).")
@click.option("--to", "to_ts", help="End of the created_at range (exclusive, ISO-8601).")
@click.option("--batch-size", type=BatchSize(), help=BATCH_SIZE_HELP)
@click.option("--concurrency", type=click.IntRange(1, 256), help="Workers, one connection each.")
@click.option("--job-id", help="Resume this job.")
@click.option("--reprocess", is_flag=True, help="Also take snapshots already processed.")
@click.option("--retry-failed", is_flag=True, help="Also take snapshots that failed before.")
@click.option("--force", is_flag=True, help="Skip the preflight/canary gates (needs --reason).")
@click.option("--reason", help="Why --force; recorded in the audit trail.")
@click.option("--metrics-port", help=METRICS_PORT_HELP)
@click.option("--print-sql", is_flag=True, help="Print the SQL statements a run executes and exit; no database.")
@click.pass_obj
@handled
def run_command(obj: Ctx, metrics_port: str | None, print_sql: bool, **kw: Any) -> None:
    """Backfill a created_at range: resumable, checkpointed, newest observation wins."""
    if print_sql:
        _print_run_sql(obj, forced=bool(kw.get("force")))
        return
    from starforge_backfill.jobs import Selector
    from starforge_backfill.runbook.run import RunOptions

    options = RunOptions(
        batch_size=kw["batch_size"], concurrency=kw["concurrency"], force=kw["force"], reason=kw["reason"]
    )
    options.validate()
    selector = None
    if kw["from_ts"] is not None or kw["to_ts"] is not None or kw["job_id"] is None:
        if kw["from_ts"] is None or kw["to_ts"] is None:
            from starforge_backfill.errors import UsageError

            raise UsageError("give --from and --to (a created_at range), or --job-id to resume a job")
        selector = Selector.parse(
            kw["from_ts"], kw["to_ts"], reprocess=kw["reprocess"], retry_failed=kw["retry_failed"]
        )
    _run_in_foreground(obj, metrics_port, selector=selector, job_id=kw["job_id"], options=options)


@click.command("resume")
@click.option("--job-id", required=True, help="The job to resume.")
@click.option("--no-wait", is_flag=True, help="Only set it running; do not process it here.")
@click.option("--concurrency", type=click.IntRange(1, 256), help="Workers for the foreground run.")
@click.option(
    "--batch-size",
    type=BatchSize(),
    help="Snapshots per batch for the foreground run: N, or (the default) the job's own sizing.",
)
@click.option("--reason", help="Recorded on the job.")
@click.option("--force", is_flag=True, help="Resume even if the config or tool version changed (needs --reason).")
@click.option("--metrics-port", help=METRICS_PORT_HELP)
@click.pass_obj
@handled
def resume_command(
    obj: Ctx,
    job_id: str,
    no_wait: bool,
    concurrency: int | None,
    batch_size: int | None,
    reason: str | None,
    force: bool,
    metrics_port: str | None,
) -> None:
    """Set a paused job running again and, unless --no-wait, carry on processing it like `run`."""
    from starforge_backfill import jobs
    from starforge_backfill.runbook.control import PauseResult
    from starforge_backfill.runbook.run import RunOptions, resume

    row = resume(obj.config(), job_id=job_id, reason=reason, force=force)
    if no_wait:
        obj.emit(PauseResult([jobs.public_row(row)]).to_json(), lambda: click.echo(f"resumed {job_id}"))
        return
    options = RunOptions(concurrency=concurrency, batch_size=batch_size, force=force, reason=reason)
    _run_in_foreground(obj, metrics_port, selector=None, job_id=job_id, options=options)


def _run_in_foreground(obj: Ctx, metrics_port: str | None, **run_kw: Any) -> None:
    from starforge_backfill.runbook.run import run

    cfg = obj.config()
    metrics = obj.serve_metrics(metrics_port)
    update, close = progress_printer(obj, metrics)
    try:
        with graceful_stop(obj) as stop:
            res = run(cfg, progress=update, notify=obj.say, stop=stop.event, reload=stop.reload, **run_kw)
    finally:
        close()
    if metrics is not None:
        metrics.job_row(res.job)
    obj.emit(res.to_json(), lambda: render_run(res))
    if res.budget is not None and res.budget.failed:
        if res.over_budget:
            log.error(res.budget.line())  # the last line: a pipeline step must not read this as success
        else:
            obj.say(res.budget.line())
    sys.exit(int(res.exit_code))


def _print_run_sql(obj: Ctx, *, forced: bool) -> None:
    from starforge_backfill import sqlview

    statements = sqlview.run_statements(obj.config(), forced=forced)

    def human() -> None:
        for st in statements:
            click.echo(f"-- {st.name}: {st.when}")
            click.echo(st.sql.rstrip() + "\n")

    obj.emit({"statements": [st.to_json() for st in statements]}, human)


def render_run(res: Any) -> None:
    s = res.summary()
    job = res.job
    click.echo(f"job {job['job_id']}: {job['status']} ({s['outcome']})")
    click.echo(
        f"  processed {s['processed']}, failed {s['failed']} {s['failed_by_type'] or ''}, "
        f"placeholders {s['placeholders']}, {s['elapsed_s']} s, {s['rate_per_s']} snapshots/s"
    )
    rows = ", ".join(f"{k} {v}" for k, v in sorted(s["rows_written"].items())) or "none"
    click.echo(f"  rows written: {rows}")
    click.echo(f"  job totals: processed {job['processed_count']}, failed {job['error_count']}")
    if res.artifact:
        click.echo(f"  artifact: {res.artifact}")
