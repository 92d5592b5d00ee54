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
    "--full",
    "mode",
    flag_value="full",
    default=None,
    help="Full mode: every row of every user in scope re-derived set-based in SQL and diffed "
    "[default for a --job-id that is done].",
)
@click.option(
    "--sample",
    "mode",
    flag_value="sample",
    help="Sample mode only: --sample-users users re-derived by the Python reference [default otherwise; "
    "the check to use during a run].",
)
@click.option(
    "--sample-users",
    type=click.IntRange(0, 100_000),
    metavar="N",
    help="Users re-derived for raw-vs-normalized parity [default: 20; 0 skips parity].",
)
@click.option(
    "--show",
    type=click.IntRange(0, 100_000),
    default=20,
    show_default=True,
    metavar="N",
    help="Full mode: findings printed (all of them go to verify.json).",
)
@click.pass_obj
@handled
def command(
    obj: Ctx,
    job_id: str | None,
    from_ts: str | None,
    to_ts: str | None,
    mode: str | None,
    sample_users: int | None,
    show: int,
) -> None:
    """Verify: processed counts, error types, raw-vs-normalized parity, uniqueness, summary coverage and
    placeholders, over one job (--job-id), a created_at range (--from/--to), or every snapshot.

    Two modes, and the output says which ran. Full ("full: every row of N users"): every entity row,
    summary and username re-derived from the winning snapshots with the ETL's own set-based SQL and
    diffed; each finding named (table, namecode, key, column, expected vs found). Plain verify --job-id
    of a finished job runs it. Sample ("sample: 20 users re-derived by the Python reference"): the
    independent reference on a few users; it also runs in full mode, where it catches a bug the ETL and
    full mode would share.

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
        mode=mode,
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
        click.echo(f"verify {what} ({res.mode_detail})")
        full = None
        for c in res.checks:
            click.echo(f"  {result_label('pass' if c.passed else 'FAIL', 5)} {c.name:<17} {c.detail}")
            if c.name == "parity" and not c.passed:
                for m in c.data.get("mismatches", [])[:10]:
                    click.echo(f"        {m['message']}")
            if c.name == "full" and not c.passed:
                full = c
            if c.note:
                click.echo(f"        note: {c.note}")
        if full is not None and show:
            from starforge_backfill.cli.console import render_findings

            render_findings(full.data["findings"][:show], full.data["finding_count"])
        click.echo(f"verify {verdict}; artifact {res.artifact}")

    verdict = "passed" if res.passed else f"FAILED ({', '.join(res.failed)})"
    obj.emit(res.to_json(), human, summary=f"verify {verdict}; artifact {res.artifact}")
    if res.exit_code:
        sys.exit(int(res.exit_code))
