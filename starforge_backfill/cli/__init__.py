"""Command-line interface: one click command per module of this package, each loaded only when it is used.

A command parses its options, loads the config (`context.Ctx`), calls one function of `runbook/`, renders the
result and exits with the documented code. Nothing below `cli/` imports click or rich (`console.py` aside,
which only renders). Heavy modules (psycopg, rich, the ETL) are imported inside commands so `--help` stays fast.

Where a runbook step lives, in one hop each: `cli/<step>.py` -> `runbook/<step>.py` -> `sql/<step>/`.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence
from typing import Any

import click

from starforge_backfill import __version__
from starforge_backfill.cli.context import CONTEXT_SETTINGS, Ctx, prom_path

# command name -> "module:attribute" under starforge_backfill.cli; every one must import (a test checks)
COMMANDS: dict[str, str] = {
    "db": "db:group",
    "preflight": "preflight:command",
    "census": "census:command",
    "sample": "sample:command",
    "dry-run": "dry_run:command",
    "plan": "plan:command",
    "canary": "canary:command",
    "run": "run:run_command",
    "resume": "run:resume_command",
    "reprocess": "reprocess:command",
    "pause": "jobs:pause_command",
    "status": "jobs:status_command",
    "guard": "guard:group",
    "worker": "worker:command",
    "serve": "serve:group",
    "verify": "verify:command",
    "report": "report:command",
    "catalog": "catalog:group",
    "sql": "sql:group",
    "synth": "synth:group",
    "demo": "demo:command",
}


GLOBAL_OPTIONS = (
    "--config",
    "--dsn",
    "--artifacts-dir",
    "--metrics-file",
    "--log-format",
    "--operator",
    "--verbose",
    "--quiet",
)


def usage_error(exc: click.UsageError) -> tuple[str, str | None]:
    """A click usage error as our one `error:` line and a `hint:` (a misplaced global option, a misspelt command)."""
    message = exc.format_message().strip().splitlines()[0]
    hint = None
    if isinstance(exc, click.NoSuchOption) and exc.option_name in GLOBAL_OPTIONS:
        where = f"starforge-backfill {exc.option_name} ... <command>"
        hint = f"{exc.option_name} is a global option: put it before the subcommand ({where})"
    elif exc.ctx is not None:
        hint = f"see `{exc.ctx.command_path} --help`"
    return message, hint


class LazyGroup(click.Group):
    """A click group whose subcommands are imported from `COMMANDS` only when invoked or listed in help."""

    def main(
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        """Usage errors in the toolkit's style (`error: ...`, `hint: ...`, exit 2), not click's own banner."""
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        try:
            rv = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except click.UsageError as exc:
            message, hint = usage_error(exc)
            click.echo(f"error: {message}", err=True)
            if hint:
                click.echo(f"hint: {hint}", err=True)
            sys.exit(exc.exit_code)
        except click.exceptions.Abort:
            click.echo("error: aborted", err=True)
            sys.exit(1)
        if isinstance(rv, int) and rv:  # click returns an Exit's code when it does not exit itself
            sys.exit(rv)
        return rv

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        """An unknown command says which known one it looks like."""
        name = args[0] if args else None
        if name is not None and not name.startswith("-") and name not in COMMANDS:
            import difflib  # only on this error path: it costs --help ~0.1 s

            close = difflib.get_close_matches(name, list(COMMANDS), n=1)
            guess = f" (did you mean {close[0]}?)" if close else ""
            raise click.UsageError(f"no such command {name!r}{guess}", ctx)
        return super().resolve_command(ctx, args)

    def list_commands(self, ctx: click.Context) -> list[str]:
        """Every command of `COMMANDS`."""
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        """Import `starforge_backfill.cli.<module>` and return its command; None for an unknown name."""
        target = COMMANDS.get(cmd_name)
        if target is None:
            return None
        module, _, attr = target.partition(":")
        command: click.Command = getattr(importlib.import_module(f"starforge_backfill.cli.{module}"), attr)
        return command


@click.group(cls=LazyGroup, context_settings=CONTEXT_SETTINGS)
@click.option(
    "-c",
    "--config",
    type=click.Path(dir_okay=False),
    help="YAML config file [default: ./starforge-backfill.yaml]",
)
@click.option("--dsn", envvar="STARFORGE_DATABASE_URL", help="PostgreSQL DSN (env STARFORGE_DATABASE_URL).")
@click.option("--artifacts-dir", type=click.Path(file_okay=False), help="Where audit artifacts go.")
@click.option("--json", "json_out", is_flag=True, help="Machine-readable result on stdout; human text on stderr.")
@click.option(
    "--metrics-file",
    type=click.Path(dir_okay=False),
    callback=prom_path,
    help="Write Prometheus metrics to PATH.prom (textfile collector) while running and at the end.",
)
@click.option(
    "--log-format",
    type=click.Choice(["human", "json"]),
    envvar="STARFORGE_LOG_FORMAT",
    help="Logs on stderr: human lines or one JSON object per line (env STARFORGE_LOG_FORMAT; logging.format).",
)
@click.option(
    "--operator",
    envvar="STARFORGE_OPERATOR",
    help="Who is acting, recorded on every job and event (env STARFORGE_OPERATOR; default user@host).",
)
@click.option("-v", "--verbose", count=True, help="More output: per-batch lines; -vv debug; tracebacks on errors.")
@click.option("-q", "--quiet", is_flag=True, help="Less human output (warnings and errors only).")
@click.version_option(__version__, prog_name="starforge-backfill")
@click.pass_context
def main(ctx: click.Context, **opts: Any) -> None:
    """starforge-backfill: backfill raw hero_snapshots into normalized tables, by the runbook.

    Exit codes: 0 ok, 1 check or gate failed, 2 usage or config error, 3 database unreachable or schema
    missing, 4 job paused or aborted, 130 interrupted.
    """
    from starforge_backfill import operator

    operator.set_current(opts.pop("operator", None))
    obj = ctx.obj = Ctx(**opts)
    obj.setup_logging()
