"""`quarantine push`: upload a job's local-only quarantine copies to `quarantine.s3_url`."""

from __future__ import annotations

import sys

import click

from starforge_backfill.cli.context import Ctx, handled


@click.group("quarantine")
def group() -> None:
    """Redacted copies of failed snapshots: their S3 copies (quarantine.s3_url)."""


@group.command("push")
@click.option("--job-id", required=True, help="The job whose copies to upload (`realtime`: the queue worker's).")
@click.pass_obj
@handled
def push_cmd(obj: Ctx, job_id: str) -> None:
    """Upload the job's quarantine copies that are still local only (S3 unreachable during the run, or the run
    ended first) to quarantine.s3_url, and record their URLs for the report. Exit 1 when some stay local."""
    from starforge_backfill.runbook.quarantine import push

    res = push(obj.config(), job_id=job_id)

    def human() -> None:
        t = res.tally
        uploaded, local = len(t.uploaded), len(t.local_only)
        click.echo(f"job {job_id}: {uploaded} copy(ies) uploaded to {res.s3_url}, {local} local only")
        for sid, error in sorted(t.local_only.items()):
            click.echo(f"  local only: {sid}: {error}")

    obj.emit(res.to_json(), human)
    if res.exit_code:
        sys.exit(int(res.exit_code))
