"""`plan`: T_estimate = N * t_avg / C, the connection budget, a recommended C and batch size."""

from __future__ import annotations

from typing import Any

import click

from starforge_backfill.cli.context import Ctx, handled


@click.command("plan")
@click.option("--from", "from_ts", required=True, help="Start of the created_at range (inclusive, ISO-8601).")
@click.option("--to", "to_ts", required=True, help="End of the created_at range (exclusive, ISO-8601).")
@click.option("--concurrency", type=click.IntRange(1, 256), help="Also estimate this C.")
@click.option("--target-hours", type=click.FloatRange(0, min_open=True), help="Desired wall time (T_target).")
@click.option(
    "--t-avg",
    "t_avg",
    type=click.FloatRange(0, min_open=True),
    help="Seconds per snapshot (default: the newest dry-run's).",
)
@click.option("--reprocess", is_flag=True, help="Count snapshots already processed too (as run --reprocess).")
@click.option("--retry-failed", is_flag=True, help="Count snapshots that failed before too (as run --retry-failed).")
@click.pass_obj
@handled
def command(obj: Ctx, **kw: Any) -> None:
    """Planning & capacity estimation: runtime per concurrency, connection budget, recommended C and batch size."""
    from starforge_backfill.runbook.plan import plan

    res = plan(
        obj.config(),
        from_ts=kw["from_ts"],
        to_ts=kw["to_ts"],
        concurrency=kw["concurrency"],
        target_hours=kw["target_hours"],
        t_avg_s=kw["t_avg"],
        reprocess=kw["reprocess"],
        retry_failed=kw["retry_failed"],
    )

    def human() -> None:
        from rich.table import Table

        from starforge_backfill.cli.console import table_console

        click.echo(
            f"N {res.n} snapshot(s) to process, t_avg {res.t_avg_s:g} s ({res.t_avg_source}); "
            f"connections: budget {res.capacity.budget} of max_connections {res.capacity.max_connections} "
            f"(share {res.capacity.share:g}), {res.capacity.in_use} in use"
        )
        table = Table(title="T_estimate = N * t_avg / C")
        for col in ("C", "T_estimate", "hours", "connections", "within budget", "meets target", ""):
            table.add_column(col)
        for e in res.estimates:
            table.add_row(
                str(e.concurrency),
                f"{e.t_estimate_s:,.0f} s",
                f"{e.t_estimate_s / 3600:.2f}",
                str(e.connections),
                "yes" if e.within_budget else "NO",
                "-" if e.meets_target is None else ("yes" if e.meets_target else "no"),
                "<- recommended" if e.concurrency == res.recommended_concurrency else "",
            )
        table_console(110).print(table)
        click.echo(f"recommended: --concurrency {res.recommended_concurrency} ({res.concurrency_reason})")
        sz = res.sizes
        if sz["avg_bytes"] is not None:  # nothing to size when nothing waits
            click.echo(
                f"recommended: --batch-size {res.recommended_batch_size} (payload avg {sz['avg_bytes']} bytes, "
                f"p95 {sz['p95_bytes']} bytes)"
            )
        for note in res.notes:
            click.echo(f"note: {note}")
        click.echo(f"artifact {res.artifact}")

    obj.emit(
        res.to_json(),
        human,
        summary=f"plan: N {res.n} snapshot(s); recommended --concurrency {res.recommended_concurrency}"
        f" ({res.concurrency_reason}); artifact {res.artifact}",
    )
