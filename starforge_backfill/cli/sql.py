"""`sql list` / `sql show`: read the SQL templates the toolkit executes; no database is touched."""

from __future__ import annotations

import click

from starforge_backfill.cli.context import Ctx, handled


@click.group("sql")
def group() -> None:
    """Read the SQL the toolkit executes (templates under sql/); nothing here touches a database."""


@group.command("list")
@click.pass_obj
@handled
def sql_list_cmd(obj: Ctx) -> None:
    """List the SQL template names."""
    from starforge_backfill import sqlview

    names = sqlview.template_names()
    obj.emit({"templates": names}, lambda: click.echo("\n".join(names)))


@group.command("show")
@click.argument("name")
@click.option("--var", "variables", multiple=True, metavar="KEY=VALUE", help="A template variable (repeatable).")
@click.option("--raw", is_flag=True, help="As rendered (what is executed), without sqlglot's pretty-printing.")
@click.pass_obj
@handled
def sql_show_cmd(obj: Ctx, name: str, variables: tuple[str, ...], raw: bool) -> None:
    """Show template NAME rendered with the current config (catalog_policy, ...), pretty-printed for reading.

    Values stay %(name)s placeholders: psycopg binds them at run time. The pretty-printed text comes from
    sqlglot and is for reading only; the toolkit executes the rendered template (see --raw).
    """
    from starforge_backfill import sqlview

    context = sqlview.parse_vars(variables)
    rendered = sqlview.render(obj.config(), name, context)
    text, formatted = (rendered, False) if raw else sqlview.pretty(rendered)
    obj.emit(
        {"name": name, "variables": context, "sql": rendered, "pretty": text if formatted else None},
        lambda: click.echo(text.rstrip()),
    )
