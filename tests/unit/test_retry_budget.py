"""db.retrying's two budgets: connection-class errors are retried until max_delay is spent, however many
attempts that takes; other transient errors also stop after max_attempts."""

from __future__ import annotations

import time
from collections.abc import Callable

import psycopg
import pytest
from psycopg import errors as pg_errors

from starforge_backfill import db


def flaky(exc: Exception, failures: int) -> tuple[list[int], Callable[[], str]]:
    calls: list[int] = []

    def fn() -> str:
        calls.append(1)
        if len(calls) <= failures:
            raise exc
        return "ok"

    return calls, fn


@pytest.mark.parametrize(
    "exc",
    [
        psycopg.OperationalError("server closed the connection"),
        pg_errors.AdminShutdown("terminating"),
        pg_errors.CannotConnectNow("starting up"),
        pg_errors.ConnectionFailure("08006"),
    ],
    ids=["no-sqlstate", "57P01", "57P03", "08006"],
)
def test_a_connection_error_is_retried_past_max_attempts_within_the_time_budget(exc: Exception) -> None:
    assert db.is_connection_error(exc) and db.is_transient(exc)
    calls, fn = flaky(exc, failures=12)
    out = db.retrying(fn, max_attempts=3, max_delay_s=30, wait_initial_s=0.001, wait_max_s=0.002)
    assert out == "ok" and len(calls) == 13


def test_a_connection_error_stops_when_the_time_budget_is_spent() -> None:
    calls, fn = flaky(psycopg.OperationalError("connection refused"), failures=10**6)
    started = time.monotonic()
    with pytest.raises(psycopg.OperationalError):
        db.retrying(fn, max_attempts=3, max_delay_s=0.3, wait_initial_s=0.01, wait_max_s=0.02)
    assert 0.3 <= time.monotonic() - started < 2 and len(calls) > 3


@pytest.mark.parametrize(
    "exc", [pg_errors.DeadlockDetected("d"), pg_errors.SerializationFailure("s"), pg_errors.LockNotAvailable("l")]
)
def test_other_transient_errors_keep_the_attempt_count(exc: Exception) -> None:
    assert db.is_transient(exc) and not db.is_connection_error(exc)
    calls, fn = flaky(exc, failures=10)
    with pytest.raises(type(exc)):
        db.retrying(fn, max_attempts=3, max_delay_s=30, wait_initial_s=0.001, wait_max_s=0.002)
    assert len(calls) == 3


def test_a_statement_timeout_is_not_retried() -> None:
    calls, fn = flaky(pg_errors.QueryCanceled("statement timeout"), failures=1)
    with pytest.raises(pg_errors.QueryCanceled):
        db.retrying(fn, max_attempts=3, wait_initial_s=0.001)
    assert len(calls) == 1
