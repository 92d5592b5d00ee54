"""Database boundary: connections with safe settings, transient-error retries, SQLSTATE translation."""

from __future__ import annotations

import contextlib
import weakref
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import psycopg
from psycopg import errors as pg_errors
from psycopg.conninfo import conninfo_to_dict
from tenacity import (
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    stop_after_delay,
    wait_random_exponential,
)

from starforge_backfill.errors import DatabaseUnavailable, SchemaMissing, UsageError
from starforge_backfill.redact import passwords_in, redact_dsn, scrub_text

T = TypeVar("T")

# SQLSTATEs that are not the snapshot's fault: retry the whole transaction (serialization, deadlock, lock timeout,
# shutdown or crash of the server, too many connections).
TRANSIENT_SQLSTATES = frozenset({"40001", "40P01", "55P03", "57P01", "57P02", "57P03", "53300"})


# The statement and lock timeouts each connection asked for (as settings values, e.g. '60000ms'), so that a
# transaction can apply them locally: behind PgBouncer the startup `options` never reach the server.
_LIMITS: weakref.WeakKeyDictionary[psycopg.Connection[Any], tuple[str | None, str | None]] = weakref.WeakKeyDictionary()


def session_limits(conn: psycopg.Connection[Any]) -> tuple[str | None, str | None]:
    """(statement_timeout, lock_timeout) that `connect` gave `conn`, as setting values ('60000ms'); None
    where it set none (the server's or the role's setting applies)."""
    return _LIMITS.get(conn, (None, None))


def the_row(cursor: psycopg.Cursor[Any]) -> Any:
    """The one row of a query that always returns one (an aggregate): an error rather than a None if not."""
    row = cursor.fetchone()
    if row is None:
        raise RuntimeError("the query returned no row")
    return row


def describe_dsn(dsn: str | None) -> str:
    """`host:port/dbname` for messages: enough to tell which database, never a password."""
    try:
        info = conninfo_to_dict(dsn or "")
    except psycopg.Error:
        return "<invalid DSN>"
    host = info.get("host") or info.get("hostaddr") or "localhost"
    return f"{host}:{info.get('port') or 5432}/{info.get('dbname') or info.get('user') or '?'}"


# The server is away (shut down, restarting, starting up): retried until the time budget is spent.
CONNECTION_SQLSTATES = frozenset({"57P01", "57P02", "57P03"})


def is_connection_error(exc: BaseException) -> bool:
    """True when the database (or the pooler in front of it) is away rather than refusing this work: a lost
    or refused connection (an OperationalError without SQLSTATE, class 08), an administrator or crash
    shutdown, a server still starting (57P01-57P03), a pool that found no connection. Such errors are
    retried until `retry.max_delay` is spent, however many attempts that takes."""
    if isinstance(exc, DatabaseUnavailable):
        return True
    try:
        from psycopg_pool import PoolTimeout
    except ImportError:  # pragma: no cover - pool is a declared dependency
        PoolTimeout = ()  # type: ignore[assignment,misc]
    if isinstance(exc, PoolTimeout):
        return True
    if not isinstance(exc, psycopg.Error):
        return False
    state = exc.sqlstate
    if state is None:
        return isinstance(exc, psycopg.OperationalError)
    return state in CONNECTION_SQLSTATES or state.startswith("08")


def is_transient(exc: BaseException) -> bool:
    """True for errors worth retrying: lost connections, deadlocks, serialization failures, restarts."""
    if is_connection_error(exc):
        return True
    return isinstance(exc, psycopg.Error) and exc.sqlstate in TRANSIENT_SQLSTATES


