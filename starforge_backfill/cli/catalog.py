"""`catalog placeholders` / `catalog import` / `catalog cleanup`: the post-backfill catalog tasks."""

from __future__ import annotations

import sys
from typing import Any

import click

from starforge_backfill.cli.context import Ctx, handled


@click.group("catalog")
def group() -> None:
    """Placeholder catalog rows and the authoritative catalog (post-backfill tasks)."""


def _table(title: str, uses: list[Any], columns: tuple[str, ...] = ("kind", "id", "rows", "users")) -> None:
    from rich.table import Table

    from starforge_backfill.cli.console import table_console

    table = Table(title=title)
    for col in columns:
        table.add_column(col, justify="right" if col in ("id", "rows", "users") else "left")
    for p in uses:
        table.add_row(*(str(getattr(p, c)) for c in columns))
    table_console(110).print(table)


@group.command("placeholders")
@click.pass_obj
@handled
def placeholders_cmd(obj: Ctx) -> None:
    """List each placeholder catalog row (troop, pet, artifact) with how many user_* rows and distinct users
    use it."""
    from starforge_backfill.runbook.catalog import placeholders

    res = placeholders(obj.config())

    def human() -> None:
        if not res.placeholders:
            click.echo("no placeholder catalog rows")
            return
        _table("placeholder catalog rows", res.placeholders)
        unused = sum(1 for p in res.placeholders if p.rows == 0)
        click.echo(
            f"{len(res.placeholders)} placeholder(s), {unused} unused; "
            "`catalog import FILE` replaces them with real rows, `catalog cleanup` deletes the unused ones"
        )

    obj.emit(res.to_json(), human)


@group.command("import")
@click.argument("file", metavar="FILE")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["csv", "jsonl"]),
    help="The file's format [default: from its extension: .csv, or .jsonl/.ndjson/.json; required for -].",
)
@click.option("--update", is_flag=True, help="Also overwrite existing real rows whose name or meta differs.")
@click.pass_obj
@handled
def import_cmd(obj: Ctx, file: str, fmt: str | None, update: bool) -> None:
    """Load the authoritative catalog from FILE (`-` for stdin), in one transaction.

    Each record is `kind,id,name[,meta]` (kind troop, pet or artifact; id a positive integer; name not empty;
    meta a JSON object), as CSV (an optional header line `kind,id,name,meta`) or as JSON lines
    ({"kind", "id", "name", "meta"}). A placeholder row gets its real name and meta and loses the flag, a new
    id is inserted, and an existing real row is left as it is unless --update. Loading the same file again
    changes nothing. A bad record (or a kind and id given twice) is a one-line error naming its line, exit 2,
    and nothing of the file is applied. Writes runbook/catalog-import-<timestamp>.json under the artifacts
    dir: the file's sha256, the counts, and who ran it ($STARFORGE_OPERATOR, else user@host).
    """
    from starforge_backfill.errors import UsageError
    from starforge_backfill.runbook.catalog import import_catalog

    if file == "-":
        data = sys.stdin.buffer.read()
    else:
        try:
            with open(file, "rb") as fh:
                data = fh.read()
        except OSError as exc:
            raise UsageError(f"cannot read {file}: {exc.strerror or exc}") from None
    res = import_catalog(obj.config(), data, source=file, fmt=fmt, update=update)

    def human() -> None:
        c = res.counts
        click.echo(
            f"catalog import {res.source} ({res.format}, {res.records} record(s), sha256 {res.sha256[:12]}): "
            f"inserted {c['inserted']}, placeholders replaced {c['placeholders_replaced']}, "
            f"updated {c['updated']}, unchanged {c['unchanged']}, skipped (differ, no --update) "
            f"{c['skipped_existing']}"
        )
        if res.skipped:
            shown = ", ".join(f"{s['kind']} {s['id']}" for s in res.skipped[:20])
            more = f" and {len(res.skipped) - 20} more" if len(res.skipped) > 20 else ""
            click.echo(
                f"note: left as they are (their real rows differ from the file): {shown}{more}; "
                "--update overwrites them"
            )
        click.echo(f"artifact {res.artifact}")

    obj.emit(res.to_json(), human)


@group.command("cleanup")
@click.option("--dry-run", is_flag=True, help="List what would be deleted; lock and delete nothing.")
@click.pass_obj
@handled
def cleanup_cmd(obj: Ctx, dry_run: bool) -> None:
    """Delete the placeholder catalog rows no user_* row references, in one transaction, and list the ones
    still in use with their usage counts.

    While it runs, writers to the catalogs and to user_troops/user_pets/user_artifacts wait (readers do not),
    so a backfill running meanwhile cannot add a reference to a row being deleted. Writes
    runbook/catalog-cleanup-<timestamp>.json under the artifacts dir (not with --dry-run).
    """
    from starforge_backfill.runbook.catalog import cleanup

    res = cleanup(obj.config(), dry_run=dry_run)

    def human() -> None:
        verb = "would delete" if res.dry_run else "deleted"
        listed = ", ".join(f"{d['kind']} {d['id']}" for d in res.deleted)
        click.echo(f"{verb} {len(res.deleted)} unused placeholder(s){': ' + listed if listed else ''}")
        if res.in_use:
            _table("placeholders still in use", res.in_use)
        else:
            click.echo("no placeholder in use")
        if res.artifact is not None:
            click.echo(f"artifact {res.artifact}")

    obj.emit(res.to_json(), human)
