"""`report`: a job's report (Markdown, HTML, JSON) and sha256 manifest; `--verify-manifest` re-checks it."""

from __future__ import annotations

import sys

import click

from starforge_backfill.cli.context import Ctx, handled


@click.command("report")
@click.option("--job-id", required=True, help="The job to report on.")
@click.option(
    "--format",
    "formats",
    default="md,html,json",
    show_default=True,
    metavar="LIST",
    help="Comma-separated: md, html, json.",
)
@click.option(
    "--verify-manifest",
    is_flag=True,
    help="Only re-hash the job folder against its manifest.json; exit 1 on any difference.",
)
@click.pass_obj
@handled
def command(obj: Ctx, job_id: str, formats: str, verify_manifest: bool) -> None:
    """Report: the job row, backup id and approvals, steps run (preflight, dry-run, canary, verify), gate and
    throttle events, errors by type, quarantined snapshots, placeholders and a throughput chart, written as
    report.md, report.html (self-contained) and report.json into the job's artifact folder, followed by
    manifest.json (sha256 of every file of the folder). `--verify-manifest` detects tampering (exit 1).
    """
    from starforge_backfill.runbook import report as rep

    if verify_manifest:
        chk = rep.verify_manifest(obj.config(), job_id=job_id)

        def human_check() -> None:
            for label, files in (("changed", chk.changed), ("missing", chk.missing), ("not in manifest", chk.added)):
                for f in files:
                    click.echo(f"  {label}: {f}")
            verdict = "matches" if chk.ok else "DOES NOT MATCH"
            click.echo(f"manifest {chk.manifest}: {chk.checked} file(s); the folder {verdict} its manifest")

        obj.emit(chk.to_json(), human_check)
        if chk.exit_code:
            sys.exit(int(chk.exit_code))
        return

    res = rep.report(obj.config(), job_id=job_id, formats=rep.parse_formats(formats))

    def human() -> None:
        click.echo(f"report of job {job_id} ({res.data['job'].get('status')})")
        for kind, path in res.files.items():
            click.echo(f"  {kind:<4} {path}")
        click.echo(f"  manifest {res.manifest}")

    obj.emit(res.to_json(), human)
