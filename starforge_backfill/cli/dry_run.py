"""`dry-run`: process a sample, range or ids through the ETL without keeping the writes; exit 1 on DB_ERROR."""

from __future__ import annotations

import sys
from typing import Any

import click

from starforge_backfill.cli.context import Ctx, handled


@click.command("dry-run")
@click.option("--sample", "sample_file", type=click.Path(dir_okay=False), help="A sample.json from `sample`.")
@click.option(
    "--from", "from_ts", help="Start of a created_at range (inclusive, ISO-8601): the snapshots `run` would take."
)
@click.option("--to", "to_ts", help="End of a created_at range (exclusive, ISO-8601).")
@click.option("--ids", metavar="ID,...", help="Comma-separated snapshot ids.")
@click.option(
    "--limit",
    type=click.IntRange(1, 1_000_000),
    default=1000,
    show_default=True,
    help="With --from/--to: at most this many snapshots (oldest first).",
)
@click.option("--staging-dsn", help="Run against this staging database and commit there.")
@click.pass_obj
@handled
def command(obj: Ctx, **kw: Any) -> None:
    """Dry-run: each snapshot applied alone in a rolled-back transaction (or committed in --staging-dsn).

    Without a selection it uses the sample.json that `sample` wrote for this config. Records the `dry-run`
    gate (t_avg, p95, peak RSS, errors); exits 1 when a DB_ERROR occurred.
    """
    from starforge_backfill.runbook.dry_run import dry_run

    ids = [i for i in (kw["ids"] or "").split(",") if i.strip()] or None
    res = dry_run(
        obj.config(),
        sample=kw["sample_file"],
        from_ts=kw["from_ts"],
        to_ts=kw["to_ts"],
        ids=ids,
        staging_dsn=kw["staging_dsn"],
        limit=kw["limit"],
        # the human result opens with the same header: on stderr only when stdout carries the JSON
        notify=obj.say if obj.json else (lambda _message: None),
    )

    def human() -> None:
        s = res.stats()
        click.echo(f"dry-run of {len(res.outcomes)} snapshot(s) against {res.target}")
        for o in res.outcomes:
            what = o.outcome if not o.error_type else f"{o.error_type}: {o.message}"
            rows = ", ".join(f"{k} {v}" for k, v in o.rows.items() if v) or "-"
            click.echo(f"  {o.snapshot_id}  {o.size_bytes or 0:>10}  {o.seconds:8.3f} s  {what}  [{rows}]")
        click.echo(
            f"n {s['n']}: applied {s['applied']}, errors {s['errors']} {s['errors_by_type'] or ''}, "
            f"missing {s['missing']}; t_avg {s['t_avg_s']} s, p95 {s['p95_s']} s, peak RSS {s['peak_rss_mb']} MiB"
        )
        for p in res.problems:
            click.echo(f"problem: {p}")
        click.echo(f"dry-run {'passed' if res.passed else 'FAILED'}; artifact {res.artifact}")

    obj.emit(res.to_json(), human)
    sys.exit(int(res.exit_code))