def connect(
    dsn: str,
    *,
    application_name: str = "starforge-backfill",
    statement_timeout_s: float | None = 60.0,
    lock_timeout_s: float | None = 5.0,
    connect_timeout_s: float = 10.0,
    autocommit: bool = False,
) -> psycopg.Connection[Any]:
    """Open a connection with the toolkit's session settings; failures become DatabaseUnavailable.

    psycopg's automatic server-side prepared statements are off (`prepare_threshold=None`): behind a
    PgBouncer in transaction pooling (1.18 does not track protocol-level prepared statements) a statement
    prepared on one server connection is then executed, or prepared again, on another one, and fails with
    `prepared statement "_pg3_0" already exists` (or `does not exist`). Measured on the backfill itself it
    costs nothing (docs/DESIGN.md): every batch statement is planned for its own bound values anyway.

    The timeouts travel in the startup `options`, which PgBouncer drops (`ignore_startup_parameters`);
    `session_limits` keeps them so that the ETL's transactions set them again locally (SET LOCAL)."""
    if not dsn:
        raise UsageError(
            "no database DSN given",
            hint="pass --dsn, set STARFORGE_DATABASE_URL, or set database.dsn in the config file",
        )
    opts = []
    if statement_timeout_s:
        opts.append(f"-c statement_timeout={int(statement_timeout_s * 1000)}")
    if lock_timeout_s:
        opts.append(f"-c lock_timeout={int(lock_timeout_s * 1000)}")
    try:
        conn = psycopg.connect(
            dsn,
            autocommit=autocommit,
            application_name=application_name,
            connect_timeout=max(1, int(connect_timeout_s)),
            options=" ".join(opts) or None,
            prepare_threshold=None,
        )
    except psycopg.ProgrammingError as exc:
        raise UsageError(f"invalid database DSN {redact_dsn(dsn)!r}: {_first_line(exc)}") from None
    except psycopg.OperationalError as exc:
        raise DatabaseUnavailable(
            f"cannot connect to the database at {describe_dsn(dsn)}: {_scrub(_first_line(exc), dsn)}"
        ) from None
    _LIMITS[conn] = (
        f"{int(statement_timeout_s * 1000)}ms" if statement_timeout_s else None,
        f"{int(lock_timeout_s * 1000)}ms" if lock_timeout_s else None,
    )
    return conn


def connect_cfg(cfg: Any, *, autocommit: bool = False, application_name: str | None = None) -> psycopg.Connection[Any]:
    """Connect with the settings of a `Config`."""
    db = cfg.database
    return connect(
        db.dsn or "",
        application_name=application_name or db.application_name,
        statement_timeout_s=db.statement_timeout_s,
        lock_timeout_s=db.lock_timeout_s,
        connect_timeout_s=db.connect_timeout_s,
        autocommit=autocommit,
    )


def retrying(
    fn: Callable[[], T],
    *,
    max_attempts: int = 5,
    max_delay_s: float = 60.0,
    wait_initial_s: float = 0.05,
    wait_max_s: float = 5.0,
    on_retry: Callable[[BaseException, int], None] | None = None,
) -> T:
    """Run `fn` (one whole transaction) again on transient errors, with jittered exponential backoff.

    Two budgets: every retry stops once `max_delay_s` has passed since the first attempt; a connection-class
    error (`is_connection_error`: the server restarting, a failover, a pooler restart) is retried until then,
    however many attempts that takes, while the other transient errors (deadlocks, serialization failures,
    lock timeouts, too many connections) also stop after `max_attempts`."""

    def _before_sleep(state: Any) -> None:
        if on_retry is not None and state.outcome is not None:
            on_retry(state.outcome.exception(), state.attempt_number)

    by_count = stop_after_attempt(max_attempts)
    by_time = stop_after_delay(max_delay_s)

    def _stop(state: Any) -> bool:
        if by_time(state):
            return True
        exc = state.outcome.exception() if state.outcome is not None else None
        return not (exc is not None and is_connection_error(exc)) and by_count(state)

    retryer = Retrying(
        retry=retry_if_exception(is_transient),
        stop=_stop,
        wait=wait_random_exponential(multiplier=wait_initial_s, max=wait_max_s),
        before_sleep=_before_sleep,
        reraise=True,
    )
    return retryer(fn)


@contextlib.contextmanager
def translate_errors(dsn: str | None = None) -> Iterator[None]:
    """Turn schema and connectivity errors into the toolkit's exceptions (exit code 3)."""
    try:
        yield
    except (pg_errors.UndefinedTable, pg_errors.UndefinedColumn, pg_errors.UndefinedFunction) as exc:
        raise SchemaMissing(f"the database lacks the expected schema: {_first_line(exc)}") from None
    except psycopg.OperationalError as exc:
        if exc.sqlstate is None or exc.sqlstate.startswith("08") or exc.sqlstate.startswith("57P"):
            where = f" at {describe_dsn(dsn)}" if dsn else ""
            raise DatabaseUnavailable(f"lost the database connection{where}: {_first_line(exc)}") from None
        raise


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def _scrub(text: str, dsn: str) -> str:
    return scrub_text(text, passwords_in(dsn))
