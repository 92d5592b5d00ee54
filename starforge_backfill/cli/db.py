"""`db init`: create the toolkit's tables (and, for staging/demo/tests, the StarForge tables)."""

from __future__ import annotations

import click

from starforge_backfill.cli.context import Ctx, handled


@click.group("db")
def group() -> None:
    """Database setup."""


@group.command("init")
@click.pass_obj
@handled
def db_init_cmd(obj: Ctx) -> None:
    """Create the toolkit's tables (and, for staging/demo/tests, the StarForge tables); idempotent."""
    from starforge_backfill.runbook.control import db_init

    res = db_init(obj.config())
    obj.emit(
        res.to_json(),
        lambda: click.echo(f"schema ready: {res.tables_after} tables ({res.tables_after - res.tables_before} created)"),
    )
