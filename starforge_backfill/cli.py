"""Command-line interface: parse options, load config, call `ops`, render the result, exit with the documented code.

Heavy modules (psycopg, rich, the ETL) are imported inside commands so that `--help` stays fast.
"""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable
from typing import Any

import click

from starforge_backfill import __version__
from starforge_backfill.errors import BackfillError, ExitCode

CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"], "max_content_width": 110}


class Ctx:
    """What the global options set, shared with every subcommand."""

    def __init__(self, **opts: Any) -> None:
        self.opts = opts
        self._cfg: Any = None

    @property
    def json(self) -> bool:
        """True when --json was given."""
        return bool(self.opts.get("json_out"))

    @property
    def verbose(self) -> int:
        """Verbosity: -1 quiet, 0 normal, 1+ verbose."""
        return int(self.opts.get("verbose") or 0) - (1 if self.opts.get("quiet") else 0)

    def config(self) -> Any:
        """Load the config once (CLI options > env > file > defaults)."""
        if self._cfg is None:
            from starforge_backfill.config import load_config

            overrides = {
                "database.dsn": self.opts.get("dsn"),
                "artifacts_dir": self.opts.get("artifacts_dir"),
            }
            if self.opts.get("metrics_file"):
                overrides["metrics.file"] = self.opts["metrics_file"]
            self._cfg = load_config(self.opts.get("config"), overrides=overrides)
        return self._cfg

    def say(self, message: str) -> None:
        """A human line on stderr (suppressed by --quiet)."""
        if self.verbose >= 0:
            click.echo(message, err=True)

    def emit(self, data: dict[str, Any], human: Callable[[], None]) -> None:
        """The command's result: one JSON document on stdout with --json, else the human rendering."""
        if self.json:
            click.echo(json.dumps(data, default=str, indent=2, sort_keys=True))
        else:
            human()


def _fail(ctx: Ctx | None, exc: BaseException, code: ExitCode) -> None:
    from starforge_backfill.db import redact_dsn

    message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    dsn = ctx.opts.get("dsn") if ctx else None
    if dsn:
        message = message.replace(dsn, redact_dsn(dsn))
    click.echo(f"error: {message}", err=True)
    hint = getattr(exc, "hint", None)
    if hint:
        click.echo(f"hint: {hint}", err=True)
    if ctx is not None and ctx.verbose > 0:
        import traceback

        traceback.print_exception(exc, file=sys.stderr)
    sys.exit(int(code))


