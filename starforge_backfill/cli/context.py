"""What every command shares: the global options (`Ctx`), the error-to-exit-code wrapper (`handled`), Ctrl-C.

Nothing here parses a subcommand's own options: each command lives in `cli/<command>.py`.
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
            cfg = load_config(self.opts.get("config"), overrides=overrides)  # registers the config's secrets
            if not self.opts.get("log_format") and (cfg.logging.format, cfg.logging.level) != ("human", "info"):
                self.setup_logging(cfg.logging.format, cfg.logging.level)
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
            return self._watch_database(self.metrics())
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
        return self._watch_database(metrics)

    def _watch_database(self, metrics: Any) -> Any:
        """A long command's metrics also carry the database's figures (connections, jobs, queue depth)."""
        if metrics is not None:
            from starforge_backfill.dbmetrics import watch

            watch(metrics, self.config())
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
            from starforge_backfill.redact import scrub_text

            click.echo(scrub_text(json.dumps(data, default=str, indent=2, sort_keys=True)))
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
    from starforge_backfill import logs, redact

    if message is None:
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    dsn = ctx.opts.get("dsn") if ctx else None
    if dsn:
        redact.register(dsn)  # the option's DSN, even when the config never loaded
        message = redact.scrub_text(message.replace(dsn, redact.redact_dsn(dsn)))
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


def prom_path(_ctx: click.Context, _param: click.Parameter, value: str | None) -> str | None:
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


def progress_printer(obj: Ctx, metrics: Any = None) -> tuple[Callable[[Any], None], Callable[[], None]]:
    """A progress callback: a rich bar on a terminal, a plain line every ~30 s otherwise; metrics when enabled."""
    from starforge_backfill.cli.console import ProgressReporter
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
        self.reload = threading.Event()  # SIGHUP: re-read the config's throttle section (the guard's thresholds)


@contextlib.contextmanager
def graceful_stop(obj: Ctx) -> Iterator[_Stop]:
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

    def hangup(_signum: int, _frame: Any) -> None:
        stop.reload.set()

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    if hasattr(signal, "SIGHUP"):
        previous[signal.SIGHUP] = signal.signal(signal.SIGHUP, hangup)
    try:
        yield stop
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


class BatchSize(click.ParamType):
    """`--batch-size N` (1..10000: every batch holds N) or `auto` (the default: sizes adapt); auto is None."""

    name = "N|auto"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int | None:
        if value is None or (isinstance(value, str) and value.strip().lower() == "auto"):
            return None
        try:
            n = int(value)
        except (TypeError, ValueError):
            self.fail(f"{value!r} is neither a whole number nor auto", param, ctx)
        if not 1 <= n <= 10000:
            self.fail(f"{n} is not in the range 1<=N<=10000", param, ctx)
        return n


BATCH_SIZE_HELP = (
    "Snapshots per batch: N means every batch holds N (only etl.batch_max_bytes cuts one shorter); auto, the"
    " default, starts at etl.batch_size and adapts toward throttle.target_batch within"
    " throttle.min_batch_size..max_batch_size."
)

METRICS_PORT_HELP = "Serve Prometheus /metrics on [HOST:]PORT while running (default host 127.0.0.1; metrics.port)."
