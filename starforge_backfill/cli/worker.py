"""`worker`: the long-running queue worker (queue_jobs rows and chunks of running jobs)."""

from __future__ import annotations

import sys

import click

from starforge_backfill.cli.context import METRICS_PORT_HELP, Ctx, graceful_stop, handled
from starforge_backfill.errors import ExitCode


@click.command("worker")
@click.option("--once", is_flag=True, help="Drain the queue and the open jobs, then exit.")
@click.option("--poll", "poll_s", type=float, default=1.0, show_default=True, help="Seconds between idle polls.")
@click.option("--metrics-port", help=METRICS_PORT_HELP)
@click.pass_obj
@handled
def command(obj: Ctx, once: bool, poll_s: float, metrics_port: str | None) -> None:
    """Long-running worker: queue_jobs (backfill_range, process_snapshot) and chunks of running jobs.

    SIGTERM finishes the current batch and exits 0; Ctrl-C does the same and exits 130.
    """
    import signal

    from starforge_backfill.queue_worker import run_worker

    obj.config()
    obj.serve_metrics(metrics_port)  # batches reach the metrics through the engine's announcements
    try:
        with graceful_stop(obj) as stop:
            stats = run_worker(obj.config(), once=once, poll_s=poll_s, stop=stop.event, notify=obj.say)
    except KeyboardInterrupt:
        sys.exit(int(ExitCode.INTERRUPTED))
    obj.emit(
        stats.to_json(),
        lambda: click.echo(
            f"worker done: {stats.queue_done} queue job(s), {stats.snapshots.applied} snapshot(s) processed, "
            f"{stats.snapshots.failed} failed"
        ),
    )
    if stop.signum == signal.SIGINT:
        sys.exit(int(ExitCode.INTERRUPTED))