def _json_flag(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    if value:
        obj = ctx.find_object(Ctx)
        if obj is not None:
            obj.opts["json_out"] = True


def handled(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Accept `--json` after the subcommand too, and turn exceptions into one clear line and exit code."""

    @click.option(
        "--json", "_json", is_flag=True, expose_value=False, callback=_json_flag, help="Same as the global --json."
    )
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        ctx = click.get_current_context().find_object(Ctx)
        try:
            return fn(*args, **kwargs)
        except BackfillError as exc:
            _fail(ctx, exc, exc.exit_code)
        except KeyboardInterrupt as exc:
            _fail(ctx, RuntimeError("interrupted"), ExitCode.INTERRUPTED) if str(exc) else sys.exit(130)
        except Exception as exc:
            import psycopg

            if isinstance(exc, psycopg.Error):
                _fail(ctx, RuntimeError(f"database error: {exc}"), ExitCode.DATABASE)
            _fail(ctx, RuntimeError(f"internal error: {type(exc).__name__}: {exc}"), ExitCode.CHECK_FAILED)

    return wrapper


# Runbook subcommands implemented in `starforge_backfill/commands/<module>.py` (each exports `command`),
# imported only when invoked or listed, so `--help` stays fast and a missing module hides its command.
LAZY_COMMANDS: dict[str, str] = {
    "preflight": "preflight",
    "sample": "sample",
    "dry-run": "dry_run",
    "plan": "plan",
    "canary": "canary",
    "verify": "verify",
    "report": "report",
    "demo": "demo",
}


class LazyGroup(click.Group):
    """A click group that also offers the LAZY_COMMANDS whose module exists."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        """Eager commands plus every lazy one that is installed."""
        return sorted(set(super().list_commands(ctx)) | {n for n, m in LAZY_COMMANDS.items() if _has_module(m)})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        """An eager command, else import `starforge_backfill.commands.<module>` and return its `command`."""
        found = super().get_command(ctx, cmd_name)
        if found is not None or cmd_name not in LAZY_COMMANDS or not _has_module(LAZY_COMMANDS[cmd_name]):
            return found
        import importlib

        module = importlib.import_module(f"starforge_backfill.commands.{LAZY_COMMANDS[cmd_name]}")
        return module.command  # type: ignore[no-any-return]


def _has_module(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(f"starforge_backfill.commands.{name}") is not None


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
@click.option("--metrics-file", type=click.Path(dir_okay=False), help="Write Prometheus metrics (textfile format).")
@click.option("-v", "--verbose", count=True, help="More output (tracebacks on errors).")
@click.option("-q", "--quiet", is_flag=True, help="Less human output.")
@click.version_option(__version__, prog_name="starforge-backfill")
@click.pass_context
def main(ctx: click.Context, **opts: Any) -> None:
    """starforge-backfill: backfill raw hero_snapshots into normalized tables, by the runbook.

    Exit codes: 0 ok, 1 check or gate failed, 2 usage or config error, 3 database unreachable or schema
    missing, 4 job paused or aborted, 130 interrupted.
    """
    ctx.obj = Ctx(**opts)


@main.group()
def db() -> None:
    """Database setup."""


@db.command("init")
@click.pass_obj
@handled
def db_init_cmd(obj: Ctx) -> None:
    """Create the toolkit's tables (and, for staging/demo/tests, the StarForge tables); idempotent."""
    from starforge_backfill import ops

    res = ops.db_init(obj.config())
    obj.emit(
        res.to_json(),
        lambda: click.echo(f"schema ready: {res.tables_after} tables ({res.tables_after - res.tables_before} created)"),
    )


def _progress_printer(obj: Ctx) -> tuple[Callable[[Any], None], Callable[[], None]]:
    """A progress callback: a rich bar on a terminal, a plain line every ~30 s otherwise."""
    from starforge_backfill.console import ProgressReporter

    reporter = ProgressReporter(enabled=obj.verbose >= 0)
    return reporter.update, reporter.close


@main.command("run")
@click.option("--from", "from_ts", help="Start of the created_at range (inclusive, ISO-8601).")
@click.option("--to", "to_ts", help="End of the created_at range (exclusive, ISO-8601).")
@click.option("--batch-size", type=click.IntRange(1, 10000), help="Snapshots per batch (default etl.batch_size).")
@click.option("--concurrency", type=click.IntRange(1, 256), help="Workers, one connection each.")
@click.option("--job-id", help="Resume this job.")
@click.option("--reprocess", is_flag=True, help="Also take snapshots already processed.")
@click.option("--retry-failed", is_flag=True, help="Also take snapshots that failed before.")
@click.option("--force", is_flag=True, help="Skip the preflight/canary gates (needs --reason).")
@click.option("--reason", help="Why --force; recorded in the audit trail.")
@click.pass_obj
@handled
def run_cmd(obj: Ctx, **kw: Any) -> None:
    """Backfill a created_at range: resumable, checkpointed, newest observation wins."""
    from starforge_backfill import ops
    from starforge_backfill.runbook.gates import require_for_run

    update, close = _progress_printer(obj)
    gate = None if kw.get("force") else require_for_run
    try:
        res = ops.run(obj.config(), progress=update, notify=obj.say, gate=gate, **kw)
    finally:
        close()
    obj.emit(res.to_json(), lambda: _render_run(res))
    sys.exit(int(res.exit_code))


def _render_run(res: Any) -> None:
    s = res.summary()
    job = res.job
    click.echo(f"job {job['job_id']}: {job['status']} ({s['outcome']})")
    click.echo(
        f"  processed {s['processed']}, failed {s['failed']} {s['failed_by_type'] or ''}, "
        f"placeholders {s['placeholders']}, {s['elapsed_s']} s, {s['rate_per_s']} snapshots/s"
    )
    rows = ", ".join(f"{k} {v}" for k, v in sorted(s["rows_written"].items())) or "none"
    click.echo(f"  rows written: {rows}")
    click.echo(f"  job totals: processed {job['processed_count']}, failed {job['error_count']}")
    if res.artifact:
        click.echo(f"  artifact: {res.artifact}")


@main.command("status")
@click.option("--job-id", help="Only this job.")
@click.option("--limit", type=click.IntRange(1, 1000), default=20, show_default=True)
@click.pass_obj
@handled
def status_cmd(obj: Ctx, job_id: str | None, limit: int) -> None:
    """Jobs with progress, rate, ETA, errors, throttle state and live workers."""
    from starforge_backfill import ops

    res = ops.status(obj.config(), job_id=job_id, limit=limit)

    def human() -> None:
        from starforge_backfill.console import render_status

        render_status(res.jobs)

    obj.emit(res.to_json(), human)


@main.command("pause")
@click.option("--job-id", help="The job to pause.")
@click.option("--all", "all_jobs", is_flag=True, help="Pause every running job.")
@click.option("--reason", help="Recorded on the job.")
@click.pass_obj
@handled
def pause_cmd(obj: Ctx, job_id: str | None, all_jobs: bool, reason: str | None) -> None:
    """Pause a job: its workers stop at their next batch boundary (their `run` exits 4)."""
    from starforge_backfill import ops

    res = ops.pause(obj.config(), job_id=job_id, all_jobs=all_jobs, reason=reason)
    obj.emit(
        res.to_json(),
        lambda: [click.echo(f"paused {j['job_id']}") for j in res.changed] or click.echo("no running job"),
    )


@main.command("resume")
@click.option("--job-id", required=True, help="The job to resume.")
@click.option("--no-wait", is_flag=True, help="Only set it running; do not process it here.")
@click.option("--concurrency", type=click.IntRange(1, 256), help="Workers for the foreground run.")
@click.option("--reason", help="Recorded on the job.")
@click.option("--force", is_flag=True, help="Resume even if the config or tool version changed (needs --reason).")
@click.pass_obj
@handled
def resume_cmd(obj: Ctx, job_id: str, no_wait: bool, concurrency: int | None, reason: str | None, force: bool) -> None:
    """Set a paused job running again and, unless --no-wait, carry on processing it like `run`."""
    from starforge_backfill import ops

    res = ops.resume(obj.config(), job_id=job_id, reason=reason)
    if no_wait:
        obj.emit(res.to_json(), lambda: click.echo(f"resumed {job_id}"))
        return
    update, close = _progress_printer(obj)
    try:
        run_res = ops.run(
            obj.config(),
            job_id=job_id,
            concurrency=concurrency,
            force=force,
            reason=reason,
            progress=update,
            notify=obj.say,
        )
    finally:
        close()
    obj.emit(run_res.to_json(), lambda: _render_run(run_res))
    sys.exit(int(run_res.exit_code))


@main.command("worker")
@click.option("--once", is_flag=True, help="Drain the queue and the open jobs, then exit.")
@click.option("--poll", "poll_s", type=float, default=1.0, show_default=True, help="Seconds between idle polls.")
@click.pass_obj
@handled
def worker_cmd(obj: Ctx, once: bool, poll_s: float) -> None:
    """Long-running worker: queue_jobs (backfill_range, process_snapshot) and chunks of running jobs."""
    import signal
    import threading

    from starforge_backfill.worker import run_worker

    stop = threading.Event()

    def _term(_signum: int, _frame: Any) -> None:
        obj.say("SIGTERM: finishing the current batch, then exiting")
        stop.set()

    signal.signal(signal.SIGTERM, _term)
    try:
        stats = run_worker(obj.config(), once=once, poll_s=poll_s, stop=stop, notify=obj.say)
    except KeyboardInterrupt:
        stop.set()
        sys.exit(int(ExitCode.INTERRUPTED))
    obj.emit(
        stats.to_json(),
        lambda: click.echo(
            f"worker done: {stats.queue_done} queue job(s), {stats.snapshots.applied} snapshot(s) processed, "
            f"{stats.snapshots.failed} failed"
        ),
    )
