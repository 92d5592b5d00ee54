"""Command-line interface: parse options, load config, call `ops`, render the result, exit with the documented code.

Heavy modules (psycopg, rich, the ETL) are imported inside commands so that `--help` stays fast.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import sys
from collections.abc import Callable, Iterator
from typing import Any

import click

from starforge_backfill import __version__
from starforge_backfill.errors import BackfillError, DatabaseUnavailable, ExitCode

CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"], "max_content_width": 110}

log = logging.getLogger("starforge_backfill.cli")


class Ctx:
    """What the global options set, shared with every subcommand."""

    def __init__(self, **opts: Any) -> None:
        self.opts = opts
        self._cfg: Any = None
        self._metrics: Any = None
        self.command = "starforge-backfill"
        self.emitted = False

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
            self._register_secrets(self.opts.get("dsn"))
            cfg = load_config(self.opts.get("config"), overrides=overrides)
            self._register_secrets(cfg.database.dsn, cfg.metrics.pushgateway_url, cfg.metrics.prometheus_url)
            if not self.opts.get("log_format") and (cfg.logging.format, cfg.logging.level) != ("human", "info"):
                self.setup_logging(cfg.logging.format, cfg.logging.level)
            if cfg.metrics.file and not str(cfg.metrics.file).endswith(".prom"):
                from starforge_backfill.errors import ConfigError

                raise ConfigError(
                    f"metrics.file {cfg.metrics.file!r} must end in .prom (the textfile collector reads only *.prom)"
                )
            self._cfg = cfg
            if cfg.metrics.file or cfg.metrics.pushgateway_url:
                self.metrics()  # from now on: engine batches are counted
        return self._cfg

    def setup_logging(self, fmt: str | None = None, cfg_level: str | None = None) -> None:
        """Logging on stderr: --log-format > logging.format > human; -q/-v > logging.level > info."""
        from starforge_backfill import logs

        level: str | int = cfg_level or "info"
        if self.verbose < 0:
            level = logging.WARNING
        elif self.verbose >= 2:
            level = logging.DEBUG
        elif self.verbose == 1 and logs.LEVELS[str(level)] > logging.INFO:
            level = logging.INFO
        logs.setup_logging(self.opts.get("log_format") or fmt or "human", level, verbose=self.verbose > 0)

    def _register_secrets(self, *values: str | None) -> None:
        """Passwords in the DSN and metrics URLs: never printed, whatever the output."""
        from starforge_backfill import logs

        for value in values:
            if not value:
                continue
            if "://" in value:
                from urllib.parse import unquote, urlsplit

                try:
                    password = urlsplit(value).password
                except ValueError:
                    password = None
                if password:
                    logs.add_secret(password)
                    logs.add_secret(unquote(password))
            if "password" in value.lower():
                from psycopg.conninfo import conninfo_to_dict

                try:
                    kv_password = conninfo_to_dict(value).get("password")
                except Exception:  # an invalid DSN is reported when it is used
                    continue
                logs.add_secret(str(kv_password) if kv_password else None)

    def metrics(self, *, needed: bool = False) -> Any:
        """This command's `metrics.Metrics` (started on first use) when an output is configured, else None."""
        if self._metrics is None:
            cfg = self._cfg
            file = self.opts.get("metrics_file") or (cfg.metrics.file if cfg is not None else None)
            push = cfg.metrics.pushgateway_url if cfg is not None else None
            if not (file or push or needed):
                return None
            from starforge_backfill.metrics import Metrics

            self._metrics = Metrics(
                command=self.command,
                file=file,
                pushgateway_url=push,
                job_name=cfg.metrics.job_name if cfg is not None else "starforge_backfill",
            ).start()
        return self._metrics

    def serve_metrics(self, option: str | None) -> Any:
        """Serve /metrics over HTTP for a long command (`--metrics-port [HOST:]PORT` or metrics.port)."""
        cfg = self.config()
        spec = option or (str(cfg.metrics.port) if cfg.metrics.port else None)
        if not spec:
            return self.metrics()
        from starforge_backfill.errors import UsageError

        host, _, port = spec.rpartition(":")
        if not port.isdigit() or not 0 <= int(port) <= 65535:
            raise UsageError(f"--metrics-port {spec!r}: expected PORT or HOST:PORT")
        metrics = self.metrics(needed=True)
        try:
            bound_host, bound_port = metrics.serve(int(port), host or "127.0.0.1")
        except OSError as exc:
            raise UsageError(f"cannot serve metrics on {host or '127.0.0.1'}:{port}: {exc.strerror or exc}") from None
        self.say(f"metrics on http://{bound_host}:{bound_port}/metrics")
        return metrics

    def finish(self, code: int) -> None:
        """The end of a command, whatever happened: the last metrics write (and push), with the exit code."""
        try:
            if self._cfg is None and code != ExitCode.USAGE:
                self.config()  # a command that needs no config still reports to a configured Pushgateway
        except Exception:  # a config error was (or will be) reported by the command itself
            pass
        try:
            metrics = self.metrics()
        except Exception:  # never mask the command's own outcome
            return
        if metrics is not None:
            metrics.close(int(code))

    def say(self, message: str) -> None:
        """A human notice on stderr, through logging (suppressed by --quiet; JSON with --log-format json)."""
        log.info(message)

    def emit(self, data: dict[str, Any], human: Callable[[], None]) -> None:
        """The command's result: one JSON document on stdout with --json, else the human rendering."""
        self.emitted = True
        if self.json:
            from starforge_backfill.logs import scrub

            click.echo(scrub(json.dumps(data, default=str, indent=2, sort_keys=True)))
        else:
            human()

    def where(self) -> str:
        """`host:port/dbname` of the configured database, for error lines; '' when unknown."""
        dsn = self._cfg.database.dsn if self._cfg is not None else self.opts.get("dsn")
        if not dsn:
            return ""
        from starforge_backfill.db import describe_dsn

        return describe_dsn(dsn)


