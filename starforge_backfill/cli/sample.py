"""`sample`: pick dry-run snapshots across size buckets plus known-bad ones; writes sample.json."""

from __future__ import annotations

from typing import Any

import click

from starforge_backfill.cli.context import Ctx, handled


@click.command("sample")
@click.option("--from", "from_ts", required=True, help="Start of the created_at range (inclusive, ISO-8601).")
@click.option("--to", "to_ts", required=True, help="End of the created_at range (exclusive, ISO-8601).")
@click.option("--seed", type=int, help="Seed of the pick (default sample.seed); same seed, same sample.")
@click.option(
    "--buckets", metavar="N,N,...", help="Snapshots per size bucket, smallest first (default sample.buckets)."
)
@click.option(
    "--include-bad", type=click.IntRange(0, 10000), help="Known-bad snapshots to add (default sample.include_bad)."
)
@click.option(
    "--prescan",
    type=click.IntRange(0, 100000),
    default=200,
    show_default=True,
    help="At most this many snapshots validated one by one when etl_errors has too few bad ones.",
)
@click.pass_obj
@handled
def command(obj: Ctx, **kw: Any) -> None:
    """Pick a deterministic dry-run sample: ntile size buckets (md5(id || seed) order) plus known-bad snapshots."""
    from starforge_backfill.runbook.sample import sample

    res = sample(
        obj.config(),
        from_ts=kw["from_ts"],
        to_ts=kw["to_ts"],
        seed=kw["seed"],
        buckets=kw["buckets"],
        include_bad=kw["include_bad"],
        prescan_limit=kw["prescan"],
    )

    def human() -> None:
        click.echo(
            f"sample of {len(res.picks)} snapshot(s), seed {res.seed}, buckets {','.join(map(str, res.buckets))}"
        )
        for b in res.bucket_stats:
            bounds = "empty" if b["min_bytes"] is None else f"{b['min_bytes']}-{b['max_bytes']} bytes"
            click.echo(f"  bucket {b['bucket']}: picked {b['picked']} of {b['wanted']} wanted ({bounds})")
        click.echo(f"  known-bad: {len(res.bad)} of {res.include_bad} wanted (pre-scanned {res.prescanned})")
        for p in res.picks:
            where = f"bucket {p.bucket}" if p.bucket else (p.error_type or "bad")
            click.echo(f"  {p.snapshot_id}  {p.size_bytes:>10}  {where}  {p.reason}")
        click.echo(f"artifact {res.artifact}")

    obj.emit(res.to_json(), human)
