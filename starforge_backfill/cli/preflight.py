"""`preflight`: run the runbook's preflight checklist for a range; exit 1 when an item fails."""

from __future__ import annotations

import sys
from typing import Any

import click

from starforge_backfill.cli.context import Ctx, handled


@click.command("preflight")
@click.option("--from", "from_ts", required=True, help="Start of the created_at range (inclusive, ISO-8601).")
@click.option("--to", "to_ts", required=True, help="End of the created_at range (exclusive, ISO-8601).")
@click.option("--backup-id", help="Id of a backup taken before the backfill (recorded as attested).")
@click.option(
    "--take-backup",
    type=click.Path(dir_okay=False),
    help="Take one now: pg_dump -Fc of the database to PATH (size and sha256 recorded).",
)
@click.option(
    "--approved-by",
    "approved_by",
    multiple=True,
    metavar="ROLE:NAME",
    help="An approval, e.g. engineering:alice; repeat for each role in gates.required_approvals.",
)
@click.option(
    "--attest",
    multiple=True,
    type=click.Choice(["communication"]),
    help="Attest an item the tool cannot check (communication: support and stakeholders informed).",
)
@click.option("--concurrency", type=click.IntRange(1, 256), help="Planned workers (default job.concurrency).")
@click.option(
    "--catalog-scan",
    type=click.IntRange(1, 1_000_000),
    default=1000,
    show_default=True,
    help="Snapshots scanned for catalog coverage.",
)
@click.pass_obj
@handled
def command(obj: Ctx, **kw: Any) -> None:
    """Preflight checklist: backup, approvals, dry-run, streaming, payload shapes, catalogs, capacity, monitoring,
    communication, schema. Records the `preflight` gate that `run` requires; exits 1 when an item fails, 3 when the
    database lacks the schema."""
    from starforge_backfill.errors import ExitCode, SchemaMissing
    from starforge_backfill.runbook.preflight import preflight

    res = preflight(
        obj.config(),
        from_ts=kw["from_ts"],
        to_ts=kw["to_ts"],
        backup_id=kw["backup_id"],
        take_backup=kw["take_backup"],
        approved_by=kw["approved_by"],
        attest=kw["attest"],
        concurrency=kw["concurrency"],
        catalog_scan_limit=kw["catalog_scan"],
        notify=obj.say if obj.verbose > 0 else None,
    )

    def human() -> None:
        from starforge_backfill.cli.console import result_label

        click.echo(f"preflight [{res.from_ts.isoformat()}, {res.to_ts.isoformat()}) config {res.fingerprint[:12]}")
        for c in res.checks:
            label = c.result.upper() if c.result == "fail" else c.result
            click.echo(f"  {result_label(str(label), 9)} {c.name:<17} {c.detail}")
        verdict = "passed" if res.passed else f"FAILED ({', '.join(res.failed)})"
        click.echo(f"preflight {verdict}; artifact {res.artifact}")

    obj.emit(res.to_json(), human)
    if res.exit_code == ExitCode.DATABASE:  # the checklist above, then the one error line of exit 3
        raise SchemaMissing(f"the database lacks the expected schema: {res.check('schema').detail}")
    sys.exit(int(res.exit_code))