def _fail(ctx: Ctx | None, exc: BaseException, code: ExitCode, message: str | None = None) -> None:
    """One line on stderr (`error: ...`, then `hint: ...`), a JSON error document with --json, then exit."""
    from starforge_backfill import logs
    from starforge_backfill.db import redact_dsn

    if message is None:
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    dsn = ctx.opts.get("dsn") if ctx else None
    if dsn:
        message = message.replace(dsn, redact_dsn(dsn))
    if code == ExitCode.DATABASE and ctx is not None:
        where = ctx.where()
        if where and where not in message:
            message = f"{message} (database {where})"
    hint = getattr(exc, "hint", None)
    if hint is None and isinstance(exc, DatabaseUnavailable):
        hint = (
            "is PostgreSQL running and reachable from here? Check the host, port and database of the DSN "
            "(--dsn, STARFORGE_DATABASE_URL or database.dsn)"
        )
    if logs.current_handler() is None:
        if ctx is not None:
            ctx.setup_logging()
        else:
            logs.setup_logging()
    verbose = ctx is not None and ctx.verbose > 0
    log.error(message, extra={"hint": hint, "exit_code": int(code)}, exc_info=exc if verbose else None)
    if ctx is not None and ctx.json and not ctx.emitted:
        ctx.emit({"error": {"message": message, "hint": hint, "exit_code": int(code)}}, lambda: None)
    sys.exit(int(code))


def _prom_path(_ctx: click.Context, _param: click.Parameter, value: str | None) -> str | None:
    if value is not None and not value.endswith(".prom"):
        raise click.BadParameter("must end in .prom (the node-exporter textfile collector reads only *.prom)")
    return value


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
        click_ctx = click.get_current_context()
        ctx = click_ctx.find_object(Ctx)
        if ctx is not None:
            ctx.command = "-".join(click_ctx.command_path.split()[1:]) or ctx.command
        code: int = ExitCode.OK
        try:
            return fn(*args, **kwargs)
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
            raise
        except click.exceptions.Exit as exc:
            code = exc.exit_code
            raise
        except click.ClickException as exc:
            code = exc.exit_code
            raise
        except BackfillError as exc:
            code = exc.exit_code
            _fail(ctx, exc, exc.exit_code)
        except KeyboardInterrupt as exc:
            code = ExitCode.INTERRUPTED
            _fail(ctx, exc, ExitCode.INTERRUPTED, "interrupted; checkpoints are saved, run the command again to resume")
        except Exception as exc:
            import psycopg

            if isinstance(exc, psycopg.Error):
                code = ExitCode.DATABASE
                first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
                _fail(ctx, exc, ExitCode.DATABASE, f"database error: {first}")
            code = ExitCode.CHECK_FAILED
            _fail(ctx, exc, ExitCode.CHECK_FAILED, f"internal error: {type(exc).__name__}: {exc}")
        finally:
            if ctx is not None:
                ctx.finish(code)

    return wrapper


