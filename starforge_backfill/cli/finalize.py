"""`finalize`: the post-backfill checklist of one job as one command (runbook/finalize.py)."""

from __future__ import annotations

import click

from starforge_backfill.cli.context import Ctx, handled


@click.command("finalize")
@click.option("--job-id", required=True, help="The job to finalize (it must be done).")
@click.option("--force", is_flag=True, help="Finalize even though verify --full fails (needs --reason).")
@click.option("--reason", help="Why --force; recorded in the job's audit trail.")
@click.option(
    "--sample-users",
    type=click.IntRange(0, 100_000),
    metavar="N",
    help="Users the verification also re-derives with the Python reference [default: 20; 0 skips].",
)
@click.pass_obj
@handled
def command(obj: Ctx, job_id: str, force: bool, reason: str | None, sample_users: int | None) -> None:
    """Finalize a done job: verify --full must pass over its range (or --force --reason, recorded), the
    placeholders left are reported, the job is marked finalized (finalized_at, finalized_by) and its
    artifact folder (audit log, verify, final report, quarantine list, sha256 manifest) is archived as
    <artifacts>/archives/<job_id>.tar.gz. A paused, failed, pending or still running job is refused (exit 1)."""
    from starforge_backfill.runbook.finalize import finalize

    res = finalize(
        obj.config(),
        job_id=job_id,
        force=force,
        reason=reason,
        sample_users=sample_users,
        notify=obj.say if obj.verbose > 0 else None,
    )

    def human() -> None:
        job = res.job
        if res.already:
            click.echo(f"job {job_id} was finalized at {job.get('finalized_at')} by {job.get('finalized_by')}")
        else:
            if res.marked_done:
                click.echo(f"job {job_id}: every chunk was done; marked done")
            verdict = "passed" if res.verify_passed else f"FAILED ({', '.join(res.verify_failed)}), overridden"
            click.echo(f"verify --full {verdict}; {res.verify_artifact}")
            if res.forced:
                click.echo(f"  forced: {res.reason}")
            count = res.placeholders.get("count", 0)
            kinds = ", ".join(f"{k} {v}" for k, v in res.placeholders.get("by_kind", {}).items() if v)
            click.echo(f"placeholders left: {count}" + (f" ({kinds}); replace them: catalog import" if count else ""))
            click.echo(f"job {job_id} finalized at {job.get('finalized_at')} by {job.get('finalized_by')}")
        click.echo(f"archive {res.archive} (sha256 {res.archive_sha256})")

    obj.emit(res.to_json(), human)
