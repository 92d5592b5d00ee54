"""`synth load`: fill a staging database with the demo's synthetic snapshots (refuses real data unless --force)."""

from __future__ import annotations

import click

from starforge_backfill.cli.context import Ctx, handled


@click.group("synth")
def group() -> None:
    """Synthetic snapshots for a staging database (the README tour)."""


@group.command("load")
@click.option("--snapshots", "-n", type=int, required=True, help="How many synthetic snapshots to load.")
@click.option("--seed", type=int, default=7, show_default=True, help="Generator seed: same seed, same snapshots.")
@click.option(
    "--bad-rate",
    type=float,
    default=0.01,
    show_default=True,
    help="Share of malformed snapshots (0..1), each failing the ETL with a contract error.",
)
@click.option("--force", is_flag=True, help="Load even into a database that holds non-synthetic snapshots.")
@click.pass_obj
@handled
def load_cmd(obj: Ctx, snapshots: int, seed: int, bad_rate: float, force: bool) -> None:
    """Load N of the demo's synthetic snapshots (a few 2-3 MB, ~--bad-rate malformed, 5 catalog ids missing,
    created over 2024-01-01 .. 2024-06-29) and their catalogs into the database; needs `db init` first.

    Refused (exit 1) when the database already holds snapshots the generator did not write
    (hero_snapshots.source other than 'synthetic'), unless --force.
    """
    from starforge_backfill.runbook.synth import check_options, load

    check_options(snapshots, bad_rate)  # before connecting: a bad option is exit 2 whatever the database
    res = load(obj.config(), snapshots=snapshots, seed=seed, bad_rate=bad_rate, force=force)

    def human() -> None:
        click.echo(
            f"loaded {res.snapshots} synthetic snapshot(s) ({res.bytes / 1e6:.1f} MB of JSON, {res.malformed} "
            f"malformed) into {res.database['name']} ({res.database['address']}) in {res.seconds:.1f} s"
        )
        click.echo(f"created_at from {res.from_ts.isoformat()} to {res.to_ts.isoformat()}; seed {res.seed}")
        if res.non_synthetic_before:
            click.echo(f"forced: the database already held {res.non_synthetic_before} non-synthetic snapshot(s)")

    obj.emit(res.to_json(), human)
