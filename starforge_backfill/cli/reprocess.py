"""`reprocess`: re-run chosen snapshots through the engine of `run`, with its progress, Ctrl-C and exit codes."""

from __future__ import annotations

import logging
import sys
from typing import IO, Any

import click

from starforge_backfill.cli.context import (
    BATCH_SIZE_HELP,
    METRICS_PORT_HELP,
    BatchSize,
    Ctx,
    graceful_stop,
    handled,
    progress_printer,
    reason_needs_force,
)

log = logging.getLogger("starforge_backfill.cli")


@click.command("reprocess")
@click.option(
    "--snapshot-ids",
    "ids_file",
    type=click.File("r"),
    help="A file of snapshot ids, one uuid a line ('-': stdin; blank lines and # comments ignored).",
)
@click.option(
    "--error-type",
    "error_types",
    multiple=True,
    help="Unprocessed snapshots whose etl_errors include this type (repeatable), e.g. FK_VIOLATION.",
)
@click.option("--namecodes", "namecodes_file", type=click.File("r"), help="A file of namecodes, one a line.")
@click.option("--failed-of", help="The snapshots that failed in this job's scope and are still unprocessed.")
@click.option("--from", "from_ts", help="Only snapshots created at or after this (ISO-8601).")
@click.option("--to", "to_ts", help="Only snapshots created before this (ISO-8601).")
@click.option("--job-id", help="Resume this reprocess job (on the snapshots it was created with).")
@click.option("--batch-size", type=BatchSize(), help=BATCH_SIZE_HELP)
@click.option("--concurrency", type=click.IntRange(1, 256), help="Workers, one connection each.")
@click.option("--force", is_flag=True, help="Skip the preflight/canary gates (needs --reason).")
@click.option("--reason", help="Why --force; recorded in the audit trail.")
@click.option("--metrics-port", help=METRICS_PORT_HELP)
@click.pass_obj
@handled
def command(
    obj: Ctx,
    ids_file: IO[str] | None,
    namecodes_file: IO[str] | None,
    error_types: tuple[str, ...],
    metrics_port: str | None,
    **kw: Any,
) -> None:
    """Re-run chosen snapshots (ids, namecodes, error types, a job's failures) as a gated, resumable job.

    The sources add up (their union), narrowed by --from/--to; the choice is fixed when the job is created, so a
    resumed job (--job-id) works on the same snapshots. Snapshots whose rows are already right write nothing."""
    from starforge_backfill.errors import UsageError
    from starforge_backfill.runbook.reprocess import Selection, parse_namecodes, parse_snapshot_ids, reprocess
    from starforge_backfill.runbook.run import RunOptions

    reason_needs_force(kw["force"], kw["reason"])
    options = RunOptions(
        batch_size=kw["batch_size"], concurrency=kw["concurrency"], force=kw["force"], reason=kw["reason"]
    )
    options.validate()
    given = ids_file is not None or namecodes_file is not None or error_types or kw["failed_of"]
    selection = None
    if kw["job_id"] is not None:
        if given or kw["from_ts"] is not None or kw["to_ts"] is not None:
            raise UsageError("--job-id resumes a reprocess job on its own snapshots: give no selection with it")
    else:
        ids = parse_snapshot_ids(ids_file, _name(ids_file)) if ids_file is not None else []
        codes = parse_namecodes(namecodes_file, _name(namecodes_file)) if namecodes_file is not None else []
        selection = Selection.parse(
            ids=ids,
            ids_source=_name(ids_file) if ids_file is not None else "--snapshot-ids",
            namecodes=codes,
            error_types=error_types,
            failed_of=kw["failed_of"],
            from_ts=kw["from_ts"],
            to_ts=kw["to_ts"],
        )
    cfg = obj.config()
    metrics = obj.serve_metrics(metrics_port)
    update, close = progress_printer(obj, metrics)
    try:
        with graceful_stop(obj) as stop:
            res = reprocess(
                cfg, selection, job_id=kw["job_id"], options=options, progress=update, notify=obj.say, stop=stop.event
            )
    finally:
        close()
    run = res.run
    if run is not None and metrics is not None:
        metrics.job_row(run.job)
    obj.emit(res.to_json(), lambda: _render(res))
    if run is not None and run.budget is not None and run.budget.failed:
        if run.over_budget:
            log.error(run.budget.line())  # the last line: a pipeline step must not read this as success
        else:
            obj.say(run.budget.line())
    sys.exit(int(res.exit_code))


def _name(f: IO[str]) -> str:
    name = str(getattr(f, "name", "-"))
    return "<stdin>" if name in ("-", "<stdin>") else name


def _render(res: Any) -> None:
    from starforge_backfill.cli.run import render_run

    if res.run is None:
        click.echo("nothing to reprocess: no snapshot matches the selection")
        return
    click.echo(f"reprocess: {res.selected} snapshot(s) chosen")
    render_run(res.run)
