"""`verify`: the runbook's validation queries as named checks; exit 1 when one fails."""

from __future__ import annotations

import sys

import click

from starforge_backfill.cli.context import Ctx, handled


@click.command("verify")
@click.option("--job-id", help="Verify this job's snapshots (its range and slice).")
@click.option("--from", "from_ts", help="Or a created_at range: start (inclusive, ISO-8601).")
@click.option("--to", "to_ts", help="End of the range (exclusive, ISO-8601).")
@click.option(
    "--sample-users",
    type=click.IntRange(0, 100_000),
    metavar="N",
    help="Users re-derived for raw-vs-normalized parity [default: 20; 0 skips parity].",
)
@click.pass_obj
@handled
def command(obj: Ctx, job_id: str | None, from_ts: str | None, to_ts: str | None, sample_users: int | None) -> None:
    """Verify: processed counts, error types, raw-vs-normalized parity, uniqueness, summary coverage and
    placeholders, over one job (--job-id), a created_at range (--from/--to), or every snapshot.

    Writes verify.json (in the job's folder with --job-id) and records the `verify` gate. Exits 1 when a
    check fails.
    """
    from starforge_backfill.runbook.verify import verify

    res = verify(
        obj.config(),
        job_id=job_id,
        from_ts=from_ts,
        to_ts=to_ts,
        sample_users=sample_users,
        notify=obj.say if obj.verbose > 0 else None,
    )

    def human() -> None:
        from starforge_backfill.cli.console import result_label

        sc = res.scope
        if sc.get("job_id"):
            what = f"job {sc['job_id']}"
        elif sc.get("from_ts"):
            what = f"[{sc['from_ts']}, {sc['to_ts']})"
        else:
            what = "every snapshot"
        click.echo(f"verify {what}")
        for c in res.checks:
            click.echo(f"  {result_label('pass' if c.passed else 'FAIL', 5)} {c.name:<17} {c.detail}")
            if c.name == "parity" and not c.passed:
                for m in c.data.get("mismatches", [])[:10]:
                    click.echo(f"        {m['message']}")
            if c.note:
                click.echo(f"        note: {c.note}")
        click.echo(f"verify {verdict}; artifact {res.artifact}")

    verdict = "passed" if res.passed else f"FAILED ({', '.join(res.failed)})"
    obj.emit(res.to_json(), human, summary=f"verify {verdict}; artifact {res.artifact}")
    if res.exit_code:
        sys.exit(int(res.exit_code))