# Runbook subcommands implemented in `starforge_backfill/commands/<module>.py` (each exports `command`),
# imported only when invoked or listed, so `--help` stays fast and a missing module hides its command.
LAZY_COMMANDS: dict[str, str] = {
    "preflight": "preflight",
    "census": "census",
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
        return module.command


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
@click.option(
    "--metrics-file",
    type=click.Path(dir_okay=False),
    callback=_prom_path,
    help="Write Prometheus metrics to PATH.prom (textfile collector) while running and at the end.",
)
@click.option(
    "--log-format",
    type=click.Choice(["human", "json"]),
    envvar="STARFORGE_LOG_FORMAT",
    help="Logs on stderr: human lines or one JSON object per line (env STARFORGE_LOG_FORMAT; logging.format).",
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
    obj = ctx.obj = Ctx(**opts)
    obj.setup_logging()


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


def _progress_printer(obj: Ctx, metrics: Any = None) -> tuple[Callable[[Any], None], Callable[[], None]]:
    """A progress callback: a rich bar on a terminal, a plain line every ~30 s otherwise; metrics when enabled."""
    from starforge_backfill.console import ProgressReporter
    from starforge_backfill.logs import current_format

    reporter = ProgressReporter(enabled=obj.verbose >= 0, bar=current_format() != "json")
    if metrics is None:
        return reporter.update, reporter.close

    def update(state: Any) -> None:
        reporter.update(state)
        metrics.progress(state)

    return update, reporter.close


class _Stop:
    """A stop flag set by Ctrl-C or SIGTERM, and which signal set it."""

    def __init__(self) -> None:
        import threading

        self.event = threading.Event()
        self.signum: int | None = None


@contextlib.contextmanager
def _graceful_stop(obj: Ctx) -> Iterator[_Stop]:
    """Ctrl-C or SIGTERM: workers finish their batch, save the checkpoint, release their chunk; a second Ctrl-C
    interrupts at once. (No KeyboardInterrupt reaches the thread joins, which Python 3.11 can mistake for ended.)"""
    import signal
    import threading

    stop = _Stop()
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return

    def handler(signum: int, _frame: Any) -> None:
        if stop.event.is_set() and signum == signal.SIGINT:
            raise KeyboardInterrupt
        stop.signum = stop.signum or signum
        if not stop.event.is_set():
            name = "Ctrl-C" if signum == signal.SIGINT else signal.Signals(signum).name
            obj.say(f"{name}: finishing the current batch and saving the checkpoint (Ctrl-C again to stop at once)")
        stop.event.set()

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield stop
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


_METRICS_PORT_HELP = "Serve Prometheus /metrics on [HOST:]PORT while running (default host 127.0.0.1; metrics.port)."


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
@click.option("--metrics-port", help=_METRICS_PORT_HELP)
@click.option("--print-sql", is_flag=True, help="Print the SQL statements a run executes and exit; no database.")
@click.pass_obj
@handled
def run_cmd(obj: Ctx, metrics_port: str | None, print_sql: bool, **kw: Any) -> None:
    """Backfill a created_at range: resumable, checkpointed, newest observation wins."""
    if print_sql:
        _print_run_sql(obj, forced=bool(kw.get("force")))
        return
    from starforge_backfill import ops
    from starforge_backfill.runbook.gates import require_for_run

    cfg = obj.config()
    metrics = obj.serve_metrics(metrics_port)
    update, close = _progress_printer(obj, metrics)
    gate = None if kw.get("force") else require_for_run
    try:
        with _graceful_stop(obj) as stop:
            res = ops.run(cfg, progress=update, notify=obj.say, gate=gate, stop=stop.event, **kw)
    finally:
        close()
    if metrics is not None:
        metrics.job_row(res.job)
    obj.emit(res.to_json(), lambda: _render_run(res))
    sys.exit(int(res.exit_code))


def _print_run_sql(obj: Ctx, *, forced: bool) -> None:
    from starforge_backfill import sqlview

    statements = sqlview.run_statements(obj.config(), forced=forced)

    def human() -> None:
        for st in statements:
            click.echo(f"-- {st.name}: {st.when}")
            click.echo(st.sql.rstrip() + "\n")

    obj.emit({"statements": [st.to_json() for st in statements]}, human)


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

    def human() -> None:
        for j in res.changed:
            click.echo(f"paused {j['job_id']}")
        if not res.changed:
            click.echo("no running job")

    obj.emit(res.to_json(), human)


@main.command("resume")
@click.option("--job-id", required=True, help="The job to resume.")
@click.option("--no-wait", is_flag=True, help="Only set it running; do not process it here.")
@click.option("--concurrency", type=click.IntRange(1, 256), help="Workers for the foreground run.")
@click.option("--reason", help="Recorded on the job.")
@click.option("--force", is_flag=True, help="Resume even if the config or tool version changed (needs --reason).")
@click.option("--metrics-port", help=_METRICS_PORT_HELP)
@click.pass_obj
@handled
def resume_cmd(
    obj: Ctx,
    job_id: str,
    no_wait: bool,
    concurrency: int | None,
    reason: str | None,
    force: bool,
    metrics_port: str | None,
) -> None:
    """Set a paused job running again and, unless --no-wait, carry on processing it like `run`."""
    from starforge_backfill import ops

    res = ops.resume(obj.config(), job_id=job_id, reason=reason, force=force)
    if no_wait:
        obj.emit(res.to_json(), lambda: click.echo(f"resumed {job_id}"))
        return
    metrics = obj.serve_metrics(metrics_port)
    update, close = _progress_printer(obj, metrics)
    try:
        with _graceful_stop(obj) as stop:
            run_res = ops.run(
                obj.config(),
                job_id=job_id,
                concurrency=concurrency,
                force=force,
                reason=reason,
                progress=update,
                notify=obj.say,
                stop=stop.event,
            )
    finally:
        close()
    if metrics is not None:
        metrics.job_row(run_res.job)
    obj.emit(run_res.to_json(), lambda: _render_run(run_res))
    sys.exit(int(run_res.exit_code))


@main.command("worker")
@click.option("--once", is_flag=True, help="Drain the queue and the open jobs, then exit.")
@click.option("--poll", "poll_s", type=float, default=1.0, show_default=True, help="Seconds between idle polls.")
@click.option("--metrics-port", help=_METRICS_PORT_HELP)
@click.pass_obj
@handled
def worker_cmd(obj: Ctx, once: bool, poll_s: float, metrics_port: str | None) -> None:
    """Long-running worker: queue_jobs (backfill_range, process_snapshot) and chunks of running jobs.

    SIGTERM finishes the current batch and exits 0; Ctrl-C does the same and exits 130.
    """
    import signal

    from starforge_backfill.worker import run_worker

    obj.config()
    obj.serve_metrics(metrics_port)  # batches reach the metrics through the engine's batch records
    try:
        with _graceful_stop(obj) as stop:
            stats = run_worker(obj.config(), once=once, poll_s=poll_s, stop=stop.event, notify=obj.say)
    except KeyboardInterrupt:
        sys.exit(int(ExitCode.INTERRUPTED))
    obj.emit(
        stats.to_json(),
        lambda: click.echo(
            f"worker done: {stats.queue_done} queue job(s), {stats.snapshots.applied} snapshot(s) processed, "
            f"{stats.snapshots.failed} failed"
        ),
    )
    if stop.signum == signal.SIGINT:
        sys.exit(int(ExitCode.INTERRUPTED))


@main.group("sql")
def sql_group() -> None:
    """Read the SQL the toolkit executes (templates under sql/); nothing here touches a database."""


@sql_group.command("list")
@click.pass_obj
@handled
def sql_list_cmd(obj: Ctx) -> None:
    """List the SQL template names."""
    from starforge_backfill import sqlview

    names = sqlview.template_names()
    obj.emit({"templates": names}, lambda: click.echo("\n".join(names)))


@sql_group.command("show")
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
