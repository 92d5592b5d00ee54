"""`status` and `pause`: read and steer jobs from any host (the truth is in PostgreSQL)."""

from __future__ import annotations

import click

from starforge_backfill.cli.context import Ctx, handled


@click.command("status")
@click.option("--job-id", help="Only this job.")
@click.option("--limit", type=click.IntRange(1, 1000), default=20, show_default=True)
@click.pass_obj
@handled
def status_command(obj: Ctx, job_id: str | None, limit: int) -> None:
    """Jobs with progress, rate, ETA, errors, throttle state and live workers."""
    from starforge_backfill.runbook.control import status

    res = status(obj.config(), job_id=job_id, limit=limit)

    def human() -> None:
        from starforge_backfill.cli.console import render_status

        render_status(res.jobs)

    obj.emit(res.to_json(), human)


@click.command("pause")
@click.option("--job-id", help="The job to pause.")
@click.option("--all", "all_jobs", is_flag=True, help="Pause every running job.")
@click.option("--reason", help="Recorded on the job.")
@click.pass_obj
@handled
def pause_command(obj: Ctx, job_id: str | None, all_jobs: bool, reason: str | None) -> None:
    """Pause a job: its workers stop at their next batch boundary (their `run` exits 4)."""
    from starforge_backfill.runbook.control import pause

    res = pause(obj.config(), job_id=job_id, all_jobs=all_jobs, reason=reason)

    def human() -> None:
        for j in res.changed:
            click.echo(f"paused {j['job_id']}")
        if not res.changed:
            click.echo("no running job")

    obj.emit(res.to_json(), human)
