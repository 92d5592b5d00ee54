"""`census`: what a created_at range holds, by payload shape, per month and in total; writes census.json."""

from __future__ import annotations

from typing import Any

import click

from starforge_backfill.cli.context import Ctx, handled


@click.command("census")
@click.option("--from", "from_ts", required=True, help="Start of the created_at range (inclusive, ISO-8601).")
@click.option("--to", "to_ts", required=True, help="End of the created_at range (exclusive, ISO-8601).")
@click.option(
    "--sample",
    "sample_percent",
    type=click.FloatRange(0, 100, min_open=True),
    metavar="PERCENT",
    help="Read a TABLESAMPLE SYSTEM sample of PERCENT of the table's blocks (REPEATABLE with sample.seed) "
    "instead of every snapshot; the output says so. Default: exact.",
)
@click.option(
    "--top",
    type=click.IntRange(1, 1000),
    default=10,
    show_default=True,
    help="How many of the most common unknown keys to list (top level and ProfileData).",
)
@click.pass_obj
@handled
def command(obj: Ctx, **kw: Any) -> None:
    """Census of a range before sampling it: payload shapes by the contract's v2 rules (envelope, double
    encoding, API error bodies, namecode source, section forms), sizes and unknown keys, per month."""
    from starforge_backfill.runbook.census import census

    res = census(
        obj.config(),
        from_ts=kw["from_ts"],
        to_ts=kw["to_ts"],
        sample_percent=kw["sample_percent"],
        top=kw["top"],
    )
    obj.emit(res.to_json(), lambda: _human(res))


def _pct(share: float) -> str:
    return f"{share:.1%}"


def _human(res: Any) -> None:
    from rich.table import Table

    from starforge_backfill.cli.console import table_console
    from starforge_backfill.runbook.census import CLASSES, FAILING

    tot = res.totals
    click.echo(f"census [{res.from_ts.isoformat()}, {res.to_ts.isoformat()}): {tot.snapshots:,} snapshot(s)")
    click.echo(res.sampling_note())
    console = table_console(160)
    table = Table(title="totals (share of all snapshots)")
    for col in ("classification", "class", "snapshots", "share"):
        table.add_column(col, justify="right" if col in ("snapshots", "share") else "left")
    for dim, values in CLASSES.items():
        for i, value in enumerate(values):
            n = tot.count(dim, value)
            if n or dim == "verdict":
                table.add_row(dim if i == 0 or dim != "verdict" else "", value, f"{n:,}", _pct(tot.share(dim, value)))
    console.print(table)
    sz = tot.sizes
    click.echo(
        f"sizes (bytes): min {sz['min_bytes']}, p50 {sz['p50_bytes']}, p95 {sz['p95_bytes']}, max {sz['max_bytes']}, "
        f"over 1 MiB {sz['over_big']}"
    )
    for label, keys in (("top-level", tot.top_keys), ("ProfileData", tot.profile_keys)):
        shown = ", ".join(f"{k} {n:,}" for k, n in keys) or "none"
        click.echo(f"unknown {label} keys: {shown}")
    drift = Table(title="drift per month (UTC)")
    columns = (
        "month",
        "snapshots",
        "enveloped",
        "dbl-enc",
        "NC in PD",
        "keyed Troops",
        "fail",
        "most failing",
        "p50 B",
        "p95 B",
        "max B",
        ">1MiB",
    )
    for col in columns:
        drift.add_column(col, justify="left" if col in ("month", "most failing") else "right", no_wrap=True)
    for m in res.months:
        worst = max(FAILING, key=lambda v: m.count("verdict", v))
        drift.add_row(
            m.month,
            f"{m.snapshots:,}",
            _pct(m.share("envelope", "enveloped")),
            _pct(m.share("form", "double_encoded")),
            _pct(m.share("namecode", "profile_data")),
            _pct(m.share("troops", "keyed")),
            _pct(m.failing_share),
            f"{worst} {m.count('verdict', worst):,}" if m.count("verdict", worst) else "-",
            str(m.sizes["p50_bytes"]),
            str(m.sizes["p95_bytes"]),
            str(m.sizes["max_bytes"]),
            str(m.sizes["over_big"]),
        )
    console.print(drift)
    failing = res.failing_shapes()
    if failing:
        parts = ", ".join(f"{f['shape']} {f['snapshots']:,} ({_pct(f['share'])}, {f['error_type']})" for f in failing)
        click.echo(f"would fail: {tot.failing:,} of {tot.snapshots:,} ({_pct(tot.failing_share)}): {parts}")
    else:
        click.echo("would fail: none by shape")
    click.echo(f"artifact {res.artifact}")
